//! The sparse copy: only the data extents, found with SEEK_DATA/SEEK_HOLE,
//! at the same offsets, so a mostly empty image stays mostly unallocated.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

/// Copies the data extents of `src` into `dst` at the same offsets, then sets
/// `dst`'s length, leaving the holes unallocated. `in_kernel` allows
/// copy_file_range, which may share the extents instead of copying them.
/// Stops at a signal ([`crate::interrupt`]) between chunks.
pub(crate) fn sparse_copy(src: &File, dst: &File, in_kernel: bool) -> io::Result<()> {
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let data = match lseek(src, pos as i64, Whence::SeekData) {
            Ok(off) => off as u64,
            // ENXIO: no data past `pos`, only a trailing hole.
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = (lseek(src, data as i64, Whence::SeekHole)? as u64).min(len);
        copy_range(src, dst, data, hole, in_kernel, &mut buf)?;
        pos = hole;
    }
    dst.set_len(len)
}

fn copy_range(
    src: &File,
    dst: &File,
    mut from: u64,
    to: u64,
    in_kernel: bool,
    buf: &mut [u8],
) -> io::Result<()> {
    // In the kernel first: no copy through this process, a syscall per
    // extent rather than per MiB. Where it cannot (another filesystem, an
    // old kernel), read and write.
    while in_kernel && from < to {
        crate::interrupt::check().map_err(io::Error::other)?;
        match copy_file_range_at(src, dst, from, to - from) {
            Ok(0) => break,
            Ok(n) => from += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    while from < to {
        crate::interrupt::check().map_err(io::Error::other)?;
        let want = buf.len().min((to - from) as usize);
        let n = src.read_at(&mut buf[..want], from)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the template shrank while being copied",
            ));
        }
        dst.write_all_at(&buf[..n], from)?;
        from += n as u64;
    }
    Ok(())
}

/// copy_file_range(2) of `len` bytes at `offset` in both files.
fn copy_file_range_at(src: &File, dst: &File, offset: u64, len: u64) -> io::Result<usize> {
    let (mut off_in, mut off_out) = (offset as i64, offset as i64);
    let len = len.min(1 << 30) as usize;
    // SAFETY: both fds are open for the call; the offsets are ours and
    // outlive it, and the kernel writes only those two integers.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
