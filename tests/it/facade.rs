//! The library as a harness sees it: only the names at the crate root.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cargo_ktstr::{
    Capacity, Filesystem, HostMkfsBuilder, Key, Reflink, TemplateBuilder, TemplateCache,
};
use sha2::Digest;

use crate::support::{CHILD_ENV, bin, child, prerequisite, stdout, test_xdg_cache};

/// The host's mkfs, counting its builds and slow enough that every thread
/// arrives while the first one builds.
#[derive(Debug, Clone, Default)]
struct Counting(Arc<AtomicU32>);

impl TemplateBuilder for Counting {
    fn build(&self, key: &Key, staging: &Path) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        HostMkfsBuilder.build(key, staging)
    }
}

fn mib(n: u64) -> Capacity {
    Capacity::from_mib(n).unwrap()
}

fn sha256(path: &Path) -> Vec<u8> {
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().to_vec()
}

fn root_names(root: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn sixteen_threads_asking_for_one_missing_key_build_it_once() {
    let root = tempfile::tempdir().unwrap();
    let builds = Counting::default();
    let cache = TemplateCache::at(root.path()).builder(builds.clone());
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let image = cache.per_test(Filesystem::Ext4, mib(64)).unwrap();
                assert_eq!(image.file().metadata().unwrap().len(), 64 << 20);
                image
            })
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(builds.0.load(Ordering::SeqCst), 1, "16 threads, one build");
    assert_eq!(images.len(), 16);
}

#[test]
fn per_test_images_are_writable_independent_and_gone_on_drop() {
    let root = tempfile::tempdir().unwrap();
    let cache = TemplateCache::at(root.path()).builder(HostMkfsBuilder);
    let template = cache.ensure(Filesystem::Ext4, mib(64)).unwrap();
    let before = sha256(&template);
    let names_before = root_names(root.path());
    let a = cache.per_test(Filesystem::Ext4, mib(64)).unwrap();
    let b = cache.per_test(Filesystem::Ext4, mib(64)).unwrap();
    assert_ne!(a.path(), b.path());
    // Through the path, as a VMM opens it.
    let mut via_path = std::fs::File::options()
        .read(true)
        .write(true)
        .open(a.path())
        .unwrap();
    via_path.seek(SeekFrom::Start(1 << 20)).unwrap();
    via_path.write_all(b"test a was here").unwrap();
    via_path.sync_all().unwrap();
    let mut back = [0u8; 15];
    a.file().read_exact_at(&mut back, 1 << 20).unwrap();
    assert_eq!(&back, b"test a was here");
    b.file().read_exact_at(&mut back, 1 << 20).unwrap();
    assert_ne!(&back, b"test a was here", "b sees a's write");
    assert_eq!(sha256(&template), before, "the template changed");
    // An unnamed clone's path is /proc/<pid>/fd/<n>: after the drop
    // another test's thread may open a file as fd n, so the path may exist
    // again, but never as the same file.
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let (path_a, path_b) = (a.path(), b.path());
    let (id_a, id_b) = (identity(&path_a), identity(&path_b));
    assert!(id_a.is_some() && id_b.is_some());
    drop((via_path, a, b));
    assert_ne!(identity(&path_a), id_a, "a outlived its drop");
    assert_ne!(identity(&path_b), id_b, "b outlived its drop");
    assert_eq!(
        root_names(root.path()),
        names_before,
        "a clone outlived its drop"
    );
    // Read back in full: no clone left anything in the template.
    let mut all = Vec::new();
    std::fs::File::open(&template)
        .unwrap()
        .read_to_end(&mut all)
        .unwrap();
    assert!(!all.windows(15).any(|w| w == b"test a was here"));
}

/// The child's body: print the root `open` resolves.
#[test]
fn open_prints_its_root_in_a_child() {
    if std::env::var_os(CHILD_ENV).is_none_or(|v| v != "open-root") {
        return;
    }
    let cache = TemplateCache::open().unwrap();
    println!("ROOT={}", cache.root().display());
}

