//! FICLONE, or a sparse copy of the data extents.
//!
//! A clone shares the template's extents copy-on-write, so it costs the same
//! for any capacity. Where the filesystem cannot (ext4, tmpfs, or the cache
//! and the destination on two filesystems), `--reflink auto` copies only the
//! data extents, found with SEEK_DATA/SEEK_HOLE, so a mostly empty image stays
//! mostly unallocated.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::statfs;

use super::ensure::{Ensured, Ensurer};
use super::heal;
use super::key::Capacity;
use super::lookup;
use crate::formatter::filesystem::Filesystem;
use crate::store::lock::{self, Mode};
use crate::store::readback;

mod sparse;
pub(crate) use sparse::sparse_copy;

/// How to copy a template: the CLI's `--reflink`, whose help the variants'
/// lines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reflink {
    /// FICLONE, else a sparse copy.
    Auto,
    /// FICLONE only; fail where the filesystem cannot.
    Always,
    /// A sparse copy of the data extents.
    Never,
}

/// How a clone was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// FICLONE: shares the template's extents.
    Reflink,
    /// A copy that skips holes, where reflink is missing.
    SparseCopy,
}

/// A finished `template clone`.
#[derive(Debug, Clone)]
pub struct Cloned {
    /// The template it was cloned from.
    pub ensured: Ensured,
    /// How the bytes were copied.
    pub method: Method,
}

impl Ensurer<'_> {
    /// Ensures the template for (`fs`, `capacity`) and clones it to `dest`,
    /// which must not exist, fsynced (and a copy read back from the disk).
    /// On failure `dest` is removed.
    pub fn clone_to(
        &self,
        fs: Filesystem,
        capacity: Capacity,
        dest: &Path,
        mode: Reflink,
    ) -> Result<Cloned> {
        // Fail before a possibly long build; O_EXCL below is the real guard.
        if dest.symlink_metadata().is_ok() {
            return Err(dest_exists(dest));
        }
        let root = self.root;
        let (ensured, method) = self.with_entry_shared(fs, capacity, |e| {
            // Evicting templates frees space only on the cache's filesystem.
            let evict = self.options.evict && same_filesystem(root, dest.parent().unwrap_or(dest));
            heal::retry_when_full(root, clone_need(&e.path), evict, || {
                clone_durably(&e.path, dest, mode)
            })
        })?;
        Ok(Cloned { ensured, method })
    }

    /// Ensures the template, then runs `f` on it while holding its key's lock
    /// shared, so `clean --all` cannot remove it meanwhile.
    pub fn with_entry_shared<T>(
        &self,
        fs: Filesystem,
        capacity: Capacity,
        mut f: impl FnMut(&Ensured) -> Result<T>,
    ) -> Result<(Ensured, T)> {
        let mut this = *self;
        // The entry can vanish between ensure and the shared lock (`clean --all`
        // won the race); then ensure again.
        for _ in 0..3 {
            let ensured = this.ensure(fs, capacity)?;
            this.options.force = false;
            let name = ensured.key.to_string();
            let _shared = lock::lock_with_timeout(
                &lock::key_lock_path(self.root, &name),
                Mode::Shared,
                self.options.lock_timeout,
                &name,
            )?;
            if let Some(path) = lookup::find(self.root, &ensured.key)? {
                let ensured = Ensured { path, ..ensured };
                let out = f(&ensured)?;
                return Ok((ensured, out));
            }
        }
        bail!(
            "the template for {fs} {capacity} was removed three times before it could be used; \
             is `cargo ktstr clean --all` running in a loop?"
        )
    }
}

/// What a clone of `template` may need free: its allocated bytes, all of
/// which a sparse copy writes (a reflink needs far less).
pub(crate) fn clone_need(template: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(template).map_or(0, |m| m.blocks() * 512)
}

