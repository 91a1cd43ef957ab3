//! Boot a guest once and say how it ended.
//!
//! A runner boots kernel + initramfs + command line with one virtio-blk disk,
//! captures the serial console, and stops at the guest's reset or shutdown or
//! at a deadline. Two implementations: [`crate::runner::qemu`] and [`crate::runner::kvm`] (the built-in
//! VMM); [`crate::runner::detect`] picks one for `--vmm auto`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub mod console;
pub mod detect;
pub mod kvm;
pub mod qemu;

/// What to boot.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// A bzImage (or, for the built-in VMM, an ELF vmlinux).
    pub kernel: PathBuf,
    /// A gzip-compressed newc cpio archive.
    pub initramfs: Vec<u8>,
    /// The kernel command line, without any `virtio_mmio.device=` argument:
    /// each runner announces its disk itself.
    pub cmdline: String,
    /// The file backing the one virtio-blk disk (`/dev/vda` in the guest).
    pub disk: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// How long the run may take before it is stopped.
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunEnd {
    /// The guest reset itself (reboot, or `panic=-1` after a panic).
    Reset,
    /// The guest shut down, or triple-faulted.
    Shutdown,
    /// The deadline passed; the guest was stopped.
    Timeout,
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunEnd::Reset => "reset",
            RunEnd::Shutdown => "shutdown",
            RunEnd::Timeout => "timeout",
        })
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub end: RunEnd,
    /// Everything the guest wrote to its serial console.
    pub console: Vec<u8>,
    /// From the start of the run to the first console byte.
    pub first_output: Option<Duration>,
    /// From the start of the run to its end.
    pub total: Duration,
}

impl RunOutcome {
    /// The console as text, lossily decoded.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }

    /// The last `n` lines of the console, for error messages.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Boots a [`GuestSpec`] once.
pub trait GuestRunner: fmt::Debug {
    /// A short name for messages: "kvm" or "qemu".
    fn name(&self) -> &'static str;

    /// The kernel argument that makes the guest reset in a way this runner
    /// sees (`reboot=k` or `reboot=t`).
    fn reboot_arg(&self) -> &'static str;

    /// Boots the guest and waits for it to end. An `Err` means the run could
    /// not be made at all; a guest that fails still returns an outcome.
    fn run(&self, spec: &GuestSpec) -> anyhow::Result<RunOutcome>;
}
