//! The host side of a template build: a [`TemplateBuilder`] that boots the
//! template guest with the staging image as its disk.
//!
//! A build succeeds when the run ended in the guest's reset and the console
//! carries a successful result line ([`super::protocol`]), which says the
//! guest read the magic back after a sync;
//! [`Ensurer::ensure`](crate::cache::ensure::Ensurer::ensure) then checks the
//! image on the host before it publishes it.
//! Anything else is an error that quotes the console's last lines; the
//! caller then removes the staging image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::find_init::GuestInit;
use super::initramfs::template_initramfs_many;
use super::protocol::{TemplateResult, Verified, Verify, cmdline_many, quiet_unless_logged};
use crate::cache::ensure::TemplateBuilder;
use crate::cache::key::Key;
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint::find_formatter;
use crate::kernel::modules::{GUEST_NEEDS, guest_modules};
use crate::kernel::resolve::{HostKernels, resolve_from_env};
use crate::kernel::stock::{GuestKernel, MODULES_ROOT, STOCK_CMDLINE};
use crate::progress::{Progress, secs};
use crate::runner::VmmChoice;
use crate::runner::detect::select_runner;
use crate::runner::{DeviceDiscovery, GuestRunner, GuestSpec, MAX_DISKS, RunEnd, RunOutcome};

/// The next step when the built-in VMM may be the cause.
const VMM_HINT: &str = "; with --vmm kvm, try --vmm qemu";

/// Console lines an error quotes.
pub(crate) const CONSOLE_TAIL_LINES: usize = 30;

/// Builds templates by booting the template guest with a [`GuestRunner`].
#[derive(Debug)]
pub struct GuestBuilder {
    runner: Box<dyn GuestRunner>,
    kernel: PathBuf,
    init: PathBuf,
    formatter: Option<PathBuf>,
    /// Per filesystem, ahead of `formatter`.
    formatter_for: Vec<(Filesystem, PathBuf)>,
    timeout: Duration,
    memory_mib: u32,
    modules_root: PathBuf,
    progress: Progress,
    verify: Verify,
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
            formatter_for: Vec::new(),
            timeout: crate::runner::DEFAULT_TIMEOUT,
            memory_mib: crate::runner::DEFAULT_MEMORY_MIB,
            modules_root: MODULES_ROOT.into(),
            progress: Progress::silent(),
            verify: Verify::Off,
        }
    }

    /// Has the guest mount the new filesystem read-only before the build
    /// counts as done (default off); see [`super::protocol`].
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = verify;
        self
    }

    /// Where a stock kernel's modules are looked for (default
    /// `/lib/modules`, each kernel's in `<root>/<release>`).
    pub fn modules_root(mut self, root: PathBuf) -> Self {
        self.modules_root = root;
        self
    }

    /// How long a guest may run before it is stopped (default
    /// [`DEFAULT_TIMEOUT`](crate::runner::DEFAULT_TIMEOUT)).
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

    /// Runs `formatter` in the guest for `fs`'s keys only.
    pub fn formatter_for(mut self, fs: Filesystem, formatter: PathBuf) -> Self {
        self.formatter_for.push((fs, formatter));
        self
    }

    /// Where progress lines go (default: nowhere).
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

impl TemplateBuilder for GuestBuilder {
    fn build(&self, key: &Key, staging: &Path) -> Result<()> {
        let mut results = self.build_many(&[(key, staging)]);
        results.pop().expect("one result per job")
    }

    /// One guest, a disk per job (at most [`MAX_DISKS`] per boot: more
    /// boot again), each disk's result judged on its own.
    fn build_many(&self, jobs: &[(&Key, &Path)]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(jobs.len());
        for boot in jobs.chunks(MAX_DISKS) {
            match self.boot(boot) {
                Ok(outcome) => results.extend(self.judge(boot, &outcome)),
                // The boot itself could not be made: every job says why.
                Err(e) => results.extend(every_job_fails(boot.len(), &e)),
            }
        }
        results
    }
}

