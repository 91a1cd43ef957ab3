//! PID 1 in a guest this crate boots: read the kernel command line and
//! run one mode. By default the template mode ([`template`]): load the
//! modules a stock kernel needs for its disks ([`modules`]), find each disk
//! by its serial ([`disks`]), format it, check the result, print one
//! result line per disk ([`crate::guest::protocol`]) and reboot. With
//! `ktstr.mode=checks` it runs a list of checks instead ([`checks`]), as
//! the nested lane's outer guest; with `ktstr.mode=probe` it writes a file
//! to a per-test image ([`probe`]); with `ktstr.mode=powerloss` it records
//! the cache's operations under dm-log-writes ([`powerloss`]). What every
//! mode needs (mounts, the console) is in [`helpers`].
//!
//! Every way out ends in a reboot, which the host sees as the end of the
//! run: an error becomes a failed result line, a panic is printed by a hook
//! that also prints a result line and reboots, and should `reboot(2)` itself
//! fail, init exits, the kernel panics, and `panic=-1` resets the machine.

use std::fs;

use anyhow::{Context, Result};
use nix::sys::reboot::{RebootMode, reboot};

pub(crate) mod checks;
pub(crate) mod disks;
pub(crate) mod dm;
pub(crate) mod helpers;
pub(crate) mod modules;
pub(crate) mod powerloss;
pub(crate) mod probe;
pub(crate) mod template;

use super::checks::MODE_PARAM;
use super::protocol::{INIT_PATH, TemplateResult};
use helpers::{mount_pseudo, print_line};
use template::{format_disks, init_failed};

/// Whether this process is the template guest's init: PID 1 started as
/// `/init`. PID 1 alone is not enough: as a container's entry point this
/// binary is PID 1 too, and must stay the CLI there.
pub(crate) fn is_guest_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == INIT_PATH)
}

/// Runs as the guest's init; never returns.
pub(crate) fn run() -> ! {
    set_panic_hook(power_cycle);
    let done = match read_cmdline() {
        Ok(cmdline) if cmdline.split_whitespace().any(|a| a == MODE_PARAM) => checks::run(&cmdline),
        Ok(cmdline)
            if cmdline
                .split_whitespace()
                .any(|a| a == crate::guest::probe::MODE_PARAM) =>
        {
            let probed = probe::run_in_guest(&cmdline);
            print_line(
                &crate::guest::probe::ProbeResult {
                    ok: probed.is_ok(),
                    output: probed.unwrap_or_else(|e| format!("{e:#}")),
                }
                .render(),
            );
            power_cycle()
        }
        Ok(cmdline)
            if cmdline
                .split_whitespace()
                .any(|a| a == super::powerloss::MODE_PARAM) =>
        {
            let recorded = powerloss::run_in_guest(&cmdline);
            print_line(&super::powerloss::render_done(
                recorded.is_ok(),
                &recorded.unwrap_or_else(|e| format!("{e:#}")),
            ));
            power_cycle()
        }
        Ok(cmdline) => format_disks(&cmdline),
        Err(e) => Err(e),
    };
    // A line without a disk stands for every disk not yet reported.
    if let Err(e) = done {
        report(&init_failed(format!("{e:#}")));
    }
    power_cycle()
}

/// Mounts proc and reads the kernel command line.
fn read_cmdline() -> Result<String> {
    mount_pseudo("proc", "/proc")?;
    fs::read_to_string("/proc/cmdline").context("failed to read /proc/cmdline")
}

/// Has a panic print its message, then a failed result line, then call
/// `end` (the reset; a seam for the test, which cannot reset).
fn set_panic_hook(end: fn() -> !) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        report(&init_failed(format!("cargo-ktstr init panicked: {info}")));
        end();
    }));
}

/// Prints the result line on the console.
fn report(result: &TemplateResult) {
    print_line(&result.render());
}

/// Syncs and resets the machine: with `reboot=t` or `reboot=k` and QEMU's
/// `-no-reboot`, the VMM sees the reset and the run ends.
fn power_cycle() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // Only reached if reboot(2) failed: PID 1 exiting panics the kernel,
    // and `panic=-1` turns that into the same reset.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use template::STATUS_INIT_FAILED;

    const TEST: &str = "guest::init::tests::a_panic_reports_a_failed_result_then_ends_the_run";
    /// Set in the copy of the test binary that panics.
    const CHILD: &str = "KTSTR_TEST_INIT_PANIC";

    #[test]
    fn a_panic_reports_a_failed_result_then_ends_the_run() {
        // A panic hook is process-wide: it is installed in a child process
        // (this test binary running only this test), never in the harness.
        if std::env::var_os(CHILD).is_some() {
            fn end() -> ! {
                std::process::exit(42)
            }
            set_panic_hook(end);
            panic!("the disk vanished");
        }
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(42), "the hook did not end the run");
        let result = TemplateResult::from_console(&out.stdout).expect("no result line");
        assert_eq!(result.status, STATUS_INIT_FAILED);
        assert!(!result.magic);
        assert!(
            result.output.contains("cargo-ktstr init panicked")
                && result.output.contains("the disk vanished"),
            "{}",
            result.output
        );
    }
}
