//! What the binary says, and at which level: a failed guest is reported
//! once and never as a success, -v levels show this crate's lines, -q keeps
//! the errors a summary points to, emulation is announced, and the cache
//! base's variables are read as the XDG specification and ktstr say.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::cache::clean::Immutable;
use crate::support::gates::{debian_kernel, qemu_installed};
use crate::support::users::{self, User};
use crate::support::{bin, dead_pid, ktstr, ktstr_cmd, magic_image, stderr};

const KEY: &str = "ext4-64m-0123456789abcdef";

/// A Debian kernel in /boot with its modules, and QEMU to boot it.
fn stock_kernel_and_qemu() -> Option<PathBuf> {
    let kernel = debian_kernel("6.")?;
    qemu_installed().then_some(kernel)
}

/// `template build` of ext4 with `kernel`, given a second to run: a guest
/// that cannot finish (a stock kernel takes longer to boot under QEMU,
/// with KVM too).
fn timed_out_build(cmd: &mut Command, kernel: &Path, flags: &[&str]) -> Output {
    cmd.args(["template", "build", "--fs", "ext4", "--capacity", "64M"])
        .args(flags)
        .args(["--timeout", "1", "--kernel"])
        .arg(kernel)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn a_guest_that_times_out_is_reported_once_and_never_as_formatted() {
    let Some(kernel) = stock_kernel_and_qemu() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = timed_out_build(&mut ktstr_cmd(root.path()), &kernel, &["--vmm=qemu"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("Formatted"), "{err}");
    assert!(err.contains("did not finish within 1 s"), "{err}");
    // The quiet guest kernel printed nothing in a second.
    assert!(err.contains("lines ---\n(no console output)"), "{err}");
    // The key is named once, by the one error line.
    assert_eq!(err.matches("ext4-64m-").count(), 1, "{err}");
    assert!(!err.contains("building template"), "{err}");
}

#[test]
fn debug_shows_this_crates_lines_and_the_guest_console_and_only_trace_the_elf_note_parsers() {
    let Some(kernel) = stock_kernel_and_qemu() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let debug = stderr(&timed_out_build(
        &mut ktstr_cmd(root.path()),
        &kernel,
        &["-vv"],
    ));
    assert!(
        debug.contains("DEBUG the guest console (timeout)"),
        "{debug}"
    );
    assert!(!debug.contains("NoteIterator"), "{debug}");
    assert!(!debug.contains("TRACE"), "{debug}");
    // The stock kernel is unpacked and its notes read: at -vvv, they show.
    let trace = stderr(&timed_out_build(
        &mut ktstr_cmd(root.path()),
        &kernel,
        &["-vvv"],
    ));
    assert!(trace.contains("NoteIterator"), "{trace}");
}

#[test]
fn an_unprivileged_user_is_told_once_that_guest_builds_are_emulated_and_how_to_join_kvm() {
    let Some(alice) = User::get(users::ALICE) else {
        return;
    };
    let Some(kernel) = stock_kernel_and_qemu() else {
        return;
    };
    let home_cache = alice.fresh_dir(".cache");
    let out = timed_out_build(&mut alice.ktstr(), &kernel, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("run under emulation").count(), 1, "{err}");
    assert!(
        err.contains("/dev/kvm is not usable (Permission denied")
            && err.contains("`sudo usermod -aG kvm $USER`"),
        "{err}"
    );
    // Her cache: in her home.
    assert!(home_cache.join("ktstr/disk_templates/.locks").is_dir());
    let _ = fs::remove_dir_all(&home_cache);
}

#[test]
fn quiet_keeps_the_errors_the_clean_summary_points_to() {
    let root = tempfile::tempdir().unwrap();
    let stuck = root.path().join(format!("{KEY}.tmp.{}", dead_pid()));
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("template.img"), b"x").unwrap();
    let Some(_immutable) = Immutable::set(&stuck.join("template.img")) else {
        return;
    };
    let out = ktstr(root.path(), &["-q", "clean"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(see the errors above)"), "{text}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("could not remove `{}`", stuck.display())),
        "{err}"
    );
}

/// A debris file (a dead process's staging image) laid in `root`.
fn debris(root: &Path) -> PathBuf {
    fs::create_dir_all(root).unwrap();
    let path = root.join(format!("template.img.in-flight.{KEY}.{}", dead_pid()));
    fs::write(&path, b"x").unwrap();
    path
}

#[test]
fn a_relative_xdg_cache_home_is_ignored_for_home() {
    let (home, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let in_home = debris(&home.path().join(".cache/ktstr/disk_templates"));
    let in_cwd = debris(&cwd.path().join("rel/ktstr/disk_templates"));
    let out = Command::new(bin())
        .arg("clean")
        .current_dir(cwd.path())
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", "rel")
        .env_remove("KTSTR_CACHE_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!in_home.exists() && in_cwd.exists(), "{err}");
    assert_eq!(
        err.matches("ignoring $XDG_CACHE_HOME `rel`").count(),
        1,
        "{err}"
    );
}

#[test]
fn ktstr_cache_dir_naming_a_template_root_is_warned_about() {
    let base = tempfile::tempdir().unwrap();
    let entry = base.path().join(KEY);
    fs::create_dir(&entry).unwrap();
    magic_image(&entry.join("template.img"), Filesystem::Ext4, 64, 0);
    let run = || {
        let out = Command::new(bin())
            .args(["template", "list"])
            .env("KTSTR_CACHE_DIR", base.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let err = run();
    let warning = format!(
        "$KTSTR_CACHE_DIR `{}` holds disk templates itself",
        base.path().display()
    );
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    assert!(
        err.contains(&format!("pass --cache-dir `{}`", base.path().display())),
        "{err}"
    );
    // A base with its own template root is a base: no warning.
    fs::create_dir(base.path().join("disk_templates")).unwrap();
    assert_eq!(run(), "");
}

#[test]
fn a_min_free_out_of_reach_removes_nothing_and_blames_no_holder() {
    let root = tempfile::tempdir().unwrap();
    let entry = root.path().join(KEY);
    fs::create_dir(&entry).unwrap();
    magic_image(&entry.join("template.img"), Filesystem::Ext4, 64, 1 << 20);
    let fs = nix::sys::statvfs::statvfs(root.path()).unwrap();
    let free = fs.blocks_available() * fs.fragment_size();
    let whole = fs.blocks() * fs.fragment_size();
    // Beyond what the one entry gives back, within the filesystem's size.
    let want = (free + (4 << 30)).min(whole);
    let out = ktstr(
        root.path(),
        &["clean", "--min-free", &want.to_string(), "--json"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("none was removed"), "{err}");
    assert!(!err.contains("stop what holds"), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"], Value::Array(Vec::new()));
    assert_eq!(report["budget"]["min_free_unreachable"], true);
    assert!(entry.join("template.img").exists());
    // The text summary says it too.
    let out = ktstr(root.path(), &["clean", "--min-free", &want.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(out of reach: none removed for it)"),
        "{text}"
    );
}

#[test]
fn help_and_man_page_name_the_variables_and_exit_statuses_and_usage_fits_the_call() {
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let page = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/cargo-ktstr.1"))
        .unwrap();
    for var in [
        "KTSTR_CACHE_DIR",
        "XDG_CACHE_HOME",
        "KTSTR_KERNEL",
        "RUST_LOG",
    ] {
        assert!(help.contains(&format!("\n  {var}\n")), "{var}: {help}");
        assert!(page.contains(&format!("\\fB{var}\\fR")), "{var}: {page}");
    }
    assert!(
        help.contains("EXIT STATUS:") && help.contains("130 SIGINT"),
        "{help}"
    );
    assert!(page.contains(".SH \"ENVIRONMENT\"") && page.contains(".SH \"EXIT STATUS\""));
    // Usage names the command as it was typed.
    let usage = |args: &[&str]| stderr(&Command::new(bin()).args(args).output().unwrap());
    assert!(usage(&["--bogus"]).contains("Usage: cargo-ktstr [OPTIONS]"));
    let via_cargo = usage(&["ktstr", "clean", "--bogus"]);
    assert!(
        via_cargo.contains("Usage: cargo ktstr clean [OPTIONS]"),
        "{via_cargo}"
    );
}
