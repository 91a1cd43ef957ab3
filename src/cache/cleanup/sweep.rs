//! The removals themselves: each one goes (or, in a dry run, is only
//! counted) and its outcome is recorded in the [`CleanReport`], which holds
//! data only. The callers judge first and hold whatever lock makes the
//! removal safe.

use std::fs;
use std::io;

use super::identity::Identity;
use super::{CleanReport, ItemKind, Reason};
use crate::store::{space, tree};

/// Removes `name` under the report's root (a directory with
/// [`tree::remove_owned_dir`], anything else as a link or file), or in a dry
/// run only records it; whether it went. `bytes` is its allocated size when
/// the caller already knows it, `identity` what it was when judged.
pub(super) fn remove(
    report: &mut CleanReport,
    name: &str,
    kind: ItemKind,
    is_dir: bool,
    bytes: Option<u64>,
    reason: Reason,
    identity: Option<Identity>,
) -> bool {
    let path = report.path_of(name);
    let bytes = bytes.unwrap_or_else(|| {
        space::allocated_bytes(&path).unwrap_or_else(|e| {
            tracing::debug!("cannot size `{}`: {e}", path.display());
            0
        })
    });
    if !report.dry_run {
        let result = if is_dir {
            tree::remove_owned_dir(&path, crate::cache::names::ENTRY_FILES)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => {}
            // Someone else removed it first: done all the same.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A user's file appeared in it since it was judged.
            Err(ref e) if let Some(foreign) = tree::foreign_of(e) => {
                report.skip(name, not_ours(kind, foreign));
                return false;
            }
            Err(e) => {
                report.fail(name, kind, with_advice(&e));
                return false;
            }
        }
    }
    report.record_removed(name, kind, bytes, reason, identity);
    true
}

/// An entry [`remove_entry`] removes, and what the report says of it.
#[derive(Debug)]
pub(super) struct EntryRemoval {
    pub name: String,
    pub bytes: u64,
    pub reason: Reason,
    pub invalid: Option<String>,
    pub last_used_secs: Option<u64>,
}

/// Removes the entry directory `entry.name` as [`remove`] does, noting why
/// it was invalid, if it was, and when it was last used.
pub(super) fn remove_entry(report: &mut CleanReport, entry: EntryRemoval) -> bool {
    let before = report.removed.len();
    let identity = Identity::of_entry(&report.path_of(&entry.name));
    let bytes = Some(entry.bytes);
    let kind = ItemKind::Template;
    let gone = remove(
        report,
        &entry.name,
        kind,
        true,
        bytes,
        entry.reason,
        identity,
    );
    if let Some(removed) = report.removed.get_mut(before) {
        removed.invalid = entry.invalid;
        removed.last_used_secs = entry.last_used_secs;
    }
    gone
}

/// Why a directory of `kind` that holds `foreign` is skipped.
pub(super) fn not_ours(kind: ItemKind, foreign: &tree::Foreign) -> String {
    let what = match kind {
        ItemKind::Template => "an entry",
        ItemKind::Debris(_) => "debris",
    };
    format!("not {what}: it {foreign}; left alone")
}

/// A removal's error with what to do about the usual ones.
fn with_advice(e: &io::Error) -> String {
    let advice = match e.raw_os_error() {
        Some(libc::EBUSY) => "; something is mounted there or using it: unmount it and run again",
        Some(libc::EACCES | libc::EPERM) => {
            "; run as the owner of the cache (or as root), and check for an immutable \
             attribute (lsattr)"
        }
        Some(libc::EROFS) => "; the filesystem is read-only: remount it read-write",
        _ => "",
    };
    format!("{e}{advice}")
}
