//! `--all` and `--stale`: published entries, each removed only while this
//! process holds its key lock exclusively (taken without blocking).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::sweep::{self, EntryRemoval};
use super::{CleanMode, CleanOptions, CleanReport, ItemKind, Reason};
use crate::cache::key::Key;
use crate::cache::last_use;
use crate::cache::lookup;
use crate::cache::names::{self, RootName};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint::{self, Formatter, Scheme};
use crate::store::lock::{self, Mode};
use crate::store::space;
use crate::store::tree;

/// Whether an entry is stale, memoising the installed formatters (an error
/// is the reason staleness cannot be told).
#[derive(Debug, Default)]
pub(crate) struct StaleCheck {
    installed: HashMap<Filesystem, Result<Formatter, String>>,
}

impl StaleCheck {
    /// `Ok(true)` when `key` was made by another formatter than the one
    /// installed: its fingerprint is neither scheme's ([`Scheme`]).
    pub(crate) fn is_stale(&mut self, key: &Key) -> Result<bool, String> {
        self.scheme(key).map(|scheme| scheme.is_none())
    }

    /// The scheme under which `key` names the installed formatter; `None`
    /// when it is stale.
    pub(crate) fn scheme(&mut self, key: &Key) -> Result<Option<Scheme>, String> {
        let installed = self
            .installed
            .entry(key.fs)
            .or_insert_with(|| fingerprint::formatter(key.fs).map_err(|e| format!("{e:#}")));
        match installed {
            Ok(formatter) => Ok(formatter.scheme_of(&key.fingerprint)),
            Err(e) => Err(e.clone()),
        }
    }
}

/// An entry the sweep may remove, with what the budgets weigh.
#[derive(Debug)]
pub(super) struct Candidate {
    pub name: String,
    pub key: Key,
    pub last_used: Option<SystemTime>,
    /// Allocated bytes of the whole entry directory.
    pub bytes: u64,
    /// A builder or cloner holds it: kept, and already reported.
    pub held: bool,
}

impl Candidate {
    fn removal(&self, reason: Reason) -> EntryRemoval {
        EntryRemoval {
            name: self.name.clone(),
            bytes: self.bytes,
            reason,
            invalid: None,
            last_used_secs: self.last_used.map(last_use::secs_since),
        }
    }
}

/// Judges every entry directory among `names`: first by the rules that take
/// an entry whatever the budgets (`--all`, `--stale`, `--older-than`), then,
/// least recently used first, by `--max-size` and `--min-free`. Each is
/// removed only while this process holds its key lock exclusively. Returns
/// the entries left, least recently used first.
pub(super) fn sweep(
    root: &Path,
    names: &[OsString],
    options: &CleanOptions,
    report: &mut CleanReport,
) -> Vec<Candidate> {
    let mut pool = candidates(root, names, report);
    // `.locks/` is made only once an entry is found: a root aimed at the
    // wrong directory gains nothing.
    if pool.is_empty() {
        return pool;
    }
    if !locks_dir_ready(root, report) {
        // No lock can be taken, so nothing may go; the budgets see as much.
        pool.iter_mut().for_each(|c| c.held = true);
        return pool;
    }
    let mut stale = StaleCheck::default();
    let now = SystemTime::now();
    pool.retain_mut(|c| {
        let Some(reason) = unconditional_reason(c, options, now, &mut stale, report) else {
            return true;
        };
        !remove_if_unused(root, c, reason, report)
    });
    pool
}

/// The entry directories among `names`, least recently used first (an entry
/// whose last use cannot be read first of all).
fn candidates(root: &Path, names: &[OsString], report: &mut CleanReport) -> Vec<Candidate> {
    let mut pool = Vec::new();
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
        pool.push(Candidate {
            name: name.to_owned(),
            key,
            last_used: last_use::last_used(root, name),
            bytes: space::allocated_bytes(&root.join(name)).unwrap_or(0),
            held: false,
        });
    }
    pool.sort_by(|a, b| (a.last_used, &a.name).cmp(&(b.last_used, &b.name)));
    pool
}

/// Why `c` goes whatever the budgets, if it does: `--all`, `--stale`, or a
/// last use older than `--older-than`.
fn unconditional_reason(
    c: &Candidate,
    options: &CleanOptions,
    now: SystemTime,
    stale: &mut StaleCheck,
    report: &mut CleanReport,
) -> Option<Reason> {
    match options.mode {
        CleanMode::All => return Some(Reason::All),
        CleanMode::Stale if judge_stale(&c.name, &c.key, stale, report) => {
            return Some(Reason::Stale);
        }
        _ => {}
    }
    let limit = options.budget.older_than?;
    let used = c.last_used.unwrap_or(SystemTime::UNIX_EPOCH);
    let age = now.duration_since(used).unwrap_or(Duration::ZERO);
    (age > limit).then_some(Reason::OlderThan)
}

