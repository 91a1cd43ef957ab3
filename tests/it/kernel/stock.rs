//! Distribution kernels as template kernels: Debian's 6.1 and 6.12 (which
//! CI installs) build every filesystem under QEMU, a build with no kernel
//! anywhere but /boot takes one, and fabricated kernels whose modules are
//! missing or unsigned fail before any boot, saying which.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::gates::{debian_kernel, qemu_installed};
use crate::support::{ktstr_cmd, stderr, stdout};

/// `template build --json` on `root` with only `env`'s kernel sources.
fn build(root: &Path, kernel: Option<&Path>, fs: Filesystem, mib: u64) -> Command {
    let mut cmd = ktstr_cmd(root);
    cmd.args([
        "template",
        "build",
        "--vmm",
        "qemu",
        "--json",
        "--fs",
        fs.name(),
    ])
    .args(["--capacity", &format!("{mib}M")])
    .env_remove("KTSTR_KERNEL");
    if let Some(kernel) = kernel {
        cmd.arg("--kernel").arg(kernel);
    }
    cmd
}

fn built(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["built"], true, "{json}");
    json
}

#[test]
fn debian_6_1_and_6_12_guests_build_every_filesystem() {
    let kernels: Vec<_> = ["6.1.", "6.12."]
        .into_iter()
        .filter_map(debian_kernel)
        .collect();
    if kernels.len() < 2 || !qemu_installed() {
        return;
    }
    for kernel in &kernels {
        let root = tempfile::tempdir().unwrap();
        for (fs, mib) in [
            (Filesystem::Btrfs, 256),
            (Filesystem::Xfs, 300),
            (Filesystem::Ext4, 64),
        ] {
            let out = build(root.path(), Some(kernel), fs, mib).output().unwrap();
            let json = built(&out);
            let path = PathBuf::from(json["path"].as_str().unwrap());
            assert!(
                fs.path_has_magic(&path).unwrap(),
                "{}: {fs} has no magic",
                kernel.display()
            );
            eprintln!("{} {fs}: {} s", kernel.display(), json["seconds"]);
        }
    }
}

#[test]
fn with_no_kernel_built_a_stock_kernel_in_boot_is_taken_for_the_guest() {
    if debian_kernel("6.").is_none() || !qemu_installed() {
        return;
    }
    // An empty ktstr cache: no kernel `kernel build` made.
    let (cache, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = build(root.path(), None, Filesystem::Ext4, 64)
        .env("KTSTR_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    built(&out);
    assert!(
        stderr(&out).contains("kernel `/boot/vmlinuz-"),
        "{}",
        stderr(&out)
    );

    let out = ktstr_cmd(root.path())
        .args(["kernel", "list"])
        .env("KTSTR_CACHE_DIR", cache.path())
        .env_remove("KTSTR_KERNEL")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.lines().all(|l| l.contains("\tstock\t")), "{text}");
    assert!(
        text.contains("/boot/vmlinuz-6.") && text.contains("with its modules"),
        "{text}"
    );
}

/// A fake kernel `vmlinuz-9.9.9-fab` in `dir/boot` with modules under
/// `dir/modules/9.9.9-fab`: `modules.dep` as given, a file for each
/// module in `present`, and `config` as its `/boot/config-9.9.9-fab`.
fn fabricated(dir: &Path, dep: &str, present: &[&str], config: &str) -> PathBuf {
    let boot = dir.join("boot");
    let modules = dir.join("modules/9.9.9-fab");
    std::fs::create_dir_all(modules.join("kernel")).unwrap();
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(modules.join("modules.dep"), dep).unwrap();
    for name in present {
        std::fs::write(
            modules.join(format!("kernel/{name}.ko")),
            b"\x7fELF unsigned",
        )
        .unwrap();
    }
    std::fs::write(boot.join("config-9.9.9-fab"), config).unwrap();
    let image = boot.join("vmlinuz-9.9.9-fab");
    std::fs::write(&image, b"no kernel: the build must stop before booting it").unwrap();
    image
}

/// Builds with the fabricated kernel; the error, which must come at once.
fn refused(dir: &Path, image: &Path) -> String {
    let root = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = build(root.path(), Some(image), Filesystem::Ext4, 64)
        .env("KTSTR_MODULES_ROOT", dir.join("modules"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "{err}");
    assert!(
        !err.contains("Booting") && !err.contains("console"),
        "booted: {err}"
    );
    err
}

#[test]
fn a_missing_module_fails_before_any_boot_naming_it() {
    if !qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dep = "kernel/virtio_mmio.ko:\nkernel/virtio_blk.ko: kernel/virtio_ring.ko\nkernel/virtio_ring.ko:\n";
    // virtio_ring is listed but its file is gone.
    let image = fabricated(
        dir.path(),
        dep,
        &["virtio_mmio", "virtio_blk"],
        "CONFIG_MODULES=y\n",
    );
    let err = refused(dir.path(), &image);
    assert!(
        err.contains("`virtio_ring` (for `virtio_blk`)") && err.contains("9.9.9-fab"),
        "{err}"
    );
    // virtio_blk is not even listed.
    let dir = tempfile::tempdir().unwrap();
    let image = fabricated(dir.path(), "kernel/virtio_mmio.ko:\n", &["virtio_mmio"], "");
    let err = refused(dir.path(), &image);
    assert!(
        err.contains("needs module `virtio_blk`") && err.contains("install"),
        "{err}"
    );
}

#[test]
fn unsigned_modules_for_a_kernel_that_enforces_signatures_fail_before_any_boot() {
    if !qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dep = "kernel/virtio_mmio.ko:\nkernel/virtio_blk.ko:\n";
    let config = "CONFIG_MODULES=y\nCONFIG_MODULE_SIG_FORCE=y\n";
    let image = fabricated(dir.path(), dep, &["virtio_mmio", "virtio_blk"], config);
    let err = refused(dir.path(), &image);
    assert!(
        err.contains("`virtio_mmio`") && err.contains("not signed"),
        "{err}"
    );
}

#[test]
fn a_modular_kernel_without_its_modules_fails_before_any_boot() {
    if !qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = fabricated(dir.path(), "", &[], "CONFIG_VIRTIO_BLK=m\n");
    std::fs::remove_dir_all(dir.path().join("modules/9.9.9-fab")).unwrap();
    let err = refused(dir.path(), &image);
    assert!(
        err.contains("modules.dep` is missing") && err.contains("linux-image"),
        "{err}"
    );
}
