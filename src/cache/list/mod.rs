//! `template list`: published entries and a count of debris.
//!
//! Listing only looks. Whether an entry is in use is read from /proc/locks;
//! only where that cannot be read is the key lock tried, shared and without
//! blocking, and released at once, so a builder is never held up.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use super::cleanup::Skipped;
use super::cleanup::entries::StaleCheck;
use super::key::Key;
use super::last_use;
use super::lookup;
use super::names::{self, DebrisKind, RootName};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint::Scheme;
use crate::store::lock::{self, Mode};
use crate::store::space;

mod render;
pub(crate) use render::human_age;

/// An entry's state, most serious first: not an entry, invalid, in use,
/// stale, ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EntryState {
    Ok,
    InUse,
    Stale,
    Invalid,
    /// Named like an entry but holding files the cache's writers never put
    /// in one: a user's directory, never replaced or removed.
    NotAnEntry,
    /// Another user's entry this user cannot read (made under a strict
    /// umask, or by an older tool).
    Unreadable,
}

/// One directory of the root that is (or looks like) a published entry.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListEntry {
    pub name: String,
    pub path: PathBuf,
    /// From the key; `None` when the name is not a key.
    pub fs: Option<Filesystem>,
    pub capacity_mib: Option<u64>,
    /// Allocated bytes of the whole entry directory.
    pub allocated_bytes: u64,
    pub state: EntryState,
    /// Why it is invalid, or who holds it.
    pub detail: Option<String>,
    /// Processes holding its key lock, where /proc/locks tells.
    pub holders: Vec<i32>,
    /// `None` when it cannot be told (no formatter, or not a key).
    pub stale: Option<bool>,
    /// What its key's fingerprint hashes, when it names the installed
    /// formatter (`version`: ours and ktstr 0.15's; `binary`: ktstr 0.27
    /// and later); `None` when stale or not told.
    pub scheme: Option<Scheme>,
    /// Seconds since `template.img` (else the directory) was last written.
    pub age_secs: Option<u64>,
    /// Seconds since its last use ([`crate::cache::last_use`]); an entry
    /// nobody recorded a use of counts from its publication.
    pub last_used_secs: Option<u64>,
}

/// The order of `template list --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ListOrder {
    /// By key (the default).
    #[default]
    Name,
    /// Largest allocation first.
    Size,
    /// Oldest image first.
    Age,
    /// Least recently used first: the order the budgets of `clean` remove in.
    LastUsed,
}

/// Debris by shape, with its allocated bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DebrisCount {
    pub in_flight: usize,
    pub staging_dir: usize,
    pub per_test: usize,
    pub bytes: u64,
}

/// What `template list` shows: entries by name, debris by shape.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListReport {
    pub root: PathBuf,
    pub entries: Vec<ListEntry>,
    pub debris: DebrisCount,
    /// Why some staleness could not be told (a formatter is missing).
    pub notes: Vec<String>,
    /// Names that are neither entries nor debris, and why they were not examined.
    pub skipped: Vec<Skipped>,
}

/// Lists `root`. A missing root lists nothing; an unreadable one is an error.
pub(crate) fn list(root: &Path) -> Result<ListReport> {
    let mut report = ListReport {
        root: root.to_owned(),
        entries: Vec::new(),
        debris: DebrisCount::default(),
        notes: Vec::new(),
        skipped: Vec::new(),
    };
    let Some(names) = super::cleanup::read_root(root)? else {
        return Ok(report);
    };
    let mut stale = StaleCheck::default();
    for name in &names {
        let path = root.join(name);
        match names::classify(name) {
            RootName::Debris { kind, .. } => report.debris.add(kind, &path),
            RootName::Other => match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    // Other names are UTF-8: classify said so.
                    let name = name.to_string_lossy();
                    let entry = examine(root, &name, &mut stale, &mut report.notes);
                    report.entries.push(entry);
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    report.skip(path, "a symlink, not an entry directory; not followed")
                }
                Ok(_) => report.skip(path, "not a directory, so not an entry"),
                Err(_) => {}
            },
            RootName::NotUtf8 => report.skip(path, "the name is not UTF-8; not examined"),
            RootName::Locks => {}
        }
    }
    Ok(report)
}

