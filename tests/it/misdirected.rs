//! A `--cache-dir` aimed at the wrong place, or a root someone mounted into:
//! `clean` and `clean --all` must touch nothing that is not theirs.

use std::fs;
use std::path::Path;
use std::process::Command;

use cargo_ktstr::cache::filesystem::Filesystem;

use crate::util::{dead_pid, ktstr, ktstr_ok, mkfs_image, populate, prerequisite, stderr};

const KEY: &str = "btrfs-256m-a1b2c3d4e5f6a7b8";

/// What a home directory may hold, named like debris of a dead pid but not
/// in its exact grammar or not of its file type.
fn lay_user_files(root: &Path, dead: u32) -> Vec<String> {
    let tree = format!("backup.tmp.{dead}");
    fs::create_dir_all(root.join(&tree).join("sub")).unwrap();
    fs::write(root.join(&tree).join("sub/f"), b"precious").unwrap();
    let files = [
        format!("notes.tmp.{dead}"),
        format!(".per-test-{dead}-notes.img"),
        format!("template.img.in-flight.notes.{dead}"),
        // Right names, wrong types: a file where a staging directory would
        // be, directories where images would be.
        format!("{KEY}.tmp.{dead}"),
    ];
    for name in &files {
        fs::write(root.join(name), b"precious").unwrap();
    }
    let dirs = [
        format!("template.img.in-flight.{KEY}.{dead}"),
        format!(".per-test-{dead}-1-abc.img"),
    ];
    for name in &dirs {
        fs::create_dir(root.join(name)).unwrap();
        fs::write(root.join(name).join("f"), b"precious").unwrap();
    }
    [tree].into_iter().chain(files).chain(dirs).collect()
}

#[test]
fn clean_leaves_a_home_directorys_look_alike_names_alone() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let names = lay_user_files(root, dead_pid());
    for args in [&["clean"][..], &["clean", "--all"]] {
        let out = ktstr_ok(root, args);
        assert!(out.contains("removed 0 "), "{args:?}: {out}");
        for name in &names {
            assert!(root.join(name).exists(), "{args:?} removed {name}");
        }
    }
    assert_eq!(
        fs::read(
            root.join(format!(
                "backup.tmp.{}",
                names[0].rsplit('.').next().unwrap()
            ))
            .join("sub/f")
        )
        .unwrap(),
        b"precious"
    );
}

#[test]
fn clean_all_creates_no_locks_dir_where_there_is_no_entry() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("Documents")).unwrap();
    ktstr_ok(root.path(), &["clean", "--all"]);
    assert!(!root.path().join(".locks").exists());
}

/// A tmpfs mounted inside an entry: `clean --all` must refuse the entry and
/// leave the mounted filesystem's files alone.
#[test]
fn clean_all_refuses_an_entry_with_a_mount_point_inside() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mnt = root.join(KEY).join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(root.join(KEY).join("template.img"), b"x").unwrap();
    let mounted = nix::unistd::geteuid().is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
    if !prerequisite("root, to mount a tmpfs", mounted) {
        return;
    }
    fs::write(mnt.join("data"), b"precious").unwrap();
    let out = ktstr(root, &["clean", "--all"]);
    let data = fs::read(mnt.join("data"));
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(data.unwrap(), b"precious");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("mount point") && err.contains("unmount it"),
        "{err}"
    );
    assert!(root.join(KEY).join("template.img").exists());
}

/// A `.locks` that is a symlink out of the root: a clone must create no
/// lockfile through it, and say to move it away.
#[test]
fn a_symlinked_locks_dir_creates_nothing_outside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    if !mkfs_image(&root.join("probe.img"), Filesystem::Ext4, 64) {
        return;
    }
    fs::remove_file(root.join("probe.img")).unwrap();
    populate(root, Filesystem::Ext4, 64);
    let outside = tempfile::tempdir().unwrap();
    fs::remove_dir_all(root.join(".locks")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join(".locks")).unwrap();
    let dest = root.join("clone.img");
    let dest = dest.to_str().unwrap();
    let out = ktstr(
        root,
        &[
            "template",
            "clone",
            "--fs",
            "ext4",
            "--capacity",
            "64M",
            dest,
        ],
    );
    assert!(!out.status.success());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    let err = stderr(&out);
    assert!(
        err.contains(".locks") && err.contains("move it away"),
        "{err}"
    );
}
