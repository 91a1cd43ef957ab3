//! Rows 1, 3, 6 and 8: `template build` warm, cold against QEMU by hand and
//! the host's mkfs, eight at once against one alone, and cold with Debian's
//! stock kernel against the tinyconfig kernel `kernel build` makes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use cargo_ktstr::runner::qemu::TCG_CPU;
use cargo_ktstr::testing::cache::ensure::{Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::formatter::fingerprint::find_formatter;
use cargo_ktstr::testing::guest::initramfs::template_initramfs;
use cargo_ktstr::testing::guest::protocol::cmdline;
use cargo_ktstr::testing::host::tsc_khz;

use crate::Bench;
use crate::measure::{Pair, interleave, rotate, run, time};
use crate::table::{Goal, Row};

/// Where one filesystem's rows work: its mount and the cache in it.
pub(crate) struct Place<'a> {
    pub fs: Filesystem,
    pub mnt: &'a Path,
}

impl Place<'_> {
    pub(crate) fn root(&self) -> PathBuf {
        self.mnt.join("cache")
    }

    pub(crate) fn capacity(&self) -> Capacity {
        Capacity::from_mib(self.fs.default_capacity_mib()).unwrap()
    }

    /// `cargo-ktstr --cache-dir <root> template build --fs <fs> <args>`.
    pub(crate) fn build(&self, b: &Bench, args: &[&str]) -> Command {
        let mut cmd = Command::new(&b.bin);
        cmd.arg("--cache-dir")
            .arg(self.root())
            .args(["template", "build", "--fs", self.fs.name()])
            .args(args);
        cmd
    }

    fn clean_all(&self, b: &Bench) {
        run(Command::new(&b.bin)
            .arg("--cache-dir")
            .arg(self.root())
            .args(["clean", "--all"]));
    }
}

/// Row 1: a warm hit, the whole process, against `cp` of the image.
pub(crate) fn warm_hit(b: &Bench, p: &Place) -> Row {
    let template = Ensurer::new(&p.root(), &HostMkfsBuilder)
        .ensure(p.fs, p.capacity())
        .expect("publish a template")
        .path;
    let copy = p.mnt.join("copy.img");
    let cp_flag = cp_flag(p.fs);
    let pair = interleave(
        b.runs,
        || time(&mut p.build(b, &[])),
        || {
            let t = time(Command::new("cp").arg(cp_flag).arg(&template).arg(&copy));
            std::fs::remove_file(&copy).unwrap();
            t
        },
    );
    let goal = Goal {
        ratio: 3.0,
        max_ms: Some(15.0),
    };
    Row::new(
        p.fs.name(),
        "`template build`, warm hit",
        format!("`cp {cp_flag}`"),
        &pair,
        goal,
    )
}

/// On a filesystem without reflink, the closest `cp` makes a sparse copy.
pub(crate) fn cp_flag(fs: Filesystem) -> &'static str {
    match fs {
        Filesystem::Ext4 => "--sparse=always",
        Filesystem::Btrfs | Filesystem::Xfs => "--reflink=always",
    }
}

/// Row 3: a forced cold build through QEMU, against the same guest run by a
/// hand-written QEMU command, and against the host's mkfs (the floor).
pub(crate) fn cold_qemu(b: &Bench, p: &Place, kernel: &Path) -> [Row; 2] {
    let formatter = find_formatter(p.fs).unwrap();
    let initrd = p.mnt.join("initramfs.cpio.gz");
    std::fs::write(
        &initrd,
        template_initramfs(&b.bin, &formatter, p.fs, &[]).unwrap(),
    )
    .unwrap();
    let disk = p.mnt.join("disk.img");
    let fresh_disk = || {
        let _ = std::fs::remove_file(&disk);
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(p.capacity().bytes())
            .unwrap();
    };
    let kernel_arg = kernel.to_str().unwrap();
    let mut ours = || time(&mut p.build(b, &["--vmm", "qemu", "--force", "--kernel", kernel_arg]));
    let mut by_hand = || {
        fresh_disk();
        time(&mut hand_written_qemu(kernel, &initrd, &disk, p.fs))
    };
    let mut mkfs = || {
        fresh_disk();
        time(Command::new(&formatter).args(p.fs.mkfs_args()).arg(&disk))
    };
    let mut times = rotate(b.runs, &mut [&mut ours, &mut by_hand, &mut mkfs]);
    let (host, qemu, ktstr) = (
        times.pop().unwrap(),
        times.pop().unwrap(),
        times.pop().unwrap(),
    );
    let what = format!("`template build --vmm qemu --force` ({})", p.capacity());
    [
        Row::new(
            p.fs.name(),
            what.clone(),
            "hand-written `qemu-system-x86_64 -M microvm`",
            &Pair {
                ours: ktstr.clone(),
                base: qemu,
            },
            Goal::ratio(1.1),
        ),
        Row::new(
            p.fs.name(),
            what,
            format!("host `{}` (the floor)", p.fs.mkfs()),
            &Pair {
                ours: ktstr,
                base: host,
            },
            Goal::floor(),
        ),
    ]
}

