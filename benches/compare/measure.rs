//! Timing: a figure and its baseline in the same run, interleaved, and their
//! medians.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The times of one row: ours and the baseline's, run for run.
#[derive(Debug, Default)]
pub(crate) struct Pair {
    pub ours: Vec<Duration>,
    pub base: Vec<Duration>,
}

/// Runs `ours` and `base` `runs` times each, alternating which goes first so
/// warm caches favour neither. Each closure does its own untimed set-up and
/// clean-up and returns the time of the work itself.
pub(crate) fn interleave(
    runs: usize,
    mut ours: impl FnMut() -> Duration,
    mut base: impl FnMut() -> Duration,
) -> Pair {
    let mut times = rotate(runs, &mut [&mut ours, &mut base]);
    let base = times.pop().unwrap();
    let ours = times.pop().unwrap();
    Pair { ours, base }
}

/// Runs every closure `runs` times, in turn, starting each round with the
/// next one; the times come back per closure.
pub(crate) fn rotate(runs: usize, each: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Vec<Duration>> {
    let n = each.len();
    let mut times = vec![Vec::with_capacity(runs); n];
    for round in 0..runs {
        for i in 0..n {
            let which = (round + i) % n;
            times[which].push(each[which]());
        }
    }
    times
}

pub(crate) fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// Runs `cmd` to completion and returns its wall time; a failure aborts the
/// benchmark with the command's stderr, since a figure of a failed run lies.
pub(crate) fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// Runs a set-up command whose time does not count.
pub(crate) fn run(cmd: &mut Command) {
    time(cmd);
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
