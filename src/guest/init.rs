//! PID 1 in the template guest: mount what mkfs needs, load the modules a
//! stock kernel needs for its disks ([`super::modules`]), find each disk by
//! its serial ([`super::disks`]), format it, check the result, print one
//! result line per disk ([`super::protocol`]) and reboot.
//! With `ktstr.mode=checks` on the command line it runs a list of checks
//! instead ([`super::checks`]), as the nested lane's outer guest.
//!
//! Every way out ends in a reboot, which the host sees as the end of the
//! run: an error becomes a failed result line, a panic is printed by a hook
//! that also prints a result line and reboots, and should `reboot(2)` itself
//! fail, init exits, the kernel panics, and `panic=-1` resets the machine.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use nix::sys::reboot::{RebootMode, reboot};

use super::checks::MODE_PARAM;
use super::disks::find_disks;
use super::modules::{self, DISK_DEADLINE, MODULES_DIR};
use super::protocol::{DISK, INIT_PATH, TemplateResult, filesystems_from_cmdline, formatter_path};
use crate::cache::filesystem::Filesystem;

/// The status reported when init could not run the formatter at all, as a
/// shell reports a command it cannot run.
const STATUS_INIT_FAILED: i32 = 127;

/// Whether this process is the template guest's init: PID 1 started as
/// `/init`. PID 1 alone is not enough: as a container's entry point this
/// binary is PID 1 too, and must stay the CLI there.
pub fn is_guest_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == INIT_PATH)
}

/// Runs as the guest's init; never returns.
pub fn run() -> ! {
    set_panic_hook(power_cycle);
    let done = match read_cmdline() {
        Ok(cmdline) if cmdline.split_whitespace().any(|a| a == MODE_PARAM) => run_checks(&cmdline),
        Ok(cmdline) => format_disks(&cmdline),
        Err(e) => Err(e),
    };
    // A line without a disk stands for every disk not yet reported.
    if let Err(e) = done {
        report(&init_failed(format!("{e:#}")));
    }
    power_cycle()
}

/// Mounts proc and reads the kernel command line.
fn read_cmdline() -> Result<String> {
    mount_pseudo("proc", "/proc")?;
    fs::read_to_string("/proc/cmdline").context("failed to read /proc/cmdline")
}

/// The check mode: what its programs expect of a system, then the checks.
fn run_checks(cmdline: &str) -> Result<()> {
    mount_pseudo("devtmpfs", "/dev")?;
    mount_pseudo("sysfs", "/sys")?;
    mount_pseudo("tmpfs", "/tmp")?;
    super::checks::run_all(cmdline)
}

/// Mounts `/dev/vda`, formatted as `fstype`, at `target`.
pub(super) fn mount_disk(fstype: &str, target: &str) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("failed to create {target}"))?;
    mount(
        Some(DISK),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("failed to mount {DISK} ({fstype}) on {target}"))
}

/// Syncs and unmounts `target`; a failure is printed, the reset syncs anyway.
pub(super) fn unmount_disk(target: &str) {
    nix::unistd::sync();
    if let Err(e) = nix::mount::umount(target) {
        print_line(&format!(
            "cargo-ktstr init: failed to unmount {target}: {e}\n"
        ));
    }
}

/// Prints `line` on the console in one write, so kernel messages cannot
/// land in the middle of it.
pub(super) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// Has a panic print its message, then a failed result line, then call
/// `end` (the reset; a seam for the test, which cannot reset).
fn set_panic_hook(end: fn() -> !) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        report(&init_failed(format!("cargo-ktstr init panicked: {info}")));
        end();
    }));
}

fn init_failed(output: String) -> TemplateResult {
    TemplateResult {
        status: STATUS_INIT_FAILED,
        magic: false,
        output,
    }
}

/// Mounts what the formatters need, then formats, syncs and checks each
/// disk, printing its result line as it goes.
fn format_disks(cmdline: &str) -> Result<()> {
    // The command line first: without `ktstr.fs=` this is no template
    // guest, and nothing else is touched.
    let filesystems = filesystems_from_cmdline(cmdline).map_err(anyhow::Error::msg)?;
    mount_pseudo("devtmpfs", "/dev")?;
    mount_pseudo("sysfs", "/sys")?;
    for skipped in modules::load_modules(Path::new(MODULES_DIR))? {
        print_line(&format!(
            "cargo-ktstr init: optional module not loaded: {skipped}\n"
        ));
    }
    let disks = find_disks(Path::new("/sys/block"), filesystems.len(), DISK_DEADLINE)?;
    for (i, (fs, disk)) in filesystems.into_iter().zip(disks).enumerate() {
        let result = format_disk(fs, &disk).unwrap_or_else(|e| init_failed(format!("{e:#}")));
        print_line(&result.render_for_disk(i));
    }
    Ok(())
}

/// Formats `disk` with `fs`, syncs and checks; the result says how it went.
fn format_disk(fs: Filesystem, disk: &Path) -> Result<TemplateResult> {
    let formatter = formatter_path(fs);
    let out = Command::new(&formatter)
        .args(fs.mkfs_args())
        .arg(disk)
        .env_clear()
        .env("PATH", "/sbin:/bin")
        .output()
        .with_context(|| format!("failed to run `{formatter}`"))?;
    let status = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .unwrap_or(STATUS_INIT_FAILED);
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(TemplateResult {
        status,
        magic: synced_magic(fs, disk)?,
        output,
    })
}

fn mount_pseudo(fstype: &str, target: &str) -> Result<()> {
    mount(
        Some(fstype),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("failed to mount {fstype} on {target}"))
}

/// Flushes the disk, then reads its superblock magic back.
fn synced_magic(fs: Filesystem, disk: &Path) -> Result<bool> {
    let shown = disk.display();
    nix::unistd::sync();
    File::open(disk)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("failed to flush {shown}"))?;
    fs.path_has_magic(disk)
        .with_context(|| format!("failed to read the superblock of {shown}"))
}

/// Prints the result line on the console.
fn report(result: &TemplateResult) {
    print_line(&result.render());
}

/// Syncs and resets the machine: with `reboot=t` or `reboot=k` and QEMU's
/// `-no-reboot`, the VMM sees the reset and the run ends.
fn power_cycle() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // Only reached if reboot(2) failed: PID 1 exiting panics the kernel,
    // and `panic=-1` turns that into the same reset.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: &str = "guest::init::tests::a_panic_reports_a_failed_result_then_ends_the_run";
    /// Set in the copy of the test binary that panics.
    const CHILD: &str = "KTSTR_TEST_INIT_PANIC";

    #[test]
    fn a_panic_reports_a_failed_result_then_ends_the_run() {
        // A panic hook is process-wide: it is installed in a child process
        // (this test binary running only this test), never in the harness.
        if std::env::var_os(CHILD).is_some() {
            fn end() -> ! {
                std::process::exit(42)
            }
            set_panic_hook(end);
            panic!("the disk vanished");
        }
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(42), "the hook did not end the run");
        let result = TemplateResult::from_console(&out.stdout).expect("no result line");
        assert_eq!(result.status, STATUS_INIT_FAILED);
        assert!(!result.magic);
        assert!(
            result.output.contains("cargo-ktstr init panicked")
                && result.output.contains("the disk vanished"),
            "{}",
            result.output
        );
    }
}
