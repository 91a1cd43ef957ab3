//! A `--cache-dir` aimed at the wrong place, or a root someone mounted into:
//! `clean` and `clean --all` must touch nothing that is not theirs.

use std::fs;
use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::{dead_pid, ktstr, ktstr_ok, mkfs_image, populate, prerequisite, stderr};

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
    // Holding a directory, it is no entry of the cache's to begin with.
    let text = crate::support::stdout(&out);
    assert!(text.contains("not an entry: it holds `mnt`"), "{text}");
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

/// The sweep's fast path keeps every test of the careful one: a dead
/// writer's staging directory with a tmpfs inside, or that is itself a mount
/// point, loses nothing of the tmpfs, and a dead pid's piece that a live
/// process holds a flock on stays; the rest goes.
#[test]
fn the_debris_sweep_crosses_no_mount_point_and_honours_live_flocks() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let dead = dead_pid();
    let inside = root.join(format!("{KEY}.tmp.{dead}"));
    let on_top = root.join(format!("ext4-64m-0011223344556677.tmp.{dead}"));
    fs::create_dir_all(inside.join("mnt")).unwrap();
    fs::create_dir_all(&on_top).unwrap();
    let mount = |at: &std::path::Path| {
        nix::unistd::geteuid().is_root()
            && Command::new("mount")
                .args(["-t", "tmpfs", "tmpfs"])
                .arg(at)
                .status()
                .is_ok_and(|s| s.success())
    };
    if !prerequisite(
        "root, to mount a tmpfs",
        mount(&inside.join("mnt")) && mount(&on_top),
    ) {
        let _ = Command::new("umount").arg(inside.join("mnt")).status();
        return;
    }
    fs::write(inside.join("mnt").join("data"), b"precious").unwrap();
    fs::write(on_top.join("data"), b"precious").unwrap();
    let held = root.join(format!(".per-test-{dead}-1-2.img"));
    fs::write(&held, b"x").unwrap();
    let holder = crate::support::FlockHolder::exclusive(&held);
    let gone: Vec<_> = (0..50)
        .map(|i| {
            let p = root.join(format!(".per-test-{dead}-{i:x}-0.img"));
            fs::write(&p, b"x").unwrap();
            p
        })
        .collect();

    let out = ktstr(root, &["clean"]);
    let data = [
        fs::read(inside.join("mnt").join("data")),
        fs::read(on_top.join("data")),
    ];
    let _ = Command::new("umount").arg(inside.join("mnt")).status();
    let _ = Command::new("umount").arg(&on_top).status();
    for d in data {
        assert_eq!(d.unwrap(), b"precious");
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(held.exists(), "a piece under a live flock went");
    let text = crate::support::stdout(&out);
    assert!(
        text.contains(&format!("flock is held by pid {}", holder.pid())),
        "{text}"
    );
    assert!(gone.iter().all(|p| !p.exists()));
    assert!(inside.exists() && on_top.exists());
}

/// A home directory holding `<key>/thesis.tex` (and a staging-shaped
/// directory of the user's): `clean --all` says neither is ours and keeps
/// both byte for byte, makes no `.locks`, and a build of that very key
/// refuses before any work instead of replacing the user's directory.
fn a_users_key_named_directory_survives(
    run: &dyn Fn(&Path, &[&str]) -> std::process::Output,
    root: &Path,
) {
    let key = crate::support::current_key(Filesystem::Ext4, 128);
    let thesis = root.join(&key).join("thesis.tex");
    fs::create_dir(root.join(&key)).unwrap();
    fs::write(&thesis, b"\\chapter{One}").unwrap();
    let staging = root.join(format!("{key}.tmp.{}", dead_pid()));
    fs::create_dir(&staging).unwrap();
    fs::write(staging.join("draft.tex"), b"draft").unwrap();

    for args in [
        &["clean", "--all"][..],
        &["clean", "--all", "--dry-run"],
        &["clean"],
    ] {
        let out = run(root, args);
        let text = crate::support::stdout(&out);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        if args.len() > 1 {
            assert!(
                text.contains(&format!(
                    "skipped {key}: not an entry: it holds `thesis.tex`, which this tool never writes"
                )),
                "{args:?}: {text}"
            );
        }
        assert!(
            text.contains("not debris: it holds `draft.tex`"),
            "{args:?}: {text}"
        );
        assert_eq!(fs::read(&thesis).unwrap(), b"\\chapter{One}");
        assert_eq!(fs::read(staging.join("draft.tex")).unwrap(), b"draft");
        assert!(!root.join(".locks").exists(), "{args:?} made .locks");
    }

    let list = crate::support::stdout(&run(root, &["template", "list"]));
    assert!(
        list.contains("not an entry: it holds `thesis.tex`"),
        "{list}"
    );

    let out = run(
        root,
        &["template", "build", "--fs", "ext4", "--capacity", "128M"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not a template entry: it holds `thesis.tex`")
            && err.contains("Move it out of the cache root"),
        "{err}"
    );
    assert_eq!(fs::read(&thesis).unwrap(), b"\\chapter{One}");
    assert_eq!(fs::read_dir(root.join(&key)).unwrap().count(), 1);
}

#[test]
fn clean_all_keeps_a_users_directory_that_merely_has_a_key_shaped_name() {
    let dir = tempfile::tempdir().unwrap();
    a_users_key_named_directory_survives(&|root, args| ktstr(root, args), dir.path());
}

/// The same, as a real unprivileged user on a root in their home.
#[test]
fn unprivileged_clean_all_keeps_a_users_key_named_directory() {
    let Some(alice) = crate::support::users::User::get(crate::support::users::ALICE) else {
        return;
    };
    let home = alice.fresh_dir("misdirected");
    let run = |root: &Path, args: &[&str]| {
        alice
            .ktstr()
            .arg("--cache-dir")
            .arg(root)
            .args(args)
            .output()
            .unwrap()
    };
    // The user's own files, as they would have made them.
    let owned = |root: &Path| {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", alice.uid, alice.gid))
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let root = home.clone();
    let run_owned = |root: &Path, args: &[&str]| {
        owned(root);
        run(root, args)
    };
    a_users_key_named_directory_survives(&run_owned, &root);
    let _ = fs::remove_dir_all(&home);
}
