//! The host side of the nested-KVM lane: boot a KVM-host kernel
//! ([`crate::kernel::KernelKind::KvmHost`]) under QEMU's TCG, which
//! emulates AMD SVM, so that inside it `/dev/kvm` is a real KVM that boots
//! stock kernels; run checks there ([`super::checks`]) and read their
//! result lines back.
//!
//! The outer guest's initramfs is this crate's own ([`Archive`]): this
//! binary as `/init`, the three formatters and their libraries, and the
//! template kernel at [`TEMPLATE_KERNEL`]; callers add what their checks
//! run. Its disk, mounted at [`super::checks::DISK_MOUNT`], carries the
//! checks' cache and logs back to the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use super::checks::{self, CHECKS_FILE, CheckResult, CheckSpec, MODE_PARAM};
use super::initramfs::Archive;
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint::find_formatter;
use crate::guest::protocol::formatter_path;
use crate::kernel::store::VMLINUX_FILE;
use crate::runner::qemu::{Accel, QemuRunner};
use crate::runner::{DeviceDiscovery, GuestRunner, GuestSpec, RunEnd, RunOutcome};

/// Where the template kernel is in the outer guest; its uncompressed
/// vmlinux, where the cache has one, goes beside it.
pub const TEMPLATE_KERNEL: &str = "/kernel/bzImage";
/// Memory of the outer guest: the inner guests' memory comes out of it.
pub(crate) const OUTER_MEMORY_MIB: u32 = 2048;
/// Outer console lines an error quotes.
const CONSOLE_TAIL_LINES: usize = 40;
/// A console silent this long (init prints a line at least every 10 s)
/// means the outer guest lost a wake-up ([`QemuRunner::nudge_when_silent`]),
/// and gets a byte on its serial console.
const NUDGE_AFTER: Duration = Duration::from_secs(20);
/// A console silent this long, nudges and all, means the outer guest is
/// stuck for good.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Boots of the outer guest before a stall is a failure: each costs the
/// silence and a boot, about 1.5 minutes.
const MAX_BOOTS: usize = 6;

/// The outer guest's initramfs under construction.
#[derive(Debug)]
pub struct OuterInitramfs {
    archive: Archive,
}

impl OuterInitramfs {
    /// `init` (this crate's binary) as `/init`, every installed formatter
    /// at `/sbin/mkfs.<fs>`, and `template_kernel` at [`TEMPLATE_KERNEL`]
    /// (with the vmlinux the built-in VMM prefers, when it has one).
    pub fn new(init: &Path, template_kernel: &Path) -> Result<Self> {
        let mut archive = Archive::with_init(init)?;
        for fs in Filesystem::ALL {
            archive.program(&formatter_path(fs), &find_formatter(fs)?)?;
        }
        archive.mke2fs_conf()?;
        archive.host_file(TEMPLATE_KERNEL, template_kernel)?;
        let vmlinux = template_kernel.with_file_name(VMLINUX_FILE);
        if vmlinux.is_file() {
            let guest = Path::new(TEMPLATE_KERNEL).with_file_name(VMLINUX_FILE);
            archive.host_file(&guest.to_string_lossy(), &vmlinux)?;
        }
        Ok(OuterInitramfs { archive })
    }

    /// Adds the ELF program `host` as `guest`, with its shared objects.
    pub fn program(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.archive.program(guest, host)
    }

    /// Adds the host file `host` as `guest`.
    pub fn file(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.archive.host_file(guest, host)
    }

    /// Adds a symbolic link `guest` to `target`.
    pub fn symlink(&mut self, guest: &str, target: &str) -> Result<()> {
        self.archive.symlink(guest, target)
    }

    /// Adds directory `guest` (and its parents).
    pub fn dir(&mut self, guest: &str) {
        self.archive.dir(guest);
    }

    /// The finished archive, with `checks` as the list init runs.
    pub fn finish(mut self, checks: &[CheckSpec]) -> Result<Vec<u8>> {
        let mut list = Vec::new();
        checks::write_list(checks, &mut list)?;
        self.archive.file(CHECKS_FILE, 0o644, &list)?;
        // Uncompressed: the outer kernel runs under TCG, where inflating
        // tens of MiB would cost seconds.
        self.archive.finish()
    }
}

