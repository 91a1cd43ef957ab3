//! The power-loss lane: the cache's operations recorded under dm-log-writes
//! in a Debian-kernel guest ([`cargo_ktstr::testing::guest::powerloss`]), then the
//! disk replayed on the host to every flush, FUA write and mark, and to a
//! seeded sample of cuts between flushes ([`cargo_ktstr::testing::guest::logwrites`]);
//! at each state the cache must hold every entry whose publish had returned,
//! serve only the bytes published under each key, take no debris for an
//! entry, and `clean` must leave only valid entries ([`check`]). The same
//! guest also runs a publish and a clone on a failing disk ([`flakey`]).
//!
//! Behind a switch, since each recording boots a guest under TCG:
//! [`SWITCH`]`=1` (`.ci/run` sets it). `KTSTR_POWERLOSS_SEED` replays a
//! run's sample of cuts (each run prints its seed).

mod check;
mod flakey;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cargo_ktstr::runner::GuestRunner;
use cargo_ktstr::runner::qemu::{Accel, QemuRunner};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::powerloss::{OpRecord, Recording, done_from_console};
use cargo_ktstr::testing::kernel::stock::{
    BOOT_DIR, GuestKernel, MODULES_ROOT, StockKernel, boot_kernels,
};

use crate::support::{bin, prerequisite};

/// The switch that turns the lane on.
const SWITCH: &str = "KTSTR_POWERLOSS";
/// The data disk: room for xfs's minimum and the templates.
const DATA_MIB: u64 = 320;
/// The log disk: every write of the run, with its data.
const LOG_MIB: u64 = 2048;
/// How long a recording may take under TCG.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A finished recording: its disks, and what each operation did.
pub(crate) struct Recorded {
    pub dir: tempfile::TempDir,
    pub records: Vec<OpRecord>,
    pub secs: f64,
}

impl Recorded {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data.img")
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.dir.path().join("log.img")
    }
}

/// Whether the lane runs; says why not when it does not.
pub(crate) fn enabled(test: &str) -> bool {
    let on = std::env::var_os(SWITCH).is_some_and(|v| v == "1");
    if !on {
        eprintln!("skipped {test}: the power-loss lane runs with {SWITCH}=1 (.ci/run sets it)");
    }
    on
}

/// Debian's 6.12 kernel with its modules.
fn debian_kernel() -> Option<StockKernel> {
    let found = boot_kernels(Path::new(BOOT_DIR), Path::new(MODULES_ROOT))
        .into_iter()
        .find(|k| k.has_modules && k.release.starts_with("6.12.") && k.release.ends_with("-amd64"));
    let what = "Debian's 6.12 kernel with its modules (.ci/install-deps)";
    if !prerequisite(what, found.is_some()) {
        return None;
    }
    match GuestKernel::identify(&found.unwrap().image, Path::new(MODULES_ROOT)).unwrap() {
        GuestKernel::Stock(stock) => Some(stock),
        GuestKernel::SelfContained(image) => panic!("{} has no modules", image.display()),
    }
}

/// Records the run on `fs` (with one fsync removed under `broken`).
pub(crate) fn record(fs: Filesystem, broken: Option<&str>) -> Option<Recorded> {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data.img"), dir.path().join("log.img"));
    let (console, secs) = boot(fs, &data, Some(&log), broken)?;
    Some(Recorded {
        records: OpRecord::all_from_console(&console),
        dir,
        secs,
    })
}

/// Boots the guest on `fs` with a fresh `data` disk and `log` disk (none:
/// the failing-disk scenarios); its console and how long it took, once it
/// said it finished.
pub(crate) fn boot(
    fs: Filesystem,
    data: &Path,
    log: Option<&Path>,
    broken: Option<&str>,
) -> Option<(Vec<u8>, f64)> {
    let kernel = debian_kernel()?;
    let found = cargo_ktstr::testing::host::find_program("qemu-system-x86_64").is_some();
    if !prerequisite("qemu-system-x86_64", found) {
        return None;
    }
    let disks = [Some((data, DATA_MIB)), log.map(|l| (l, LOG_MIB))];
    for (path, mib) in disks.into_iter().flatten() {
        std::fs::File::create(path)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
    }
    let init = bin();
    let recording = Recording {
        kernel: &kernel,
        init: &init,
        data,
        log,
        fs,
        broken,
        timeout: TIMEOUT,
    };
    let qemu = QemuRunner::find(Accel::Tcg).unwrap();
    let spec = recording.spec(qemu.reboot_arg()).unwrap();
    let start = Instant::now();
    let outcome = qemu.run(&spec).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let console = String::from_utf8_lossy(&outcome.console).into_owned();
    match done_from_console(&outcome.console) {
        Some((true, summary)) => eprintln!("{fs}: ran in {secs:.1} s: {summary}"),
        Some((false, why)) => panic!("the {fs} guest failed: {why}\nconsole:\n{console}"),
        None => panic!(
            "the {fs} guest did not finish ({}):\n{console}",
            outcome.end
        ),
    }
    Some((outcome.console, secs))
}

/// The seed of the sample of cuts: `KTSTR_POWERLOSS_SEED`, else the clock.
fn seed() -> u64 {
    std::env::var("KTSTR_POWERLOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        })
}

/// Cuts between flushes sampled per filesystem.
const SAMPLES: usize = 40;

/// Records and replays the run on `fs`; every state must hold.
fn lane(fs: Filesystem) {
    let Some(rec) = record(fs, None) else { return };
    let seed = seed();
    let figures = check::replay(&rec, SAMPLES, seed);
    eprintln!(
        "{fs}: {} states checked ({} flush/FUA/mark points, {} cuts between flushes, seed {seed}) \
         in {:.1} s after a {:.1} s recording; per operation in flight: {:?}",
        figures.points + figures.torn,
        figures.points,
        figures.torn,
        figures.secs,
        rec.secs,
        figures.per_op
    );
    assert!(
        figures.violations.is_empty(),
        "{fs}: {} broken states (replay with KTSTR_POWERLOSS_SEED={seed}):\n{}",
        figures.violations.len(),
        figures.violations.join("\n")
    );
}

#[test]
fn powerloss_ext4() {
    if enabled("powerloss_ext4") {
        lane(Filesystem::Ext4);
    }
}

#[test]
fn powerloss_xfs() {
    if enabled("powerloss_xfs") {
        lane(Filesystem::Xfs);
    }
}

#[test]
fn powerloss_btrfs() {
    if enabled("powerloss_btrfs") {
        lane(Filesystem::Btrfs);
    }
}

/// The lane can fail: without the root's fsync after the rename, a
/// template whose build had returned is missing at the state its mark
/// stands for, and the lane says which.
#[test]
fn powerloss_without_the_root_fsync_a_published_entry_is_lost() {
    if !enabled("powerloss_without_the_root_fsync_a_published_entry_is_lost") {
        return;
    }
    let broken = Some(cargo_ktstr::testing::guest::powerloss::BREAK_ROOT_FSYNC);
    let Some(rec) = record(Filesystem::Ext4, broken) else {
        return;
    };
    let figures = check::replay(&rec, 0, 0);
    let lost: Vec<_> = (figures.violations.iter())
        .filter(|v| v.contains("is missing, though operation"))
        .collect();
    eprintln!(
        "without the root fsync: {} of {} states broken, e.g. {:?}",
        figures.violations.len(),
        figures.points,
        lost.first()
    );
    assert!(
        !lost.is_empty(),
        "the lane missed the lost entry: {:?}",
        figures.violations
    );
}
