//! Edges of the command line: extreme flag values and a closed stdout must
//! give an exit status and a message, never a panic (exit 101).

use std::process::Stdio;
use std::time::Duration;

use cargo_ktstr::testing::cache::ensure::{Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::{
    FlockHolder, Spawned, current_key, dead_pid, ktstr_cmd, mkfs_image, populate, stderr,
};

/// The largest `--lock-timeout` waits (no deadline) instead of overflowing.
#[test]
fn a_huge_lock_timeout_waits_instead_of_panicking() {
    let root = tempfile::tempdir().unwrap();
    let probe = root.path().join("probe.img");
    if !mkfs_image(&probe, Filesystem::Ext4, 64) {
        return;
    }
    std::fs::remove_file(probe).unwrap();
    let key = current_key(Filesystem::Ext4, 64);
    std::fs::create_dir(root.path().join(".locks")).unwrap();
    let _held = FlockHolder::exclusive(&root.path().join(format!(".locks/{key}.lock")));
    let mut cmd = ktstr_cmd(root.path());
    cmd.args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .args(["--lock-timeout", &u64::MAX.to_string()])
        .arg(root.path().join("dest.img"));
    let mut waiter = Spawned::new(cmd);
    waiter.wait_for_stderr("waiting for the lock");
    std::thread::sleep(Duration::from_millis(500));
    let status = waiter.child.try_wait().unwrap();
    assert!(
        status.is_none(),
        "exited while the lock was held: {status:?}"
    );
}

/// A clone whose reader went away (`| head -0`) still succeeds: the image
/// is made, and the lost result line is no reason for a panic.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let probe = root.path().join("probe.img");
    if !mkfs_image(&probe, Filesystem::Ext4, 64) {
        return;
    }
    std::fs::remove_file(probe).unwrap();
    populate(root.path(), Filesystem::Ext4, 64);
    let dest = root.path().join("dest.img");
    let mut child = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .arg(&dest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closing the read end makes the result line's write fail with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(dest.exists());

    // A destination in a directory that does not exist says what to do.
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .arg(root.path().join("no/dest.img"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("create it first"), "{err}");
}

/// Logs piped into a file or CI log carry no colour escape codes.
#[test]
fn piped_logs_have_no_ansi_codes() {
    let root = tempfile::tempdir().unwrap();
    let debris = format!(
        "template.img.in-flight.btrfs-256m-a1b2c3d4e5f6a7b8.{}",
        dead_pid()
    );
    std::fs::write(root.path().join(debris), b"x").unwrap();
    let out = ktstr_cmd(root.path())
        .args(["-vv", "clean"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("DEBUG") && err.contains("removed"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// 16 TiB is past ext4's largest file: the error names the limit and what
/// to do, not a bare EFBIG.
#[test]
fn a_capacity_past_the_roots_file_size_limit_says_what_to_do() {
    let Some(disk) = crate::support::loopfs::LoopFs::new("ext4", 64) else {
        return;
    };
    let root = disk.path().join("cache");
    let cap = Capacity::from_mib(16 << 20).unwrap();
    let err = Ensurer::new(&root, &HostMkfsBuilder)
        .ensure(Filesystem::Btrfs, cap)
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("File too large") && err.contains("smaller capacity") && err.contains("xfs"),
        "{err}"
    );
}