/// One boot of the outer guest.
#[derive(Debug, Clone)]
pub struct NestedSpec {
    /// A kernel from `cargo ktstr kernel build --kind kvm-host`.
    pub host_kernel: PathBuf,
    /// The outer guest's initramfs ([`OuterInitramfs`]).
    pub initramfs: Vec<u8>,
    /// The outer guest's disk, formatted as `disk_fs` by the caller.
    pub disk: PathBuf,
    /// The filesystem `disk` holds.
    pub disk_fs: Filesystem,
    /// The outer deadline, for all its boots together: QEMU is stopped when
    /// it passes.
    pub timeout: Duration,
}

/// What the outer guest reported.
#[derive(Debug, Clone)]
pub struct NestedRun {
    /// How QEMU's run of the outer guest ended.
    pub outcome: RunOutcome,
    /// The inner boots' results, in order.
    pub results: Vec<CheckResult>,
    /// For each boot that went silent and was booted again: why, with its
    /// console's last lines.
    pub stalls: Vec<String>,
    /// How often a silent outer guest was nudged on its serial console.
    pub nudges: usize,
}

impl NestedRun {
    /// The result of check `name`.
    pub fn result(&self, name: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The outer console's last lines, for an error message.
    pub fn console_tail(&self) -> String {
        self.outcome.console_tail(CONSOLE_TAIL_LINES)
    }
}

/// Boots the outer guest under QEMU TCG and waits until every check has
/// reported, or the deadline; an outer guest that did not finish its
/// list is an error quoting its console.
///
/// An outer guest whose console goes silent has lost a timer interrupt
/// to QEMU's TCG while it started inner guests (seen about once in five
/// minutes of inner builds on a loaded machine: the vCPU halted in the idle
/// loop, the timer's vector pending in its APIC). A byte on its console
/// wakes it ([`QemuRunner::nudge_when_silent`]). One that stays silent is
/// stopped and booted again on the same disk, where the checks that
/// reported are not run again; the stall is kept in [`NestedRun::stalls`].
pub fn run(spec: &NestedSpec) -> Result<NestedRun> {
    let qemu = QemuRunner::find(Accel::Tcg)?
        .silence_limit(SILENCE_LIMIT)
        .nudge_when_silent(NUDGE_AFTER)
        .keep_apic_timer();
    let mut guest = GuestSpec {
        kernel: spec.host_kernel.clone(),
        initramfs: spec.initramfs.clone(),
        cmdline: format!(
            // Without virtual GIF, KVM intercepts STGI/CLGI itself: TCG's
            // emulation of it is the first suspect of the outer stalls
            // (none in the one lane run with it off, against three of four
            // runs stalling with it on).
            "console=ttyS0 {} panic=-1 kvm_amd.vgif=0 {MODE_PARAM} {}={}",
            qemu.reboot_arg(),
            checks::DISK_PARAM,
            spec.disk_fs
        ),
        disks: vec![spec.disk.clone()],
        memory_mib: OUTER_MEMORY_MIB,
        timeout: spec.timeout,
        // The KVM host is a `kernel build` kernel.
        devices: DeviceDiscovery::CommandLine,
        vmlinux: None,
    };
    let mut stalls = Vec::new();
    // One deadline for all the boots together.
    let start = std::time::Instant::now();
    loop {
        guest.timeout = spec.timeout.saturating_sub(start.elapsed());
        let outcome = qemu.run(&guest)?;
        let run = NestedRun {
            results: CheckResult::all_from_console(&outcome.console),
            outcome,
            stalls: stalls.clone(),
            nudges: qemu.nudges(),
        };
        if checks::all_done(&run.outcome.console) {
            return Ok(run);
        }
        let stalled = run.outcome.end == RunEnd::Timeout && run.outcome.total < guest.timeout;
        let why = format!(
            "the nested lane's outer guest {} after {:.1} s before running every check \
             ({} reported); the outer console's last {CONSOLE_TAIL_LINES} lines:\n{}",
            match stalled {
                true => format!("went silent for {} s", SILENCE_LIMIT.as_secs()),
                false => format!("ended ({})", run.outcome.end),
            },
            run.outcome.total.as_secs_f64(),
            run.results.len(),
            run.console_tail()
        );
        if !stalled || stalls.len() + 1 >= MAX_BOOTS {
            bail!("{why}");
        }
        stalls.push(why);
    }
}
