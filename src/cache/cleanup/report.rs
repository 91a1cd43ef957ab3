//! The report of one sweep, as data: what went, what stayed and why, the
//! totals and the one-line summary. It removes nothing: [`super::sweep`]
//! does, and records each outcome here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CleanMode;
use super::identity::Identity;
use crate::cache::names::DebrisKind;
use crate::store::space;

/// What a swept name is: a published entry or one of the debris shapes.
/// In JSON, `template` or the shape's own name (`in-flight`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    Template,
    #[serde(untagged)]
    Debris(DebrisKind),
}

impl From<DebrisKind> for ItemKind {
    fn from(kind: DebrisKind) -> Self {
        ItemKind::Debris(kind)
    }
}

impl ItemKind {
    /// A word or two for people: `template`, `staging image`, ...
    pub fn describe(self) -> &'static str {
        match self {
            ItemKind::Template => "template",
            ItemKind::Debris(kind) => kind.describe(),
        }
    }
}

/// Why something was removed: a dead writer's debris, or which rule took an
/// entry. In JSON, `debris`, `all`, `stale`, `older-than`, `max-size`,
/// `min-free`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Debris,
    All,
    Stale,
    OlderThan,
    MaxSize,
    MinFree,
}

impl Reason {
    /// The word the report and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Debris => "debris",
            Reason::All => "all",
            Reason::Stale => "stale",
            Reason::OlderThan => "older-than",
            Reason::MaxSize => "max-size",
            Reason::MinFree => "min-free",
        }
    }
}

/// Removed (or, in a dry run, would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub name: String,
    pub path: PathBuf,
    pub kind: ItemKind,
    /// Allocated bytes before removal.
    pub bytes: u64,
    /// Why a template was no valid entry (a lookup would have ignored it),
    /// else `None`.
    pub invalid: Option<String>,
    pub reason: Reason,
    /// A template's last use, in seconds before this sweep.
    pub last_used_secs: Option<u64>,
    /// What it was when judged, so `clean --plan` removes only that.
    pub identity: Option<Identity>,
}

/// Left in place because something may still need it.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub name: String,
    pub path: PathBuf,
    pub kind: ItemKind,
    pub reason: String,
    /// The process it was kept for, where known.
    pub pid: Option<i32>,
    /// Kept because a live process owns or holds it (rather than because it
    /// could not be judged).
    pub in_use: bool,
}

/// Not judged at all: not ours to touch, or the sweep could not decide.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub name: String,
    pub path: PathBuf,
    pub reason: String,
}

/// Meant to go, but the removal failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub name: String,
    pub path: PathBuf,
    pub kind: ItemKind,
    pub error: String,
}

/// Counts over the report's lists, and the space figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub removed_templates: usize,
    pub removed_debris: usize,
    /// Allocated bytes of what was (or would be) removed.
    pub removed_bytes: u64,
    /// What the filesystem got back, by statvfs before and after; less than
    /// `removed_bytes` where reflink clones still share the blocks. Zero in
    /// a dry run.
    pub freed_bytes: u64,
    pub kept_in_use: usize,
    pub kept: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Where the budgets stand once the sweep is done (in a dry run, where they
/// would): present when `--older-than`, `--max-size` or `--min-free` was given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BudgetStatus {
    /// Allocated bytes of the entries left.
    pub templates_bytes: u64,
    pub max_size_bytes: Option<u64>,
    pub older_than_secs: Option<u64>,
    /// Free bytes of the filesystem holding the root (statvfs `f_bavail`, as
    /// `df` shows); in a dry run, today's plus what would be removed.
    pub free_bytes: Option<u64>,
    pub min_free_bytes: Option<u64>,
    /// How far `free_bytes` is under `--min-free`: nothing removable was left.
    pub min_free_short_bytes: u64,
    /// Removing every entry no process holds could not have met
    /// `--min-free`, so none was removed for it.
    pub min_free_unreachable: bool,
}

/// The version of the JSON report, which a plan carries (`clean --plan`).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The outcome of one sweep.
#[derive(Debug, Clone, Serialize)]
pub struct CleanReport {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    pub root: PathBuf,
    pub mode: CleanMode,
    pub dry_run: bool,
    pub removed: Vec<Removed>,
    pub kept: Vec<Kept>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
    pub totals: Totals,
    pub budget: Option<BudgetStatus>,
}

impl CleanReport {
    /// An empty report of a sweep of `root`.
    pub fn new(root: &std::path::Path, mode: CleanMode, dry_run: bool) -> Self {
        CleanReport {
            format_version: FORMAT_VERSION,
            root: root.to_owned(),
            mode,
            dry_run,
            removed: Vec::new(),
            kept: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            totals: Totals::default(),
            budget: None,
        }
    }

