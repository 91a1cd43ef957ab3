//! The template mode: format each disk, sync it, check its superblock,
//! optionally mount it read-only, and print its result line
//! ([`crate::guest::protocol`]).

use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};

use super::disks::find_disks;
use super::helpers::{disk_hash, mount_pseudo, print_line};
use super::modules::{self, DISK_DEADLINE, MODULES_DIR};
use crate::formatter::filesystem::Filesystem;
use crate::guest::protocol::{
    TemplateResult, Verified, Verify, filesystems_from_cmdline, formatter_path,
};

/// The status reported when init could not run the formatter at all, as a
/// shell reports a command it cannot run.
pub(super) const STATUS_INIT_FAILED: i32 = 127;

pub(super) fn init_failed(output: String) -> TemplateResult {
    TemplateResult {
        status: STATUS_INIT_FAILED,
        magic: false,
        verified: None,
        output,
    }
}

/// Mounts what the formatters need, then formats, syncs and checks each
/// disk, printing its result line as it goes.
pub(super) fn format_disks(cmdline: &str) -> Result<()> {
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
