//! The command-line model. Help, man pages and completions all come from
//! [`crate::cli::Cli`]; the handlers beside it only parse and call the library.
//! The binary is [`crate::cli_main`]; nothing else in the library imports
//! this module. The packagers'
//! `generate` command stays outside it (see [`generate`]), so the model holds
//! nothing hidden that help or a completion could show.

// The doc comments below are `--help` text, read by clap: `FS[:SIZE]` and
// `<release>` are grammar, not links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::cache::ensure::DEFAULT_LOCK_TIMEOUT;
use crate::cache::key::Capacity;
use crate::formatter::filesystem::Filesystem;
use crate::interrupt;
use crate::runner::{DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT, VmmChoice};
use crate::units;

pub(crate) mod clean;
pub(crate) mod generate;
pub(crate) mod kernel;
pub(crate) mod remote;
pub(crate) mod template;

/// The `cargo-ktstr` binary: parse this process's arguments, run the
/// command, print the error chain, and give the exit status (0, 1, 2 for a
/// usage error, 128+N after signal N).
pub fn main() -> ExitCode {
    // In a guest this binary is the init, not the CLI; elsewhere this also
    // makes it the init of the guests it boots.
    crate::init_if_guest();
    let mut args: Vec<_> = std::env::args_os().collect();
    // `cargo ktstr clean` runs `cargo-ktstr ktstr clean`; the usage lines
    // name the command the way it was typed.
    let via_cargo = args.get(1).is_some_and(|a| a == "ktstr");
    if via_cargo {
        args.remove(1);
    }
    if args.get(1).is_some_and(|a| a == "generate") {
        return report(generate::run(generate::GenerateArgs::parse_from(
            &args[1..],
        )));
    }
    let bin_name = if via_cargo {
        "cargo ktstr"
    } else {
        "cargo-ktstr"
    };
    let matches = Cli::command().bin_name(bin_name).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.global.verbose, cli.global.quiet);
    // Before any thread: the signal mask is inherited.
    if let Err(err) = interrupt::watch(grace(&cli.command)) {
        return report(Err(err));
    }
    let result = run(cli);
    // Every guard of the flow is dropped by now: what it staged is gone.
    if let Some(signal) = interrupt::received() {
        if let Err(err) = &result {
            tracing::debug!("stopped with: {err:#}");
        }
        eprintln!("cargo-ktstr: interrupted by {signal}");
        return ExitCode::from(interrupt::exit_code(signal));
    }
    report(result)
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            match crate::usage::is_usage(&err) {
                true => ExitCode::from(2),
                false => ExitCode::FAILURE,
            }
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    // -v and -vv raise this crate's level only: at debug, dependencies (the
    // ELF-note parser of the kernel loader) would bury our lines; -vvv
    // shows everything.
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,cargo_ktstr=info",
        (false, 2) => "warn,cargo_ktstr=debug",
        (false, _) => "trace",
    };
    // RUST_LOG applies unless a flag asked for a level, so a user can aim it
    // at one module.
    let from_env = (!quiet && verbose == 0).then(|| EnvFilter::try_from_default_env().ok());
    let filter = from_env.flatten().unwrap_or_else(|| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not into a CI log or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

/// Disk templates for VM-based sched_ext tests: a cache of pre-formatted
/// images, a copy-on-write clone for every test, and cleanup.
#[derive(Debug, Parser)]
#[command(
    name = "cargo-ktstr",
    bin_name = "cargo ktstr",
    version,
    propagate_version = true,
    after_long_help = environment_and_exit_status()
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Every environment variable the binary reads, and what it is for: the
/// end of `--help`, and the man page's ENVIRONMENT section.
pub(crate) const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "KTSTR_CACHE_DIR",
        "The ktstr cache base: templates in <base>/disk_templates, kernels in \
         <base>/kernels [default: $XDG_CACHE_HOME/ktstr]",
    ),
    (
        "XDG_CACHE_HOME",
        "The cache base's parent when absolute (a relative one is ignored) \
         [default: $HOME/.cache]; fingerprint memos go to its cargo-ktstr/fingerprints",
    ),
    ("HOME", "Where the default cache is: $HOME/.cache/ktstr"),
    (
        "KTSTR_KERNEL",
        "The guest kernel when --kernel is not given",
    ),
    ("KTSTR_KVM_HOST_KERNEL", "The nested lane's KVM-host kernel"),
    (
        "KTSTR_BOOT_DIR",
        "Where stock kernels are looked for [default: /boot]",
    ),
    (
        "KTSTR_MODULES_ROOT",
        "Where their modules are [default: /lib/modules]",
    ),
    (
        "KTSTR_NO_EVICT",
        "As --no-evict, when set (but not to 0, false, no or off)",
    ),
    (
        "RUST_LOG",
        "A log filter (tracing's EnvFilter syntax) when neither -v nor -q is given",
    ),
    (
        "PATH",
        "Where mkfs, QEMU and the kernel build's tools are found",
    ),
];

