//! `qemu-system-x86_64 -M microvm` as a [`super::GuestRunner`].
//!
//! The disk is a virtio-mmio block device (QEMU announces it on the kernel
//! command line itself), the console is the 8250 on stdout, and
//! `-no-reboot` turns the guest's reset into QEMU's exit. A microvm without
//! ACPI cannot power off, so an exit with status 0 is the guest's reset.
//! The initramfs reaches QEMU as an inherited memfd, so no file is left
//! behind whichever way the run ends.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::{GuestRunner, GuestSpec, RunEnd, RunOutcome};

/// The QEMU binary this runner needs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The Debian package that ships it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

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
}

impl QemuRunner {
    /// Finds QEMU on PATH; `accel` as the caller decided.
    pub fn find(accel: Accel) -> Result<Self> {
        let binary = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join(QEMU_BINARY))
            .find(|p| p.is_file());
        match binary {
            Some(binary) => Ok(QemuRunner { binary, accel }),
            None => bail!(
                "{QEMU_BINARY} is not on PATH: install the `{QEMU_PACKAGE}` package \
                 (on Debian 12 from bookworm-backports)"
            ),
        }
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    fn args(&self, spec: &GuestSpec, initrd: &Path) -> Vec<OsString> {
        let (accel, cpu) = match self.accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", "max"),
        };
        let mut drive = OsString::from("file=");
        drive.push(escape_commas(spec.disk.as_os_str()));
        // Report write errors to the guest: QEMU's default (werror=enospc)
        // pauses the VM on a full host disk, and the run would sit out its
        // timeout instead of failing.
        drive.push(",format=raw,if=none,id=disk0,werror=report,rerror=report");
        let memory = format!("{}M", spec.memory_mib);
        #[rustfmt::skip]
        let fixed = [
            "-M", "microvm,acpi=off", "-accel", accel, "-cpu", cpu, "-m", &memory,
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-no-reboot", "-append", &spec.cmdline,
            "-device", "virtio-blk-device,drive=disk0",
        ];
        let mut args: Vec<OsString> = fixed.iter().map(OsString::from).collect();
        args.extend([
            "-kernel".into(),
            spec.kernel.clone().into_os_string(),
            "-initrd".into(),
            initrd.as_os_str().to_owned(),
            "-drive".into(),
            drive,
        ]);
        args
    }
}

impl GuestRunner for QemuRunner {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn run(&self, spec: &GuestSpec) -> Result<RunOutcome> {
        let initrd = initramfs_memfd(&spec.initramfs)?;
        // QEMU opens the inherited descriptor through its own /proc/self/fd.
        let initrd_path = PathBuf::from(format!("/proc/self/fd/{}", initrd.as_raw_fd()));
        let start = Instant::now();
        let mut cmd = Command::new(&self.binary);
        let parent = nix::unistd::getpid();
        // SAFETY: the hook runs in the forked child before exec; it calls
        // only prctl and getppid, which are async-signal-safe, and does not
        // allocate.
        unsafe { cmd.pre_exec(move || die_with_parent(parent)) };
        let mut child = cmd
            .args(self.args(spec, &initrd_path))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to run `{}`", self.binary.display()))?;
        drop(initrd);
        let console = Console::capture(child.stdout.take(), start);
        let stderr = collect(child.stderr.take());
        let end = wait_until(&mut child, start + spec.timeout)?;
        let (console, first_output) = console.finish();
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
                "{QEMU_BINARY} failed ({status}): {}",
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

/// Has the kernel SIGKILL QEMU when the thread that started it dies: a
/// builder killed mid-build (SIGKILL, no unwinding) must not leave a guest
/// running on with no one to enforce its timeout.
fn die_with_parent(parent: nix::unistd::Pid) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the prctl took effect.
    if nix::unistd::getppid() != parent {
        // ESRCH: the builder is gone (no allocation between fork and exec).
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// The initramfs in an anonymous file QEMU inherits (no close-on-exec).
fn initramfs_memfd(bytes: &[u8]) -> Result<OwnedFd> {
    let fd = memfd_create("ktstr-initramfs", MFdFlags::empty())
        .context("failed to create a memfd for the initramfs")?;
    let mut file = File::from(fd);
    file.write_all(bytes)
        .context("failed to write the initramfs into a memfd")?;
    let fd = OwnedFd::from(file);
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .context("failed to let QEMU inherit the initramfs memfd")?;
    Ok(fd)
}

enum Waited {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Waits for `child` until `deadline`, then kills it.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Waited> {
    loop {
        if let Some(status) = child.try_wait().context("failed to wait for QEMU")? {
            return Ok(Waited::Exited(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Waited::TimedOut);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The serial console, read on a thread, with the time of its first byte.
struct Console {
    thread: JoinHandle<Vec<u8>>,
    first: Arc<Mutex<Option<Duration>>>,
}

impl Console {
    fn capture(stdout: Option<impl Read + Send + 'static>, start: Instant) -> Console {
        let first = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&first);
        let thread = thread::spawn(move || {
            let mut console = Vec::new();
            let Some(mut stdout) = stdout else {
                return console;
            };
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if console.is_empty() {
                    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(start.elapsed());
                }
                console.extend_from_slice(&buf[..n]);
            }
            console
        });
        Console { thread, first }
    }

    fn finish(self) -> (Vec<u8>, Option<Duration>) {
        let console = self.thread.join().unwrap_or_default();
        let first = *self.first.lock().unwrap_or_else(|e| e.into_inner());
        (console, first)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> GuestSpec {
        GuestSpec {
            kernel: dir.join("bzImage"),
            initramfs: b"not really".to_vec(),
            cmdline: "console=ttyS0 ktstr.fs=btrfs".into(),
            disk: dir.join("disk,with,commas.img"),
            memory_mib: 128,
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_command_line_carries_the_spec() {
        let runner = QemuRunner {
            binary: QEMU_BINARY.into(),
            accel: Accel::Tcg,
        };
        let dir = Path::new("/d");
        let args: Vec<String> = runner
            .args(&spec(dir), Path::new("/proc/self/fd/9"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-accel"), "tcg");
        assert_eq!(after("-m"), "128M");
        assert_eq!(after("-append"), "console=ttyS0 ktstr.fs=btrfs");
        assert_eq!(after("-kernel"), "/d/bzImage");
        assert_eq!(after("-initrd"), "/proc/self/fd/9");
        assert!(after("-drive").starts_with("file=/d/disk,,with,,commas.img,"));
        assert!(args.contains(&"-no-reboot".to_owned()));
        assert_eq!(runner.accel(), Accel::Tcg);
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
        std::fs::File::create(&spec.disk)
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
