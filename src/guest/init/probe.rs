//! The probe mode in the guest: mount the per-test image read-write, write
//! the file named for the test, read it back (the protocol is in
//! [`crate::guest::probe`]).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::helpers::{mount_disk, mount_pseudo, print_line, unmount_disk};
use super::{disks, modules};
use crate::formatter::filesystem::Filesystem;
use crate::guest::probe::{DISK_PARAM, NAME_PARAM, probe_contents};
use crate::guest::protocol::DISK;

/// Where the guest mounts the disk.
const MOUNT: &str = "/disk";

/// The value of `param=` on a command line.
fn param<'a>(cmdline: &'a str, param: &str) -> Result<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(param)?.strip_prefix('='))
        .with_context(|| format!("no {param}= on the kernel command line `{cmdline}`"))
}

/// The guest side, in the init: mount, write, read back, unmount.
pub(super) fn run_in_guest(cmdline: &str) -> Result<String> {
    let name = param(cmdline, NAME_PARAM)?;
    let fs: Filesystem = param(cmdline, DISK_PARAM)?
        .parse()
        .map_err(anyhow::Error::msg)?;
    mount_pseudo("devtmpfs", "/dev")?;
    mount_pseudo("sysfs", "/sys")?;
    let modules_dir = Path::new(modules::MODULES_DIR);
    for skipped in modules::load_modules(modules_dir)? {
        print_line(&format!(
            "cargo-ktstr init: optional module not loaded: {skipped}\n"
        ));
    }
    // One disk: the kernel names it vda.
    let deadline = modules::DISK_DEADLINE;
    disks::find_disks(Path::new("/sys/block"), 1, deadline)?;
    mount_disk(fs.name(), MOUNT)?;
    let written = write_and_read_back(name);
    unmount_disk(MOUNT);
    let path = written?;
    Ok(format!(
        "wrote and read back {path} on {DISK} ({fs}, read-write)"
    ))
}

fn write_and_read_back(name: &str) -> Result<String> {
    let path = format!("{MOUNT}/{name}");
    let contents = probe_contents(name);
    let mut file = fs::File::create(&path).with_context(|| format!("failed to create {path}"))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write {path}"))?;
    let back = fs::read_to_string(&path).with_context(|| format!("failed to read {path} back"))?;
    if back != contents {
        bail!("{path} read back {back:?}, not the {contents:?} written");
    }
    Ok(format!("/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_the_command_line() {
        assert_eq!(
            param("x ktstr.probe=t-1 ktstr.disk=ext4", NAME_PARAM).unwrap(),
            "t-1"
        );
        let err = param("x ktstr.disk=ext4", NAME_PARAM)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no ktstr.probe="), "{err}");
    }
}
