//! A small VMM on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader,
//! virtio-queue, vm-superio) that boots the template-building guest.
//!
//! One [`run`] is one VM: map guest RAM ([`memory`]), create the in-kernel
//! irqchip and PIT, load the kernel, initramfs and command line with a zero
//! page ([`boot`]), write the MP table and the 64-bit entry state
//! ([`x86_64`]), wire the devices ([`devices`]) to the [`bus`], then run the
//! one vCPU on the caller's thread ([`vcpu`]) until the guest resets, shuts
//! down (a triple fault included) or the [`deadline`] passes. Everything
//! (VM, vCPU, eventfds, timer, the disk, guest RAM) is owned by that call
//! and released when it returns, however the run ended.
//!
//! This layer runs whatever guest it is given: it does not ask whether the
//! host's KVM can boot a stock kernel ([`crate::runner::kvm`] does).

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};

use crate::outcome::Console;
use crate::outcome::{RunEnd, RunOutcome};

pub(crate) mod boot;
pub(crate) mod bus;
pub(crate) mod deadline;
pub(crate) mod devices;
pub(crate) mod layout;
pub(crate) mod memory;
pub(crate) mod vcpu;
pub(crate) mod x86_64;

use devices::IrqLine;
use devices::serial::SerialDevice;
use devices::virtio::block::Block;
use devices::virtio::mmio::MmioTransport;
use layout::{DISK_IRQS, KVM_TSS_START, MAX_DISKS, SERIAL_IRQ, VIRTIO_MMIO_SIZE, virtio_mmio_base};
use memory::GuestMem;

/// What went wrong setting up or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("cannot open /dev/kvm: {0}")]
    KvmOpen(kvm_ioctls::Error),
    #[error("{what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("a timeout of {0:?} is too long: use at most a day")]
    Timeout(Duration),
    #[error("guest memory of {mib} MiB is not supported: use 16 to {max_mib} MiB")]
    MemorySize { mib: u32, max_mib: u32 },
    #[error("cannot map guest memory: {0}")]
    MemoryMap(#[from] vm_memory::mmap::FromRangesError),
    #[error("guest memory access failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("cannot read kernel `{}`: {source}", path.display())]
    KernelFile { path: PathBuf, source: io::Error },
    #[error(
        "`{}` is neither a bzImage nor an ELF vmlinux: pass the bzImage `cargo ktstr kernel build` printed",
        .0.display()
    )]
    NotAKernel(PathBuf),
    #[error(
        "`{}` is a bzImage without a 64-bit entry point (a 32-bit kernel?): pass the bzImage `cargo ktstr kernel build` printed",
        .0.display()
    )]
    Not64Bit(PathBuf),
    #[error("cannot load the kernel: {0}")]
    KernelLoad(linux_loader::loader::Error),
    #[error("bad kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error(
        "the initramfs ({size} bytes) does not fit above the kernel in {ram} bytes of RAM: give the guest more memory"
    )]
    InitramfsTooBig { size: u64, ram: u64 },
    #[error("cannot write the zero page: {0}")]
    ZeroPage(linux_loader::configurator::Error),
    #[error("KVM refused to set MSR {0:#x}")]
    MsrRefused(u32),
    #[error("cannot open disk `{}`: {source}", path.display())]
    DiskFile { path: PathBuf, source: io::Error },
    #[error("{0} disks asked for, but a guest gets at most {MAX_DISKS}: boot several guests")]
    TooManyDisks(usize),
    #[error("cannot set up a device: {0}")]
    Device(io::Error),
    #[error(transparent)]
    Vcpu(#[from] vcpu::VcpuError),
}

/// One guest to run.
#[derive(Debug, Clone)]
pub struct VmConfig<'a> {
    /// A bzImage or an ELF vmlinux (the synthetic test guests are ELF).
    pub kernel: &'a Path,
    /// Loaded at the top of RAM and announced in the zero page; may be empty.
    pub initramfs: &'a [u8],
    /// Without `virtio_mmio.device=`: the VMM announces its disks itself.
    pub cmdline: &'a str,
    /// The files behind the virtio-blk disks (none, or up to
    /// [`MAX_DISKS`]); disk `i` has the serial `disk<i>` ([`disk_serial`]).
    pub disks: &'a [PathBuf],
    /// Guest RAM.
    pub memory_mib: u32,
    /// The guest is stopped when it passes.
    pub timeout: Duration,
}

/// Boots `config` in a fresh VM and waits for the run to end.
pub fn run(config: &VmConfig<'_>) -> Result<RunOutcome, VmmError> {
    run_vm(config, false).map(|(outcome, _)| outcome)
}

/// What a run cost in memory, measured as its guest ended (before
/// teardown), all in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryUse {
    /// The process's resident set before the run began.
    pub rss_before: u64,
    /// The process's resident set at the end of the run.
    pub rss_at_end: u64,
    /// How much of that was guest RAM (pages the guest or the VMM touched).
    pub guest_resident: u64,
}

impl MemoryUse {
    /// Everything resident in the process but guest RAM: code, libraries,
    /// heap, stacks, the VMM's state. An upper bound on the VMM's own.
    pub fn beyond_guest(&self) -> u64 {
        self.rss_at_end.saturating_sub(self.guest_resident)
    }

    /// What the run added beyond the guest's pages.
    pub fn added_by_run(&self) -> u64 {
        let grew = self.rss_at_end.saturating_sub(self.rss_before);
        grew.saturating_sub(self.guest_resident)
    }
}

