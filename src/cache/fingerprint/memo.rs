//! Fingerprints remembered across processes.
//!
//! Running the formatter costs a fork and an exec, about 1.5 ms here: as much
//! as all the rest of a warm `template clone`. So each fingerprint is kept in
//! `$XDG_CACHE_HOME/cargo-ktstr/fingerprints/<fs>` (else under
//! `~/.cache`), beside the identity of the binary it came from: its path,
//! device, inode, size, mtime and ctime. A package upgrade writes a new file,
//! with a new inode and ctime, so an old memo never matches it. Outside the
//! template cache on purpose: ktstr's roots hold only its own names. Any
//! trouble (no home, unreadable, a mismatch) means running the formatter.
//!
//! ext4 is never remembered: `mkfs.ext4 -V` also prints the version of
//! libext2fs, a separate package that can change under an unchanged binary.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cache::filesystem::Filesystem;

/// The remembered fingerprint of `formatter`, if it is still the same file.
pub(super) fn recall(fs: Filesystem, formatter: &Path) -> Option<String> {
    recall_in(&memo_dir()?, fs, formatter)
}

/// Remembers `fp` for `formatter`; a failure only costs the next process an
/// exec, so it is logged, not returned.
pub(super) fn remember(fs: Filesystem, formatter: &Path, fp: &str) {
    if memo_dir()
        .and_then(|dir| remember_in(&dir, fs, formatter, fp))
        .is_none()
    {
        tracing::debug!(
            "could not remember the {fs} fingerprint; the next run asks the formatter again"
        );
    }
}

/// Whether the formatter's file alone decides its version output.
fn memoizable(fs: Filesystem) -> bool {
    fs != Filesystem::Ext4
}

fn recall_in(dir: &Path, fs: Filesystem, formatter: &Path) -> Option<String> {
    if !memoizable(fs) {
        return None;
    }
    let text = fs::read_to_string(dir.join(fs.name())).ok()?;
    let (identity, fp) = text.split_once('\n')?;
    let fp = fp.trim_end();
    let well_formed = fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && identity == identify(formatter)?).then(|| fp.to_owned())
}

fn remember_in(dir: &Path, fs: Filesystem, formatter: &Path, fp: &str) -> Option<()> {
    if !memoizable(fs) {
        return Some(());
    }
    let identity = identify(formatter)?;
    fs::create_dir_all(dir).ok()?;
    // Written aside and renamed over, so a reader sees one memo or the other,
    // never half of one.
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}",
        fs.name(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut file = fs::File::create(&tmp).ok()?;
    file.write_all(format!("{identity}\n{fp}\n").as_bytes())
        .ok()?;
    fs::rename(&tmp, dir.join(fs.name())).ok()
}

fn memo_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("cargo-ktstr").join("fingerprints"))
}

/// One line naming exactly this file: a path can hold no newline here.
fn identify(formatter: &Path) -> Option<String> {
    let path = formatter.to_str().filter(|p| !p.contains('\n'))?;
    let m = fs::metadata(formatter).ok()?;
    Some(format!(
        "{path} dev={} ino={} size={} mtime={}.{} ctime={}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_memo_holds_until_the_formatter_changes() {
        let dir = tempfile::tempdir().unwrap();
        let formatter = dir.path().join("mkfs.btrfs");
        fs::write(&formatter, "#!/bin/sh\necho v1\n").unwrap();
        fs::set_permissions(&formatter, fs::Permissions::from_mode(0o755)).unwrap();
        let fp = "a".repeat(64);
        let memo = dir.path().join("memo");
        assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), None);
        remember_in(&memo, Filesystem::Btrfs, &formatter, &fp).unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), Some(fp));
        assert_eq!(recall_in(&memo, Filesystem::Xfs, &formatter), None);
        // An upgrade: a new file in its place.
        let new = dir.path().join("new");
        fs::write(&new, "#!/bin/sh\necho v2\n").unwrap();
        fs::rename(&new, &formatter).unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), None);
    }

    #[test]
    fn ext4_is_never_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let formatter = dir.path().join("mkfs.ext4");
        fs::write(&formatter, "#!/bin/sh\necho v1\n").unwrap();
        let memo = dir.path().join("memo");
        remember_in(&memo, Filesystem::Ext4, &formatter, &"a".repeat(64)).unwrap();
        assert!(!memo.join("ext4").exists());
        // Nor is a memo written by an older version believed.
        fs::create_dir_all(&memo).unwrap();
        let identity = identify(&formatter).unwrap();
        fs::write(
            memo.join("ext4"),
            format!("{identity}\n{}\n", "a".repeat(64)),
        )
        .unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Ext4, &formatter), None);
    }
}
