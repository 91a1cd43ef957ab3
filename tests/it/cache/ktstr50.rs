//! One cache with ktstr 0.50.0, which keys an entry by the SHA-256 of the
//! formatter binary's bytes rather than of its version output: its entries,
//! named as it names them for the installed formatters and holding real
//! images, are current for `template list` and `clean --stale`, and a clone
//! reuses one without building.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_ktstr::testing::cache::ensure::{Ensurer, TemplateBuilder};
use cargo_ktstr::testing::cache::key::{Capacity, Key};
use cargo_ktstr::testing::cache::per_test::PerTestImage;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::{current_key, ktstr_cmd, ktstr_ok, mkfs_image, names, stderr};

const MIB: u64 = 1 << 20;

/// ktstr 0.50.0's names, from the facts of its `src/vmm/disk_template/`,
/// computed here without the product's code.
mod ktstr_names {
    use super::*;

    /// The key: `<tag>-<capacity floored to MiB>m-<fingerprint>`.
    pub(super) fn cache_key(tag: &str, capacity_bytes: u64, fp: &str) -> String {
        format!("{tag}-{}m-{fp}", capacity_bytes / MIB)
    }

    /// The formatter it would pack and hash: the first PATH entry holding a
    /// non-empty regular file of that name (symlinks followed), canonicalized.
    pub(super) fn locate(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|c| fs::metadata(c).is_ok_and(|m| m.is_file() && m.len() > 0))
            .map(|c| fs::canonicalize(c).unwrap())
    }

    /// Its fingerprint: the first 8 bytes of the SHA-256 of the binary's
    /// bytes, in lower-case hex (here by coreutils' `sha256sum`).
    pub(super) fn mkfs_fingerprint(binary: &Path) -> String {
        let out = Command::new("sha256sum").arg(binary).output().unwrap();
        assert!(out.status.success(), "sha256sum: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        text[..16].to_owned()
    }
}

/// A capacity each formatter takes.
fn mib_for(fs: Filesystem) -> u64 {
    match fs {
        Filesystem::Ext4 => 16,
        Filesystem::Btrfs => 256,
        Filesystem::Xfs => 300,
    }
}

/// `<root>/<ktstr 0.50's key>/template.img`, formatted by the host's mkfs, as
/// ktstr 0.50 would publish it; the key, or `None` (after the prerequisite
/// gate) when the formatter is missing.
fn lay_ktstr50_entry(root: &Path, fs: Filesystem) -> Option<String> {
    let Some(binary) = ktstr_names::locate(fs.mkfs()) else {
        crate::support::prerequisite(&format!("{} on PATH", fs.mkfs()), false);
        return None;
    };
    let mib = mib_for(fs);
    let fp = ktstr_names::mkfs_fingerprint(&binary);
    let key = ktstr_names::cache_key(fs.name(), mib * MIB, &fp);
    fs::create_dir(root.join(&key)).unwrap();
    mkfs_image(&root.join(&key).join("template.img"), fs, mib).then_some(key)
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// The listed entry named `name`.
fn listed<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {report}"))
}

#[test]
fn ktstr50s_entries_are_current_for_list_and_clean_stale() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut theirs = Vec::new();
    for fs in Filesystem::ALL {
        match lay_ktstr50_entry(root, fs) {
            Some(key) => theirs.push(key),
            None => return,
        }
    }
    // Ours beside them, and one no installed formatter made.
    let ours = current_key(Filesystem::Ext4, 32);
    fs::create_dir(root.join(&ours)).unwrap();
    assert!(mkfs_image(
        &root.join(&ours).join("template.img"),
        Filesystem::Ext4,
        32
    ));
    let stale = "ext4-16m-0000000000000000";
    fs::create_dir(root.join(stale)).unwrap();
    assert!(mkfs_image(
        &root.join(stale).join("template.img"),
        Filesystem::Ext4,
        16
    ));

    let report = json(&ktstr_ok(root, &["template", "list", "--json"]));
    for key in &theirs {
        let entry = listed(&report, key);
        assert_eq!(
            (&entry["state"], &entry["stale"], &entry["scheme"]),
            (&"ok".into(), &false.into(), &"binary".into()),
            "{entry}"
        );
    }
    assert_eq!(listed(&report, &ours)["scheme"], "version");
    let entry = listed(&report, stale);
    assert_eq!(
        (&entry["state"], &entry["scheme"]),
        (&"stale".into(), &Value::Null)
    );
    let table = ktstr_ok(root, &["template", "list"]);
    assert!(
        table.lines().next().unwrap().contains(" SCHEME "),
        "{table}"
    );
    for key in &theirs {
        let row = table.lines().find(|l| l.starts_with(key.as_str())).unwrap();
        assert!(row.contains(" binary ") && row.contains(" ok"), "{row}");
    }
    let row = table.lines().find(|l| l.starts_with(&ours)).unwrap();
    assert!(row.contains(" version "), "{row}");

    let cleaned = json(&ktstr_ok(root, &["clean", "--stale", "--json"]));
    let removed: Vec<&str> = cleaned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [stale], "{cleaned}");
    for key in theirs.iter().chain([&ours]) {
        assert!(root.join(key).join("template.img").is_file(), "{key} gone");
    }
}

/// A builder that fails the test's clone if it is ever asked to build.
struct NoBuild;

impl TemplateBuilder for NoBuild {
    fn build(&self, key: &Key, _staging: &Path) -> anyhow::Result<()> {
        anyhow::bail!("{key} was built, but ktstr 0.50's entry should have been reused")
    }
}

#[test]
fn a_clone_reuses_ktstr50s_entry_without_building() {
    let (root, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let Some(key) = lay_ktstr50_entry(root, Filesystem::Btrfs) else {
        return;
    };
    let image = root.join(&key).join("template.img");
    let before = fs::read(&image).unwrap();

    // No kernel: a build would fail.
    let dest = out.path().join("d.img");
    let cloned = ktstr_cmd(root)
        .args(["template", "clone", "--fs", "btrfs", "--capacity", "256M"])
        .args(["--kernel", "/nonexistent/bzImage"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(cloned.status.success(), "{}", stderr(&cloned));
    assert_eq!(fs::read(&dest).unwrap(), before);

    // A per-test clone, through the library, with a builder that refuses.
    let cap = Capacity::from_mib(256).unwrap();
    let per_test =
        PerTestImage::create(&Ensurer::new(root, &NoBuild), Filesystem::Btrfs, cap).unwrap();
    assert_eq!(fs::metadata(per_test.path()).unwrap().len(), 256 * MIB);
    drop(per_test);

    // Nothing was staged or published beside it, and it is untouched.
    assert_eq!(names(root), [".locks".to_owned(), key.clone()]);
    assert_eq!(fs::read(&image).unwrap(), before);
}
