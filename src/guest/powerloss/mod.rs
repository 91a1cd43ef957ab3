//! The power-loss lane's recording guest: the cache's operations on a
//! filesystem whose every write dm-log-writes records, for the host to
//! replay to each point a power cut could leave ([`super::logwrites`]).
//!
//! Host to guest: `ktstr.mode=powerloss ktstr.disk=<fs>` on a stock
//! kernel's command line; disk 0 is the data disk (all zeros), disk 1 the
//! log. Init loads dm-mod and dm-log-writes, puts log-writes over the data
//! disk, makes `<fs>` on it and runs [`OPS`](crate::guest::init::powerloss::OPS) on a cache root in it
//! with the host formatter ([`crate::HostMkfsBuilder`]), each in a child
//! process whose pid no host process has, so the host's `clean` judges
//! the guest's debris by the pid rule as it would a dead writer's.
//!
//! After each operation returns, init sends log-writes the mark
//! `ktstr-op-<n>` and prints what the operation published and removed:
//!
//! ```text
//! KTSTR_POWERLOSS_OP {"n":1,"op":"publish","published":[{"name":"<key>","sha256":"…"}],…}
//! KTSTR_POWERLOSS_DONE ok=<yes|no> output=<escaped text>
//! ```
//!
//! With `ktstr.powerloss.flakey=1` the guest instead runs the failing-disk
//! scenarios of [`flakey`] on its one disk.
//!
//! With `ktstr.powerloss.break=root-fsync` the publish path skips its
//! fsync of the root after the rename, so the lane can show it catches
//! an entry lost to a power cut after `template build` said it was
//! published. Only this guest mode reads the switch.

pub(crate) mod flakey;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::initramfs::Archive;
use super::initramfs::add_modules;
use super::protocol::{escape, formatter_path, unescape};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::fingerprint::find_formatter;
use crate::kernel::modules::{GUEST_NEEDS, guest_modules};
use crate::kernel::stock::{STOCK_CMDLINE, StockKernel};
use crate::runner::{DeviceDiscovery, GuestSpec};

/// The command-line argument that selects this mode of the init.
pub(crate) const MODE_PARAM: &str = "ktstr.mode=powerloss";
/// The parameter that removes one fsync of the publish path.
pub(crate) const BREAK_PARAM: &str = "ktstr.powerloss.break";
/// The one fsync [`BREAK_PARAM`] can remove.
pub const BREAK_ROOT_FSYNC: &str = "root-fsync";
/// The marker of an operation's line.
pub(crate) const OP_MARKER: &str = "KTSTR_POWERLOSS_OP";
/// The marker of the closing line.
pub(crate) const DONE_MARKER: &str = "KTSTR_POWERLOSS_DONE";
/// The prefix of each operation's log-writes mark.
pub(crate) const MARK_PREFIX: &str = "ktstr-op-";
/// The modules the recording needs beyond the disk's: log-writes and
/// flakey (with dm-mod, their dependency), and what mounting the cache filesystem asks the crypto API
/// for (no modprobe in the guest to load it on demand).
const NEEDS: &[&str] = &["dm_log_writes", "dm_flakey", "crc32c_generic"];
/// The templates' filesystem: ext4's mkfs is the quickest under TCG.
pub(crate) const TEMPLATE_FS: Filesystem = Filesystem::Ext4;
/// The template root, relative to the cache filesystem.
pub const TEMPLATES: &str = "templates";
/// The kernel store, relative to the cache filesystem.
pub const KERNELS: &str = "kernels";
/// The kernel-store entry the run publishes.
pub const KERNEL_NAME: &str = "6.12.0-0000000000000001";

/// A name and the sha256 of its bytes, as an operation published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub name: String,
    pub sha256: String,
}

/// What one operation did, as the guest prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Its place in the run: its mark is `ktstr-op-<n>`.
    pub n: usize,
    /// What it did, for messages: `publish btrfs 256M`.
    pub op: String,
    /// Template entries it published (key, image hash).
    pub published: Vec<Published>,
    /// Template entries it removed (keys).
    pub removed: Vec<String>,
    /// Kernel-store entries it published (name, bzImage hash).
    pub kernels: Vec<Published>,
}

impl OpRecord {
    /// The `n`th operation, `op`, before it has done anything.
    pub fn new(n: usize, op: &str) -> Self {
        OpRecord {
            n,
            op: op.to_owned(),
            published: Vec::new(),
            removed: Vec::new(),
            kernels: Vec::new(),
        }
    }

    /// The line the guest prints, newline included.
    pub fn render(&self) -> String {
        let json = serde_json::to_string(self).expect("a record serializes");
        format!("{OP_MARKER} {json}\n")
    }

    /// The mark log-writes holds for it.
    pub fn mark(&self) -> String {
        format!("{MARK_PREFIX}{}", self.n)
    }

