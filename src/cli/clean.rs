//! `cargo ktstr clean`: parse and call [`crate::cache::cleanup`].

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::GlobalArgs;
use crate::cache::cleanup::{self, CleanMode, CleanOptions, CleanReport, space};
use crate::cache::{names, root};

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// After the debris, remove every published entry no process holds.
    #[arg(long, conflicts_with = "stale")]
    pub all: bool,

    /// After the debris, remove entries made by another formatter version.
    #[arg(long)]
    pub stale: bool,

    /// List what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: CleanArgs) -> Result<ExitCode> {
    let root = root::template_root(global.cache_dir.clone())?;
    let mode = match (args.all, args.stale) {
        (true, _) => CleanMode::All,
        (false, true) => CleanMode::Stale,
        (false, false) => CleanMode::Debris,
    };
    let options = CleanOptions {
        mode,
        dry_run: args.dry_run,
    };
    let report = cleanup::clean(&root, options)?;
    if args.json {
        super::print_stdout(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        super::print_stdout(&render(&report, global.verbose > 0))?;
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
            out += &format!("{verb} {name} ({}{invalid}, {size})\n", r.kind.describe());
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
