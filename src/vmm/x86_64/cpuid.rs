//! CPUID for the guest: what KVM supports on this host, with the topology
//! and identity fields a one-vCPU guest must see, and, as Firecracker does,
//! the leaves a template guest has no use for turned off: thermal and power
//! management (leaf 6) and the performance monitoring the guest would
//! otherwise probe MSR by MSR (Intel's leaf 0xa, AMD's PerfMonV2 leaf
//! 0x80000022 and its core, northbridge and last-level-cache counter bits).
//! Vendor, family and model stay the host's, so they match its features.

use std::sync::OnceLock;

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_cpuid_entry2};
use kvm_ioctls::{Kvm, VcpuFd};

use crate::vmm::{VmmError, kvm_err};

/// Leaf 1, ECX: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 0x80000001, ECX: AMD's core, northbridge and last-level-cache
/// performance counter extensions.
const EXT1_ECX_PERFCTRS: u32 = (1 << 23) | (1 << 24) | (1 << 28);

/// Sets KVM_GET_SUPPORTED_CPUID, normalized for vCPU `id`, on `vcpu`.
pub(crate) fn setup_cpuid(kvm: &Kvm, vcpu: &VcpuFd, id: u8) -> Result<(), VmmError> {
    let mut cpuid = supported(kvm)?;
    normalize(cpuid.as_mut_slice(), id);
    set(vcpu, &cpuid)
}

/// The host's answer never changes, and asking costs a third of a
/// millisecond per run, so it is asked once per process.
fn supported(kvm: &Kvm) -> Result<CpuId, VmmError> {
    static SUPPORTED: OnceLock<CpuId> = OnceLock::new();
    if let Some(cpuid) = SUPPORTED.get() {
        return Ok(cpuid.clone());
    }
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    Ok(SUPPORTED.get_or_init(|| cpuid).clone())
}

fn set(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<(), VmmError> {
    vcpu.set_cpuid2(cpuid).map_err(kvm_err("KVM_SET_CPUID2"))
}

/// Rewrites the per-CPU fields: APIC ids, one logical CPU per package, and
/// the hypervisor bit.
pub(crate) fn normalize(entries: &mut [kvm_cpuid_entry2], id: u8) {
    for e in entries {
        match e.function {
            1 => {
                // EBX: APIC id in 31:24, one logical processor in 23:16,
                // CLFLUSH line size (8 quadwords) in 15:8.
                e.ebx = (u32::from(id) << 24) | (1 << 16) | (8 << 8);
                e.ecx |= LEAF1_ECX_HYPERVISOR;
            }
            4 => {
                // EAX 31:26: cores per package - 1; 25:14: sharing threads - 1.
                e.eax &= 0x3fff;
            }
            0xb | 0x1f => {
                // One thread per core, one core per package.
                e.ebx = if e.index <= 1 { 1 } else { 0 };
                e.edx = u32::from(id);
            }
            // Thermal and power management; the architectural PMU.
            6 | 0xa | 0x8000_0022 => {
                (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0);
            }
            0x8000_0001 => e.ecx &= !EXT1_ECX_PERFCTRS,
            0x8000_0008 => {
                // ECX 15:12: APIC id size; 7:0: cores per package - 1.
                e.ecx &= !0xf0ff;
            }
            0x8000_001e => {
                // Extended APIC id; one core of one thread; node 0.
                e.eax = u32::from(id);
                e.ebx = 0;
                e.ecx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: !0,
            ebx: !0,
            ecx: 0,
            edx: !0,
            ..Default::default()
        }
    }

    #[test]
    fn per_cpu_fields_describe_one_cpu_with_its_apic_id() {
        let mut entries = [
            leaf(1, 0),
            leaf(4, 0),
            leaf(0xb, 0),
            leaf(0xb, 2),
            leaf(7, 0),
        ];
        normalize(&mut entries, 3);
        assert_eq!(entries[0].ebx >> 24, 3);
        assert_eq!((entries[0].ebx >> 16) & 0xff, 1);
        assert_ne!(entries[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(entries[1].eax >> 14, 0);
        assert_eq!((entries[2].ebx, entries[2].edx), (1, 3));
        assert_eq!(entries[3].ebx, 0);
        assert_eq!(entries[4].ebx, !0, "other leaves are left alone");
    }

    #[test]
    fn power_management_and_performance_counters_are_turned_off() {
        let mut entries = [
            leaf(6, 0),
            leaf(0xa, 0),
            leaf(0x8000_0022, 0),
            kvm_cpuid_entry2 {
                ecx: !0,
                ..leaf(0x8000_0001, 0)
            },
            kvm_cpuid_entry2 {
                ecx: !0,
                ..leaf(0x8000_0008, 0)
            },
            leaf(0x8000_001e, 0),
        ];
        normalize(&mut entries, 2);
        for e in &entries[..3] {
            assert_eq!(
                (e.eax, e.ebx, e.ecx, e.edx),
                (0, 0, 0, 0),
                "{:#x}",
                e.function
            );
        }
        assert_eq!(entries[3].ecx & EXT1_ECX_PERFCTRS, 0);
        assert_eq!(entries[3].ecx | EXT1_ECX_PERFCTRS, !0, "other bits stay");
        assert_eq!(entries[4].ecx & 0xf0ff, 0);
        assert_eq!((entries[5].eax, entries[5].ebx, entries[5].ecx), (2, 0, 0));
    }
}
