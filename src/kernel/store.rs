//! The kernel store: `<ktstr cache>/kernels/<version>[-kvm-host]-<fragment hash>/bzImage`.
//!
//! An entry appears by one rename of a complete, synced directory, and the
//! store is synced after it, so a kernel is either all there or absent,
//! and there once a build said so, whatever power cut follows. A build works in `.build-<name>.<pid>/`
//! beside the entries, hidden from listings and flocked while its builder
//! lives; a build killed mid-way (Ctrl-C during `make`) leaves its scratch
//! unlocked, and the next build sweeps it ([`KernelStore::sweep_scratch`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, RenameFlags, renameat2};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::KernelKind;
use super::key::{KeyInputs, Toolchain};
use crate::store::lock::{self, Mode};
use crate::store::root;

/// The prefix of a build's scratch directory.
pub(crate) const SCRATCH_PREFIX: &str = ".build-";

/// The kernel image inside an entry.
pub const IMAGE_FILE: &str = "bzImage";
/// The same kernel uncompressed (ELF), which the built-in VMM enters
/// directly; kernels cached before it was kept lack it.
pub const VMLINUX_FILE: &str = "vmlinux";
/// The merged `.config` the image was built from, kept beside it.
pub const CONFIG_FILE: &str = "config";
/// Where the entry came from and what it was built from ([`Provenance`]);
/// kernels cached before it was kept lack it.
pub(crate) const PROVENANCE_FILE: &str = "key.json";

/// How an entry got here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProvenanceOrigin {
    /// `kernel build` compiled it on this machine.
    Built,
    /// Fetched from a remote cache and verified.
    Pulled,
    /// An entry cached under the name the store used before keys named
    /// sources, taken over by a build of an unchanged tarball; never pushed.
    Adopted,
}

/// An entry's `key.json`: its origin and key inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Built here or pulled from a remote.
    pub origin: ProvenanceOrigin,
    /// The remote's URL, for a pulled kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The entry's name in the store.
    pub key: String,
    /// What the key was computed from.
    pub inputs: KeyInputs,
    /// What built it.
    pub toolchain: Toolchain,
}

impl Provenance {
    /// Writes `key.json` into the (staged) entry `dir`, synced.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(PROVENANCE_FILE);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        fs::write(&path, text).with_context(|| format!("failed to write `{}`", path.display()))?;
        fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("failed to sync `{}`", path.display()))
    }

    /// Entry `dir`'s provenance; `None` when it has none (or an unreadable one).
    pub fn read(dir: &Path) -> Result<Option<Provenance>> {
        let path = dir.join(PROVENANCE_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", path.display())),
        }
    }
}

/// A directory of cached kernels.
#[derive(Debug, Clone)]
pub struct KernelStore {
    dir: PathBuf,
}

/// One cached kernel.
#[derive(Debug, Clone, Serialize)]
pub struct CachedKernel {
    /// `<version>-<fragment hash>`, or `<version>-kvm-host-<fragment hash>`.
    pub name: String,
    pub kind: KernelKind,
    pub image: PathBuf,
    pub size: u64,
    #[serde(skip)]
    pub modified: SystemTime,
    /// Where it came from; `None` for a kernel cached before that was kept.
    pub provenance: Option<Provenance>,
}

