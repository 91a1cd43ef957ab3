//! `cargo-ktstr generate`: completions and man pages from the clap model,
//! committed under `completions/` and `man/` and checked for staleness by a test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The directory that gets `completions/` and `man/`.
    #[arg(value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    write_completions(&args.out.join("completions"))?;
    write_man_pages(&args.out.join("man"))?;
    Ok(ExitCode::SUCCESS)
}

fn write_completions(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "cargo-ktstr", dir).with_context(|| {
            format!(
                "failed to write {shell} completions into `{}`",
                dir.display()
            )
        })?;
    }
    Ok(())
}

fn write_man_pages(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    // One page per command, named like git's: cargo-ktstr-template-build.1.
    let cmd = Cli::command().name("cargo-ktstr").bin_name("cargo-ktstr");
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("failed to write man pages into `{}`", dir.display()))
}
