//! `cargo ktstr kernel build|list`: parse and call [`crate::kernel`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Build a guest bzImage from a kernel source tree or tarball and cache it.
    Build(KernelBuildArgs),
    /// List cached kernels.
    List(KernelListArgs),
}

#[derive(Debug, Args)]
pub struct KernelBuildArgs {
    /// A kernel source directory or tarball (e.g. /usr/src/linux-source-6.12.tar.xz).
    #[arg(long, value_name = "PATH")]
    pub source: PathBuf,

    /// Parallel make jobs [default: the number of CPUs].
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,

    /// Rebuild even when the cache has this kernel.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KernelListArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_global: &GlobalArgs, cmd: KernelCommand) -> Result<ExitCode> {
    match cmd {
        KernelCommand::Build(_) => bail!("`kernel build` is not wired yet"),
        KernelCommand::List(_) => bail!("`kernel list` is not wired yet"),
    }
}
