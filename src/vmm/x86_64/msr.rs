//! The MSRs Linux expects a boot loader to have set: syscall entry points
//! cleared, fast strings on, and MTRRs defaulting to write-back.

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;

use crate::vmm::{VmmError, kvm_err};

const IA32_TSC: u32 = 0x10;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_SYSENTER_CS: u32 = 0x174;
const IA32_SYSENTER_ESP: u32 = 0x175;
const IA32_SYSENTER_EIP: u32 = 0x176;
const MTRR_DEF_TYPE: u32 = 0x2ff;
const STAR: u32 = 0xc000_0081;
const LSTAR: u32 = 0xc000_0082;
const CSTAR: u32 = 0xc000_0083;
const SYSCALL_MASK: u32 = 0xc000_0084;
const KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled (bit 11), default type write-back (6).
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// The boot MSRs as (index, value).
pub(crate) fn boot_msrs() -> [(u32, u64); 11] {
    [
        (IA32_SYSENTER_CS, 0),
        (IA32_SYSENTER_ESP, 0),
        (IA32_SYSENTER_EIP, 0),
        (STAR, 0),
        (CSTAR, 0),
        (KERNEL_GS_BASE, 0),
        (SYSCALL_MASK, 0),
        (LSTAR, 0),
        (IA32_TSC, 0),
        (IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

/// Writes [`boot_msrs`]; KVM stops at the first one it refuses, which is
/// named in the error.
pub(crate) fn setup_msrs(vcpu: &VcpuFd) -> Result<(), VmmError> {
    let wanted = boot_msrs();
    let entries: Vec<kvm_msr_entry> = wanted
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    // Eleven entries always fit (the limit is KVM_MAX_MSR_ENTRIES, 256).
    let msrs = Msrs::from_entries(&entries).expect("the boot MSRs fit in one kvm_msrs");
    let set = vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
    match wanted.get(set) {
        Some(&(index, _)) => Err(VmmError::MsrRefused(index)),
        None => Ok(()),
    }
}
