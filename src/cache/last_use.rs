//! When an entry was last used, for the budgets of `clean` and `template list`.
//!
//! The record is the mtime of the entry directory `<key>/` itself, set to now
//! by one `utimensat` on every use (a hit, a clone, a per-test image). A
//! publish sets it too, because renaming `template.img` into the staging
//! directory writes that directory; so an entry nobody recorded a use of
//! (ktstr 0.15 never does) counts as used when it was published. ktstr's
//! lookup reads only `<key>/template.img` and its `clean_all` removes the
//! whole directory, record included, so neither notices.
//!
//! Setting a directory's times needs its owner or write access to it. In a
//! root several users share, entries belong to their builders, so a use by
//! anyone else is recorded on the key's lockfile instead (0666 in a shared
//! root, see `cache::share`); the last use is the later of the two. In a
//! private root nobody else can record a use at all. A lockfile outlives its
//! entries, but a time on it older than the directory's predates the entry
//! and changes nothing.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use crate::store::lock;

/// Records a use of the entry `name` under `root` now. Best effort: a use
/// that cannot be recorded is a debug line, never a failed clone.
pub fn record(root: &Path, name: &str) {
    let dir = root.join(name);
    let errno = match touch(&dir) {
        Ok(()) => return,
        Err(errno) => errno,
    };
    if matches!(errno, libc::EACCES | libc::EPERM) {
        // Another user's entry: its lockfile takes the record.
        if touch(&lock::key_lock_path(root, name)).is_ok() {
            return;
        }
    }
    let e = std::io::Error::from_raw_os_error(errno);
    tracing::debug!("cannot record a use of `{}`: {e}", dir.display());
}

/// Sets `path`'s access and modification times to now, not following a
/// symlink: one syscall.
fn touch(path: &Path) -> Result<(), i32> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; a null
    // `times` means "now" for both and nothing else is read.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            std::ptr::null(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// When the entry `name` was last used: the later of its directory's and its
/// lockfile's mtime. `None` when the directory cannot be examined.
pub(crate) fn last_used(root: &Path, name: &str) -> Option<SystemTime> {
    let dir = fs::symlink_metadata(root.join(name))
        .ok()?
        .modified()
        .ok()?;
    let lockfile = fs::symlink_metadata(lock::key_lock_path(root, name))
        .ok()
        .and_then(|m| m.modified().ok());
    Some(lockfile.map_or(dir, |l| l.max(dir)))
}

/// Nanoseconds since the epoch, the form a plan compares (`0` before it).
pub(crate) fn as_nanos(t: SystemTime) -> u64 {
    let since = t.duration_since(SystemTime::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) use crate::units::secs_since;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::as_nobody;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn set_mtime(path: &Path, ago: Duration) {
        let t = SystemTime::now() - ago;
        fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_use_moves_the_directory_time_to_now() {
        let root = tempfile::tempdir().unwrap();
        let name = "btrfs-256m-0123456789abcdef";
        let dir = root.path().join(name);
        fs::create_dir(&dir).unwrap();
        set_mtime(&dir, Duration::from_secs(86_400));
        assert!(secs_since(last_used(root.path(), name).unwrap()) >= 86_399);
        record(root.path(), name);
        assert!(secs_since(last_used(root.path(), name).unwrap()) < 5);
        assert_eq!(last_used(root.path(), "missing"), None);
    }

    /// An old lockfile (an earlier entry's uses) leaves a newer entry's
    /// publication time alone; a newer one wins.
    #[test]
    fn the_later_of_directory_and_lockfile_counts() {
        let root = tempfile::tempdir().unwrap();
        let name = "ext4-16m-0123456789abcdef";
        let dir = root.path().join(name);
        fs::create_dir(&dir).unwrap();
        drop(lock::try_lock(&lock::key_lock_path(root.path(), name), lock::Mode::Shared).unwrap());
        let lockfile = lock::key_lock_path(root.path(), name);
        set_mtime(&dir, Duration::from_secs(3600));
        set_mtime(&lockfile, Duration::from_secs(7200));
        let age = secs_since(last_used(root.path(), name).unwrap());
        assert!((3599..3700).contains(&age), "{age}");
        set_mtime(&lockfile, Duration::from_secs(60));
        let age = secs_since(last_used(root.path(), name).unwrap());
        assert!((59..100).contains(&age), "{age}");
    }

    /// Another user cannot set the times of root's entry directory; in a
    /// shared root the 0666 lockfile takes the record, in a private one
    /// nothing does.
    #[test]
    fn another_users_use_is_recorded_on_a_shared_roots_lockfile_only() {
        let root = tempfile::tempdir().unwrap();
        let name = "xfs-300m-0123456789abcdef";
        let dir = root.path().join(name);
        fs::create_dir(&dir).unwrap();
        let lockfile = lock::key_lock_path(root.path(), name);
        for (mode, recorded) in [(0o1777, true), (0o755, false)] {
            let _ = fs::remove_file(&lockfile);
            fs::set_permissions(root.path(), fs::Permissions::from_mode(mode)).unwrap();
            drop(lock::try_lock(&lockfile, lock::Mode::Shared).unwrap());
            set_mtime(&dir, Duration::from_secs(3600));
            set_mtime(&lockfile, Duration::from_secs(3600));
            as_nobody(|| record(root.path(), name));
            assert!(secs_since(fs::metadata(&dir).unwrap().modified().unwrap()) >= 3599);
            let age = secs_since(last_used(root.path(), name).unwrap());
            assert_eq!(age < 5, recorded, "root {mode:o}: {age}");
        }
    }
}
