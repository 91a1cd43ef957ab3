//! The formatter fingerprints. A key's last field is the first 16 hex
//! characters of a SHA-256 that names the installed formatter, so a new mkfs
//! gives new keys. Two schemes ([`Scheme`]) name the same formatter:
//!
//! * **version**: over the stdout, then the stderr, of its version query.
//!   ktstr 0.15 keys this way, and this tool builds under it.
//! * **binary**: over the bytes of the formatter's file, symlinks resolved
//!   (`mkfs.ext4` is `mke2fs`'s bytes). ktstr 0.27 and later key this way.
//!
//! An entry under either is current. The version the query prints is kept
//! too: it says how small a device the formatter takes
//! ([`crate::formatter::minimum`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::filesystem::Filesystem;
use super::minimum::Version;

mod memo;

/// What the installed formatter's version query told, and what its bytes
/// hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    /// The full SHA-256 hex of its version output ([`Scheme::Version`]).
    pub fingerprint: String,
    /// The full SHA-256 hex of its file's bytes ([`Scheme::Binary`]).
    pub binary: String,
    /// The version it printed, where one could be read.
    pub version: Option<Version>,
}

/// What a key's fingerprint hashes; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// The formatter's version output: ktstr 0.15's keys, and ours.
    Version,
    /// The formatter binary's bytes: ktstr 0.27 and later.
    Binary,
}

impl Scheme {
    /// Both, ours first: the order a lookup tries them in.
    pub const ALL: [Scheme; 2] = [Scheme::Version, Scheme::Binary];

    /// `version` or `binary`, as `template list` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Version => "version",
            Scheme::Binary => "binary",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Formatter {
    /// The full fingerprint of `scheme`.
    pub fn fingerprint_of(&self, scheme: Scheme) -> &str {
        match scheme {
            Scheme::Version => &self.fingerprint,
            Scheme::Binary => &self.binary,
        }
    }

    /// The scheme under which a key's fingerprint (its 16 hex characters)
    /// names this formatter; `None` when neither does: a stale key.
    pub fn scheme_of(&self, key_fingerprint: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|&scheme| {
            let full = self.fingerprint_of(scheme);
            key_fingerprint.len() == FINGERPRINT_LEN && full.starts_with(key_fingerprint)
        })
    }
}

/// Hex characters of a formatter fingerprint kept in a template's key.
pub(crate) const FINGERPRINT_LEN: usize = 16;

/// Where formatters live besides PATH: a non-root PATH often lacks the sbins.
const SBIN_DIRS: [&str; 2] = ["/sbin", "/usr/sbin"];

/// Finds `fs`'s formatter on PATH, then in /sbin and /usr/sbin.
pub fn find_formatter(fs: Filesystem) -> Result<PathBuf> {
    find_in(fs, std::env::var_os("PATH"), &SBIN_DIRS.map(Path::new))
}

/// [`find_formatter`] over a given PATH value and extra directories.
fn find_in(fs: Filesystem, path_var: Option<OsString>, extra: &[&Path]) -> Result<PathBuf> {
    if let Some(found) = crate::host::find_program_in(fs.mkfs(), path_var.as_deref(), extra) {
        return Ok(found);
    }
    bail!(
        "{} not found on PATH, /sbin or /usr/sbin: install the `{}` package to use {fs} templates",
        fs.mkfs(),
        fs.package()
    )
}

/// Runs `formatter`'s version query and hashes its file: the full SHA-256
/// hex of each, and the version in the output.
pub(crate) fn query(fs: Filesystem, formatter: &Path) -> Result<Formatter> {
    let out = Command::new(formatter)
        .arg(fs.version_arg())
        .output()
        .with_context(|| {
            format!(
                "failed to run `{} {}`",
                formatter.display(),
                fs.version_arg()
            )
        })?;
    // The exit status is ignored: some formatters exit non-zero after
    // printing their version.
    if out.stdout.is_empty() && out.stderr.is_empty() {
        bail!(
            "`{} {}` printed nothing, so its version cannot be fingerprinted; check the `{}` installation",
            formatter.display(),
            fs.version_arg(),
            fs.package()
        );
    }
    let mut hasher = Sha256::new();
    hasher.update(&out.stdout);
    hasher.update(&out.stderr);
    let text = [&out.stdout[..], &out.stderr[..]].concat();
    Ok(Formatter {
        fingerprint: hex(&hasher.finalize()),
        binary: hash_binary(fs, formatter)?,
        version: Version::from_output(&String::from_utf8_lossy(&text)),
    })
}

