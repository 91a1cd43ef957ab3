//! `clean`, `clean --all`, `clean --stale`: real dead and live pids, real
//! flocks held by child processes, every debris shape.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::loopfs::LoopFs;
use crate::support::{
    FlockHolder, LiveProcess, current_key, dead_pid, ktstr, ktstr_ok, magic_image, mkfs_image,
    prerequisite, stderr,
};

const KEY: &str = "btrfs-256m-a1b2c3d4e5f6a7b8";
const OTHER_KEY: &str = "ext4-64m-0011223344556677";

/// A published entry with a real allocated image carrying `fs`'s magic.
fn publish(root: &Path, key: &str) {
    let fs: Filesystem = key.split('-').next().unwrap().parse().unwrap();
    fs::create_dir_all(root.join(key)).unwrap();
    magic_image(&root.join(key).join("template.img"), fs, 256, 64 << 10);
}

/// Every path under `root` (not following links) with its type, size and
/// mtime: equal snapshots mean nothing changed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64)> {
    let mut all = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        let entry = (meta.mode(), meta.size(), meta.mtime(), meta.mtime_nsec());
        all.insert(path, entry);
    }
    all
}

/// Debris of one dead and one live owner in every shape, plus a symlink, a
/// FIFO and a directory-symlink named like debris. Returns the names that a
/// plain `clean` must remove.
fn lay_debris(root: &Path, dead: u32, live: u32, outside: &Path) -> Vec<String> {
    let dead_in_flight = format!("template.img.in-flight.{KEY}.{dead}");
    let dead_staging = format!("{KEY}.tmp.{dead}");
    let dead_per_test = format!(".per-test-{dead}-123-abc.img");
    let link = format!(".per-test-{dead}-456-def.img");
    let dir_link = format!("{OTHER_KEY}.tmp.{dead}");
    let fifo = format!("template.img.in-flight.{OTHER_KEY}.{dead}");
    fs::write(root.join(&dead_in_flight), vec![1u8; 1 << 20]).unwrap();
    fs::create_dir(root.join(&dead_staging)).unwrap();
    fs::write(root.join(&dead_staging).join("template.img"), b"x").unwrap();
    fs::write(root.join(&dead_per_test), b"x").unwrap();
    symlink(outside.join("file"), root.join(&link)).unwrap();
    symlink(outside, root.join(&dir_link)).unwrap();
    nix::unistd::mkfifo(&root.join(&fifo), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fs::write(
        root.join(format!("template.img.in-flight.{KEY}.{live}")),
        b"x",
    )
    .unwrap();
    fs::create_dir(root.join(format!("{KEY}.tmp.{live}"))).unwrap();
    fs::write(root.join(format!(".per-test-{live}-1-2.img")), b"x").unwrap();
    // A pid field that is not a positive number: never touched.
    fs::write(root.join(format!("template.img.in-flight.{KEY}.0")), b"x").unwrap();
    vec![
        dead_in_flight,
        dead_staging,
        dead_per_test,
        link,
        dir_link,
        fifo,
    ]
}

fn outside_dir() -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("file"), b"precious").unwrap();
    outside
}

