//! The recipe for the synthetic guests beside this file: each `NAME.c` plus
//! `start.S`, compiled freestanding by the system C compiler and linked by
//! `guest.ld` into a small ELF the VMM loads like a vmlinux. Also a static
//! formatter that never returns, for deadline tests.
//!
//! Where there is no compiler (the nested lane's outer guest), the ELFs
//! come prebuilt from the directory named by [`PREBUILT_ENV`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Names a directory of prebuilt guests (`NAME.elf`, and [`HANG`]).
pub(crate) const PREBUILT_ENV: &str = "KTSTR_GUESTS_DIR";
/// Every synthetic guest.
pub(crate) const ALL: [&str; 6] = [
    "hello",
    "boot_protocol",
    "interrupts",
    "looping",
    "triple_fault",
    "virtio_blk",
];
/// The file name of the formatter that never returns.
pub(crate) const HANG: &str = "hang";

/// Builds guest `name` once per test binary run and returns its path. The
/// file is replaced atomically, so test binaries running side by side can
/// race on it.
pub(crate) fn build(name: &str) -> PathBuf {
    once(&format!("{name}.elf"), || compile(name))
}

/// A static program that says on the console that it runs, then never
/// exits: as a formatter, a guest that boots fine and still cannot finish.
pub(crate) fn hanging_formatter() -> PathBuf {
    once(HANG, compile_hang)
}

/// `file` from the prebuilt directory, else made by `make` once per run.
fn once(file: &str, make: impl FnOnce() -> PathBuf) -> PathBuf {
    if let Some(dir) = std::env::var_os(PREBUILT_ENV) {
        return Path::new(&dir).join(file);
    }
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built.entry(file.to_owned()).or_insert_with(make).clone()
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path beside `out` unique to this process and thread, to build into
/// and rename onto `out`.
fn scratch(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap().to_owned();
    name.push(format!(
        ".{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    out.with_file_name(name)
}

fn compile_hang() -> PathBuf {
    let out = out_dir().join(HANG);
    let src = scratch(&out).with_extension("c");
    std::fs::write(
        &src,
        r#"#include <fcntl.h>
#include <unistd.h>
int main(void) {
    int fd = open("/dev/console", O_WRONLY);
    static const char msg[] = "ktstr-test: the formatter hangs\n";
    if (fd >= 0) write(fd, msg, sizeof msg - 1);
    for (;;) pause();
}
"#,
    )
    .unwrap();
    let tmp = scratch(&out);
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .expect("gcc runs (install gcc and libc6-dev)");
    assert!(status.success(), "building the hanging formatter failed");
    std::fs::remove_file(&src).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn compile(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let out = out_dir().join(format!("{name}.elf"));
    let tmp = scratch(&out);
    let status = Command::new("gcc")
        .args([
            "-O2",
            "-Wall",
            "-Werror",
            "-ffreestanding",
            "-nostdlib",
            "-nostartfiles",
        ])
        .args([
            "-static",
            "-fno-pic",
            "-no-pie",
            "-mno-red-zone",
            "-mgeneral-regs-only",
        ])
        .args(["-fno-stack-protector", "-fno-asynchronous-unwind-tables"])
        .args([
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
            "-Wl,--no-warn-rwx-segments",
        ])
        .arg(format!("-Wl,-T,{}", src.join("guest.ld").display()))
        .arg(src.join("start.S"))
        .arg(src.join(format!("{name}.c")))
        .arg("-o")
        .arg(&tmp)
        .status()
        .expect("gcc runs (install gcc to build the synthetic guests)");
    assert!(status.success(), "building guest {name} failed");
    std::fs::rename(&tmp, &out).unwrap();
    out
}
