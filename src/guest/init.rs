//! PID 1 in the template guest: mount what mkfs needs, load the modules a
//! stock kernel needs for its disks ([`super::modules`]), find each disk by
//! its serial ([`super::disks`]), format it, check the result, print one
//! result line per disk ([`super::protocol`]) and reboot.
//! With `ktstr.mode=checks` on the command line it runs a list of checks
//! instead ([`super::checks`]), as the nested lane's outer guest; with
//! `ktstr.mode=probe` it writes a file to a per-test image
//! ([`crate::guest::probe`]); with `ktstr.mode=powerloss` it records the
//! cache's operations under dm-log-writes ([`super::powerloss`]). With
//! `ktstr.verify=` it mounts the new filesystem
//! read-only before reporting ([`super::protocol`]).
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
use super::protocol::{
    DISK, INIT_PATH, TemplateResult, Verified, Verify, filesystems_from_cmdline, formatter_path,
};
use crate::formatter::filesystem::Filesystem;

/// The status reported when init could not run the formatter at all, as a
/// shell reports a command it cannot run.
const STATUS_INIT_FAILED: i32 = 127;

/// Whether this process is the template guest's init: PID 1 started as
/// `/init`. PID 1 alone is not enough: as a container's entry point this
/// binary is PID 1 too, and must stay the CLI there.
pub(crate) fn is_guest_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == INIT_PATH)
}

/// Runs as the guest's init; never returns.
pub(crate) fn run() -> ! {
    set_panic_hook(power_cycle);
    let done = match read_cmdline() {
        Ok(cmdline) if cmdline.split_whitespace().any(|a| a == MODE_PARAM) => run_checks(&cmdline),
        Ok(cmdline)
            if cmdline
                .split_whitespace()
                .any(|a| a == crate::guest::probe::MODE_PARAM) =>
        {
            let probed = crate::guest::probe::run_in_guest(&cmdline);
            print_line(
                &crate::guest::probe::ProbeResult {
                    ok: probed.is_ok(),
                    output: probed.unwrap_or_else(|e| format!("{e:#}")),
                }
                .render(),
            );
            power_cycle()
        }
        Ok(cmdline)
            if cmdline
                .split_whitespace()
                .any(|a| a == super::powerloss::MODE_PARAM) =>
        {
            let recorded = super::powerloss::record::run_in_guest(&cmdline);
            print_line(&super::powerloss::render_done(
                recorded.is_ok(),
                &recorded.unwrap_or_else(|e| format!("{e:#}")),
            ));
            power_cycle()
        }
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
    // A /tmp the initramfs fills (a test binary built under a /tmp target
    // directory) must stay visible; the rootfs is writable memory anyway.
    let tmp_is_empty = fs::read_dir("/tmp").map_or(true, |mut d| d.next().is_none());
    if tmp_is_empty {
        mount_pseudo("tmpfs", "/tmp")?;
    }
    super::checks::run_all(cmdline)
}

/// Mounts `/dev/vda`, formatted as `fstype`, at `target`.
pub(crate) fn mount_disk(fstype: &str, target: &str) -> Result<()> {
    mount_disk_at(DISK, fstype, target)
}

/// Mounts block device `disk`, formatted as `fstype`, at `target`.
pub(crate) fn mount_disk_at(disk: &str, fstype: &str, target: &str) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("failed to create {target}"))?;
    mount(
        Some(disk),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("failed to mount {disk} ({fstype}) on {target}"))
}

/// Syncs and unmounts `target`; a failure is printed, the reset syncs anyway.
pub(crate) fn unmount_disk(target: &str) {
    nix::unistd::sync();
    if let Err(e) = nix::mount::umount(target) {
        print_line(&format!(
            "cargo-ktstr init: failed to unmount {target}: {e}\n"
        ));
    }
}

/// Prints `line` on the console in one write, so kernel messages cannot
/// land in the middle of it.
pub(crate) fn print_line(line: &str) {
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
        verified: None,
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
    let verify = Verify::from_cmdline(cmdline);
    let disks = find_disks(Path::new("/sys/block"), filesystems.len(), DISK_DEADLINE)?;
    // Every formatter at once: one's disk writes overlap another's CPU work
    // (mkfs.xfs zeroes a 64 MiB log). Their output is a few lines (`-q`),
    // far below what a pipe holds while an earlier one is waited for.
    let jobs: Vec<_> = filesystems.into_iter().zip(disks).collect();
    let running: Vec<_> = jobs
        .iter()
        .map(|(fs, disk)| spawn_formatter(*fs, disk))
        .collect();
    for (i, ((fs, disk), child)) in jobs.iter().zip(running).enumerate() {
        let result = child
            .and_then(|child| finish_disk(*fs, disk, child, verify))
            .unwrap_or_else(|e| init_failed(format!("{e:#}")));
        print_line(&result.render_for_disk(i));
    }
    Ok(())
}

