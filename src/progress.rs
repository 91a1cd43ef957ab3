//! Progress on stderr, cargo style: a right-aligned verb, then what happens.
//!
//! Plain lines work anywhere (tests read them from a pipe); a long step also
//! gets a spinner showing its latest output line on a terminal, and
//! elsewhere (a CI log) that line every [`HEARTBEAT`].

use std::cell::Cell;
use std::fmt::Display;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a long step off a terminal says it is still going.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

/// Where progress goes: stderr, or nowhere under `-q`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    /// Progress on stderr, or none when `quiet`.
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

    /// A spinner for a long step: on a terminal, or a heartbeat line
    /// elsewhere; nothing when quiet.
    pub fn spinner(&self, verb: &str) -> Spinner {
        let start = Instant::now();
        let heartbeat = (!self.quiet && !std::io::stderr().is_terminal())
            .then(|| (verb.to_owned(), start, Cell::new(start)));
        let bar = if self.quiet || heartbeat.is_some() {
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
        Spinner { bar, heartbeat }
    }
}

/// A running spinner; cleared when dropped.
#[derive(Debug)]
pub struct Spinner {
    bar: ProgressBar,
    /// Off a terminal: the verb, the start, and when we last printed.
    heartbeat: Option<(String, Instant, Cell<Instant>)>,
}

impl Spinner {
    /// Shows `line` (e.g. the latest `make` output) beside the spinner, or
    /// prints it if the last heartbeat is [`HEARTBEAT`] old.
    pub fn set_message(&self, line: &str) {
        self.bar.set_message(line.trim().to_owned());
        if let Some((verb, start, last)) = &self.heartbeat {
            if last.get().elapsed() >= HEARTBEAT {
                last.set(Instant::now());
                eprintln!(
                    "{verb:>12} {:.0} s: {}",
                    start.elapsed().as_secs_f64(),
                    line.trim()
                );
            }
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Seconds with one decimal, as progress lines show them: `2.4 s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
