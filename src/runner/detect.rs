//! Pick a runner for `--vmm auto`: the built-in VMM where KVM can boot a
//! stock kernel, else QEMU.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::{Result, bail};

use super::GuestRunner;
use super::kvm::KvmRunner;
use super::qemu::{Accel, QemuRunner};
use crate::cli::VmmChoice;

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

/// The runner for `--vmm`: `auto` takes the built-in VMM where KVM can boot
/// a stock kernel, else QEMU (with KVM acceleration only where KVM can boot
/// one, TCG otherwise), else fails saying why neither can run.
pub fn select_runner(choice: VmmChoice) -> Result<Box<dyn GuestRunner>> {
    let kvm = kvm_boot_support();
    let accel = if kvm.is_ok() { Accel::Kvm } else { Accel::Tcg };
    match choice {
        VmmChoice::Kvm => match kvm {
            Ok(()) => Ok(Box::new(KvmRunner)),
            Err(why) => bail!(
                "--vmm kvm cannot boot the template guest here: {why}; use --vmm qemu, \
                 or --vmm auto to pick what works"
            ),
        },
        VmmChoice::Qemu => Ok(Box::new(QemuRunner::find(accel)?)),
        VmmChoice::Auto => {
            if kvm.is_ok() {
                return Ok(Box::new(KvmRunner));
            }
            match QemuRunner::find(accel) {
                Ok(qemu) => {
                    tracing::info!(
                        "--vmm auto: using QEMU with TCG, since {}",
                        kvm.as_ref().err().map_or("", String::as_str)
                    );
                    Ok(Box::new(qemu))
                }
                Err(no_qemu) => bail!(
                    "no VMM can boot the template guest: the built-in VMM cannot ({}), and \
                     {no_qemu:#}",
                    kvm.err().unwrap_or_default()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_follow_the_host() {
        let kvm_ok = kvm_boot_support().is_ok();
        let qemu_ok = QemuRunner::find(Accel::Tcg).is_ok();
        match select_runner(VmmChoice::Kvm) {
            Ok(r) => assert!(kvm_ok && r.name() == "kvm"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    !kvm_ok && e.contains("--vmm qemu") && e.contains("--vmm auto"),
                    "{e}"
                );
            }
        }
        match select_runner(VmmChoice::Auto) {
            Ok(r) => assert_eq!(r.name(), if kvm_ok { "kvm" } else { "qemu" }),
            Err(e) => assert!(!kvm_ok && !qemu_ok && e.to_string().contains("qemu-system-x86")),
        }
        if std::env::var_os("CI").is_some() {
            assert!(qemu_ok, "CI installs qemu-system-x86");
        }
    }
}
