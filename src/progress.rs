//! Progress on stderr, cargo style: a right-aligned verb, then what happens.
//!
//! Plain lines work anywhere (tests read them from a pipe); a long step also
//! gets a spinner showing its latest output line on a terminal, and
//! elsewhere (a CI log) that line every [`HEARTBEAT`]. A transfer of bytes
//! gets a bar with its bytes and rate on a terminal, once it has lasted
//! [`BAR_DELAY`] (a quick one would only flicker), and the same heartbeat
//! elsewhere.

use std::cell::Cell;
use std::fmt::Display;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a long step off a terminal says it is still going.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);

/// How long a transfer runs before its bar is drawn.
pub(crate) const BAR_DELAY: Duration = Duration::from_millis(400);

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

impl Progress {
    /// A bar for moving `total` bytes (`Pulling`, `Pushing`): drawn on a
    /// terminal after [`BAR_DELAY`], a heartbeat line elsewhere, nothing
    /// when quiet. The caller's step lines say where it starts and ends.
    pub fn transfer(&self, verb: &str, total: u64) -> Transfer {
        let start = Instant::now();
        let terminal = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(verb.to_owned());
        Transfer {
            bar,
            verb: verb.to_owned(),
            start,
            pending: Cell::new(!self.quiet && terminal),
            heartbeat: (!self.quiet && !terminal).then(|| Cell::new(start)),
        }
    }
}

/// A running transfer's bar; cleared when dropped.
#[derive(Debug)]
pub struct Transfer {
    bar: ProgressBar,
    verb: String,
    start: Instant,
    /// On a terminal, until the bar is shown.
    pending: Cell<bool>,
    /// Off a terminal: when we last printed.
    heartbeat: Option<Cell<Instant>>,
}

impl Transfer {
    /// Counts `bytes` more moved (by any of several concurrent writers).
    pub fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.pending.get() && self.start.elapsed() >= BAR_DELAY {
            self.pending.set(false);
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        if let Some(last) = &self.heartbeat {
            if last.get().elapsed() >= HEARTBEAT {
                last.set(Instant::now());
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                eprintln!(
                    "{:>12} {:.1} of {:.1} MiB, {:.0} s",
                    self.verb,
                    mib(self.bar.position()),
                    mib(self.bar.length().unwrap_or(0)),
                    self.start.elapsed().as_secs_f64()
                );
            }
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
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
