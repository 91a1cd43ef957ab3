//! The formatter fingerprint: SHA-256 over the stdout, then the stderr, of
//! the formatter's version query. Its first 16 hex characters go in the key,
//! so a new mkfs gives new keys.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::filesystem::Filesystem;

mod memo;

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

/// The full SHA-256 hex of `formatter`'s version output.
pub fn fingerprint_of(fs: Filesystem, formatter: &Path) -> Result<String> {
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
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The installed formatter's fingerprint, computed once per process and
/// remembered across processes while the formatter and its shared objects
/// stay the same (see `memo.rs`).
pub fn fingerprint(fs: Filesystem) -> Result<String> {
    static CACHE: Mutex<Option<HashMap<Filesystem, String>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(fp) = map.get(&fs) {
        return Ok(fp.clone());
    }
    let formatter = find_formatter(fs)?;
    let fp = match memo::recall(fs, &formatter) {
        Some(fp) => fp,
        None => {
            let fp = fingerprint_of(fs, &formatter)?;
            memo::remember(fs, &formatter, &fp);
            fp
        }
    };
    map.insert(fs, fp.clone());
    Ok(fp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn hashes_stdout_then_stderr_and_ignores_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let a = script(dir.path(), "a", "echo out; echo err >&2; exit 3");
        let b = script(dir.path(), "b", "echo err >&2; echo out");
        let fa = fingerprint_of(Filesystem::Btrfs, &a).unwrap();
        let want: String = Sha256::digest(b"out\nerr\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fa, want);
        assert_eq!(fa, fingerprint_of(Filesystem::Btrfs, &b).unwrap());
        let c = script(dir.path(), "c", "echo other");
        assert_ne!(fa, fingerprint_of(Filesystem::Btrfs, &c).unwrap());
    }

    #[test]
    fn silence_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = script(dir.path(), "q", "exit 0");
        let err = fingerprint_of(Filesystem::Xfs, &quiet)
            .unwrap_err()
            .to_string();
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
