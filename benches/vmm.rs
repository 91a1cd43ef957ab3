//! The built-in VMM on the synthetic hello guest: start-to-reset time and
//! the VMM's own resident memory beyond the guest pages it touched.
//!
//! `cargo bench --bench vmm` (add `-- RUNS` for another run count).

use std::time::Duration;

use cargo_ktstr::runner::RunEnd;
use cargo_ktstr::testing::vmm::{self, VmConfig};

// The tests' recipe, shared; a bench builds guests only, not the
// hanging formatter.
#[allow(dead_code)]
#[path = "../tests/guests/mod.rs"]
mod guests;

/// CPU time (user and system, guest time included) of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if let Err(e) = cargo_ktstr::testing::host::open_kvm() {
        println!("vmm bench skipped: /dev/kvm is not usable ({e})");
        return;
    }
    let runs: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(50);
    let kernel = guests::build("hello");
    let config = VmConfig {
        kernel: &kernel,
        initramfs: &[],
        cmdline: "console=ttyS0",
        disks: &[],
        memory_mib: 256,
        timeout: Duration::from_secs(10),
    };
    // Warm up: the first run installs the kick handler and grows the heap.
    for _ in 0..3 {
        vmm::run(&config).unwrap();
    }
    let mut totals = Vec::with_capacity(runs);
    let mut firsts = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let before = thread_cpu_time();
        let out = vmm::run(&config).unwrap();
        cpu.push(thread_cpu_time() - before);
        assert_eq!(out.end, RunEnd::Reset);
        totals.push(out.total);
        firsts.push(out.first_output.unwrap());
    }
    let (min, max) = (*totals.iter().min().unwrap(), *totals.iter().max().unwrap());
    println!(
        "hello guest, {runs} runs: start to reset median {} (min {}, max {}); first output median {}",
        ms(median(totals)),
        ms(min),
        ms(max),
        ms(median(firsts))
    );
    // The vCPU runs on this thread, so its CPU time is the run's own work;
    // the rest of the wall time is waiting (on KVM, or for a busy CPU).
    println!(
        "CPU time of this thread per run (set-up, guest, teardown): median {}",
        ms(median(cpu))
    );

    // The process's resident set as the guest ended, less the guest pages
    // touched: what the VMM (and this whole process) holds of its own.
    let (_, usage) = vmm::run_measured(&config).unwrap();
    println!(
        "memory: process RSS {} KiB at the end of a run, of which guest pages {} KiB; \
         beyond the guest {} KiB (the run itself added {} KiB)",
        usage.rss_at_end >> 10,
        usage.guest_resident >> 10,
        usage.beyond_guest() >> 10,
        usage.added_by_run() >> 10
    );
}
