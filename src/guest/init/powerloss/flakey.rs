//! The failing-disk scenarios in the guest: a device-mapper device over
//! the one disk, healthy or failing by a table reload, and each scenario in
//! a process of its own (the protocol is in
//! [`crate::guest::powerloss::flakey`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{MOUNT, capacity, ensurer, in_child, make_filesystem};
use crate::cache::clone::Reflink;
use crate::cache::key::Key;
use crate::cache::lookup::{Entry, lookup};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint;
use crate::guest::init::dm::{self, DmControl, Target};
use crate::guest::init::helpers::{disk_hash, mount_disk_at, print_line, unmount_disk};
use crate::guest::init::{disks, modules};
use crate::guest::powerloss::flakey::{
    Action, Fault, Found, SCENARIOS, Scenario, StepRecord, XFS_REPAIR,
};
use crate::guest::powerloss::{TEMPLATE_FS, TEMPLATES};

const DM_NAME: &str = "ktstr-flakey";
const DM_NODE: &str = "/dev/ktstr-flakey";
/// Where clones go: beside the template root, on the failing disk too.
const CLONES: &str = "clones";
/// The flakey table's down interval: a day, so with no up interval the
/// disk fails for the whole operation.
const DOWN_SECS: u32 = 86_400;
/// Scenario `n` runs as operation `STEP_OPS + n` of [`in_child`].
const STEP_OPS: u32 = 100;

/// The guest side, in the init (after [`super::run_in_guest`] set
/// up /dev, /sys, /tmp and the modules): every scenario, then a summary.
pub(crate) fn run_in_guest(fs: Filesystem) -> Result<String> {
    let deadline = modules::DISK_DEADLINE;
    let disks = disks::find_disks(Path::new("/sys/block"), 1, deadline)?;
    let disk = Disk {
        dm: DmControl::open()?,
        path: disks[0].clone(),
        fs,
    };
    let dev = disk.dm.create(DM_NAME, &[disk.table(None)?])?;
    dm::make_node(Path::new(DM_NODE), dev)?;
    let start = std::time::Instant::now();
    make_filesystem(fs, DM_NODE)?;
    mount_disk_at(DM_NODE, fs.name(), MOUNT)?;
    for dir in [TEMPLATES, CLONES] {
        let path = Path::new(MOUNT).join(dir);
        std::fs::create_dir(&path)
            .with_context(|| format!("failed to create {}", path.display()))?;
    }
    let _ = std::fs::write("/proc/sys/kernel/pid_max", "4194304");
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        let n = i + 1;
        print_line(&format!(
            "cargo-ktstr init: scenario {n} {:?} under {} at {:.1} s\n",
            scenario.action,
            scenario.fault.feature(),
            start.elapsed().as_secs_f64()
        ));
        in_child(STEP_OPS + n as u32, || {
            print_line(&run_scenario(&disk, n, *scenario)?.render());
            Ok(())
        })?;
    }
    unmount_disk(MOUNT);
    disk.dm.remove(DM_NAME)?;
    nix::unistd::sync();
    Ok(format!(
        "{} scenarios on {fs} under dm-flakey in {:.1} s",
        SCENARIOS.len(),
        start.elapsed().as_secs_f64()
    ))
}

/// The flakey device and the disk under it.
struct Disk {
    dm: DmControl,
    path: PathBuf,
    fs: Filesystem,
}

impl Disk {
    /// The table: the whole disk, failing with `fault` or healthy.
    fn table(&self, fault: Option<Fault>) -> Result<Target> {
        let dev = dm::dev_name(&self.path)?;
        let (kind, params) = match fault {
            None => ("linear", format!("{dev} 0")),
            Some(f) => ("flakey", format!("{dev} 0 0 {DOWN_SECS} 1 {}", f.feature())),
        };
        Ok(Target {
            start: 0,
            length: dm::sectors(&self.path)?,
            kind: kind.into(),
            params,
        })
    }

    /// Makes the disk fail with `fault` from now on, or heals it.
    fn set(&self, fault: Option<Fault>) -> Result<()> {
        self.dm.reload(DM_NAME, &[self.table(fault)?])
    }

