//! `clean --plan`: remove exactly what a dry run listed.
//!
//! A plan is the JSON of `clean … --dry-run --json`. Each listed path goes
//! only if it is still what was listed: the same inode, size and change time
//! (for an entry, those of its `template.img`, since recording a use changes
//! the directory's), and for an entry the same last use. It must also pass
//! today's rules: debris still needs a dead owner and a free flock, an entry
//! its key lock taken without blocking. Anything else is kept as `changed
//! since the plan`. A plan for another root, of another format version, not
//! made by a dry run, or malformed changes nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::identity::Identity;
use super::{CleanReport, ItemKind, debris, entries};
use crate::cache::key::Key;
use crate::cache::names::{self, RootName};
use crate::store::lock;
use crate::usage::UsageError;

/// One listed removal, as the dry run's JSON gives it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlannedItem {
    pub name: String,
    pub path: PathBuf,
    pub kind: String,
    pub reason: super::Reason,
    pub identity: Option<Identity>,
}

/// The parts of a dry run's JSON a plan needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Plan {
    pub root: PathBuf,
    pub mode: super::CleanMode,
    pub dry_run: bool,
    pub removed: Vec<PlannedItem>,
}

impl Plan {
    /// Reads and checks the plan at `path` for `root`: an error (that has
    /// changed nothing) when it is malformed, of another format version, not
    /// a dry run's, or for another root. Those are usage errors (exit 2);
    /// a plan that cannot be read is a runtime failure.
    pub(crate) fn read(path: &Path, root: &Path) -> Result<Plan> {
        Self::parse(path, root).map_err(|err| match err.root_cause().is::<io::Error>() {
            true => err,
            false => UsageError(format!("{err:#}")).into(),
        })
    }

    fn parse(path: &Path, root: &Path) -> Result<Plan> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("failed to read the plan `{}`", path.display()))?;
        let not_a_plan = || {
            format!(
                "`{}` is not a plan: make one with `cargo ktstr clean … --dry-run --json > plan.json`",
                path.display()
            )
        };
        let value: serde_json::Value = serde_json::from_str(&text).with_context(not_a_plan)?;
        // The version first: another version's fields may differ.
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(super::FORMAT_VERSION)) {
            let found = version.map_or("none".to_owned(), |v| v.to_string());
            bail!(
                "the plan `{}` is of format version {found}, this cargo-ktstr reads version {}; \
                 make a new one with `--dry-run --json`",
                path.display(),
                super::FORMAT_VERSION
            );
        }
        let plan: Plan = serde_json::from_value(value).with_context(not_a_plan)?;
        if !plan.dry_run {
            bail!(
                "`{}` reports a sweep that already ran, not a plan; make one with `--dry-run --json`",
                path.display()
            );
        }
        if !same_place(&plan.root, root) {
            bail!(
                "the plan `{}` is for the root `{}`, not `{}`; pass --cache-dir {} to apply it",
                path.display(),
                plan.root.display(),
                root.display(),
                plan.root.display()
            );
        }
        for item in &plan.removed {
            if !names::is_plain(&item.name) || item.path != plan.root.join(&item.name) {
                bail!(
                    "the plan `{}` lists `{}`, which is not a name in its root; nothing was removed",
                    path.display(),
                    item.path.display()
                );
            }
        }
        Ok(plan)
    }
}

/// Whether two spellings of a root name one directory (either may be
/// missing: then they must be spelled alike).
fn same_place(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        (Err(e), _) | (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => a == b,
        _ => false,
    }
}

/// Removes what `plan` lists under `root`, each only if it is still what was
/// listed and today's rules allow; the report of what was done.
pub(crate) fn apply(root: &Path, plan: &Plan) -> CleanReport {
    let mut report = CleanReport::new(root, plan.mode, false);
    let before = crate::store::space::free_bytes(root).ok();
    let mut locks_ready = None;
    for item in &plan.removed {
        let Some(expect) = item.identity else {
            let why = "the plan does not say what it was (no identity); kept".to_owned();
            report.keep(&item.name, kind_of(&item.kind), why, None, false);
            continue;
        };
        match names::classify(item.name.as_ref()) {
            RootName::Debris {
                kind,
                pid: Some(pid),
            } => {
                debris::apply_planned(root, &item.name, kind.into(), pid, &expect, &mut report);
            }
            RootName::Other if item.name.parse::<Key>().is_ok() => {
                if *locks_ready.get_or_insert_with(|| entries::locks_dir_ready(root, &mut report)) {
                    apply_entry(root, item, expect, &mut report);
                }
            }
            _ => report.skip(
                &item.name,
                "neither debris nor an entry by its name; left alone".into(),
            ),
        }
    }
    let freed = super::commit_and_measure(root, before, &report);
    report.finish(freed);
    report
}

/// `--plan`'s removal of the entry `item`: under its key lock, and only if
/// it is what the plan saw.
fn apply_entry(root: &Path, item: &PlannedItem, expect: Identity, report: &mut CleanReport) {
    let dir = root.join(&item.name);
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return report.skip(&item.name, "no longer a directory; left alone".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return report.skip(&item.name, "already gone".into());
        }
        Err(e) => {
            return report.fail(
                &item.name,
                ItemKind::Template,
                format!("cannot stat it: {e}"),
            );
        }
    }
    let Ok(key) = item.name.parse::<Key>() else {
        return;
    };
    let lockfile_existed = lock::key_lock_path(root, &item.name).exists();
    let mut candidate = entries::Candidate {
        name: item.name.clone(),
        key,
        last_used: None,
        bytes: crate::store::space::allocated_bytes(&dir).unwrap_or(0),
        held: false,
    };
    let still = move |dir: &Path| Identity::of_entry_with(dir, lockfile_existed) == Some(expect);
    entries::remove_if_unchanged(root, &mut candidate, item.reason, &still, report);
}

/// The kind a plan's JSON names (`template`, `in-flight`, ...).
fn kind_of(kind: &str) -> ItemKind {
    match kind {
        "in-flight" => names::DebrisKind::InFlight.into(),
        "staging-dir" => names::DebrisKind::StagingDir.into(),
        "per-test" => names::DebrisKind::PerTest.into(),
        _ => ItemKind::Template,
    }
}
