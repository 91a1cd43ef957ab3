//! The debris sweep: a piece goes when its owner is dead and its flock free.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::identity::Identity;
use super::{CleanReport, ItemKind, Reason, sweep};
use crate::cache::names::{self, DebrisKind, RootName};
use crate::store::lock;

use crate::store::owner::alive as owner_alive;

mod fast;

/// Sweeps every debris-shaped name among `names` (with the inode the listing
/// gave each); a dry run (the report's flag) tests everything and removes
/// nothing. Outside a dry run pieces go the fast way ([`fast`]) where it
/// can tell they are safe to, else the careful way below.
pub(super) fn sweep(root: &Path, names: &[(OsString, u64)], report: &mut CleanReport) {
    // After the listing, as the fast path's reasoning needs.
    let fast = (!report.dry_run)
        .then(|| fast::FastRoot::open(root))
        .flatten();
    // In inode order where pieces go the fast way: the filesystems keep
    // inodes (and btrfs its items) in that order, so unlinking in it walks
    // their trees and tables once instead of hopping (as `rm -rf` does for
    // large directories). The report is put back in name order after.
    let mut order: Vec<&(OsString, u64)> = names.iter().collect();
    if fast.is_some() {
        order.sort_by_key(|(_, ino)| *ino);
    }
    // One kill(2) per owner, not per piece: a crashed run leaves many pieces
    // of one pid. A pid that dies meanwhile stays "alive" here: kept, safely.
    let mut alive: HashMap<i32, bool> = HashMap::new();
    for (name, ino) in order {
        let (kind, pid) = match names::classify(name) {
            RootName::Debris { kind, pid } => (ItemKind::from(kind), pid),
            RootName::NotUtf8 => {
                let shown = name.to_string_lossy();
                report.skip(&shown, "the name is not UTF-8; left alone".into());
                continue;
            }
            RootName::Locks | RootName::Other => continue,
        };
        // Debris names are UTF-8: classify said so.
        let name = name.to_string_lossy();
        let Some(pid) = pid else {
            report.skip(
                &name,
                "debris-shaped, but its pid field is not a positive number; left alone".into(),
            );
            continue;
        };
        let alive = *alive.entry(pid).or_insert_with(|| owner_alive(pid));
        if !alive && let Some(fast) = &fast {
            let want_dir = kind == ItemKind::Debris(DebrisKind::StagingDir);
            match fast.remove(&name, *ino, want_dir) {
                Ok(fast::Outcome::Removed { bytes, identity }) => {
                    report.record_removed(&name, kind, bytes, Reason::Debris, Some(identity));
                    continue;
                }
                Ok(fast::Outcome::Vanished) => continue,
                Ok(fast::Outcome::Changed) => {
                    report.skip(&name, "it changed while being examined; left alone".into());
                    continue;
                }
                // A lock to try, a tree to check, or a permission to mend.
                Ok(fast::Outcome::Careful) | Err(_) => {}
            }
        }
        sweep_one(root, &name, kind, pid, alive, None, report);
    }
    if fast.is_some() {
        report.sort_by_name();
    }
}

/// `--plan`'s removal of one listed piece: by the sweep's own rules, and
/// only if it is still `expect`.
pub(super) fn apply_planned(
    root: &Path,
    name: &str,
    kind: ItemKind,
    pid: i32,
    expect: &Identity,
    report: &mut CleanReport,
) {
    if fs::symlink_metadata(root.join(name)).is_err() {
        return report.skip(name, "already gone".into());
    }
    sweep_one(
        root,
        name,
        kind,
        pid,
        owner_alive(pid),
        Some(expect),
        report,
    );
}

