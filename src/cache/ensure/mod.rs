//! The lifecycle: lookup, lock, look again, build, publish; for several
//! templates at once, [`batch`].

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::Flock;

use super::heal;
use super::key::{Capacity, Key};
use super::last_use;
use super::lookup;
use super::names;
use super::publish::{self, IfValid};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint;
use crate::formatter::minimum;
use crate::store::lock::{self, Mode};
use crate::store::space::human_bytes;
use crate::usage::UsageError;

pub(crate) mod batch;
pub use batch::BatchItem;

/// Formats a staging image. The VM runners implement it through the
/// template-building guest; tests plug in a host-side one.
pub trait TemplateBuilder {
    /// Formats `staging`, a sparse file of `key.capacity` bytes that the
    /// caller created and holds under its flock, with `key.fs`.
    fn build(&self, key: &Key, staging: &Path) -> anyhow::Result<()>;

    /// Formats several staging images, one result per job in order; the
    /// guest builder boots one guest for them all. By default, one
    /// [`TemplateBuilder::build`] after another.
    fn build_many(&self, jobs: &[(&Key, &Path)]) -> Vec<anyhow::Result<()>> {
        jobs.iter()
            .map(|(key, staging)| self.build(key, staging))
            .collect()
    }
}

/// Formats with the host's own formatter, found as the fingerprint finds it.
/// The key's fingerprint is the host formatter's, so the result matches it.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMkfsBuilder;

