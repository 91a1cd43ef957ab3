//! What every mode of PID 1 uses: pseudo-filesystem and disk mounts, the
//! console, a disk's hash.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};

use crate::guest::protocol::DISK;

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
