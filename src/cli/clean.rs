//! `cargo ktstr clean`: parse and call [`crate::cache::cleanup`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::GlobalArgs;
use crate::cache::cleanup::{self, Budget, CleanMode, CleanOptions, CleanReport, ItemKind, plan};
use crate::cache::list::human_age;
use crate::cache::names;
use crate::kernel::clean as kernel_clean;
use crate::store::{root, space};
use crate::units;

#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// After the debris, remove every published entry no process holds.
    #[arg(long, conflicts_with = "stale")]
    pub all: bool,

    /// After the debris, remove entries made by another formatter version.
    #[arg(long)]
    pub stale: bool,

    /// Remove entries last used longer ago than DURATION: 90s, 30m, 12h, 7d, 2w
    /// (a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub older_than: Option<Duration>,

    /// Remove least recently used entries until the templates allocate at most
    /// SIZE: bytes, or 512M, 4G, 4GiB, 1T.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub max_size: Option<u64>,

    /// Remove least recently used entries until the root's filesystem has SIZE
    /// available (as df shows it); exit 1 if it cannot. When even removing every
    /// entry no process holds would fall short, none is removed.
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub min_free: Option<u64>,

    /// Remove exactly what a `--dry-run --json` report listed, each only if
    /// it is unchanged (and an entry unused) since.
    #[arg(long, value_name = "FILE",
          conflicts_with_all = ["all", "stale", "older_than", "max_size", "min_free", "dry_run"])]
    pub plan: Option<PathBuf>,

    /// List what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(global: &GlobalArgs, args: CleanArgs) -> Result<ExitCode> {
    let root = root::template_root(global.cache_dir.clone())?;
    let mode = match (args.all, args.stale) {
        (true, _) => CleanMode::All,
        (false, true) => CleanMode::Stale,
        (false, false) => CleanMode::Debris,
    };
    let report = match &args.plan {
        Some(path) => plan::apply(&root, &plan::Plan::read(path, &root)?),
        None => {
            let budget = Budget {
                older_than: args.older_than,
                max_size: args.max_size,
                min_free: args.min_free,
            };
            budget.check_fits(&root)?;
            let options = CleanOptions {
                mode,
                dry_run: args.dry_run,
                budget,
            };
            cleanup::clean(&root, options)?
        }
    };
    // A plan lists templates only.
    let scratch = match &args.plan {
        None => kernel_clean::clean_scratch_in_env(report.dry_run)?,
        Some(_) => None,
    };
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        if let Some(scratch) = &scratch {
            doc["kernel_scratch"] = serde_json::to_value(scratch)?;
        }
        super::print_stdout(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        let mut text = render(&report, global.verbose > 0);
        if let Some(scratch) = scratch.filter(|s| !s.removed.is_empty() || !s.kept.is_empty()) {
            text += &super::kernel::render_clean(&scratch);
        }
        super::print_stdout(&text)?;
    }
    if let Some(why) = report.min_free_shortfall() {
        eprintln!("error: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The text form: what was (at -v) or would be (a dry run) removed, what was
/// kept or skipped and why, then the summary.
fn render(report: &CleanReport, verbose: bool) -> String {
    let mut out = String::new();
    if report.dry_run || verbose {
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for r in &report.removed {
            let size = space::human_bytes(r.bytes);
            let name = names::shown(&r.name);
            let invalid = r.invalid.as_deref().map_or(String::new(), |why| {
                format!(", invalid: {}", names::shown(why))
            });
            let why = if r.kind == ItemKind::Template {
                let used = r.last_used_secs.map_or(String::new(), |secs| {
                    format!(", last used {} ago", human_age(secs))
                });
                format!("; {}{used}", r.reason.as_str())
            } else {
                String::new()
            };
            out += &format!(
                "{verb} {name} ({}{invalid}, {size}{why})\n",
                r.kind.describe()
            );
        }
    }
    for k in &report.kept {
        out += &format!("kept {}: {}\n", names::shown(&k.name), k.reason);
    }
    for s in &report.skipped {
        out += &format!("skipped {}: {}\n", names::shown(&s.name), s.reason);
    }
    out + &report.summary() + "\n"
}