#[test]
fn clean_removes_only_dead_owners_debris_and_never_follows_links() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let outside = outside_dir();
    let live = LiveProcess::spawn();
    let removed = lay_debris(root, dead_pid(), live.pid(), outside.path());
    publish(root, KEY);
    fs::create_dir(root.join(".locks")).unwrap();
    fs::write(root.join(".locks").join(format!("{KEY}.lock")), b"").unwrap();
    let before = snapshot(root);

    let out = ktstr(root, &["-v", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(stdout.contains("removed 6 debris entries ("), "{stdout}");
    assert!(stdout.contains("kept 3 in use"), "{stdout}");
    assert!(stdout.contains(&format!("owner pid {} is alive", live.pid())));
    assert!(
        stdout.contains("pid field is not a positive number"),
        "{stdout}"
    );
    for name in &removed {
        assert!(
            fs::symlink_metadata(root.join(name)).is_err(),
            "{name} left"
        );
        assert!(
            stdout.contains(&format!("removed {name} (")),
            "no -v line for {name}: {stdout}"
        );
    }
    // Everything else is as it was (the root's own mtime aside); the links'
    // targets survive.
    let mut expected = before;
    expected
        .retain(|path, _| path != root && !removed.iter().any(|n| path.starts_with(root.join(n))));
    let mut after = snapshot(root);
    after.remove(root);
    assert_eq!(after, expected);
    assert_eq!(fs::read(outside.path().join("file")).unwrap(), b"precious");
}

#[test]
fn dead_debris_whose_flock_a_live_process_holds_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let dead = dead_pid();
    let image = root.join(format!("template.img.in-flight.{KEY}.{dead}"));
    let staging = root.join(format!("{KEY}.tmp.{dead}"));
    fs::write(&image, b"x").unwrap();
    fs::create_dir(&staging).unwrap();
    let holders = [
        FlockHolder::exclusive(&image),
        FlockHolder::exclusive(&staging),
    ];

    let stdout = ktstr_ok(root, &["clean"]);
    assert!(image.exists() && staging.exists());
    for holder in &holders {
        let want = format!(
            "owner pid {dead} is gone but its flock is held by pid {}",
            holder.pid()
        );
        assert!(stdout.contains(&want), "{stdout}");
    }
    assert!(stdout.starts_with("kept ") && stdout.contains("removed 0 debris entries"));

    drop(holders);
    let stdout = ktstr_ok(root, &["clean"]);
    assert!(stdout.contains("removed 2 debris entries"), "{stdout}");
    assert!(!image.exists() && !staging.exists());
}

#[test]
fn clean_all_keeps_entries_in_use_and_never_deletes_lockfiles() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    publish(root, KEY);
    publish(root, OTHER_KEY);
    publish(root, "xfs-300m-ffffffffffffffff");
    fs::create_dir(root.join(".locks")).unwrap();
    let lock = |key: &str| root.join(".locks").join(format!("{key}.lock"));
    // A builder (exclusive) and a cloner (shared) each hold one entry.
    let builder = FlockHolder::exclusive(&lock(KEY));
    let cloner = FlockHolder::shared(&lock(OTHER_KEY));
    fs::write(root.join(format!(".per-test-{}-1-2.img", dead_pid())), b"x").unwrap();

    let stdout = ktstr_ok(root, &["clean", "--all"]);
    assert!(
        stdout.contains(&format!("kept {KEY}: in use by pid {}", builder.pid())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("kept {OTHER_KEY}: in use by pid {}", cloner.pid())));
    assert!(
        stdout.contains("removed 1 template and 1 debris entry (")
            && stdout.contains("kept 2 in use"),
        "{stdout}"
    );
    assert!(root.join(KEY).join("template.img").exists());
    assert!(root.join(OTHER_KEY).join("template.img").exists());
    assert!(!root.join("xfs-300m-ffffffffffffffff").exists());

    drop((builder, cloner));
    let stdout = ktstr_ok(root, &["clean", "--all"]);
    assert!(
        stdout.contains("removed 2 templates and 0 debris entries"),
        "{stdout}"
    );
    let mut left: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, [".locks"]);
    for key in [KEY, OTHER_KEY, "xfs-300m-ffffffffffffffff"] {
        assert!(lock(key).is_file(), "lockfile of {key} deleted");
    }
}