impl GuestBuilder {
    /// Each disk's result in a finished run. Only the keys that succeeded
    /// are reported as formatted: a failure is told once, by its error.
    fn judge(&self, boot: &[(&Key, &Path)], outcome: &RunOutcome) -> Vec<Result<()>> {
        let mut formatted = Vec::new();
        let results = (boot.iter().enumerate())
            .map(|(i, (key, _))| {
                let verified = check_outcome(key, i, outcome, self.timeout, self.verify)?;
                formatted.push(key.to_string());
                if let Some(Verified::Mounted { blocks, block_size }) = verified {
                    self.progress.step(
                        "Verified",
                        format!(
                            "{key}: the guest kernel mounted it read-only ({blocks} blocks \
                             of {block_size} bytes)"
                        ),
                    );
                }
                Ok(())
            })
            .collect();
        if !formatted.is_empty() {
            self.progress.step(
                "Formatted",
                format!(
                    "{} in the guest in {} (first console output after {})",
                    formatted.join(", "),
                    secs(outcome.total),
                    outcome.first_output.map_or("-".into(), secs)
                ),
            );
        }
        results
    }

    /// Boots one guest with a disk per job and waits for it to end.
    fn boot(&self, jobs: &[(&Key, &Path)]) -> Result<RunOutcome> {
        let mut formatters = Vec::new();
        for (key, _) in jobs {
            let for_fs = self.formatter_for.iter().find(|(fs, _)| *fs == key.fs);
            let formatter = match (for_fs, &self.formatter) {
                (Some((_, f)), _) | (None, Some(f)) => f.clone(),
                (None, None) => find_formatter(key.fs)?,
            };
            formatters.push((key.fs, formatter));
        }
        let packed = Instant::now();
        // Before any boot: a stock kernel's missing or unloadable modules
        // are an error here, not a guest that never finds its disk.
        let kernel = GuestKernel::identify(&self.kernel, &self.modules_root)?;
        // A read-only mount needs the filesystem's module too.
        let mut wanted = GUEST_NEEDS.to_vec();
        if self.verify != Verify::Off {
            for (key, _) in jobs {
                if !wanted.contains(&key.fs.name()) {
                    wanted.push(key.fs.name());
                }
            }
        }
        let (modules, devices, extra_args, vmlinux) = match &kernel {
            GuestKernel::SelfContained(_) => (Vec::new(), DeviceDiscovery::CommandLine, "", None),
            GuestKernel::Stock(stock) => (
                guest_modules(&stock.modules_dir, &wanted, &stock.signatures).with_context(
                    || {
                        format!(
                            "the stock kernel `{}` (release {}) cannot boot the template guest",
                            stock.image.display(),
                            stock.release
                        )
                    },
                )?,
                DeviceDiscovery::Acpi,
                STOCK_CMDLINE,
                self.runner.unpack_stock(&stock.image)?,
            ),
        };
        let formatters: Vec<(Filesystem, &Path)> = formatters
            .iter()
            .map(|(fs, f)| (*fs, f.as_path()))
            .collect();
        let initramfs = template_initramfs_many(&self.init, &formatters, &modules)?;
        tracing::info!(
            "initramfs: {} KiB ({} modules), kernel unpacked: {}; ready in {}",
            initramfs.len() / 1024,
            modules.len(),
            if vmlinux.is_some() { "yes" } else { "no" },
            secs(packed.elapsed())
        );
        // Before the boot: too little memory panics or hangs the guest.
        super::memory::check(self.memory_mib, &self.kernel, initramfs.len() as u64)?;
        let filesystems: Vec<Filesystem> = jobs.iter().map(|(key, _)| key.fs).collect();
        let spec = GuestSpec {
            kernel: self.kernel.clone(),
            initramfs,
            cmdline: format!(
                "{} {} {extra_args} {}",
                cmdline_many(&filesystems, self.runner.reboot_arg()),
                self.verify.param(),
                quiet_unless_logged()
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
            disks: jobs
                .iter()
                .map(|(_, staging)| staging.to_path_buf())
                .collect(),
            memory_mib: self.memory_mib,
            timeout: self.timeout,
            devices,
            vmlinux,
        };
        let what: Vec<String> = (jobs.iter())
            .map(|(key, _)| format!("{} on a {} disk", key.fs.mkfs(), key.capacity))
            .collect();
        self.progress.step(
            "Booting",
            format!(
                "template guest ({}, kernel `{}`) to run {}",
                self.runner.name(),
                self.kernel.display(),
                what.join(", ")
            ),
        );
        // Held while the guest may read the kernel, so `kernel clean` keeps it.
        let _kernel_in_use = crate::kernel::clean::hold_for_use(&self.kernel);
        let outcome = self.runner.run(&spec)?;
        // At -vv the whole console, also on success: a kernel's warnings
        // are worth seeing before they become failures.
        tracing::debug!(
            "the guest console ({}):\n{}",
            outcome.end,
            outcome.console_text()
        );
        Ok(outcome)
    }
}

/// A [`GuestBuilder`] made only when a build needs one: the kernel is
/// resolved and the runner picked on a miss, so a cache hit needs neither.
#[derive(Debug, Clone)]
pub(crate) struct OnMiss {
    /// `--kernel`, else `$KTSTR_KERNEL`, else the newest cached kernel, else
    /// a stock kernel in /boot ([`crate::kernel::resolve`]).
    pub kernel: Option<PathBuf>,
    /// Which VMM boots the guest.
    pub vmm: VmmChoice,
    /// How long the guest may run.
    pub timeout: Duration,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Where progress lines go.
    pub progress: Progress,
    /// The guest's PID 1.
    pub init: GuestInit,
    /// Whether the guest mounts the new filesystem read-only first.
    pub verify: Verify,
}

impl TemplateBuilder for OnMiss {
    fn build(&self, key: &Key, staging: &Path) -> Result<()> {
        self.builder()?.build(key, staging)
    }

