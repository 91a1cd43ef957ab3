//! The cache through the CLI: misses, invalid entries, hits, and DEST rules.
//! Hits are real templates the test publishes with the library and the
//! host's mkfs.

mod budget;
pub(crate) mod clean;
pub(crate) mod clone;
mod crash;
mod diskfull;
mod heal;
mod hostile;
mod interop;
mod ktstr50;
mod list;
mod lock;
mod misdirected;
mod multi;
mod owned;
mod sharing;
mod soak;

use cargo_ktstr::testing::cache::key::{Capacity, Key};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::formatter::fingerprint;

use crate::cache::clone::same_bytes;
use crate::support::{ktstr_cmd, names, populate, stderr, stdout};

fn key(fs: Filesystem, mib: u64) -> Key {
    Key::new(
        fs,
        Capacity::from_mib(mib).unwrap(),
        &fingerprint::fingerprint(fs).unwrap(),
    )
}

#[test]
fn a_miss_that_cannot_build_names_the_key_and_leaves_no_debris() {
    let (root, out_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dest = out_dir.path().join("d.img");
    // A miss builds; with no kernel to boot, the build fails.
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .args(["--kernel", "/nonexistent/bzImage"])
        .arg(&dest)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&key(Filesystem::Ext4, 64).to_string()),
        "{err}"
    );
    assert!(err.contains("/nonexistent/bzImage"), "{err}");
    assert!(!dest.exists());
    assert_eq!(names(root.path()), [".locks"]);
}

#[test]
fn a_zero_filled_entry_is_a_miss_with_a_warning() {
    let (root, out_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let k = key(Filesystem::Btrfs, 256);
    std::fs::create_dir_all(root.path().join(k.to_string())).unwrap();
    std::fs::write(
        root.path().join(k.to_string()).join("template.img"),
        vec![0u8; 1 << 20],
    )
    .unwrap();
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--kernel", "/nonexistent/bzImage"])
        .arg(out_dir.path().join("d.img"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ignoring the cached template") && err.contains("no btrfs superblock magic"),
        "{err}"
    );
    // A miss: it went on to build, which needs the (missing) kernel.
    assert!(err.contains("failed to build the template"), "{err}");
}

#[test]
fn a_hit_is_cloned_and_dest_is_printed() {
    let (root, out_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let template = populate(root.path(), Filesystem::Xfs, 300).path;
    let dest = out_dir.path().join("d.img");
    // xfs defaults to 300 MiB.
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "xfs"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", dest.display()));
    assert!(same_bytes(&template, &dest));
}

#[test]
fn an_existing_dest_is_an_error_and_is_never_overwritten() {
    let (root, out_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    populate(root.path(), Filesystem::Ext4, 64);
    let dest = out_dir.path().join("d.img");
    std::fs::write(&dest, b"precious").unwrap();
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .arg(&dest)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    // Said before any build: a miss reports the same.
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--fs", "ext4", "--capacity", "128M"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn xfs_below_300_mib_is_refused_before_any_work() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let out = ktstr_cmd(&root)
        .args(["template", "clone", "--fs", "xfs", "--capacity", "256M"])
        .arg(base.path().join("d.img"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("xfs needs at least 300 MiB"), "{err}");
    assert!(!root.exists());
}
