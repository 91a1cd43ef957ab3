//! `cargo-ktstr`: parse, call the library, print the error chain, exit 0/1/2.

use std::process::ExitCode;

use cargo_ktstr::interrupt;
use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

mod cli;

use crate::cli::Cli;

fn main() -> ExitCode {
    // In a guest this binary is the init, not the CLI; elsewhere this also
    // makes it the init of the guests it boots.
    cargo_ktstr::init_if_guest();
    let mut args: Vec<_> = std::env::args_os().collect();
    // `cargo ktstr clean` runs `cargo-ktstr ktstr clean`; the usage lines
    // name the command the way it was typed.
    let via_cargo = args.get(1).is_some_and(|a| a == "ktstr");
    if via_cargo {
        args.remove(1);
    }
    if args.get(1).is_some_and(|a| a == "generate") {
        return report(cli::generate::run(cli::generate::GenerateArgs::parse_from(
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
    if let Err(err) = interrupt::watch(cli::grace(&cli.command)) {
        return report(Err(err));
    }
    let result = cli::run(cli);
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
            match cargo_ktstr::usage::is_usage(&err) {
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
