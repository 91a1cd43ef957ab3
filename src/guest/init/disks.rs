//! In the guest: which block device is which template's disk. The runner
//! gives disk `i` the virtio serial `disk<i>` ([`crate::runner::disk_serial`])
//! and the kernel names the disks `vda`, `vdb`, ... in whatever order it
//! probes them, so init finds each by its serial in `/sys/block`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::runner::disk_serial;

/// Waits until disks `0..count` are all there, polling `sys_block`
/// (`/sys/block`) for at most `deadline`; their device paths in `/dev`, in
/// disk order.
pub(crate) fn find_disks(
    sys_block: &Path,
    count: usize,
    deadline: Duration,
) -> Result<Vec<PathBuf>> {
    let start = Instant::now();
    loop {
        let found = scan(sys_block, count);
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        if start.elapsed() >= deadline {
            let missing: Vec<String> = (found.iter().enumerate())
                .filter(|(_, f)| f.is_none())
                .map(|(i, _)| disk_serial(i))
                .collect();
            bail!(
                "no virtio-blk disk with serial {} after {} s: the kernel found {} of {count} \
                 disks (a stock kernel needs the VMM to describe its disks in ACPI; a kernel \
                 without modules needs VIRTIO_BLK and VIRTIO_MMIO_CMDLINE_DEVICES built in)",
                missing.join(", "),
                deadline.as_secs(),
                count - missing.len()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Disk `i`'s device where `/sys/block/vdX/serial` says `disk<i>`.
fn scan(sys_block: &Path, count: usize) -> Vec<Option<PathBuf>> {
    let mut found = vec![None; count];
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with("vd")) else {
            continue;
        };
        let Ok(serial) = std::fs::read_to_string(entry.path().join("serial")) else {
            continue;
        };
        let serial = serial.trim();
        if let Some(slot) = (0..count).find(|&i| disk_serial(i) == serial) {
            found[slot] = Some(Path::new("/dev").join(name));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sys: &Path, name: &str, serial: &str) {
        let dir = sys.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("serial"), format!("{serial}\n")).unwrap();
    }

    #[test]
    fn disks_are_found_by_serial_whatever_the_kernel_named_them() {
        let sys = tempfile::tempdir().unwrap();
        disk(sys.path(), "vda", "disk2");
        disk(sys.path(), "vdb", "disk0");
        disk(sys.path(), "vdc", "disk1");
        std::fs::create_dir(sys.path().join("loop0")).unwrap();
        let found = find_disks(sys.path(), 3, Duration::ZERO).unwrap();
        assert_eq!(
            found,
            ["/dev/vdb", "/dev/vdc", "/dev/vda"].map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_disk_is_named_after_the_deadline() {
        let sys = tempfile::tempdir().unwrap();
        disk(sys.path(), "vda", "disk0");
        let err = find_disks(sys.path(), 2, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("serial disk1") && err.contains("1 of 2"),
            "{err}"
        );
    }
}
