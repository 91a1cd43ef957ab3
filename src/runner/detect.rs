//! Pick a runner for `--vmm auto`: the built-in VMM where KVM can boot a
//! stock kernel, else QEMU.

use std::fs::OpenOptions;
use std::path::Path;

/// Why the host's KVM cannot boot an unmodified Linux kernel, or `Ok` when
/// it can.
pub fn kvm_boot_support() -> Result<(), String> {
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("/dev/kvm is not usable ({e})"));
    }
    // PVM, a paravirtualized KVM, runs code a VMM sets up but cannot boot an
    // unmodified kernel: the kernel must be built for PVM.
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err(
            "/dev/kvm is PVM (paravirtualized KVM, /sys/module/kvm_pvm exists), \
                    which cannot boot an unmodified Linux kernel"
                .to_owned(),
        );
    }
    Ok(())
}
