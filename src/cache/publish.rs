//! Atomic publication: stage in `<key>.tmp.<pid>/`, fsync, read the image
//! back from the disk ([`readback`]), rename onto `<key>/`.
//!
//! The caller holds the key's lock exclusively (see [`crate::cache`]), so the
//! only concurrent writers are tools that ignore it; the renames below stay
//! safe against those too: a valid entry is never clobbered by accident, and
//! `<key>/` only ever names a complete, fsynced directory.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use super::key::Key;
use super::lookup::{self, Entry};
use super::names;
use crate::store::{lock, readback};

/// What to do when a valid entry is already published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfValid {
    /// Keep it and discard ours: by construction the two are equivalent.
    Keep,
    /// Replace it (`template build --force`).
    Replace,
}

/// How publication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ours is now the entry; nothing was there.
    Published,
    /// Ours replaced an invalid entry, or a valid one under [`IfValid::Replace`].
    Replaced,
    /// A valid entry was there and was kept; ours was discarded.
    KeptExisting,
}

/// Publishes the finished image at `staging` as `key`'s entry under `root`
/// and returns the entry's image path. The staging file is moved, never copied.
pub fn publish(
    root: &Path,
    key: &Key,
    staging: &Path,
    if_valid: IfValid,
) -> Result<(PathBuf, Outcome)> {
    check_same_filesystem(root, staging)?;
    let dir = StagingDir::create(root, key)?;
    let staged_image = dir.path.join(names::TEMPLATE_FILE);
    std::fs::rename(staging, &staged_image).with_context(|| {
        format!(
            "failed to move `{}` to `{}`",
            staging.display(),
            staged_image.display()
        )
    })?;
    share_with_the_root(root, &staged_image, &dir)?;
    let image = File::open(&staged_image)
        .with_context(|| format!("failed to open `{}`", staged_image.display()))?;
    image
        .sync_all()
        .with_context(|| format!("failed to fsync `{}`", staged_image.display()))?;
    // A disk that drops writes passes the fsync: only the bytes read back
    // from it tell, before the entry is published.
    if !SKIP_READBACK.load(std::sync::atomic::Ordering::Relaxed) {
        readback::check_on_disk(&image, &staged_image)
            .with_context(|| format!("failed to read `{}` back", staged_image.display()))?;
    }
    dir.lock
        .sync_all()
        .with_context(|| format!("failed to fsync `{}`", dir.path.display()))?;

    let outcome = rename_into_place(root, key, &dir.path, if_valid)?;
    if !SKIP_ROOT_FSYNC.load(std::sync::atomic::Ordering::Relaxed) {
        sync_dir(root)?;
    }
    Ok((lookup::image_path(root, key), outcome))
}

