//! `cargo ktstr template build|clone|list`: parse and call the cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{BuildOptions, GlobalArgs, TemplateSpec};
use crate::cache::clone::{self, Reflink};
use crate::cache::ensure::{EnsureOptions, TemplateBuilder};
use crate::cache::key::{Capacity, Key};
use crate::cache::root;

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
        TemplateCommand::Clone(args) => clone(global, args),
        TemplateCommand::List(args) => list(global, args),
    }
}

/// The builder a miss uses. It is made before the lookup, so it must not
/// fail for lack of what only a build needs (a kernel, a VMM): check those
/// in `build`, and a hit works without them.
fn builder_for(_opts: &BuildOptions) -> Result<Box<dyn TemplateBuilder>> {
    Ok(Box::new(NotBuiltHere))
}

/// Refuses to build, naming the key and the command that builds it.
struct NotBuiltHere;

impl TemplateBuilder for NotBuiltHere {
    fn build(&self, key: &Key, _staging: &Path) -> Result<()> {
        bail!(
            "the template {key} is not in the cache; build it with \
             `cargo ktstr template build --fs {} --capacity {}`",
            key.fs,
            key.capacity
        )
    }
}

impl TemplateSpec {
    /// The capacity asked for, or the filesystem's default.
    pub fn capacity_or_default(&self) -> Result<Capacity> {
        match self.capacity {
            Some(c) => Ok(c),
            None => Capacity::from_mib(self.fs.default_capacity_mib()).map_err(anyhow::Error::msg),
        }
    }
}

fn clone(global: &GlobalArgs, args: CloneArgs) -> Result<ExitCode> {
    let root = root::template_root(global.cache_dir.clone())?;
    let builder = builder_for(&args.build)?;
    let opts = EnsureOptions {
        lock_timeout: Duration::from_secs(args.build.lock_timeout),
        force: false,
    };
    let mode = match args.reflink {
        ReflinkMode::Auto => Reflink::Auto,
        ReflinkMode::Always => Reflink::Always,
        ReflinkMode::Never => Reflink::Never,
    };
    let capacity = args.spec.capacity_or_default()?;
    let cloned = clone::clone_template(
        &root,
        args.spec.fs,
        capacity,
        &*builder,
        &opts,
        &args.dest,
        mode,
    )?;
    tracing::info!(
        "cloned {} ({:?}, template {})",
        cloned.ensured.key,
        cloned.method,
        if cloned.ensured.built {
            "built"
        } else {
            "found"
        }
    );
    println!("{}", args.dest.display());
    Ok(ExitCode::SUCCESS)
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
