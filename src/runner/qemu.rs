//! `qemu-system-x86_64 -M microvm` as a [`super::GuestRunner`].
//!
//! The disk is a virtio-mmio block device (QEMU announces it on the kernel
//! command line itself), the console is the 8250 on stdout, and
//! `-no-reboot` turns the guest's reset into QEMU's exit. A kernel built by
//! `kernel build` gets a microvm without ACPI, its disk announced on the
//! command line; a stock kernel one with ACPI, its disk in the DSDT. Either
//! way the guest resets (`reboot=t`) rather than powers off, so an exit
//! with status 0 is the guest's reset.
//! The initramfs reaches QEMU as an inherited memfd, so no file is left
//! behind whichever way the run ends.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{DeviceDiscovery, GuestRunner, GuestSpec, RunEnd, RunOutcome, disk_serial, memfd};
use crate::kernel::unpack::pvh_vmlinux;
use crate::outcome::Console;
/// The QEMU binary this runner needs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The Debian package that ships it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// The CPU a TCG guest sees: every feature TCG emulates but the fast string
/// ones. With ERMS, FSRM or FSRS a kernel copies and clears memory with
/// `rep movsb` and `rep stosb`, which TCG runs a byte per step; without
/// them it moves eight bytes a step. Twenty inner builds of the nested lane
/// took 95 s instead of 137 s; Debian's kernel builds a template about
/// 10 % faster.
pub const TCG_CPU: &str = "max,-erms,-fsrm,-fsrs";

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization: only where KVM boots an unmodified kernel.
    Kvm,
    /// Binary translation: slower, works anywhere.
    Tcg,
}

/// Boots guests with QEMU's microvm machine.
#[derive(Debug, Clone)]
pub struct QemuRunner {
    binary: PathBuf,
    accel: Accel,
    silence_limit: Option<Duration>,
    /// Under TCG, keep the local APIC timer ([`QemuRunner::keep_apic_timer`]).
    apic_timer: bool,
    /// [`QemuRunner::nudge_when_silent`]'s interval, and the nudges sent.
    nudge: Option<Duration>,
    nudges: Arc<AtomicUsize>,
}

impl QemuRunner {
    /// Finds QEMU on PATH; `accel` as the caller decided.
    pub fn find(accel: Accel) -> Result<Self> {
        match crate::host::find_program(QEMU_BINARY) {
            Some(binary) => Ok(QemuRunner::at(binary, accel)),
            None => bail!(
                "{QEMU_BINARY} is not on PATH: install the `{QEMU_PACKAGE}` package \
                 (on Debian 12 from bookworm-backports)"
            ),
        }
    }

    /// The QEMU at `binary`, not looked for.
    pub(crate) fn at(binary: PathBuf, accel: Accel) -> Self {
        QemuRunner {
            binary,
            accel,
            silence_limit: None,
            apic_timer: false,
            nudge: None,
            nudges: Arc::default(),
        }
    }