/// Set only by the power-loss lane's guest, to show the lane catches the
/// entry a missing fsync loses ([`crate::guest::powerloss`]).
static SKIP_ROOT_FSYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Removes the root's fsync after the rename from this process's publishes.
pub(crate) fn skip_root_fsync() {
    SKIP_ROOT_FSYNC.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Set only by the failing-disk scenarios of the power-loss lane, to show
/// what a disk that drops writes publishes without the read-back
/// ([`crate::guest::powerloss::flakey`]).
static SKIP_READBACK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Removes the read-back of the staged image from this process's publishes.
pub(crate) fn skip_readback() {
    SKIP_READBACK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// In a shared root, gives the image and its directory the bits that let
/// every user the root admits read it, whatever this writer's umask.
fn share_with_the_root(root: &Path, image: &Path, dir: &StagingDir) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let sharing = crate::store::share::Sharing::of(root);
    let (Some(image_mode), Some(dir_mode)) = (sharing.image_mode(), sharing.entry_dir_mode())
    else {
        return Ok(());
    };
    std::fs::set_permissions(image, std::fs::Permissions::from_mode(image_mode))
        .with_context(|| format!("failed to chmod `{}`", image.display()))?;
    nix::sys::stat::fchmod(
        &*dir.lock,
        nix::sys::stat::Mode::from_bits_truncate(dir_mode),
    )
    .with_context(|| format!("failed to chmod `{}`", dir.path.display()))
}

/// Renames the staging directory onto `<key>/` as `if_valid` says.
fn rename_into_place(root: &Path, key: &Key, staged: &Path, if_valid: IfValid) -> Result<Outcome> {
    let target = lookup::entry_dir(root, key);
    // Two rounds: an entry may appear between the lookup and the rename when
    // a tool that ignores the lock publishes too.
    for _ in 0..2 {
        let existing = lookup::lookup(root, key)?;
        let flags = match (&existing, if_valid) {
            (Entry::Valid(_), IfValid::Keep) => return Ok(Outcome::KeptExisting),
            (Entry::Absent, _) => RenameFlags::RENAME_NOREPLACE,
            (Entry::Invalid(why), _) => {
                tracing::warn!("replacing the invalid cached template {key}: {why}");
                RenameFlags::RENAME_EXCHANGE
            }
            (Entry::Valid(_), IfValid::Replace) => RenameFlags::RENAME_EXCHANGE,
            // A user's directory that appeared at the key's name: never
            // exchanged out of the way, since removing it would lose it.
            (Entry::Foreign(why), _) => bail!("{why}"),
        };
        match renameat2(AT_FDCWD, staged, AT_FDCWD, &target, flags) {
            Ok(()) if flags == RenameFlags::RENAME_NOREPLACE => return Ok(Outcome::Published),
            // The old entry now sits under our staging name; StagingDir's
            // drop removes it.
            Ok(()) => return Ok(Outcome::Replaced),
            Err(Errno::EEXIST | Errno::ENOENT) => continue,
            // No renameat2 flags here (NFS, some FUSE): move the old entry
            // aside under a debris name, then rename ours in. `<key>/` is
            // briefly absent, which readers take for a miss.
            Err(Errno::EINVAL) => {
                let replace = flags == RenameFlags::RENAME_EXCHANGE;
                match rename_portably(root, key, staged, &target, replace)? {
                    Some(outcome) => return Ok(outcome),
                    None => continue,
                }
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "failed to rename `{}` onto `{}`",
                        staged.display(),
                        target.display()
                    )
                });
            }
        }
    }
    bail!(
        "`{}` kept changing while it was being published; is another tool writing to the cache without taking `{}`?",
        target.display(),
        lock::key_lock_path(root, &key.to_string()).display()
    )
}

/// [`rename_into_place`] with plain rename(2), which never replaces a
/// non-empty directory (ENOTEMPTY), so a valid entry is never clobbered.
/// `replace` moves the old entry aside first. `None`: an entry appeared
/// meanwhile; look again.
fn rename_portably(
    root: &Path,
    key: &Key,
    staged: &Path,
    target: &Path,
    replace: bool,
) -> Result<Option<Outcome>> {
    let aside = root.join(names::replaced_dir(key, std::process::id()));
    let context = |from: &Path, to: &Path| {
        format!(
            "failed to rename `{}` to `{}`",
            from.display(),
            to.display()
        )
    };
    let mut moved_aside = false;
    if replace {
        remove_any(&aside)?;
        match std::fs::rename(target, &aside) {
            Ok(()) => moved_aside = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| context(target, &aside)),
        }
    }
    let result = std::fs::rename(staged, target);
    let peer_published = matches!(
        result.as_ref().map_err(io::Error::raw_os_error),
        Err(Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR))
    );
    if result.is_ok() || peer_published {
        // The old entry is replaced, by ours or by a peer's.
        remove_any(&aside)?;
    } else if moved_aside {
        // Ours did not go in: the old entry goes back rather than being lost.
        if let Err(e) = std::fs::rename(&aside, target) {
            tracing::warn!("{}: {e}; it stays there", context(&aside, target));
        }
    }
    match result {
        Ok(()) if replace => Ok(Some(Outcome::Replaced)),
        Ok(()) => Ok(Some(Outcome::Published)),
        Err(_) if peer_published => Ok(None),
        Err(e) => Err(e).with_context(|| context(staged, target)),
    }
}

/// Refuses, up front, a staging image a rename cannot move into `root`.
fn check_same_filesystem(root: &Path, staging: &Path) -> Result<()> {
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("failed to stat `{}`", p.display()))
    };
    let (root_dev, staging_dev) = (dev(root)?, dev(staging)?);
    if root_dev != staging_dev {
        bail!(
            "the staging image `{}` is on another filesystem than the template root `{}` \
             (device {staging_dev:#x} vs {root_dev:#x}), so it cannot be renamed into place; \
             create staging images inside the template root",
            staging.display(),
            root.display()
        );
    }
    Ok(())
}

/// fsyncs a directory, making the renames in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("failed to fsync `{}`", dir.display()))
}

/// `<key>.tmp.<pid>/`, flocked while we live, removed with whatever is in it
/// when dropped (our image after a failure or a kept entry, or the replaced
/// old entry).
struct StagingDir {
    path: PathBuf,
    lock: nix::fcntl::Flock<File>,
}

