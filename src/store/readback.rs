//! Reading a file back from the disk after fsync, to catch a disk that
//! reports writes done and keeps nothing (a failing disk's dropped writes:
//! fsync succeeds, and only the page cache holds the bytes).
//!
//! For each data extent (SEEK_DATA/SEEK_HOLE), a MiB at a time: read it
//! (the page cache: what was written), drop those pages
//! (`POSIX_FADV_DONTNEED`, which drops clean pages, and after fsync they
//! are clean), read it again (the disk) and compare. A page the cache had
//! already dropped reads from the disk both times, so the check is as good
//! as the page cache is warm, which it is right after a build or a copy.
//! A kernel built without fadvise gets no check.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

/// A file whose bytes on the disk are not the bytes written to it.
#[derive(Debug)]
pub(crate) struct NotAsWritten {
    pub path: PathBuf,
    /// Where the first chunk that differs starts.
    pub offset: u64,
}

impl std::fmt::Display for NotAsWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` reads back from the disk other than it was written (from byte {}), though \
             fsync said it was on the disk: the disk dropped writes",
            self.path.display(),
            self.offset
        )
    }
}

impl std::error::Error for NotAsWritten {}

/// Checks that the disk holds what was written to the fsynced `file`
/// (at `path`, for the message): an I/O error, or [`NotAsWritten`] inside
/// an [`io::Error`] when it does not.
pub(crate) fn check_on_disk(file: &File, path: &Path) -> io::Result<()> {
    let len = file.metadata()?.len();
    let (mut cached, mut read) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    while pos < len {
        let data = match lseek(file, pos as i64, Whence::SeekData) {
            Ok(off) => off as u64,
            // ENXIO: no data past `pos`, only a trailing hole.
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = (lseek(file, data as i64, Whence::SeekHole)? as u64).min(len);
        let mut at = data;
        while at < hole {
            let want = cached.len().min((hole - at) as usize);
            file.read_exact_at(&mut cached[..want], at)?;
            match drop_cached(file, at, want) {
                Ok(()) => {}
                // A kernel without fadvise (CONFIG_ADVISE_SYSCALLS=n, as the
                // nested lane's KVM host) cannot reach the disk past the
                // cache: comparing the cache with itself would prove nothing.
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    tracing::debug!(
                        "not reading `{}` back: this kernel has no fadvise",
                        path.display()
                    );
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            file.read_exact_at(&mut read[..want], at)?;
            if cached[..want] != read[..want] {
                return Err(io::Error::other(NotAsWritten {
                    path: path.to_owned(),
                    offset: at,
                }));
            }
            at += want as u64;
        }
        pos = hole;
    }
    Ok(())
}

/// Drops `file`'s clean cached pages in `[at, at + len)`.
fn drop_cached(file: &File, at: u64, len: usize) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor we own.
    let rc = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            at as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_the_disk_kept_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(8 << 20).unwrap();
        // Two extents, one across a chunk boundary, and holes around them.
        file.write_all_at(&[7u8; 3 << 19], 1 << 20).unwrap();
        file.write_all_at(b"tail", (6 << 20) + 5).unwrap();
        file.sync_all().unwrap();
        check_on_disk(&file, &path).unwrap();
        let empty = File::create(dir.path().join("e")).unwrap();
        check_on_disk(&empty, &path).unwrap();
    }

    #[test]
    fn the_message_names_the_file_and_the_offset() {
        let err = NotAsWritten {
            path: "/c/t.img".into(),
            offset: 4096,
        };
        let text = err.to_string();
        assert!(
            text.contains("`/c/t.img`") && text.contains("byte 4096") && text.contains("dropped"),
            "{text}"
        );
    }
}
