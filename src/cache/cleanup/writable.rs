//! Removing a tree that a dead writer left read-only.
//!
//! Unlinking needs write permission on the directory, not on the file, so a
//! tree of read-only files goes as is; read-only (or unreadable) directories
//! inside it stop `remove_dir_all` for anyone but root. Their owner may add
//! the permission back, so on EACCES the sweep does that and tries once more.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};

/// `remove_dir_all`, retried once after making every directory of the tree
/// writable by its owner. Symlinks are never followed.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::debug!("`{}` has read-only directories: {e}", path.display());
            open_up(path)?;
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Adds u+rwx to every directory under `path` (and `path` itself), top down,
/// so each can then be read. Symlinks and files are left as they are.
fn open_up(path: &Path) -> io::Result<()> {
    let mut pending: Vec<PathBuf> = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let wanted = Mode::from_bits_truncate(mode | 0o700);
            // NoFollowSymlink: the name was a directory a moment ago; should
            // it have become a link, its target is not ours to change.
            fchmodat(AT_FDCWD, &dir, wanted, FchmodatFlags::NoFollowSymlink)?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(())
}
