//! `template list`: every state, the debris count, JSON, and that listing
//! never takes a lock a builder could trip on.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::{
    FlockHolder, LiveProcess, current_key, dead_pid, ktstr_ok, magic_image, mkfs_image,
};

/// The table row of `name`.
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
}

/// A cache with one entry in every state, debris of each shape, and a child
/// holding the lock of the in-use entry. Returns the keys and the holder.
fn lay_out(root: &Path) -> Option<(String, FlockHolder, LiveProcess)> {
    let ok = current_key(Filesystem::Ext4, 16);
    fs::create_dir(root.join(&ok)).unwrap();
    if !mkfs_image(&root.join(&ok).join("template.img"), Filesystem::Ext4, 16) {
        return None;
    }
    let in_use = current_key(Filesystem::Ext4, 32);
    fs::create_dir(root.join(&in_use)).unwrap();
    magic_image(
        &root.join(&in_use).join("template.img"),
        Filesystem::Ext4,
        32,
        4096,
    );
    fs::create_dir(root.join("ext4-16m-0000000000000000")).unwrap();
    let stale = root.join("ext4-16m-0000000000000000").join("template.img");
    magic_image(&stale, Filesystem::Ext4, 16, 4096);
    // Zero-filled: the right size, no superblock magic.
    fs::create_dir(root.join("btrfs-256m-1111111111111111")).unwrap();
    let zeroes = fs::File::create(
        root.join("btrfs-256m-1111111111111111")
            .join("template.img"),
    )
    .unwrap();
    zeroes.set_len(256 << 20).unwrap();
    fs::create_dir(root.join("btrfs-256m-2222222222222222")).unwrap();
    fs::create_dir(root.join("scratch")).unwrap();
    fs::create_dir(root.join(".locks")).unwrap();
    let holder = FlockHolder::exclusive(&root.join(".locks").join(format!("{in_use}.lock")));
    let live = LiveProcess::spawn();
    let dead = dead_pid();
    fs::write(
        root.join(format!("template.img.in-flight.{ok}.{dead}")),
        vec![1u8; 1 << 20],
    )
    .unwrap();
    fs::create_dir(root.join(format!("{ok}.tmp.{dead}"))).unwrap();
    fs::write(root.join(format!(".per-test-{dead}-1-2.img")), b"x").unwrap();
    fs::write(root.join(format!(".per-test-{}-1-2.img", live.pid())), b"x").unwrap();
    Some((ok, holder, live))
}

#[test]
fn the_table_shows_every_state_and_counts_debris() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let Some((ok, holder, _live)) = lay_out(root) else {
        return;
    };
    let in_use = current_key(Filesystem::Ext4, 32);

    let started = Instant::now();
    let table = ktstr_ok(root, &["template", "list"]);
    // A held exclusive lock must not make listing wait.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(table.starts_with("KEY "), "{table}");
    let ok_row = row(&table, &ok);
    assert!(
        ok_row.contains(" ext4 ") && ok_row.contains("16 MiB") && ok_row.contains(" ok "),
        "{ok_row}"
    );
    let named = format!("in use by pid {} (root)", holder.pid());
    assert!(row(&table, &in_use).contains(&named), "{table}");
    assert!(row(&table, "ext4-16m-0000000000000000").contains(" stale "));
    assert!(
        row(&table, "btrfs-256m-1111111111111111").contains("invalid: no btrfs superblock magic")
    );
    assert!(
        row(&table, "btrfs-256m-2222222222222222").contains("invalid: template.img is missing")
    );
    assert!(row(&table, "scratch").contains("invalid: not a template key"));
    assert!(
        table.contains("debris: 1 staging image, 1 staging directory, 2 per-test images ("),
        "{table}"
    );
}

#[test]
fn json_lists_the_same_and_nothing_is_changed() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let Some((ok, holder, _live)) = lay_out(root) else {
        return;
    };
    let locks_before: Vec<_> = fs::read_dir(root.join(".locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let doc: Value =
        serde_json::from_str(&ktstr_ok(root, &["template", "list", "--json"])).unwrap();
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "{doc:#}");
    let entry = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap();
    let ok_entry = entry(&ok);
    assert_eq!(ok_entry["state"], "ok");
    assert_eq!(ok_entry["fs"], "ext4");
    assert_eq!(ok_entry["capacity_mib"], 16);
    assert_eq!(ok_entry["stale"], false);
    assert!(ok_entry["allocated_bytes"].as_u64().unwrap() > 0);
    assert!(ok_entry["age_secs"].as_u64().unwrap() < 3600);
    let in_use = entry(&current_key(Filesystem::Ext4, 32));
    assert_eq!(in_use["state"], "in-use");
    assert_eq!(in_use["holders"][0], holder.pid());
    assert_eq!(entry("ext4-16m-0000000000000000")["state"], "stale");
    assert_eq!(entry("btrfs-256m-1111111111111111")["state"], "invalid");
    let debris = &doc["debris"];
    assert_eq!(
        (debris["in_flight"].as_u64(), debris["staging_dir"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(debris["per_test"], 2);
    assert!(debris["bytes"].as_u64().unwrap() >= 1 << 20);
    // Listing created no lockfile and removed nothing.
    let locks_after: Vec<_> = fs::read_dir(root.join(".locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(locks_before, locks_after);
    assert!(root.join(&ok).join("template.img").exists());
}

#[test]
fn an_empty_or_missing_root_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = ktstr_ok(&missing, &["template", "list"]);
    assert!(out.starts_with("no templates in `"), "{out}");
    assert!(
        out.contains("debris: 0 staging images, 0 staging directories, 0 per-test images (0 B)")
    );
    assert!(!missing.exists());
}