/// `name`'s key when it is an entry to judge, `Ok(None)` when it vanished,
/// `Err` with the reason when it is not one. Only a real directory named
/// like a key and holding nothing but what the cache's writers put there
/// is: a symlink or file named like one is not ours to judge, and a
/// `--cache-dir` pointed at the wrong place (a home directory) must not lose
/// a directory of its own that merely wears a key's name.
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
    let Ok(key) = name.parse::<Key>() else {
        return Err("not named like a template key (<fs>-<MiB>m-<16 hex>); left alone".into());
    };
    match tree::foreign_file(&root.join(name), crate::cache::names::ENTRY_FILES) {
        Ok(None) => Ok(Some(key)),
        Ok(Some(foreign)) => Err(sweep::not_ours(ItemKind::Template, &foreign)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot list it: {e}; left alone")),
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

/// Removes `c` for `reason` unless a builder or cloner holds its key lock;
/// whether it went (in a dry run, would go). A held entry is reported once
/// and marked, so later budgets pass over it.
pub(super) fn remove_if_unused(
    root: &Path,
    c: &mut Candidate,
    reason: Reason,
    report: &mut CleanReport,
) -> bool {
    remove_if_unchanged(root, c, reason, &|_| true, report)
}

/// [`remove_if_unused`], removing only if `still(dir)` holds once the key
/// lock is taken (a plan's entry must be what the plan saw).
pub(super) fn remove_if_unchanged(
    root: &Path,
    c: &mut Candidate,
    reason: Reason,
    still: &dyn Fn(&Path) -> bool,
    report: &mut CleanReport,
) -> bool {
    if c.held {
        return false;
    }
    let name = c.name.as_str();
    // Another user's entry this user cannot remove: said now, in a dry run
    // too, rather than found out by a failed unlink.
    if let Ok(meta) = fs::symlink_metadata(root.join(name))
        && let Some(why) = crate::store::share::replace_refusal(root, &root.join(name), &meta)
    {
        report.fail(name, ItemKind::Template, why);
        c.held = true;
        return false;
    }
    let lock_path = lock::key_lock_path(root, name);
    let held = if report.dry_run {
        probe_lock(&lock_path)
    } else {
        lock::try_lock(&lock_path, Mode::Exclusive).map(|h| h.map(|l| Held::Key { _lock: l }))
    };
    match held {
        Ok(Some(_)) if !still(&root.join(name)) => {
            report.keep(
                name,
                ItemKind::Template,
                super::identity::CHANGED.into(),
                None,
                false,
            );
            c.held = true;
            false
        }
        Ok(Some(held)) => {
            // Held across the removal: a builder or cloner that comes now
            // waits, then finds no entry and builds afresh. Judged as a
            // lookup would, so the report says which entries were invalid.
            let invalid = match lookup::judge(root, &c.key) {
                Ok(lookup::Verdict::Invalid(why)) => Some(why),
                Ok(_) => None,
                Err(e) => Some(format!("cannot examine it: {e:#}")),
            };
            let removal = EntryRemoval {
                invalid,
                ..c.removal(reason)
            };
            let gone = sweep::remove_entry(report, removal);
            drop(held);
            gone
        }
        Ok(None) => {
            let pid = lock::holders(&lock_path).first().map(|h| h.pid);
            let why = format!("in use by {}", lock::describe_holders(&lock_path));
            report.keep(name, ItemKind::Template, why, pid, true);
            c.held = true;
            false
        }
        Err(e) => {
            report.fail(name, ItemKind::Template, format!("{e:#}"));
            // Not removable now; no later budget should try it again.
            c.held = true;
            false
        }
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
/// Whether a process holds `c` now, by a probe of its key lock that changes
/// nothing; an entry whose lock cannot be probed counts as free.
pub(super) fn held_now(root: &Path, c: &Candidate) -> bool {
    let path = lock::key_lock_path(root, &c.name);
    c.held || matches!(lock::probe(&path, Mode::Exclusive), Ok(lock::Probe::Held))
}

fn probe_lock(path: &Path) -> anyhow::Result<Option<Held>> {
    Ok(match lock::probe(path, Mode::Exclusive)? {
        lock::Probe::Held => None,
        free => Some(Held::Probe { _probe: free }),
    })
}

/// Makes sure `.locks/` is a directory of the root (creating it unless this
/// is a dry run). Anything else there (a file, a symlink that could lead the
/// lockfiles out of the root) is left alone and no entry is removed.
pub(super) fn locks_dir_ready(root: &Path, report: &mut CleanReport) -> bool {
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