impl TemplateBuilder for HostMkfsBuilder {
    fn build(&self, key: &Key, staging: &Path) -> Result<()> {
        let mkfs = fingerprint::find_formatter(key.fs)?;
        let out = Command::new(&mkfs)
            .args(key.fs.mkfs_args())
            .arg(staging)
            .output()
            .with_context(|| format!("failed to run `{}`", mkfs.display()))?;
        if !out.status.success() {
            bail!(
                "`{} {}` failed ({}): {}",
                mkfs.display(),
                staging.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// How an [`Ensurer`] waits, heals and replaces.
#[derive(Debug, Clone, Copy)]
pub struct EnsureOptions {
    /// How long to wait for a peer that holds the key's lock.
    pub lock_timeout: Duration,
    /// Build and replace the entry even when it exists.
    pub force: bool,
    /// On a full disk, remove debris and least recently used entries no one
    /// holds, then try once more ([`crate::cache::heal`]). By default on
    /// unless `KTSTR_NO_EVICT` is set.
    pub evict: bool,
}

/// How long a build waits behind a peer holding its key, unless told
/// otherwise.
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for EnsureOptions {
    fn default() -> Self {
        EnsureOptions {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            force: false,
            evict: !heal::no_evict_from_env(),
        }
    }
}

/// A template that is now published.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The entry's key.
    pub key: Key,
    /// `<root>/<key>/template.img`.
    pub path: PathBuf,
    /// Whether this call built it (else it was found, perhaps after waiting).
    pub built: bool,
    /// How long the call took, waiting included.
    pub elapsed: Duration,
}

impl Ensured {
    /// `key`'s entry at `path`, now in use: every use goes through here (a
    /// hit, a clone, a per-test image), so its last use is recorded.
    pub(crate) fn used(root: &Path, key: &Key, path: PathBuf, built: bool, start: Instant) -> Self {
        last_use::record(root, &key.to_string());
        Ensured {
            key: key.clone(),
            path,
            built,
            elapsed: start.elapsed(),
        }
    }
}

/// What every step of the lifecycle works with: the template root, how a
/// miss is built, and how to wait, heal and replace. Cheap to copy: the
/// root and builder are borrowed.
#[derive(Clone, Copy)]
pub struct Ensurer<'a> {
    /// The template root, created on first use.
    pub root: &'a Path,
    /// Formats a missing template.
    pub builder: &'a dyn TemplateBuilder,
    /// How to wait, heal and replace.
    pub options: EnsureOptions,
}

impl std::fmt::Debug for Ensurer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensurer")
            .field("root", &self.root)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a> Ensurer<'a> {
    /// `root` built into by `builder`, with [`EnsureOptions::default`].
    pub fn new(root: &'a Path, builder: &'a dyn TemplateBuilder) -> Self {
        Ensurer {
            root,
            builder,
            options: EnsureOptions::default(),
        }
    }

    /// The same with `options`.
    pub fn with_options(self, options: EnsureOptions) -> Self {
        Ensurer { options, ..self }
    }

    /// Finds the template for (`fs`, `capacity`), or builds it and
    /// publishes it. The protocol is told in [`crate::cache`].
    pub fn ensure(&self, fs: Filesystem, capacity: Capacity) -> Result<Ensured> {
        let start = Instant::now();
        let formatter = fingerprint::formatter(fs)?;
        // Before any lock, staging file or guest: the formatter would refuse it.
        minimum::check(fs, capacity, formatter.version.as_ref()).map_err(UsageError)?;
        let key = Key::new(fs, capacity, &formatter.fingerprint);
        self.ensure_key(&key, start)
    }

    /// [`Ensurer::ensure`] for a key already computed; `start` is when the
    /// caller began, for [`Ensured::elapsed`].
    pub fn ensure_key(&self, key: &Key, start: Instant) -> Result<Ensured> {
        let (root, opts) = (self.root, &self.options);
        std::fs::create_dir_all(root)
            .with_context(|| format!("failed to create the template root `{}`", root.display()))?;
        let name = key.to_string();
        let done_as =
            |key: &Key, path: PathBuf, built: bool| Ensured::used(root, key, path, built, start);
        let done = |path, built| done_as(key, path, built);
        let seen = lookup::find(root, key)?;
        if let (Some(path), false) = (&seen, opts.force) {
            return Ok(done(path.clone(), false));
        }
        if let (None, false) = (&seen, opts.force)
            && let Some((other, path)) = find_other_scheme(root, key)?
        {
            return Ok(done_as(&other, path, false));
        }
        // Under --force, remember which entry we saw (if any) before waiting,
        // after making sure this user may replace it at all.
        let seen_id = match &seen {
            Some(path) => {
                check_replaceable(root, path)?;
                identity(path)?
            }
            None => None,
        };

        let _lock = lock::lock_with_timeout(
            &lock::key_lock_path(root, &name),
            Mode::Exclusive,
            opts.lock_timeout,
            &name,
        )?;
        // Look again: a peer may have published while we waited. Under --force,
        // an entry that is not the one we saw before waiting is a peer's fresh
        // build, which is what we were asked for.
        // (Quietly: an invalid entry was already reported.)
        if let lookup::Entry::Valid(path) = lookup::lookup(root, key)? {
            if !opts.force || identity(&path)? != seen_id {
                return Ok(done(path, false));
            }
        }

        let path = heal::retry_when_full(root, heal::build_need(key), opts.evict, || {
            self.build_and_publish(key)
        })?;
        tracing::info!(
            "built the template {key} in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        Ok(done(path, true))
    }

    /// Under the key lock: stage, build, verify and publish `key`'s image
    /// (replacing a valid entry only under `force`); the entry's image path.
    fn build_and_publish(&self, key: &Key) -> Result<PathBuf> {
        let root = self.root;
        // Each step is judged for a full disk while the staging image still
        // holds its blocks: a guest sees only an I/O error.
        let full = |e| super::failing::when_disk_fails(root, when_disk_full(root, e));
        let staging = StagingImage::create(root, key).map_err(full)?;
        self.builder
            .build(key, &staging.path)
            .with_context(|| format!("failed to build the template {key}"))
            .and_then(|()| staging.verify(key))
            .and_then(|()| publish_staged(root, key, &staging, self.options.force))
            .map_err(full)
    }
}

/// The valid entry of `key`'s template under the installed formatter's
/// other key scheme ([`fingerprint::Scheme`]), if there is one: ktstr 0.50
/// publishes under the binary scheme what we publish under the version
/// scheme. An invalid one is left to its writer's rebuild, unreported.
pub(crate) fn find_other_scheme(root: &Path, key: &Key) -> Result<Option<(Key, PathBuf)>> {
    let Some(other) = key.under_other_scheme() else {
        return Ok(None);
    };
    Ok(match lookup::lookup(root, &other)? {
        lookup::Entry::Valid(path) => Some((other, path)),
        _ => None,
    })
}

/// Fails, before any work, when this user could not replace the entry whose
/// image is `image` (another user's, in a sticky root): `--force` would
/// boot a guest only to fail at the rename.
pub(crate) fn check_replaceable(root: &Path, image: &Path) -> Result<()> {
    let Some(entry) = image.parent() else {
        return Ok(());
    };
    let meta = std::fs::symlink_metadata(entry)
        .with_context(|| format!("failed to stat `{}`", entry.display()))?;
    match crate::store::share::replace_refusal(root, entry, &meta) {
        Some(why) => bail!("cannot rebuild this template: {why}"),
        None => Ok(()),
    }
}

/// Publishes a verified staging image (replacing a valid entry only under
/// `force`); the entry's image path.
fn publish_staged(root: &Path, key: &Key, staging: &StagingImage, force: bool) -> Result<PathBuf> {
    let if_valid = if force {
        IfValid::Replace
    } else {
        IfValid::Keep
    };
    let (path, _) = publish::publish(root, key, &staging.path, if_valid)?;
    Ok(path)
}

/// Free space below which a failed build is put down to a full disk.
const FULL_BELOW: u64 = 1 << 20;

/// `err`, led by a plain "the disk is full" when ENOSPC is in its chain or
/// the filesystem under `root` has (almost) no space left; a formatter in a
/// guest only ever sees an I/O error.
fn when_disk_full(root: &Path, err: anyhow::Error) -> anyhow::Error {
    let enospc = heal::is_disk_full(&err);
    let free = nix::sys::statvfs::statvfs(root)
        .ok()
        .map(|st| st.blocks_available() * st.fragment_size());
    if !enospc && free.is_none_or(|free| free >= FULL_BELOW) {
        return err;
    }
    let free = free.map_or("unknown".to_owned(), |b| format!("{} free", human_bytes(b)));
    err.context(heal::DiskFull(format!(
        "the disk holding the template cache `{}` is full ({free}): free some space \
         (`cargo ktstr clean --min-free SIZE` removes least recently used templates no process \
         uses until SIZE is free) and try again",
        root.display()
    )))
}

/// Tells one published image from its successor: a new build is a new file.
/// `None` when it is gone: looked up without the lock, an entry may be
/// removed by `clean --all` before this looks at it.
fn identity(path: &Path) -> Result<Option<(u64, u64, i64, i64)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to stat `{}`", path.display())),
    }
}

