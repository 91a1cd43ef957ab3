//! Fingerprints (and the versions beside them) remembered across processes.
//!
//! Running the formatter costs a fork and an exec, about 1.5 ms here: as much
//! as all the rest of a warm `template clone`. So each fingerprint is kept in
//! `$XDG_CACHE_HOME/cargo-ktstr/fingerprints/<fs>` (else under
//! `~/.cache`), beside the identity (path, device, inode, size, mtime, ctime)
//! of every file its version output can depend on: the formatter and each
//! shared object it loads. That matters for `mkfs.ext4 -V`, which prints the
//! version of libext2fs, a separate package that can change under an
//! unchanged binary. A package upgrade writes new files, with new inodes and
//! ctimes, so an old memo never matches. The version the query printed is
//! kept beside the fingerprint, so a warm run knows the formatter's minimum
//! capacity without the exec either, and so is the hash of the formatter's
//! bytes (0.1 to 0.5 MB to read and hash: 0.1 to 3 ms here, against 5 µs to
//! recall a memo). Outside the template cache on purpose: ktstr's roots hold
//! only its own names. Any trouble (no home, unreadable, a mismatch) means
//! running the formatter.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Formatter;
use crate::elf::libs;
use crate::formatter::filesystem::Filesystem;
use crate::formatter::minimum::Version;

/// The line before the fingerprint: `version 6.2`, or `version ?`.
const VERSION_TAG: &str = "version ";
/// The line before that: `binary <SHA-256 hex of the formatter's bytes>`.
const BINARY_TAG: &str = "binary ";
const NO_VERSION: &str = "?";

/// The remembered query of `formatter`, if none of its files changed.
pub(super) fn recall(fs: Filesystem, formatter: &Path) -> Option<Formatter> {
    recall_in(&memo_dir()?, fs, formatter)
}

/// Remembers `found` for `formatter`; a failure only costs the next process
/// an exec, so it is logged, not returned.
pub(super) fn remember(fs: Filesystem, formatter: &Path, found: &Formatter) {
    if memo_dir()
        .and_then(|dir| remember_in(&dir, fs, formatter, found))
        .is_none()
    {
        tracing::debug!(
            "could not remember the {fs} fingerprint; the next run asks the formatter again"
        );
    }
}

/// A memo is the formatter's identity line, one line per shared object, the
/// binary line, the version line, and the fingerprint last. A memo of an
/// older cargo-ktstr, without the binary or version line, never matches,
/// and is written anew.
fn recall_in(dir: &Path, fs: Filesystem, formatter: &Path) -> Option<Formatter> {
    let text = fs::read_to_string(dir.join(fs.name())).ok()?;
    let mut lines: Vec<&str> = text.lines().collect();
    let fp = lines.pop()?;
    let version = match lines.pop()?.strip_prefix(VERSION_TAG)? {
        NO_VERSION => None,
        v => Some(Version::parse(v)?),
    };
    let binary = lines.pop()?.strip_prefix(BINARY_TAG)?;
    let sha256 = |hex: &str| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = sha256(fp) && sha256(binary);
    let (first, objects) = lines.split_first()?;
    let same = *first == identify(formatter)?
        && objects.iter().all(|line| {
            let path = line.split(" dev=").next().unwrap_or_default();
            identify(Path::new(path)).as_deref() == Some(*line)
        });
    (well_formed && same).then(|| Formatter {
        fingerprint: fp.to_owned(),
        binary: binary.to_owned(),
        version,
    })
}

fn remember_in(dir: &Path, fs: Filesystem, formatter: &Path, found: &Formatter) -> Option<()> {
    let mut memo = identify(formatter)? + "\n";
    for object in libs::shared_objects(&[formatter]).ok()? {
        memo += &identify(&object.host)?;
        memo += "\n";
    }
    let version = found.version.as_ref().map(Version::to_string);
    memo += &format!(
        "{BINARY_TAG}{}\n{VERSION_TAG}{}\n{}\n",
        found.binary,
        version.as_deref().unwrap_or(NO_VERSION),
        found.fingerprint
    );
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
    file.write_all(memo.as_bytes()).ok()?;
    fs::rename(&tmp, dir.join(fs.name())).ok()
}