impl KernelStore {
    /// The store at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        KernelStore { dir }
    }

    /// The store of this process's environment: `<ktstr cache>/kernels`.
    pub fn from_env() -> Result<Self> {
        Ok(KernelStore::new(root::kernels_dir()?))
    }

    /// Where the store is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image of entry `name`, when it is present.
    pub fn lookup(&self, name: &str) -> Result<Option<PathBuf>> {
        let image = self.dir.join(name).join(IMAGE_FILE);
        match fs::metadata(&image) {
            Ok(m) if m.is_file() && m.len() > 0 => Ok(Some(image)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to stat `{}`", image.display())),
        }
    }

    /// Every cached kernel, newest first.
    pub fn list(&self) -> Result<Vec<CachedKernel>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read `{}`", self.dir.display()));
            }
        };
        let mut kernels = Vec::new();
        for entry in entries {
            let entry =
                entry.with_context(|| format!("failed to read `{}`", self.dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Some(image) = self.lookup(&name)? else {
                continue;
            };
            let meta = fs::metadata(&image)
                .with_context(|| format!("failed to stat `{}`", image.display()))?;
            let provenance = Provenance::read(&self.dir.join(&name)).unwrap_or(None);
            kernels.push(CachedKernel {
                kind: KernelKind::of_entry(&name),
                name,
                image,
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                provenance,
            });
        }
        kernels.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
        Ok(kernels)
    }

    /// The most recently built kernel of `kind`.
    pub fn newest(&self, kind: KernelKind) -> Result<Option<CachedKernel>> {
        Ok(self.list()?.into_iter().find(|k| k.kind == kind))
    }

    /// Creates the scratch directory of a build of `name` by this process,
    /// flocked until the returned lock is dropped.
    pub fn create_scratch(&self, name: &str) -> Result<(PathBuf, Flock<fs::File>)> {
        let dir = self
            .dir
            .join(format!("{SCRATCH_PREFIX}{name}.{}", std::process::id()));
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create `{}`", self.dir.display()))?;
        fs::create_dir(&dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
        let held = lock_dir(&dir)?
            .with_context(|| format!("`{}` is locked by another process", dir.display()))?;
        Ok((dir, held))
    }

    /// Removes the scratch directories no live builder holds or is about to
    /// hold; returns them.
    pub fn sweep_scratch(&self) -> Result<Vec<PathBuf>> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut swept = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| n.starts_with(SCRATCH_PREFIX)) else {
                continue;
            };
            let path = entry.path();
            if !path.is_dir() || another_live_owner(name) {
                continue;
            }
            // Removed while we hold its lock, so no builder can take it back.
            if let Some(_held) = lock_dir(&path)? {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("failed to remove `{}`", path.display()))?;
                swept.push(path);
            }
        }
        Ok(swept)
    }

    /// Swaps the complete directory `staging` with entry `name` in one
    /// atomic exchange, so the old kernel stays in place until the new one
    /// is; the old one is then at `staging`, for the caller to remove. With
    /// no entry yet, this is [`KernelStore::publish`].
    pub fn replace(&self, staging: &Path, name: &str) -> Result<PathBuf> {
        let dest = self.dir.join(name);
        match renameat2(
            AT_FDCWD,
            staging,
            AT_FDCWD,
            &dest,
            RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => {
                self.sync()?;
                Ok(dest.join(IMAGE_FILE))
            }
            Err(Errno::ENOENT) if !dest.exists() => self.publish(staging, name),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "failed to swap `{}` with `{}` (the old kernel is still in place)",
                    staging.display(),
                    dest.display()
                )
            }),
        }
    }

    /// Renames the complete directory `staging` onto entry `name`. A peer
    /// that published the same name first wins: its kernel is equivalent,
    /// and ours is dropped.
    pub fn publish(&self, staging: &Path, name: &str) -> Result<PathBuf> {
        let dest = self.dir.join(name);
        if let Err(e) = fs::rename(staging, &dest) {
            let _ = fs::remove_dir_all(staging);
            if self.lookup(name)?.is_none() {
                return Err(e).with_context(|| {
                    format!(
                        "failed to rename `{}` to `{}`",
                        staging.display(),
                        dest.display()
                    )
                });
            }
        }
        self.sync()?;
        Ok(dest.join(IMAGE_FILE))
    }

    /// fsyncs the store's directory: a rename into it survives a power cut
    /// only then (the power-loss lane lost a published kernel without it).
    fn sync(&self) -> Result<()> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("failed to fsync `{}`", self.dir.display()))
    }
}

/// Whether the scratch directory `name` (`.build-<name>.<pid>`) belongs to
/// a live process other than this one. Such a builder may be between
/// creating its directory and locking it, so its unlocked directory is
/// not debris. (This process sweeps only before it creates its own.)
fn another_live_owner(name: &str) -> bool {
    let pid = name
        .rsplit_once('.')
        .and_then(|(_, p)| p.parse::<i32>().ok());
    match pid {
        Some(pid) if pid > 0 && pid as u32 != std::process::id() => {
            !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
        }
        _ => false,
    }
}

