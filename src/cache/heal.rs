//! Self-heal on a full disk: a build or clone that fails for lack of space
//! (ENOSPC, EDQUOT) makes room and tries once more.
//!
//! Making room is `clean --min-free <need>` on the template root: dead
//! writers' debris first, then least recently used entries no process holds,
//! until `need` bytes are available. The key at work is never among them: its
//! builder holds its lock exclusively and its cloner shared, and an entry is
//! removed only under an exclusive lock taken without blocking. Kernels are
//! never touched. `--no-evict` or `KTSTR_NO_EVICT=1` turns it off.

use std::path::Path;

use anyhow::Result;

use super::cleanup::{self, Budget, CleanMode, CleanOptions, CleanReport, ItemKind};
use super::key::Key;
use super::names;
use crate::store::space;

/// The environment variable that turns self-heal off for harnesses that use
/// the library (any value but empty, `0` or `false`).
pub(crate) const NO_EVICT_ENV: &str = "KTSTR_NO_EVICT";

/// Whether [`NO_EVICT_ENV`] asks for no eviction.
pub(crate) fn no_evict_from_env() -> bool {
    std::env::var_os(NO_EVICT_ENV).is_some_and(|v| !matches!(v.to_str(), Some("" | "0" | "false")))
}

/// Marks an error as "the disk holding the cache is full", so self-heal can
/// tell it from other failures whatever wording the cause has (a formatter
/// in a guest sees only an I/O error).
#[derive(Debug)]
pub(crate) struct DiskFull(pub String);

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `err` says the disk is full: marked [`DiskFull`], or ENOSPC or
/// EDQUOT anywhere in its chain.
pub(crate) fn is_disk_full(err: &anyhow::Error) -> bool {
    err.downcast_ref::<DiskFull>().is_some()
        || err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                .is_some_and(|e| e == libc::ENOSPC || e == libc::EDQUOT)
        })
}

/// What a build of `key` needs free: mkfs writes 4.6 MiB (btrfs, any size),
/// 64 MiB (xfs: its log is zeroed) and about 3 % of the capacity (ext4) on
/// sparse images (measured with btrfs-progs 6.2, xfsprogs 6.1, e2fsprogs
/// 1.47), so 64 MiB and a sixteenth of the capacity, never more than it.
pub(crate) fn build_need(key: &Key) -> u64 {
    let capacity = key.capacity.bytes();
    ((64 << 20) + capacity / 16).min(capacity)
}

/// Runs `attempt`; when it fails for lack of space and `evict` allows, makes
/// `need` bytes available under `root` and runs it once more, saying what
/// was removed. Without `evict`, the error names the fix.
pub(crate) fn retry_when_full<T>(
    root: &Path,
    need: u64,
    evict: bool,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let err = match attempt() {
        Err(err) if is_disk_full(&err) => err,
        other => return other,
    };
    if !evict {
        return Err(err.context(format!(
            "self-heal is off (--no-evict or {NO_EVICT_ENV}); `cargo ktstr clean --min-free {}` \
             removes least recently used templates until that much is free",
            need_arg(need)
        )));
    }
    let report = make_room(root, need)?;
    tracing::warn!("{}; trying again", describe(&report, root));
    attempt().map_err(|e| e.context(format!("even after self-heal: {}", describe(&report, root))))
}

/// `clean --min-free need`: debris, then least recently used entries.
pub(crate) fn make_room(root: &Path, need: u64) -> Result<CleanReport> {
    let budget = Budget {
        min_free: Some(need),
        ..Budget::default()
    };
    let options = CleanOptions {
        budget,
        ..CleanOptions::new(CleanMode::Debris, false)
    };
    cleanup::clean(root, options)
}

/// `the disk holding `/r` was full: removed 3 debris entries and 2 templates
/// (btrfs-…, ext4-…) and freed 96 MiB`.
fn describe(report: &CleanReport, root: &Path) -> String {
    let t = &report.totals;
    let templates: Vec<_> = report
        .removed
        .iter()
        .filter(|r| r.kind == ItemKind::Template)
        .map(|r| names::shown(&r.name).into_owned())
        .collect();
    let list = if templates.is_empty() {
        String::new()
    } else {
        format!(" ({})", templates.join(", "))
    };
    let mut line = format!(
        "the disk holding `{}` was full: removed {} debris entries and {} least recently used \
         templates{list}, which freed {}",
        root.display(),
        t.removed_debris,
        t.removed_templates,
        space::human_bytes(t.freed_bytes)
    );
    if t.kept_in_use > 0 {
        line += &format!("; kept {} in use", t.kept_in_use);
    }
    if let Some(short) = report
        .budget
        .as_ref()
        .map(|b| b.min_free_short_bytes)
        .filter(|s| *s > 0)
    {
        line += &format!("; still {} short", space::human_bytes(short));
    }
    line
}

/// `need` as `--min-free` takes it, rounded up to whole MiB.
fn need_arg(need: u64) -> String {
    format!("{}M", need.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Capacity;
    use crate::formatter::filesystem::Filesystem;

    #[test]
    fn the_need_covers_what_mkfs_writes_and_never_the_whole_disk_twice() {
        let key = |fs, mib| Key::new(fs, Capacity::from_mib(mib).unwrap(), "0123456789abcdef");
        assert_eq!(build_need(&key(Filesystem::Ext4, 16)), 16 << 20);
        assert_eq!(
            build_need(&key(Filesystem::Xfs, 300)),
            (64 << 20) + (300 << 20) / 16
        );
        assert!(build_need(&key(Filesystem::Ext4, 1024)) > 34 << 20);
    }

    #[test]
    fn only_space_errors_are_disk_full() {
        let enospc = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(is_disk_full(&enospc.context("failed to write `x`")));
        let edquot = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EDQUOT));
        assert!(is_disk_full(&edquot));
        assert!(is_disk_full(
            &anyhow::anyhow!("io").context(DiskFull("full".into()))
        ));
        let eio = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EIO));
        assert!(!is_disk_full(&eio));
    }

    #[test]
    fn without_eviction_the_error_names_the_fix_and_nothing_is_retried() {
        let mut tries = 0;
        let err = retry_when_full::<()>(Path::new("/nonexistent"), 5 << 20, false, || {
            tries += 1;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
        })
        .unwrap_err();
        assert_eq!(tries, 1);
        let err = format!("{err:#}");
        assert!(err.contains("cargo ktstr clean --min-free 5M"), "{err}");
    }
}
