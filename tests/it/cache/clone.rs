//! `template clone` on real btrfs, xfs and ext4 filesystems mounted from loop
//! devices: constant-time reflinks, isolation, the ext4 fallback and its
//! refusal under `--reflink always`, and many cloners at once.

use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use cargo_ktstr::testing::cache::clone::{self, Method, Reflink};
use cargo_ktstr::testing::cache::ensure::{Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::cache::per_test::PerTestImage;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::loopfs::LoopFs;
use crate::support::{Spawned, ktstr_cmd, populate, shared_extents, stderr, stdout};

/// Whether two files hold the same bytes.
pub(crate) fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if n == 0 {
            return true;
        }
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn clone_cli(
    root: &Path,
    fs: &str,
    capacity: &str,
    reflink: &str,
    dest: &Path,
) -> std::process::Output {
    ktstr_cmd(root)
        .args([
            "-v",
            "template",
            "clone",
            "--fs",
            fs,
            "--capacity",
            capacity,
            "--reflink",
            reflink,
        ])
        .arg(dest)
        .output()
        .unwrap()
}

/// The target: under 50 ms for 4 GiB. Timed through the library so
/// process start and the fingerprint's mkfs run do not count; the median of
/// five keeps one slow run from failing it.
#[test]
fn a_4gib_template_clones_in_constant_time_on_btrfs_and_xfs() {
    for fs in ["btrfs", "xfs"] {
        let Some(disk) = LoopFs::new(fs, 1024) else {
            return;
        };
        let root = disk.path().join("cache");
        let template = populate(&root, fs.parse().unwrap(), 4096).path;
        let mut times: Vec<Duration> = (0..5)
            .map(|i| {
                let dest = disk.path().join(format!("clone{i}.img"));
                let start = Instant::now();
                let method = clone::clone_file(&template, &dest, Reflink::Always).unwrap();
                let took = start.elapsed();
                assert_eq!(method, Method::Reflink);
                took
            })
            .collect();
        times.sort();
        eprintln!(
            "{fs}: a 4 GiB template clones in {:?} (median of 5; all {times:?})",
            times[2]
        );
        assert!(times[2] < Duration::from_millis(50), "{fs}: {times:?}");

        let dest = disk.path().join("cli.img");
        let out = clone_cli(&root, fs, "4G", "always", &dest);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{}\n", dest.display()));
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), 4 << 30);
    }
}

/// Two clones: `mine` is scribbled on, `witness` proves the template kept
/// its bytes (a whole-image compare, not a checksum of a few blocks).
#[test]
fn a_clone_starts_byte_equal_and_never_changes_the_template() {
    for (fs, capacity) in [("btrfs", "256M"), ("xfs", "300M")] {
        let Some(disk) = LoopFs::new(fs, 1024) else {
            return;
        };
        let root = disk.path().join("cache");
        let mib = capacity.trim_end_matches('M').parse().unwrap();
        let template = populate(&root, fs.parse().unwrap(), mib).path;
        let (mine, witness) = (
            disk.path().join("mine.img"),
            disk.path().join("witness.img"),
        );
        for dest in [&mine, &witness] {
            let out = clone_cli(&root, fs, capacity, "auto", dest);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(!stderr(&out).contains("sparse copy"), "{fs} must reflink");
        }
        assert!(same_bytes(&template, &mine), "{fs}: clone differs at birth");

        let f = std::fs::OpenOptions::new().write(true).open(&mine).unwrap();
        let (magic_at, _) = Filesystem::Xfs.magic();
        for offset in [magic_at, 0x10040, 100 << 20] {
            f.write_all_at(b"scribbled over by a test", offset).unwrap();
        }
        f.sync_all().unwrap();
        assert!(!same_bytes(&template, &mine));
        assert!(
            same_bytes(&template, &witness),
            "{fs}: the template changed"
        );
    }
}

#[test]
fn per_test_images_on_btrfs_are_unnamed_reflinks() {
    let Some(disk) = LoopFs::new("btrfs", 512) else {
        return;
    };
    let root = disk.path().join("cache");
    let cap = Capacity::from_mib(256).unwrap();
    let at = Ensurer::new(&root, &HostMkfsBuilder);
    let img = PerTestImage::create(&at, Filesystem::Btrfs, cap).unwrap();
    assert!(!img.is_named());
    // A reflink: every extent shared with the template, before any write.
    let (extents, shared) = shared_extents(img.file());
    assert!(
        extents > 0 && shared == extents,
        "{shared} of {extents} shared"
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path())
        .unwrap();
    f.write_all(&[0u8; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    let template = root.join(img.key().to_string()).join("template.img");
    assert!(Filesystem::Btrfs.path_has_magic(&template).unwrap());
    let named = PerTestImage::create_named(&at, Filesystem::Btrfs, cap).unwrap();
    assert!(same_bytes(&template, &named.path()));
}

/// ext4 cannot reflink. The sparse copy skips unwritten extents too, so it
/// may allocate less than the template, never more (beyond a block or so).
#[test]
fn ext4_refuses_always_and_falls_back_to_a_sparse_copy_under_auto() {
    let Some(disk) = LoopFs::new("ext4", 1024) else {
        return;
    };
    let root = disk.path().join("cache");
    let template = populate(&root, Filesystem::Ext4, 1024).path;

    let refused = disk.path().join("refused.img");
    let out = clone_cli(&root, "ext4", "1G", "always", &refused);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the filesystem is ext4") && err.contains("one btrfs or xfs filesystem"),
        "{err}"
    );
    assert!(!refused.exists(), "a failed clone leaves no DEST");

    let copy = disk.path().join("copy.img");
    let out = clone_cli(&root, "ext4", "1G", "auto", &copy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("making a sparse copy"),
        "{}",
        stderr(&out)
    );
    assert!(same_bytes(&template, &copy));
    let (have, base) = (allocated(&copy), allocated(&template));
    eprintln!("ext4 fallback: template allocates {base} bytes, its copy {have}, capacity 1 GiB");
    assert!(have <= base + (1 << 20), "copy {have} vs template {base}");
    assert!(have < (1 << 30) / 16, "the copy is not sparse: {have}");
}

#[test]
fn reflink_always_across_filesystems_names_both() {
    let Some(disk) = LoopFs::new("btrfs", 512) else {
        return;
    };
    let root = disk.path().join("cache");
    populate(&root, Filesystem::Btrfs, 256);
    let elsewhere = tempfile::tempdir().unwrap();
    let dest = elsewhere.path().join("x.img");
    let out = clone_cli(&root, "btrfs", "256M", "always", &dest);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the cache is on btrfs and DEST on another filesystem"),
        "{err}"
    );
    assert!(!dest.exists());
}

