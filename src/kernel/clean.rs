//! `kernel clean`: cached kernels by last use, and dead builds' scratch.
//!
//! A kernel's last use is its entry directory's mtime: publication sets it,
//! and a template build sets it again while it holds a shared flock on the
//! directory for as long as its guest may read the image
//! ([`hold_for_use`]). A kernel goes only while `kernel clean` holds that
//! flock exclusively, taken without blocking, so one a build is using is
//! kept. Template budgets and self-heal never remove kernels: a kernel takes
//! minutes to rebuild, a template seconds.
//!
//! Scratch `.build-<name>.<pid>/` goes by the rules of template debris: its
//! pid is dead *and* its flock is free; a symlink is never followed and a
//! tree with a mount point inside is refused.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use nix::fcntl::Flock;
use serde::Serialize;

use super::KernelKind;
use super::store::{IMAGE_FILE, KernelStore, SCRATCH_PREFIX};
use crate::store::lock::{self, Mode};
use crate::store::space;

/// What `kernel clean` removes besides dead scratch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KernelCleanOptions {
    /// Keep the N most recently used kernels of each kind.
    pub keep: Option<usize>,
    /// Remove kernels last used longer ago than this.
    pub older_than: Option<Duration>,
    pub dry_run: bool,
}

/// A removed (or, in a dry run, removable) kernel or scratch directory.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelRemoved {
    pub name: String,
    pub path: PathBuf,
    /// `keep`, `older-than` or `scratch`.
    pub reason: &'static str,
    pub bytes: u64,
    pub last_used_secs: Option<u64>,
}

/// A kernel or scratch directory left in place, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelKept {
    pub name: String,
    pub reason: String,
    pub pid: Option<i32>,
}

/// The outcome of `kernel clean`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelCleanReport {
    pub dir: PathBuf,
    pub dry_run: bool,
    pub removed: Vec<KernelRemoved>,
    pub kept: Vec<KernelKept>,
    pub failed: Vec<KernelKept>,
    pub removed_bytes: u64,
}

impl KernelCleanReport {
    fn new(dir: &Path, dry_run: bool) -> Self {
        KernelCleanReport {
            dir: dir.to_owned(),
            dry_run,
            removed: Vec::new(),
            kept: Vec::new(),
            failed: Vec::new(),
            removed_bytes: 0,
        }
    }

    /// `removed 2 kernels and 1 dead build's scratch (310 MiB); kept 1 in use`.
    pub(crate) fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let scratch = self
            .removed
            .iter()
            .filter(|r| r.reason == "scratch")
            .count();
        let kernels = self.removed.len() - scratch;
        let mut line = format!(
            "{verb} {kernels} kernel{} and {scratch} dead build scratch director{} ({})",
            if kernels == 1 { "" } else { "s" },
            if scratch == 1 { "y" } else { "ies" },
            space::human_bytes(self.removed_bytes)
        );
        if !self.kept.is_empty() {
            line += &format!("; kept {} in use", self.kept.len());
        }
        if !self.failed.is_empty() {
            line += &format!(
                "; failed to remove {} (see the errors above)",
                self.failed.len()
            );
        }
        line
    }
}

/// Holds a shared flock on the kernel entry of `image` (a store entry's
/// `bzImage`) and records its use, while a build reads it; `None` for an
/// image outside the store's shape, which no `kernel clean` removes.
pub(crate) fn hold_for_use(image: &Path) -> Option<Flock<File>> {
    if image.file_name()? != IMAGE_FILE {
        return None;
    }
    let dir = open_dir(image.parent()?).ok()?;
    let held = lock::try_lock_file(dir, Mode::Shared).ok().flatten();
    if let Some(held) = &held {
        // The directory's mtime is the kernel's last use.
        let _ = held.set_modified(SystemTime::now());
    }
    held
}

/// Removes dead builds' scratch, then (with `keep` or `older_than`) kernels.
pub(crate) fn clean(store: &KernelStore, opts: KernelCleanOptions) -> Result<KernelCleanReport> {
    let mut report = KernelCleanReport::new(store.dir(), opts.dry_run);
    sweep_scratch(store, &mut report);
    if opts.keep.is_none() && opts.older_than.is_none() {
        return Ok(report);
    }
    let now = SystemTime::now();
    let mut kernels: Vec<(String, KernelKind, Option<SystemTime>)> = store
        .list()?
        .into_iter()
        .map(|k| {
            let used = fs::metadata(store.dir().join(&k.name))
                .and_then(|m| m.modified())
                .ok();
            (k.name, k.kind, used)
        })
        .collect();
    kernels.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut seen: Vec<KernelKind> = Vec::new();
    for (name, kind, used) in kernels {
        let rank = seen.iter().filter(|k| **k == kind).count();
        seen.push(kind);
        let age = used
            .and_then(|u| now.duration_since(u).ok())
            .unwrap_or(Duration::MAX);
        let beyond_keep = opts.keep.is_none_or(|n| rank >= n);
        let old = opts.older_than.is_none_or(|d| age > d);
        if !(beyond_keep && old) {
            continue;
        }
        let reason = if opts.older_than.is_some() {
            "older-than"
        } else {
            "keep"
        };
        let item = KernelRemoved {
            path: store.dir().join(&name),
            last_used_secs: used.map(crate::units::secs_since),
            name,
            reason,
            bytes: 0,
        };
        remove_unless_held(item, Mode::Exclusive, &mut report);
    }
    Ok(report)
}