/// Starts `fs`'s formatter on `disk`, its output piped.
fn spawn_formatter(fs: Filesystem, disk: &Path) -> Result<std::process::Child> {
    let formatter = formatter_path(fs);
    Command::new(&formatter)
        .args(fs.mkfs_args())
        .arg(disk)
        .env_clear()
        .env("PATH", "/sbin:/bin")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run `{formatter}`"))
}

/// Waits for `disk`'s formatter, syncs and checks; the result says how it went.
fn finish_disk(
    fs: Filesystem,
    disk: &Path,
    formatter: std::process::Child,
    verify: Verify,
) -> Result<TemplateResult> {
    let out = formatter
        .wait_with_output()
        .with_context(|| format!("failed to wait for {}", fs.mkfs()))?;
    let status = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .unwrap_or(STATUS_INIT_FAILED);
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    let magic = synced_magic(fs, disk)?;
    // Only a formatted disk is worth mounting; a failed mkfs says why itself.
    let verified = match (verify, status == 0 && magic) {
        (Verify::Off, _) => None,
        (_, false) => Some(Verified::No),
        (_, true) => Some(verify_read_only(fs, disk, verify).unwrap_or_else(|e| {
            output.push_str(&format!("\nverification failed: {e:#}"));
            Verified::No
        })),
    };
    if let Some(Verified::Mounted { blocks, block_size }) = verified {
        output.push_str(&format!(
            "\nverified: mounted read-only, {blocks} blocks of {block_size} bytes"
        ));
    }
    Ok(TemplateResult {
        status,
        magic,
        verified,
        output,
    })
}

/// Where the verification mounts the new filesystem.
const VERIFY_MOUNT: &str = "/verify";

/// Mounts `disk` read-only with this kernel, reads its statfs and
/// unmounts it; under [`Verify::Hash`] the disk must hash the same before
/// the mount and after the unmount.
fn verify_read_only(fs: Filesystem, disk: &Path, verify: Verify) -> Result<Verified> {
    let shown = disk.display();
    let hash = || disk_hash(disk);
    let before = (verify == Verify::Hash).then(hash).transpose()?;
    fs::create_dir_all(VERIFY_MOUNT).with_context(|| format!("failed to create {VERIFY_MOUNT}"))?;
    let data = fs.read_only_mount_data();
    mount(
        Some(disk),
        VERIFY_MOUNT,
        Some(fs.name()),
        MsFlags::MS_RDONLY,
        data,
    )
    .with_context(|| {
        format!(
            "the guest kernel could not mount {shown} ({fs}, ro{}) read-only",
            data.map_or(String::new(), |d| format!(",{d}"))
        )
    })?;
    let stat = nix::sys::statvfs::statvfs(VERIFY_MOUNT);
    nix::mount::umount(VERIFY_MOUNT)
        .with_context(|| format!("failed to unmount {VERIFY_MOUNT}"))?;
    let stat =
        stat.with_context(|| format!("statfs of the read-only mount {VERIFY_MOUNT} failed"))?;
    if let Some(before) = before {
        let after = hash()?;
        print_line(&format!(
            "cargo-ktstr init: {shown} sha256 before mount {before}, after unmount {after}\n"
        ));
        anyhow::ensure!(
            before == after,
            "{shown} changed under the read-only mount (sha256 {before} before, {after} after)"
        );
    }
    Ok(Verified::Mounted {
        blocks: stat.blocks() as u64,
        block_size: stat.fragment_size() as u64,
    })
}

/// The sha256 of the whole disk, in hex.
pub(crate) fn disk_hash(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let shown = path.display();
    let mut disk = File::open(path).with_context(|| format!("failed to open {shown}"))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = disk
            .read(&mut buf)
            .with_context(|| format!("failed to read {shown}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn mount_pseudo(fstype: &str, target: &str) -> Result<()> {
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
