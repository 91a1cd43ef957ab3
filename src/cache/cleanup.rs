//! `clean`, `clean --all` and `clean --stale`: sweep dead writers' debris,
//! then entries no live process holds, as the protocol in [`crate::cache`]
//! says.
//!
//! The sweep reads the root once, then judges debris (`debris.rs`: only the
//! exact names of [`crate::cache::names`], of the right file type), then,
//! with `--all` or `--stale`, entries (`entries.rs`). Trees are removed by
//! descriptors, never crossing a mount point (`tree.rs`).
//! Nothing is followed through a symlink and nothing outside the root is
//! touched. An entry that cannot be removed is a warning and a line of the
//! report; the sweep goes on. Only an unreadable root is an error.

mod debris;
pub(crate) mod entries;
mod report;
pub mod space;

pub use report::{CleanReport, Failed, ItemKind, Kept, Removed, Skipped, Totals};

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// What to sweep besides debris.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CleanMode {
    /// Debris of dead writers only.
    Debris,
    /// Debris, then every entry not in use.
    All,
    /// Debris, then entries made by another formatter version.
    Stale,
}

/// How [`clean`] sweeps.
#[derive(Debug, Clone, Copy)]
pub struct CleanOptions {
    pub mode: CleanMode,
    /// Report what would go; change nothing.
    pub dry_run: bool,
}

/// Sweeps `root` as `options` say. A missing root is an empty report.
pub fn clean(root: &Path, options: CleanOptions) -> Result<CleanReport> {
    let mut report = CleanReport {
        root: root.to_owned(),
        mode: options.mode,
        dry_run: options.dry_run,
        removed: Vec::new(),
        kept: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
        totals: Totals::default(),
    };
    let Some(names) = read_root(root)? else {
        report.finish(0);
        return Ok(report);
    };
    let before = space::free_bytes(root).ok();
    debris::sweep(root, &names, &mut report);
    if options.mode != CleanMode::Debris {
        entries::sweep(root, &names, options, &mut report);
    }
    let mut freed = 0;
    if !options.dry_run && !report.removed.is_empty() {
        if let Err(e) = space::commit(root) {
            tracing::debug!("syncfs `{}`: {e}", root.display());
        }
        if let (Some(before), Ok(after)) = (before, space::free_bytes(root)) {
            freed = after.saturating_sub(before);
        }
    }
    report.finish(freed);
    Ok(report)
}

/// The root's names, sorted; `None` when the root does not exist.
pub(crate) fn read_root(root: &Path) -> Result<Option<Vec<std::ffi::OsString>>> {
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
        names.push(entry.with_context(context)?.file_name());
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
        let options = CleanOptions {
            mode: CleanMode::All,
            dry_run: false,
        };
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
        let options = CleanOptions {
            mode: CleanMode::Debris,
            dry_run: true,
        };
        let err = format!("{:#}", clean(&file, options).unwrap_err());
        assert!(
            err.contains("failed to read the cache root") && err.contains("file"),
            "{err}"
        );
    }
}
