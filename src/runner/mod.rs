//! Boot a guest once and say how it ended.
//!
//! A runner boots kernel + initramfs + command line with its virtio-blk disks,
//! captures the serial console, and stops at the guest's reset or shutdown or
//! at a deadline. Two implementations: [`crate::runner::qemu`] and [`crate::runner::kvm`] (the built-in
//! VMM); [`select_runner`] picks one for a [`VmmChoice`].

use std::fmt;

use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::outcome::{RunEnd, RunOutcome};
pub use crate::vmm::disk_serial;
pub use crate::vmm::layout::MAX_DISKS;

pub use detect::select_runner;

// The implementations: not API, reached through [`select_runner`].
#[doc(hidden)]
pub mod detect;
#[doc(hidden)]
pub mod kvm;
#[doc(hidden)]
pub mod qemu;

/// Which VMM boots a guest: `--vmm` on the command line, and
/// [`select_runner`]'s argument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VmmChoice {
    /// The built-in VMM where KVM can boot a stock kernel, else QEMU.
    #[default]
    Auto,
    /// The built-in VMM.
    Kvm,
    /// qemu-system-x86_64 -M microvm.
    Qemu,
}

/// How long a guest may run before it is stopped, unless told otherwise:
/// the one default the CLI, the facade and the builders share.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// A guest's memory unless told otherwise, in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 256;

/// What to boot.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// A bzImage (or, for the built-in VMM, an ELF vmlinux).
    pub kernel: PathBuf,
    /// A newc cpio archive, compressed or not.
    pub initramfs: Vec<u8>,
    /// The kernel command line, without any `virtio_mmio.device=` argument:
    /// each runner announces its disks itself.
    pub cmdline: String,
    /// The files backing the virtio-blk disks, at most [`MAX_DISKS`]. Disk
    /// `i` has the serial [`disk_serial`]`(i)` (`/sys/block/vdX/serial`):
    /// the guest tells several apart by it, since the order in which it
    /// names them `vda`, `vdb`, ... is the runner's. One disk is `/dev/vda`.
    pub disks: Vec<PathBuf>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// How long the run may take before it is stopped.
    pub timeout: Duration,
    /// How the kernel must be told where its disk is.
    pub devices: DeviceDiscovery,
    /// The same kernel uncompressed, from [`GuestRunner::unpack_stock`]: an
    /// ELF vmlinux the runner boots instead of `kernel`, so the guest skips
    /// its decompressor (about 2 s of a stock kernel's boot under TCG, 18 s
    /// in a nested guest).
    pub vmlinux: Option<Vec<u8>>,
}

/// How a guest kernel finds its virtio-mmio disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDiscovery {
    /// A `virtio_mmio.device=` argument on the command line: a kernel with
    /// `VIRTIO_MMIO_CMDLINE_DEVICES` (one `kernel build` made), which may
    /// have no ACPI at all.
    CommandLine,
    /// ACPI tables (a DSDT entry per device): distribution kernels, which
    /// leave `VIRTIO_MMIO_CMDLINE_DEVICES` off.
    Acpi,
}

/// Boots a [`GuestSpec`] once.
pub trait GuestRunner: fmt::Debug + Send + Sync {
    /// A short name for messages: "kvm" or "qemu".
    fn name(&self) -> &'static str;

    /// The kernel argument that makes the guest reset in a way this runner
    /// sees (`reboot=k` or `reboot=t`).
    fn reboot_arg(&self) -> &'static str;

    /// Boots the guest and waits for it to end. An `Err` means the run could
    /// not be made at all; a guest that fails still returns an outcome.
    fn run(&self, spec: &GuestSpec) -> anyhow::Result<RunOutcome>;

    /// The uncompressed kernel inside the stock bzImage `image` that this
    /// runner boots in its place ([`GuestSpec::vmlinux`]), if it boots one.
    fn unpack_stock(&self, _image: &std::path::Path) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// `bytes` in an anonymous file named `name`, for a runner to open by
/// `/proc/self/fd` path. It is close-on-exec, so
/// that no other child this process spawns meanwhile inherits it; QEMU's
/// `prepare_child` clears the flag in QEMU alone.
pub(crate) fn memfd(name: &str, bytes: &[u8]) -> anyhow::Result<std::os::fd::OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .with_context(|| format!("failed to create a memfd for {name}"))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("failed to write {name} into a memfd"))?;
    Ok(std::os::fd::OwnedFd::from(file))
}
