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

use super::share;

mod create;
mod holders;
pub(crate) use create::{Shape, create_locked};
pub use holders::holders;
pub(crate) use holders::{describe_holders, describe_pids, locked_inodes};

/// Shared (readers: cloners) or exclusive (builders, `clean --all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Several holders at once: readers of an entry.
    Shared,
    /// One holder: a builder, or a sweep that removes.
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
pub(crate) fn try_lock_file(file: File, mode: Mode) -> Result<Option<Flock<File>>> {
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
pub(crate) fn try_lock_until_closed(file: &File) -> Result<bool> {
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
pub(crate) enum Probe {
    /// No lockfile: nobody can hold it.
    Missing,
    /// Taken (released when dropped).
    Free(#[allow(dead_code, reason = "held only to be dropped")] Flock<File>),
    /// Another open file description holds a conflicting lock.
    Held,
}

/// Tries `mode` on an existing lockfile without blocking and without
/// creating anything (`template list`, a dry run). A lockfile swapped for a
/// link or a FIFO is neither followed nor waited on.
pub(crate) fn probe(path: &Path, mode: Mode) -> Result<Probe> {
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

/// The directory of a root's lockfiles, `<root>/.locks`, as ktstr names it.
/// Never deleted.
pub const LOCKS_DIR: &str = ".locks";

/// The lockfile of `key` under `root`: `<root>/.locks/<key>.lock`.
pub fn key_lock_path(root: &Path, key: &str) -> PathBuf {
    root.join(LOCKS_DIR).join(format!("{key}.lock"))
}

/// Opens (creating) the lockfile `path`, `<root>/.locks/<key>.lock`, without
/// ever leaving the root: `.locks` is opened with `O_NOFOLLOW|O_DIRECTORY`
/// and the lockfile relative to it, so a `.locks` that is a symlink cannot
/// lead lockfiles elsewhere.
///
/// A new lockfile gets the mode [`share::Sharing`] gives its root: 0666 in
/// a shared root (ktstr opens every lockfile read-write), 0600 in a private
/// one. An existing lockfile is opened read-write, else read-only: flock(2)
/// needs no write access, and a lockfile another user's ktstr made under a
/// 022 umask is 0644.
fn open_lockfile(path: &Path) -> Result<File> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("`{}` is not a lockfile path", path.display());
    };
    let locks = open_locks_dir(dir)?;
    // O_NOFOLLOW: a lockfile swapped for a symlink must not create or lock
    // a file outside the root; O_NONBLOCK: one swapped for a FIFO must not
    // hang the open.
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let wanted = share::Sharing::of(dir.parent().unwrap_or(Path::new("."))).lockfile_mode();
    let wanted = nix::sys::stat::Mode::from_bits_truncate(wanted);
    let open = |extra: OFlag| nix::fcntl::openat(&locks, name, flags | extra, wanted);
    let chmod = |fd: &std::os::fd::OwnedFd| {
        nix::sys::stat::fchmod(fd, wanted)
            .map_err(|e| anyhow!("failed to chmod lockfile `{}`: {e}", path.display()))
    };
    let opened = loop {
        match open(OFlag::O_RDWR) {
            Ok(fd) => {
                // One of ours made 0666 in a root since made private (or
                // by an older cargo-ktstr): another user must not lock it.
                let ours = nix::sys::stat::fstat(&fd).is_ok_and(|st| {
                    st.st_uid == nix::unistd::geteuid().as_raw()
                        && st.st_mode & 0o077 & !wanted.bits() != 0
                });
                if ours {
                    chmod(&fd)?;
                }
                break Ok(fd);
            }
            Err(Errno::EACCES) => break open(OFlag::O_RDONLY),
            Err(Errno::ENOENT) => {}
            other => break other,
        }
        match open(OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL) {
            Ok(fd) => {
                // Only the creator sets the mode, past its umask.
                chmod(&fd)?;
                break Ok(fd);
            }
            // A peer created it first: open theirs.
            Err(Errno::EEXIST) => continue,
            Err(e) => break Err(e),
        }
    };
    let fd = opened.map_err(|e| {
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
            let created = dir
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| create_locks_dir(dir));
            match created {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                    bail!(
                        "failed to create lock directory `{}`: {e}; {}",
                        dir.display(),
                        advice(errno)
                    );
                }
            }
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

/// Creates `.locks` at `dir` with its root's permission bits, set past the
/// umask: a root its owner shared (`chmod 1777`, or group-writable and
/// setgid) gets a `.locks` every user of it can make lockfiles in, and a
/// private root a private one. Fails with `AlreadyExists` when it exists.
pub(crate) fn create_locks_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let root = dir.parent().unwrap_or(Path::new("."));
    let mode = std::fs::metadata(root)?.permissions().mode() & 0o7777;
    std::fs::DirBuilder::new().mode(mode).create(dir)?;
    // By descriptor, not following a link: in a root others may write to,
    // the name could be swapped between the mkdir and the chmod.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode))?;
    Ok(())
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

/// Takes the lock at `path`, waiting up to `timeout`, or until a signal
/// ([`crate::interrupt`]).
///
/// Tries first; only on contention does it say, once, that it is waiting and
/// for whom, as cargo does with "Blocking waiting for file lock".
pub(crate) fn lock_with_timeout(
    path: &Path,
    mode: Mode,
    timeout: Duration,
    what: &str,
) -> Result<Locked> {
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
        crate::interrupt::check()?;
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
    use crate::testutil::as_nobody;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_lockfile_is_0666_in_a_shared_root_and_0600_in_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o1777);
        let path = key_lock_path(dir.path(), "btrfs-256m-0000000000000000");
        drop(try_lock(&path, Mode::Shared).unwrap());
        // The tests run under a 022 umask, which would make it 0644.
        assert_eq!(mode(&path), 0o666);
        // One that exists keeps its mode: only its creator sets it.
        chmod(&path, 0o640);
        drop(try_lock(&path, Mode::Exclusive).unwrap());
        assert_eq!(mode(&path), 0o640);

        // A private root: nobody else may open (and so flock) a lockfile,
        // not even one made 0666 before the root was made private.
        chmod(dir.path(), 0o755);
        let private = key_lock_path(dir.path(), "btrfs-256m-1111111111111111");
        drop(try_lock(&private, Mode::Shared).unwrap());
        assert_eq!(mode(&private), 0o600);
        chmod(&path, 0o666);
        drop(try_lock(&path, Mode::Shared).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    /// Another user (uid 65534) on a cache root made: a lockfile it cannot
    /// write (ktstr's under a 022 umask) is still locked, read-only; one it
    /// must create goes where the root's mode lets it.
    #[test]
    fn another_user_shares_the_lockfiles_of_a_shared_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        chmod(dir.path(), 0o755);
        chmod(&root, 0o1777);
        let theirs = key_lock_path(&root, "btrfs-256m-0000000000000000");
        drop(try_lock(&theirs, Mode::Shared).unwrap());
        assert_eq!(mode(&root.join(LOCKS_DIR)), 0o1777);
        chmod(&theirs, 0o644);
        let held = as_nobody(|| try_lock(&theirs, Mode::Exclusive).map(|l| l.is_some()));
        assert!(held.unwrap(), "a read-only lockfile must lock");

        let mine = key_lock_path(&root, "btrfs-256m-1111111111111111");
        as_nobody(|| try_lock(&mine, Mode::Exclusive).map(drop)).unwrap();
        let meta = std::fs::metadata(&mine).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o666));
        // ktstr opens read-write: it can use the lockfile another user made.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&mine)
            .unwrap();
    }

    #[test]
    fn a_private_root_gets_a_private_locks_dir_and_says_whose_it_is() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let path = key_lock_path(dir.path(), "btrfs-256m-2222222222222222");
        drop(try_lock(&path, Mode::Shared).unwrap());
        assert_eq!(mode(&dir.path().join(LOCKS_DIR)), 0o755);
        let other = key_lock_path(dir.path(), "btrfs-256m-3333333333333333");
        let err = as_nobody(|| try_lock(&other, Mode::Shared).map(drop)).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("another user") && err.contains("--cache-dir"),
            "{err}"
        );
        // Nor lock (and so block) one the owner made.
        let err = as_nobody(|| try_lock(&path, Mode::Exclusive).map(drop)).unwrap_err();
        assert!(format!("{err:#}").contains("another user"), "{err:#}");
    }

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