/// Like [`run`], and also measures [`MemoryUse`] (for the benchmark; the
/// resident sizes come from smaps_rollup, which counts page by page).
pub fn run_measured(config: &VmConfig<'_>) -> Result<(RunOutcome, MemoryUse), VmmError> {
    run_vm(config, true)
}

fn run_vm(config: &VmConfig<'_>, measure: bool) -> Result<(RunOutcome, MemoryUse), VmmError> {
    let mut usage = MemoryUse {
        rss_before: measure.then(memory::process_rss).unwrap_or(0),
        ..Default::default()
    };
    let start = Instant::now();
    let deadline = start
        .checked_add(config.timeout)
        .ok_or(VmmError::Timeout(config.timeout))?;
    if config.disks.len() > MAX_DISKS {
        return Err(VmmError::TooManyDisks(config.disks.len()));
    }
    let kvm = Kvm::new().map_err(VmmError::KvmOpen)?;
    let vm = memory::Vm::new(&kvm, memory::create(config.memory_mib)?)?;
    let (vm, mem) = (vm.fd(), vm.mem());
    create_irqchip(vm)?;

    let disks = (config.disks.iter().enumerate())
        .map(|(i, disk)| block_device(vm, mem, i, disk))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cmdline = config.cmdline.to_owned();
    for i in 0..disks.len() {
        cmdline = format!("{cmdline} {}", virtio_mmio_arg(i));
    }
    let loaded = boot::load(mem, config.kernel, config.initramfs, cmdline.trim_start())?;
    x86_64::mptable::write_mptable(mem, 1)?;
    let rsdp = x86_64::acpi::write_acpi_tables(mem, disks.len())?;
    boot::set_rsdp(mem, rsdp)?;
    let serial_irq = IrqLine::new(Some(vm), SERIAL_IRQ).map_err(VmmError::Device)?;
    let mut bus = bus::Bus::new(SerialDevice::new(serial_irq, Console::new(start)), disks);

    let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    x86_64::setup_vcpu(&kvm, &vcpu, mem, loaded.entry)?;

    let end = vcpu::run_until(&mut vcpu, &mut bus, deadline)?;
    let total = start.elapsed();
    if measure {
        usage.rss_at_end = memory::process_rss();
        usage.guest_resident = memory::resident_bytes(mem);
    }
    Ok((outcome(end, bus.into_console(), total), usage))
}

/// The serial of disk `i`, which the guest reads to tell its disks apart.
pub fn disk_serial(i: usize) -> String {
    format!("disk{i}")
}

/// Disk `i`, the virtio-blk device on `disk`, its interrupt wired.
fn block_device(
    vm: &VmFd,
    mem: &GuestMem,
    i: usize,
    disk: &Path,
) -> Result<MmioTransport<Block>, VmmError> {
    let disk_err = |source| VmmError::DiskFile {
        path: disk.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(disk_err)?;
    let block = Block::with_id(file, disk_serial(i).as_bytes()).map_err(disk_err)?;
    let irq = IrqLine::new(Some(vm), DISK_IRQS[i]).map_err(VmmError::Device)?;
    Ok(MmioTransport::new(block, mem.clone(), irq))
}

/// How Linux learns of disk `i`: `virtio_mmio.device=<size>@<base>:<irq>`.
pub(crate) fn virtio_mmio_arg(i: usize) -> String {
    format!(
        "virtio_mmio.device={}K@{:#x}:{}",
        VIRTIO_MMIO_SIZE >> 10,
        virtio_mmio_base(i),
        DISK_IRQS[i]
    )
}

fn outcome(end: RunEnd, console: Console, total: Duration) -> RunOutcome {
    let first_output = console.first_output();
    RunOutcome {
        end,
        console: console.into_bytes(),
        first_output,
        total,
    }
}

/// The in-kernel PIC + IOAPIC + local APIC, and the PIT Linux calibrates
/// against.
fn create_irqchip(vm: &VmFd) -> Result<(), VmmError> {
    vm.set_tss_address(KVM_TSS_START as usize)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))
}

/// Names the failed ioctl: `.map_err(kvm_err("KVM_CREATE_VM"))`.
pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_past_the_end_of_time_is_an_error_not_a_panic() {
        let config = VmConfig {
            kernel: Path::new("/nonexistent"),
            initramfs: &[],
            cmdline: "",
            disks: &[],
            memory_mib: 64,
            timeout: Duration::MAX,
        };
        assert!(matches!(run(&config), Err(VmmError::Timeout(_))));
    }

    #[test]
    fn each_disk_is_announced_where_its_device_lives() {
        assert_eq!(virtio_mmio_arg(0), "virtio_mmio.device=4K@0xd0000000:5");
        assert_eq!(virtio_mmio_arg(2), "virtio_mmio.device=4K@0xd0002000:7");
    }

    #[test]
    fn more_disks_than_interrupt_lines_is_an_error_before_any_vm() {
        let disks = vec![PathBuf::from("/nonexistent"); MAX_DISKS + 1];
        let config = VmConfig {
            kernel: Path::new("/nonexistent"),
            initramfs: &[],
            cmdline: "",
            disks: &disks,
            memory_mib: 64,
            timeout: Duration::from_secs(1),
        };
        let err = run(&config).unwrap_err().to_string();
        assert!(err.contains("at most 8"), "{err}");
    }
}
