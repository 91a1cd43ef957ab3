//! The text form of [`ListReport`]: a table of entries, then a debris line.

use super::{EntryState, ListEntry, ListReport};
use crate::cache::names::{self, DebrisKind};
use crate::store::space;

/// `40s`, `12m`, `5h`, `3d`: the largest unit that fits.
pub(crate) fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

impl ListReport {
    /// The table of entries, then the debris line, for a terminal.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if self.entries.is_empty() {
            out += &format!("no templates in `{}`\n", self.root.display());
        } else {
            out += &self.table();
        }
        for s in &self.skipped {
            out += &format!("skipped {}: {}\n", names::shown(&s.name), s.reason);
        }
        for note in &self.notes {
            out += &format!("note: staleness unknown: {note}\n");
        }
        out += &self.debris_line();
        out.push('\n');
        out
    }

    /// Left-aligned columns as wide as their widest cell.
    fn table(&self) -> String {
        let mut rows = vec![
            [
                "KEY",
                "FS",
                "CAPACITY",
                "SCHEME",
                "ALLOCATED",
                "STATE",
                "AGE",
                "LAST USED",
            ]
            .map(String::from),
        ];
        for e in &self.entries {
            rows.push([
                names::shown(&e.name).into_owned(),
                e.fs.map_or("-".into(), |fs| fs.to_string()),
                e.capacity_mib
                    .map_or("-".into(), |mib| format!("{mib} MiB")),
                e.scheme.map_or("-".into(), |scheme| scheme.to_string()),
                space::human_bytes(e.allocated_bytes),
                e.state_text(),
                e.age_secs.map_or("-".into(), human_age),
                e.last_used_secs
                    .map_or("-".into(), |secs| format!("{} ago", human_age(secs))),
            ]);
        }
        let mut widths = [0; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out += cells.join("  ").trim_end();
            out.push('\n');
        }
        out
    }

    /// `debris: 1 staging image, 0 staging directories, 2 per-test images (3.0 MiB)`.
    pub(crate) fn debris_line(&self) -> String {
        let d = &self.debris;
        let shape = |n: usize, kind: DebrisKind| {
            let what = kind.describe();
            match (n, what.strip_suffix('y')) {
                (1, _) => format!("1 {what}"),
                (_, Some(stem)) => format!("{n} {stem}ies"),
                (_, None) => format!("{n} {what}s"),
            }
        };
        let mut line = format!(
            "debris: {}, {}, {} ({})",
            shape(d.in_flight, DebrisKind::InFlight),
            shape(d.staging_dir, DebrisKind::StagingDir),
            shape(d.per_test, DebrisKind::PerTest),
            space::human_bytes(d.bytes)
        );
        if d.total() > 0 {
            line += "; `cargo ktstr clean` removes what dead processes left";
        }
        line
    }
}

impl ListEntry {
    /// `ok`, `in use by pid 7 (alice)`, `stale`, `invalid: no btrfs superblock magic`.
    pub(crate) fn state_text(&self) -> String {
        let detail = self.detail.as_deref().unwrap_or_default();
        match self.state {
            EntryState::Ok => "ok".to_owned(),
            EntryState::Stale => "stale".to_owned(),
            EntryState::InUse if self.stale == Some(true) => format!("in use by {detail}, stale"),
            EntryState::InUse => format!("in use by {detail}"),
            EntryState::Invalid => format!("invalid: {detail}"),
            EntryState::NotAnEntry => format!("not an entry: {detail}; left alone"),
            EntryState::Unreadable => format!("unreadable to you: {detail}"),
        }
    }
}
