//! `cargo ktstr clean`: parse and call [`crate::cache::cleanup`].

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::GlobalArgs;

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

pub fn run(_global: &GlobalArgs, _args: CleanArgs) -> Result<ExitCode> {
    bail!("`clean` is not wired yet")
}
