//! The host side of a template build: a [`TemplateBuilder`] that boots the
//! template guest with the staging image as its disk.
//!
//! A build succeeds only when the run ended in the guest's reset, the
//! console carries a successful result line ([`super::protocol`]), and the
//! staging image, read back on the host, carries the filesystem's magic.
//! Anything else is an error that quotes the console's last lines; the
//! caller then removes the staging image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::initramfs::template_initramfs;
use super::protocol::{TemplateResult, cmdline};
use crate::cache::ensure::TemplateBuilder;
use crate::cache::fingerprint::find_formatter;
use crate::cache::key::Key;
use crate::progress::{Progress, secs};
use crate::runner::{GuestRunner, GuestSpec, RunEnd, RunOutcome};

/// Console lines an error quotes.
pub const CONSOLE_TAIL_LINES: usize = 30;

/// Builds templates by booting the template guest with a [`GuestRunner`].
#[derive(Debug)]
pub struct GuestBuilder {
    runner: Box<dyn GuestRunner>,
    kernel: PathBuf,
    init: PathBuf,
    formatter: Option<PathBuf>,
    timeout: Duration,
    memory_mib: u32,
    progress: Progress,
}

impl GuestBuilder {
    /// A builder that boots `kernel` with `init` (this binary:
    /// [`std::env::current_exe`] from the CLI) as the guest's PID 1.
    pub fn new(runner: Box<dyn GuestRunner>, kernel: PathBuf, init: PathBuf) -> Self {
        GuestBuilder {
            runner,
            kernel,
            init,
            formatter: None,
            timeout: Duration::from_secs(120),
            memory_mib: 256,
            progress: Progress::silent(),
        }
    }

    /// How long a guest may run before it is stopped (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Guest memory in MiB (default 256).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Runs `formatter` in the guest instead of the host's mkfs for the key.
    pub fn formatter(mut self, formatter: PathBuf) -> Self {
        self.formatter = Some(formatter);
        self
    }

    /// Where progress lines go (default: nowhere).
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// How the guest should reset so this runner sees it: the built-in
    /// VMM has an i8042, QEMU's microvm does not but ends on a triple fault.
    fn reboot_arg(&self) -> &'static str {
        if self.runner.name() == "kvm" {
            "reboot=k"
        } else {
            "reboot=t"
        }
    }
}

impl TemplateBuilder for GuestBuilder {
    fn build(&self, key: &Key, staging: &Path) -> Result<()> {
        let formatter = match &self.formatter {
            Some(f) => f.clone(),
            None => find_formatter(key.fs)?,
        };
        let packed = Instant::now();
        let initramfs = template_initramfs(&self.init, &formatter, key.fs)?;
        tracing::info!(
            "initramfs: {} KiB in {}",
            initramfs.len() / 1024,
            secs(packed.elapsed())
        );
        let spec = GuestSpec {
            kernel: self.kernel.clone(),
            initramfs,
            cmdline: cmdline(key.fs, self.reboot_arg()),
            disk: staging.to_owned(),
            memory_mib: self.memory_mib,
            timeout: self.timeout,
        };
        self.progress.step(
            "Booting",
            format!(
                "template guest ({}, kernel `{}`) to run {} on a {} disk",
                self.runner.name(),
                self.kernel.display(),
                key.fs.mkfs(),
                key.capacity
            ),
        );
        let outcome = self.runner.run(&spec)?;
        check_outcome(key, staging, &outcome, self.timeout)?;
        self.progress.step(
            "Formatted",
            format!(
                "{key} in the guest in {} (first console output after {})",
                secs(outcome.total),
                outcome.first_output.map_or("-".into(), secs)
            ),
        );
        Ok(())
    }
}

/// Whether a run built the template; the error says why not and quotes
/// the console.
fn check_outcome(key: &Key, staging: &Path, outcome: &RunOutcome, timeout: Duration) -> Result<()> {
    let result = TemplateResult::from_console(&outcome.console);
    let why = match (outcome.end, result) {
        (RunEnd::Timeout, _) => format!(
            "the guest did not finish within {} s (raise --timeout if the machine is slow)",
            timeout.as_secs_f64()
        ),
        (end, None) => format!("the guest ended ({end}) without printing its result line"),
        (_, Some(r)) if r.status != 0 => format!(
            "{} exited with status {} in the guest: {}",
            key.fs.mkfs(),
            r.status,
            r.output.trim()
        ),
        (_, Some(r)) if !r.magic => format!(
            "{} succeeded in the guest, but /dev/vda has no {} superblock magic",
            key.fs.mkfs(),
            key.fs
        ),
        (RunEnd::Shutdown, Some(_)) => "the guest shut down instead of resetting".to_owned(),
        (RunEnd::Reset, Some(_)) => match key.fs.path_has_magic(staging) {
            Ok(true) => return Ok(()),
            Ok(false) => format!(
                "the guest reported success, but the staging image `{}` has no {} magic",
                staging.display(),
                key.fs
            ),
            Err(e) => format!("failed to read `{}`: {e}", staging.display()),
        },
    };
    bail!(
        "building template {key} failed: {why}\n--- the guest console's last {CONSOLE_TAIL_LINES} lines ---\n{}",
        outcome.console_tail(CONSOLE_TAIL_LINES)
    )
}
