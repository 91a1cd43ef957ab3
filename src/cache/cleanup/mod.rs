//! `clean`, `clean --all` and `clean --stale`: sweep dead writers' debris,
//! then entries no live process holds, as the protocol in [`crate::cache`]
//! says.
//!
//! The sweep reads the root once, then judges debris (`debris.rs`: only the
//! exact names of [`crate::cache::names`], of the right file type), then,
//! with `--all` or `--stale`, entries (`entries.rs`). Each removal goes
//! through `sweep.rs`, which records its outcome in the [`CleanReport`], a
//! value that only holds data. Trees are removed by descriptors, never
//! crossing a mount point ([`crate::store::tree`]).
//! Nothing is followed through a symlink and nothing outside the root is
//! touched. An entry that cannot be removed is a warning and a line of the
//! report; the sweep goes on. Only an unreadable root is an error.

mod budget;
mod debris;
pub(crate) mod entries;
pub(crate) mod identity;
pub(crate) mod plan;
mod report;
mod sweep;

pub(crate) use report::{BudgetStatus, CleanReport, FORMAT_VERSION, ItemKind, Reason, Skipped};

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::store::space;
use serde::Serialize;

/// What to sweep besides debris.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanMode {
    /// Debris of dead writers only.
    Debris,
    /// Debris, then every entry not in use.
    All,
    /// Debris, then entries made by another formatter version.
    Stale,
}

/// Limits on what the entries may take, by last use (see
/// [`crate::cache::last_use`]); each removes least recently used entries
/// first. All `None`: no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Remove entries last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Remove entries until the rest allocate at most this many bytes.
    pub max_size: Option<u64>,
    /// Remove entries until the root's filesystem has this many bytes free.
    pub min_free: Option<u64>,
}

impl Budget {
    pub fn is_set(&self) -> bool {
        *self != Budget::default()
    }

    /// Refuses, before anything is removed, a `min_free` more than the whole
    /// filesystem holding `root`: a user's `--min-free` no removal could
    /// meet. ([`clean`] itself takes it, removing nothing for it, as a
    /// build that heals a full disk needs.)
    pub(crate) fn check_fits(&self, root: &Path) -> Result<(), crate::usage::UsageError> {
        budget::check(root, self)
    }
}

/// How [`clean`] sweeps.
#[derive(Debug, Clone, Copy)]
pub struct CleanOptions {
    /// Debris only, everything unheld, or the stale.
    pub mode: CleanMode,
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Limits that evict least-recently-used entries.
    pub budget: Budget,
}

impl CleanOptions {
    /// `mode` with no budget.
    pub fn new(mode: CleanMode, dry_run: bool) -> Self {
        CleanOptions {
            mode,
            dry_run,
            budget: Budget::default(),
        }
    }
}

/// Sweeps `root` as `options` say. A missing root is an empty report.
pub fn clean(root: &Path, options: CleanOptions) -> Result<CleanReport> {
    let mut report = CleanReport::new(root, options.mode, options.dry_run);
    let Some(listed) = read_root_inodes(root)? else {
        report.finish(0);
        return Ok(report);
    };
    let before = space::free_bytes(root).ok();
    debris::sweep(root, &listed, &mut report);
    let names: Vec<_> = listed.into_iter().map(|(name, _)| name).collect();
    let budgeted = options.budget.is_set();
    let mut status = None;
    if options.mode != CleanMode::Debris || budgeted {
        let pool = entries::sweep(root, &names, &options, &mut report);
        if budgeted {
            status = Some(budget::apply(root, &options.budget, pool, &mut report));
        }
    }
    let freed = commit_and_measure(root, before, &report);
    if let Some(mut status) = status {
        budget::settle(&mut status, space::available_bytes(root).ok(), &report);
        report.budget = Some(status);
    }
    report.finish(freed);
    Ok(report)
}

/// What removals gave back, by statvfs before and after, once the
/// filesystem has committed them; zero in a dry run or with nothing removed.
pub(super) fn commit_and_measure(root: &Path, before: Option<u64>, report: &CleanReport) -> u64 {
    if report.dry_run || report.removed.is_empty() {
        return 0;
    }
    if let Err(e) = space::commit(root) {
        tracing::debug!("syncfs `{}`: {e}", root.display());
    }
    match (before, space::free_bytes(root)) {
        (Some(before), Ok(after)) => after.saturating_sub(before),
        _ => 0,
    }
}

/// The root's names, sorted; `None` when the root does not exist.
pub(crate) fn read_root(root: &Path) -> Result<Option<Vec<std::ffi::OsString>>> {
    let listed = read_root_inodes(root)?;
    Ok(listed.map(|l| l.into_iter().map(|(name, _)| name).collect()))
}

/// The root's names with the inode the listing gives each (no stat), sorted;
/// `None` when the root does not exist.
fn read_root_inodes(root: &Path) -> Result<Option<Vec<(std::ffi::OsString, u64)>>> {
    use std::os::unix::fs::DirEntryExt;
    let context = || {
        format!(
            "failed to read the cache root `{}`; check --cache-dir / $KTSTR_CACHE_DIR and its \
             permissions",
            root.display()
        )
    };
    let dir = match fs::read_dir(root) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(context),
    };
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.with_context(context)?;
        names.push((entry.file_name(), entry.ino()));
    }
    names.sort();
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_root_is_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let options = CleanOptions::new(CleanMode::All, false);
        let r = clean(&dir.path().join("nope"), options).unwrap();
        assert!(r.removed.is_empty() && r.failed.is_empty());
        assert_eq!(
            r.summary(),
            "removed 0 templates and 0 debris entries (0 B freed)"
        );
    }

    #[test]
    fn an_unreadable_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let options = CleanOptions::new(CleanMode::Debris, true);
        let err = format!("{:#}", clean(&file, options).unwrap_err());
        assert!(
            err.contains("failed to read the cache root") && err.contains("file"),
            "{err}"
        );
    }
}
