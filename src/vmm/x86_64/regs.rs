//! The vCPU state at the kernel's 64-bit entry (Documentation/x86/boot.rst,
//! "64-bit boot protocol"): long mode with paging on, flat segments from
//! [`super::gdt`], RSI at the zero page, interrupts off.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{self, BOOT_GDT, CODE_INDEX, DATA_INDEX, TSS_INDEX};
use super::paging;
use crate::vmm::layout::{BOOT_STACK_POINTER, GDT_START, IDT_START, ZERO_PAGE_START};
use crate::vmm::memory::GuestMem;
use crate::vmm::{VmmError, kvm_err};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// General registers: entry point, stack, and the zero page in RSI.
pub(crate) fn setup_regs(vcpu: &VcpuFd, entry: u64) -> Result<(), VmmError> {
    let regs = kvm_regs {
        rflags: 0x2, // bit 1 is reserved and always set; IF clear
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

/// Control and segment registers for long mode, and the GDT, IDT and page
/// tables they point at.
pub(crate) fn setup_sregs(vcpu: &VcpuFd, mem: &GuestMem) -> Result<(), VmmError> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    let gdt_bytes: Vec<u8> = BOOT_GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&gdt_bytes, GuestAddress(GDT_START))
        .map_err(VmmError::Memory)?;
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(VmmError::Memory)?;
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (gdt_bytes.len() - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;

    let data = gdt::segment(&BOOT_GDT, DATA_INDEX);
    sregs.cs = gdt::segment(&BOOT_GDT, CODE_INDEX);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = gdt::segment(&BOOT_GDT, TSS_INDEX);

    sregs.cr3 = paging::write_identity_tables(mem)?;
    sregs.cr4 |= CR4_PAE;
    // KVM's reset value has caching disabled (CD, NW); firmware turns caches
    // on before any boot loader runs, and the decompressor never does.
    sregs.cr0 = (sregs.cr0 & !(CR0_CD | CR0_NW)) | CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))
}

/// The FPU as after FNINIT, with SSE exceptions masked.
pub(crate) fn setup_fpu(vcpu: &VcpuFd) -> Result<(), VmmError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))
}

/// Local APIC LVT entries as a BIOS leaves them: LINT0 takes the PIC's
/// ExtINT, LINT1 NMIs.
pub(crate) fn setup_lapic(vcpu: &VcpuFd) -> Result<(), VmmError> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    const MODE_EXTINT: u32 = 0x7;
    const MODE_NMI: u32 = 0x4;
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(LVT_LINT0, MODE_EXTINT), (LVT_LINT1, MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            lapic.regs[reg + i] = b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use kvm_ioctls::Kvm;

    use super::*;
    use crate::vmm::memory;

    #[test]
    fn the_vcpu_starts_in_long_mode_with_paging_and_caches_on() {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: /dev/kvm is not usable ({e})");
                return;
            }
            Err(e) => panic!("/dev/kvm is required under CI: {e}"),
        };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let mem = memory::create(16).unwrap();
        setup_sregs(&vcpu, &mem).unwrap();
        let sregs = vcpu.get_sregs().unwrap();
        let cr0 = CR0_PE | CR0_PG | CR0_CD | CR0_NW;
        assert_eq!(sregs.cr0 & cr0, CR0_PE | CR0_PG);
        assert_ne!(sregs.cr4 & CR4_PAE, 0);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(
            (sregs.cs.l, sregs.cs.selector, sregs.ds.selector),
            (1, 8, 16)
        );
        assert_eq!(sregs.gdt.base, GDT_START);
    }
}
