//! Creating a writer's file or directory already flocked.
//!
//! `clean` removes debris whose pid is dead and whose flock is free. Were a
//! name created first and locked after, a `clean` in another pid namespace
//! (where our pid may be "dead") could find it unlocked in between. So the
//! lock comes first: a file is made unnamed (O_TMPFILE), locked, then linked
//! in under its debris name; where O_TMPFILE is missing, and for a
//! directory, it is made under a name no classifier takes for debris or an
//! entry, locked, then renamed without replacing anything.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, RenameFlags, renameat2};

use super::{Mode, try_lock_file};

/// What [`create_locked`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A regular file with these permission bits.
    File(u32),
    /// A directory (0o755).
    Dir,
}

/// Creates `path` as `shape`, exclusively flocked before the name exists.
/// Fails with `AlreadyExists` when `path` does.
pub(crate) fn create_locked(path: &Path, shape: Shape) -> Result<Flock<File>> {
    let what = match shape {
        Shape::File(_) => "file",
        Shape::Dir => "directory",
    };
    create(path, shape, true)
        .with_context(|| format!("failed to create the {what} `{}`", path.display()))
}

/// `tmpfile: false` skips O_TMPFILE, as on a filesystem without it.
fn create(path: &Path, shape: Shape, tmpfile: bool) -> Result<Flock<File>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if let (Shape::File(mode), true) = (shape, tmpfile) {
        if let Some(file) = unnamed(dir, mode)? {
            let locked = lock_fresh(file)?;
            match link_in(&locked, path) {
                Ok(()) => return Ok(locked),
                // No /proc to link through: make it aside instead.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/self").exists() => {
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    // `.ktstr-creating.<pid>.<rnd>`: neither debris nor key-shaped.
    let aside = dir.join(format!(
        ".ktstr-creating.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = match shape {
        Shape::File(mode) => File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&aside)?,
        Shape::Dir => {
            std::fs::DirBuilder::new().mode(0o755).create(&aside)?;
            File::open(&aside)?
        }
    };
    let result = lock_fresh(file).and_then(|locked| {
        rename_noreplace(&aside, path)?;
        Ok(locked)
    });
    if result.is_err() {
        let _ = match shape {
            Shape::File(_) => std::fs::remove_file(&aside),
            Shape::Dir => std::fs::remove_dir(&aside),
        };
    }
    result
}

/// An O_TMPFILE file in `dir`, or `None` where the filesystem has none.
fn unnamed(dir: &Path, mode: u32) -> io::Result<Option<File>> {
    let opened = File::options()
        .read(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Locks a file nobody else can have opened yet.
fn lock_fresh(file: File) -> Result<Flock<File>> {
    try_lock_file(file, Mode::Exclusive)?
        .context("a file just created is locked by another process")
}

/// Gives the unnamed `file` the name `path` (EEXIST if taken).
fn link_in(file: &File, path: &Path) -> io::Result<()> {
    // Through /proc/self/fd, which needs no CAP_DAC_READ_SEARCH, unlike
    // AT_EMPTY_PATH.
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    Errno::result(rc).map(drop).map_err(io::Error::from)
}

/// rename(2) that never replaces: RENAME_NOREPLACE, else link and unlink
/// (files) where the filesystem lacks the flag.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Err(Errno::EINVAL) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        other => other.map_err(io::Error::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_by_someone(path: &Path) -> bool {
        let file = File::open(path).unwrap();
        try_lock_file(file, Mode::Exclusive).unwrap().is_none()
    }

    #[test]
    fn every_shape_appears_already_locked_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        for (name, shape) in [("f", Shape::File(0o600)), ("d", Shape::Dir)] {
            let path = dir.path().join(name);
            let held = create_locked(&path, shape).unwrap();
            assert!(locked_by_someone(&path), "{name}");
            assert_eq!(path.is_dir(), shape == Shape::Dir);
            let again = create_locked(&path, shape).unwrap_err();
            assert!(format!("{again:#}").contains("exists"), "{again:#}");
            drop(held);
        }
        // Only the two names: nothing left aside.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn without_o_tmpfile_a_file_is_made_aside_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let held = create(&path, Shape::File(0o600), false).unwrap();
        assert!(locked_by_someone(&path));
        assert!(create(&path, Shape::File(0o600), false).is_err());
        // Nothing left aside, by success or by failure.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(held);
    }
}
