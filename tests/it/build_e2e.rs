//! Template builds end to end: a real guest kernel booted by QEMU (TCG
//! here) runs the real formatter on the staging image.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use cargo_ktstr::cache::ensure::TemplateBuilder;
use cargo_ktstr::cache::filesystem::Filesystem;
use cargo_ktstr::cache::fingerprint::fingerprint;
use cargo_ktstr::cache::key::{Capacity, Key};
use cargo_ktstr::guest::builder::GuestBuilder;
use cargo_ktstr::runner::qemu::{Accel, QemuRunner};

use crate::util::{bin, guest_kernel, prerequisite};

fn qemu() -> Option<QemuRunner> {
    match QemuRunner::find(Accel::Tcg) {
        Ok(q) => Some(q),
        Err(e) => {
            prerequisite("QEMU", Some(format!("{e:#}")));
            None
        }
    }
}

fn staging(dir: &Path, mib: u64) -> std::path::PathBuf {
    let path = dir.join("staging.img");
    File::create(&path).unwrap().set_len(mib << 20).unwrap();
    path
}

fn key(fs: Filesystem, mib: u64) -> Key {
    Key::new(
        fs,
        Capacity::from_mib(mib).unwrap(),
        &fingerprint(fs).unwrap(),
    )
}

#[test]
fn the_library_builder_formats_in_a_guest() {
    let (Some(kernel), Some(qemu)) = (guest_kernel(), qemu()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = staging(dir.path(), 256);
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin());
    builder.build(&key(Filesystem::Btrfs, 256), &image).unwrap();
    assert!(Filesystem::Btrfs.path_has_magic(&image).unwrap());
}

#[test]
fn a_failing_formatter_fails_the_build_with_the_console_tail() {
    let (Some(kernel), Some(qemu)) = (guest_kernel(), qemu()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = staging(dir.path(), 64);
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin()).formatter("/bin/false".into());
    let err = format!(
        "{:#}",
        builder
            .build(&key(Filesystem::Ext4, 64), &image)
            .unwrap_err()
    );
    assert!(err.contains("mkfs.ext4 exited with status 1"), "{err}");
    assert!(
        err.contains("console's last 30 lines") && err.contains("KTSTR_TEMPLATE_RESULT"),
        "{err}"
    );
}

#[test]
fn a_guest_that_cannot_finish_times_out() {
    let (Some(kernel), Some(qemu)) = (guest_kernel(), qemu()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = staging(dir.path(), 64);
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin()).timeout(Duration::from_secs(1));
    let err = format!(
        "{:#}",
        builder
            .build(&key(Filesystem::Ext4, 64), &image)
            .unwrap_err()
    );
    assert!(err.contains("did not finish within 1 s"), "{err}");
    assert!(!Filesystem::Ext4.path_has_magic(&image).unwrap());
}
