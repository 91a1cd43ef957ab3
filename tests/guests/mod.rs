//! The recipe for the synthetic guests beside this file: each `NAME.c` plus
//! `start.S`, compiled freestanding by the system C compiler and linked by
//! `guest.ld` into a small ELF the VMM loads like a vmlinux.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds guest `name` once per test binary run and returns its path. The
/// file is replaced atomically, so test binaries running side by side can
/// race on it.
pub fn build(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(name.to_owned())
        .or_insert_with(|| compile(name))
        .clone()
}

fn compile(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}.elf"));
    let tmp = out_dir.join(format!(
        "{name}.elf.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
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
