//! What a path was when a sweep judged it: the identity a plan records and
//! a later sweep compares, so an item changed since is kept. Its own file,
//! so debris, entries and the report need not import the plan.

use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::last_use;
use crate::cache::names;

/// The reason a listed item that changed is kept.
pub(super) const CHANGED: &str = "changed since the plan; kept";

/// What a path was when a sweep judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The inode of the path itself (an entry's directory).
    pub ino: u64,
    /// `st_size`; for an entry, its `template.img`'s.
    pub size: u64,
    /// The change time; for an entry, its `template.img`'s.
    pub ctime: i64,
    pub ctime_nsec: i64,
    /// An entry's last use, in nanoseconds since the epoch.
    pub last_used_ns: Option<u64>,
}

impl Identity {
    /// Of a debris piece, from its lstat.
    pub fn of_meta(meta: &Metadata) -> Self {
        Identity {
            ino: meta.ino(),
            size: meta.size(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            last_used_ns: None,
        }
    }

    /// Of the entry directory `dir`; `None` when it cannot be examined. An
    /// entry without a `template.img` (invalid) is told by the directory.
    pub fn of_entry(dir: &Path) -> Option<Self> {
        Identity::of_entry_with(dir, true)
    }

    /// [`Identity::of_entry`], the last use read from the directory alone
    /// unless `lockfile`: a lockfile the sweep itself just created carries no
    /// use.
    pub(super) fn of_entry_with(dir: &Path, lockfile: bool) -> Option<Self> {
        let dir_meta = fs::symlink_metadata(dir).ok()?;
        let image = fs::symlink_metadata(dir.join(names::TEMPLATE_FILE)).ok();
        let meta = image.as_ref().unwrap_or(&dir_meta);
        let (root, name) = (dir.parent()?, dir.file_name()?.to_str()?);
        let last_used = if lockfile {
            last_use::last_used(root, name)
        } else {
            dir_meta.modified().ok()
        };
        Some(Identity {
            ino: dir_meta.ino(),
            last_used_ns: last_used.map(last_use::as_nanos),
            ..Identity::of_meta(meta)
        })
    }
}
