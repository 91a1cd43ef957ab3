//! Every guest-physical address the VMM uses, in one place.
//!
//! Low memory (below 1 MiB) holds the boot structures; the kernel loads at
//! 1 MiB (bzImage) or wherever its ELF headers say; the initramfs sits at
//! the top of RAM. RAM ends below [`MMIO_GAP_START`], where the IOAPIC,
//! the local APIC and the virtio-mmio device live.

/// The GDT the vCPU starts with.
pub(crate) const GDT_START: u64 = 0x500;
/// An empty IDT: Linux installs its own before it enables interrupts.
pub(crate) const IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`); RSI points here at entry.
pub(crate) const ZERO_PAGE_START: u64 = 0x7000;
/// The initial stack grows down from here.
pub(crate) const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The identity-mapping page tables: PML4, one PDPT, four page directories.
pub(crate) const PML4_START: u64 = 0x9000;
pub(crate) const PDPT_START: u64 = 0xa000;
pub(crate) const PD_START: u64 = 0xb000;
/// How much the boot page tables map one to one: all of the low 4 GiB, so
/// RAM and the MMIO devices are reachable at entry.
pub(crate) const IDENTITY_MAPPED: u64 = 4 << 30;
/// The kernel command line.
pub(crate) const CMDLINE_START: u64 = 0x2_0000;
/// Room for the command line, NUL included (Linux's COMMAND_LINE_SIZE).
pub(crate) const CMDLINE_MAX_SIZE: usize = 2048;
/// The extended BIOS data area, where the MP table goes; e820 reserves it.
pub(crate) const EBDA_START: u64 = 0x9_fc00;
/// Where conventional memory ends.
pub(crate) const EBDA_END: u64 = 0xa_0000;
/// The ACPI tables, in the BIOS area below 1 MiB where Linux also scans
/// for the RSDP; e820 lists none of it as RAM.
pub(crate) const ACPI_START: u64 = 0xe_0000;
pub(crate) const ACPI_END: u64 = 0x10_0000;
/// The first byte of high memory: a bzImage's protected-mode code loads here.
pub(crate) const HIMEM_START: u64 = 0x10_0000;

/// RAM must end below this; everything above, up to 4 GiB, is devices.
pub(crate) const MMIO_GAP_START: u64 = 0xc000_0000;
/// The first virtio-mmio block device's register window; disk `i`'s is
/// the `i`-th window after it ([`virtio_mmio_base`]).
pub(crate) const VIRTIO_MMIO_START: u64 = 0xd000_0000;
pub(crate) const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The IOAPIC and the local APIC (the in-kernel irqchip serves both).
pub(crate) const IOAPIC_START: u64 = 0xfec0_0000;
pub(crate) const APIC_START: u64 = 0xfee0_0000;
/// Where KVM may put the real-mode TSS and identity map it needs on Intel.
pub(crate) const KVM_TSS_START: u64 = 0xfffb_d000;

/// The COM1 16550 and its ISA interrupt.
pub(crate) const SERIAL_PORT: u16 = 0x3f8;
pub(crate) const SERIAL_PORT_LEN: u16 = 8;
pub(crate) const SERIAL_IRQ: u32 = 4;
/// The i8042 keyboard controller: data and command/status ports.
pub(crate) const I8042_DATA_PORT: u16 = 0x60;
pub(crate) const I8042_COMMAND_PORT: u16 = 0x64;
/// The disks' interrupts, disk `i` on the `i`-th: ISA lines nothing else
/// in this machine uses (not the timer, keyboard, cascade, COM ports, RTC
/// or FPU), each routed to its own IOAPIC pin by the MP table. Their count
/// is the most disks one guest gets.
pub(crate) const DISK_IRQS: [u32; 8] = [5, 6, 7, 9, 10, 11, 12, 14];

/// The most virtio-blk disks one guest gets.
pub const MAX_DISKS: usize = DISK_IRQS.len();

/// Where disk `i`'s register window starts.
pub(crate) const fn virtio_mmio_base(i: usize) -> u64 {
    VIRTIO_MMIO_START + i as u64 * VIRTIO_MMIO_SIZE
}
