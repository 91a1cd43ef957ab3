//! `cargo ktstr template build|clone|list`: parse and call the cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{BuildOptions, GlobalArgs, TemplateSpec};
use cargo_ktstr::cache::clone::{self, Reflink};
use cargo_ktstr::cache::ensure::{EnsureOptions, ensure_template};
use cargo_ktstr::cache::filesystem::Filesystem;
use cargo_ktstr::cache::key::Capacity;
use cargo_ktstr::cache::root;
use cargo_ktstr::guest::builder::OnMiss;
use cargo_ktstr::guest::find_init::GuestInit;
use cargo_ktstr::guest::protocol::Verify;
use cargo_ktstr::progress::{Progress, secs};

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

    /// Order the entries: by key (default), size (largest first), age (oldest
    /// first) or last-used (least recently used first, the order clean's
    /// budgets remove in).
    #[arg(long, value_enum, value_name = "ORDER")]
    pub sort: Option<SortBy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Size,
    Age,
    LastUsed,
}

impl From<SortBy> for cargo_ktstr::cache::list::ListOrder {
    fn from(by: SortBy) -> Self {
        match by {
            SortBy::Size => Self::Size,
            SortBy::Age => Self::Age,
            SortBy::LastUsed => Self::LastUsed,
        }
    }
}

pub fn run(global: &GlobalArgs, cmd: TemplateCommand) -> Result<ExitCode> {
    match cmd {
        TemplateCommand::Build(args) => build(global, args),
        TemplateCommand::Clone(args) => clone(global, args),
        TemplateCommand::List(args) => list(global, args),
    }
}

/// The builder a miss uses, from `--kernel`, `--vmm`, `--timeout` and
/// `--memory`.
fn builder_for(global: &GlobalArgs, opts: &BuildOptions) -> OnMiss {
    OnMiss {
        kernel: opts.kernel.clone(),
        vmm: opts.vmm,
        timeout: Duration::from_secs(opts.timeout),
        memory_mib: opts.memory,
        progress: Progress::new(global.quiet),
        // This binary called init_if_guest() in main: it is the init.
        init: GuestInit::Find,
        verify: if opts.verify {
            Verify::Mount
        } else {
            Verify::Off
        },
    }
}

/// What `template build --json` prints.
#[derive(Debug, Serialize)]
struct BuildReport {
    key: String,
    path: PathBuf,
    fs: Filesystem,
    capacity: String,
    capacity_bytes: u64,
    built: bool,
    /// Built with --verify, and the guest mounted it read-only.
    verified: bool,
    seconds: f64,
}

/// `template build`: ensure the template and print its path.
fn build(global: &GlobalArgs, args: BuildArgs) -> Result<ExitCode> {
    let root = root::template_root(global.cache_dir.clone())?;
    let progress = Progress::new(global.quiet);
    let capacity = args.spec.capacity_or_default()?;
    progress.step(
        "Looking up",
        format!(
            "{} {capacity} template in `{}`",
            args.spec.fs,
            root.display()
        ),
    );
    let builder = builder_for(global, &args.build);
    let opts = EnsureOptions {
        lock_timeout: Duration::from_secs(args.build.lock_timeout),
        evict: !args.build.no_evict,
        force: args.force,
    };
    let ensured = ensure_template(&root, args.spec.fs, capacity, &builder, &opts)?;
    // A verification that failed is an error by now.
    let verified = ensured.built && args.build.verify;
    if ensured.built {
        progress.step(
            "Published",
            format!(
                "{} in {}{}",
                ensured.key,
                secs(ensured.elapsed),
                if verified {
                    ", verified by a read-only mount in the guest"
                } else {
                    ""
                }
            ),
        );
    } else {
        progress.step("Found", format!("{}", ensured.key));
    }
    let text = if args.json {
        let report = BuildReport {
            key: ensured.key.to_string(),
            path: ensured.path,
            fs: args.spec.fs,
            capacity: capacity.to_string(),
            capacity_bytes: capacity.bytes(),
            built: ensured.built,
            verified,
            seconds: ensured.elapsed.as_secs_f64(),
        };
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        format!("{}\n", ensured.path.display())
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
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
    let builder = builder_for(global, &args.build);
    let opts = EnsureOptions {
        lock_timeout: Duration::from_secs(args.build.lock_timeout),
        evict: !args.build.no_evict,
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
        &builder,
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
    super::print_stdout(&format!("{}\n", args.dest.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `template list`: the table (or JSON) of [`cargo_ktstr::cache::list::list`].
fn list(global: &GlobalArgs, args: ListArgs) -> Result<ExitCode> {
    let root = cargo_ktstr::cache::root::template_root(global.cache_dir.clone())?;
    let mut report = cargo_ktstr::cache::list::list(&root)?;
    report.sort(args.sort.map(Into::into).unwrap_or_default());
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
