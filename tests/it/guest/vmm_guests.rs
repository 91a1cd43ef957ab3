//! The built-in VMM against synthetic guests (kvm-unit-tests style): tiny
//! freestanding programs from `tests/guests/`, loaded as an ELF kernel,
//! entered in 64-bit mode with the zero page in RSI, reporting over COM1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cargo_ktstr::runner::kvm::kvm_boot_support;
use cargo_ktstr::runner::{RunEnd, RunOutcome};
use cargo_ktstr::testing::vmm::{self, VmConfig};

use crate::guest::guests;
use crate::support::{
    guest_kernel, in_counting_child, kvm_usable, mappings, open_fds, prerequisite,
};

const KVM: &str = "a read-write /dev/kvm";

/// A run of `kernel` with 256 MiB, no initramfs and no disk; tests change
/// what they need with `..config(..)`.
fn config<'a>(kernel: &'a Path, cmdline: &'a str, timeout: Duration) -> VmConfig<'a> {
    VmConfig {
        kernel,
        initramfs: &[],
        cmdline,
        disks: &[],
        memory_mib: 256,
        timeout,
    }
}

fn boot(guest: &str, initramfs: &[u8], cmdline: &str, timeout: Duration) -> RunOutcome {
    let kernel = guests::build(guest);
    let config = VmConfig {
        initramfs,
        ..config(&kernel, cmdline, timeout)
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

    // A deadline that passes during set-up still ends the run, at once.
    let out = boot("looping", &[], "", Duration::ZERO);
    assert_eq!(out.end, RunEnd::Timeout);
    assert!(out.total < Duration::from_secs(1), "{:?}", out.total);
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

    // With a disk, the VMM announces it after the caller's arguments.
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let kernel = guests::build("boot_protocol");
    let config = VmConfig {
        disks: std::slice::from_ref(&disk),
        memory_mib: 128,
        ..config(&kernel, cmdline, Duration::from_secs(10))
    };
    let text = vmm::run(&config).unwrap().console_text();
    let want = format!("cmdline={cmdline} virtio_mmio.device=4K@0xd0000000:5");
    assert_eq!(text.lines().next(), Some(want.as_str()));
    assert!(
        text.contains("initramfs=0x0000000000000000 size=0x0000000000000000"),
        "{text}"
    );
    let top = format!(
        "e820 0x0000000000100000 {:#018x} 0x0000000000000001",
        (128u64 << 20) - 0x100000
    );
    assert!(text.contains(&top), "{text}");
}

#[test]
fn a_hundred_runs_leave_no_fd_or_mapping_behind() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    // Other tests in this process open fds at any moment, so the counting
    // happens in a child running only this test.
    let name = "guest::vmm_guests::a_hundred_runs_leave_no_fd_or_mapping_behind";
    if !in_counting_child(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let not_a_kernel = dir.path().join("junk");
    std::fs::write(&not_a_kernel, vec![0x90; 4096]).unwrap();
    // Every way a run ends: reset (with and without a disk), shutdown,
    // timeout, and a set-up that fails half way.
    let guests: Vec<(PathBuf, Option<RunEnd>)> = vec![
        (guests::build("hello"), Some(RunEnd::Reset)),
        (guests::build("virtio_blk"), Some(RunEnd::Reset)),
        (guests::build("triple_fault"), Some(RunEnd::Shutdown)),
        (guests::build("looping"), Some(RunEnd::Timeout)),
        (not_a_kernel, None),
    ];
    let run = |i: usize| {
        let (kernel, want) = &guests[i % guests.len()];
        let millis = if *want == Some(RunEnd::Timeout) {
            50
        } else {
            10_000
        };
        let config = VmConfig {
            initramfs: &[1, 2, 3],
            disks: std::slice::from_ref(&disk),
            ..config(kernel, "", Duration::from_millis(millis))
        };
        let end = vmm::run(&config).ok().map(|out| out.end);
        assert_eq!(end, *want, "{}", kernel.display());
    };
    // A round first: the kick handler and other one-time state settle.
    (0..guests.len()).for_each(run);
    let (fds, maps) = (open_fds(), mappings());
    (0..100).for_each(run);
    assert_eq!(open_fds(), fds, "fds leaked");
    assert_eq!(mappings(), maps, "mappings leaked");
    println!("counted {fds} fds and {maps} mappings before and after");
}

#[test]
fn a_guest_driver_uses_the_virtio_blk_disk() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let sectors = 2048u64;
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(sectors * 512)
        .unwrap();
    let kernel = guests::build("virtio_blk");
    let config = VmConfig {
        disks: std::slice::from_ref(&disk),
        ..config(&kernel, "console=ttyS0", Duration::from_secs(10))
    };
    let out = vmm::run(&config).unwrap();
    assert_eq!(out.end, RunEnd::Reset, "console: {}", out.console_text());
    let want = [
        "features=0x0000000100000204".to_owned(),
        format!("capacity={sectors:#018x}"),
        "write status=0".into(),
        "read matches status=0".into(),
        "flush status=0".into(),
        "get-id status=0".into(),
        "id=disk0".into(),
        "past-end status=1".into(),
        "straddling-end status=1".into(),
        "write-straddling-end status=1".into(),
        "unknown-type status=2".into(),
        "short-header status=1".into(),
        "broken-chain used=0x0000000000000000 untouched".into(),
        "write-after status=0".into(),
        "interrupt=0x0000000000000001".into(),
        "woken by the interrupt, read matches status=0".into(),
    ];
    assert_eq!(out.console_text().lines().collect::<Vec<_>>(), want);

    // What the guest wrote is in the file, and nothing else changed (the
    // last sector included).
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(bytes.len() as u64, sectors * 512);
    let pattern = |seed: u8, n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    };
    assert_eq!(&bytes[3 * 512..5 * 512], &pattern(1, 1024)[..]);
    assert_eq!(&bytes[5 * 512..6 * 512], &pattern(0xa5, 512)[..]);
    assert!(
        bytes[..3 * 512]
            .iter()
            .chain(&bytes[6 * 512..])
            .all(|b| *b == 0)
    );
}

