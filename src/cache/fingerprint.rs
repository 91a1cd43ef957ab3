//! The formatter fingerprint: SHA-256 over the stdout, then the stderr, of
//! the formatter's version query. Its first 16 hex characters go in the key,
//! so a new mkfs gives new keys. The version the query prints is kept too:
//! it says how small a device the formatter takes ([`crate::cache::minimum`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::filesystem::Filesystem;
use super::minimum::Version;

mod memo;

/// What the installed formatter's version query told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    /// The full SHA-256 hex of its version output.
    pub fingerprint: String,
    /// The version it printed, where one could be read.
    pub version: Option<Version>,
}

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

/// Runs `formatter`'s version query: the full SHA-256 hex of its output, and
/// the version in it.
pub fn query(fs: Filesystem, formatter: &Path) -> Result<Formatter> {
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
    let fingerprint = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = [&out.stdout[..], &out.stderr[..]].concat();
    Ok(Formatter {
        fingerprint,
        version: Version::from_output(&String::from_utf8_lossy(&text)),
    })
}

/// The installed formatter's fingerprint and version, queried once per
/// process and remembered across processes while the formatter and its
/// shared objects stay the same (see `memo.rs`).
pub fn formatter(fs: Filesystem) -> Result<Formatter> {
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
