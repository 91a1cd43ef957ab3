//! Find a published entry and check it.
//!
//! An entry counts only when `<key>/template.img` is a regular file that
//! carries its filesystem's magic and is as large as its key says. Anything
//! else under `<key>/` is reported as invalid, so the next build replaces it,
//! unless `<key>/` holds files no writer of the cache makes there: then it is
//! a user's directory ([`Entry::Foreign`]), never replaced. An image that
//! cannot be read for an I/O error is invalid too (a failing disk tore it).
//! Only a missing entry and an invalid one are misses, and any other stat or
//! read error is an error.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::key::Key;
use super::names;

/// What sits at a key's place in the template root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A published image with its magic: the path of `template.img`.
    Valid(PathBuf),
    /// Something is there but is no usable template; the reason says what.
    Invalid(String),
    /// A directory that holds files this tool never writes into an entry: a
    /// user's, never replaced or removed; the reason says what and where.
    Foreign(String),
    /// Nothing is there.
    Absent,
}

/// [`judge`]'s verdict: like [`Entry`], the reason in a few words about the
/// entry (`template.img is missing`), for a line of `template list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid(String),
    Foreign(String),
    Absent,
}

/// `<root>/<key>`.
pub(crate) fn entry_dir(root: &Path, key: &Key) -> PathBuf {
    root.join(key.to_string())
}

/// `<root>/<key>/template.img`.
pub fn image_path(root: &Path, key: &Key) -> PathBuf {
    entry_dir(root, key).join(names::TEMPLATE_FILE)
}

/// Looks `key` up under `root` and validates what it finds.
pub fn lookup(root: &Path, key: &Key) -> Result<Entry> {
    Ok(match judge(root, key)? {
        Verdict::Valid => Entry::Valid(image_path(root, key)),
        Verdict::Invalid(why) => {
            Entry::Invalid(format!("`{}`: {why}", entry_dir(root, key).display()))
        }
        Verdict::Foreign(why) => Entry::Foreign(format!(
            "`{}` is not a template entry: it {why}. Move it out of the cache root (or pass \
             another --cache-dir) and run again",
            entry_dir(root, key).display()
        )),
        Verdict::Absent => Entry::Absent,
    })
}

/// Judges `<root>/<key>`.
///
/// `<key>` is opened with `O_NOFOLLOW|O_DIRECTORY` and the image relative to
/// it with `O_NOFOLLOW|O_NONBLOCK`, then judged by `fstat`: a symlinked
/// `<key>` never leads a clone outside the root, and a FIFO swapped in never
/// hangs the open.
pub(crate) fn judge(root: &Path, key: &Key) -> Result<Verdict> {
    let dir = entry_dir(root, key);
    let image = image_path(root, key);
    let advice = "check the cache root's permissions, or pass another --cache-dir";
    // Anything invalid may be replaced and removed: first make sure it is
    // not a user's directory that merely wears the key's name.
    let invalid = |why: &str| match crate::store::tree::foreign_file(
        &dir,
        crate::cache::names::ENTRY_FILES,
    ) {
        Ok(Some(foreign)) => Ok(Verdict::Foreign(foreign.to_string())),
        _ => Ok(Verdict::Invalid(why.to_owned())),
    };
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir_fd = match nix::fcntl::open(&dir, dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Verdict::Absent),
        // No writer of the cache puts a file or a symlink at a key's name.
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            return Ok(Verdict::Foreign(
                "is not a directory (a symlink is not followed)".to_owned(),
            ));
        }
        Err(e) => bail!("failed to open `{}`: {e}; {advice}", dir.display()),
    };
    let image_flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::openat(&dir_fd, names::TEMPLATE_FILE, image_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return invalid("template.img is missing"),
        Err(Errno::ELOOP) => return invalid(NOT_A_FILE),
        Err(e) => bail!("failed to open `{}`: {e}; {advice}", image.display()),
    };
    let mut file = File::from(fd);
    let problem = match image_problem(&mut file, key) {
        // What a disk that dropped writes leaves on btrfs (its checksums
        // fail): a torn entry, which the next build replaces.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Some(format!(
            "template.img cannot be read ({e}): torn by a failing disk, or the disk fails now"
        )),
        other => other.with_context(|| format!("failed to read `{}`", image.display()))?,
    };
    match problem {
        None => Ok(Verdict::Valid),
        Some(why) => invalid(&why),
    }
}

const NOT_A_FILE: &str = "template.img is not a regular file";

/// Why the open `template.img` is no valid template of `key`, if it is not:
/// not a regular file, no superblock magic, or a size its key does not allow
/// (an image truncated past its magic: a torn copy, a disk-full restore).
pub(crate) fn image_problem(file: &mut File, key: &Key) -> std::io::Result<Option<String>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Some(NOT_A_FILE.to_owned()));
    }
    if !key.fs.has_magic(file)? {
        return Ok(Some(format!(
            "no {} superblock magic in its {} bytes (zero-filled or truncated?)",
            key.fs,
            meta.len()
        )));
    }
    Ok(size_problem(meta.len(), key))
}

