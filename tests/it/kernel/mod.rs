//! `kernel build` and `kernel list`, and how a build finds its kernel.

mod stock;
mod unreadable;

use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::kernel::KernelKind;
use cargo_ktstr::testing::kernel::build::{self, BuildOptions};
use cargo_ktstr::testing::kernel::key::KeyInputs;
use cargo_ktstr::testing::kernel::source::Source;
use cargo_ktstr::testing::kernel::store::KernelStore;
use cargo_ktstr::testing::progress::Progress;

use crate::support::{bin, prerequisite, stderr, stdout, tiny_tarball};

/// Debian's kernel source package, which CI installs.
const DEBIAN_SOURCE: &str = "/usr/src/linux-source-6.12.tar.xz";

/// The binary with its ktstr cache in `cache`, no kernel from the
/// environment, and an empty boot directory (the host's /boot may have
/// stock kernels, which a build would then take).
fn ktstr_in(cache: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("KTSTR_CACHE_DIR", cache)
        .env("KTSTR_BOOT_DIR", cache.join("no-boot"))
        .env_remove("KTSTR_KERNEL");
    cmd
}

#[test]
fn a_source_without_a_makefile_is_refused() {
    let (cache, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = ktstr_in(cache.path())
        .args(["kernel", "build", "--source"])
        .arg(src.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no Makefile"), "{}", stderr(&out));
}

#[test]
fn missing_build_tools_are_named_with_their_packages() {
    let (cache, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tarball = tiny_tarball(work.path(), "9.9.9");
    // A PATH with what reading a tarball needs, and no compiler tools.
    let bin_dir = path_with(work.path(), &["sh", "tar", "head", "gzip"]);
    let out = ktstr_in(cache.path())
        .env("PATH", &bin_dir)
        .args(["kernel", "build", "--source"])
        .arg(&tarball)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for package in ["make", "gcc", "flex", "bison", "bc", "xz-utils", "lz4"] {
        assert!(err.contains(package), "{package}: {err}");
    }
    assert!(err.contains("apt-get install"), "{err}");
    // Refused before any scratch directory was made.
    let kernels = cache.path().join("kernels");
    assert!(
        !kernels.exists(),
        "{:?}",
        std::fs::read_dir(&kernels).map(|d| d.count())
    );
}

#[test]
fn a_tarball_whose_decompressor_is_missing_names_its_package() {
    let (cache, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let gz = tiny_tarball(work.path(), "9.9.9");
    let tarball = work.path().join("linux.tar.xz");
    let converted = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" | xz > \"$2\"")
        .args(["sh".as_ref(), gz.as_os_str(), tarball.as_os_str()])
        .status()
        .unwrap();
    assert!(converted.success());
    // Everything but xz.
    let bin_dir = path_with(work.path(), &["sh", "tar", "head", "gzip"]);
    let out = ktstr_in(cache.path())
        .env("PATH", &bin_dir)
        .args(["kernel", "build", "--source"])
        .arg(&tarball)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("xz-utils") && err.contains("apt-get install"),
        "{err}"
    );
}

#[test]
fn kernel_list_shows_cached_kernels() {
    let cache = tempfile::tempdir().unwrap();
    let out = ktstr_in(cache.path())
        .args(["kernel", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("cargo ktstr kernel build"),
        "{}",
        stderr(&out)
    );

    let entry = cache.path().join("kernels/6.12.1-abcdef012345");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join("bzImage"), vec![0u8; 1 << 20]).unwrap();
    let host = cache.path().join("kernels/6.12.1-kvm-host-0123456789ab");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("bzImage"), vec![0u8; 2 << 20]).unwrap();
    let out = ktstr_in(cache.path())
        .args(["kernel", "list"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("6.12.1-abcdef012345\ttemplate\t1.0 MiB\t")
            && text.contains("6.12.1-kvm-host-0123456789ab\tkvm-host\t2.0 MiB\t"),
        "{text}"
    );
    let out = ktstr_in(cache.path())
        .args(["kernel", "list", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let template = json
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "6.12.1-abcdef012345")
        .unwrap();
    assert_eq!(template["kind"], "template");
    assert_eq!(template["image"], entry.join("bzImage").to_str().unwrap());
}

#[test]
fn a_build_without_any_kernel_says_how_to_get_one() {
    let (cache, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = ktstr_in(cache.path())
        .arg("--cache-dir")
        .arg(root.path())
        .args(["template", "build", "--fs", "ext4", "--capacity", "64M"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cargo ktstr kernel build --source /usr/src/linux-source-6.12.tar.xz"),
        "{err}"
    );
}

#[test]
fn a_second_build_of_the_same_source_is_a_hit() {
    // The kernel .ci/run builds into the real cache; a hit takes seconds.
    let Ok(store) = KernelStore::from_env() else {
        return;
    };
    if !prerequisite(DEBIAN_SOURCE, Path::new(DEBIAN_SOURCE).exists()) {
        return;
    }
    let source = Source::open(Path::new(DEBIAN_SOURCE)).unwrap();
    let inputs = KeyInputs::compute(&source, KernelKind::Template.fragments()).unwrap();
    let name = KernelKind::Template.keyed_name(&inputs.version, &inputs.short_key());
    let cached = store.lookup(&name).unwrap();
    if !prerequisite(
        &format!("the cached kernel {name} (run .ci/run)"),
        cached.is_some(),
    ) {
        return;
    }
    let out = Command::new(bin())
        .args(["kernel", "build", "--source", DEBIAN_SOURCE])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", cached.unwrap().display()));
    assert!(stderr(&out).contains("Found"), "{}", stderr(&out));
    // The library says the same, without building.
    let opts = BuildOptions {
        kind: KernelKind::Template,
        jobs: 1,
        force: false,
    };
    let hit = build::build(
        &store,
        Path::new(DEBIAN_SOURCE),
        opts,
        None,
        &Progress::silent(),
    );
    assert!(!hit.unwrap().built);
}

/// A directory of links to just these host tools, to serve as PATH.
fn path_with(work: &Path, tools: &[&str]) -> std::path::PathBuf {
    let bin_dir = work.join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    for tool in tools {
        let host = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists());
        std::os::unix::fs::symlink(host.unwrap(), bin_dir.join(tool)).unwrap();
    }
    bin_dir
}
