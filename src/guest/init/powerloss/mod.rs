//! In the guest: set up log-writes, make the cache filesystem, run the
//! operations, mark each (the protocol is in [`crate::guest::powerloss`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub(crate) mod flakey;

use super::dm::{self, DmControl, Target};
use super::helpers::{disk_hash, mount_disk_at, mount_pseudo, print_line, unmount_disk};
use super::{disks, modules};
use crate::cache::cleanup::{Budget, CleanMode, CleanOptions, ItemKind, clean};
use crate::cache::clone::Reflink;
use crate::cache::ensure::{EnsureOptions, Ensurer, HostMkfsBuilder};
use crate::cache::key::{Capacity, Key};
use crate::cache::names;
use crate::cache::per_test::PerTestImage;
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint;
use crate::guest::powerloss::flakey::FLAKEY_PARAM;
use crate::guest::powerloss::{
    BREAK_PARAM, BREAK_ROOT_FSYNC, KERNEL_NAME, KERNELS, OpRecord, Published, TEMPLATE_FS,
    TEMPLATES,
};
use crate::guest::protocol::formatter_path;
use crate::kernel::store::{CONFIG_FILE, IMAGE_FILE, KernelStore};

/// The log-writes device and its node.
const DM_NAME: &str = "ktstr-log";
const DM_NODE: &str = "/dev/ktstr-log";
/// Where the cache filesystem is mounted, and what is in it.
pub(crate) const MOUNT: &str = "/cache";
const CLONES: &str = "clones";
/// The pid the debris is made under: dead in the guest, and above the
/// host's default pid_max (32768) so no host process has it either.
const DEBRIS_PID: u32 = 4_190_000;
/// Where each operation's process is started, also above any host pid.
const OP_PIDS: u32 = 4_100_000;
/// One operation of the run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// `template build` of an ext4 template of this many MiB (`--force`).
    Publish(u64, bool),
    /// `template clone` of it into a file beside the root.
    Clone(u64),
    /// A harness's per-test image of it, dropped at once.
    PerTest(u64),
    /// A kernel published into the store (replacing the entry).
    Kernel(bool),
    /// What dead writers leave: a staging directory and a staging image.
    Debris(u64),
    /// `clean` (debris only).
    Clean,
    /// `clean --max-size` just under what the entries take: one goes.
    Budget,
    /// `clean --all`.
    CleanAll,
}

/// The run: several keys, one replaced with `--force`, clones and a
/// per-test image, a kernel published and replaced, debris cleaned, a
/// budget eviction, and `clean --all`.
pub(crate) const OPS: &[Op] = &[
    Op::Publish(16, false),
    Op::Publish(20, false),
    Op::Publish(24, false),
    Op::Publish(16, true),
    Op::Clone(16),
    Op::PerTest(20),
    Op::Kernel(false),
    Op::Kernel(true),
    Op::Debris(20),
    Op::Clean,
    Op::Budget,
    Op::CleanAll,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Publish(_, false) => "publish",
            Op::Publish(_, true) => "publish-force",
            Op::Clone(_) => "clone",
            Op::PerTest(_) => "per-test",
            Op::Kernel(false) => "kernel-publish",
            Op::Kernel(true) => "kernel-replace",
            Op::Debris(_) => "debris",
            Op::Clean => "clean",
            Op::Budget => "budget-evict",
            Op::CleanAll => "clean-all",
        }
    }
}

/// The value of `param=` on the command line.
pub(super) fn param<'a>(cmdline: &'a str, param: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(param)?.strip_prefix('='))
}

