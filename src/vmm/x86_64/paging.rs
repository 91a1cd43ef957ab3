//! Identity page tables for the 64-bit entry: the low 4 GiB mapped one to
//! one with 2 MiB pages (Linux builds its own tables right away; the
//! synthetic guests keep these).

use vm_memory::{Bytes, GuestAddress};

use crate::vmm::VmmError;
use crate::vmm::layout::{IDENTITY_MAPPED, PD_START, PDPT_START, PML4_START};
use crate::vmm::memory::GuestMem;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const PAGE_2M: u64 = 2 << 20;

/// Writes PML4 -> PDPT -> page directories; returns the CR3 value.
pub(crate) fn write_identity_tables(mem: &GuestMem) -> Result<u64, VmmError> {
    let mut tables = vec![0u64; 512 * 2];
    tables[0] = PDPT_START | PRESENT | WRITABLE;
    let directories = IDENTITY_MAPPED / (1 << 30);
    for i in 0..directories {
        tables[512 + i as usize] = (PD_START + i * 0x1000) | PRESENT | WRITABLE;
    }
    let mut pds = vec![0u64; 512 * directories as usize];
    for (i, pde) in pds.iter_mut().enumerate() {
        *pde = (i as u64 * PAGE_2M) | PRESENT | WRITABLE | HUGE;
    }
    let write = |addr: u64, words: &[u64]| {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(VmmError::Memory)
    };
    write(PML4_START, &tables[..512])?;
    write(PDPT_START, &tables[512..])?;
    write(PD_START, &pds)?;
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_low_4_gib_one_to_one() {
        let mem = crate::vmm::memory::create(16).unwrap();
        assert_eq!(write_identity_tables(&mem).unwrap(), PML4_START);
        let read = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        assert_eq!(read(PML4_START), PDPT_START | 3);
        assert_eq!(read(PDPT_START + 3 * 8), (PD_START + 0x3000) | 3);
        // The PDE for 0xd000_0000 (the virtio window) in the fourth directory.
        let pde = read(PD_START + (0xd000_0000 / PAGE_2M) * 8);
        assert_eq!(pde, 0xd000_0000 | 0x83);
    }
}
