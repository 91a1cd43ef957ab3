//! A small VMM on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader,
//! virtio-queue, vm-superio) that boots the template-building guest.
//!
//! One [`run`](crate::vmm::run) is one VM: map guest RAM
//! ([`memory`](crate::vmm::memory)), create the in-kernel irqchip and PIT,
//! load the kernel, initramfs and command line with a zero page
//! ([`boot`](crate::vmm::boot)), write the MP table and the 64-bit entry
//! state ([`x86_64`](crate::vmm::x86_64)), wire the devices
//! ([`devices`](crate::vmm::devices)) to the [`bus`](crate::vmm::bus), then
//! run the one vCPU on its own thread ([`vcpu`](crate::vmm::vcpu)) until the
//! guest resets, shuts down (a triple fault included) or the deadline
//! passes. Everything (VM, vCPU, eventfds, the disk, guest RAM) is owned by
//! that call and released when it returns, however the run ended.
//!
//! This layer runs whatever guest it is given: it does not ask whether the
//! host's KVM can boot a stock kernel ([`crate::runner::kvm`] does).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};

use crate::runner::{RunEnd, RunOutcome};

pub mod boot;
pub mod bus;
pub mod devices;
pub mod layout;
pub mod memory;
pub mod vcpu;
pub mod x86_64;

use devices::IrqLine;
use devices::serial::{Console, SerialDevice};
use layout::{KVM_TSS_START, SERIAL_IRQ};

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
    #[error("guest memory of {mib} MiB is not supported: use 16 to {max_mib} MiB")]
    MemorySize { mib: u32, max_mib: u32 },
    #[error("cannot map guest memory: {0}")]
    MemoryMap(#[from] vm_memory::mmap::FromRangesError),
    #[error("guest memory access failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("cannot read kernel `{}`: {source}", path.display())]
    KernelFile { path: PathBuf, source: io::Error },
    #[error("`{}` is neither a bzImage nor an ELF vmlinux", .0.display())]
    NotAKernel(PathBuf),
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
    pub cmdline: &'a str,
    pub memory_mib: u32,
    pub timeout: Duration,
}

/// Boots `config` in a fresh VM and waits for the run to end.
pub fn run(config: &VmConfig<'_>) -> Result<RunOutcome, VmmError> {
    let start = Instant::now();
    let deadline = start + config.timeout;
    let kvm = Kvm::new().map_err(VmmError::KvmOpen)?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    let mem = memory::create(config.memory_mib)?;
    memory::register(&vm, &mem)?;
    create_irqchip(&vm)?;

    let loaded = boot::load(&mem, config.kernel, config.initramfs, config.cmdline)?;
    x86_64::mptable::write_mptable(&mem, 1)?;
    let serial_irq = IrqLine::new(Some(&vm), SERIAL_IRQ).map_err(VmmError::Device)?;
    let bus = bus::Bus::new(SerialDevice::new(serial_irq, Console::new(start)));

    let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    x86_64::cpuid::setup_cpuid(&kvm, &vcpu, 0)?;
    x86_64::msr::setup_msrs(&vcpu)?;
    x86_64::regs::setup_regs(&vcpu, loaded.entry)?;
    x86_64::regs::setup_sregs(&vcpu, &mem)?;
    x86_64::regs::setup_fpu(&vcpu)?;
    x86_64::regs::setup_lapic(&vcpu)?;

    let (end, bus) = vcpu::run_until(vcpu, bus, deadline)?;
    let total = start.elapsed();
    let console = bus.into_console();
    Ok(outcome(end, console, total))
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

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}