/// Whether `a` and `b` are on one filesystem (false when either cannot be
/// examined).
fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dir = if b.as_os_str().is_empty() {
        Path::new(".")
    } else {
        b
    };
    match (std::fs::metadata(a), std::fs::metadata(dir)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Clones `template` to a new file `dest` (O_CREAT|O_EXCL: an existing one
/// is never overwritten). A failure, or a signal ([`crate::interrupt`]),
/// removes what was written.
pub fn clone_file(template: &Path, dest: &Path, mode: Reflink) -> Result<Method> {
    let src =
        File::open(template).with_context(|| format!("failed to open `{}`", template.display()))?;
    let dst = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => dest_exists(dest),
            io::ErrorKind::NotFound => anyhow::anyhow!(
                "failed to create `{}`: its directory does not exist; create it first",
                dest.display()
            ),
            _ => anyhow::Error::new(e).context(format!("failed to create `{}`", dest.display())),
        })?;
    // A signal during a copy that finished anyway still undoes it: an
    // interrupted clone leaves no DEST.
    let result = clone_into(&src, template, &dst, dest, mode)
        .and_then(|method| Ok(crate::interrupt::check().map(|()| method)?));
    if result.is_err() {
        drop(dst);
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// [`clone_file`], then fsyncs the clone, and reads a copy back
/// ([`readback`]): a disk that fails writes says so now rather than at
/// writeback, and one that drops them before the clone is used. (A reflink
/// wrote no data to read back.) A failure removes `dest`.
fn clone_durably(template: &Path, dest: &Path, mode: Reflink) -> Result<Method> {
    let method =
        clone_file(template, dest, mode).map_err(|e| super::failing::when_disk_fails(dest, e))?;
    let durable = File::open(dest)
        .and_then(|dst| {
            dst.sync_all()?;
            match method {
                Method::SparseCopy => readback::check_on_disk(&dst, dest),
                Method::Reflink => Ok(()),
            }
        })
        .with_context(|| format!("failed to fsync `{}` and read it back", dest.display()));
    if let Err(e) = durable {
        let _ = std::fs::remove_file(dest);
        return Err(super::failing::when_disk_fails(dest, e));
    }
    Ok(method)
}

fn dest_exists(dest: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "`{}` already exists; a clone never overwrites: remove it or choose another path",
        dest.display()
    )
}

/// Clones the open `src` into the open, empty `dst` as `mode` says. The
/// paths are only for messages.
pub(crate) fn clone_into(
    src: &File,
    src_path: &Path,
    dst: &File,
    dst_path: &Path,
    mode: Reflink,
) -> Result<Method> {
    if mode != Reflink::Never {
        match ficlone(src, dst) {
            Ok(()) => return Ok(Method::Reflink),
            Err(e) if mode == Reflink::Always || !reflink_unsupported(e) => {
                return Err(reflink_error(e, src_path, dst_path, mode));
            }
            Err(e) => tracing::info!(
                "warning: cannot reflink `{}` to `{}` ({}; cache on {}, destination on {}): making a sparse copy",
                src_path.display(),
                dst_path.display(),
                describe(e),
                fs_type_name(src_path),
                fs_type_name(dst_path)
            ),
        }
    }
    // `never` promises unshared blocks, and copy_file_range reflinks on
    // btrfs and xfs: that copy goes through this process (as
    // `cp --reflink=never` does).
    let in_kernel = mode != Reflink::Never;
    sparse_copy(src, dst, in_kernel).with_context(|| {
        format!(
            "failed to copy `{}` to `{}`",
            src_path.display(),
            dst_path.display()
        )
    })?;
    Ok(Method::SparseCopy)
}

/// Shares all of `src`'s extents with `dst` (ioctl FICLONE).
pub(crate) fn ficlone(src: &File, dst: &File) -> Result<(), Errno> {
    // SAFETY: FICLONE takes the source fd as its argument and reads no
    // memory of ours; both fds are open for the duration of the call.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    Errno::result(rc).map(drop)
}

/// The errors that mean "this pair of files cannot share extents".
fn reflink_unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::EOPNOTSUPP | Errno::EXDEV | Errno::EINVAL | Errno::ENOTTY | Errno::ENOSYS
    )
}

