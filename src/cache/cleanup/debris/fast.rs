//! The sweep's fast path: two syscalls for a dead writer's file, a handful
//! for its staging directory, the same safety tests as the careful path.
//!
//! The careful path opens every piece and tries its flock. Here the flocks
//! come from one read of /proc/locks, made after the root was listed: a
//! writer takes its flock before its name exists, so a piece listed before
//! the snapshot whose inode the snapshot does not name had no live holder,
//! and none can come. A piece whose inode it names (on any device, to stay
//! on the safe side) goes the careful way. Each name is examined relative to
//! the root's descriptor without following a link, and must still be the
//! inode the listing gave. A staging directory is opened without following a
//! link and must be on the root's own mount; only one holding nothing but
//! files is emptied here (unlinking a file never crosses a mount, and a
//! file bind-mounted over fails with EBUSY). One with a directory inside goes
//! the careful two-pass way that refuses a mount point anywhere in it.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::cache::cleanup::identity::Identity;
use crate::cache::names;
use crate::store::tree;

/// The root, open, with what the fast path needs to judge its pieces.
#[derive(Debug)]
pub(super) struct FastRoot {
    dir: std::os::fd::OwnedFd,
    dev: u64,
    mount: Option<u64>,
    locked: HashSet<u64>,
}

/// What the fast path did with a piece.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Removed: its allocated bytes and what it was.
    Removed { bytes: u64, identity: Identity },
    /// Gone before it could be examined.
    Vanished,
    /// No longer the inode listed.
    Changed,
    /// Needs the careful path (a flock to try, a subdirectory, an odd type).
    Careful,
}

impl FastRoot {
    /// Opens `root` and reads /proc/locks; `None` (use the careful path)
    /// when either cannot be done. Call only after listing the root.
    pub(super) fn open(root: &std::path::Path) -> Option<FastRoot> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::open(root, flags, Mode::empty()).ok()?;
        let (dev, mount) = tree::mount_id(dir.as_fd()).ok()?;
        let locked = crate::store::lock::locked_inodes()?;
        Some(FastRoot {
            dir,
            dev,
            mount,
            locked,
        })
    }

    /// Removes the dead writer's piece `name`, listed as inode `ino`, if it
    /// is a regular file (`want_dir` false) or a directory of files
    /// (`want_dir` true) that no lock names.
    pub(super) fn remove(&self, name: &str, ino: u64, want_dir: bool) -> io::Result<Outcome> {
        let c = CString::new(name)?;
        let st = match fstatat(self.dir.as_fd(), c.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Outcome::Vanished),
            Err(e) => return Err(e.into()),
        };
        if st.st_ino != ino {
            return Ok(Outcome::Changed);
        }
        let format = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let is_dir = format == SFlag::S_IFDIR;
        if (format != SFlag::S_IFREG && !is_dir) || is_dir != want_dir || self.locked.contains(&ino)
        {
            return Ok(Outcome::Careful);
        }
        let mut bytes = blocks(&st);
        if is_dir {
            match self.empty_dir(&c, ino)? {
                Some(inside) => bytes += inside,
                None => return Ok(Outcome::Careful),
            }
        }
        let flag = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(self.dir.as_fd(), c.as_c_str(), flag) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Outcome::Removed {
            bytes,
            identity: identity(&st),
        })
    }

    /// Empties the directory `name` (inode `ino`) of its files; the bytes
    /// they had, or `None`, touching nothing, when it holds a directory, is
    /// on another mount or is no longer `ino`.
    fn empty_dir(&self, name: &CStr, ino: u64) -> io::Result<Option<u64>> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::openat(self.dir.as_fd(), name, flags, Mode::empty())?;
        let place = tree::statx_of(dir.as_fd())?;
        if place.dev != self.dev || place.mount != self.mount || place.ino != ino {
            return Ok(None);
        }
        let Some(files) = plain_files(dir.as_fd())? else {
            return Ok(None);
        };
        let mut bytes = 0;
        for child in files {
            bytes += remove_file_at(dir.as_fd(), &child)?;
        }
        Ok(Some(bytes))
    }
}

/// The names in the open directory `dir` when each is a regular file named
/// in [`names::ENTRY_FILES`] (as the listing tells), by getdents64 straight into a buffer:
/// opendir(3) would add an fstat, fcntls and a seek per directory.
fn plain_files(dir: BorrowedFd) -> io::Result<Option<Vec<CString>>> {
    let mut buf = vec![0u8; 32 << 10];
    let mut names = Vec::new();
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`,
        // which outlives the call; the descriptor is open.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n == 0 {
            return Ok(Some(names));
        }
        let mut at = 0;
        while at < n {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let record = buf
                .get(at..n)
                .filter(|r| r.len() >= 19)
                .ok_or_else(bad_record)?;
            let reclen = usize::from(u16::from_ne_bytes([record[16], record[17]]));
            let entry = record
                .get(19..reclen)
                .filter(|_| reclen >= 19)
                .ok_or_else(bad_record)?;
            let name = CStr::from_bytes_until_nul(entry).map_err(|_| bad_record())?;
            at += reclen;
            if name == c"." || name == c".." {
                continue;
            }
            // Only what the cache's writers put there; anything else is for
            // the careful way to judge (and leave).
            let ours = names::ENTRY_FILES
                .iter()
                .any(|file| file.as_bytes() == name.to_bytes());
            if record[18] != libc::DT_REG || !ours {
                return Ok(None);
            }
            names.push(name.to_owned());
        }
    }
}

fn bad_record() -> io::Error {
    io::Error::other("getdents64 returned a malformed record")
}

/// Unlinks the non-directory `name` in `dir`; its allocated bytes.
fn remove_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<u64> {
    let bytes = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => blocks(&st),
        Err(Errno::ENOENT) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(bytes),
        Err(e) => Err(e.into()),
    }
}

fn blocks(st: &FileStat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0) * 512
}

fn identity(st: &FileStat) -> Identity {
    Identity {
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        ctime: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec,
        last_used_ns: None,
    }
}
