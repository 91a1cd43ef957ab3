//! `--max-size` and `--min-free`: least recently used entries go until the
//! budget is met or nothing removable is left.
//!
//! Both walk the entries [`super::entries::sweep`] left, least recently used
//! first, passing over any a builder or cloner holds (each is kept and named
//! once). `--min-free` reads the filesystem again after each removal, synced
//! first, since btrfs and ext4 count freed blocks only once they commit; a dry
//! run adds each entry's allocated size instead, which overstates what
//! removing reflink-sharing entries would give back. A `--min-free` that even
//! removing every unheld entry could not meet removes none of them.

use std::path::Path;

use super::entries::{self, Candidate};
use super::{Budget, BudgetStatus, CleanReport, Reason};
use crate::store::space;
use crate::usage::UsageError;

/// Refuses, before anything is removed, a `--min-free` more than the whole
/// filesystem holding `root`: no removal could meet it.
pub(super) fn check(root: &Path, budget: &Budget) -> Result<(), UsageError> {
    let Some(min) = budget.min_free else {
        return Ok(());
    };
    // A root that is not there yet has nothing to remove: the sweep says so.
    let size = space::filesystem_bytes(root).unwrap_or(u64::MAX);
    if min <= size {
        return Ok(());
    }
    Err(UsageError(format!(
        "--min-free {} is more than the whole filesystem holding `{}` ({}); give at most its size",
        space::human_bytes(min),
        root.display(),
        space::human_bytes(size)
    )))
}

/// Applies `budget` to `pool` and says where it stands.
pub(super) fn apply(
    root: &Path,
    budget: &Budget,
    mut pool: Vec<Candidate>,
    report: &mut CleanReport,
) -> BudgetStatus {
    if let Some(max) = budget.max_size {
        max_size(root, max, &mut pool, report);
    }
    let mut status = BudgetStatus {
        max_size_bytes: budget.max_size,
        older_than_secs: budget.older_than.map(|d| d.as_secs()),
        min_free_bytes: budget.min_free,
        ..BudgetStatus::default()
    };
    if let Some(min) = budget.min_free {
        let (free, unreachable) = min_free(root, min, &mut pool, report);
        status.free_bytes = Some(free);
        status.min_free_unreachable = unreachable;
    }
    status.templates_bytes = pool.iter().map(|c| c.bytes).sum();
    status
}

/// Fills in the space left once the sweep is over and committed (`free`, by
/// statvfs; a dry run adds what it would remove), and any shortfall.
pub(super) fn settle(status: &mut BudgetStatus, free: Option<u64>, report: &CleanReport) {
    let free = if report.dry_run {
        // min_free already added what would go, removal by removal.
        status.free_bytes.or_else(|| {
            let would = report.removed.iter().map(|r| r.bytes).sum::<u64>();
            free.map(|f| f + would)
        })
    } else {
        free.or(status.free_bytes)
    };
    status.free_bytes = free;
    if let (Some(min), Some(free)) = (status.min_free_bytes, free) {
        status.min_free_short_bytes = min.saturating_sub(free);
    }
}

/// Removes least recently used entries until the rest allocate at most `max`.
fn max_size(root: &Path, max: u64, pool: &mut Vec<Candidate>, report: &mut CleanReport) {
    let mut total: u64 = pool.iter().map(|c| c.bytes).sum();
    pool.retain_mut(|c| {
        if total <= max || !entries::remove_if_unused(root, c, Reason::MaxSize, report) {
            return true;
        }
        total -= c.bytes;
        false
    });
}

/// Removes least recently used entries until the filesystem has `min` bytes
/// available; the bytes available at the end (estimated in a dry run), and
/// whether the goal was out of reach, so nothing was removed for it.
fn min_free(
    root: &Path,
    min: u64,
    pool: &mut Vec<Candidate>,
    report: &mut CleanReport,
) -> (u64, bool) {
    let Ok(mut free) = space::available_bytes(root) else {
        return (0, false);
    };
    // What earlier removals (debris, other rules) gave back shows only once
    // the filesystem commits.
    if !report.dry_run && !report.removed.is_empty() {
        free = committed_available(root).unwrap_or(free);
    } else if report.dry_run {
        free += report.removed.iter().map(|r| r.bytes).sum::<u64>();
    }
    // A goal that removing every unheld entry cannot meet removes none: a
    // cron job on a host short of space for other reasons would otherwise
    // empty the cache on every run. Allocated sizes overstate what removing
    // reflink-sharing entries gives back, so a reachable goal is never
    // judged out of reach.
    let removable: u64 = (pool.iter())
        .filter(|c| !entries::held_now(root, c))
        .map(|c| c.bytes)
        .sum();
    if free < min && free.saturating_add(removable) < min {
        return (free, true);
    }
    pool.retain_mut(|c| {
        if free >= min || !entries::remove_if_unused(root, c, Reason::MinFree, report) {
            return true;
        }
        free = if report.dry_run {
            free + c.bytes
        } else {
            committed_available(root).unwrap_or(free + c.bytes)
        };
        false
    });
    (free, false)
}

/// Bytes available once what was removed is committed.
fn committed_available(root: &Path) -> Option<u64> {
    if let Err(e) = space::commit(root) {
        tracing::debug!("syncfs `{}`: {e}", root.display());
    }
    space::available_bytes(root).ok()
}