#[test]
fn open_resolves_the_root_the_cli_resolves_and_at_takes_one_as_given() {
    let base = tempfile::tempdir().unwrap();
    let resolve = |vars: &[(&str, &Path)]| {
        let mut cmd = child("facade::open_prints_its_root_in_a_child", "open-root");
        let mut cli = std::process::Command::new(bin());
        cli.args(["template", "list", "--json"])
            .env("XDG_CACHE_HOME", test_xdg_cache());
        for c in [&mut cmd, &mut cli] {
            c.env_remove("KTSTR_CACHE_DIR");
            for (k, v) in vars {
                c.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        let facade = stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix("ROOT="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no root from the child: {out:?}"));
        let listed: serde_json::Value =
            serde_json::from_slice(&cli.output().unwrap().stdout).expect("template list --json");
        assert_eq!(Path::new(listed["root"].as_str().unwrap()), facade);
        facade
    };
    let ktstr = base.path().join("k");
    assert_eq!(
        resolve(&[("KTSTR_CACHE_DIR", &ktstr)]),
        ktstr.join("disk_templates")
    );
    let xdg = base.path().join("x");
    assert_eq!(
        resolve(&[("XDG_CACHE_HOME", &xdg)]),
        xdg.join("ktstr/disk_templates")
    );
    assert_eq!(TemplateCache::at(base.path()).root(), base.path());
}

#[test]
fn a_verified_guest_build_through_the_facade() {
    let root = tempfile::tempdir().unwrap();
    // The defaults a harness gets: the kernel as the CLI resolves it, --vmm
    // auto, and the init found beside this test binary (target/*/deps).
    let cache = TemplateCache::at(root.path()).verify(true);
    let kernel = cache.resolve_kernel();
    if !prerequisite("a guest kernel ($KTSTR_KERNEL)", kernel.is_ok()) {
        return;
    }
    assert_eq!(cache.resolve_init().unwrap(), bin());
    let template = cache.ensure(Filesystem::Ext4, mib(64)).unwrap();
    let image = cache.per_test(Filesystem::Ext4, mib(64)).unwrap();
    let mut magic = [0u8; 2];
    image.file().read_exact_at(&mut magic, 0x438).unwrap();
    assert_eq!(
        magic,
        [0x53, 0xef],
        "no ext4 magic in a clone of {template:?}"
    );
}

#[test]
fn ensure_all_builds_several_templates_in_one_guest_and_then_finds_them() {
    let root = tempfile::tempdir().unwrap();
    let cache = TemplateCache::at(root.path()).verify(true);
    if !prerequisite(
        "a guest kernel ($KTSTR_KERNEL)",
        cache.resolve_kernel().is_ok(),
    ) {
        return;
    }
    let wanted = [
        (Filesystem::Btrfs, mib(256)),
        (Filesystem::Ext4, mib(64)),
        (Filesystem::Btrfs, mib(256)),
    ];
    let paths = cache.ensure_all(&wanted).unwrap();
    assert_eq!(paths.len(), 3);
    assert_eq!(paths[0], paths[2], "one template asked for twice");
    for (path, (fs, _)) in paths.iter().zip(&wanted) {
        assert!(fs.path_has_magic(path).unwrap(), "{path:?}");
    }
    let hashes: Vec<_> = paths.iter().map(|p| sha256(p)).collect();
    let again = cache.ensure_all(&wanted).unwrap();
    assert_eq!(again, paths);
    let rehashed: Vec<_> = again.iter().map(|p| sha256(p)).collect();
    assert_eq!(rehashed, hashes, "found, not built again");
}

/// The host's mkfs, except for one filesystem, whose builds fail.
#[derive(Debug, Clone, Copy)]
struct FailsFor(Filesystem);

impl TemplateBuilder for FailsFor {
    fn build(&self, key: &Key, staging: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(key.fs != self.0, "no {} today", key.fs);
        HostMkfsBuilder.build(key, staging)
    }
}

/// What `template build FS:SIZE...`, `--force` and `template clone` call.
#[test]
fn each_template_gets_its_own_result_force_rebuilds_and_a_clone_goes_to_its_dest() {
    let root = tempfile::tempdir().unwrap();
    let cache = TemplateCache::at(root.path()).builder(FailsFor(Filesystem::Btrfs));
    let (ext4, btrfs) = ((Filesystem::Ext4, mib(64)), (Filesystem::Btrfs, mib(256)));
    let items = cache.ensure_each(&[ext4, btrfs, ext4]).unwrap();
    assert_eq!(items.len(), 2, "each template once");
    let built = items[0].result.as_ref().unwrap();
    assert!(built.built && built.key.fs == Filesystem::Ext4);
    let err = format!("{:#}", items[1].result.as_ref().unwrap_err());
    assert!(err.contains("no btrfs today"), "{err}");

    // Found; then, forced, built again: a new image at the same path.
    let found = cache.entry(ext4.0, ext4.1).unwrap();
    assert!(!found.built);
    let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
    let old = inode(&found.path);
    let forced = cache.clone().force(true).entry(ext4.0, ext4.1).unwrap();
    assert!(forced.built);
    assert_eq!(forced.path, found.path);
    assert_ne!(inode(&forced.path), old);

    let dests = tempfile::tempdir().unwrap();
    let dest = dests.path().join("clone.img");
    let cloned = cache
        .clone_to(ext4.0, ext4.1, &dest, Reflink::Never)
        .unwrap();
    assert!(!cloned.ensured.built);
    assert_eq!(sha256(&dest), sha256(&forced.path));
    let err = cache
        .clone_to(ext4.0, ext4.1, &dest, Reflink::Auto)
        .unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
}