/// `template.img.in-flight.<key>.<pid>`: a sparse file of the key's capacity,
/// flocked while we live and removed when dropped unless it was published.
struct StagingImage {
    path: PathBuf,
    /// Held so `clean` knows a live writer owns the name, whatever its pid
    /// means in `clean`'s pid namespace.
    lock: Flock<File>,
}

impl StagingImage {
    fn create(root: &Path, key: &Key) -> Result<Self> {
        let path = root.join(names::in_flight(key, std::process::id()));
        // Ours by name; the key lock we hold excludes any live twin.
        publish::remove_any(&path)?;
        let lock = lock::create_locked(&path, lock::Shape::File(0o644))?;
        let staging = StagingImage { path, lock };
        // Sparse: the builder writes only what mkfs writes.
        staging.lock.set_len(key.capacity.bytes()).map_err(|e| {
            let advice = if e.raw_os_error() == Some(libc::EFBIG) {
                format!(
                    "; {} is past the largest file the cache's filesystem allows \
                     (ext4 with 4 KiB blocks stops just under 16 TiB): choose a smaller \
                     capacity, or a --cache-dir on btrfs or xfs",
                    key.capacity
                )
            } else {
                String::new()
            };
            anyhow::anyhow!("failed to size `{}`: {e}{advice}", staging.path.display())
        })?;
        Ok(staging)
    }

