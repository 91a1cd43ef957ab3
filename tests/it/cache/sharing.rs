//! One cache, several real users: a private root no other user can lock, a
//! shared 1777 root whose entries everyone it admits can read whatever the
//! writer's umask, and "not yours" said before any work.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::users::{ALICE, BOB, User};
use crate::support::{current_key, populate, stderr, stdout};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

fn chown(path: &Path, user: &User) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The binary as `user` on `root`, under `umask`.
fn run(user: &User, umask: &str, root: &Path, args: &[&str]) -> Output {
    user.command("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(crate::support::users::shared_bin())
        .arg("--cache-dir")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// `flock -n` on `path` as `user`: whether it could take the lock.
fn can_flock(user: &User, path: &Path) -> bool {
    user.command("flock")
        .args(["-n", "-x"])
        .arg(path)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

/// Alice's own 0755 root in her home: Bob can neither lock one of its keys
/// (and so block her `--force` and `clean --all`) nor record a use in it;
/// a lockfile left 0666 by an older tool is made private at her next use.
#[test]
fn unprivileged_a_private_root_cannot_be_locked_by_another_user() {
    let (Some(alice), Some(bob)) = (User::get(ALICE), User::get(BOB)) else {
        return;
    };
    let root = alice.fresh_dir("private-cache");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    populate(&root, Filesystem::Ext4, 64);
    let key = current_key(Filesystem::Ext4, 64);
    let lockfile = root.join(".locks").join(format!("{key}.lock"));
    fs::set_permissions(&lockfile, fs::Permissions::from_mode(0o666)).unwrap();
    chown(&root, &alice);

    let list = run(&alice, "022", &root, &["template", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let dest = alice.home.join("private-clone.img");
    let out = run(
        &alice,
        "022",
        &root,
        &["template", "clone", "--fs", "ext4", "--capacity", "64M"]
            .iter()
            .copied()
            .chain([dest.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        mode(&lockfile),
        0o600,
        "a private root's lockfile stays open to all"
    );

    assert!(
        !can_flock(&bob, &lockfile),
        "bob locked a key of alice's private root"
    );
    let theirs = bob.home.join("bob-clone.img");
    let out = run(
        &bob,
        "022",
        &root,
        &[
            "template",
            "clone",
            "--fs",
            "ext4",
            "--capacity",
            "64M",
            theirs.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("another user"), "{}", stderr(&out));

    let out = run(&alice, "022", &root, &["clean", "--all"]);
    assert!(
        stdout(&out).contains("removed 1 template"),
        "{}",
        stdout(&out)
    );
    let _ = fs::remove_dir_all(&root);
    let _ = fs::remove_file(&dest);
}

/// A 1777 root an admin made, `.locks` with it: Bob builds under a 077
/// umask and publishes an entry Alice can read and clone; Alice's
/// `--force` fails before any boot naming Bob, her `clean --all` (and its
/// dry run) says it cannot remove his entry and why, and a lock Bob holds
/// is named with his user.
#[test]
fn unprivileged_two_users_share_a_guest_built_template_in_a_sticky_root_one_with_a_strict_umask() {
    let (Some(alice), Some(bob)) = (User::get(ALICE), User::get(BOB)) else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = base.path().join("shared");
    fs::create_dir_all(root.join(".locks")).unwrap();
    for dir in [root.clone(), root.join(".locks")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let key = current_key(Filesystem::Btrfs, 256);

    // A real guest build, as Bob would run it.
    let out = run(&bob, "077", &root, &["template", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = root.join(&key);
    assert_eq!(fs::metadata(&entry).unwrap().uid(), bob.uid);
    assert_eq!(mode(&entry), 0o755);
    assert_eq!(mode(&entry.join("template.img")), 0o644);
    assert_eq!(
        mode(&root.join(".locks").join(format!("{key}.lock"))),
        0o666
    );

    let dest = alice.home.join("shared-clone.img");
    let _ = fs::remove_file(&dest);
    let out = run(
        &alice,
        "022",
        &root,
        &["template", "clone", dest.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(&alice, "022", &root, &["template", "build", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("belongs to ktstr-bob") && err.contains("sticky"),
        "{err}"
    );
    assert!(
        !err.contains("Booting") && !err.contains("Formatted"),
        "{err}"
    );

    let dry = run(&alice, "022", &root, &["clean", "--all", "--dry-run"]);
    let text = stdout(&dry) + &stderr(&dry);
    assert!(
        text.contains("a real run could not remove") && text.contains("belongs to ktstr-bob"),
        "{text}"
    );
    assert!(text.contains("could not remove 1"), "{text}");
    let real = run(&alice, "022", &root, &["clean", "--all"]);
    let text = stdout(&real) + &stderr(&real);
    assert!(
        text.contains("failed to remove 1") && text.contains("belongs to ktstr-bob"),
        "{text}"
    );
    assert!(entry.join("template.img").exists());

    // Bob holds the key: Alice's sweep names him.
    let mut holder = bob
        .command("flock")
        .args(["-s", "-o"])
        .arg(root.join(".locks").join(format!("{key}.lock")))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let lock = root.join(".locks").join(format!("{key}.lock"));
    let taken = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        !can_flock(&alice, &lock)
    });
    assert!(taken, "bob's flock never showed");
    let list = run(&alice, "022", &root, &["template", "list"]);
    assert!(stdout(&list).contains("(ktstr-bob)"), "{}", stdout(&list));
    let _ = holder.kill();
    let _ = holder.wait();

    // An entry made 0700 elsewhere: one short row, not a page of error.
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o700)).unwrap();
    let list = run(&alice, "022", &root, &["template", "list"]);
    let table = stdout(&list);
    let row = table.lines().find(|l| l.contains(&key)).unwrap();
    assert!(
        row.contains("unreadable to you: owned by ktstr-bob, mode 0700"),
        "{table}"
    );
    assert!(row.len() < 200, "{row}");

    let out = run(&bob, "077", &root, &["clean", "--all"]);
    assert!(
        stdout(&out).contains("removed 1 template"),
        "{}",
        stdout(&out)
    );
    let _ = fs::remove_file(&dest);
}

/// The quick start as a plain user: a cache in her home, Debian's kernel
/// from /boot, no kvm group; then the list, a clone hit, the budgets and
/// `clean --all`, all as her.
#[test]
fn unprivileged_quick_start_guest_build_list_budgets_and_clean_in_a_home_cache() {
    let Some(alice) = User::get(ALICE) else {
        return;
    };
    let home = alice.fresh_dir("quick-start");
    let cache = home.join("cache");
    let as_alice = |args: &[&str]| {
        alice
            .ktstr()
            .env("KTSTR_CACHE_DIR", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    let first = home.join("disk.img");
    let out = as_alice(&["template", "clone", first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::metadata(&first).unwrap().uid(), alice.uid);
    let key = current_key(Filesystem::Btrfs, 256);
    let entry = cache.join("disk_templates").join(&key);
    assert_eq!(fs::metadata(&entry).unwrap().uid(), alice.uid);

    let second = home.join("disk2.img");
    let out = as_alice(&["-v", "template", "clone", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Booting"),
        "a hit booted: {}",
        stderr(&out)
    );

    let list = as_alice(&["template", "list"]);
    assert!(stdout(&list).contains(&key), "{}", stdout(&list));
    let out = as_alice(&["clean", "--older-than", "1d", "--max-size", "1G"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(entry.exists(), "a budget it fits removed it");
    let out = as_alice(&["clean", "--max-size", "0"]);
    assert!(
        stdout(&out).contains("removed 1 template"),
        "{}",
        stdout(&out)
    );
    assert!(!entry.exists());
    let out = as_alice(&["clean", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = fs::remove_dir_all(&home);
}