#[test]
fn clean_all_creates_locks_and_refuses_a_locks_that_is_not_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    publish(root, KEY);
    // A `.locks` that is a symlink could lead lockfiles out of the root.
    let outside = outside_dir();
    symlink(outside.path(), root.join(".locks")).unwrap();
    let stdout = ktstr_ok(root, &["clean", "--all"]);
    assert!(stdout.contains("is not a directory") && stdout.contains("no entry was removed"));
    assert!(root.join(KEY).exists());
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);

    fs::remove_file(root.join(".locks")).unwrap();
    let stdout = ktstr_ok(root, &["clean", "--all"]);
    assert!(stdout.contains("removed 1 template"), "{stdout}");
    assert!(root.join(".locks").join(format!("{KEY}.lock")).is_file());
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let outside = outside_dir();
    let live = LiveProcess::spawn();
    let removable = lay_debris(root, dead_pid(), live.pid(), outside.path());
    publish(root, KEY);
    publish(root, "btrfs-256m-0000000000000000");
    let before = snapshot(root);
    for args in [
        &["clean", "--dry-run"][..],
        &["clean", "--all", "--dry-run"],
        &["clean", "--stale", "--dry-run"],
    ] {
        let stdout = ktstr_ok(root, args);
        for name in &removable {
            assert!(
                stdout.contains(&format!("would remove {name} (")),
                "{args:?}: {stdout}"
            );
        }
        assert!(
            stdout.contains("would remove 6 debris entries")
                || stdout.contains("and 6 debris entries")
        );
        assert_eq!(snapshot(root), before, "{args:?} changed the cache");
    }
    let all = ktstr_ok(root, &["clean", "--all", "--dry-run"]);
    assert!(
        all.contains("would remove 2 templates and 6 debris entries ("),
        "{all}"
    );
    assert!(!root.join(".locks").exists(), "a dry run created .locks");
}