impl StagingDir {
    fn create(root: &Path, key: &Key) -> Result<Self> {
        let path = root.join(names::staging_dir(key, std::process::id()));
        // A leftover under our own pid is a dead twin's or our own failed
        // attempt's: the key lock we hold excludes every live one.
        remove_any(&path)?;
        let lock = lock::create_locked(&path, lock::Shape::Dir)?;
        Ok(StagingDir { path, lock })
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if let Err(e) = remove_any(&self.path) {
            tracing::warn!("{e:#}; `cargo ktstr clean` will remove it once this process exits");
        }
    }
}

/// Removes a file or a staging directory of ours (one holding anything but
/// what this tool writes is refused: see [`crate::store::tree::remove_owned_dir`]);
/// a missing one is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            crate::store::tree::remove_owned_dir(path, crate::cache::names::ENTRY_FILES)
        }
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("failed to remove `{}`", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_portable_rename_puts_the_old_entry_back() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let target = lookup::entry_dir(root.path(), &key);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join(names::TEMPLATE_FILE), b"old").unwrap();
        // A staging directory that is gone makes the second rename fail.
        let staged = root.path().join("gone");
        assert!(rename_portably(root.path(), &key, &staged, &target, true).is_err());
        let old = std::fs::read(target.join(names::TEMPLATE_FILE)).unwrap();
        assert_eq!(old, b"old");
    }
    use crate::cache::ensure::tests::{formatted_image, test_key};
    use crate::formatter::filesystem::Filesystem;

    fn staged(root: &Path, key: &Key, name: &str) -> PathBuf {
        let path = root.join(name);
        formatted_image(key, &path);
        path
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn publish_is_idempotent_and_leaves_no_debris() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let first = staged(root.path(), &key, "a");
        let first_ino = ino(&first);
        let (path, outcome) = publish(root.path(), &key, &first, IfValid::Keep).unwrap();
        assert_eq!(outcome, Outcome::Published);
        assert_eq!(
            ino(&path),
            first_ino,
            "the staging file is moved, not copied"
        );

        let second = staged(root.path(), &key, "b");
        let (again, outcome) = publish(root.path(), &key, &second, IfValid::Keep).unwrap();
        assert_eq!((again.clone(), outcome), (path, Outcome::KeptExisting));
        assert_eq!(ino(&again), first_ino, "the first entry wins");
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            left,
            [key.to_string()],
            "staging files and directories are gone"
        );
    }

    #[test]
    fn an_invalid_entry_is_replaced_and_a_valid_one_on_request() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let dir = lookup::entry_dir(root.path(), &key);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(names::TEMPLATE_FILE), vec![0u8; 4096]).unwrap();
        let image = staged(root.path(), &key, "a");
        let (path, outcome) = publish(root.path(), &key, &image, IfValid::Keep).unwrap();
        assert_eq!(outcome, Outcome::Replaced);
        assert!(matches!(
            lookup::lookup(root.path(), &key).unwrap(),
            Entry::Valid(_)
        ));

        let newer = staged(root.path(), &key, "b");
        let newer_ino = ino(&newer);
        let (_, outcome) = publish(root.path(), &key, &newer, IfValid::Replace).unwrap();
        assert_eq!(outcome, Outcome::Replaced);
        assert_eq!(ino(&path), newer_ino);
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the old entry is gone: {names:?}");
    }

    #[test]
    fn the_portable_fallback_publishes_replaces_and_never_clobbers() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let target = lookup::entry_dir(root.path(), &key);
        let stage = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            formatted_image(&key, &dir.join(names::TEMPLATE_FILE));
            dir
        };
        let first = stage("a");
        let got = rename_portably(root.path(), &key, &first, &target, false).unwrap();
        assert_eq!(got, Some(Outcome::Published));
        // Without `replace`, a (valid, non-empty) entry is never clobbered.
        let second = stage("b");
        let got = rename_portably(root.path(), &key, &second, &target, false).unwrap();
        assert_eq!(got, None);
        assert!(second.exists());
        let got = rename_portably(root.path(), &key, &second, &target, true).unwrap();
        assert_eq!(got, Some(Outcome::Replaced));
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no aside copy is left: {left:?}");
    }

    #[test]
    fn staging_on_another_filesystem_is_refused_up_front() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        // /proc is never the filesystem of a temporary directory.
        let err = publish(
            root.path(),
            &key,
            Path::new("/proc/self/status"),
            IfValid::Keep,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("another filesystem"), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
