//! Removing a directory tree of the cache, by descriptors, never leaving the
//! filesystem it starts on.
//!
//! `remove_dir_all` crosses mount points: a tmpfs or bind mount someone put
//! inside an entry would lose its files. So the tree is walked twice, each
//! directory opened relative to its parent with `O_NOFOLLOW`: first only to
//! check that every directory is on the root's mount (and to give read-only
//! directories of a dead writer back their owner's u+rwx, which unlinking
//! inside them needs), then to unlink. A mount point anywhere refuses the
//! whole tree before anything is removed.
//!
//! An entry or a staging directory of the template root is removed another
//! way, `remove_owned_dir`: only when it holds nothing but the files this
//! tool and ktstr write into one (the cache's `names::ENTRY_FILES`), so a user's
//! directory that merely wears a key's name (a `--cache-dir` aimed at a home
//! directory) loses nothing.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Where a directory lives: its device and, where the kernel says, its
/// mount (a bind mount of the same filesystem shares the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    dev: u64,
    mount: Option<u64>,
}

/// Removes `path` (a directory, not followed if a symlink) and everything in
/// it. Fails, removing nothing, when a mount point is inside.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other("not a removable path"));
    };
    let parent = Dir::open(parent, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let name = CString::new(name.as_bytes())?;
    let place = place_of(parent.as_fd())?;
    for unlink in [false, true] {
        let top = open_dir(parent.as_fd(), &name, path, place)?;
        walk(top, path, place, unlink)?;
    }
    unlinkat(parent.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir)?;
    Ok(())
}

/// Why a directory of the template root is not this tool's to remove: it
/// holds a file no writer of the cache makes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Foreign {
    /// The first such name found (lossy where it is not UTF-8).
    pub name: String,
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "holds `{}`, which this tool never writes there",
            shown(&self.name)
        )
    }
}

impl std::error::Error for Foreign {}

/// `name` with its control characters escaped, so a name cannot forge a
/// line of a report.
fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string().into()
    } else {
        name.into()
    }
}

/// The [`Foreign`] inside `e`, when [`remove_owned_dir`] refused for it.
pub(crate) fn foreign_of(e: &io::Error) -> Option<&Foreign> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Foreign>())
}

/// The first name in the directory `path` (not followed if a symlink) that
/// is not one of `ours` as a regular file, if any.
pub(crate) fn foreign_file(path: &Path, ours: &[&str]) -> io::Result<Option<Foreign>> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = Dir::open(path, flags, Mode::empty())?;
    Ok(check_owned(dir, ours)?.err())
}

/// The names in the open directory `dir` when each is one of
/// `ours` and a regular file; else the first that is not.
fn check_owned(mut dir: Dir, ours: &[&str]) -> io::Result<Result<(Dir, Vec<CString>), Foreign>> {
    let names = names_in(&mut dir)?;
    for name in &names {
        let foreign = || Foreign {
            name: String::from_utf8_lossy(name.to_bytes()).into_owned(),
        };
        if !ours.iter().any(|file| file.as_bytes() == name.to_bytes()) {
            return Ok(Err(foreign()));
        }
        let stat = match fstatat(dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Ok(Err(foreign()));
        }
    }
    Ok(Ok((dir, names)))
}

