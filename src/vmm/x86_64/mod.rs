//! The x86_64 machine a kernel boots into: descriptor tables, page tables,
//! registers, CPUID, MSRs, the MP table and ACPI tables.

pub(crate) mod acpi;
pub(crate) mod cpuid;
pub(crate) mod gdt;
pub(crate) mod mptable;
pub(crate) mod msr;
pub(crate) mod paging;
pub(crate) mod regs;

use kvm_ioctls::{Kvm, VcpuFd};

use super::VmmError;
use super::memory::GuestMem;

/// Puts vCPU 0 at the 64-bit entry point `entry`, as a boot loader would.
pub(crate) fn setup_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    mem: &GuestMem,
    entry: u64,
) -> Result<(), VmmError> {
    cpuid::setup_cpuid(kvm, vcpu, 0)?;
    msr::setup_msrs(vcpu)?;
    regs::setup_regs(vcpu, entry)?;
    regs::setup_sregs(vcpu, mem)?;
    regs::setup_fpu(vcpu)?;
    regs::setup_lapic(vcpu)
}
