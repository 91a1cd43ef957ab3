//! Self-heal: a build on a loop filesystem filled with entries evicts the
//! least recently used ones nobody holds, then succeeds.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use cargo_ktstr::cache::ensure::{EnsureOptions, HostMkfsBuilder, ensure_template};
use cargo_ktstr::cache::filesystem::Filesystem;
use cargo_ktstr::cache::key::Capacity;
use cargo_ktstr::cache::lookup::{self, Entry};

use crate::loopfs::LoopFs;
use crate::util::{FlockHolder, magic_image};

/// An entry with `mib` MiB allocated, last used `ago_secs` ago.
fn entry(root: &Path, i: u64, mib: usize, ago_secs: u64) -> String {
    let name = format!("ext4-64m-{i:016x}");
    let dir = root.join(&name);
    fs::create_dir_all(&dir).unwrap();
    magic_image(&dir.join("template.img"), Filesystem::Ext4, 64, mib << 20);
    let t = SystemTime::now() - Duration::from_secs(ago_secs);
    fs::File::open(&dir).unwrap().set_modified(t).unwrap();
    name
}

/// Writes `path` until the filesystem refuses.
fn fill(path: &Path) {
    let mut file = fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    while file
        .write_all(&chunk[..4096])
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
}

fn names(root: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_build_on_a_full_disk_evicts_the_least_recently_used_unheld_entries_and_succeeds() {
    for evict in [false, true] {
        let Some(mnt) = LoopFs::new("ext4", 256) else {
            return;
        };
        let root = mnt.path().join("cache");
        fs::create_dir(&root).unwrap();
        // Oldest first; the oldest is held by a cloner.
        let e: Vec<String> = (0..5)
            .map(|i| entry(&root, i, 30, 1000 * (5 - i)))
            .collect();
        fs::create_dir_all(root.join(".locks")).unwrap();
        let held = FlockHolder::shared(&root.join(".locks").join(format!("{}.lock", e[0])));
        fill(&mnt.path().join("filler"));
        let before = names(&root);

        let opts = EnsureOptions {
            evict,
            ..EnsureOptions::default()
        };
        let cap = Capacity::from_mib(64).unwrap();
        let built = ensure_template(&root, Filesystem::Ext4, cap, &HostMkfsBuilder, &opts);
        if !evict {
            let err = format!("{:#}", built.unwrap_err());
            assert!(err.contains("cargo ktstr clean --min-free"), "{err}");
            assert_eq!(names(&root), before, "nothing may go without eviction");
            continue;
        }
        let built = built.unwrap();
        assert!(matches!(
            lookup::lookup(&root, &built.key).unwrap(),
            Entry::Valid(_)
        ));
        let left = names(&root);
        assert!(left.contains(&e[0]), "the held entry went: {left:?}");
        assert!(
            left.contains(&e[4]),
            "the most recently used went: {left:?}"
        );
        // What went is a prefix of the unheld entries, oldest first.
        let gone: Vec<_> = e[1..].iter().filter(|n| !left.contains(n)).collect();
        assert!(!gone.is_empty());
        assert_eq!(gone, e[1..=gone.len()].iter().collect::<Vec<_>>());
        // Nothing half-written: only entries and .locks.
        assert!(
            left.iter()
                .all(|n| n == ".locks" || n.starts_with("ext4-64m-")),
            "{left:?}"
        );
        drop(held);
    }
}