/// The shortest QEMU command that boots the template guest on `disk`: the
/// runner's own machine, devices and command line, typed out.
fn hand_written_qemu(kernel: &Path, initrd: &Path, disk: &Path, fs: Filesystem) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        "microvm,acpi=off",
        "-accel",
        "tcg",
        "-cpu",
        // The CPU the runner gives a TCG guest, as README gives it.
        TCG_CPU,
        "-m",
        "256M",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    // The same clock arguments the runner gives a TCG guest, as a person
    // who read the README would type.
    .args([
        "-append",
        &format!(
            "{} tsc=reliable tsc_early_khz={} noapictimer",
            cmdline(fs, "reboot=t"),
            tsc_khz().expect("a cpu MHz line in /proc/cpuinfo")
        ),
    ])
    .arg("-drive")
    .arg(format!("file={},format=raw,if=none,id=d", disk.display()))
    .args(["-device", "virtio-blk-device,drive=d"]);
    cmd
}

/// Row 6: eight processes building one missing key at once, against one.
pub(crate) fn contention(b: &Bench, p: &Place, kernel: &Path) -> Row {
    let kernel_arg = kernel.to_str().unwrap();
    let args = ["--vmm", "qemu", "--json", "--kernel", kernel_arg];
    let pair = interleave(
        b.runs,
        || {
            p.clean_all(b);
            let start = Instant::now();
            let kids: Vec<Child> = (0..8)
                .map(|_| {
                    p.build(b, &args)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let built = kids
                .into_iter()
                .map(|k| k.wait_with_output().unwrap())
                .filter(|out| {
                    assert!(out.status.success());
                    String::from_utf8_lossy(&out.stdout).contains("\"built\": true")
                })
                .count();
            let took = start.elapsed();
            assert_eq!(built, 1, "eight builds of one key booted {built} guests");
            took
        },
        || {
            p.clean_all(b);
            time(&mut p.build(b, &args))
        },
    );
    Row::new(
        p.fs.name(),
        "8 concurrent cold builds, one key",
        "one cold build alone",
        &pair,
        Goal::ratio(1.2),
    )
}

/// Row 8: a forced cold build booting Debian's 6.12 stock kernel (its
/// modules loaded in the guest, the disk found through ACPI) against the
/// same build booting a tinyconfig kernel, `built`, interleaved.
pub(crate) fn stock_vs_built(b: &Bench, p: &Place, stock: &Path, built: &Path, label: &str) -> Row {
    let build = |kernel: &Path| {
        let kernel = kernel.to_str().unwrap().to_owned();
        move || time(&mut p.build(b, &["--vmm", "qemu", "--force", "--kernel", &kernel]))
    };
    let pair = interleave(b.runs, build(stock), build(built));
    let release = stock.file_name().unwrap().to_string_lossy();
    Row::new(
        p.fs.name(),
        format!(
            "`template build --vmm qemu --force` ({}), Debian's `{}`",
            p.capacity(),
            release.trim_start_matches("vmlinuz-")
        ),
        format!("the same with {label}"),
        &pair,
        Goal::ratio(1.4),
    )
}