    fn build_many(&self, jobs: &[(&Key, &Path)]) -> Vec<Result<()>> {
        match self.builder() {
            Ok(builder) => builder.build_many(jobs),
            Err(e) => every_job_fails(jobs.len(), &e),
        }
    }
}

impl OnMiss {
    /// The kernel resolved and the runner picked, now that a build needs them.
    fn builder(&self) -> Result<GuestBuilder> {
        let kernel = resolve_from_env(self.kernel.as_deref())?;
        let runner = select_runner(self.vmm)?;
        let host = HostKernels::from_env();
        let init = self.init.resolve()?;
        Ok(GuestBuilder::new(runner, kernel, init)
            .verify(self.verify)
            .timeout(self.timeout)
            .memory_mib(self.memory_mib)
            .modules_root(host.modules_root)
            .progress(self.progress))
    }
}

/// `jobs` results that each carry `err` (an error is not `Clone`), still a
/// usage error if it was one.
fn every_job_fails(jobs: usize, err: &anyhow::Error) -> Vec<Result<()>> {
    let why = format!("{err:#}");
    let usage = crate::usage::is_usage(err);
    let each = || match usage {
        true => crate::usage::UsageError(why.clone()).into(),
        false => anyhow::anyhow!("{why}"),
    };
    (0..jobs).map(|_| Err(each())).collect()
}

/// Whether a run built the template on its disk `disk` (and what its
/// verification found); the error says why not and quotes the console.
fn check_outcome(
    key: &Key,
    disk: usize,
    outcome: &RunOutcome,
    timeout: Duration,
    verify: Verify,
) -> Result<Option<Verified>> {
    let result = TemplateResult::for_disk(&outcome.console, disk);
    let verified = result.as_ref().and_then(|r| r.verified);
    let why = match (outcome.end, result) {
        (RunEnd::Timeout, _) => format!(
            "the guest did not finish within {} s (raise --timeout if the machine is slow)",
            timeout.as_secs_f64()
        ),
        (end, None) => format!(
            "the guest ended ({end}) without printing its result line: the kernel may lack \
             what the guest needs; rebuild it with `cargo ktstr kernel build --force`{VMM_HINT}"
        ),
        (_, Some(r)) if r.status != 0 => format!(
            "{} exited with status {} in the guest: {}",
            key.fs.mkfs(),
            r.status,
            r.output.trim()
        ),
        (_, Some(r)) if !r.magic => format!(
            "{} succeeded in the guest, but /dev/vda has no {} superblock magic: the \
             disk did not keep what was written{VMM_HINT}",
            key.fs.mkfs(),
            key.fs
        ),
        (_, Some(r)) if verify != Verify::Off && r.verified.is_none() => format!(
            "the build was asked to verify, but the guest's result line says nothing of a \
             read-only mount: the guest init (`{}` in the initramfs) predates --verify; use a \
             cargo-ktstr of this version as the init",
            super::protocol::INIT_PATH
        ),
        (_, Some(r)) if verify != Verify::Off && r.verified == Some(Verified::No) => format!(
            "{} succeeded in the guest, but the guest kernel could not mount the new {} \
             read-only: {}",
            key.fs.mkfs(),
            key.fs,
            r.output.trim()
        ),
        (RunEnd::Shutdown, Some(_)) => format!(
            "the guest shut down instead of resetting: rebuild the kernel with \
             `cargo ktstr kernel build --force`{VMM_HINT}"
        ),
        // The image itself is checked on the host by `Ensurer::ensure`
        // before it is published.
        (RunEnd::Reset, Some(_)) => return Ok(verified),
    };
    // The caller's context names the key: saying it here too would repeat it.
    bail!("{why}\n{}", console_section(outcome))
}

/// The console's last lines for an error, saying so when there were none.
fn console_section(outcome: &RunOutcome) -> String {
    let tail = outcome.console_tail(CONSOLE_TAIL_LINES);
    let tail = if tail.trim().is_empty() {
        "(no console output)"
    } else {
        &tail
    };
    format!("--- the guest console's last {CONSOLE_TAIL_LINES} lines ---\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Capacity;
    use crate::formatter::filesystem::Filesystem;

    fn check(end: RunEnd, result: Option<TemplateResult>) -> Result<()> {
        let key = Key::new(
            Filesystem::Ext4,
            Capacity::from_mib(64).unwrap(),
            "0123456789abcdef",
        );
        let console = result.map_or_else(String::new, |r| r.render());
        let outcome = RunOutcome {
            end,
            console: format!("Linux version 6.12\n{console}").into_bytes(),
            first_output: None,
            total: Duration::from_secs(1),
        };
        check_outcome(&key, 0, &outcome, Duration::from_secs(9), Verify::Off).map(|_| ())
    }

    fn why(end: RunEnd, result: Option<TemplateResult>) -> String {
        format!("{:#}", check(end, result).unwrap_err())
    }

    fn result(status: i32, magic: bool) -> Option<TemplateResult> {
        let output = String::new();
        Some(TemplateResult {
            status,
            magic,
            verified: None,
            output,
        })
    }

    #[test]
    fn each_failure_says_what_to_do_next_and_quotes_the_console() {
        let cases = [
            (why(RunEnd::Timeout, None), "raise --timeout"),
            (why(RunEnd::Reset, None), "kernel build --force"),
            (why(RunEnd::Reset, result(1, false)), "exited with status 1"),
            (why(RunEnd::Reset, result(0, false)), "try --vmm qemu"),
            (
                why(RunEnd::Shutdown, result(0, true)),
                "kernel build --force",
            ),
        ];
        for (err, next) in cases {
            assert!(err.contains(next), "{next:?} missing from: {err}");
            assert!(err.contains("Linux version 6.12"), "{err}");
        }
        // The image itself is `Ensurer::ensure`'s to check.
        assert!(check(RunEnd::Reset, result(0, true)).is_ok());
    }

    #[test]
    fn an_empty_console_says_so_and_the_key_is_left_to_the_caller() {
        let key = Key::new(
            Filesystem::Ext4,
            Capacity::from_mib(64).unwrap(),
            "0123456789abcdef",
        );
        let outcome = RunOutcome {
            end: RunEnd::Timeout,
            console: Vec::new(),
            first_output: None,
            total: Duration::from_secs(2),
        };
        let err = check_outcome(&key, 0, &outcome, Duration::from_secs(2), Verify::Off);
        let err = format!("{:#}", err.unwrap_err());
        assert!(err.ends_with("---\n(no console output)"), "{err}");
        assert!(!err.contains(&key.to_string()), "{err}");
    }

    #[test]
    fn a_build_asked_to_verify_needs_a_line_that_says_it_mounted() {
        let key = Key::new(
            Filesystem::Xfs,
            Capacity::from_mib(300).unwrap(),
            "0123456789abcdef",
        );
        let run = |verified, verify| {
            let line = TemplateResult {
                status: 0,
                magic: true,
                verified,
                output: "mount: bad superblock".into(),
            }
            .render();
            let outcome = RunOutcome {
                end: RunEnd::Reset,
                console: format!("Linux version 6.12\n{line}").into_bytes(),
                first_output: None,
                total: Duration::from_secs(1),
            };
            check_outcome(&key, 0, &outcome, Duration::from_secs(9), verify)
                .map_err(|e| format!("{e:#}"))
        };
        let mounted = Some(Verified::Mounted {
            blocks: 76800,
            block_size: 4096,
        });
        assert_eq!(run(mounted, Verify::Mount), Ok(mounted));
        let old = run(None, Verify::Mount).unwrap_err();
        assert!(old.contains("predates --verify"), "{old}");
        let failed = run(Some(Verified::No), Verify::Mount).unwrap_err();
        assert!(
            failed.contains("could not mount the new xfs read-only")
                && failed.contains("bad superblock")
                && failed.contains("Linux version 6.12"),
            "{failed}"
        );
        // Unasked, a line without the field is the old success.
        assert_eq!(run(None, Verify::Off), Ok(None));
    }
}
