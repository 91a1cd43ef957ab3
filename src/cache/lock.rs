//! flock(2) helpers: try, say who holds it, wait with a deadline.
//!
//! The protocol these serve is told once, in [`crate::cache`]. Every flock in
//! the crate goes through here.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use super::names;

mod create;
pub use create::{Shape, create_locked};

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

/// One process holding a lock, as /proc/locks tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub exclusive: bool,
}

/// The processes holding a flock on `path`, from /proc/locks. Empty when it
/// cannot be told (no /proc, or a holder in another pid namespace).
pub fn holders(path: &Path) -> Vec<Holder> {
    let (Ok(meta), Ok(locks)) = (
        std::fs::symlink_metadata(path),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return Vec::new();
    };
    let (major, minor) = superblock_device(path).unwrap_or_else(|| {
        let dev = meta.dev();
        (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
    });
    // /proc/locks writes the device as "%02x:%02x:%lu" (major, minor, inode).
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    parse_proc_locks(&locks, &want)
}

/// The device of the superblock `path` lives on, as /proc/locks names it.
/// On btrfs `st_dev` is a subvolume's anonymous device instead, so the
/// mount's own line of /proc/self/mountinfo (by statx's mount id) tells it.
fn superblock_device(path: &Path) -> Option<(u64, u64)> {
    // O_PATH: statx needs no read access, and a FIFO is not opened for I/O.
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let (_, mount) = super::tree::mount_id(std::os::fd::AsFd::as_fd(&fd)).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo_device(&mountinfo, mount?)
}

/// Field 3 (`major:minor`) of the mountinfo line whose field 1 is `mount`.
fn mountinfo_device(mountinfo: &str, mount: u64) -> Option<(u64, u64)> {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').next() == Some(&mount.to_string()))?;
    let (major, minor) = line.split(' ').nth(2)?.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn parse_proc_locks(text: &str, device_inode: &str) -> Vec<Holder> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Waiters are listed as "N: -> FLOCK ..."; only holders count.
            if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&device_inode) {
                return None;
            }
            let pid = fields.get(4)?.parse().ok()?;
            Some(Holder {
                pid,
                exclusive: fields.get(3) == Some(&"WRITE"),
            })
        })
        .collect()
}

/// "pid 123" / "pids 123, 456" / "an unknown process", from /proc/locks.
pub fn describe_holders(path: &Path) -> String {
    let pids: Vec<i32> = holders(path).iter().map(|h| h.pid).collect();
    describe_pids(&pids)
}

/// "pid 123" / "pids 123, 456" / "an unknown process"; a pid of 0 (a holder
/// that cannot be named) counts as unknown.
pub fn describe_pids(pids: &[i32]) -> String {
    let known: Vec<String> = pids
        .iter()
        .filter(|p| **p > 0)
        .map(|p| p.to_string())
        .collect();
    match known.len() {
        0 => "an unknown process (not visible in /proc/locks)".to_owned(),
        1 => format!("pid {}", known[0]),
        _ => format!("pids {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2a:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 00:2a:1234 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 77 00:2a:1234 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 88 00:2a:1234 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 99 00:2a:9999 0 EOF\n";
        assert_eq!(
            parse_proc_locks(text, "00:2a:1234"),
            vec![
                Holder {
                    pid: 4242,
                    exclusive: true
                },
                Holder {
                    pid: 77,
                    exclusive: false
                }
            ]
        );
    }

    #[test]
    fn the_superblock_device_comes_from_the_mounts_line() {
        let info = "29 1 0:26 / / rw,relatime - btrfs /dev/loop0 rw\n\
                    31 29 7:3 / /mnt rw - xfs /dev/loop3 rw\n";
        assert_eq!(mountinfo_device(info, 29), Some((0, 26)));
        assert_eq!(mountinfo_device(info, 31), Some((7, 3)));
        assert_eq!(mountinfo_device(info, 3), None);
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
