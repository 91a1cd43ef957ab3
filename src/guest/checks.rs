//! The init's second mode: run a list of checks and report each, for the
//! nested-KVM lane's outer guest ([`crate::guest::nested`]).
//!
//! Host to guest: `ktstr.mode=checks` on the kernel command line, the list
//! as JSON in [`CHECKS_FILE`], and optionally `ktstr.disk=<fs>`, which has
//! init mount `/dev/vda` at [`DISK_MOUNT`] first. Each check is a program
//! with arguments, environment and a deadline; no shell is involved.
//!
//! Guest to host: one line per check, in order, then a closing line:
//!
//! ```text
//! KTSTR_CHECK_RESULT name=<name> status=<exit status> secs=<wall time> output=<escaped tail>
//! KTSTR_CHECKS_DONE
//! ```
//!
//! `status` is the exit code, 128 + signal when killed, 124 when the check
//! passed its deadline (as `timeout(1)` says) and 127 when it could not be
//! started. The whole output (stdout then stderr, interleaved as written)
//! goes to `<disk>/checks/<name>.log` when a disk is mounted; the line
//! carries its last `OUTPUT_TAIL` bytes. While a check runs, init prints
//! `KTSTR_CHECK_RUNNING name=<name> secs=<s>` every `HEARTBEAT`, so a
//! silent console means a stuck guest, not a long check.
//!
//! Results are kept: each line also goes to `<disk>/checks/<name>.result`,
//! and a check that has one is reported again instead of run again. A
//! guest stopped midway is booted again on the same disk and finishes the
//! list.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::protocol::{escape, unescape};

/// The command-line parameter that selects this mode.
pub(crate) const MODE_PARAM: &str = "ktstr.mode=checks";
/// The command-line parameter naming the filesystem on `/dev/vda`.
pub(crate) const DISK_PARAM: &str = "ktstr.disk";
/// Where the list of checks is in the initramfs.
pub(crate) const CHECKS_FILE: &str = "/checks.json";
/// Where `/dev/vda` is mounted.
pub(crate) const DISK_MOUNT: &str = "/disk";
/// The marker that starts a check's result line.
pub(crate) const RESULT_MARKER: &str = "KTSTR_CHECK_RESULT";
/// The line that says every check was run.
pub(crate) const DONE_MARKER: &str = "KTSTR_CHECKS_DONE";
/// The marker of the line printed while a check runs.
pub(crate) const RUNNING_MARKER: &str = "KTSTR_CHECK_RUNNING";
/// Status of a check stopped at its deadline.
pub(crate) const STATUS_TIMEOUT: i32 = 124;
/// Status of a check that could not be started.
pub(crate) const STATUS_NOT_RUN: i32 = 127;

/// One check: a program run with `args` and `env` (on top of a PATH of
/// `/sbin:/bin:/usr/sbin:/usr/bin` and HOME of `/tmp`), stopped after
/// `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// A name for the result line and the log file: letters, digits, `-`, `_`.
    pub name: String,
    /// The program, found on the guest's PATH.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the fixed environment.
    pub env: BTreeMap<String, String>,
    /// Seconds before it is killed and reported as timed out.
    pub timeout_secs: u64,
}

impl CheckSpec {
    /// A check running `program` with `args`, no extra environment, and a
    /// deadline of `timeout_secs`.
    pub fn new(name: &str, program: &str, args: &[&str], timeout_secs: u64) -> Self {
        CheckSpec {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::new(),
            timeout_secs,
        }
    }

    /// Adds `key=value` to its environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// How one check ended, as its result line says.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub status: i32,
    pub secs: f64,
    /// The end of its output.
    pub output: String,
}

impl CheckResult {
    /// The line the guest prints, newline included.
    pub fn render(&self) -> String {
        format!(
            "{RESULT_MARKER} name={} status={} secs={:.3} output={}\n",
            self.name,
            self.status,
            self.secs,
            escape(self.output.as_bytes())
        )
    }

    /// Every result line in a console transcript, in order.
    pub fn all_from_console(console: &[u8]) -> Vec<CheckResult> {
        String::from_utf8_lossy(console)
            .lines()
            .filter_map(|line| Self::parse(&line[line.find(RESULT_MARKER)?..]))
            .collect()
    }

    /// One result line, as the guest printed or kept it.
    pub(crate) fn parse(line: &str) -> Option<CheckResult> {
        let line = line.trim_end_matches('\n');
        let rest = line.strip_prefix(RESULT_MARKER)?.trim_end_matches('\r');
        let (name, rest) = rest.strip_prefix(" name=")?.split_once(' ')?;
        let (status, rest) = rest.strip_prefix("status=")?.split_once(' ')?;
        let (secs, rest) = rest.strip_prefix("secs=")?.split_once(' ')?;
        Some(CheckResult {
            name: name.to_owned(),
            status: status.parse().ok()?,
            secs: secs.parse().ok()?,
            output: unescape(rest.strip_prefix("output=")?),
        })
    }
}

/// Whether a console transcript says every check was run.
pub(crate) fn all_done(console: &[u8]) -> bool {
    String::from_utf8_lossy(console)
        .lines()
        .any(|l| l.trim_end() == DONE_MARKER)
}

/// The filesystem named by `ktstr.disk=` on a kernel command line.
pub(crate) fn disk_fs(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(DISK_PARAM)?.strip_prefix('='))
}

/// Writes the check list the init reads, for the host side.
pub(crate) fn write_list(checks: &[CheckSpec], mut to: impl Write) -> Result<()> {
    serde_json::to_writer(&mut to, checks).context("failed to write the check list")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_through_a_noisy_console() {
        let a = CheckResult {
            name: "build-btrfs".into(),
            status: 0,
            secs: 5.25,
            output: "{\"built\": true}\n\tline two \\ \u{1b}\n".into(),
        };
        let b = CheckResult {
            name: "timeout".into(),
            status: STATUS_TIMEOUT,
            secs: 10.0,
            output: String::new(),
        };
        let console = format!(
            "[ 1.0] kvm: Nested Paging enabled\r\n{}[ 2.0] x{}\r\n{DONE_MARKER}\r\n",
            a.render(),
            b.render()
        );
        assert_eq!(CheckResult::all_from_console(console.as_bytes()), [a, b]);
        assert!(all_done(console.as_bytes()));
        assert!(!all_done(b"KTSTR_CHECKS_DONE_NOT\n"));
    }

    #[test]
    fn the_disk_comes_from_the_command_line() {
        assert_eq!(disk_fs("console=ttyS0 ktstr.disk=btrfs x"), Some("btrfs"));
        assert_eq!(disk_fs("console=ttyS0 ktstr.diskx=btrfs"), None);
    }

    #[test]
    fn the_list_round_trips_as_json() {
        let checks = vec![CheckSpec::new("a", "/init", &["template", "list"], 5).env("X", "1")];
        let mut json = Vec::new();
        write_list(&checks, &mut json).unwrap();
        let back: Vec<CheckSpec> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, checks);
    }
}
