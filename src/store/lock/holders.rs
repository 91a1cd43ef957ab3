//! Who holds a flock, from /proc/locks, for "waiting for pid P" and
//! "in use by pid P".

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// One process holding a lock, as /proc/locks tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub exclusive: bool,
}

/// The processes holding a flock on `path`, from /proc/locks. Empty when it
/// cannot be told (no /proc, or a holder in another pid namespace).
pub fn holders(path: &Path) -> Vec<Holder> {
    let (Ok(meta), Ok(locks)) = (
        std::fs::symlink_metadata(path),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return Vec::new();
    };
    let (major, minor) = superblock_device(path).unwrap_or_else(|| {
        let dev = meta.dev();
        (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
    });
    // /proc/locks writes the device as "%02x:%02x:%lu" (major, minor, inode).
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    parse_proc_locks(&locks, &want)
}

/// The device of the superblock `path` lives on, as /proc/locks names it.
/// On btrfs `st_dev` is a subvolume's anonymous device instead, so the
/// mount's own line of /proc/self/mountinfo (by statx's mount id) tells it.
fn superblock_device(path: &Path) -> Option<(u64, u64)> {
    // O_PATH: statx needs no read access, and a FIFO is not opened for I/O.
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let (_, mount) = crate::store::tree::mount_id(std::os::fd::AsFd::as_fd(&fd)).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo_device(&mountinfo, mount?)
}

/// Field 3 (`major:minor`) of the mountinfo line whose field 1 is `mount`.
fn mountinfo_device(mountinfo: &str, mount: u64) -> Option<(u64, u64)> {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').next() == Some(&mount.to_string()))?;
    let (major, minor) = line.split(' ').nth(2)?.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Every inode /proc/locks lists a lock on (held or waited for, of any
/// kind, on any device): one read for a whole sweep. `None` when /proc/locks
/// cannot be read. An inode not in it had no lock when it was read.
pub(crate) fn locked_inodes() -> Option<std::collections::HashSet<u64>> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    Some(parse_locked_inodes(&text))
}

/// The inode of each line's `major:minor:inode` field.
fn parse_locked_inodes(text: &str) -> std::collections::HashSet<u64> {
    text.lines()
        .filter_map(|line| {
            let field = line
                .split_whitespace()
                .find(|f| f.matches(':').count() == 2)?;
            field.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

fn parse_proc_locks(text: &str, device_inode: &str) -> Vec<Holder> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Waiters are listed as "N: -> FLOCK ..."; only holders count.
            if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&device_inode) {
                return None;
            }
            let pid = fields.get(4)?.parse().ok()?;
            Some(Holder {
                pid,
                exclusive: fields.get(3) == Some(&"WRITE"),
            })
        })
        .collect()
}

/// "pid 123" / "pids 123, 456" / "an unknown process", from /proc/locks.
pub(crate) fn describe_holders(path: &Path) -> String {
    let pids: Vec<i32> = holders(path).iter().map(|h| h.pid).collect();
    describe_pids(&pids)
}

/// "pid 123 (alice)" / "pids 123 (alice), 456 (bob)" / "an unknown
/// process"; a pid of 0 (a holder that cannot be named) counts as unknown.
/// Each pid's user is its /proc directory's owner, where that can be read.
pub(crate) fn describe_pids(pids: &[i32]) -> String {
    let known: Vec<String> = pids
        .iter()
        .filter(|p| **p > 0)
        .map(|p| match std::fs::metadata(format!("/proc/{p}")) {
            Ok(meta) => format!("{p} ({})", crate::store::share::user_name(meta.uid())),
            Err(_) => p.to_string(),
        })
        .collect();
    match known.len() {
        0 => "an unknown process (not visible in /proc/locks)".to_owned(),
        1 => format!("pid {}", known[0]),
        _ => format!("pids {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_inode_counts_held_or_waited_for() {
        let text = "1: FLOCK  ADVISORY  WRITE 7 00:2d:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 8 00:2d:99 0 EOF\n\
                    2: POSIX  ADVISORY  READ 9 fd:01:42 0 EOF\n\
                    3: OFDLCK ADVISORY  READ -1 00:05:7 0 EOF\n";
        let inodes = parse_locked_inodes(text);
        for ino in [1234, 99, 42, 7] {
            assert!(inodes.contains(&ino), "{ino}");
        }
        assert_eq!(inodes.len(), 4);
    }

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2a:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 00:2a:1234 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 77 00:2a:1234 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 88 00:2a:1234 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 99 00:2a:9999 0 EOF\n";
        assert_eq!(
            parse_proc_locks(text, "00:2a:1234"),
            vec![
                Holder {
                    pid: 4242,
                    exclusive: true
                },
                Holder {
                    pid: 77,
                    exclusive: false
                }
            ]
        );
    }

    #[test]
    fn the_superblock_device_comes_from_the_mounts_line() {
        let info = "29 1 0:26 / / rw,relatime - btrfs /dev/loop0 rw\n\
                    31 29 7:3 / /mnt rw - xfs /dev/loop3 rw\n";
        assert_eq!(mountinfo_device(info, 29), Some((0, 26)));
        assert_eq!(mountinfo_device(info, 31), Some((7, 3)));
        assert_eq!(mountinfo_device(info, 3), None);
    }
}