    /// Heals the disk and mounts the filesystem afresh, with nothing of it
    /// left in the page cache, so what is read is what the disk holds. An
    /// xfs that refuses the mount is repaired first, as its message asks:
    /// what the mount and the repair said.
    fn heal_and_remount(&self) -> Result<Option<String>> {
        self.set(None)?;
        nix::mount::umount(MOUNT).with_context(|| format!("failed to unmount {MOUNT}"))?;
        std::fs::write("/proc/sys/vm/drop_caches", "3").context("failed to drop the caches")?;
        let Err(e) = mount_disk_at(DM_NODE, self.fs.name(), MOUNT) else {
            return Ok(None);
        };
        let refused = format!("{e:#}; the kernel said: {}", kernel_log_tail(3));
        if self.fs != Filesystem::Xfs {
            anyhow::bail!("{refused}");
        }
        // -L: the log holds nothing to replay; it is what disagrees.
        let out = std::process::Command::new(XFS_REPAIR)
            .args(["-L", DM_NODE])
            .output()
            .with_context(|| format!("failed to run {XFS_REPAIR}"))?;
        let repair = format!(
            "{XFS_REPAIR} -L: {}, {} lines of output",
            out.status,
            out.stdout.split(|&b| b == b'\n').count() + out.stderr.split(|&b| b == b'\n').count()
        );
        mount_disk_at(DM_NODE, self.fs.name(), MOUNT)
            .with_context(|| format!("{refused}; after {repair}"))?;
        Ok(Some(format!("{refused}; then {repair}")))
    }
}

/// The kernel log's last `lines` records (a mount's reasons go there, below
/// the console's level under `quiet`).
fn kernel_log_tail(lines: usize) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return "(no /dev/kmsg)".into();
    };
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    // One record per read, until EAGAIN.
    while let Ok(n @ 1..) = kmsg.read(&mut buf) {
        let record = String::from_utf8_lossy(&buf[..n]);
        let text = record.split_once(';').map_or(&*record, |(_, t)| t);
        records.push(text.lines().next().unwrap_or("").to_owned());
    }
    let skip = records.len().saturating_sub(lines);
    records[skip..].join(" | ")
}

fn root() -> PathBuf {
    Path::new(MOUNT).join(TEMPLATES)
}

fn key(mib: u64) -> Result<Key> {
    Ok(Key::new(
        TEMPLATE_FS,
        capacity(mib)?,
        &fingerprint::fingerprint(TEMPLATE_FS)?,
    ))
}

/// Runs `action` once: what it made (sha256).
fn run_action(action: Action, mib: u64, dest: &Path) -> Result<String> {
    match action {
        Action::Publish => {
            let ensured = ensurer(&root(), false).ensure(TEMPLATE_FS, capacity(mib)?)?;
            disk_hash(&ensured.path)
        }
        Action::Clone => {
            ensurer(&root(), false).clone_to(TEMPLATE_FS, capacity(mib)?, dest, Reflink::Auto)?;
            disk_hash(dest)
        }
    }
}

/// What the tool's lookup shows for `key`.
fn entry(key: &Key) -> Found {
    match lookup(&root(), key) {
        Ok(Entry::Absent) => Found::Absent,
        Ok(Entry::Valid(path)) => match disk_hash(&path) {
            Ok(hash) => Found::Valid(hash),
            Err(e) => Found::Error(format!("{e:#}")),
        },
        Ok(Entry::Invalid(why)) => Found::Invalid(why),
        Ok(Entry::Foreign(why)) => Found::Foreign(why),
        Err(e) => Found::Error(format!("{e:#}")),
    }
}

/// What is at a clone's destination.
fn file(path: &Path) -> Found {
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
        _ => match disk_hash(path) {
            Ok(hash) => Found::Valid(hash),
            Err(e) => Found::Error(format!("{e:#}")),
        },
    }
}

/// Names in the template root other than `key`'s entry.
fn others(key: &Key) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root()) else {
        return vec!["(the template root cannot be listed)".into()];
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| *name != key.to_string())
        .collect();
    names.sort();
    names
}

/// One scenario, in its own process.
fn run_scenario(disk: &Disk, n: usize, s: Scenario) -> Result<StepRecord> {
    let key = key(s.mib)?;
    let clones = Path::new(MOUNT).join(CLONES);
    let dest = clones.join(format!("{n}.img"));
    // What the healthy disk holds, then the operation on the failing one.
    nix::unistd::sync();
    disk.set(Some(s.fault))?;
    if !s.readback {
        // For the rest of this process: the healthy run after it too.
        crate::cache::publish::skip_readback();
    }
    let first = run_action(s.action, s.mib, &dest);
    let repaired = disk.heal_and_remount()?;
    let (entry_found, dest_found) = (entry(&key), file(&dest));
    let others = others(&key);
    let next_dest = clones.join(format!("{n}-next.img"));
    let next = run_action(s.action, s.mib, &next_dest);
    let next_found = match s.action {
        Action::Publish => entry(&key),
        Action::Clone => file(&next_dest),
    };
    Ok(StepRecord {
        n,
        action: s.action,
        fault: s.fault,
        readback: s.readback,
        key: key.to_string(),
        target: match s.action {
            Action::Publish => root().display().to_string(),
            Action::Clone => dest.display().to_string(),
        },
        error: first.as_ref().err().map(|e| format!("{e:#}")),
        built: first.ok(),
        repaired,
        entry: entry_found,
        dest: (s.action == Action::Clone).then_some(dest_found),
        others,
        next_error: next.as_ref().err().map(|e| format!("{e:#}")),
        next_built: next.ok(),
        next: next_found,
    })
}