impl ListReport {
    /// Puts the entries in `order`; ties, and what cannot be told, by name.
    pub(crate) fn sort(&mut self, order: ListOrder) {
        let far = |secs: Option<u64>| std::cmp::Reverse(secs.unwrap_or(u64::MAX));
        self.entries.sort_by(|a, b| {
            let by = match order {
                ListOrder::Name => std::cmp::Ordering::Equal,
                ListOrder::Size => b.allocated_bytes.cmp(&a.allocated_bytes),
                ListOrder::Age => far(a.age_secs).cmp(&far(b.age_secs)),
                ListOrder::LastUsed => far(a.last_used_secs).cmp(&far(b.last_used_secs)),
            };
            by.then_with(|| a.name.cmp(&b.name))
        });
    }

    /// Records a name left alone; a name that is not UTF-8 is shown (and its
    /// path given) lossily, so the JSON form can still be written.
    fn skip(&mut self, path: PathBuf, reason: &str) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        self.skipped.push(Skipped {
            path: self.root.join(&*name),
            name: name.into_owned(),
            reason: reason.to_owned(),
        });
    }
}

impl DebrisCount {
    fn add(&mut self, kind: DebrisKind, path: &Path) {
        match kind {
            DebrisKind::InFlight => self.in_flight += 1,
            DebrisKind::StagingDir => self.staging_dir += 1,
            DebrisKind::PerTest => self.per_test += 1,
        }
        self.bytes += space::allocated_bytes(path).unwrap_or(0);
    }

    /// All debris, whatever its shape.
    pub(crate) fn total(&self) -> usize {
        self.in_flight + self.staging_dir + self.per_test
    }
}

/// Judges one entry directory. Invalid beats in use beats stale: a broken
/// entry is worth knowing about even while someone holds its lock.
fn examine(root: &Path, name: &str, stale: &mut StaleCheck, notes: &mut Vec<String>) -> ListEntry {
    let path = root.join(name);
    let image = path.join(names::TEMPLATE_FILE);
    let key: Option<Key> = name.parse().ok();
    let holders = lock_holders(&lock::key_lock_path(root, name));
    let scheme = key.as_ref().and_then(|key| match stale.scheme(key) {
        Ok(scheme) => Some(scheme),
        Err(e) => {
            if !notes.contains(&e) {
                notes.push(e);
            }
            None
        }
    });
    let is_stale = scheme.map(|scheme| scheme.is_none());
    let invalid = match &key {
        None => Some((
            EntryState::Invalid,
            "not a template key (<fs>-<MiB>m-<16 hex>)".to_owned(),
        )),
        Some(key) => problem(root, key),
    };
    let (state, detail) = match (invalid, holders.is_empty(), is_stale) {
        (Some((state, why)), _, _) => (state, Some(why)),
        (None, false, _) => (EntryState::InUse, Some(lock::describe_pids(&holders))),
        (None, true, Some(true)) => (EntryState::Stale, None),
        (None, true, _) => (EntryState::Ok, None),
    };
    ListEntry {
        name: name.to_owned(),
        fs: key.as_ref().map(|k| k.fs),
        capacity_mib: key.as_ref().map(|k| k.capacity.mib()),
        allocated_bytes: space::allocated_bytes(&path).unwrap_or(0),
        state,
        detail,
        holders: holders.into_iter().filter(|pid| *pid > 0).collect(),
        stale: is_stale,
        scheme: scheme.flatten(),
        age_secs: age(&image).or_else(|| age(&path)),
        last_used_secs: last_use::last_used(root, name).map(last_use::secs_since),
        path,
    }
}

/// Why `key`'s entry is not a valid template, if it is not, and whether it
/// is one at all: the lookup's own judgement, so a build and the list agree
/// on what counts.
fn problem(root: &Path, key: &Key) -> Option<(EntryState, String)> {
    let invalid = |why| Some((EntryState::Invalid, why));
    let dir = lookup::entry_dir(root, key);
    let search = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::X_OK;
    if let (Err(_), Ok(meta)) = (
        nix::unistd::access(&dir, search),
        fs::symlink_metadata(&dir),
    ) && meta.is_dir()
    {
        let owner = crate::store::share::user_name(meta.uid());
        let why = format!("owned by {owner}, mode {:04o}", meta.mode() & 0o7777);
        return Some((EntryState::Unreadable, why));
    }
    match lookup::judge(root, key) {
        Ok(lookup::Verdict::Valid) => None,
        Ok(lookup::Verdict::Invalid(why)) => invalid(why),
        Ok(lookup::Verdict::Foreign(why)) => Some((EntryState::NotAnEntry, format!("it {why}"))),
        Ok(lookup::Verdict::Absent) => invalid("it vanished while being listed".to_owned()),
        Err(e) => invalid(format!("cannot examine it: {e:#}")),
    }
}

