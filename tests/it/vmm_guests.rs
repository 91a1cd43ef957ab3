//! The built-in VMM against synthetic guests (kvm-unit-tests style): tiny
//! freestanding programs from `tests/guests/`, loaded as an ELF kernel,
//! entered in 64-bit mode with the zero page in RSI, reporting over COM1.

use std::time::Duration;

use cargo_ktstr::runner::{RunEnd, RunOutcome};
use cargo_ktstr::vmm::{self, VmConfig};

#[path = "../guests/mod.rs"]
mod guests;

use crate::util::{CHILD_ENV, child, kvm_usable, prerequisite};

const KVM: &str = "a read-write /dev/kvm";

fn boot(guest: &str, initramfs: &[u8], cmdline: &str, timeout: Duration) -> RunOutcome {
    let kernel = guests::build(guest);
    let config = VmConfig {
        kernel: &kernel,
        initramfs,
        cmdline,
        memory_mib: 256,
        timeout,
    };
    vmm::run(&config).unwrap_or_else(|e| panic!("running guest {guest}: {e}"))
}

#[test]
fn hello_prints_and_resets() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let out = boot("hello", &[], "console=ttyS0", Duration::from_secs(10));
    assert_eq!(out.end, RunEnd::Reset, "console: {}", out.console_text());
    assert_eq!(out.console_text(), "hello from the synthetic guest\n");
    let first = out.first_output.expect("a first byte was seen");
    assert!(first <= out.total);
}

#[test]
fn a_triple_fault_is_a_shutdown() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let out = boot("triple_fault", &[], "", Duration::from_secs(10));
    assert_eq!(out.end, RunEnd::Shutdown, "console: {}", out.console_text());
    assert_eq!(out.console_text(), "faulting\n");
}

#[test]
fn a_guest_that_never_ends_times_out_at_the_deadline() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let deadline = Duration::from_millis(1500);
    let out = boot("looping", &[], "", deadline);
    assert_eq!(out.end, RunEnd::Timeout, "console: {}", out.console_text());
    assert_eq!(out.console_text(), "looping\n");
    let off_by = out.total.abs_diff(deadline);
    assert!(
        off_by <= deadline / 10,
        "ended after {:?}, deadline {deadline:?}",
        out.total
    );
}

#[test]
fn the_guest_reads_the_zero_page_the_vmm_wrote() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let cmdline = "console=ttyS0 ktstr.test=zero-page quiet";
    let initramfs: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = boot(
        "boot_protocol",
        &initramfs,
        cmdline,
        Duration::from_secs(10),
    );
    assert_eq!(out.end, RunEnd::Reset, "console: {}", out.console_text());
    let text = out.console_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("cmdline={cmdline}"));

    // 256 MiB of RAM: the initramfs sits page-aligned just below its end.
    let ram_end = 256u64 << 20;
    let addr = (ram_end - initramfs.len() as u64) & !0xfff;
    let sum = initramfs
        .iter()
        .fold(0u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let want = format!(
        "initramfs={addr:#018x} size={:#018x} sum={sum:#018x}",
        initramfs.len()
    );
    assert_eq!(lines[1], want);

    let e820: Vec<String> = [
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0x100000, ram_end - 0x100000, 1),
    ]
    .iter()
    .map(|(a, s, t)| format!("e820 {a:#018x} {s:#018x} {t:#018x}"))
    .collect();
    assert_eq!(lines[2..], e820);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_hundred_runs_leave_no_fd_or_mapping_behind() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    // Other tests in this process open fds at any moment, so the counting
    // happens in a child running only this test.
    let name = "vmm_guests::a_hundred_runs_leave_no_fd_or_mapping_behind";
    if std::env::var_os(CHILD_ENV).is_none() {
        let out = child(name, "count").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("counted"), "the child ran nothing: {text}");
        return;
    }
    let kernel = guests::build("hello");
    let config = VmConfig {
        kernel: &kernel,
        initramfs: &[1, 2, 3],
        cmdline: "",
        memory_mib: 256,
        timeout: Duration::from_secs(10),
    };
    // One run first: the kick handler and other one-time state settle.
    assert_eq!(vmm::run(&config).unwrap().end, RunEnd::Reset);
    let (fds, maps) = (open_fds(), mappings());
    for _ in 0..100 {
        assert_eq!(vmm::run(&config).unwrap().end, RunEnd::Reset);
    }
    assert_eq!(open_fds(), fds, "fds leaked");
    assert_eq!(mappings(), maps, "mappings leaked");
    println!("counted {fds} fds and {maps} mappings before and after");
}
