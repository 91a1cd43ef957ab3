//! `cargo-ktstr generate DIR`: completions and man pages from the clap model,
//! committed under `completions/` and `man/` and checked for staleness by a test.
//!
//! The command is for packagers and this repository, so `main` parses it apart
//! from [`Cli`]: clap_complete offers hidden commands and flags, and a model
//! without any cannot leak one.
//!
//! The completions serve both spellings, `cargo-ktstr …` and `cargo ktstr …`.
//! clap_complete writes them for `cargo-ktstr` (the bash one under another
//! name, see [`completion`]); for `cargo ktstr`:
//! - bash: [`CARGO_BASH`], appended, takes over `cargo`'s completion, hands
//!   `cargo ktstr …` to the `cargo-ktstr` function as `cargo-ktstr …`, and
//!   every other cargo command to the cargo completion it found.
//! - zsh: cargo's own completion calls `_cargo-<subcommand>` for a subcommand
//!   it does not know, which is the function in `_cargo-ktstr`.
//! - fish: [`CARGO_FISH`], appended, adds to `cargo`'s completions (fish adds,
//!   never replaces) one that completes `cargo ktstr …` as `cargo-ktstr …`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use clap_complete::{Generator, Shell};

use super::Cli;

/// Write shell completions and man pages generated from the command line.
#[derive(Debug, Parser)]
#[command(name = "cargo-ktstr-generate", bin_name = "cargo-ktstr generate")]
pub(crate) struct GenerateArgs {
    /// The directory that gets `completions/` and `man/`.
    #[arg(value_name = "DIR")]
    pub out: PathBuf,
}

/// The bash completion for `cargo`, appended to the `cargo-ktstr` one.
const CARGO_BASH: &str = include_str!("cargo.bash");
/// The fish completion for `cargo ktstr`, appended to the `cargo-ktstr` one.
const CARGO_FISH: &str = include_str!("cargo.fish");

pub(crate) fn run(args: GenerateArgs) -> Result<ExitCode> {
    write_completions(&args.out.join("completions"))?;
    write_man_pages(&args.out.join("man"))?;
    Ok(ExitCode::SUCCESS)
}

/// The model under the name the completions and man pages are installed by.
fn model() -> clap::Command {
    Cli::command().name("cargo-ktstr").bin_name("cargo-ktstr")
}

/// One shell's completion file: clap_complete's, then the `cargo ktstr` adapter.
fn completion(shell: Shell) -> Result<String> {
    // clap_complete's bash states below the first word never match for a bin
    // name with a hyphen (clap issue 6421): generate for `cargo_ktstr`, then
    // register the function for the real name.
    let name = if shell == Shell::Bash {
        "cargo_ktstr"
    } else {
        "cargo-ktstr"
    };
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut model(), name, &mut text);
    let text = String::from_utf8(text).context("clap_complete wrote non-UTF-8")?;
    Ok(match shell {
        Shell::Bash => {
            let registered = text.matches(" cargo_ktstr\n").count();
            anyhow::ensure!(
                registered == 2,
                "clap_complete's bash output has {registered} `complete` lines for \
                 `cargo_ktstr`, not the 2 this generator rewrites: update `completion`"
            );
            text.replace(" cargo_ktstr\n", " cargo-ktstr\n") + CARGO_BASH
        }
        Shell::Fish => text + CARGO_FISH,
        _ => text,
    })
}

fn write_completions(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = dir.join(shell.file_name("cargo-ktstr"));
        fs::write(&path, completion(shell)?)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(())
}

fn write_man_pages(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    // One page per command, named like git's: cargo-ktstr-template-build.1.
    clap_mangen::generate_to(model(), dir)
        .with_context(|| format!("failed to write man pages into `{}`", dir.display()))?;
    // The top page again, with ENVIRONMENT and EXIT STATUS as sections of
    // their own rather than clap_mangen's EXTRA.
    let path = dir.join("cargo-ktstr.1");
    fs::write(&path, top_man_page()?)
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// `text` for a roff text line: a backslash escaped, a hyphen a minus
/// (`--min-free` copied from the page must still work). None of the lines
/// begins with a `.` or `'`.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// `cargo-ktstr.1`: clap_mangen's sections, then the variables and the
/// exit status.
fn top_man_page() -> Result<Vec<u8>> {
    let mut cmd = model()
        .after_long_help(None::<&str>)
        .disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    for (title, rows) in [
        ("ENVIRONMENT", super::ENVIRONMENT),
        ("EXIT STATUS", super::EXIT_STATUS),
    ] {
        page.extend(format!(".SH \"{title}\"\n").bytes());
        for (name, what) in rows {
            let (name, what) = (roff_text(name), roff_text(what));
            page.extend(format!(".TP\n\\fB{name}\\fR\n{what}\n").bytes());
        }
    }
    man.render_version_section(&mut page)?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of hidden commands and flags anywhere under `cmd`.
    fn hidden(cmd: &clap::Command, found: &mut Vec<String>) {
        for arg in cmd.get_arguments().filter(|a| a.is_hide_set()) {
            found.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
        }
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() {
                found.push(sub.get_name().to_owned());
            }
            hidden(sub, found);
        }
    }

    #[test]
    fn the_model_hides_nothing_a_completion_would_offer() {
        let mut found = Vec::new();
        hidden(&model(), &mut found);
        assert!(
            found.is_empty(),
            "clap_complete offers hidden items, so the model must hold none; \
             parse these apart from `Cli` as `generate` is: {found:?}"
        );
    }
}