/// Pids holding the key lock at `path`; `[0]` for a holder that cannot be
/// named. Empty when the lockfile does not exist or nobody holds it.
fn lock_holders(path: &Path) -> Vec<i32> {
    if !path.exists() {
        return Vec::new();
    }
    let pids: Vec<i32> = lock::holders(path).iter().map(|h| h.pid).collect();
    if !pids.is_empty() || Path::new("/proc/locks").exists() {
        return pids;
    }
    // No /proc: a shared try fails only under an exclusive holder (a builder
    // or a sweep); it is released at once.
    match lock::probe(path, Mode::Shared) {
        Ok(lock::Probe::Held) => vec![0],
        _ => Vec::new(),
    }
}

/// Seconds since `path` was last modified; `None` if it cannot be told or
/// lies in the future (a skewed clock).
fn age(path: &Path) -> Option<u64> {
    let modified = fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(modified).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(60), "1m");
        assert_eq!(human_age(7200), "2h");
        assert_eq!(human_age(3 * 86400 + 5), "3d");
    }

    #[test]
    fn entry_problems_are_named_as_a_lookup_names_them() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let key: Key = "ext4-16m-0123456789abcdef".parse().unwrap();
        let dir = root.join(key.to_string());
        let image = dir.join(names::TEMPLATE_FILE);
        fs::create_dir(&dir).unwrap();
        let why = |root: &Path| problem(root, &key).map(|(_, why)| why).unwrap_or_default();
        let state = |root: &Path| problem(root, &key).map(|(state, _)| state);
        assert_eq!(why(root), "template.img is missing");
        assert_eq!(state(root), Some(EntryState::Invalid));
        fs::create_dir(&image).unwrap();
        assert!(why(root).contains("not a regular file") || why(root).contains("never writes"));
        // A directory where the image should be is a user's: not an entry.
        assert_eq!(state(root), Some(EntryState::NotAnEntry));
        fs::remove_dir(&image).unwrap();
        fs::write(&image, vec![0u8; 16 << 20]).unwrap();
        assert!(why(root).starts_with("no ext4 superblock magic"));
        let mut bytes = vec![0u8; 16 << 20];
        bytes[0x438..0x43a].copy_from_slice(&[0x53, 0xEF]);
        fs::write(&image, &bytes).unwrap();
        assert_eq!(problem(root, &key), None);
        // Cut past the magic: the magic is there, the size is not.
        bytes.truncate(1 << 20);
        fs::write(&image, &bytes).unwrap();
        let cut = why(root);
        assert!(cut.contains("is 1048576 bytes"), "{cut}");
        // A symlink to a valid image is not followed, nor taken for ours.
        let valid = root.join("valid.img");
        bytes.resize(16 << 20, 0);
        fs::write(&valid, &bytes).unwrap();
        fs::remove_file(&image).unwrap();
        std::os::unix::fs::symlink(&valid, &image).unwrap();
        assert_eq!(state(root), Some(EntryState::NotAnEntry));
        // A user's file beside a zero-filled image: not an entry either.
        fs::remove_file(&image).unwrap();
        fs::write(&image, vec![0u8; 16 << 20]).unwrap();
        fs::write(dir.join("thesis.tex"), b"x").unwrap();
        assert_eq!(state(root), Some(EntryState::NotAnEntry));
        assert!(why(root).contains("holds `thesis.tex`"), "{}", why(root));
    }

    #[test]
    fn the_debris_line_counts_each_shape() {
        let report = ListReport {
            root: "/r".into(),
            entries: Vec::new(),
            debris: DebrisCount {
                in_flight: 1,
                staging_dir: 2,
                per_test: 0,
                bytes: 3 << 20,
            },
            notes: Vec::new(),
            skipped: Vec::new(),
        };
        assert!(report.debris_line().starts_with(
            "debris: 1 staging image, 2 staging directories, 0 per-test images (3.0 MiB)"
        ));
    }
}
