//! Row 9: TCG boots are deterministic. Cold template builds with QEMU's TCG,
//! one after another; not one may hang. Before the runner told guests the
//! host's TSC rate, about one stock boot in seven hung calibrating against
//! the emulated PIT.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Bench;
use crate::build::Place;
use crate::measure::median;
use crate::table::Row;

/// Builds in a row.
const BUILDS: usize = 50;
/// A build that takes longer hung: a cold TCG build takes about 2 s.
const HANG_SECS: &str = "60";

pub(crate) fn row(b: &Bench, p: &Place, kernel: &std::path::Path) -> Row {
    let kernel = kernel.to_str().unwrap();
    let args = [
        "--vmm",
        "qemu",
        "--force",
        "--timeout",
        HANG_SECS,
        "--kernel",
        kernel,
    ];
    let mut times = Vec::with_capacity(BUILDS);
    let mut hung = 0;
    for i in 0..BUILDS {
        let start = Instant::now();
        let out = p.build(b, &args).stdout(Stdio::null()).output().unwrap();
        let took = start.elapsed();
        if out.status.success() {
            times.push(took);
        } else {
            hung += 1;
            eprintln!(
                "  build {i} failed after {took:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let worst = times.iter().max().copied().unwrap_or_default();
    let row = Row {
        fs: p.fs.name().to_owned(),
        what: format!(
            "{BUILDS} cold TCG builds in a row: {hung} hung (slowest {:.2} s)",
            worst.as_secs_f64()
        ),
        baseline: "none".to_owned(),
        ours: median(&times),
        base: Duration::ZERO,
        goal: "0 hung".to_owned(),
        met: hung == 0,
    };
    eprintln!("  {}", row.markdown());
    row
}