/// What the exit status means: the end of `--help`, and the man page's
/// EXIT STATUS section.
pub(crate) const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success"),
    (
        "1",
        "A failure at run time, said on stderr (a template that did not build, a \
         --min-free that could not be met, ...)",
    ),
    (
        "2",
        "A usage error: an argument that does not parse or cannot be met",
    ),
    (
        "128+N",
        "Stopped by signal N, after cleaning up: 129 SIGHUP, 130 SIGINT, 143 SIGTERM",
    ),
];

/// [`ENVIRONMENT`] and [`EXIT_STATUS`] as `--help` ends.
fn environment_and_exit_status() -> String {
    let table = |title: &str, rows: &[(&str, &str)]| {
        let rows: String = (rows.iter())
            .map(|(name, what)| format!("  {name}\n          {what}\n"))
            .collect();
        format!("{title}:\n{rows}")
    };
    table("ENVIRONMENT", ENVIRONMENT) + "\n" + &table("EXIT STATUS", EXIT_STATUS)
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// The template root to use instead of `<ktstr cache>/disk_templates`
    /// (for instance a ktstr 0.15 cache directory). Templates only: the
    /// `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless.
    #[arg(long, value_name = "PATH", global = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Remove debris left by dead processes; with --all, also every entry not in use.
    Clean(clean::CleanArgs),
    /// Build, clone and list disk templates.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Build and list guest kernels.
    #[command(subcommand)]
    Kernel(kernel::KernelCommand),
    /// The remote kernel cache a fleet shares (docs/remote-cache.md).
    #[command(subcommand)]
    Remote(remote::RemoteCommand),
}

/// Which filesystem and how large.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemplateSpec {
    /// The filesystem to format [default: btrfs].
    #[arg(long = "fs", value_name = "FS", value_parser = fs_parser())]
    pub fs: Option<Filesystem>,

    /// Disk capacity, a whole number of MiB: 256M, 256MiB, 1G, 1GiB or bytes
    /// [default: 256M; 300M for xfs].
    #[arg(long, value_name = "SIZE", value_parser = parse_capacity)]
    pub capacity: Option<Capacity>,
}

impl TemplateSpec {
    /// The filesystem asked for, or btrfs.
    pub(crate) fn fs(&self) -> Filesystem {
        self.fs.unwrap_or(Filesystem::Btrfs)
    }
}

/// A template named on the command line: `FS[:SIZE]` (`btrfs:256M`,
/// `xfs`), the capacity the filesystem's default when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TemplateArg {
    pub fs: Filesystem,
    pub capacity: Capacity,
}

impl std::str::FromStr for TemplateArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (fs, size) = match s.split_once(':') {
            Some((fs, size)) => (fs, Some(size)),
            None => (s, None),
        };
        let fs: Filesystem = fs
            .parse()
            .map_err(|e| format!("`{s}`: {e} (a template is FS[:SIZE], e.g. btrfs:256M)"))?;
        let capacity = match size {
            Some(size) => size.parse().map_err(|e| format!("`{s}`: {e}"))?,
            None => Capacity::from_mib(fs.default_capacity_mib()).map_err(|e| e.to_string())?,
        };
        Ok(TemplateArg { fs, capacity })
    }
}

/// The longest `--timeout`: a day. Far beyond any build, and far from the
/// `Instant` overflow a huge value would cause.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 86_400;

/// The most guest memory: the built-in VMM's RAM ends where its MMIO gap
/// starts, at 3 GiB.
pub(crate) const MAX_MEMORY_MIB: u32 = 3072;

/// `--timeout`'s default as clap shows it: the library's, in seconds.
static DEFAULT_TIMEOUT_ARG: LazyLock<String> =
    LazyLock::new(|| format!("{}s", DEFAULT_TIMEOUT.as_secs()));
/// `--memory`'s default: the library's, as a size.
static DEFAULT_MEMORY_ARG: LazyLock<String> =
    LazyLock::new(|| units::format_size(u64::from(DEFAULT_MEMORY_MIB) << 20));
/// `--lock-timeout`'s default: the library's.
static DEFAULT_LOCK_TIMEOUT_ARG: LazyLock<String> =
    LazyLock::new(|| units::format_duration(DEFAULT_LOCK_TIMEOUT));

/// How a missing template gets built.
#[derive(Debug, Clone, Args)]
pub(crate) struct BuildOptions {
    /// The guest kernel (bzImage) [default: $KTSTR_KERNEL, else the newest cached kernel, else
    /// the running or newest /boot/vmlinuz-<release> with its modules].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Which VMM boots the template guest.
    #[arg(long, value_enum, default_value_t = VmmChoice::Auto)]
    pub vmm: VmmChoice,

