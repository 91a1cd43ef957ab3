//! How a guest run ended and what it printed: what both runners and the
//! built-in VMM produce, defined below all three (the VMM does not depend
//! on the runners). The console is captured in memory, bounded, with the
//! time of its first byte.

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest reset itself (reboot, or `panic=-1` after a panic).
    Reset,
    /// The guest shut down, or triple-faulted.
    Shutdown,
    /// The deadline passed; the guest was stopped.
    Timeout,
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunEnd::Reset => "reset",
            RunEnd::Shutdown => "shutdown",
            RunEnd::Timeout => "timeout",
        })
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How the run ended.
    pub end: RunEnd,
    /// What the guest wrote to its serial console (the last
    /// [`CONSOLE_LIMIT`] bytes at most).
    pub console: Vec<u8>,
    /// From the start of the run to the first console byte.
    pub first_output: Option<Duration>,
    /// From the start of the run to its end.
    pub total: Duration,
}

impl RunOutcome {
    /// The console as text, lossily decoded.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }

    /// The last `n` lines of the console, for error messages.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The most console output kept: a guest that prints without end must not
/// exhaust the host's memory before its deadline.
pub(crate) const CONSOLE_LIMIT: usize = 16 << 20;

/// What the guest printed (its last [`CONSOLE_LIMIT`] bytes at most, where
/// the result line and the tail an error shows are), and when it started.
#[derive(Debug)]
pub(crate) struct Console {
    start: Instant,
    bytes: Vec<u8>,
    first_output: Option<Duration>,
    limit: usize,
}

impl Console {
    /// A console for a run that began at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        Self::with_limit(start, CONSOLE_LIMIT)
    }

    pub(crate) fn with_limit(start: Instant, limit: usize) -> Self {
        Console {
            start,
            bytes: Vec::new(),
            first_output: None,
            limit,
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// From the start of the run to the first byte.
    pub(crate) fn first_output(&self) -> Option<Duration> {
        self.first_output
    }
}

// Kept in memory, not passed to stdout, so the caller can show the tail
// of a failed guest's console.
impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.first_output.is_none() && !buf.is_empty() {
            self.first_output = Some(self.start.elapsed());
        }
        self.bytes.extend_from_slice(buf);
        if self.bytes.len() > self.limit {
            // Drop the oldest half at once, so trimming stays cheap per byte.
            let excess = self.bytes.len() - self.limit / 2;
            self.bytes.drain(..excess);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_output_keeps_only_the_tail() {
        let mut console = Console::with_limit(Instant::now(), 64);
        for i in 0..1000u32 {
            console.write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        assert!(console.bytes().len() <= 64);
        assert!(console.bytes().ends_with(b"998\n999\n"));
    }
}