#[test]
fn the_serial_interrupt_reaches_the_guest_through_the_ioapic() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let out = boot("interrupts", &[], "", Duration::from_secs(10));
    assert_eq!(out.end, RunEnd::Reset, "console: {}", out.console_text());
    assert_eq!(out.console_text(), "armed\ninterrupt received\n");
}

#[test]
fn the_real_kernel_loads_and_starts() {
    if !prerequisite(KVM, kvm_usable()) {
        return;
    }
    let Some(kernel) = guest_kernel() else {
        return;
    };
    let run =
        |cmdline: &str, timeout: Duration| vmm::run(&config(&kernel, cmdline, timeout)).unwrap();
    match kvm_boot_support() {
        // Too slow here to get anywhere, but it must still be running at the
        // deadline (a bad entry state triple-faults on the first
        // instruction), and must have run: the decompressor writes
        // megabytes of guest RAM the VMM never touched.
        Err(_) => {
            let config = config(&kernel, "console=ttyS0", Duration::from_secs(1));
            let (out, usage) = vmm::run_measured(&config).unwrap();
            assert_eq!(out.end, RunEnd::Timeout, "{}", out.console_text());
            let loaded = std::fs::metadata(&kernel).unwrap().len();
            assert!(
                usage.guest_resident > loaded + (1 << 20),
                "the guest wrote little: {} bytes resident, {loaded} loaded",
                usage.guest_resident
            );
        }
        // With no initramfs and no root it panics, and panic=-1 resets.
        Ok(()) => {
            let out = run("console=ttyS0 panic=-1", Duration::from_secs(60));
            assert_eq!(out.end, RunEnd::Reset, "{}", out.console_tail(30));
            assert!(out.console_text().contains("Linux version"));
        }
    }
}