/// Why an image of `len` bytes cannot be `key`'s, if it cannot.
pub(crate) fn size_problem(len: u64, key: &Key) -> Option<String> {
    let range = key.capacity.image_len_range();
    (!range.contains(&len)).then(|| {
        format!(
            "template.img is {len} bytes, but a {}m key's image is {} to {} bytes \
             (a truncated or torn copy?)",
            key.capacity.mib(),
            range.start,
            range.end - 1
        )
    })
}

/// The valid entry's image, or `None` on a miss; an invalid entry is a miss
/// with a warning, so the next build replaces it, and a user's directory in
/// its place an error, before any build.
pub(crate) fn find(root: &Path, key: &Key) -> Result<Option<PathBuf>> {
    match lookup(root, key)? {
        Entry::Valid(path) => Ok(Some(path)),
        Entry::Invalid(why) => {
            tracing::warn!("ignoring the cached template {key}: {why}; it will be rebuilt");
            Ok(None)
        }
        Entry::Foreign(why) => bail!("{why}"),
        Entry::Absent => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ensure::tests::{formatted_image, test_key};
    use crate::formatter::filesystem::Filesystem;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn absent_invalid_and_valid() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        assert_eq!(lookup(root.path(), &key).unwrap(), Entry::Absent);

        let dir = entry_dir(root.path(), &key);
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(
            lookup(root.path(), &key).unwrap(),
            Entry::Invalid(_)
        ));

        // Zero-filled, then truncated: both misses.
        let image = image_path(root.path(), &key);
        std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let Entry::Invalid(why) = lookup(root.path(), &key).unwrap() else {
            panic!("zeros accepted")
        };
        assert!(why.contains("no ext4 superblock magic"), "{why}");
        std::fs::write(&image, b"").unwrap();
        assert!(matches!(
            lookup(root.path(), &key).unwrap(),
            Entry::Invalid(_)
        ));
        assert_eq!(find(root.path(), &key).unwrap(), None);

        // Real mkfs output is a hit.
        formatted_image(&key, &image);
        assert_eq!(lookup(root.path(), &key).unwrap(), Entry::Valid(image));
    }

    /// What no writer of the cache makes at an entry's place is a user's:
    /// never taken for an entry to replace.
    #[test]
    fn a_file_a_symlink_or_a_users_file_in_place_is_foreign() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let foreign = |what: &str| match lookup(root.path(), &key).unwrap() {
            Entry::Foreign(why) => why,
            other => panic!("{what} taken for {other:?}"),
        };
        std::fs::write(entry_dir(root.path(), &key), b"x").unwrap();
        assert!(foreign("a file").contains("is not a directory"));

        let other = root.path().join("elsewhere.img");
        formatted_image(&key, &other);
        std::fs::remove_file(entry_dir(root.path(), &key)).unwrap();
        std::fs::create_dir(entry_dir(root.path(), &key)).unwrap();
        std::os::unix::fs::symlink(&other, image_path(root.path(), &key)).unwrap();
        let why = foreign("a symlinked image");
        assert!(
            why.contains("holds `template.img`, which this tool never writes"),
            "{why}"
        );
        assert!(find(root.path(), &key).is_err());

        // A FIFO in place is judged without hanging on its open.
        std::fs::remove_file(image_path(root.path(), &key)).unwrap();
        nix::unistd::mkfifo(
            &image_path(root.path(), &key),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        foreign("a FIFO");

        // A user's file beside no image: not an invalid entry to replace.
        std::fs::remove_file(image_path(root.path(), &key)).unwrap();
        std::fs::write(entry_dir(root.path(), &key).join("thesis.tex"), b"x").unwrap();
        let why = foreign("a user's directory");
        assert!(
            why.contains("holds `thesis.tex`") && why.contains("--cache-dir"),
            "{why}"
        );

        // A symlinked `<key>` leading to a valid entry elsewhere is refused.
        let elsewhere = tempfile::tempdir().unwrap();
        let outside_entry = elsewhere.path().join("entry");
        std::fs::create_dir(&outside_entry).unwrap();
        formatted_image(&key, &outside_entry.join(names::TEMPLATE_FILE));
        std::fs::remove_dir_all(entry_dir(root.path(), &key)).unwrap();
        std::os::unix::fs::symlink(&outside_entry, entry_dir(root.path(), &key)).unwrap();
        assert!(foreign("a symlinked entry").contains("not a directory"));
    }

    #[test]
    fn permission_denied_is_an_error_not_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let dir = entry_dir(root.path(), &key);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = crate::testutil::as_nobody(|| lookup(root.path(), &key)).unwrap_err();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = format!("{err:#}");
        assert!(
            err.contains("failed to open") && err.contains("denied") && err.contains("--cache-dir"),
            "{err}"
        );
    }
}