    /// Fills in the totals once the lists are complete.
    pub(super) fn finish(&mut self, freed_bytes: u64) {
        let templates = self
            .removed
            .iter()
            .filter(|r| r.kind == ItemKind::Template)
            .count();
        self.totals = Totals {
            removed_templates: templates,
            removed_debris: self.removed.len() - templates,
            removed_bytes: self.removed.iter().map(|r| r.bytes).sum(),
            freed_bytes,
            kept_in_use: self.kept.iter().filter(|k| k.in_use).count(),
            kept: self.kept.len(),
            skipped: self.skipped.len(),
            failed: self.failed.len(),
        };
    }

    /// One line: `removed 2 templates and 3 debris entries (1.2 GiB freed);
    /// kept 1 in use`.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let debris = count(t.removed_debris, "debris entry", "debris entries");
        let what = match self.mode {
            CleanMode::Debris if self.budget.is_none() && t.removed_templates == 0 => debris,
            CleanMode::Debris | CleanMode::All | CleanMode::Stale => {
                let noun = match self.mode {
                    CleanMode::Stale => ("stale template", "stale templates"),
                    _ => ("template", "templates"),
                };
                format!(
                    "{} and {debris}",
                    count(t.removed_templates, noun.0, noun.1)
                )
            }
        };
        let space = if self.dry_run {
            format!("{} allocated", space::human_bytes(t.removed_bytes))
        } else if t.freed_bytes >= t.removed_bytes {
            format!("{} freed", space::human_bytes(t.freed_bytes))
        } else {
            // Reflink clones still share the rest, or other writers took it.
            format!(
                "{} freed of {} allocated",
                space::human_bytes(t.freed_bytes),
                space::human_bytes(t.removed_bytes)
            )
        };
        let mut line = format!("{verb} {what} ({space})");
        if t.kept_in_use > 0 {
            line += &format!("; kept {} in use", t.kept_in_use);
        }
        if t.kept > t.kept_in_use {
            line += &format!("; kept {} that could not be judged", t.kept - t.kept_in_use);
        }
        if t.skipped > 0 {
            line += &format!("; skipped {}", t.skipped);
        }
        if t.failed > 0 && self.dry_run {
            line += &format!("; could not remove {} (see the errors above)", t.failed);
        } else if t.failed > 0 {
            line += &format!("; failed to remove {} (see the errors above)", t.failed);
        }
        if let Some(budget) = &self.budget {
            line += &format!("; {}", budget.line());
        }
        line
    }

    pub(super) fn path_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub(super) fn keep(
        &mut self,
        name: &str,
        kind: ItemKind,
        reason: String,
        pid: Option<i32>,
        in_use: bool,
    ) {
        tracing::debug!("keeping {name}: {reason}");
        let path = self.path_of(name);
        self.kept.push(Kept {
            name: name.to_owned(),
            path,
            kind,
            reason,
            pid,
            in_use,
        });
    }

    pub(super) fn skip(&mut self, name: &str, reason: String) {
        tracing::debug!("skipping {name}: {reason}");
        let path = self.path_of(name);
        self.skipped.push(Skipped {
            name: name.to_owned(),
            path,
            reason,
        });
    }

    pub(super) fn fail(&mut self, name: &str, kind: ItemKind, error: String) {
        let path = self.path_of(name);
        let verb = if self.dry_run {
            "a real run could not remove"
        } else {
            "could not remove"
        };
        // An error, not a warning: the summary points here, and -q keeps errors.
        tracing::error!("{verb} `{}`: {error}", path.display());
        self.failed.push(Failed {
            name: name.to_owned(),
            path,
            kind,
            error,
        });
    }

    /// Puts the lists in name order, as a sweep that took its pieces in
    /// another order (by inode) found them.
    pub(super) fn sort_by_name(&mut self) {
        self.removed.sort_by(|a, b| a.name.cmp(&b.name));
        self.kept.sort_by(|a, b| a.name.cmp(&b.name));
        self.skipped.sort_by(|a, b| a.name.cmp(&b.name));
        self.failed.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Records `name` as removed (in a dry run, as one that would be) for
    /// `reason`; `bytes` is its allocated size before, `identity` what it
    /// was when judged.
    pub(super) fn record_removed(
        &mut self,
        name: &str,
        kind: ItemKind,
        bytes: u64,
        reason: Reason,
        identity: Option<Identity>,
    ) {
        let path = self.path_of(name);
        if !self.dry_run {
            tracing::debug!(
                "removed {} ({}, {})",
                path.display(),
                kind.describe(),
                space::human_bytes(bytes)
            );
        }
        self.removed.push(Removed {
            name: name.to_owned(),
            path,
            kind,
            bytes,
            invalid: None,
            reason,
            last_used_secs: None,
            identity,
        });
    }
}