#[test]
fn json_is_one_document_with_removed_kept_skipped_and_totals() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    publish(root, KEY);
    publish(root, OTHER_KEY);
    fs::create_dir(root.join(".locks")).unwrap();
    let holder = FlockHolder::exclusive(&root.join(".locks").join(format!("{KEY}.lock")));
    let dead = dead_pid();
    fs::write(
        root.join(format!(".per-test-{dead}-1-2.img")),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    fs::write(root.join("template.img.in-flight.k.x"), b"").unwrap();

    let doc: Value = serde_json::from_str(&ktstr_ok(root, &["clean", "--all", "--json"])).unwrap();
    assert_eq!(doc["mode"], "all");
    assert_eq!(doc["dry_run"], false);
    let removed = doc["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 2, "{doc:#}");
    let per_test = removed.iter().find(|r| r["kind"] == "per-test").unwrap();
    assert_eq!(
        per_test["path"],
        root.join(format!(".per-test-{dead}-1-2.img"))
            .to_str()
            .unwrap()
    );
    assert!(per_test["bytes"].as_u64().unwrap() >= 1 << 20);
    let template = removed.iter().find(|r| r["kind"] == "template").unwrap();
    assert_eq!(template["path"], root.join(OTHER_KEY).to_str().unwrap());
    assert!(template["bytes"].as_u64().unwrap() >= 64 << 10);
    let kept = &doc["kept"][0];
    assert_eq!(kept["path"], root.join(KEY).to_str().unwrap());
    assert_eq!(kept["pid"], holder.pid());
    assert_eq!(
        kept["reason"],
        format!("in use by pid {} (root)", holder.pid())
    );
    assert_eq!(
        doc["skipped"][0]["path"],
        root.join("template.img.in-flight.k.x").to_str().unwrap()
    );
    let totals = &doc["totals"];
    assert_eq!(totals["removed_templates"], 1);
    assert_eq!(totals["removed_debris"], 1);
    assert_eq!(totals["kept_in_use"], 1);
    assert_eq!(totals["skipped"], 1);
    assert_eq!(totals["failed"], 0);
    let sum: u64 = removed.iter().map(|r| r["bytes"].as_u64().unwrap()).sum();
    assert_eq!(totals["removed_bytes"], sum);
}

#[test]
fn clean_stale_removes_only_entries_of_another_formatter_version() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let current = current_key(Filesystem::Ext4, 16);
    fs::create_dir(root.join(&current)).unwrap();
    if !mkfs_image(
        &root.join(&current).join("template.img"),
        Filesystem::Ext4,
        16,
    ) {
        return;
    }
    let stale = "ext4-16m-0000000000000000";
    let stale_in_use = "ext4-32m-0000000000000000";
    publish(root, stale);
    publish(root, stale_in_use);
    fs::create_dir(root.join("not-a-key")).unwrap();
    fs::create_dir(root.join(".locks")).unwrap();
    let holder = FlockHolder::shared(&root.join(".locks").join(format!("{stale_in_use}.lock")));

    let stdout = ktstr_ok(root, &["clean", "--stale"]);
    assert!(
        stdout.contains("removed 1 stale template and 0 debris entries")
            && stdout.contains("kept 1 in use"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("in use by pid {}", holder.pid())));
    assert!(stdout.contains("skipped not-a-key: not named like a template key"));
    assert!(!root.join(stale).exists());
    for kept in [current.as_str(), stale_in_use, "not-a-key"] {
        assert!(root.join(kept).exists(), "{kept} removed");
    }
}

#[test]
fn a_missing_root_is_empty_and_an_unreadable_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ktstr_ok(&dir.path().join("missing"), &["clean", "--all"]);
    assert_eq!(
        stdout,
        "removed 0 templates and 0 debris entries (0 B freed)\n"
    );
    assert!(!dir.path().join("missing").exists());

    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let out = ktstr(&file, &["clean"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed to read the cache root"),
        "{}",
        stderr(&out)
    );
}

/// Makes a file impossible to unlink, even for root, until dropped.
pub(crate) struct Immutable(PathBuf);

impl Immutable {
    pub(crate) fn set(path: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        prerequisite("chattr +i (root, on ext4, xfs, btrfs or tmpfs)", ok)
            .then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_piece_that_cannot_be_removed_is_a_warning_and_the_sweep_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let dead = dead_pid();
    let stuck = root.join(format!("{KEY}.tmp.{dead}"));
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("template.img"), b"x").unwrap();
    let Some(_immutable) = Immutable::set(&stuck.join("template.img")) else {
        return;
    };
    let gone = root.join(format!(".per-test-{dead}-1-2.img"));
    fs::write(&gone, b"x").unwrap();

    let out = ktstr(root, &["clean", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("could not remove `{}`", stuck.display())));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["failed"][0]["path"], stuck.to_str().unwrap());
    let error = doc["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("lsattr"), "{error}");
    assert_eq!(doc["totals"]["removed_debris"], 1);
    assert!(!gone.exists() && stuck.exists());
    let text = ktstr_ok(root, &["clean"]);
    assert!(
        text.contains("failed to remove 1 (see the errors above)"),
        "{text}"
    );
}

#[test]
fn freed_space_leaves_out_blocks_a_reflink_clone_still_shares() {
    let Some(mount) = LoopFs::new(Filesystem::Btrfs.name(), 512) else {
        return;
    };
    let root = mount.path().to_owned();
    publish(&root, KEY);
    let template = root.join(KEY).join("template.img");
    fs::write(&template, vec![0x5a; 64 << 20]).unwrap();
    let dead = dead_pid();
    // A per-test clone shares all its blocks with the template; the staging
    // image owns its own.
    let clone = root.join(format!(".per-test-{dead}-1-2.img"));
    let out = Command::new("cp")
        .arg("--reflink=always")
        .arg(&template)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(
        root.join(format!("template.img.in-flight.{KEY}.{dead}")),
        vec![0xa5; 32 << 20],
    )
    .unwrap();
    Command::new("sync").status().unwrap();

    let doc: Value = serde_json::from_str(&ktstr_ok(&root, &["clean", "--json"])).unwrap();
    let totals = &doc["totals"];
    assert_eq!(totals["removed_debris"], 2, "{doc:#}");
    let removed = totals["removed_bytes"].as_u64().unwrap();
    let freed = totals["freed_bytes"].as_u64().unwrap();
    assert!(removed >= 96 << 20, "{doc:#}");
    assert!(
        (24 << 20..48 << 20).contains(&freed),
        "freed {freed} of {removed}"
    );
    assert!(template.exists());
}
