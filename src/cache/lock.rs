//! flock(2) helpers: try, say who holds it, wait with a deadline.
//!
//! The protocol these serve is told once, in [`crate::cache`]. Every flock in
//! the crate goes through here.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use super::names;

mod create;
mod holders;
pub use create::{Shape, create_locked};
pub use holders::{Holder, describe_holders, describe_pids, holders};

/// Shared (readers: cloners) or exclusive (builders, `clean --all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

impl Mode {
    fn nonblocking(self) -> FlockArg {
        match self {
            Mode::Shared => FlockArg::LockSharedNonblock,
            Mode::Exclusive => FlockArg::LockExclusiveNonblock,
        }
    }
}

/// A held flock; released on drop (closing the file releases it).
#[derive(Debug)]
pub struct Locked {
    _flock: Flock<File>,
    path: PathBuf,
}

impl Locked {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes `mode` on an already open file without blocking: `Ok(None)` when
/// another open file description holds a conflicting lock.
pub fn try_lock_file(file: File, mode: Mode) -> Result<Option<Flock<File>>> {
    // One of the two places a flock is taken (clippy.toml routes all others
    // here).
    #[allow(clippy::disallowed_methods)]
    let taken = Flock::lock(file, mode.nonblocking());
    match taken {
        Ok(flock) => Ok(Some(flock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno).context("flock failed"),
    }
}

/// Takes an exclusive flock on `file` without blocking, held until `file` is
/// closed: `Ok(false)` when another open file description holds one. For a
/// sweep that closes the file right after removing it, this spares the
/// separate unlock a [`Flock`] makes when dropped.
pub fn try_lock_until_closed(file: &File) -> Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor `file` keeps open for the call; it
    // touches no memory of ours.
    #[allow(clippy::disallowed_methods)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno).context("flock failed"),
    }
}

/// What [`probe`] found at a lockfile.
#[derive(Debug)]
pub enum Probe {
    /// No lockfile: nobody can hold it.
    Missing,
    /// Taken (released when dropped).
    Free(Flock<File>),
    /// Another open file description holds a conflicting lock.
    Held,
}

/// Tries `mode` on an existing lockfile without blocking and without
/// creating anything (`template list`, a dry run). A lockfile swapped for a
/// link or a FIFO is neither followed nor waited on.
pub fn probe(path: &Path, mode: Mode) -> Result<Probe> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Missing),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to open lockfile `{}`", path.display()));
        }
    };
    let taken = try_lock_file(file, mode)
        .with_context(|| format!("failed to lock `{}`", path.display()))?;
    Ok(taken.map_or(Probe::Held, Probe::Free))
}

/// The lockfile of `key` under `root`: `<root>/.locks/<key>.lock`.
pub fn key_lock_path(root: &Path, key: &str) -> PathBuf {
    root.join(names::LOCKS_DIR).join(names::lock_file(key))
}

/// Opens (creating) the lockfile `path`, `<root>/.locks/<key>.lock`, without
/// ever leaving the root: `.locks` is opened with `O_NOFOLLOW|O_DIRECTORY`
/// and the lockfile relative to it, so a `.locks` that is a symlink cannot
/// lead lockfiles elsewhere.
fn open_lockfile(path: &Path) -> Result<File> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("`{}` is not a lockfile path", path.display());
    };
    let locks = open_locks_dir(dir)?;
    // O_NOFOLLOW: a lockfile swapped for a symlink must not create or lock
    // a file outside the root; O_NONBLOCK: one swapped for a FIFO must not
    // hang the open.
    let flags =
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        &locks,
        name,
        flags,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| {
        anyhow!(
            "failed to open lockfile `{}`: {e}; {}",
            path.display(),
            advice(e)
        )
    })?;
    Ok(File::from(fd))
}

/// Opens `.locks` as a real directory of the root, creating it (and the root)
/// when missing.
fn open_locks_dir(dir: &Path) -> Result<std::os::fd::OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = || nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty());
    let opened = match open() {
        Err(Errno::ENOENT) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                anyhow!(
                    "failed to create lock directory `{}`: {e}; {}",
                    dir.display(),
                    advice(errno)
                )
            })?;
            open()
        }
        other => other,
    };
    opened.map_err(|e| {
        anyhow!(
            "failed to open lock directory `{}`: {e}; {}",
            dir.display(),
            advice(e)
        )
    })
}

/// What to do about a failure to open `.locks` or a lockfile.
fn advice(errno: Errno) -> &'static str {
    match errno {
        Errno::EACCES | Errno::EPERM => {
            "the cache belongs to another user: pass your own --cache-dir"
        }
        Errno::ELOOP | Errno::ENOTDIR => {
            "`.locks` or the lockfile is not what it must be (a directory, a \
             regular file), perhaps a symlink: move it away and run again"
        }
        _ => "check the cache root's permissions, or pass another --cache-dir",
    }
}

/// Takes the lock at `path` (creating the lockfile) without blocking.
pub fn try_lock(path: &Path, mode: Mode) -> Result<Option<Locked>> {
    let file = open_lockfile(path)?;
    Ok(try_lock_file(file, mode)
        .with_context(|| format!("failed to lock `{}`", path.display()))?
        .map(|flock| Locked {
            _flock: flock,
            path: path.to_owned(),
        }))
}

/// Takes the lock at `path`, waiting up to `timeout`.
///
/// Tries first; only on contention does it say, once, that it is waiting and
/// for whom, as cargo does with "Blocking waiting for file lock".
pub fn lock_with_timeout(path: &Path, mode: Mode, timeout: Duration, what: &str) -> Result<Locked> {
    if let Some(locked) = try_lock(path, mode)? {
        return Ok(locked);
    }
    tracing::warn!(
        "waiting for the lock on {what} held by {}",
        describe_holders(path)
    );
    // A timeout past what an Instant can hold means no deadline at all.
    let deadline = Instant::now().checked_add(timeout);
    let mut pause = Duration::from_millis(2);
    loop {
        let left = deadline.map_or(pause, |d| d.saturating_duration_since(Instant::now()));
        thread::sleep(pause.min(left));
        if let Some(locked) = try_lock(path, mode)? {
            return Ok(locked);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!(
                "timed out after {}s waiting for the lock on {what}, held by {} (lockfile `{}`); \
                 wait for that process to finish, or raise --lock-timeout",
                timeout.as_secs_f64(),
                describe_holders(path),
                path.display()
            );
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_lock_path(dir.path(), "btrfs-256m-0000000000000000");
        let held = try_lock(&path, Mode::Exclusive)
            .unwrap()
            .expect("free lock");
        // A second open file description conflicts even within one process.
        assert!(try_lock(&path, Mode::Shared).unwrap().is_none());
        let me = std::process::id() as i32;
        assert!(holders(&path).iter().any(|h| h.pid == me && h.exclusive));
        let err = lock_with_timeout(&path, Mode::Exclusive, Duration::from_millis(50), "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("pid {me}")), "{err}");
        drop(held);
        assert!(try_lock(&path, Mode::Exclusive).unwrap().is_some());
    }
}