    /// Also stops a run whose console has been silent for `limit` (it then
    /// ends as a timeout): for a guest that prints as it goes, a silence
    /// that long means it is stuck.
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = Some(limit);
        self
    }

    /// Writes a newline to the guest's serial console each time the console
    /// has been silent for `after`. QEMU 10.0's TCG can lose the wake-up of
    /// a guest that is a KVM host: its VMRUN sets the vCPU's interrupt
    /// requests without QEMU's lock, over the one the APIC timer just
    /// posted from the main loop, and the halted vCPU sleeps on with the
    /// timer's vector pending (fixed in QEMU 10.2). The byte's interrupt
    /// posts a fresh request, and the guest goes on; its tty echoes it.
    pub fn nudge_when_silent(mut self, after: Duration) -> Self {
        self.nudge = Some(after);
        self
    }

    /// How many nudges ([`QemuRunner::nudge_when_silent`]) its runs sent.
    pub fn nudges(&self) -> usize {
        self.nudges.load(Ordering::Relaxed)
    }

    /// Under TCG, leaves the guest its local APIC timer (no `noapictimer`):
    /// for a guest whose own guests' timers it emulates, the KVM host of
    /// the nested lane, whose runs without stalls all had it.
    pub fn keep_apic_timer(mut self) -> Self {
        self.apic_timer = true;
        self
    }

    fn args(&self, spec: &GuestSpec, kernel: &Path, initrd: &Path) -> Vec<OsString> {
        let (accel, cpu) = match self.accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", TCG_CPU),
        };
        let memory = format!("{}M", spec.memory_mib);
        // With ACPI on, microvm describes each virtio-mmio device in its
        // DSDT; with it off, on the command line it appends. A kernel on
        // microvm's hardware-reduced ACPI never programs the 8259, which
        // stays at vector base 0: a tick of the PIT (running since reset)
        // that reached it before the kernel masked LINT0 arrived as vector
        // 0, a divide error at boot (9 Debian boots in 30). So no 8259.
        let machine = match spec.devices {
            DeviceDiscovery::CommandLine => "microvm,acpi=off",
            DeviceDiscovery::Acpi => "microvm,acpi=on,pic=off",
        };
        // Such a kernel has no PIT clockevent either: its only tick is the
        // APIC timer.
        let apic_timer = self.apic_timer || spec.devices == DeviceDiscovery::Acpi;
        let cmdline = match self.accel {
            Accel::Kvm => spec.cmdline.clone(),
            Accel::Tcg => {
                let cmdline = tcg_cmdline(&spec.cmdline, crate::host::tsc_khz());
                match apic_timer {
                    true => cmdline.replace(" noapictimer", ""),
                    false => cmdline,
                }
            }
        };
        let smp = vcpus(spec.disks.len()).to_string();
        #[rustfmt::skip]
        let fixed = [
            "-M", machine, "-accel", accel, "-cpu", cpu, "-m", &memory,
            "-smp", &smp, "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-no-reboot", "-append", &cmdline,
        ];
        let mut args: Vec<OsString> = fixed.iter().map(OsString::from).collect();
        args.extend([
            "-kernel".into(),
            kernel.as_os_str().to_owned(),
            "-initrd".into(),
            initrd.as_os_str().to_owned(),
        ]);
        for (i, disk) in spec.disks.iter().enumerate() {
            let serial = disk_serial(i);
            let mut drive = OsString::from("file=");
            drive.push(escape_commas(disk.as_os_str()));
            // Report write errors to the guest: QEMU's default
            // (werror=enospc) pauses the VM on a full host disk, and the run
            // would sit out its timeout instead of failing.
            drive.push(format!(
                ",format=raw,if=none,id={serial},werror=report,rerror=report"
            ));
            args.extend([
                "-device".into(),
                format!("virtio-blk-device,drive={serial},serial={serial}").into(),
                "-drive".into(),
                drive,
            ]);
        }
        args
    }
}

/// `cmdline` for a guest under TCG: the kernel is told the TSC's rate and
/// that it is reliable. Left to calibrate against the emulated PIT, a TCG
/// guest sometimes fails ("Unable to calibrate against PIT"), marks its TSC
/// unstable and hangs (5 stock boots in 35 here; none in 46 when told).
/// And a kernel with a PIT clockevent (acpi=off) ticks with it, not the
/// local APIC timer (`noapictimer`):
/// the APIC timer needs a calibration of 100 ms of jiffies first, and a
/// cold btrfs build took 1.73 s instead of 2.38 s without it (medians of 5,
/// interleaved; xfs 1.77 s against 1.88 s).
fn tcg_cmdline(cmdline: &str, tsc_khz: Option<u64>) -> String {
    match tsc_khz {
        Some(khz) => format!("{cmdline} tsc=reliable tsc_early_khz={khz} noapictimer"),
        None => format!("{cmdline} tsc=reliable noapictimer"),
    }
}

