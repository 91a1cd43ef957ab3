//! `cargo ktstr template build|clone|list`: parse and call the cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{BuildOptions, GlobalArgs, TemplateArg, TemplateSpec};
use crate::TemplateCache;
use crate::cache::clone::Reflink;
use crate::cache::ensure::{BatchItem, Ensured};
use crate::cache::key::Capacity;
use crate::formatter::filesystem::Filesystem;
use crate::progress::{Progress, secs};
use crate::store::root;
use crate::usage::UsageError;

#[derive(Debug, Subcommand)]
pub(crate) enum TemplateCommand {
    /// Build templates (or find them) and print their paths.
    Build(BuildArgs),
    /// Give DEST its own copy-on-write clone of a template, building it on a
    /// miss; or each FS[:SIZE]=DEST its own.
    Clone(CloneArgs),
    /// List published templates and count debris.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Templates as FS[:SIZE] (btrfs:256M xfs:1G ext4): the missing ones
    /// are built by one guest, a disk each. Without any, --fs and --capacity.
    #[arg(value_name = "FS:SIZE", conflicts_with_all = ["fs", "capacity"])]
    pub templates: Vec<TemplateArg>,

    #[command(flatten)]
    pub spec: TemplateSpec,

    #[command(flatten)]
    pub build: BuildOptions,

    /// Rebuild and replace the entry even when it exists.
    #[arg(long)]
    pub force: bool,

    /// Print key, path, fs, capacity, built-or-found and seconds as JSON
    /// (an array of them for FS:SIZE arguments).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CloneArgs {
    #[command(flatten)]
    pub spec: TemplateSpec,

    #[command(flatten)]
    pub build: BuildOptions,

    /// How to copy: FICLONE only, FICLONE else a sparse copy, or a sparse copy.
    #[arg(long, value_enum, default_value_t = Reflink::Auto)]
    pub reflink: Reflink,

