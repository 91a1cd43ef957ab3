//! A bzImage's uncompressed kernel, unpacked on the host so the guest need
//! not run the decompressor: under TCG, Debian 6.12's zstd payload (11 MiB,
//! 57 MiB unpacked) takes the guest about 2 s, the host 0.1 s.
//!
//! The payload sits `payload_offset` (header 0x248) bytes into the
//! protected-mode code, which starts after the `setup_sects` (0x1f1) + 1
//! real-mode sectors; it is `payload_length` (0x24c) bytes long. Kbuild
//! appends the unpacked size as a little-endian u32 to its xz and zstd
//! payloads (gzip carries its own). What comes out is the ELF vmlinux: the
//! built-in VMM enters it at its 64-bit entry, and QEMU boots it through
//! its PVH entry point (Xen note 18) where it has one.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point.
const PVH_ENTRY_NOTE: u32 = 18;

/// The uncompressed ELF kernel inside `bzimage`, when its payload is gzip,
/// xz or zstd; `None` otherwise.
pub(crate) fn vmlinux(bzimage: &Path) -> Result<Option<Vec<u8>>> {
    let image = std::fs::read(bzimage)
        .with_context(|| format!("failed to read `{}`", bzimage.display()))?;
    let Some(payload) = payload(&image) else {
        return Ok(None);
    };
    let vmlinux = decompress(payload)
        .with_context(|| format!("failed to unpack the kernel in `{}`", bzimage.display()))?;
    Ok(vmlinux.filter(|v| v.starts_with(b"\x7fELF")))
}

/// [`vmlinux`], when it has a PVH entry.
pub(crate) fn pvh_vmlinux(bzimage: &Path) -> Result<Option<Vec<u8>>> {
    Ok(vmlinux(bzimage)?.filter(|v| has_pvh_entry(v)))
}

/// The compressed payload of a bzImage, or `None` for anything else.
fn payload(image: &[u8]) -> Option<&[u8]> {
    let header = image.get(..0x250)?;
    if &header[0x202..0x206] != b"HdrS" {
        return None;
    }
    let setup_sects = match header[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap()) as usize;
    let start = (setup_sects + 1) * 512 + word(0x248);
    image.get(start..start.checked_add(word(0x24c))?)
}

/// The payload decompressed; `None` for a compression not handled here
/// (lz4, lzo, bzip2, lzma), which the guest then unpacks itself.
fn decompress(payload: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let sized = |payload: &[u8]| -> Option<(usize, usize)> {
        let at = payload.len().checked_sub(4)?;
        Some((
            at,
            u32::from_le_bytes(payload[at..].try_into().ok()?) as usize,
        ))
    };
    if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out)?;
        return Ok(Some(out));
    }
    let Some((end, size)) = sized(payload) else {
        return Ok(None);
    };
    if payload.starts_with(b"\xfd7zXZ\0") {
        xz2::read::XzDecoder::new(&payload[..end]).read_to_end(&mut out)?;
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(&payload[..end])?
            .single_frame()
            .read_to_end(&mut out)?;
    } else {
        return Ok(None);
    }
    if out.len() != size {
        bail!("unpacked {} bytes where the image says {size}", out.len());
    }
    Ok(Some(out))
}

fn has_pvh_entry(vmlinux: &[u8]) -> bool {
    let Ok(elf) = goblin::elf::Elf::parse(vmlinux) else {
        return false;
    };
    elf.iter_note_headers(vmlinux).is_some_and(|notes| {
        notes
            .flatten()
            .any(|n| n.name == "Xen" && n.n_type == PVH_ENTRY_NOTE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake bzImage around `payload`.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 5 * 512];
        image[0x1f1] = 4;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(&[0u8; 16]);
        image.extend_from_slice(payload);
        image.extend_from_slice(b"trailing setup data");
        image
    }

    #[test]
    fn each_payload_format_unpacks_and_its_size_is_checked() {
        let body = b"an uncompressed kernel".repeat(1000);
        let size = (body.len() as u32).to_le_bytes();
        let zst = [
            zstd::stream::encode_all(&body[..], 3).unwrap(),
            size.to_vec(),
        ]
        .concat();
        let mut xz = Vec::new();
        xz2::read::XzEncoder::new(&body[..], 1)
            .read_to_end(&mut xz)
            .unwrap();
        let xz = [xz, size.to_vec()].concat();
        let mut gz = Vec::new();
        flate2::read::GzEncoder::new(&body[..], flate2::Compression::fast())
            .read_to_end(&mut gz)
            .unwrap();
        for packed in [&zst, &xz, &gz] {
            let image = bzimage(packed);
            assert_eq!(decompress(payload(&image).unwrap()).unwrap().unwrap(), body);
        }
        let wrong = [&zst[..zst.len() - 4], &7u32.to_le_bytes()].concat();
        assert!(decompress(&wrong).is_err());
        assert_eq!(decompress(b"BZh91AY&SY....").unwrap(), None);
        assert_eq!(payload(b"not a kernel"), None);
    }

    /// Debian's kernels, where installed: each unpacks to a vmlinux with a
    /// PVH entry.
    #[test]
    fn the_installed_stock_kernels_unpack() {
        let kernels = super::super::stock::boot_kernels(
            Path::new(super::super::stock::BOOT_DIR),
            Path::new(super::super::stock::MODULES_ROOT),
        );
        if kernels.is_empty() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs Debian's kernels"
            );
            return eprintln!("skipped: no /boot/vmlinuz-*");
        }
        for kernel in kernels {
            let vmlinux = pvh_vmlinux(&kernel.image).unwrap();
            let vmlinux = vmlinux.unwrap_or_else(|| panic!("{}: no PVH vmlinux", kernel.release));
            assert!(vmlinux.starts_with(b"\x7fELF") && vmlinux.len() > 8 << 20);
        }
    }
}