    /// Every record in a console transcript, in order.
    pub fn all_from_console(console: &[u8]) -> Vec<OpRecord> {
        String::from_utf8_lossy(console)
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find(OP_MARKER)? + OP_MARKER.len()..];
                serde_json::from_str(rest.trim()).ok()
            })
            .collect()
    }
}

/// The closing line: whether every operation ran, and what went wrong.
pub(crate) fn render_done(ok: bool, output: &str) -> String {
    let ok = if ok { "yes" } else { "no" };
    format!(
        "{DONE_MARKER} ok={ok} output={}\n",
        escape(output.as_bytes())
    )
}

/// The closing line in a console transcript: (ok, output).
pub fn done_from_console(console: &[u8]) -> Option<(bool, String)> {
    let text = String::from_utf8_lossy(console);
    text.lines().rev().find_map(|line| {
        let rest = line[line.find(DONE_MARKER)?..]
            .strip_prefix(DONE_MARKER)?
            .trim_end_matches('\r');
        let (ok, output) = rest.strip_prefix(" ok=")?.split_once(" output=")?;
        Some((ok == "yes", unescape(output)))
    })
}

/// One recording: `kernel` (a stock kernel with its modules) boots with
/// `init` as PID 1, `data` and `log` as its disks, and records the run on
/// `fs`.
#[derive(Debug, Clone)]
pub struct Recording<'a> {
    /// The Debian kernel, with dm-log-writes as a module.
    pub kernel: &'a StockKernel,
    /// The binary that runs as PID 1 (this crate's init).
    pub init: &'a Path,
    /// The disk the cache filesystem is made on.
    pub data: &'a Path,
    /// The log disk; `None` runs the failing-disk scenarios
    /// ([`flakey`]) on `data` instead.
    pub log: Option<&'a Path>,
    /// The cache filesystem.
    pub fs: Filesystem,
    /// [`BREAK_ROOT_FSYNC`] to remove that fsync, else `None`.
    pub broken: Option<&'a str>,
    /// QEMU is stopped when it passes.
    pub timeout: Duration,
}

impl Recording<'_> {
    /// The guest to boot; `reboot` is the runner's reset argument.
    pub fn spec(&self, reboot: &str) -> Result<GuestSpec> {
        let mut wanted = GUEST_NEEDS.to_vec();
        wanted.extend(NEEDS);
        wanted.push(self.fs.name());
        let modules = guest_modules(&self.kernel.modules_dir, &wanted, &self.kernel.signatures)?;
        let mut archive = Archive::with_init(self.init)?;
        // The cache filesystem's formatter, and ext4's for the templates.
        let mut formatters = vec![self.fs];
        if self.fs != TEMPLATE_FS {
            formatters.push(TEMPLATE_FS);
        }
        for fs in formatters {
            archive.program(&formatter_path(fs), &find_formatter(fs)?)?;
        }
        if self.log.is_none() && self.fs == Filesystem::Xfs {
            let sbin = [Path::new("/usr/sbin"), Path::new("/sbin")];
            let repair = crate::host::find_program_in("xfs_repair", None, &sbin)
                .context("xfs_repair is not installed (the xfsprogs package has it)")?;
            archive.program(flakey::XFS_REPAIR, &repair)?;
        }
        archive.mke2fs_conf()?;
        add_modules(&mut archive, &modules)?;
        let broken = self
            .broken
            .map(|b| format!("{BREAK_PARAM}={b}"))
            .unwrap_or_default();
        let flakey = match self.log {
            Some(_) => String::new(),
            None => format!("{}=1", flakey::FLAKEY_PARAM),
        };
        Ok(GuestSpec {
            kernel: self.kernel.image.clone(),
            initramfs: archive.finish().context("failed to finish the initramfs")?,
            cmdline: format!(
                "console=ttyS0 {reboot} panic=-1 {MODE_PARAM} {}={} {broken} {flakey} {STOCK_CMDLINE} quiet",
                super::checks::DISK_PARAM,
                self.fs
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
            disks: [Some(self.data), self.log]
                .into_iter()
                .flatten()
                .map(Path::to_owned)
                .collect(),
            memory_mib: 1024,
            timeout: self.timeout,
            devices: DeviceDiscovery::Acpi,
            vmlinux: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_the_closing_line_round_trip_through_a_noisy_console() {
        let mut a = OpRecord::new(1, "publish");
        a.published.push(Published {
            name: "ext4-16m-0123456789abcdef".into(),
            sha256: "ab".repeat(32),
        });
        let b = OpRecord::new(2, "clean");
        let console = format!(
            "[ 1.0] x\r\n{}[ 2.0] y{}\r\n{}",
            a.render(),
            b.render(),
            render_done(false, "mkfs failed:\nno space")
        );
        assert_eq!(OpRecord::all_from_console(console.as_bytes()), [a, b]);
        assert_eq!(
            done_from_console(console.as_bytes()),
            Some((false, "mkfs failed:\nno space".into()))
        );
        assert_eq!(OpRecord::new(7, "x").mark(), "ktstr-op-7");
    }
}