    /// Checks the builder's work by path, as a lookup will judge the entry:
    /// a builder may have replaced the file rather than written into it.
    fn verify(&self, key: &Key) -> Result<()> {
        let mut file = File::open(&self.path)
            .with_context(|| format!("failed to open `{}`", self.path.display()))?;
        let problem = lookup::image_problem(&mut file, key)
            .with_context(|| format!("failed to read `{}`", self.path.display()))?;
        if let Some(why) = problem {
            bail!(
                "the builder finished but `{}` is no valid template ({why}); nothing was published",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl Drop for StagingImage {
    fn drop(&mut self) {
        // After a publish the name is gone and this is a no-op.
        if let Err(e) = publish::remove_any(&self.path) {
            tracing::warn!("{e:#}; `cargo ktstr clean` will remove it once this process exits");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key with a made-up fingerprint: the name matters, not the value.
    pub(crate) fn test_key(fs: Filesystem, mib: u64) -> Key {
        Key::new(fs, Capacity::from_mib(mib).unwrap(), "0123456789abcdef")
    }

    /// Real mkfs output of `key`'s filesystem and capacity at `path`.
    pub(crate) fn formatted_image(key: &Key, path: &Path) {
        File::create(path)
            .unwrap()
            .set_len(key.capacity.bytes())
            .unwrap();
        HostMkfsBuilder.build(key, path).unwrap();
    }

    struct Failing;
    impl TemplateBuilder for Failing {
        fn build(&self, _key: &Key, staging: &Path) -> Result<()> {
            std::fs::write(staging, b"half")?;
            bail!("mkfs exploded")
        }
    }

    struct Counting(std::cell::Cell<u32>);
    impl TemplateBuilder for Counting {
        fn build(&self, key: &Key, staging: &Path) -> Result<()> {
            self.0.set(self.0.get() + 1);
            HostMkfsBuilder.build(key, staging)
        }
    }

    fn ensure(root: &Path, key: &Key, b: &dyn TemplateBuilder, force: bool) -> Result<Ensured> {
        let opts = EnsureOptions {
            force,
            ..Default::default()
        };
        Ensurer::new(root, b)
            .with_options(opts)
            .ensure_key(key, Instant::now())
    }

    #[test]
    fn builds_once_then_finds() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Ext4, 16);
        let builder = Counting(0.into());
        let first = ensure(root.path(), &key, &builder, false).unwrap();
        assert!(first.built);
        assert_eq!(first.path, lookup::image_path(root.path(), &key));
        let second = ensure(root.path(), &key, &builder, false).unwrap();
        assert!(!second.built);
        assert_eq!(builder.0.get(), 1);
        let forced = ensure(root.path(), &key, &builder, true).unwrap();
        assert!(forced.built);
        assert_eq!(builder.0.get(), 2);
    }

    #[test]
    fn an_entry_under_the_other_scheme_is_a_hit_and_a_build_uses_ours() {
        use fingerprint::Scheme;
        let root = tempfile::tempdir().unwrap();
        let (fs, cap) = (Filesystem::Ext4, Capacity::from_mib(16).unwrap());
        let formatter = fingerprint::formatter(fs).unwrap();
        let [ours, theirs] = Scheme::ALL.map(|scheme| Key::of(&formatter, fs, cap, scheme));
        std::fs::create_dir(lookup::entry_dir(root.path(), &theirs)).unwrap();
        formatted_image(&theirs, &lookup::image_path(root.path(), &theirs));
        let builder = Counting(0.into());
        let at = |force| {
            Ensurer::new(root.path(), &builder).with_options(EnsureOptions {
                force,
                ..Default::default()
            })
        };
        let found = at(false).ensure(fs, cap).unwrap();
        assert_eq!((found.key, found.built), (theirs.clone(), false));
        assert_eq!(found.path, lookup::image_path(root.path(), &theirs));
        // The same through a key computed beforehand, as a batch does.
        let items = at(false).ensure_keys(std::slice::from_ref(&ours)).unwrap();
        assert_eq!(items[0].result.as_ref().unwrap().key, theirs);
        assert_eq!(builder.0.get(), 0);
        // Forced, it builds under our own scheme and leaves theirs.
        let forced = at(true).ensure(fs, cap).unwrap();
        assert_eq!((forced.key, forced.built), (ours.clone(), true));
        let found = at(false).ensure(fs, cap).unwrap();
        assert_eq!(found.key, ours);
        assert!(lookup::image_path(root.path(), &theirs).exists());
    }

    #[test]
    fn a_failed_build_leaves_nothing_but_the_lockfile() {
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Btrfs, 128);
        let err = ensure(root.path(), &key, &Failing, false).unwrap_err();
        assert!(format!("{err:#}").contains("mkfs exploded"), "{err:#}");
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [names::LOCKS_DIR]);
    }

    #[test]
    fn a_builder_that_writes_no_magic_publishes_nothing() {
        struct Zeros;
        impl TemplateBuilder for Zeros {
            fn build(&self, _key: &Key, _staging: &Path) -> Result<()> {
                Ok(())
            }
        }
        let root = tempfile::tempdir().unwrap();
        let key = test_key(Filesystem::Xfs, 300);
        let err = ensure(root.path(), &key, &Zeros, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no xfs superblock magic"), "{err}");
        assert_eq!(
            lookup::lookup(root.path(), &key).unwrap(),
            lookup::Entry::Absent
        );
    }

    #[test]
    fn capacity_below_the_minimum_fails_before_any_work() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("never-created");
        let cap = Capacity::from_mib(256).unwrap();
        let err = Ensurer::new(&missing, &Failing)
            .ensure(Filesystem::Xfs, cap)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 300 MiB"), "{err}");
        assert!(!missing.exists());
    }
}
