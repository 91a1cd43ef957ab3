//! ACPI tables, so a stock kernel finds the virtio-mmio disk: distribution
//! kernels lack `VIRTIO_MMIO_CMDLINE_DEVICES`, and learn about the device
//! only from the DSDT. A kernel built without ACPI (the tinyconfig template
//! kernel) ignores them and keeps using the MP table and the command line.
//!
//! Layout from [`ACPI_START`] up, each table 16-byte aligned: the RSDP
//! (also pointed at by the zero page), the XSDT, a hardware-reduced FADT
//! (no PM timer, SCI or legacy power registers to emulate), the MADT (one
//! local APIC, the IOAPIC at GSI 0) and the DSDT (COM1 and the disk).

use acpi_tables::Aml;
use acpi_tables::aml::{
    Device, EISAName, IO, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate,
};
use acpi_tables::fadt::{FADT, FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress};

use crate::vmm::VmmError;
use crate::vmm::layout::{
    ACPI_END, ACPI_START, APIC_START, DISK_IRQS, IOAPIC_START, SERIAL_IRQ, SERIAL_PORT,
    SERIAL_PORT_LEN, VIRTIO_MMIO_SIZE, virtio_mmio_base,
};
use crate::vmm::memory::GuestMem;

const OEM_ID: [u8; 6] = *b"KTSTR ";
const OEM_TABLE_ID: [u8; 8] = *b"CARGOKTS";
const OEM_REVISION: u32 = 1;
/// FADT IA-PC boot architecture flags: no VGA, no MSI, no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);
/// The virtio-mmio transport's ACPI hardware id, which Linux's virtio_mmio
/// driver matches.
const VIRTIO_MMIO_HID: &str = "LNRO0005";

/// The tables and where each goes, built once per VM.
#[derive(Debug)]
pub(crate) struct AcpiTables {
    /// (guest address, bytes), the RSDP first.
    pub blobs: Vec<(u64, Vec<u8>)>,
}

impl AcpiTables {
    /// The RSDP's address, for the zero page.
    pub(crate) fn rsdp_addr(&self) -> u64 {
        self.blobs[0].0
    }
}

/// Builds the tables for one vCPU and this VM's devices: COM1, and the
/// `disks` virtio-mmio disks.
pub(crate) fn build(disks: usize) -> AcpiTables {
    let dsdt = dsdt(disks);
    let madt = bytes(&madt());
    let mut next = ACPI_START + align(Rsdp::len() as u64);
    let mut place = |len: usize| {
        let at = next;
        next += align(len as u64);
        at
    };
    // The XSDT's size is known before the addresses it lists.
    let xsdt_at = place(36 + 8 * 2);
    let dsdt_at = place(dsdt.len());
    let fadt = bytes(&fadt(dsdt_at));
    let fadt_at = place(fadt.len());
    let madt_at = place(madt.len());
    debug_assert!(next <= ACPI_END, "the ACPI tables outgrew their room");
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_at));
    AcpiTables {
        blobs: vec![
            (ACPI_START, rsdp),
            (xsdt_at, bytes(&xsdt)),
            (dsdt_at, dsdt),
            (fadt_at, fadt),
            (madt_at, madt),
        ],
    }
}

/// Writes the tables into guest memory; returns the RSDP's address.
pub(crate) fn write_acpi_tables(mem: &GuestMem, disks: usize) -> Result<u64, VmmError> {
    let tables = build(disks);
    for (at, blob) in &tables.blobs {
        mem.write_slice(blob, GuestAddress(*at))
            .map_err(VmmError::Memory)?;
    }
    Ok(tables.rsdp_addr())
}

fn align(len: u64) -> u64 {
    len.next_multiple_of(16)
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

fn fadt(dsdt_at: u64) -> FADT {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_at)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    // Finalized last: the checksum covers the boot flags.
    fadt.finalize()
}

fn madt() -> MADT {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    madt.add_structure(ProcessorLocalApic::new(0, 0, EnabledStatus::Enabled));
    // The IOAPIC id follows the CPUs', as in the MP table.
    madt.add_structure(IoApic::new(1, IOAPIC_START as u32, 0));
    madt
}