/// The guest side, in the init: everything, then a summary.
pub(crate) fn run_in_guest(cmdline: &str) -> Result<String> {
    let fs: Filesystem = param(cmdline, crate::guest::checks::DISK_PARAM)
        .context("no ktstr.disk= on the kernel command line")?
        .parse()
        .map_err(anyhow::Error::msg)?;
    let broken = param(cmdline, BREAK_PARAM);
    ensure!(
        broken.is_none_or(|b| b == BREAK_ROOT_FSYNC),
        "{BREAK_PARAM}= takes only `{BREAK_ROOT_FSYNC}`"
    );
    mount_pseudo("devtmpfs", "/dev")?;
    mount_pseudo("sysfs", "/sys")?;
    mount_pseudo("tmpfs", "/tmp")?;
    let modules_dir = Path::new(modules::MODULES_DIR);
    for skipped in modules::load_modules(modules_dir)? {
        print_line(&format!(
            "cargo-ktstr init: optional module not loaded: {skipped}\n"
        ));
    }
    if param(cmdline, FLAKEY_PARAM) == Some("1") {
        return flakey::run_in_guest(fs);
    }
    let deadline = modules::DISK_DEADLINE;
    let disks = disks::find_disks(Path::new("/sys/block"), 2, deadline)?;
    let dm = DmControl::open()?;
    let table = Target {
        start: 0,
        length: dm::sectors(&disks[0])?,
        kind: "log-writes".into(),
        params: format!("{} {}", dm::dev_name(&disks[0])?, dm::dev_name(&disks[1])?),
    };
    let dev = dm.create(DM_NAME, &[table])?;
    dm::make_node(Path::new(DM_NODE), dev)?;
    let start = Instant::now();
    make_filesystem(fs, DM_NODE)?;
    mount_disk_at(DM_NODE, fs.name(), MOUNT)?;
    for dir in [TEMPLATES, KERNELS, CLONES] {
        let path = Path::new(MOUNT).join(dir);
        fs::create_dir(&path).with_context(|| format!("failed to create {}", path.display()))?;
    }
    nix::unistd::sync();
    mark(&dm, &OpRecord::new(0, "ready"))?;
    let _ = fs::write("/proc/sys/kernel/pid_max", "4194304");
    for (i, op) in OPS.iter().enumerate() {
        let n = i + 1;
        print_line(&format!(
            "cargo-ktstr init: operation {n} {} at {:.1} s\n",
            op.name(),
            start.elapsed().as_secs_f64()
        ));
        in_child(n as u32, || {
            if broken.is_some() {
                crate::cache::publish::skip_root_fsync();
            }
            let record = run_op(n, *op)?;
            mark(&dm, &record)
        })?;
    }
    unmount_disk(MOUNT);
    let status = dm.status(DM_NAME).unwrap_or_default();
    dm.remove(DM_NAME)?;
    nix::unistd::sync();
    Ok(format!(
        "{} operations on {fs} in {:.1} s; log-writes status: {status}",
        OPS.len(),
        start.elapsed().as_secs_f64()
    ))
}

/// Formats device `node` with `fs`.
pub(super) fn make_filesystem(fs: Filesystem, node: &str) -> Result<()> {
    let mkfs = formatter_path(fs);
    let out = Command::new(&mkfs)
        .args(fs.mkfs_args())
        .arg(node)
        .env_clear()
        .env("PATH", "/sbin:/bin")
        .output()
        .with_context(|| format!("failed to run `{mkfs}`"))?;
    ensure!(
        out.status.success(),
        "`{mkfs} {node}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Prints `record` and has log-writes mark the point it was printed at.
fn mark(dm: &DmControl, record: &OpRecord) -> Result<()> {
    dm.message(DM_NAME, &format!("mark {}", record.mark()))?;
    print_line(&record.render());
    Ok(())
}

/// Runs `f` in a child process with a pid no host process has, and waits.
pub(super) fn in_child(n: u32, f: impl FnOnce() -> Result<()>) -> Result<()> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};
    // Best effort: without it the pid is small, and only debris judging
    // on the host could differ.
    let _ = fs::write(
        "/proc/sys/kernel/ns_last_pid",
        (OP_PIDS + n * 16).to_string(),
    );
    // SAFETY: init is single-threaded here, so the child may run any code.
    match unsafe { fork() }.context("failed to fork")? {
        ForkResult::Child => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => {
                    print_line(&format!("cargo-ktstr init: operation {n} failed: {e:#}\n"));
                    1
                }
            };
            let _ = std::io::stdout().flush();
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            status => bail!("operation {n} failed ({status:?}); its error is above"),
        },
    }
}

pub(super) fn capacity(mib: u64) -> Result<Capacity> {
    Capacity::from_mib(mib).map_err(anyhow::Error::msg)
}

fn root() -> PathBuf {
    Path::new(MOUNT).join(TEMPLATES)
}

/// The cache at `root`, built into on the host.
pub(super) fn ensurer(root: &Path, force: bool) -> Ensurer<'_> {
    Ensurer::new(root, &HostMkfsBuilder).with_options(EnsureOptions {
        lock_timeout: Duration::from_secs(60),
        force,
        evict: false,
    })
}

