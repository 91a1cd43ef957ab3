//! Row 7: the built-in VMM against QEMU `-accel kvm`, side by side inside
//! one outer guest of the nested-KVM lane, where KVM boots stock kernels.
//!
//! The outer guest runs, interleaved, `template build --force` with
//! `--vmm kvm` and with `--vmm qemu` (QEMU then uses KVM: same kernel,
//! initramfs and disk), after one warm-up build that publishes the entry.
//! The times are the builds' own (`--json` `seconds`), and each one's
//! first console byte from its `Formatted` line, read off the outer disk.

use std::path::Path;
use std::time::Duration;

use cargo_ktstr::runner::qemu::QEMU_BINARY;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::checks::CheckSpec;
use cargo_ktstr::testing::guest::nested::{self, NestedSpec, OuterInitramfs, TEMPLATE_KERNEL};
use cargo_ktstr::testing::kernel::resolve::resolve_kvm_host_from_env;

use crate::Bench;
use crate::loopfs::FsImage;
use crate::measure::{Pair, median};
use crate::table::{Goal, Row};

/// What QEMU's microvm loads besides the kernel: its firmware and the
/// option ROM that boots a kernel through fw_cfg (Debian keeps the
/// firmware in /usr/share/seabios, where its QEMU looks too).
const QEMU_DATA: [&str; 3] = [
    "/usr/share/qemu/qboot.rom",
    "/usr/share/seabios/bios-microvm.bin",
    "/usr/share/qemu/linuxboot_dma.bin",
];

fn build(name: &str, vmm: &str) -> CheckSpec {
    #[rustfmt::skip]
    let args = [
        "--cache-dir", "/disk/cache", "template", "build", "--force", "--vmm", vmm,
        "--fs", "btrfs", "--json", "--kernel", TEMPLATE_KERNEL,
    ];
    CheckSpec::new(name, "/init", &args, 300)
}

/// The two rows: wall time of a build, and time to the first console byte.
pub(crate) fn rows(b: &Bench, template_kernel: &Path) -> Vec<Row> {
    let mut checks = vec![build("warm-up", "kvm")];
    // Five pairs at most: each build is seconds, and they share one boot.
    for i in 0..b.runs.min(5) {
        checks.push(build(&format!("kvm-{i}"), "kvm"));
        checks.push(build(&format!("qemu-{i}"), "qemu"));
    }
    let qemu = cargo_ktstr::testing::host::find_program(QEMU_BINARY).expect("QEMU on PATH");
    let mut outer = OuterInitramfs::new(&b.bin, template_kernel).unwrap();
    outer
        .program(&format!("/usr/bin/{QEMU_BINARY}"), &qemu)
        .unwrap();
    for data in QEMU_DATA {
        // Links on the host; the guest gets the files.
        let host = std::fs::canonicalize(data).unwrap_or_else(|e| panic!("{data}: {e}"));
        outer.file(data, &host).unwrap();
    }
    let image = FsImage::new("btrfs", 4096).expect("a btrfs outer disk");
    let spec = NestedSpec {
        host_kernel: resolve_kvm_host_from_env().unwrap(),
        initramfs: outer.finish(&checks).unwrap(),
        disk: image.path().to_owned(),
        disk_fs: Filesystem::Btrfs,
        timeout: Duration::from_secs(60 * 60),
    };
    let run = nested::run(&spec).unwrap();
    let disk = image.mount().expect("mount the outer disk");
    let (mut wall, mut first) = (Pair::default(), Pair::default());
    for result in run.results.iter().filter(|r| r.name != "warm-up") {
        let log = std::fs::read_to_string(disk.path().join(format!("checks/{}.log", result.name)))
            .unwrap();
        assert_eq!(result.status, 0, "{}: {log}", result.name);
        let (w, f) = match result.name.starts_with("kvm-") {
            true => (&mut wall.ours, &mut first.ours),
            false => (&mut wall.base, &mut first.base),
        };
        w.push(seconds(&log));
        f.push(first_output(&log));
    }
    eprintln!(
        "  nested: first console byte, built-in VMM {:.2} s, QEMU {:.2} s (medians)",
        median(&first.ours).as_secs_f64(),
        median(&first.base).as_secs_f64()
    );
    vec![
        Row::new(
            "btrfs",
            "nested KVM: `template build --force --vmm kvm`",
            "the same with `--vmm qemu` (`-accel kvm`)",
            &wall,
            Goal::ratio(0.5),
        ),
        Row::new(
            "btrfs",
            "nested KVM: first console byte, built-in VMM",
            "the same under QEMU `-accel kvm`",
            &first,
            Goal::floor(),
        ),
    ]
}

/// `"seconds": S` from a build's `--json` report.
fn seconds(log: &str) -> Duration {
    let at = log.find("\"seconds\":").expect("a --json report") + "\"seconds\":".len();
    let text: String = log[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Duration::from_secs_f64(text.parse().unwrap())
}

/// `first console output after S s` from a build's `Formatted` line.
fn first_output(log: &str) -> Duration {
    let marker = "first console output after ";
    let at = log.find(marker).expect("a Formatted line") + marker.len();
    let text: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Duration::from_secs_f64(text.parse().unwrap())
}
