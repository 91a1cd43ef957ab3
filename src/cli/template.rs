//! `cargo ktstr template build|clone|list`: parse and call the cache.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{BuildOptions, GlobalArgs, TemplateSpec};

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build a template (or find it) and print its path.
    Build(BuildArgs),
    /// Give DEST its own copy-on-write clone of a template, building it on a miss.
    Clone(CloneArgs),
    /// List published templates and count debris.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub spec: TemplateSpec,

    #[command(flatten)]
    pub build: BuildOptions,

    /// Rebuild and replace the entry even when it exists.
    #[arg(long)]
    pub force: bool,

    /// Print key, path, fs, capacity, built-or-found and seconds as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    #[command(flatten)]
    pub spec: TemplateSpec,

    #[command(flatten)]
    pub build: BuildOptions,

    /// How to copy: FICLONE only, FICLONE else a sparse copy, or a sparse copy.
    #[arg(long, value_enum, default_value_t = ReflinkMode::Auto)]
    pub reflink: ReflinkMode,

    /// Where the clone goes; must not exist.
    pub dest: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReflinkMode {
    /// FICLONE, else a sparse copy.
    Auto,
    /// FICLONE only; fail where the filesystem cannot.
    Always,
    /// A sparse copy of the data extents.
    Never,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, cmd: TemplateCommand) -> Result<ExitCode> {
    match cmd {
        TemplateCommand::Build(_) => bail!("`template build` is not wired yet"),
        TemplateCommand::Clone(_) => bail!("`template clone` is not wired yet"),
        TemplateCommand::List(args) => list(global, args),
    }
}

/// `template list`: the table (or JSON) of [`crate::cache::list::list`].
fn list(global: &GlobalArgs, args: ListArgs) -> Result<ExitCode> {
    let root = crate::cache::root::template_root(global.cache_dir.clone())?;
    let report = crate::cache::list::list(&root)?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    super::clean::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