/// The full SHA-256 hex of `formatter`'s bytes. Reading follows symlinks,
/// so this is the hash of the file its canonical path names, as ktstr
/// 0.27 and later hash it.
pub(crate) fn hash_binary(fs: Filesystem, formatter: &Path) -> Result<String> {
    let bytes = std::fs::read(formatter).with_context(|| {
        format!(
            "failed to read `{}` to fingerprint it; check the `{}` installation",
            formatter.display(),
            fs.package()
        )
    })?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The installed formatter's fingerprint and version, queried once per
/// process and remembered across processes while the formatter and its
/// shared objects stay the same (see `memo.rs`).
pub(crate) fn formatter(fs: Filesystem) -> Result<Formatter> {
    static CACHE: Mutex<Option<HashMap<Filesystem, Formatter>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(known) = map.get(&fs) {
        return Ok(known.clone());
    }
    let path = find_formatter(fs)?;
    let found = match memo::recall(fs, &path) {
        Some(found) => found,
        None => {
            let found = query(fs, &path)?;
            memo::remember(fs, &path, &found);
            found
        }
    };
    map.insert(fs, found.clone());
    Ok(found)
}

/// The installed formatter's fingerprint (see [`formatter`]).
pub fn fingerprint(fs: Filesystem) -> Result<String> {
    Ok(formatter(fs)?.fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        crate::testutil::script(&path, body);
        path
    }

    #[test]
    fn hashes_stdout_then_stderr_and_ignores_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let a = script(dir.path(), "a", "echo out; echo err >&2; exit 3");
        let b = script(dir.path(), "b", "echo err >&2; echo out");
        let qa = query(Filesystem::Btrfs, &a).unwrap();
        let fa = qa.fingerprint;
        let want: String = Sha256::digest(b"out\nerr\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fa, want);
        assert_eq!(fa, query(Filesystem::Btrfs, &b).unwrap().fingerprint);
        let c = script(dir.path(), "c", "echo other");
        assert_ne!(fa, query(Filesystem::Btrfs, &c).unwrap().fingerprint);
        assert_eq!(qa.version, None);
    }

    #[test]
    fn the_binary_fingerprint_hashes_the_file_a_symlink_names() {
        let dir = tempfile::tempdir().unwrap();
        let real = script(dir.path(), "mke2fs", "echo v");
        let link = dir.path().join("mkfs.ext4");
        std::os::unix::fs::symlink("mke2fs", &link).unwrap();
        let want = hex(&Sha256::digest(std::fs::read(&real).unwrap()));
        assert_eq!(hash_binary(Filesystem::Ext4, &link).unwrap(), want);
        assert_eq!(query(Filesystem::Ext4, &link).unwrap().binary, want);
        // One byte more is another fingerprint; the same output is not.
        let other = script(dir.path(), "other", "echo v ");
        assert_ne!(hash_binary(Filesystem::Ext4, &other).unwrap(), want);
        let err = hash_binary(Filesystem::Ext4, &dir.path().join("gone"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("e2fsprogs") && err.contains("gone"), "{err}");
    }

    #[test]
    fn a_key_names_its_scheme_or_none() {
        let formatter = Formatter {
            fingerprint: format!("{}{}", "a".repeat(16), "0".repeat(48)),
            binary: format!("{}{}", "b".repeat(16), "1".repeat(48)),
            version: None,
        };
        for scheme in Scheme::ALL {
            let kept = &formatter.fingerprint_of(scheme)[..FINGERPRINT_LEN];
            assert_eq!(formatter.scheme_of(kept), Some(scheme));
        }
        assert_eq!(formatter.scheme_of(&"b".repeat(16)), Some(Scheme::Binary));
        // Another formatter's key, a prefix too short, and hex past the 16
        // a key keeps are no scheme's.
        for fp in ["c".repeat(16), "a".repeat(15), "a".repeat(17)] {
            assert_eq!(formatter.scheme_of(&fp), None, "{fp}");
        }
    }

    #[test]
    fn the_version_is_read_from_either_stream() {
        let dir = tempfile::tempdir().unwrap();
        let out = script(dir.path(), "o", "echo 'mkfs.xfs version 6.1.0'");
        let err = script(dir.path(), "e", "echo 'mke2fs 1.47.0 (5-Feb-2023)' >&2");
        let version = |p: &Path| query(Filesystem::Xfs, p).unwrap().version.unwrap();
        assert_eq!(version(&out).to_string(), "6.1.0");
        assert_eq!(version(&err).to_string(), "1.47.0");
    }

    #[test]
    fn silence_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = script(dir.path(), "q", "exit 0");
        let err = query(Filesystem::Xfs, &quiet).unwrap_err().to_string();
        assert!(
            err.contains("printed nothing") && err.contains("xfsprogs"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_formatter_names_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, sbin) = (dir.path().join("bin"), dir.path().join("sbin"));
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(&sbin).unwrap();
        let find = || find_in(Filesystem::Xfs, Some(bin.clone().into()), &[&sbin]);
        let err = find().unwrap_err().to_string();
        assert!(err.contains("install the `xfsprogs` package"), "{err}");
        // Found in the extra directory, then PATH first.
        script(&sbin, "mkfs.xfs", "echo v");
        assert_eq!(find().unwrap(), sbin.join("mkfs.xfs"));
        script(&bin, "mkfs.xfs", "echo v");
        assert_eq!(find().unwrap(), bin.join("mkfs.xfs"));
    }
}