/// `\_SB.COM1` (the 16550 on its ISA port and line) and `\_SB.V00<i>` for
/// disk `i` (its virtio-mmio window and line), edge-triggered and active
/// high, as the VMM raises them through irqfds.
fn dsdt(disks: usize) -> Vec<u8> {
    let com1_io = IO::new(SERIAL_PORT, SERIAL_PORT, 1, SERIAL_PORT_LEN as u8);
    let com1_irq = Interrupt::new(true, true, false, false, SERIAL_IRQ);
    let com1_crs = ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    let com1_hid = EISAName::new("PNP0501");
    let com1_hid = Name::new(Path::new("_HID"), &com1_hid);
    let com1_uid = Name::new(Path::new("_UID"), &0u8);
    let com1_crs = Name::new(Path::new("_CRS"), &com1_crs);
    let com1 = Device::new(
        Path::new("_SB_.COM1"),
        vec![&com1_hid, &com1_uid, &com1_crs],
    );

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&bytes(&com1));
    for i in 0..disks {
        dsdt.append_slice(&virtio_disk(i));
    }
    dsdt.as_slice().to_vec()
}

/// Disk `i`'s device: `\_SB.V00<i>`, its window and its line.
fn virtio_disk(i: usize) -> Vec<u8> {
    let window = Memory32Fixed::new(true, virtio_mmio_base(i) as u32, VIRTIO_MMIO_SIZE as u32);
    let irq = Interrupt::new(true, true, false, false, DISK_IRQS[i]);
    let crs = ResourceTemplate::new(vec![&window, &irq]);
    let hid = Name::new(Path::new("_HID"), &VIRTIO_MMIO_HID);
    let uid = Name::new(Path::new("_UID"), &(i as u8));
    let crs = Name::new(Path::new("_CRS"), &crs);
    let path = format!("_SB_.V{i:03}");
    bytes(&Device::new(Path::new(&path), vec![&hid, &uid, &crs]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn the_rsdp_leads_through_the_xsdt_to_every_table() {
        let tables = build(1);
        let find = |at: u64| &tables.blobs.iter().find(|(a, _)| *a == at).unwrap().1;
        let rsdp = &tables.blobs[0].1;
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(sums_to_zero(&rsdp[..20]) && sums_to_zero(rsdp));
        let xsdt = find(u64_at(rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(sums_to_zero(xsdt));
        assert_eq!(u32_at(xsdt, 4) as usize, xsdt.len());
        let listed: Vec<&[u8]> = (36..xsdt.len())
            .step_by(8)
            .map(|at| &find(u64_at(xsdt, at))[..4])
            .collect();
        assert_eq!(listed, [b"FACP", b"APIC"]);
        for (_, blob) in &tables.blobs[1..] {
            assert!(sums_to_zero(blob), "{:?}", &blob[..4]);
            assert_eq!(u32_at(blob, 4) as usize, blob.len());
        }
        // The FADT is hardware-reduced and points at the DSDT.
        let fadt = find(u64_at(xsdt, 36));
        assert_ne!(u32_at(fadt, 112) & Flags::HwReducedAcpi as u32, 0);
        assert_eq!(&find(u64_at(fadt, 140))[..4], b"DSDT");
    }

    #[test]
    fn tables_fit_their_room_without_overlapping() {
        let tables = build(1);
        let mut spans: Vec<(u64, u64)> = tables
            .blobs
            .iter()
            .map(|(at, b)| (*at, at + b.len() as u64))
            .collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
        assert!(spans[0].0 >= ACPI_START && spans.last().unwrap().1 <= ACPI_END);
    }

    #[test]
    fn the_dsdt_names_the_serial_port_and_each_virtio_mmio_disk() {
        let without = dsdt(0);
        assert!(!without.windows(4).any(|w| w == b"V000"));
        let dsdt = dsdt(3);
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"COM1") && has(VIRTIO_MMIO_HID.as_bytes()));
        assert!(has(b"V000") && has(b"V002") && !has(b"V003"));
        // Each disk's window: a Memory32Fixed descriptor (0x86) with its base.
        for i in 0..3 {
            let mut window = vec![0x86, 9, 0, 1];
            window.extend_from_slice(&(virtio_mmio_base(i) as u32).to_le_bytes());
            window.extend_from_slice(&(VIRTIO_MMIO_SIZE as u32).to_le_bytes());
            assert!(has(&window), "disk {i}");
        }
    }
}
