//! A test's own writable clone, removed when dropped.
//!
//! An unnamed O_TMPFILE file in the template root where the filesystem has
//! one, so nothing of it outlives a crash; elsewhere the named per-test
//! debris shape (see [`crate::cache`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::fcntl::Flock;

use super::clone::{self, Reflink};
use super::ensure::{Ensured, Ensurer};
use super::heal;
use super::key::{Capacity, Key};
use super::names;
use crate::formatter::filesystem::Filesystem;
use crate::store::lock;

/// An open, writable clone of a template for one test.
#[derive(Debug)]
pub struct PerTestImage {
    backing: Backing,
    key: Key,
}

#[derive(Debug)]
enum Backing {
    /// O_TMPFILE: no name at all.
    Unnamed(File),
    /// A named file under its own flock, unlinked on drop.
    Named { lock: Flock<File>, path: PathBuf },
}

impl PerTestImage {
    /// Ensures the template for (`fs`, `capacity`) under the ensurer's root
    /// and clones it for one test, holding the key's lock shared while it
    /// clones. (Not API: a harness calls [`crate::TemplateCache::per_test`].)
    #[doc(hidden)]
    pub fn create(at: &Ensurer, fs: Filesystem, capacity: Capacity) -> Result<Self> {
        Self::make(at, fs, capacity, false)
    }

    /// Like [`PerTestImage::create`] but always named, for a VMM that needs
    /// a real path.
    #[doc(hidden)]
    pub fn create_named(at: &Ensurer, fs: Filesystem, capacity: Capacity) -> Result<Self> {
        Self::make(at, fs, capacity, true)
    }

    fn make(at: &Ensurer, fs: Filesystem, capacity: Capacity, need_name: bool) -> Result<Self> {
        let root = at.root;
        let clone_one = |e: &Ensured| {
            let need = clone::clone_need(&e.path);
            heal::retry_when_full(root, need, at.options.evict, || {
                if !need_name && let Some(file) = unnamed(root, &e.path)? {
                    return Ok(Backing::Unnamed(file));
                }
                named(root, &e.path)
            })
        };
        let (ensured, backing) = at.with_entry_shared(fs, capacity, clone_one)?;
        Ok(PerTestImage {
            backing,
            key: ensured.key,
        })
    }

    /// The open image, readable and writable.
    pub fn file(&self) -> &File {
        match &self.backing {
            Backing::Unnamed(file) => file,
            Backing::Named { lock, .. } => lock,
        }
    }

    /// A path another process (a VMM) can open: the file's own, or
    /// `/proc/<pid>/fd/<fd>` for the unnamed one, valid while `self` lives.
    pub fn path(&self) -> PathBuf {
        match &self.backing {
            Backing::Unnamed(file) => PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                file.as_raw_fd()
            )),
            Backing::Named { path, .. } => path.clone(),
        }
    }

    /// Whether the image has a name in the template root.
    pub fn is_named(&self) -> bool {
        matches!(self.backing, Backing::Named { .. })
    }

    /// The template it was cloned from.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl Drop for PerTestImage {
    fn drop(&mut self) {
        // Unlink while the flock is still held, so `clean` never sees the
        // name unlocked while we live.
        if let Backing::Named { path, .. } = &self.backing {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(
                    "failed to remove the per-test image `{}`: {e}",
                    path.display()
                );
            }
        }
    }
}

/// An O_TMPFILE clone in `root`, or `None` where the filesystem has none.
fn unnamed(root: &Path, template: &Path) -> Result<Option<File>> {
    let file = match File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(root)
    {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("failed to create an unnamed file in `{}`", root.display())
            });
        }
    };
    let src =
        File::open(template).with_context(|| format!("failed to open `{}`", template.display()))?;
    clone::clone_into(&src, template, &file, root, Reflink::Auto)?;
    Ok(Some(file))
}

/// `<root>/.per-test-<pid>-<ns>-<rnd>.img`, flocked, cloned into.
fn named(root: &Path, template: &Path) -> Result<Backing> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = root.join(names::per_test(std::process::id(), nanos, rand::random()));
    let lock = lock::create_locked(&path, lock::Shape::File(0o600))?;
    let guard = RemoveOnError(Some(path.clone()));
    let src =
        File::open(template).with_context(|| format!("failed to open `{}`", template.display()))?;
    clone::clone_into(&src, template, &lock, &path, Reflink::Auto)?;
    guard.disarm();
    Ok(Backing::Named { lock, path })
}

/// Removes a half-made per-test image unless disarmed.
struct RemoveOnError(Option<PathBuf>);

impl RemoveOnError {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ensure::HostMkfsBuilder;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn small(root: &Path, named: bool) -> PerTestImage {
        let cap = Capacity::from_mib(64).unwrap();
        let make = if named {
            PerTestImage::create_named
        } else {
            PerTestImage::create
        };
        make(&Ensurer::new(root, &HostMkfsBuilder), Filesystem::Ext4, cap).unwrap()
    }

    fn root_names(root: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn unnamed_image_is_a_writable_copy_that_leaves_no_name() {
        let root = tempfile::tempdir().unwrap();
        let img = small(root.path(), false);
        assert!(!img.is_named(), "a temporary directory has O_TMPFILE");
        let before = root_names(root.path());
        // Through the /proc path, as a VMM would open it.
        let mut via_path = File::options()
            .read(true)
            .write(true)
            .open(img.path())
            .unwrap();
        let mut head = [0u8; 2];
        via_path.seek(SeekFrom::Start(0x438)).unwrap();
        via_path.read_exact(&mut head).unwrap();
        assert_eq!(head, [0x53, 0xef]);
        via_path.seek(SeekFrom::Start(0x438)).unwrap();
        via_path.write_all(&[0, 0]).unwrap();
        let template = crate::cache::lookup::image_path(root.path(), img.key());
        assert!(
            Filesystem::Ext4.path_has_magic(&template).unwrap(),
            "template untouched"
        );
        drop((via_path, img));
        assert_eq!(root_names(root.path()), before);
    }

    #[test]
    fn named_image_is_locked_while_alive_and_removed_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let img = small(root.path(), true);
        let path = img.path();
        assert!(path.exists() && img.is_named());
        let shape = names::classify(path.file_name().unwrap());
        let me = Some(std::process::id() as i32);
        assert_eq!(
            shape,
            names::RootName::Debris {
                kind: names::DebrisKind::PerTest,
                pid: me
            }
        );
        let other = File::open(&path).unwrap();
        assert!(
            lock::try_lock_file(other, lock::Mode::Exclusive)
                .unwrap()
                .is_none()
        );
        drop(img);
        assert!(!path.exists());
    }
}