fn memo_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    // A relative XDG_CACHE_HOME is ignored, as the XDG specification says.
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("cargo-ktstr").join("fingerprints"))
}

/// One line naming exactly this file: a path can hold no newline here.
fn identify(file: &Path) -> Option<String> {
    let path = file
        .to_str()
        .filter(|p| !p.contains('\n') && !p.contains(" dev="))?;
    let m = fs::metadata(file).ok()?;
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

    fn found(fp: char, version: Option<&str>) -> Formatter {
        Formatter {
            fingerprint: fp.to_string().repeat(64),
            binary: "e".repeat(64),
            version: version.map(|v| Version::parse(v).unwrap()),
        }
    }

    #[test]
    fn a_memo_holds_until_the_formatter_changes() {
        let dir = tempfile::tempdir().unwrap();
        let formatter = dir.path().join("mkfs.btrfs");
        fs::copy("/bin/true", &formatter).unwrap();
        let memo = dir.path().join("memo");
        assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), None);
        for fp in [found('a', Some("6.2")), found('c', None)] {
            remember_in(&memo, Filesystem::Btrfs, &formatter, &fp).unwrap();
            assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), Some(fp));
        }
        assert_eq!(recall_in(&memo, Filesystem::Xfs, &formatter), None);
        // Memos older cargo-ktstrs wrote lack the version line, or the
        // binary line: not used.
        let text = fs::read_to_string(memo.join("btrfs")).unwrap();
        for tag in [VERSION_TAG, BINARY_TAG] {
            let old: Vec<&str> = text.lines().filter(|l| !l.starts_with(tag)).collect();
            fs::write(memo.join("btrfs"), old.join("\n") + "\n").unwrap();
            assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), None);
        }
        // An upgrade: a new file in its place.
        let new = dir.path().join("new");
        fs::copy("/bin/false", &new).unwrap();
        fs::rename(&new, &formatter).unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Btrfs, &formatter), None);
    }

    #[test]
    fn a_script_is_never_remembered() {
        // What a script prints depends on programs the memo cannot list.
        let dir = tempfile::tempdir().unwrap();
        let formatter = dir.path().join("mkfs.xfs");
        fs::write(&formatter, "#!/bin/sh\necho v1\n").unwrap();
        fs::set_permissions(&formatter, fs::Permissions::from_mode(0o755)).unwrap();
        let memo = dir.path().join("memo");
        assert_eq!(
            remember_in(&memo, Filesystem::Xfs, &formatter, &found('a', None)),
            None
        );
        assert_eq!(recall_in(&memo, Filesystem::Xfs, &formatter), None);
    }

    #[test]
    fn a_memo_fails_when_a_shared_object_changes_under_the_same_formatter() {
        // A real dynamically linked formatter stand-in: a copy of a host
        // program, so its shared objects resolve; and a memo that lists one
        // object we control, as mkfs.ext4's lists libext2fs.
        let dir = tempfile::tempdir().unwrap();
        let formatter = dir.path().join("mkfs.ext4");
        fs::copy("/bin/true", &formatter).unwrap();
        let memo = dir.path().join("memo");
        let fp = found('b', Some("1.47.0"));
        remember_in(&memo, Filesystem::Ext4, &formatter, &fp).unwrap();
        let written = fs::read_to_string(memo.join("ext4")).unwrap();
        assert!(
            written.lines().count() > 3,
            "no shared objects listed: {written}"
        );
        assert_eq!(
            recall_in(&memo, Filesystem::Ext4, &formatter),
            Some(fp.clone())
        );

        let lib = dir.path().join("libext2fs.so.2");
        fs::write(&lib, "v1").unwrap();
        let mut lines: Vec<String> = written.lines().map(str::to_owned).collect();
        lines.insert(1, identify(&lib).unwrap());
        fs::write(memo.join("ext4"), lines.join("\n") + "\n").unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Ext4, &formatter), Some(fp));
        // The library is upgraded; the formatter is not.
        let new = dir.path().join("new");
        fs::write(&new, "v2").unwrap();
        fs::rename(&new, &lib).unwrap();
        assert_eq!(recall_in(&memo, Filesystem::Ext4, &formatter), None);
    }
}
