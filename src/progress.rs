//! Progress on stderr, cargo style: a right-aligned verb, then what happens.
//!
//! Plain lines work anywhere (tests read them from a pipe); a long step also
//! gets a spinner showing its latest output line, but only on a terminal.

use std::fmt::Display;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes: stderr, or nowhere under `-q`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { quiet }
    }

    /// Progress that prints nothing, for library callers and tests.
    pub fn silent() -> Self {
        Progress { quiet: true }
    }

    /// Prints one step: `    Building bzImage with make -j2`.
    pub fn step(&self, verb: &str, what: impl Display) {
        if !self.quiet {
            eprintln!("{verb:>12} {what}");
        }
    }

    /// A spinner for a long step; hidden when quiet or not on a terminal.
    pub fn spinner(&self, verb: &str) -> Spinner {
        let bar = if self.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(verb.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        Spinner { bar }
    }
}

/// A running spinner; cleared when dropped.
#[derive(Debug)]
pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    /// Shows `line` (e.g. the latest `make` output) beside the spinner.
    pub fn set_message(&self, line: &str) {
        self.bar.set_message(line.trim().to_owned());
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Seconds with one decimal, as progress lines show them: `2.4 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