/// Runs one operation; what it published and removed.
fn run_op(n: usize, op: Op) -> Result<OpRecord> {
    let mut record = OpRecord::new(n, op.name());
    let root = root();
    match op {
        Op::Publish(mib, force) => {
            let ensured = ensurer(&root, force).ensure(TEMPLATE_FS, capacity(mib)?)?;
            ensure!(ensured.built, "{} was not built", ensured.key);
            record.published.push(Published {
                name: ensured.key.to_string(),
                sha256: disk_hash(&ensured.path)?,
            });
        }
        Op::Clone(mib) => {
            let dest = Path::new(MOUNT).join(CLONES).join(format!("{n}.img"));
            let cap = capacity(mib)?;
            ensurer(&root, false).clone_to(TEMPLATE_FS, cap, &dest, Reflink::Auto)?;
        }
        Op::PerTest(mib) => {
            let image = PerTestImage::create(&ensurer(&root, false), TEMPLATE_FS, capacity(mib)?)?;
            drop(image);
        }
        Op::Kernel(replace) => record.kernels.push(publish_kernel(n, replace)?),
        Op::Debris(mib) => make_debris(&root, mib)?,
        Op::Clean | Op::Budget | Op::CleanAll => {
            let mode = match op {
                Op::CleanAll => CleanMode::All,
                _ => CleanMode::Debris,
            };
            let mut opts = CleanOptions::new(mode, false);
            if let Op::Budget = op {
                opts.budget = Budget {
                    max_size: Some(entries_bytes(&root)?.saturating_sub(1)),
                    ..Budget::default()
                };
            }
            let report = clean(&root, opts)?;
            ensure!(
                report.failed.is_empty(),
                "clean failed: {:?}",
                report.failed
            );
            record.removed = (report.removed.iter())
                .filter(|r| r.kind == ItemKind::Template)
                .map(|r| r.name.clone())
                .collect();
        }
    }
    Ok(record)
}

/// What the published images allocate.
fn entries_bytes(root: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in fs::read_dir(root).with_context(|| format!("failed to list {}", root.display()))? {
        let image = entry?.path().join(names::TEMPLATE_FILE);
        if let Ok(meta) = fs::metadata(&image) {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Publishes (or replaces) [`KERNEL_NAME`] as a kernel build does, with a
/// made-up image unique to operation `n`.
fn publish_kernel(n: usize, replace: bool) -> Result<Published> {
    let store = KernelStore::new(Path::new(MOUNT).join(KERNELS));
    let image = Path::new("/tmp").join(IMAGE_FILE);
    let bytes: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(31) as u8) ^ n as u8)
        .collect();
    fs::write(&image, &bytes).context("failed to write the made-up kernel")?;
    let config = Path::new("/tmp").join(CONFIG_FILE);
    fs::write(&config, format!("# operation {n}\n")).context("failed to write a config")?;
    let (scratch, _held) = store.create_scratch(KERNEL_NAME)?;
    let entry = crate::kernel::build::stage_files(
        &scratch,
        &[(image.clone(), IMAGE_FILE), (config, CONFIG_FILE)],
    )?;
    match replace {
        true => store.replace(&entry, KERNEL_NAME)?,
        false => store.publish(&entry, KERNEL_NAME)?,
    };
    fs::remove_dir_all(&scratch)
        .with_context(|| format!("failed to remove {}", scratch.display()))?;
    Ok(Published {
        name: KERNEL_NAME.into(),
        sha256: disk_hash(&image)?,
    })
}

/// Leaves what a writer killed mid-build leaves for the key of `mib` MiB.
fn make_debris(root: &Path, mib: u64) -> Result<()> {
    let key = Key::new(
        TEMPLATE_FS,
        capacity(mib)?,
        &fingerprint::fingerprint(TEMPLATE_FS)?,
    );
    let staging = root.join(names::staging_dir(&key, DEBRIS_PID));
    fs::create_dir(&staging).with_context(|| format!("failed to create {}", staging.display()))?;
    let half = vec![0x5a; 1 << 20];
    fs::write(staging.join(names::TEMPLATE_FILE), &half).context("failed to write debris")?;
    fs::write(root.join(names::in_flight(&key, DEBRIS_PID + 1)), &half)
        .context("failed to write debris")?;
    nix::unistd::sync();
    Ok(())
}
