//! ELF files as the guest gets them: cut after their last segment.
//!
//! Neither the kernel nor the dynamic loader reads section headers, symbol
//! tables or debug info, which make up most of a debug build; dropping them
//! keeps the initramfs small and fast to pack and to unpack under TCG.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use goblin::container::Ctx;
use goblin::elf::Elf;
use goblin::elf::program_header::ProgramHeader;

/// A program's bytes, without what only debuggers read (see [`trim_elf`]).
pub(crate) fn read_program(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(trim_elf(bytes))
}

/// Cuts a 64-bit little-endian ELF file after its last segment, dropping
/// debug info, symbol tables and section headers, none of which the kernel
/// or the loader reads. A debug build of this binary shrinks from ~40 MiB
/// to ~6 MiB. Anything else is returned unchanged.
pub(crate) fn trim_elf(mut bytes: Vec<u8>) -> Vec<u8> {
    const EI_CLASS64_LE: [u8; 6] = [0x7f, b'E', b'L', b'F', 2, 1];
    if !bytes.starts_with(&EI_CLASS64_LE) {
        return bytes;
    }
    let Some(end) = segments_end(&bytes) else {
        return bytes;
    };
    if end >= bytes.len() {
        return bytes;
    }
    bytes.truncate(end);
    // e_shoff (8 bytes at 0x28), e_shnum and e_shstrndx (2 bytes each at
    // 0x3c and 0x3e): no section headers now.
    bytes[0x28..0x30].fill(0);
    bytes[0x3c..0x40].fill(0);
    bytes
}

/// Where the program header table and the last segment end; only the
/// headers are parsed, so this is cheap even for a 40 MiB file.
fn segments_end(bytes: &[u8]) -> Option<usize> {
    let header = Elf::parse_header(bytes).ok()?;
    let ctx = Ctx::new(header.container().ok()?, header.endianness().ok()?);
    let phoff = usize::try_from(header.e_phoff).ok()?;
    let phdrs = ProgramHeader::parse(bytes, phoff, usize::from(header.e_phnum), ctx).ok()?;
    let table_end = header.e_phoff + u64::from(header.e_phnum) * u64::from(header.e_phentsize);
    let end = phdrs
        .iter()
        .map(|ph| ph.p_offset.saturating_add(ph.p_filesz))
        .fold(table_end, u64::max);
    usize::try_from(end).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_every_segment_and_drops_the_rest() {
        let exe = std::env::current_exe().unwrap();
        let full = fs::read(&exe).unwrap();
        let trimmed = trim_elf(full.clone());
        assert!(
            trimmed.len() < full.len(),
            "a test binary carries debug info"
        );
        let elf = goblin::elf::Elf::parse(&trimmed).unwrap();
        assert_eq!(elf.header.e_shnum, 0);
        // The same bytes but for the section header fields just cleared.
        let mut expected = full.clone();
        expected[0x28..0x30].fill(0);
        expected[0x3c..0x40].fill(0);
        for ph in &elf.program_headers {
            let range = ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize;
            assert!(trimmed[range.clone()] == expected[range], "{ph:?} changed");
        }
        assert_eq!(trim_elf(b"#!/bin/sh\n".to_vec()), b"#!/bin/sh\n");
    }

    #[test]
    fn a_trimmed_program_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo");
        crate::testutil::executable(&path, &trim_elf(fs::read("/bin/echo").unwrap()));
        let out = std::process::Command::new(&path)
            .arg("still here")
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"still here\n");
    }
}