fn reflink_error(e: Errno, src: &Path, dst: &Path, mode: Reflink) -> anyhow::Error {
    let (a, b) = (fs_type_name(src), fs_type_name(dst));
    if mode == Reflink::Always && reflink_unsupported(e) {
        let place = if e == Errno::EXDEV {
            format!("the cache is on {a} and DEST on another filesystem ({b})")
        } else {
            format!("the filesystem is {a}, which cannot reflink")
        };
        return anyhow::anyhow!(
            "cannot reflink `{}` to `{}` ({}): {place}; put the cache (--cache-dir) and DEST on one \
             btrfs or xfs filesystem, or use --reflink auto to fall back to a sparse copy",
            src.display(),
            dst.display(),
            describe(e)
        );
    }
    anyhow::anyhow!(
        "failed to reflink `{}` to `{}` on {b}: {}",
        src.display(),
        dst.display(),
        describe(e)
    )
}

/// The C library's wording ("Operation not supported (os error 95)").
fn describe(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The name of the filesystem type `path` is on, for messages.
pub(crate) fn fs_type_name(path: &Path) -> String {
    // A path not created yet is judged by its directory.
    let probe = if path.exists() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let probe = if probe.as_os_str().is_empty() {
        Path::new(".")
    } else {
        probe
    };
    let Ok(st) = statfs::statfs(probe) else {
        return "an unknown filesystem".to_owned();
    };
    let magic = st.filesystem_type().0 as u64;
    let name = match magic {
        0x9123_683e => "btrfs",
        0x5846_5342 => "xfs",
        0xef53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0x2fc1_2fc1 => "zfs",
        0xf2f5_2010 => "f2fs",
        0xca45_1a4e => "bcachefs",
        0x6573_5546 => "fuse",
        _ => return format!("a filesystem of type {magic:#x}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    /// A file with data at 0 and at 9 MiB, holes between and after.
    fn holey(path: &Path) -> File {
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        f.write_all_at(&[7u8; 4096], 0).unwrap();
        f.write_all_at(&[9u8; 8192], 9 << 20).unwrap();
        f.set_len(64 << 20).unwrap();
        f
    }

    #[test]
    fn sparse_copy_keeps_bytes_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        holey(&a);
        assert_eq!(
            clone_file(&a, &b, Reflink::Never).unwrap(),
            Method::SparseCopy
        );
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        let blocks = std::fs::metadata(&b).unwrap().blocks() * 512;
        assert!(
            blocks < 1 << 20,
            "{blocks} bytes allocated for 12 KiB of data"
        );
    }

    #[test]
    fn an_existing_dest_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        holey(&a);
        std::fs::write(&b, b"precious").unwrap();
        let err = clone_file(&a, &b, Reflink::Auto).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&b).unwrap(), b"precious");
    }

    #[test]
    fn a_failed_clone_removes_dest() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        holey(&a);
        // A directory can be opened but not cloned or read from.
        let err = clone_file(dir.path(), &b, Reflink::Never).unwrap_err();
        assert!(format!("{err:#}").contains("failed to copy"), "{err:#}");
        assert!(!b.exists());
    }

    #[test]
    fn fs_type_names_the_common_ones() {
        assert_eq!(
            fs_type_name(Path::new("/proc/self")),
            "a filesystem of type 0x9fa0"
        );
        let dir = tempfile::tempdir().unwrap();
        let magic = statfs::statfs(dir.path()).unwrap().filesystem_type();
        if magic == statfs::EXT4_SUPER_MAGIC {
            assert_eq!(fs_type_name(&dir.path().join("not-there")), "ext4");
        }
    }
}