/// Removes `item` while holding its directory's flock, taken without
/// blocking; kept, naming the holder, when someone holds it.
fn remove_unless_held(item: KernelRemoved, mode: Mode, report: &mut KernelCleanReport) {
    let dir = match open_dir(&item.path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let reason = format!("cannot open it to test its flock: {e}");
            return report.failed.push(KernelKept {
                name: item.name,
                reason,
                pid: None,
            });
        }
    };
    match lock::try_lock_file(dir, mode) {
        Ok(Some(_held)) => remove(item, report),
        Ok(None) => {
            let pid = lock::holders(&item.path).first().map(|h| h.pid);
            let reason = format!("in use by {}", lock::describe_holders(&item.path));
            report.kept.push(KernelKept {
                name: item.name,
                reason,
                pid,
            });
        }
        Err(e) => {
            let reason = format!("{e:#}");
            report.failed.push(KernelKept {
                name: item.name,
                reason,
                pid: None,
            });
        }
    }
}

/// Removes `item` (a tree, by descriptors) unless this is a dry run, and
/// records how it went: the report only holds data.
fn remove(mut item: KernelRemoved, report: &mut KernelCleanReport) {
    item.bytes = space::allocated_bytes(&item.path).unwrap_or(0);
    if !report.dry_run {
        match crate::store::tree::remove_tree(&item.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // An error: the summary points here, and -q keeps errors.
                tracing::error!("could not remove `{}`: {e}", item.path.display());
                let reason = e.to_string();
                return report.failed.push(KernelKept {
                    name: item.name,
                    reason,
                    pid: None,
                });
            }
        }
    }
    report.removed_bytes += item.bytes;
    report.removed.push(item);
}

/// What `cargo ktstr clean` sweeps of the environment's kernel store
/// (`<ktstr cache>/kernels`): dead builds' scratch, by the rules the
/// template sweep follows (a dry run removes nothing); kernels never.
/// `None` when there is no kernel store to sweep.
pub(crate) fn clean_scratch_in_env(dry_run: bool) -> Result<Option<KernelCleanReport>> {
    let Ok(store) = KernelStore::from_env() else {
        return Ok(None);
    };
    let opts = KernelCleanOptions {
        dry_run,
        ..KernelCleanOptions::default()
    };
    clean(&store, opts).map(Some)
}

/// Removes every `.build-<name>.<pid>/` whose pid is dead and whose flock
/// is free.
pub(crate) fn sweep_scratch(store: &KernelStore, report: &mut KernelCleanReport) {
    let Ok(entries) = fs::read_dir(store.dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(SCRATCH_PREFIX)) else {
            continue;
        };
        let path = entry.path();
        // A real directory only: a symlink is never followed.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Some(pid) = scratch_pid(name) else {
            continue;
        };
        if crate::store::owner::alive(pid) {
            let reason = format!("its build, pid {pid}, is alive");
            report.kept.push(KernelKept {
                name: name.to_owned(),
                reason,
                pid: Some(pid),
            });
            continue;
        }
        let item = KernelRemoved {
            name: name.to_owned(),
            path,
            reason: "scratch",
            bytes: 0,
            last_used_secs: None,
        };
        remove_unless_held(item, Mode::Exclusive, report);
    }
}

/// The pid of `.build-<name>.<pid>`, when it is a positive number.
pub(crate) fn scratch_pid(name: &str) -> Option<i32> {
    let pid = name.rsplit_once('.')?.1.parse::<i32>().ok()?;
    (pid > 0).then_some(pid)
}

/// Opens a directory for a flock without following a symlink.
fn open_dir(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(store: &KernelStore, name: &str, ago: u64) -> PathBuf {
        let dir = store.dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(IMAGE_FILE), vec![1u8; 4096]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(ago);
        File::open(&dir).unwrap().set_modified(t).unwrap();
        dir
    }

    #[test]
    fn keep_and_older_than_spare_recent_and_held_kernels() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        let old = kernel(&store, "6.1.0-aaaa", 30 * 86_400);
        let held = kernel(&store, "6.2.0-bbbb", 20 * 86_400);
        let recent = kernel(&store, "6.3.0-cccc", 60);
        let host = kernel(&store, "6.1.0-kvm-host-dddd", 40 * 86_400);
        let _use = hold_for_use(&held.join(IMAGE_FILE)).unwrap();
        // The use moved its last use to now: age it again for the test.
        File::open(&held)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(20 * 86_400))
            .unwrap();
        let opts = KernelCleanOptions {
            keep: Some(1),
            ..Default::default()
        };
        let report = clean(&store, opts).unwrap();
        let gone: Vec<_> = report.removed.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(gone, ["6.1.0-aaaa"]);
        assert_eq!(report.kept[0].name, "6.2.0-bbbb");
        assert!(!old.exists() && held.exists() && recent.exists() && host.exists());
        let opts = KernelCleanOptions {
            older_than: Some(Duration::from_secs(86_400)),
            dry_run: true,
            ..Default::default()
        };
        let report = clean(&store, opts).unwrap();
        let gone: Vec<_> = report.removed.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(gone, ["6.1.0-kvm-host-dddd"], "held and recent stay");
        assert!(host.exists(), "a dry run removed it");
    }

    #[test]
    fn a_use_records_the_time_and_blocks_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().to_owned());
        let dir = kernel(&store, "6.1.0-aaaa", 86_400);
        let held = hold_for_use(&dir.join(IMAGE_FILE)).unwrap();
        let used = fs::metadata(&dir).unwrap().modified().unwrap();
        assert!(crate::units::secs_since(used) < 5);
        assert!(hold_for_use(Path::new("/boot/vmlinuz")).is_none());
        drop(held);
    }
}