fn sweep_one(
    root: &Path,
    name: &str,
    kind: ItemKind,
    pid: i32,
    alive: bool,
    expect: Option<&Identity>,
    report: &mut CleanReport,
) {
    let path = root.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => return report.fail(name, kind, format!("cannot stat it: {e}")),
    };
    if expect.is_some_and(|expect| Identity::of_meta(&meta) != *expect) {
        return report.keep(name, kind, super::identity::CHANGED.into(), None, false);
    }
    if alive {
        let reason = format!("owner pid {pid} is alive");
        return report.keep(name, kind, reason, Some(pid), true);
    }
    let file_type = meta.file_type();
    if !file_type.is_file() && !file_type.is_dir() {
        // A symlink, FIFO, socket or device node: none of our writers makes
        // one, none carries our flock, and opening one could follow it, block
        // or wake a device. Its name goes; a link's target is untouched.
        tracing::debug!("{name} is a {}", describe_type(&meta));
        let identity = Some(Identity::of_meta(&meta));
        let bytes = Some(allocated(&meta));
        sweep::remove(report, name, kind, false, bytes, Reason::Debris, identity);
        return;
    }
    // Our writers make staging directories as directories and the rest as
    // regular files; a user's file or tree that merely wears the name stays.
    if file_type.is_dir() != (kind == ItemKind::Debris(DebrisKind::StagingDir)) {
        let reason = format!(
            "named like a {} but it is a {}; left alone",
            kind.describe(),
            if file_type.is_dir() {
                "directory"
            } else {
                "file"
            }
        );
        return report.skip(name, reason);
    }
    if file_type.is_dir() {
        match crate::store::tree::foreign_file(&path, crate::cache::names::ENTRY_FILES) {
            Ok(None) => {}
            Ok(Some(foreign)) => return report.skip(name, sweep::not_ours(kind, &foreign)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return report.fail(name, kind, format!("cannot list it: {e}")),
        }
    }
    remove_if_unlocked(&path, name, kind, pid, &meta, report);
}

/// Removes a dead owner's file or directory `name` while holding its flock,
/// or keeps it when a live process holds that flock.
fn remove_if_unlocked(
    path: &Path,
    name: &str,
    kind: ItemKind,
    pid: i32,
    meta: &Metadata,
    report: &mut CleanReport,
) {
    let file = match open_no_follow(path, meta) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let error = format!(
                "cannot open it to test its flock: {e}; run as the cache's owner (or root) \
                 to let clean judge it"
            );
            return report.fail(name, kind, error);
        }
    };
    // The name may have been swapped between lstat and open.
    match file.metadata() {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
        _ => return report.skip(name, "it changed while being examined; left alone".into()),
    }
    match lock::try_lock_until_closed(&file) {
        Ok(true) => {
            let bytes = (!meta.is_dir()).then(|| allocated(meta));
            let identity = Some(Identity::of_meta(meta));
            sweep::remove(
                report,
                name,
                kind,
                meta.is_dir(),
                bytes,
                Reason::Debris,
                identity,
            );
            // Closing releases the lock, after the removal.
            drop(file);
        }
        Ok(false) => {
            let holder = lock::holders(path).first().map(|h| h.pid);
            let reason = format!(
                "owner pid {pid} is gone but its flock is held by {}",
                lock::describe_holders(path)
            );
            report.keep(name, kind, reason, holder, true);
        }
        Err(e) => report.fail(name, kind, format!("cannot test its flock: {e:#}")),
    }
}

fn allocated(meta: &Metadata) -> u64 {
    meta.blocks() * 512
}

/// Opens a regular file or directory for a flock test without following a
/// symlink, without blocking (a FIFO swapped in), and not leaking into children.
fn open_no_follow(path: &Path, meta: &Metadata) -> io::Result<File> {
    let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if meta.is_dir() {
        flags |= libc::O_DIRECTORY;
    }
    OpenOptions::new().read(true).custom_flags(flags).open(path)
}

fn describe_type(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "device node"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_refuses_to_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let meta = fs::metadata(&target).unwrap();
        let err = open_no_follow(&link, &meta).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }
}
