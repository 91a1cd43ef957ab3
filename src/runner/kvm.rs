//! The built-in VMM as a [`super::GuestRunner`].

use anyhow::{Context, anyhow};

use super::detect::kvm_boot_support;
use super::{GuestRunner, GuestSpec, RunOutcome};
use crate::vmm::{self, VmConfig};

/// Boots guests with the built-in VMM ([`crate::vmm`]).
#[derive(Debug, Default)]
pub struct KvmRunner;

/// The one refusal of `--vmm kvm` on a host whose KVM cannot boot a
/// kernel, `why` being [`kvm_boot_support`]'s reason.
pub(crate) fn cannot_boot(why: &str) -> anyhow::Error {
    anyhow!(
        "the built-in VMM (--vmm kvm) cannot boot a kernel on this host: {why}\n\
         Note: use `--vmm qemu`, or `--vmm auto` to pick a runner that works here"
    )
}

impl GuestRunner for KvmRunner {
    fn name(&self) -> &'static str {
        "kvm"
    }

    /// Through the keyboard controller: the VMM has an i8042.
    fn reboot_arg(&self) -> &'static str {
        "reboot=k"
    }

    fn run(&self, spec: &GuestSpec) -> anyhow::Result<RunOutcome> {
        // Fail before any boot: a kernel that cannot start would only sit
        // out the whole timeout.
        if let Err(why) = kvm_boot_support() {
            return Err(cannot_boot(&why));
        }
        // The VMM announces the disk on the command line and in its ACPI
        // tables alike, so `spec.devices` asks nothing more of it; it boots
        // the bzImage, not `spec.vmlinux`.
        let config = VmConfig {
            kernel: &spec.kernel,
            initramfs: &spec.initramfs,
            cmdline: &spec.cmdline,
            disk: Some(&spec.disk),
            memory_mib: spec.memory_mib,
            timeout: spec.timeout,
        };
        vmm::run(&config)
            .with_context(|| format!("booting `{}` in the built-in VMM", spec.kernel.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_host_that_cannot_boot_a_kernel_fails_at_once_naming_the_alternatives() {
        let Err(why) = kvm_boot_support() else {
            eprintln!("skipped: this host's KVM can boot a kernel, so there is nothing to refuse");
            return;
        };
        let spec = GuestSpec {
            kernel: "/nonexistent/bzImage".into(),
            initramfs: Vec::new(),
            cmdline: String::new(),
            disk: "/nonexistent/disk.img".into(),
            memory_mib: 256,
            timeout: Duration::from_secs(120),
            devices: crate::runner::DeviceDiscovery::CommandLine,
            vmlinux: None,
        };
        let start = Instant::now();
        let err = format!("{:#}", KvmRunner.run(&spec).unwrap_err());
        assert!(start.elapsed() < Duration::from_secs(1));
        for needle in [why.as_str(), "--vmm qemu", "--vmm auto"] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }
}
