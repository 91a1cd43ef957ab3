//! An Intel MultiProcessor table (MP spec 1.4) in the EBDA, so a kernel
//! without ACPI finds the CPUs, the IOAPIC and how ISA interrupts reach it.
//!
//! Layout: the 16-byte floating pointer "_MP_" points at the "PCMP" table
//! right after it: a 44-byte header, then one entry per CPU, the ISA bus,
//! the IOAPIC, an interrupt entry per ISA line, and the two local
//! interrupts (LINT0 ExtINT, LINT1 NMI). Every structure sums to zero.
//!
//! The 8259 reaches the CPU through LINT0 only, as KVM's in-kernel irqchip
//! wires it: an ExtINT entry on an IOAPIC pin would claim a cascade that
//! KVM's IOAPIC does not have, and Linux says so at boot ("ExtINT not
//! setup in hardware but reported by MP table"). ISA line n is IOAPIC pin
//! n, as in KVM's default GSI routing, the timer on pin 0 included.

use vm_memory::{Bytes, GuestAddress};

use crate::vmm::VmmError;
use crate::vmm::layout::{APIC_START, EBDA_END, EBDA_START, IOAPIC_START};
use crate::vmm::memory::GuestMem;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Family 6, and the FPU and APIC feature bits, for each processor entry.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ISA_IRQS: u8 = 16;
const INT_KIND_INT: u8 = 0;
const INT_KIND_NMI: u8 = 1;
const INT_KIND_EXTINT: u8 = 3;

/// Writes the table for `cpus` CPUs at [`EBDA_START`].
pub(crate) fn write_mptable(mem: &GuestMem, cpus: u8) -> Result<(), VmmError> {
    let bytes = build(cpus);
    debug_assert!(EBDA_START + bytes.len() as u64 <= EBDA_END);
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(VmmError::Memory)
}

/// The floating pointer followed by the configuration table.
pub(crate) fn build(cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count = 0u16;
    let mut push = |entry: &[u8]| {
        entries.extend_from_slice(entry);
        count += 1;
    };
    for id in 0..cpus {
        let flags = if id == 0 { 0x3 } else { 0x1 }; // enabled; bootstrap CPU
        let mut e = vec![0, id, APIC_VERSION, flags];
        e.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        e.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        e.extend_from_slice(&[0; 8]);
        push(&e);
    }
    push(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut ioapic = vec![2, ioapic_id, IOAPIC_VERSION, 1];
    ioapic.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    push(&ioapic);
    for irq in 0..ISA_IRQS {
        push(&[3, INT_KIND_INT, 0, 0, 0, irq, ioapic_id, irq]);
    }
    push(&[4, INT_KIND_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    push(&[4, INT_KIND_NMI, 0, 0, 0, 0, 0xff, 1]);

    let table_addr = EBDA_START as u32 + FLOATING_LEN as u32;
    let mut table = Vec::with_capacity(HEADER_LEN + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((HEADER_LEN + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REV, 0]);
    table.extend_from_slice(b"KTSTR   CARGO-KTSTR ");
    table.extend_from_slice(&[0; 6]); // OEM table pointer and size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_LEN + table.len());
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&table_addr.to_le_bytes());
    floating.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);
    floating.extend_from_slice(&table);
    floating
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn structures_sum_to_zero_and_point_at_each_other() {
        let bytes = build(1);
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(sum(&bytes[..FLOATING_LEN]), 0);
        let ptr = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!(u64::from(ptr), EBDA_START + FLOATING_LEN as u64);
        let table = &bytes[FLOATING_LEN..];
        assert_eq!(&table[..4], b"PCMP");
        assert_eq!(
            usize::from(u16::from_le_bytes([table[4], table[5]])),
            table.len()
        );
        assert_eq!(sum(table), 0);
        // 1 CPU + bus + IOAPIC + 16 ISA lines + 2 local = 21 entries.
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 21);
        assert!(bytes.len() as u64 <= EBDA_END - EBDA_START);
    }

    #[test]
    fn extint_is_on_lint0_only_and_isa_line_n_on_ioapic_pin_n() {
        let bytes = build(1);
        let entries = &bytes[FLOATING_LEN + HEADER_LEN + 20 + 8 + 8..];
        let (io, local) = entries.split_at(16 * 8);
        for (n, e) in io.chunks(8).enumerate() {
            // type 3 (I/O interrupt), INT, source IRQ n, destination pin n.
            assert_eq!(
                (e[0], e[1], e[5], e[7]),
                (3, INT_KIND_INT, n as u8, n as u8)
            );
        }
        assert_eq!(&local[..8], &[4, INT_KIND_EXTINT, 0, 0, 0, 0, 0xff, 0]);
        assert_eq!(&local[8..], &[4, INT_KIND_NMI, 0, 0, 0, 0, 0xff, 1]);
    }

    #[test]
    fn the_first_cpu_is_the_bootstrap_processor() {
        let bytes = build(2);
        let entries = &bytes[FLOATING_LEN + HEADER_LEN..];
        assert_eq!(&entries[..4], &[0, 0, APIC_VERSION, 3]);
        assert_eq!(&entries[20..24], &[0, 1, APIC_VERSION, 1]);
    }
}