impl GuestRunner for QemuRunner {
    fn name(&self) -> &'static str {
        "qemu"
    }

    /// A triple fault: microvm has no i8042, and `-no-reboot` ends QEMU
    /// on the reset.
    fn reboot_arg(&self) -> &'static str {
        "reboot=t"
    }

    /// Where it has a PVH entry, which QEMU boots an ELF kernel through.
    fn unpack_stock(&self, image: &Path) -> Result<Option<Vec<u8>>> {
        pvh_vmlinux(image)
    }

    fn run(&self, spec: &GuestSpec) -> Result<RunOutcome> {
        let start = Instant::now();
        let deadline = start
            .checked_add(spec.timeout)
            .with_context(|| format!("a timeout of {:?} is too long", spec.timeout))?;
        let initrd = match spec.vmlinux {
            Some(_) => memfd("ktstr-initramfs", &pvh_padded(&spec.initramfs))?,
            None => memfd("ktstr-initramfs", &spec.initramfs)?,
        };
        // QEMU opens the inherited descriptors through its own /proc/self/fd.
        let initrd_fd = initrd.as_raw_fd();
        let initrd_path = PathBuf::from(format!("/proc/self/fd/{initrd_fd}"));
        // An unpacked kernel boots through its PVH entry, skipping the
        // guest's decompressor.
        let vmlinux = spec
            .vmlinux
            .as_deref()
            .map(|v| memfd("ktstr-vmlinux", v))
            .transpose()?;
        let vmlinux_fd = vmlinux.as_ref().map(|fd| fd.as_raw_fd());
        let kernel_path = vmlinux_fd.map_or_else(
            || spec.kernel.clone(),
            |fd| PathBuf::from(format!("/proc/self/fd/{fd}")),
        );
        // A signal during the unpacking and packing above: boot nothing.
        crate::interrupt::check()?;
        let mut cmd = Command::new(&self.binary);
        let parent = nix::unistd::getpid();
        // SAFETY: the hook runs in the forked child before exec; it calls
        // only prctl, getppid and fcntl, which are async-signal-safe, and
        // does not allocate.
        unsafe { cmd.pre_exec(move || prepare_child(parent, initrd_fd, vmlinux_fd)) };
        let child = cmd
            .args(self.args(spec, &kernel_path, &initrd_path))
            .stdin(match self.nudge {
                Some(_) => Stdio::piped(),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to run `{}`", self.binary.display()))?;
        let mut child = Reaped(child);
        drop((initrd, vmlinux));
        let last_output = Arc::new(AtomicU64::new(0));
        let console = capture_console(child.0.stdout.take(), start, Arc::clone(&last_output));
        let stderr = collect(child.0.stderr.take());
        let silence = || {
            let last = Duration::from_millis(last_output.load(Ordering::Relaxed));
            start.elapsed().saturating_sub(last)
        };
        let mut stdin = child.0.stdin.take();
        let mut nudged_at = Duration::ZERO;
        let silent_too_long = || {
            if let (Some(after), Some(stdin)) = (self.nudge, stdin.as_mut()) {
                let now = start.elapsed();
                if silence() > after && now.saturating_sub(nudged_at) > after {
                    nudged_at = now;
                    // A guest that stopped reading is for the silence limit.
                    if stdin.write_all(b"\n").is_ok() {
                        self.nudges.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.silence_limit.is_some_and(|limit| silence() > limit)
        };
        let end = wait_until(&mut child.0, deadline, silent_too_long)?;
        let console = console.join().unwrap_or_else(|_| Console::new(start));
        let first_output = console.first_output();
        let console = console.into_bytes();
        let stderr = stderr.join().unwrap_or_default();
        let status = match end {
            Waited::Exited(status) => status,
            Waited::TimedOut => {
                return Ok(RunOutcome {
                    end: RunEnd::Timeout,
                    console,
                    first_output,
                    total: start.elapsed(),
                });
            }
        };
        if !status.success() {
            bail!(
                "{QEMU_BINARY} failed ({status}): {}\n\
                 Note: a kernel that is missing or not a bzImage, or a --memory QEMU \
                 cannot allocate, are the usual causes",
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        Ok(RunOutcome {
            end: RunEnd::Reset,
            console,
            first_output,
            total: start.elapsed(),
        })
    }
}

/// A value inside a QEMU `key=value,...` option: a comma is written twice.
fn escape_commas(value: &OsStr) -> OsString {
    let mut escaped = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        escaped.push(b);
        if b == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
}

/// Runs in QEMU's process between fork and exec. Has the kernel SIGKILL
/// QEMU when the thread that started it dies: a builder killed mid-build
/// (SIGKILL, no unwinding) must not leave a guest running on with no one to
/// enforce its timeout. Then lets QEMU, and only QEMU, inherit the
/// initramfs memfd and the unpacked kernel's, if any.
fn prepare_child(
    parent: nix::unistd::Pid,
    initrd: RawFd,
    vmlinux: Option<RawFd>,
) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the prctl took effect.
    if nix::unistd::getppid() != parent {
        // ESRCH: the builder is gone (no allocation between fork and exec).
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    for fd in std::iter::once(initrd).chain(vmlinux) {
        // SAFETY: fcntl on a descriptor number; a bad one only fails.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `initramfs` with zeros appended (which the kernel's unpacker skips),
/// for a PVH boot. QEMU 10.0 puts a PVH kernel's initrd as high as it goes,
/// ending in the last page of RAM, where microvm keeps its ACPI tables
/// (832 bytes with one disk): an archive whose end fell on them broke the
/// FADT and the DSDT, and the kernel found no disk. The archive is padded
/// to a length 1024 past a page boundary, so it ends 3 KiB below the top.
fn pvh_padded(initramfs: &[u8]) -> Vec<u8> {
    const PAGE: usize = 4096;
    const PAST_PAGE: usize = 1024;
    let pad = (PAST_PAGE + PAGE - initramfs.len() % PAGE) % PAGE;
    let mut padded = Vec::with_capacity(initramfs.len() + pad);
    padded.extend_from_slice(initramfs);
    padded.resize(initramfs.len() + pad, 0);
    padded
}

/// A child killed and reaped when dropped, however the run returns: an
/// error while waiting must not leave QEMU running on.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum Waited {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Waits for `child` until `deadline`, or until `stuck` says so, then
/// kills it; stops at a signal ([`crate::interrupt`]), leaving the kill to
/// the caller's [`Reaped`].
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    mut stuck: impl FnMut() -> bool,
) -> Result<Waited> {
    loop {
        if let Some(status) = child.try_wait().context("failed to wait for QEMU")? {
            return Ok(Waited::Exited(status));
        }
        // Stopped here, the guest ends with the run ([`Reaped`] kills it).
        crate::interrupt::check()?;
        if Instant::now() >= deadline || stuck() {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Waited::TimedOut);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Reads QEMU's stdout (the serial console) on a thread into a bounded
/// [`Console`], keeping in `last_output` when it last read anything (in
/// milliseconds since `start`).
fn capture_console(
    stdout: Option<impl Read + Send + 'static>,
    start: Instant,
    last_output: Arc<AtomicU64>,
) -> JoinHandle<Console> {
    thread::spawn(move || {
        let mut console = Console::new(start);
        let Some(mut stdout) = stdout else {
            return console;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            last_output.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            // Writing into memory cannot fail.
            let _ = console.write_all(&buf[..n]);
        }
        console
    })
}

fn collect(stream: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_end(&mut out);
        }
        out
    })
}

/// One vCPU, or one per disk up to the host's cores: a guest formatting
/// several templates runs their formatters at once, and QEMU runs each
/// vCPU on a host thread (TCG too), so they format side by side. Three
/// templates in one boot took 1.09 s against 1.13 s on one vCPU (medians
/// of 8, this 2-core host).
fn vcpus(disks: usize) -> usize {
    disks.clamp(1, crate::host::cores())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> GuestSpec {
        GuestSpec {
            kernel: dir.join("bzImage"),
            initramfs: b"not really".to_vec(),
            cmdline: "console=ttyS0 ktstr.fs=btrfs".into(),
            disks: vec![dir.join("disk,with,commas.img")],
            memory_mib: 128,
            timeout: Duration::from_secs(30),
            devices: DeviceDiscovery::CommandLine,
            vmlinux: None,
        }
    }

    #[test]
    fn the_command_line_carries_the_spec() {
        let runner = QemuRunner::at(QEMU_BINARY.into(), Accel::Tcg);
        let dir = Path::new("/d");
        let args: Vec<String> = runner
            .args(&spec(dir), &spec(dir).kernel, Path::new("/proc/self/fd/9"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-accel"), "tcg");
        assert_eq!(after("-m"), "128M");
        let append = after("-append");
        assert!(
            append.starts_with("console=ttyS0 ktstr.fs=btrfs tsc=reliable"),
            "{append}"
        );
        assert_eq!(
            append.contains("tsc_early_khz="),
            crate::host::tsc_khz().is_some()
        );
        assert_eq!(after("-kernel"), "/d/bzImage");
        assert_eq!(after("-initrd"), "/proc/self/fd/9");
        assert!(after("-drive").starts_with("file=/d/disk,,with,,commas.img,"));
        assert_eq!(
            after("-device"),
            "virtio-blk-device,drive=disk0,serial=disk0"
        );
        assert!(args.contains(&"-no-reboot".to_owned()));
        assert_eq!(after("-M"), "microvm,acpi=off");
        let mut stock = spec(dir);
        stock.devices = DeviceDiscovery::Acpi;
        let args = runner.args(&stock, &stock.kernel, Path::new("/i"));
        let at = args.iter().position(|a| a == "-M").unwrap();
        assert_eq!(args[at + 1], "microvm,acpi=on,pic=off");
        // Its only tick is the APIC timer.
        let at = args.iter().position(|a| a == "-append").unwrap();
        assert!(!args[at + 1].to_str().unwrap().contains("noapictimer"));
    }

    #[test]
    fn a_guest_gets_a_vcpu_a_disk_up_to_the_cores() {
        assert_eq!((vcpus(0), vcpus(1)), (1, 1));
        assert_eq!(vcpus(64), crate::host::cores());
    }

    #[test]
    fn each_disk_gets_a_drive_and_a_device_with_its_serial() {
        let runner = QemuRunner::at(QEMU_BINARY.into(), Accel::Tcg);
        let mut spec = spec(Path::new("/d"));
        spec.disks = vec!["/d/a.img".into(), "/d/b.img".into()];
        let args: Vec<String> = runner
            .args(&spec, &spec.kernel, Path::new("/i"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let values = |flag: &str| -> Vec<&str> {
            let at = args.iter().enumerate().filter(|(_, a)| *a == flag);
            at.map(|(i, _)| args[i + 1].as_str()).collect()
        };
        assert_eq!(
            values("-device"),
            [
                "virtio-blk-device,drive=disk0,serial=disk0",
                "virtio-blk-device,drive=disk1,serial=disk1"
            ]
        );
        assert_eq!(values("-smp"), [crate::host::cores().min(2).to_string()]);
        let drives = values("-drive");
        assert!(drives[0].starts_with("file=/d/a.img,") && drives[0].contains("id=disk0,"));
        assert!(drives[1].starts_with("file=/d/b.img,") && drives[1].contains("id=disk1,"));
    }

    #[test]
    fn only_a_tcg_guest_is_told_the_tsc_rate() {
        let args = |accel| {
            let runner = QemuRunner::at(QEMU_BINARY.into(), accel);
            let spec = spec(Path::new("/d"));
            let args = runner.args(&spec, &spec.kernel, Path::new("/i"));
            let at = args.iter().position(|a| a == "-append").unwrap();
            args[at + 1].clone().into_string().unwrap()
        };
        assert_eq!(args(Accel::Kvm), "console=ttyS0 ktstr.fs=btrfs");
        assert!(args(Accel::Tcg).contains("tsc=reliable"));
        assert_eq!(
            tcg_cmdline("x", Some(2_596_152)),
            "x tsc=reliable tsc_early_khz=2596152 noapictimer"
        );
        assert_eq!(tcg_cmdline("x", None), "x tsc=reliable noapictimer");
        // The nested lane's KVM host keeps its APIC timer.
        let runner = QemuRunner::at(QEMU_BINARY.into(), Accel::Tcg).keep_apic_timer();
        let spec = spec(Path::new("/d"));
        let args = runner.args(&spec, &spec.kernel, Path::new("/i"));
        let at = args.iter().position(|a| a == "-append").unwrap();
        let append = args[at + 1].to_str().unwrap();
        assert!(append.contains("tsc=reliable") && !append.contains("noapictimer"));
    }

    #[test]
    fn a_timeout_past_the_end_of_time_is_an_error_before_qemu_starts() {
        // A binary that cannot start: reaching the spawn would say so.
        let runner = QemuRunner::at("/nonexistent/qemu".into(), Accel::Tcg);
        let mut spec = spec(Path::new("/d"));
        spec.timeout = Duration::MAX;
        let err = format!("{:#}", runner.run(&spec).unwrap_err());
        assert!(err.contains("is too long"), "{err}");
    }

    /// An executable shell script `body` in `dir`, standing in for QEMU.
    fn fake_qemu(dir: &Path, body: &str) -> PathBuf {
        let fake = dir.join("qemu");
        crate::testutil::script(&fake, body);
        fake
    }

    #[test]
    fn a_guest_that_goes_silent_is_stopped_at_the_silence_limit() {
        // A stand-in for QEMU: prints a line, then nothing, for a minute.
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_qemu(dir.path(), "echo booting\nexec sleep 60");
        let runner = QemuRunner::at(fake, Accel::Tcg).silence_limit(Duration::from_secs(1));
        let start = Instant::now();
        let out = runner.run(&spec(dir.path())).unwrap();
        assert_eq!(out.end, RunEnd::Timeout);
        assert_eq!(out.console_text(), "booting\n");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_pvh_initrd_ends_3_kib_below_a_page_boundary() {
        for len in [0, 1, 1023, 1024, 1025, 4095, 4096, 15_658_739] {
            let padded = pvh_padded(&vec![7; len]);
            assert_eq!(padded.len() % 4096, 1024, "{len}");
            assert!(padded.len() >= len && padded.len() < len + 4096, "{len}");
            assert!(padded[len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn a_silent_guest_is_nudged_on_its_console_and_goes_on() {
        // A stand-in for QEMU: prints a line, then waits for input.
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_qemu(dir.path(), "echo booting\nread line\necho woke");
        let runner = QemuRunner::at(fake, Accel::Tcg)
            .nudge_when_silent(Duration::from_millis(500))
            .silence_limit(Duration::from_secs(30));
        let out = runner.run(&spec(dir.path())).unwrap();
        assert_ne!(out.end, RunEnd::Timeout);
        assert_eq!(out.console_text(), "booting\nwoke\n");
        assert_eq!(runner.nudges(), 1);
    }

    #[test]
    fn only_the_child_that_asks_inherits_the_initramfs() {
        let fd = memfd("test", b"cpio").unwrap();
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "other children would inherit it"
        );
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let read_by = |cmd: &mut Command| cmd.arg(&path).output().unwrap().status.success();
        assert!(!read_by(&mut Command::new("cat")));
        let raw = fd.as_raw_fd();
        let mut asks = Command::new("cat");
        let parent = nix::unistd::getpid();
        // SAFETY: as in `run`: only async-signal-safe calls.
        unsafe { asks.pre_exec(move || prepare_child(parent, raw, None)) };
        assert!(read_by(&mut asks));
    }

    #[test]
    fn a_console_that_never_stops_keeps_only_its_tail() {
        use std::io::Read as _;
        let endless = std::io::repeat(b'x').take(3 * crate::outcome::CONSOLE_LIMIT as u64);
        let tail = std::io::Cursor::new(b"the end\n".to_vec());
        let last = Arc::new(AtomicU64::new(0));
        let console = capture_console(Some(endless.chain(tail)), Instant::now(), last)
            .join()
            .unwrap();
        assert!(console.bytes().len() <= crate::outcome::CONSOLE_LIMIT);
        assert!(console.bytes().ends_with(b"xthe end\n"));
        assert!(console.first_output().is_some());
    }

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        drop(Reaped(child));
        // Reaped, not a zombie: the pid no longer exists.
        assert_eq!(
            nix::sys::signal::kill(pid, None),
            Err(nix::errno::Errno::ESRCH)
        );
    }

    #[test]
    fn a_qemu_that_cannot_start_is_an_error_with_its_stderr() {
        let Ok(runner) = QemuRunner::find(Accel::Tcg) else {
            assert!(std::env::var_os("CI").is_none(), "CI installs QEMU");
            return eprintln!("skipped: {QEMU_BINARY} is not installed");
        };
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        // The disk, commas and all, opens; the kernel does not exist.
        std::fs::File::create(&spec.disks[0])
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let err = runner.run(&spec).unwrap_err().to_string();
        assert!(
            err.contains("qemu-system-x86_64 failed") && err.contains("bzImage"),
            "{err}"
        );
    }
}
