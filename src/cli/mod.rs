//! The command-line model. Help, man pages and completions all come from
//! [`crate::cli::Cli`]; the handlers beside it only parse and call the library.
//! It is the binary's: the library never imports it. The packagers'
//! `generate` command stays outside it (see [`generate`]), so the model holds
//! nothing hidden that help or a completion could show.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, Parser, Subcommand};

use cargo_ktstr::cache::filesystem::Filesystem;
use cargo_ktstr::cache::key::Capacity;
use cargo_ktstr::runner::VmmChoice;

pub mod clean;
pub mod generate;
pub mod kernel;
pub mod remote;
pub mod template;

/// Disk templates for VM-based sched_ext tests: a cache of pre-formatted
/// images, a copy-on-write clone for every test, and cleanup.
#[derive(Debug, Parser)]
#[command(
    name = "cargo-ktstr",
    bin_name = "cargo ktstr",
    version,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
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
pub enum Command {
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
pub struct TemplateSpec {
    /// The filesystem to format.
    #[arg(long = "fs", value_name = "FS", default_value = "btrfs", value_parser = fs_parser())]
    pub fs: Filesystem,

    /// Disk capacity: 256M, 256MiB, 1G, 1GiB or bytes [default: 256M; 300M for xfs].
    #[arg(long, value_name = "SIZE", value_parser = parse_capacity)]
    pub capacity: Option<Capacity>,
}

/// A template named on the command line: `FS[:SIZE]` (`btrfs:256M`,
/// `xfs`), the capacity the filesystem's default when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateArg {
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
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// How a missing template gets built.
#[derive(Debug, Clone, Args)]
pub struct BuildOptions {
    /// The guest kernel (bzImage) [default: $KTSTR_KERNEL, else the newest cached kernel, else
    /// the running or newest /boot/vmlinuz-<release> with its modules].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Which VMM boots the template guest.
    #[arg(long, value_enum, default_value_t = VmmChoice::Auto)]
    pub vmm: VmmChoice,

    /// Seconds the guest may run before it is stopped (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,

    /// Guest memory in MiB (16 to 3072).
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(16..=3072))]
    pub memory: u32,

    /// Seconds to wait for another process building the same template.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub lock_timeout: u64,

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

/// Runs a parsed command line; the exit status follows README: 0 success,
/// 1 runtime failure (usage errors, 2, are clap's).
pub fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { global, command } = cli;
    match command {
        Command::Clean(args) => clean::run(&global, args),
        Command::Template(cmd) => template::run(&global, cmd),
        Command::Kernel(cmd) => kernel::run(&global, cmd),
        Command::Remote(cmd) => remote::run(&global, cmd),
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
