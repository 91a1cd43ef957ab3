//! Self-heal: a build on a loop filesystem filled with entries evicts the
//! least recently used ones nobody holds, then succeeds.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cargo_ktstr::testing::cache::ensure::{EnsureOptions, Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::cache::lookup::{self, Entry};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use cargo_ktstr::testing::cache::clone::Reflink;

use crate::support::images::fill_disk;
use crate::support::loopfs::LoopFs;
use crate::support::{
    FlockHolder, ext4_64m, guest_prerequisites, ktstr_cmd, magic_image, names, stderr,
};

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
        fill_disk(&mnt.path().join("filler"));
        let before = names(&root);

        let at = Ensurer::new(&root, &HostMkfsBuilder).with_options(EnsureOptions {
            evict,
            ..EnsureOptions::default()
        });
        let cap = Capacity::from_mib(64).unwrap();
        let built = at.ensure(Filesystem::Ext4, cap);
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

/// A full loop ext4 with five ~30 MiB entries, the oldest held by a cloner.
struct Full {
    mnt: LoopFs,
    entries: Vec<String>,
    _held: FlockHolder,
}

impl Full {
    fn new() -> Option<Full> {
        let mnt = LoopFs::new("ext4", 256)?;
        let root = mnt.path().join("cache");
        fs::create_dir(&root).unwrap();
        let entries: Vec<String> = (0..5)
            .map(|i| entry(&root, i, 30, 1000 * (5 - i)))
            .collect();
        fs::create_dir_all(root.join(".locks")).unwrap();
        let held = FlockHolder::shared(&root.join(".locks").join(format!("{}.lock", entries[0])));
        Some(Full {
            mnt,
            entries,
            _held: held,
        })
    }

    fn root(&self) -> std::path::PathBuf {
        self.mnt.path().join("cache")
    }

    fn fill(&self) {
        fill_disk(&self.mnt.path().join("filler"));
    }
}

/// `template build` in a real guest on a full disk: the guest's formatter
/// sees I/O errors, the build makes room, boots again and succeeds, and
/// stderr says what went; with `--no-evict` it fails naming the fix.
#[test]
fn a_guest_build_on_a_full_disk_heals_and_says_what_it_removed() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    for evict in [false, true] {
        let Some(full) = Full::new() else { return };
        let root = full.root();
        // A real template to build, whose key differs from the fakes'.
        full.fill();
        let mut cmd = ext4_64m(ktstr_cmd(&root), "build");
        cmd.args(["--timeout", "60", "--kernel"]).arg(&kernel);
        if !evict {
            cmd.arg("--no-evict");
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        if !evict {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains("cargo ktstr clean --min-free"), "{err}");
            assert!(full.entries.iter().all(|e| root.join(e).exists()));
            continue;
        }
        assert!(out.status.success(), "{err}");
        assert!(err.contains("was full: removed"), "{err}");
        assert!(
            err.contains(&full.entries[1]),
            "the oldest unheld entry is not named: {err}"
        );
        assert!(root.join(&full.entries[0]).exists() && root.join(&full.entries[4]).exists());
        let left = names(&root);
        assert!(
            left.iter()
                .all(|n| n == ".locks" || n.starts_with("ext4-64m-")),
            "{left:?}"
        );
    }
}

/// A sparse copy (ext4 cannot reflink) into the full cache filesystem: the
/// clone makes room by evicting, never the template it copies, and the copy
/// equals the template.
#[test]
fn a_clone_on_a_full_disk_evicts_others_but_never_its_template() {
    let Some(full) = Full::new() else { return };
    let root = full.root();
    let cap = Capacity::from_mib(64).unwrap();
    let at = Ensurer::new(&root, &HostMkfsBuilder);
    let built = at.ensure(Filesystem::Ext4, cap).unwrap();
    // The template is now the most recently used; make it the least.
    let dir = built.path.parent().unwrap();
    fs::File::open(dir)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    full.fill();
    let dest = full.mnt.path().join("clone.img");
    let cloned = at.clone_to(Filesystem::Ext4, cap, &dest, Reflink::Auto);
    let cloned = cloned.unwrap();
    assert_eq!(
        fs::read(&dest).unwrap(),
        fs::read(&cloned.ensured.path).unwrap()
    );
    let left = names(&root);
    assert!(
        left.contains(&built.key.to_string()),
        "the template at work went: {left:?}"
    );
    assert!(left.contains(&full.entries[0]), "the held entry went");
    assert!(
        !left.contains(&full.entries[1]),
        "the least recently used unheld entry stayed"
    );
}
