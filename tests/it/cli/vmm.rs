//! Where no VMM can boot a kernel, the CLI says so at once, naming the
//! ways out, and boots nothing; and the binary, as PID 1 of a container,
//! stays the CLI rather than the guest's init.

use std::process::Command;
use std::time::{Duration, Instant};

use cargo_ktstr::runner::kvm::kvm_boot_support;
use serde_json::Value;

use crate::support::{
    bin, guest_kernel, guest_prerequisites, ktstr_cmd, names, prerequisite, stderr,
};

#[test]
fn as_pid_1_of_a_container_it_stays_the_cli() {
    if !prerequisite("root (for unshare)", nix::unistd::geteuid().is_root()) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // PID 1 of a new pid namespace (its own mount namespace, in case the
    // guard failed and it went on to mount things), run by its own path.
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount"])
        .arg(bin())
        .arg("--cache-dir")
        .arg(root.path())
        .args(["template", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.is_object(), "{list}");
}

#[test]
fn auto_without_a_usable_vmm_explains_both() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    if cargo_ktstr::runner::kvm::kvm_boot_support().is_ok() {
        return eprintln!("skipped: this host's KVM boots kernels, so auto always has a VMM");
    }
    let root = tempfile::tempdir().unwrap();
    // No QEMU on this PATH; the formatter is still found in /usr/sbin.
    let out = ktstr_cmd(root.path())
        .env("PATH", root.path())
        .args([
            "template",
            "build",
            "--fs",
            "ext4",
            "--capacity",
            "64M",
            "--kernel",
        ])
        .arg(&kernel)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no VMM can boot the template guest"), "{err}");
    assert!(
        err.contains("built-in VMM cannot") && err.contains("qemu-system-x86"),
        "{err}"
    );
    assert_eq!(names(root.path()), [".locks"]);
}

#[test]
fn vmm_kvm_fails_at_once_where_kvm_cannot_boot_a_kernel() {
    let Err(why) = kvm_boot_support() else {
        eprintln!("nothing to check: this host's KVM can boot a kernel");
        return;
    };
    let Some(kernel) = guest_kernel() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = ktstr_cmd(root.path())
        .args([
            "template",
            "build",
            "--vmm",
            "kvm",
            "--timeout",
            "120",
            "--kernel",
        ])
        .arg(&kernel)
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "it sat out a boot"
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for needle in [why.as_str(), "--vmm qemu", "--vmm auto"] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    // Nothing was published and no staging image is left behind.
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".locks")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