    /// Where the clone goes (must not exist); or FS[:SIZE]=DEST, once per
    /// template, the missing ones built by one guest.
    #[arg(value_name = "DEST", required = true)]
    pub dest: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
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
pub(crate) enum SortBy {
    Size,
    Age,
    LastUsed,
}

impl From<SortBy> for crate::cache::list::ListOrder {
    fn from(by: SortBy) -> Self {
        match by {
            SortBy::Size => Self::Size,
            SortBy::Age => Self::Age,
            SortBy::LastUsed => Self::LastUsed,
        }
    }
}

pub(crate) fn run(global: &GlobalArgs, cmd: TemplateCommand) -> Result<ExitCode> {
    match cmd {
        TemplateCommand::Build(args) => build(global, args),
        TemplateCommand::Clone(args) => clone(global, args),
        TemplateCommand::List(args) => list(global, args),
    }
}

/// The cache `--cache-dir` names, building a miss as `--kernel`, `--vmm`,
/// `--timeout` and `--memory` say, waiting, healing and verifying as
/// `--lock-timeout`, `--no-evict` and `--verify` do. Its guest init is this
/// binary: main called `init_if_guest()`.
fn cache_for(global: &GlobalArgs, build: &BuildOptions) -> Result<TemplateCache> {
    let cache = TemplateCache::at(root::template_root(global.cache_dir.clone())?)
        .vmm(build.vmm)
        .timeout(build.timeout)
        .memory_mib(build.memory)
        .lock_timeout(build.lock_timeout)
        .evict(!build.no_evict)
        .verify(build.verify)
        .progress(!global.quiet);
    Ok(match &build.kernel {
        Some(kernel) => cache.kernel(kernel),
        None => cache,
    })
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

impl BuildReport {
    /// `verify`: the build was asked to verify (a failed one is an error by now).
    fn new(ensured: &Ensured, verify: bool) -> Self {
        BuildReport {
            key: ensured.key.to_string(),
            path: ensured.path.clone(),
            fs: ensured.key.fs,
            capacity: ensured.key.capacity.to_string(),
            capacity_bytes: ensured.key.capacity.bytes(),
            built: ensured.built,
            verified: ensured.built && verify,
            seconds: ensured.elapsed.as_secs_f64(),
        }
    }
}

/// One template of several, in `template build --json`: a report, or the
/// key and why it failed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ManyReport {
    Done(BuildReport),
    Failed {
        key: String,
        fs: Filesystem,
        capacity: String,
        error: String,
    },
}

/// Finds or builds `wanted` through `cache` (the missing ones in one boot);
/// says how each went: the reports, the ones that are there (in the order
/// asked), and the failures.
fn ensure_each(
    global: &GlobalArgs,
    cache: &TemplateCache,
    wanted: &[TemplateArg],
    verify: bool,
) -> Result<(Vec<ManyReport>, Vec<Option<Ensured>>, Failures)> {
    let progress = Progress::new(global.quiet);
    let mut pairs: Vec<_> = Vec::new();
    for pair in wanted.iter().map(|t| (t.fs, t.capacity)) {
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    progress.step(
        "Looking up",
        format!("{} templates in `{}`", pairs.len(), cache.root().display()),
    );
    let items = cache.ensure_each(&pairs)?;
    // Interrupted, every item failed for that one reason: main says it once.
    crate::interrupt::check()?;
    let (mut reports, mut ensured) = (Vec::new(), Vec::new());
    let mut failed = Failures::default();
    for BatchItem { key, result } in items {
        match result {
            Ok(e) => {
                let (verb, what) = match e.built {
                    true => ("Published", format!("{} in {}", e.key, secs(e.elapsed))),
                    false => ("Found", e.key.to_string()),
                };
                progress.step(verb, what);
                reports.push(ManyReport::Done(BuildReport::new(&e, verify)));
                ensured.push(Some(e));
            }
            Err(err) => {
                failed.note(&err);
                reports.push(ManyReport::Failed {
                    key: key.to_string(),
                    fs: key.fs,
                    capacity: key.capacity.to_string(),
                    error: format!("{err:#}"),
                });
                ensured.push(None);
            }
        }
    }
    Ok((reports, ensured, failed))
}

/// The templates of several that failed, each reported as it failed.
#[derive(Debug, Default)]
struct Failures {
    count: usize,
    /// Those that were usage errors.
    usage: usize,
}

impl Failures {
    fn note(&mut self, err: &anyhow::Error) {
        eprintln!("error: {err:#}");
        self.count += 1;
        self.usage += usize::from(crate::usage::is_usage(err));
    }
}

/// After the others were reported: exit 2 when every failure was a usage
/// error, else 1 when any template failed.
fn many_status(failed: Failures, total: usize) -> Result<ExitCode> {
    if failed.count == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {} of {total} templates failed (each said why above)",
        failed.count
    );
    Ok(match failed.usage == failed.count {
        true => ExitCode::from(2),
        false => ExitCode::FAILURE,
    })
}

/// `template build FS:SIZE...`.
fn build_many(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode> {
    let cache = cache_for(global, &args.build)?.force(args.force);
    let (reports, ensured, failed) =
        ensure_each(global, &cache, &args.templates, args.build.verify)?;
    let text = if args.json {
        serde_json::to_string_pretty(&reports)? + "\n"
    } else {
        (ensured.iter().flatten())
            .map(|e| format!("{}\n", e.path.display()))
            .collect()
    };
    super::print_stdout(&text)?;
    many_status(failed, reports.len())
}

/// `template build`: ensure the template and print its path.
fn build(global: &GlobalArgs, args: BuildArgs) -> Result<ExitCode> {
    if !args.templates.is_empty() {
        return build_many(global, &args);
    }
    let cache = cache_for(global, &args.build)?.force(args.force);
    let progress = Progress::new(global.quiet);
    let capacity = args.spec.capacity_or_default()?;
    progress.step(
        "Looking up",
        format!(
            "{} {capacity} template in `{}`",
            args.spec.fs(),
            cache.root().display()
        ),
    );
    let ensured = cache.entry(args.spec.fs(), capacity)?;
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
        serde_json::to_string_pretty(&BuildReport::new(&ensured, args.build.verify))? + "\n"
    } else {
        format!("{}\n", ensured.path.display())
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

impl TemplateSpec {
    /// The capacity asked for, or the filesystem's default.
    pub(crate) fn capacity_or_default(&self) -> Result<Capacity> {
        match self.capacity {
            Some(c) => Ok(c),
            None => {
                Capacity::from_mib(self.fs().default_capacity_mib()).map_err(anyhow::Error::msg)
            }
        }
    }
}

/// `template clone`'s arguments: one DEST (with --fs and --capacity), or
/// FS[:SIZE]=DEST pairs (without them). Usage errors, before any build.
fn clone_targets(args: &CloneArgs) -> Result<Option<Vec<(TemplateArg, PathBuf)>>> {
    let pair = |arg: &String| -> Option<Result<(TemplateArg, PathBuf)>> {
        let (template, dest) = arg.split_once('=')?;
        // A DEST with `=` in it, not a template.
        let template = template.parse::<TemplateArg>().ok()?;
        match dest.is_empty() {
            true => Some(Err(usage(format!("`{arg}` names no DEST after `=`")))),
            false => Some(Ok((template, PathBuf::from(dest)))),
        }
    };
    let pairs: Vec<_> = args.dest.iter().filter_map(pair).collect();
    match (pairs.len(), args.dest.len()) {
        (0, 1) => Ok(None),
        (n, total) if n == total => {
            // As `template build FS:SIZE...` refuses them: each pair says its own.
            for (flag, given) in [
                ("--fs", args.spec.fs.is_some()),
                ("--capacity", args.spec.capacity.is_some()),
            ] {
                if given {
                    return Err(usage(format!(
                        "{flag} cannot be used with FS[:SIZE]=DEST pairs, which name their own \
                         filesystem and size: drop {flag}, or give one DEST"
                    )));
                }
            }
            pairs.into_iter().collect::<Result<_>>().map(Some)
        }
        _ => Err(usage(format!(
            "give one DEST (with --fs and --capacity) or only FS[:SIZE]=DEST pairs, \
             not {}",
            args.dest.join(" ")
        ))),
    }
}

/// Refuses, before a possibly long build, a DEST that exists, whose
/// directory does not, or that another DEST names too (the clone's
/// O_EXCL stays the real guard against a race).
fn check_dests<'a>(dests: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    for dest in dests {
        if dest.symlink_metadata().is_ok() {
            return Err(usage(format!(
                "`{}` already exists: choose a new DEST",
                dest.display()
            )));
        }
        let name = dest.file_name().ok_or_else(|| {
            usage(format!(
                "DEST `{}` names no file: give a new file's path",
                dest.display()
            ))
        })?;
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = parent.unwrap_or(Path::new("."));
        // Resolved, so `a.img` and `./x/../a.img` are seen to be one DEST.
        let resolved = match dir.canonicalize() {
            Ok(d) if d.is_dir() => d.join(name),
            Ok(_) => {
                return Err(usage(format!(
                    "`{}`, the directory of DEST `{}`, is not a directory",
                    dir.display(),
                    dest.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(usage(format!(
                    "the directory `{}` of DEST `{}` does not exist: create it first, \
                     or choose another DEST",
                    dir.display(),
                    dest.display()
                )));
            }
            Err(e) => {
                return Err(usage(format!(
                    "the directory `{}` of DEST `{}` cannot be used ({e}): choose another DEST",
                    dir.display(),
                    dest.display()
                )));
            }
        };
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == resolved) {
            return Err(usage(format!(
                "`{}` and `{}` are the same DEST: give each clone its own",
                first.display(),
                dest.display()
            )));
        }
        seen.push((resolved, dest));
    }
    Ok(())
}

/// A usage error (exit 2): the caller's to fix.
fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

fn clone(global: &GlobalArgs, args: CloneArgs) -> Result<ExitCode> {
    let many = clone_targets(&args)?;
    match &many {
        Some(pairs) => check_dests(pairs.iter().map(|(_, dest)| dest.as_path()))?,
        None => check_dests([Path::new(&args.dest[0])])?,
    }
    let cache = cache_for(global, &args.build)?;
    if let Some(pairs) = many {
        return clone_many(global, &cache, &pairs, args.reflink);
    }
    let dest = PathBuf::from(&args.dest[0]);
    let capacity = args.spec.capacity_or_default()?;
    let cloned = cache.clone_to(args.spec.fs(), capacity, &dest, args.reflink)?;
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
    super::print_stdout(&format!("{}\n", dest.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `template clone FS:SIZE=DEST...`: every template first (the missing
/// ones in one boot), then each DEST its clone.
fn clone_many(
    global: &GlobalArgs,
    cache: &TemplateCache,
    pairs: &[(TemplateArg, PathBuf)],
    mode: Reflink,
) -> Result<ExitCode> {
    let wanted: Vec<TemplateArg> = pairs.iter().map(|(t, _)| *t).collect();
    // Only `template build` reports what it verified.
    let (_, ensured, mut failed) = ensure_each(global, cache, &wanted, false)?;
    let built = |t: &TemplateArg| {
        (ensured.iter().flatten()).any(|e| e.key.fs == t.fs && e.key.capacity == t.capacity)
    };
    let mut done = String::new();
    // Each a hit now; a template whose build failed was reported above.
    for (template, dest) in pairs.iter().filter(|(t, _)| built(t)) {
        crate::interrupt::check()?;
        match cache.clone_to(template.fs, template.capacity, dest, mode) {
            Ok(_) => done.push_str(&format!("{}\n", dest.display())),
            Err(err) => failed.note(&err),
        }
    }
    super::print_stdout(&done)?;
    many_status(failed, pairs.len())
}

/// `template list`: the table (or JSON) of [`crate::cache::list::list`].
fn list(global: &GlobalArgs, args: ListArgs) -> Result<ExitCode> {
    let root = crate::store::root::template_root(global.cache_dir.clone())?;
    let mut report = crate::cache::list::list(&root)?;
    report.sort(args.sort.map(Into::into).unwrap_or_default());
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()
    };
    super::print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