    /// How long the guest may run before it is stopped: 1s to 1d.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_TIMEOUT_ARG.as_str(),
          value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Guest memory, a whole number of MiB, at most 3G (a bare number is
    /// MiB); a build refuses less than its kernel and initramfs need.
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_MEMORY_ARG.as_str(),
          value_parser = parse_memory)]
    pub memory: u32,

    /// How long to wait for another process building the same template.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_LOCK_TIMEOUT_ARG.as_str(),
          value_parser = units::parse_duration)]
    pub lock_timeout: Duration,

    /// On a full disk, fail instead of removing debris and least recently
    /// used templates no process holds and trying once more.
    #[arg(long, env = "KTSTR_NO_EVICT")]
    pub no_evict: bool,

    /// Before publishing a build, have the guest mount the new filesystem
    /// read-only with its own kernel and read its statfs; a failure
    /// publishes nothing.
    #[arg(long)]
    pub verify: bool,
}

/// The filesystems as clap's possible values, so help and the shell
/// completions list them.
fn fs_parser() -> impl TypedValueParser<Value = Filesystem> {
    PossibleValuesParser::new(Filesystem::ALL.map(Filesystem::name))
        .try_map(|name| name.parse::<Filesystem>())
}

fn parse_capacity(s: &str) -> Result<Capacity, String> {
    s.parse()
}

/// `--timeout`: a duration from a second to [`MAX_TIMEOUT_SECS`].
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let timeout = units::parse_duration(s).map_err(|e| e.to_string())?;
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout.as_secs()) {
        return Err(format!(
            "--timeout {s} is out of range: give 1s to 1d ({MAX_TIMEOUT_SECS} seconds)"
        ));
    }
    Ok(timeout)
}

/// `--memory`: a size, a bare number in MiB, whole MiB up to
/// [`MAX_MEMORY_MIB`]; in MiB.
fn parse_memory(s: &str) -> Result<u32, String> {
    const MIB: u64 = 1 << 20;
    let bytes = units::parse_size_in(s, MIB).map_err(|e| e.to_string())?;
    if bytes % MIB != 0 || !(1..=u64::from(MAX_MEMORY_MIB)).contains(&(bytes / MIB)) {
        return Err(format!(
            "--memory {s} is not a whole number of MiB from 1M to {MAX_MEMORY_MIB}M"
        ));
    }
    Ok((bytes / MIB) as u32)
}

/// Runs a parsed command line; the exit status follows README: 0 success,
/// 1 runtime failure, 2 a usage error (clap's, or a
/// [`crate::usage::UsageError`] found later; `main` maps it).
pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { global, command } = cli;
    match command {
        Command::Clean(args) => clean::run(&global, args),
        Command::Template(cmd) => template::run(&global, cmd),
        Command::Kernel(cmd) => kernel::run(&global, cmd),
        Command::Remote(cmd) => remote::run(&global, cmd),
    }
}

/// How long `command` may take to stop after SIGINT, SIGTERM or SIGHUP
/// ([`crate::interrupt`]): template builds and clones stop at their
/// waiting points and clean up; the other commands have none and end at once.
pub(crate) fn grace(command: &Command) -> Duration {
    match command {
        Command::Template(
            template::TemplateCommand::Build(_) | template::TemplateCommand::Clone(_),
        ) => Duration::from_secs(30),
        _ => Duration::ZERO,
    }
}

/// Writes a result to stdout; a reader that went away (`| head`) is not an
/// error worth a panic.
pub(crate) fn print_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("failed to write to stdout")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's defaults are the library's, named once there, and read as
    /// they always did.
    #[test]
    fn the_flags_defaults_are_the_librarys() {
        assert_eq!(
            [
                &DEFAULT_TIMEOUT_ARG,
                &DEFAULT_MEMORY_ARG,
                &DEFAULT_LOCK_TIMEOUT_ARG
            ]
            .map(|s| s.as_str()),
            ["120s", "256M", "10m"]
        );
        let cli = Cli::try_parse_from(["cargo-ktstr", "template", "build"]).unwrap();
        let Command::Template(template::TemplateCommand::Build(args)) = cli.command else {
            panic!("not a build");
        };
        assert_eq!(args.build.timeout, crate::runner::DEFAULT_TIMEOUT);
        assert_eq!(args.build.memory, crate::runner::DEFAULT_MEMORY_MIB);
        assert_eq!(
            args.build.lock_timeout,
            crate::cache::ensure::DEFAULT_LOCK_TIMEOUT
        );
    }
}