impl CleanReport {
    /// Why `--min-free` was not met and what to do, when it was not (the
    /// caller's exit status then says failure); holders are named only when
    /// there are some.
    pub fn min_free_shortfall(&self) -> Option<String> {
        let budget = self.budget.as_ref()?;
        if budget.min_free_short_bytes == 0 {
            return None;
        }
        let short = space::human_bytes(budget.min_free_short_bytes);
        let root = self.root.display();
        let what = if budget.min_free_unreachable {
            format!(
                "`{root}` is {short} short of --min-free, more than removing every entry no \
                 process holds would give back, so none was removed"
            )
        } else {
            format!("`{root}` is still {short} short of --min-free: nothing else can be removed")
        };
        let holders = match self.totals.kept_in_use {
            0 => String::new(),
            n => format!("stop what holds the {n} kept in use, "),
        };
        Some(format!(
            "{what}; {holders}free space elsewhere, or ask for less"
        ))
    }
}

impl BudgetStatus {
    /// `templates: 3.1 GiB of 4.0 GiB; 12 GiB free (--min-free 10 GiB)`.
    pub fn line(&self) -> String {
        let h = space::human_bytes;
        let mut line = format!("templates: {}", h(self.templates_bytes));
        if let Some(max) = self.max_size_bytes {
            line += &format!(" of {}", h(max));
        }
        if let Some(free) = self.free_bytes {
            line += &format!("; {} free", h(free));
        }
        if let Some(min) = self.min_free_bytes {
            if self.min_free_short_bytes > 0 {
                line += &format!(
                    ", {} short of --min-free {}",
                    h(self.min_free_short_bytes),
                    h(min)
                );
                if self.min_free_unreachable {
                    line += " (out of reach: none removed for it)";
                }
            } else {
                line += &format!(" (--min-free {})", h(min));
            }
        }
        line
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(mode: CleanMode, dry_run: bool) -> CleanReport {
        CleanReport::new(std::path::Path::new("/r"), mode, dry_run)
    }

    fn removed(kind: ItemKind, bytes: u64) -> Removed {
        Removed {
            name: "n".into(),
            path: "/r/n".into(),
            kind,
            bytes,
            invalid: None,
            reason: Reason::Debris,
            last_used_secs: None,
            identity: None,
        }
    }

    #[test]
    fn summaries_read_like_the_issue() {
        let mut r = report(CleanMode::Debris, false);
        r.removed = vec![removed(ItemKind::Debris(DebrisKind::InFlight), 1); 3];
        r.finish(412 << 20);
        assert_eq!(r.summary(), "removed 3 debris entries (412 MiB freed)");

        let mut r = report(CleanMode::All, false);
        r.removed = vec![removed(ItemKind::Template, 1); 2];
        r.removed
            .extend(vec![removed(ItemKind::Debris(DebrisKind::PerTest), 1); 3]);
        r.keep(
            "k",
            ItemKind::Template,
            "in use by pid 7".into(),
            Some(7),
            true,
        );
        r.finish(1288490189);
        assert_eq!(
            r.summary(),
            "removed 2 templates and 3 debris entries (1.2 GiB freed); kept 1 in use"
        );
    }

    #[test]
    fn shared_blocks_show_as_freed_of_allocated() {
        let mut r = report(CleanMode::Debris, false);
        r.removed = vec![removed(ItemKind::Debris(DebrisKind::PerTest), 64 << 20)];
        r.removed
            .push(removed(ItemKind::Debris(DebrisKind::InFlight), 32 << 20));
        r.finish(32 << 20);
        assert_eq!(
            r.summary(),
            "removed 2 debris entries (32 MiB freed of 96 MiB allocated)"
        );
    }

    #[test]
    fn dry_runs_say_would_and_count_allocated_bytes() {
        let mut r = report(CleanMode::Stale, true);
        r.removed = vec![removed(ItemKind::Template, 3 << 20)];
        r.removed
            .push(removed(ItemKind::Debris(DebrisKind::StagingDir), 1 << 20));
        r.skip("x", "pid field is not a positive number".into());
        r.finish(0);
        assert_eq!(
            r.summary(),
            "would remove 1 stale template and 1 debris entry (4.0 MiB allocated); skipped 1"
        );
    }
}
