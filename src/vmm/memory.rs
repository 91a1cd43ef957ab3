//! Guest RAM: one anonymous mapping from guest-physical 0, handed to KVM as
//! memory slot 0.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::layout::MMIO_GAP_START;
use super::{VmmError, kvm_err};

/// Guest memory as the VMM and its devices see it.
pub(crate) type GuestMem = GuestMemoryMmap;

/// Maps `mib` MiB of guest RAM. Pages are touched only when used, so a big
/// guest costs only what it writes.
pub(crate) fn create(mib: u32) -> Result<GuestMem, VmmError> {
    let bytes = u64::from(mib) << 20;
    // One flat region keeps the e820 map simple; devices live above it.
    if mib < 16 || bytes > MMIO_GAP_START {
        return Err(VmmError::MemorySize {
            mib,
            max_mib: (MMIO_GAP_START >> 20) as u32,
        });
    }
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), bytes as usize)]).map_err(VmmError::MemoryMap)
}

/// A VM and the guest RAM registered with it, kept together so that the
/// mapping outlives every use KVM makes of it: the fields drop in order,
/// the VM (and with it KVM's view of the memory) before the mapping.
#[derive(Debug)]
pub(crate) struct Vm {
    vm: VmFd,
    mem: GuestMem,
}

impl Vm {
    /// Creates a VM on `kvm` whose memory is `mem`.
    pub(crate) fn new(kvm: &Kvm, mem: GuestMem) -> Result<Self, VmmError> {
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        register(&vm, &mem)?;
        Ok(Vm { vm, mem })
    }

    pub(crate) fn fd(&self) -> &VmFd {
        &self.vm
    }

    pub(crate) fn mem(&self) -> &GuestMem {
        &self.mem
    }
}

/// Registers every region of `mem` with `vm`, which [`Vm`] then owns with it.
fn register(vm: &VmFd, mem: &GuestMem) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(VmmError::Memory)?;
        let desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping of `memory_size` bytes owned by
        // `mem`; the only caller, [`Vm::new`], moves `mem` into the `Vm`
        // beside `vm`, and `Vm` drops `vm` first. KVM only reads and writes
        // through it.
        unsafe { vm.set_user_memory_region(desc) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// The end of RAM (exclusive).
pub(crate) fn ram_end(mem: &GuestMem) -> u64 {
    mem.last_addr().0 + 1
}

/// How much of guest RAM is resident, i.e. touched by the guest or the
/// VMM (mincore(2) over every region).
pub(crate) fn resident_bytes(mem: &GuestMem) -> u64 {
    let page = 4096u64;
    let mut resident = 0;
    for region in mem.iter() {
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let mut pages = vec![0u8; region.len().div_ceil(page) as usize];
        // SAFETY: `host` maps `region.len()` bytes for as long as `mem`
        // lives, and `pages` holds one byte per page of that range.
        let rc = unsafe { libc::mincore(host.cast(), region.len() as usize, pages.as_mut_ptr()) };
        if rc == 0 {
            resident += pages.iter().filter(|p| *p & 1 == 1).count() as u64 * page;
        }
    }
    resident
}

/// This process's resident set in bytes, from /proc/self/smaps_rollup
/// (exact, unlike the batched counters in /proc/self/status); 0 if unknown.
pub(crate) fn process_rss() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let rss = rollup.lines().find_map(|l| l.strip_prefix("Rss:"));
    let kib = rss.and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    kib.unwrap_or(0) << 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_the_flat_region_are_refused() {
        assert!(matches!(create(8), Err(VmmError::MemorySize { .. })));
        assert!(matches!(create(4096), Err(VmmError::MemorySize { .. })));
        let mem = create(64).unwrap();
        assert_eq!(ram_end(&mem), 64 << 20);
    }

    #[test]
    fn only_touched_pages_count_as_resident() {
        use vm_memory::Bytes;
        let mem = create(64).unwrap();
        assert_eq!(resident_bytes(&mem), 0);
        mem.write_obj(1u8, GuestAddress(0x10_0000)).unwrap();
        mem.write_obj(1u8, GuestAddress(0x20_0fff)).unwrap();
        assert_eq!(resident_bytes(&mem), 2 * 4096);
    }
}