/// An exclusive flock on directory `dir`, or `None` while another holds it.
fn lock_dir(dir: &Path) -> Result<Option<Flock<fs::File>>> {
    let file =
        fs::File::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
    lock::try_lock_file(file, Mode::Exclusive)
        .with_context(|| format!("failed to lock `{}`", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(store: &KernelStore, tag: &str, body: &[u8]) -> PathBuf {
        let dir = store.dir().join(format!(".tmp-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(IMAGE_FILE), body).unwrap();
        dir
    }

    #[test]
    fn publish_list_and_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().join("kernels"));
        assert!(store.list().unwrap().is_empty());
        assert!(store.newest(KernelKind::Template).unwrap().is_none());
        let a = store
            .publish(&staged(&store, "a", b"A"), "6.1.0-aaaa")
            .unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"A");
        std::thread::sleep(std::time::Duration::from_millis(20));
        store
            .publish(&staged(&store, "b", b"BB"), "6.2.0-bbbb")
            .unwrap();
        // Scratch directories and empty entries are not kernels.
        fs::create_dir_all(store.dir().join(".build-x")).unwrap();
        fs::create_dir_all(store.dir().join("6.3.0-empty")).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["6.2.0-bbbb", "6.1.0-aaaa"]);
        assert_eq!(store.newest(KernelKind::Template).unwrap().unwrap().size, 2);
        // A newer KVM host is listed, but is no template kernel.
        std::thread::sleep(std::time::Duration::from_millis(20));
        store
            .publish(&staged(&store, "c", b"CCC"), "6.2.0-kvm-host-cccc")
            .unwrap();
        let newest = |kind| store.newest(kind).unwrap().unwrap().name;
        assert_eq!(newest(KernelKind::Template), "6.2.0-bbbb");
        assert_eq!(newest(KernelKind::KvmHost), "6.2.0-kvm-host-cccc");
    }

    #[test]
    fn the_first_publisher_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        store.publish(&staged(&store, "a", b"first"), "k").unwrap();
        let second = staged(&store, "b", b"second");
        let image = store.publish(&second, "k").unwrap();
        assert_eq!(fs::read(image).unwrap(), b"first");
        assert!(!second.exists());
    }

    #[test]
    fn replacing_swaps_the_old_kernel_out_in_one_step() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        let first = staged(&store, "a", b"first");
        assert_eq!(
            fs::read(store.replace(&first, "k").unwrap()).unwrap(),
            b"first"
        );
        let second = staged(&store, "b", b"second");
        let image = store.replace(&second, "k").unwrap();
        assert_eq!(fs::read(image).unwrap(), b"second");
        // The old kernel is where the new one was staged, never gone first.
        assert_eq!(fs::read(second.join(IMAGE_FILE)).unwrap(), b"first");
    }

    #[test]
    fn an_unlocked_scratch_of_a_live_peer_is_not_swept() {
        // A peer between creating its scratch and locking it: alive, unlocked.
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        let mut peer = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let dir = tmp.path().join(format!(".build-6.1.0-x.{}", peer.id()));
        fs::create_dir(&dir).unwrap();
        assert!(store.sweep_scratch().unwrap().is_empty());
        assert!(dir.is_dir());
        peer.kill().unwrap();
        peer.wait().unwrap();
        assert_eq!(store.sweep_scratch().unwrap(), [dir]);
    }

    #[test]
    fn only_scratch_nobody_holds_is_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        let (live, _held) = store.create_scratch("6.1.0-live").unwrap();
        let (dead, held) = store.create_scratch("6.1.0-dead").unwrap();
        fs::write(dead.join("big.o"), b"object").unwrap();
        drop(held);
        store
            .publish(&staged(&store, "k", b"K"), "6.1.0-kept")
            .unwrap();
        assert_eq!(store.sweep_scratch().unwrap(), std::slice::from_ref(&dead));
        assert!(live.is_dir() && !dead.exists());
        assert!(store.lookup("6.1.0-kept").unwrap().is_some());
    }
}
