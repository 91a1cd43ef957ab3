//! `--all` and `--stale`: published entries, each removed only while this
//! process holds its key lock exclusively (taken without blocking).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;

use super::{CleanMode, CleanOptions, CleanReport, ItemKind};
use crate::cache::filesystem::Filesystem;
use crate::cache::fingerprint;
use crate::cache::key::{FINGERPRINT_LEN, Key};
use crate::cache::lock::{self, Mode};
use crate::cache::lookup;
use crate::cache::names::{self, RootName};

/// Whether an entry is stale, memoising the installed formatters'
/// fingerprints (an error is the reason staleness cannot be told).
#[derive(Debug, Default)]
pub(crate) struct StaleCheck {
    installed: HashMap<Filesystem, Result<String, String>>,
}

impl StaleCheck {
    /// `Ok(true)` when `key` was made by another formatter version than the
    /// one installed.
    pub(crate) fn is_stale(&mut self, key: &Key) -> Result<bool, String> {
        let installed = self.installed.entry(key.fs).or_insert_with(|| {
            fingerprint::fingerprint(key.fs)
                .map(|fp| fp[..FINGERPRINT_LEN].to_owned())
                .map_err(|e| format!("{e:#}"))
        });
        installed.clone().map(|fp| fp != key.fingerprint)
    }
}

/// Removes every entry directory among `names` that no process holds (with
/// `--stale`, only stale ones), once `.locks/` is sound.
pub(super) fn sweep(
    root: &Path,
    names: &[OsString],
    options: CleanOptions,
    report: &mut CleanReport,
) {
    // `.locks/` is made only once an entry is found: a root aimed at the
    // wrong directory gains nothing.
    let mut locks_ready = None;
    let mut stale = StaleCheck::default();
    for name in names {
        if names::classify(name) != RootName::Other {
            continue;
        }
        let Some(name) = name.to_str() else { continue };
        let key = match entry_key(root, name) {
            Ok(Some(key)) => key,
            Ok(None) => continue,
            Err(why) => {
                report.skip(name, why);
                continue;
            }
        };
        if !*locks_ready.get_or_insert_with(|| locks_dir_ready(root, report)) {
            return;
        }
        if options.mode == CleanMode::Stale && !judge_stale(name, &key, &mut stale, report) {
            continue;
        }
        remove_if_unused(root, name, &key, report);
    }
}

/// `name`'s key when it is an entry to judge, `Ok(None)` when it vanished,
/// `Err` with the reason when it is not one. Only a real directory named
/// like a key is: a symlink or file named like one is not ours to judge, and
/// a `--cache-dir` pointed at the wrong place (a home directory) must not
/// lose its other directories.
fn entry_key(root: &Path, name: &str) -> Result<Option<Key>, String> {
    match fs::symlink_metadata(root.join(name)) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err("a symlink, not an entry directory; left alone".into());
        }
        Ok(_) => return Err("not a directory, so not an entry; left alone".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot examine it: {e}; left alone")),
    }
    match name.parse::<Key>() {
        Ok(key) => Ok(Some(key)),
        Err(_) => Err("not named like a template key (<fs>-<MiB>m-<16 hex>); left alone".into()),
    }
}

/// Whether `--stale` should try to remove `name`; records why not when it
/// cannot tell.
fn judge_stale(name: &str, key: &Key, stale: &mut StaleCheck, report: &mut CleanReport) -> bool {
    match stale.is_stale(key) {
        Ok(is_stale) => is_stale,
        Err(e) => {
            let reason = format!("cannot tell whether it is stale: {e}");
            report.keep(name, ItemKind::Template, reason, None, false);
            false
        }
    }
}

fn remove_if_unused(root: &Path, name: &str, key: &Key, report: &mut CleanReport) {
    let lock_path = lock::key_lock_path(root, name);
    let held = if report.dry_run {
        probe_lock(&lock_path)
    } else {
        lock::try_lock(&lock_path, Mode::Exclusive).map(|h| h.map(|l| Held::Key { _lock: l }))
    };
    match held {
        Ok(Some(held)) => {
            // Held across the removal: a builder or cloner that comes now
            // waits, then finds no entry and builds afresh. Judged as a
            // lookup would, so the report says which entries were invalid.
            let invalid = match lookup::judge(root, key) {
                Ok(lookup::Verdict::Invalid(why)) => Some(why),
                Ok(_) => None,
                Err(e) => Some(format!("cannot examine it: {e:#}")),
            };
            report.remove_entry(name, invalid);
            drop(held);
        }
        Ok(None) => {
            let pid = lock::holders(&lock_path).first().map(|h| h.pid);
            let reason = format!("in use by {}", lock::describe_holders(&lock_path));
            report.keep(name, ItemKind::Template, reason, pid, true);
        }
        Err(e) => report.fail(name, ItemKind::Template, format!("{e:#}")),
    }
}

/// A key lock this sweep holds: the real one, or a dry run's probe.
#[derive(Debug)]
enum Held {
    Key { _lock: lock::Locked },
    Probe { _probe: lock::Probe },
}

/// A dry run's test of a key lock: the same non-blocking exclusive try, but on
/// an existing lockfile only, so nothing is created. A missing one is free.
fn probe_lock(path: &Path) -> anyhow::Result<Option<Held>> {
    Ok(match lock::probe(path, Mode::Exclusive)? {
        lock::Probe::Held => None,
        free => Some(Held::Probe { _probe: free }),
    })
}

/// Makes sure `.locks/` is a directory of the root (creating it unless this
/// is a dry run). Anything else there (a file, a symlink that could lead the
/// lockfiles out of the root) is left alone and no entry is removed.
fn locks_dir_ready(root: &Path, report: &mut CleanReport) -> bool {
    let path = root.join(names::LOCKS_DIR);
    let problem = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => return true,
        Ok(_) => "it is not a directory".to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if report.dry_run {
                return true;
            }
            match lock::create_locks_dir(&path) {
                Ok(()) => return true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return locks_dir_ready(root, report);
                }
                Err(e) => format!("it cannot be created: {e}"),
            }
        }
        Err(e) => format!("it cannot be examined: {e}"),
    };
    let reason = format!(
        "`{}` is needed to lock entries, but {problem}; no entry was removed. \
         Move it out of the way and run again",
        path.display()
    );
    tracing::warn!("{reason}");
    report.skip(names::LOCKS_DIR, reason);
    false
}
