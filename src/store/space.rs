//! Space on disk: the allocated size of an entry, the free space of the
//! filesystem under the root, and how both are written for people.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The bytes allocated to `path` (st_blocks, not the apparent length), summed
/// over a directory tree. Symlinks count as themselves and are never followed;
/// a name that vanishes meanwhile counts as zero.
pub(crate) fn allocated_bytes(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut pending: Vec<PathBuf> = vec![path.to_owned()];
    // An explicit stack rather than recursion: a hostile tree may be deep.
    while let Some(next) = pending.pop() {
        let meta = match fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            let entries = match fs::read_dir(&next) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                pending.push(entry?.path());
            }
        }
    }
    Ok(total)
}

/// Free bytes of the filesystem holding `root`, by statvfs.
pub(crate) fn free_bytes(root: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(root)?;
    Ok(st.blocks_free() * st.fragment_size())
}

/// Bytes of the filesystem holding `root` available to unprivileged users
/// (statvfs `f_bavail`, what `df` shows as Avail): what `--min-free` wants.
pub(crate) fn available_bytes(root: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(root)?;
    Ok(st.blocks_available() * st.fragment_size())
}

/// The size of the filesystem that holds, or would hold, `path`: that of
/// its nearest existing ancestor.
pub(crate) fn filesystem_bytes(path: &Path) -> io::Result<u64> {
    let mut probe = path;
    loop {
        match nix::sys::statvfs::statvfs(probe) {
            Ok(st) => return Ok(st.blocks() * st.fragment_size()),
            Err(nix::errno::Errno::ENOENT) => match probe.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
                _ => return Err(io::Error::from(io::ErrorKind::NotFound)),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// Commits the filesystem holding `root`, so statvfs shows what removals
/// gave back: btrfs and ext4 count freed blocks as free only once their
/// transaction or journal commits.
pub(crate) fn commit(root: &Path) -> io::Result<()> {
    // xfs's statfs flushes its deferred inode inactivation itself, so it
    // counts freed blocks without a commit, which there costs a log force
    // (110 ms after 10,000 unlinks, a tenth of the sweep).
    use nix::sys::statfs::{XFS_SUPER_MAGIC, statfs};
    if statfs(root).is_ok_and(|st| st.filesystem_type() == XFS_SUPER_MAGIC) {
        return Ok(());
    }
    let dir = fs::File::open(root)?;
    nix::unistd::syncfs(dir.as_fd())?;
    Ok(())
}

/// `0 B`, `512 B`, `4.0 KiB`, `412 MiB`, `1.2 GiB`: one decimal below ten.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn human_sizes_read_like_the_issue() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(412 << 20), "412 MiB");
        assert_eq!(human_bytes(1288490189), "1.2 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn allocated_size_counts_blocks_not_length_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        // A sparse 64 MiB file allocates (almost) nothing.
        let sparse = fs::File::create(tree.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        let mut dense = fs::File::create(tree.join("dense")).unwrap();
        dense.write_all(&vec![1u8; 1 << 20]).unwrap();
        dense.sync_all().unwrap();
        // A link to a large file outside the tree must not be followed.
        let outside = dir.path().join("outside");
        fs::write(&outside, vec![1u8; 4 << 20]).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        let size = allocated_bytes(&tree).unwrap();
        assert!((1 << 20..2 << 20).contains(&size), "{size}");
        assert_eq!(allocated_bytes(&dir.path().join("missing")).unwrap(), 0);
    }
}
