//! The boot GDT: null, 64-bit code, data, and a TSS, and the KVM segment
//! registers that mirror its entries (KVM does not read the GDT on entry,
//! so both must agree).

use kvm_bindings::kvm_segment;

/// Flags (access byte in bits 0-7, G/DB/L in bits 12-15) of each entry.
const CODE64: u16 = 0xa09b; // present, ring 0, execute/read, accessed, L, G
const DATA: u16 = 0xc093; // present, ring 0, read/write, accessed, D/B, G
const TSS: u16 = 0x808b; // present, busy 64-bit TSS, G

/// The table, entry by entry.
pub(crate) const BOOT_GDT: [u64; 4] = [
    0,
    entry(CODE64, 0, 0xfffff),
    entry(DATA, 0, 0xfffff),
    entry(TSS, 0, 0xfffff),
];
pub(crate) const CODE_INDEX: u8 = 1;
pub(crate) const DATA_INDEX: u8 = 2;
pub(crate) const TSS_INDEX: u8 = 3;

/// Encodes one segment descriptor.
pub(crate) const fn entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The KVM view of GDT entry `index`.
pub(crate) fn segment(table: &[u64], index: u8) -> kvm_segment {
    let e = table[usize::from(index)];
    let base = ((e >> 16) & 0xff_ffff) | ((e >> 32) & 0xff00_0000);
    let raw_limit = (e & 0xffff) | ((e >> 32) & 0xf_0000);
    let granular = (e >> 55) & 1 == 1;
    // With G set the limit counts 4 KiB pages; KVM wants it in bytes.
    let limit = if granular {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        limit: limit as u32,
        selector: u16::from(index) * 8,
        type_: ((e >> 40) & 0xf) as u8,
        present: ((e >> 47) & 1) as u8,
        dpl: ((e >> 45) & 3) as u8,
        db: ((e >> 54) & 1) as u8,
        s: ((e >> 44) & 1) as u8,
        l: ((e >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((e >> 52) & 1) as u8,
        unusable: u8::from((e >> 47) & 1 == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_the_architectural_layout() {
        // The well-known flat 64-bit code descriptor.
        assert_eq!(BOOT_GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(BOOT_GDT[2], 0x00cf_9300_0000_ffff);
        assert_eq!(entry(0, 0x1234_5678, 0xa_bcde), 0x120a_0034_5678_bcde);
    }

    #[test]
    fn segments_decode_what_was_encoded() {
        let cs = segment(&BOOT_GDT, CODE_INDEX);
        assert_eq!(
            (cs.selector, cs.type_, cs.l, cs.db, cs.s),
            (8, 0xb, 1, 0, 1)
        );
        assert_eq!(
            (cs.present, cs.g, cs.limit, cs.unusable),
            (1, 1, 0xffff_ffff, 0)
        );
        let tss = segment(&BOOT_GDT, TSS_INDEX);
        assert_eq!((tss.selector, tss.type_, tss.s), (24, 0xb, 0));
        let null = segment(&BOOT_GDT, 0);
        assert_eq!(null.unusable, 1);
    }
}
