//! The least memory the template guest boots in, refused before a boot:
//! below it the kernel panics while unpacking its initramfs ("write
//! error", "System is deadlocked on memory") or the guest hangs until the
//! timeout, and neither says that memory was the cause.
//!
//! The need is the kernel's `init_size` (the memory its bzImage header asks
//! for, to decompress and run), the initramfs three times (the archive stays
//! in memory until its files are unpacked, and twice was measured short for
//! a large one, below), and a base for the rest of boot and the formatter. Measured 2026-12-06 on a 2-core x86-64 host (QEMU 10.0,
//! TCG: the host's KVM is PVM), building 64 MiB ext4 and 128 MiB btrfs
//! templates with a 15 MiB initramfs (a debug build's init) and the stock
//! Debian kernels or a 3 MiB one from `cargo ktstr kernel build`:
//!
//! | kernel              | init_size | fails at | boots at | base   |
//! |---------------------|-----------|----------|----------|--------|
//! | 6.12.95 stock, ext4 | 55.9 MiB  | 88 MiB   | 92 MiB   | 6 MiB  |
//! | 6.12.95 stock, btrfs| 55.9 MiB  | 92 MiB   | 96 MiB   | 11 MiB |
//! | 6.1.0-57 stock, ext4| 63.6 MiB  | 106 MiB  | 108 MiB  | 15 MiB |
//! | 6.12.95 tiny, ext4  | 13.8 MiB  | 56 MiB   | 60 MiB   | 17 MiB |
//!
//! (base: what booted, less init_size and twice the initramfs.)
//! [`BASE_MIB`] is about twice the largest, for what was not measured. The
//! same day a 33 MiB initramfs (a debug init with the `remote` feature) and
//! the tiny kernel failed to unpack at 112 MiB, twice the initramfs plus
//! the base: so the initramfs counts three times.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::usage::UsageError;

const MIB: u64 = 1 << 20;

/// Memory besides the kernel and the initramfs: about twice the 17 MiB
/// measured.
pub(crate) const BASE_MIB: u64 = 32;

/// What booting `kernel` with an initramfs of `initramfs_len` bytes needs,
/// in MiB; see the module doc.
pub(crate) fn minimum_mib(kernel: &Path, initramfs_len: u64) -> Result<u64> {
    let kernel_len = kernel_init_size(kernel)?;
    Ok((kernel_len + 3 * initramfs_len).div_ceil(MIB) + BASE_MIB)
}

/// Refuses `memory_mib` below [`minimum_mib`], saying the minimum.
pub(crate) fn check(memory_mib: u32, kernel: &Path, initramfs_len: u64) -> Result<()> {
    let minimum = minimum_mib(kernel, initramfs_len)?;
    if u64::from(memory_mib) >= minimum {
        return Ok(());
    }
    Err(UsageError(format!(
        "guest memory of {memory_mib} MiB is too little to boot the template guest: the \
         kernel `{}` needs {} MiB to start and the initramfs {} MiB twice over, so at least \
         {minimum} MiB; pass --memory {minimum}M or more",
        kernel.display(),
        kernel_init_size(kernel)?.div_ceil(MIB),
        initramfs_len.div_ceil(MIB),
    ))
    .into())
}

/// The memory `kernel` asks for to start: a bzImage's `init_size`
/// (boot protocol 2.10 and later), else the file's length (an ELF vmlinux
/// loads about its length).
fn kernel_init_size(kernel: &Path) -> Result<u64> {
    let mut file =
        File::open(kernel).with_context(|| format!("failed to open `{}`", kernel.display()))?;
    let len = (file.metadata())
        .with_context(|| format!("failed to read the metadata of `{}`", kernel.display()))?
        .len();
    let mut header = [0u8; 0x264];
    if file.read_exact(&mut header).is_err() || &header[0x202..0x206] != b"HdrS" {
        return Ok(len);
    }
    let version = u16::from_le_bytes([header[0x206], header[0x207]]);
    if version < 0x20a {
        return Ok(len);
    }
    let init_size = u32::from_le_bytes(header[0x260..0x264].try_into().expect("4 bytes"));
    Ok(u64::from(init_size).max(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::is_usage;

    /// A bzImage header of protocol `version` asking for `init_size`.
    fn bzimage(dir: &Path, version: u16, init_size: u32) -> std::path::PathBuf {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        image[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
        let path = dir.join("bzImage");
        std::fs::write(&path, image).unwrap();
        path
    }

    #[test]
    fn the_minimum_is_init_size_thrice_the_initramfs_and_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = bzimage(dir.path(), 0x20f, 56 << 20);
        assert_eq!(minimum_mib(&kernel, 15 << 20).unwrap(), 56 + 45 + BASE_MIB);
        // Part of a MiB counts as one.
        assert_eq!(minimum_mib(&kernel, 1).unwrap(), 57 + BASE_MIB);
        // Before protocol 2.10 there is no init_size: the file's length.
        let old = bzimage(dir.path(), 0x209, 56 << 20);
        assert_eq!(minimum_mib(&old, 0).unwrap(), 1 + BASE_MIB);
    }

    #[test]
    fn less_is_a_usage_error_that_names_the_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = bzimage(dir.path(), 0x20f, 56 << 20);
        let minimum = 56 + 45 + BASE_MIB;
        check(minimum as u32, &kernel, 15 << 20).unwrap();
        let err = check(minimum as u32 - 1, &kernel, 15 << 20).unwrap_err();
        assert!(is_usage(&err));
        let text = format!("{err:#}");
        assert!(text.contains(&format!("--memory {minimum}M")), "{text}");
        assert!(text.contains("56 MiB to start"), "{text}");
    }

    #[test]
    fn a_missing_kernel_is_a_runtime_error() {
        let err = minimum_mib(Path::new("/nonexistent/bzImage"), 0).unwrap_err();
        assert!(!is_usage(&err));
        assert!(format!("{err:#}").contains("/nonexistent/bzImage"));
    }
}