/// Eight CLI processes share the key's lock and each gets its own clone.
#[test]
fn eight_processes_clone_one_template_at_once() {
    let Some(disk) = LoopFs::new("btrfs", 512) else {
        return;
    };
    let root = disk.path().join("cache");
    let template = populate(&root, Filesystem::Btrfs, 256).path;
    let dests: Vec<_> = (0..8)
        .map(|i| disk.path().join(format!("c{i}.img")))
        .collect();
    let kids: Vec<Spawned> = dests
        .iter()
        .map(|dest| {
            let mut cmd = ktstr_cmd(&root);
            cmd.args(["template", "clone", "--reflink", "always"])
                .arg(dest);
            Spawned::new(cmd)
        })
        .collect();
    for (kid, dest) in kids.into_iter().zip(&dests) {
        let (status, out, err) = kid.finish();
        assert!(status.success(), "{err}");
        assert_eq!(out, format!("{}\n", dest.display()));
        assert!(same_bytes(&template, dest));
    }
}

/// `--reflink never` copies the blocks (none shared with the template);
/// `auto` on the same filesystem shares them all.
#[test]
fn reflink_never_leaves_no_extent_shared_on_btrfs_and_xfs() {
    for fs in ["btrfs", "xfs"] {
        let Some(disk) = LoopFs::new(fs, 1024) else {
            return;
        };
        let root = disk.path().join("cache");
        populate(&root, fs.parse().unwrap(), 300);
        for (mode, want_shared) in [("auto", true), ("never", false)] {
            let dest = disk.path().join(format!("{mode}.img"));
            let out = clone_cli(&root, fs, "300M", mode, &dest);
            assert!(out.status.success(), "{}", stderr(&out));
            let (extents, shared) = shared_extents(&std::fs::File::open(&dest).unwrap());
            assert!(extents > 0, "{fs} {mode}: no extents");
            if want_shared {
                assert_eq!(shared, extents, "{fs} {mode}");
            } else {
                assert_eq!(shared, 0, "{fs} {mode}: {shared} of {extents} shared");
            }
        }
    }
}

/// `clean --all` run again and again while a slow clone (a real copy of
/// 768 MiB of data) runs: the entry is kept, said to be in use by the
/// cloner, and the clone comes out whole.
#[test]
fn clean_all_keeps_an_entry_a_live_cloner_holds() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let probe = root.join("probe.img");
    if !crate::support::mkfs_image(&probe, Filesystem::Ext4, 1024) {
        return;
    }
    std::fs::remove_file(&probe).unwrap();
    let template = populate(root, Filesystem::Ext4, 1024).path;
    // Data past the superblocks, so the copy takes a while.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&template)
        .unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for mib in 256..1024 {
        file.write_all_at(&chunk, mib << 20).unwrap();
    }
    drop(file);
    let dest = root.join("dest.img");
    let mut cmd = ktstr_cmd(root);
    cmd.args(["template", "clone", "--fs", "ext4", "--capacity", "1G"])
        .args(["--reflink", "never"])
        .arg(&dest);
    let mut cloner = Spawned::new(cmd);
    let pid = format!("in use by pid {}", cloner.pid());
    // Once it holds the key lock (before that, `clean --all` may win and
    // the cloner would have to build again).
    let key = template
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let lockfile = root.join(".locks").join(format!("{key}.lock"));
    let me = cloner.pid() as i32;
    while !cargo_ktstr::testing::store::lock::holders(&lockfile)
        .iter()
        .any(|h| h.pid == me)
    {
        assert!(
            cloner.child.try_wait().unwrap().is_none(),
            "the clone ended early"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let holds = || {
        cargo_ktstr::testing::store::lock::holders(&lockfile)
            .iter()
            .any(|h| h.pid == me)
    };
    let mut kept = 0;
    while cloner.child.try_wait().unwrap().is_none() {
        let text = crate::support::ktstr_ok(root, &["clean", "--all"]);
        // Removed only once the cloner let go (it does before exiting).
        assert!(
            text.contains("removed 0 templates") || !holds(),
            "removed under a live cloner: {text}"
        );
        kept += usize::from(text.contains(&pid));
    }
    let (status, _, err) = cloner.finish();
    assert!(status.success(), "{err}");
    assert!(kept > 0, "no clean ran while the clone held the lock");
    // Whole: the pattern at both ends of the data, the superblock's magic.
    let copy = std::fs::File::open(&dest).unwrap();
    let mut got = vec![0u8; 1 << 20];
    for mib in [256, 1023] {
        copy.read_exact_at(&mut got, mib << 20).unwrap();
        assert!(got == chunk, "data at {mib} MiB differs");
    }
    assert!(Filesystem::Ext4.path_has_magic(&dest).unwrap());
}