/// Removes the entry or staging directory `path` (not followed if a
/// symlink) when it holds nothing but `ours` as regular
/// files; otherwise removes nothing and fails with a [`Foreign`] inside
/// (see [`foreign_of`]). A file added meanwhile makes the last step fail
/// with ENOTEMPTY, and stays.
pub(crate) fn remove_owned_dir(path: &Path, ours: &[&str]) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other("not a removable path"));
    };
    let parent = Dir::open(parent, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let name = CString::new(name.as_bytes())?;
    let place = place_of(parent.as_fd())?;
    let dir = open_dir(parent.as_fd(), &name, path, place)?;
    let (dir, files) = check_owned(dir, ours)?.map_err(io::Error::other)?;
    for file in files {
        match unlinkat(dir.as_fd(), file.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    unlinkat(parent.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir)?;
    Ok(())
}

/// Opens `name` in `dir` as a directory of `place`, first giving it u+rwx
/// when it lacks them.
fn open_dir(dir: BorrowedFd, name: &CStr, path: &Path, place: Place) -> io::Result<Dir> {
    let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(io::Error::other("it is no longer a directory"));
    }
    if stat.st_dev != place.dev {
        return Err(mount_point(path));
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o700 != 0o700 {
        // NoFollowSymlink, relative to an already opened parent: the name
        // was a directory of ours a moment ago and a link is never followed.
        let wanted = Mode::from_bits_truncate(mode | 0o700);
        fchmodat(dir, name, wanted, FchmodatFlags::NoFollowSymlink)?;
    }
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let opened = Dir::openat(dir, name, flags, Mode::empty())?;
    if place_of(opened.as_fd())? != place {
        return Err(mount_point(path));
    }
    Ok(opened)
}

/// The names in the open directory `dir`, less `.` and `..`.
fn names_in(dir: &mut Dir) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Checks (or, with `unlink`, empties) the open directory `dir` at `path`.
fn walk(mut dir: Dir, path: &Path, place: Place, unlink: bool) -> io::Result<()> {
    let names = names_in(&mut dir)?;
    for name in names {
        let child: PathBuf = path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let stat = match fstatat(dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let sub = open_dir(dir.as_fd(), &name, &child, place)?;
            walk(sub, &child, place, unlink)?;
            if unlink {
                unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir)?;
            }
        } else if unlink {
            unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(())
}

fn mount_point(path: &Path) -> io::Error {
    io::Error::other(format!(
        "it contains a mount point at `{}`; unmount it and run again",
        path.display()
    ))
}

fn place_of(fd: BorrowedFd) -> io::Result<Place> {
    let (dev, mount) = mount_id(fd)?;
    Ok(Place { dev, mount })
}

/// Where an open file is, and which inode it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Statx {
    pub dev: u64,
    pub mount: Option<u64>,
    pub ino: u64,
}

/// The device, mount id and inode of an open file, by one statx(2).
pub(crate) fn statx_of(fd: BorrowedFd) -> io::Result<Statx> {
    let buf = statx_raw(fd)?;
    Ok(Statx {
        dev: libc::makedev(buf.stx_dev_major, buf.stx_dev_minor),
        mount: (buf.stx_mask & libc::STATX_MNT_ID != 0).then_some(buf.stx_mnt_id),
        ino: buf.stx_ino,
    })
}

/// The device and mount id of an open file, by statx(2) (`STATX_MNT_ID`,
/// Linux 5.8; `None` where the kernel does not fill it in).
pub(crate) fn mount_id(fd: BorrowedFd) -> io::Result<(u64, Option<u64>)> {
    let s = statx_of(fd)?;
    Ok((s.dev, s.mount))
}

fn statx_raw(fd: BorrowedFd) -> io::Result<libc::statx> {
    // SAFETY: statx only writes the zeroed struct it is given.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, an empty NUL-terminated path with
    // AT_EMPTY_PATH (so the descriptor itself is examined), and a buffer of
    // the right type that outlives the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_MNT_ID,
            &mut buf,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_read_only_tree_goes_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
    }

    const OURS: &[&str] = &["template.img"];

    #[test]
    fn a_cache_dir_goes_only_when_it_holds_nothing_but_ours() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("ext4-128m-0123456789abcdef");
        fs::create_dir(&entry).unwrap();
        fs::write(entry.join("template.img"), b"img").unwrap();
        fs::write(entry.join("thesis.tex"), b"chapter 1").unwrap();
        let err = remove_owned_dir(&entry, OURS).unwrap_err();
        assert_eq!(foreign_of(&err).unwrap().name, "thesis.tex");
        assert_eq!(fs::read(entry.join("thesis.tex")).unwrap(), b"chapter 1");
        assert!(
            entry.join("template.img").exists(),
            "removed before refusing"
        );

        // A directory or a link under our file's name is not ours either.
        fs::remove_file(entry.join("thesis.tex")).unwrap();
        fs::remove_file(entry.join("template.img")).unwrap();
        fs::create_dir(entry.join("template.img")).unwrap();
        assert!(foreign_file(&entry, OURS).unwrap().is_some());
        fs::remove_dir(entry.join("template.img")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", entry.join("template.img")).unwrap();
        assert!(foreign_of(&remove_owned_dir(&entry, OURS).unwrap_err()).is_some());

        // Ours alone, read-only as a dead writer may leave it: it goes.
        fs::remove_file(entry.join("template.img")).unwrap();
        fs::write(entry.join("template.img"), b"img").unwrap();
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(foreign_file(&entry, OURS).unwrap(), None);
        remove_owned_dir(&entry, OURS).unwrap();
        assert!(!entry.exists());
    }

    #[test]
    fn a_symlink_at_the_top_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(remove_tree(&link).is_err());
        assert!(outside.exists());
    }
}
