//! The built-in VMM as a [`super::GuestRunner`].

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::{GuestRunner, GuestSpec, RunOutcome, memfd};
use crate::kernel::store::{IMAGE_FILE, VMLINUX_FILE};
use crate::kernel::unpack::vmlinux;
use crate::vmm::{self, VmConfig, VmmError};

/// Boots guests with the built-in VMM ([`crate::vmm`]).
#[derive(Debug, Default)]
pub struct KvmRunner;

/// Why the host's KVM cannot boot an unmodified Linux kernel, or `Ok` when
/// it can.
pub fn kvm_boot_support() -> Result<(), String> {
    if let Err(e) = crate::host::open_kvm() {
        // Most often: a user the distribution did not put in the group that
        // owns /dev/kvm.
        let fix = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "; to use KVM, join the `kvm` group with `sudo usermod -aG kvm $USER` and log in \
                 again"
            }
            _ => "",
        };
        return Err(format!("/dev/kvm is not usable ({e}){fix}"));
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
        // tables alike, so `spec.devices` asks nothing more of it. It enters
        // an unpacked kernel where it has one: a stock kernel's from
        // `unpack_stock`, else a cached kernel's vmlinux.
        let unpacked = spec
            .vmlinux
            .as_deref()
            .map(|v| memfd("ktstr-vmlinux", v))
            .transpose()?;
        let kernel = match &unpacked {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => entry_image(&spec.kernel),
        };
        let config = VmConfig {
            kernel: &kernel,
            initramfs: &spec.initramfs,
            cmdline: &spec.cmdline,
            disks: &spec.disks,
            memory_mib: spec.memory_mib,
            timeout: spec.timeout,
        };
        // The advice is the runner's: the VMM knows nothing of the flags.
        vmm::run(&config).map_err(|e| {
            let advice = match e {
                VmmError::KvmOpen(_) | VmmError::Kvm { .. } => {
                    "\nNote: `--vmm qemu` avoids the built-in VMM"
                }
                _ => "",
            };
            anyhow!("{e}{advice}").context(format!(
                "booting `{}` in the built-in VMM",
                spec.kernel.display()
            ))
        })
    }

    /// Every stock kernel it can unpack: the VMM enters the ELF at its
    /// 64-bit entry, with no need for a PVH one.
    fn unpack_stock(&self, image: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        vmlinux(image)
    }
}

/// What the VMM enters for `kernel`: the uncompressed ELF `vmlinux` that
/// `kernel build` keeps beside a cached `bzImage`, where there is one, so
/// the guest skips its decompressor; else `kernel` itself.
fn entry_image(kernel: &Path) -> PathBuf {
    if kernel.file_name().is_some_and(|n| n == IMAGE_FILE) {
        let vmlinux = kernel.with_file_name(VMLINUX_FILE);
        if vmlinux.is_file() {
            return vmlinux;
        }
    }
    kernel.to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_cached_kernels_vmlinux_is_entered_instead_of_its_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let bzimage = dir.path().join(IMAGE_FILE);
        std::fs::write(&bzimage, b"bz").unwrap();
        assert_eq!(entry_image(&bzimage), bzimage);
        let vmlinux = dir.path().join(VMLINUX_FILE);
        std::fs::write(&vmlinux, b"elf").unwrap();
        assert_eq!(entry_image(&bzimage), vmlinux);
        // Only a cached kernel's own name: a user's image is booted as given.
        let other = dir.path().join("vmlinuz-6.12");
        assert_eq!(entry_image(&other), other);
    }

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
            disks: vec!["/nonexistent/disk.img".into()],
            memory_mib: crate::runner::DEFAULT_MEMORY_MIB,
            timeout: crate::runner::DEFAULT_TIMEOUT,
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
