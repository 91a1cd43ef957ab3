//! A guest that uses a per-test image the way a test would: the init mounts
//! the disk read-write, writes a file named for the test, reads it back and
//! reports. It is what `examples/harness.rs` boots through
//! [`crate::runner`], and a template for a harness's own guests.
//!
//! Host to guest: `ktstr.mode=probe ktstr.probe=<name> ktstr.disk=<fs>` on
//! the command line. Guest to host: one line,
//!
//! ```text
//! KTSTR_PROBE_RESULT ok=<yes|no> output=<escaped text>
//! ```
//!
//! The file is `/<name>` on the disk and holds [`probe_contents`]`(name)`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::formatter::filesystem::Filesystem;
use crate::guest::initramfs::Archive;
use crate::guest::initramfs::add_modules;
use crate::guest::protocol::{escape, quiet_unless_logged, unescape};
use crate::kernel::modules::{GUEST_NEEDS, guest_modules};
use crate::kernel::resolve::HostKernels;
use crate::kernel::stock::{GuestKernel, STOCK_CMDLINE};
use crate::runner::{DeviceDiscovery, GuestRunner, GuestSpec};

/// The command-line argument that selects this mode of the init.
pub const MODE_PARAM: &str = "ktstr.mode=probe";
/// The command-line parameter naming the test (and so the file).
pub const NAME_PARAM: &str = "ktstr.probe";
/// The command-line parameter naming the disk's filesystem.
pub const DISK_PARAM: &str = "ktstr.disk";
/// The marker that starts the result line.
pub const RESULT_MARKER: &str = "KTSTR_PROBE_RESULT";
/// What the probe writes into `/<name>`.
pub fn probe_contents(name: &str) -> String {
    format!("written by test {name} in its own guest\n")
}

/// A guest that boots `kernel` with `init` as PID 1 (a binary that calls
/// [`crate::init_if_guest`]) and `disk`, formatted with `fs`, as its disk,
/// to write and read back `/<name>`. `name` is letters, digits, `-` and `_`.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    /// The guest kernel.
    pub kernel: &'a Path,
    /// The guest's PID 1.
    pub init: &'a Path,
    /// The per-test image (its [`crate::PerTestImage::path`]).
    pub disk: &'a Path,
    /// The filesystem on it.
    pub fs: Filesystem,
    /// The test's name, and the file's.
    pub name: &'a str,
    /// How long the guest may run.
    pub timeout: Duration,
}

impl Probe<'_> {
    /// The guest to boot with `runner`.
    pub fn spec(&self, runner: &dyn GuestRunner) -> Result<GuestSpec> {
        ensure!(
            !self.name.is_empty()
                && self
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "a probe's name goes on the kernel command line: `{}` must be letters, digits, `-` \
             and `_`",
            self.name
        );
        let host = HostKernels::from_env();
        let (modules, devices, extra) =
            match GuestKernel::identify(self.kernel, &host.modules_root)? {
                GuestKernel::SelfContained(_) => (Vec::new(), DeviceDiscovery::CommandLine, ""),
                GuestKernel::Stock(stock) => {
                    let mut wanted = GUEST_NEEDS.to_vec();
                    wanted.push(self.fs.name());
                    (
                        guest_modules(&stock.modules_dir, &wanted, &stock.signatures)?,
                        DeviceDiscovery::Acpi,
                        STOCK_CMDLINE,
                    )
                }
            };
        let mut archive = Archive::with_init(self.init)?;
        add_modules(&mut archive, &modules)?;
        Ok(GuestSpec {
            kernel: self.kernel.to_owned(),
            initramfs: archive.finish()?,
            cmdline: format!(
                "console=ttyS0 {} panic=-1 {MODE_PARAM} {NAME_PARAM}={} {DISK_PARAM}={} {extra} {}",
                runner.reboot_arg(),
                self.name,
                self.fs,
                quiet_unless_logged()
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
            disks: vec![self.disk.to_owned()],
            memory_mib: crate::runner::DEFAULT_MEMORY_MIB,
            timeout: self.timeout,
            devices,
            vmlinux: None,
        })
    }
}

/// What the probe guest reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the file was written and read back intact.
    pub ok: bool,
    /// What the guest did, or why it failed.
    pub output: String,
}

impl ProbeResult {
    /// The last result line in a console transcript.
    pub fn from_console(console: &[u8]) -> Option<ProbeResult> {
        let text = String::from_utf8_lossy(console);
        text.lines().rev().find_map(|line| {
            let rest = line[line.find(RESULT_MARKER)?..]
                .strip_prefix(RESULT_MARKER)?
                .trim_end_matches('\r');
            let (ok, output) = rest.strip_prefix(" ok=")?.split_once(" output=")?;
            Some(ProbeResult {
                ok: match ok {
                    "yes" => true,
                    "no" => false,
                    _ => return None,
                },
                output: unescape(output),
            })
        })
    }

    /// The line the guest prints, newline included.
    pub fn render(&self) -> String {
        let ok = if self.ok { "yes" } else { "no" };
        format!(
            "{RESULT_MARKER} ok={ok} output={}\n",
            escape(self.output.as_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_round_trips_and_names_are_checked() {
        let result = ProbeResult {
            ok: false,
            output: "mount: no\nfilesystem".into(),
        };
        let console = format!("[ 1.0] x\n{}[ 1.1] reboot\n", result.render());
        assert_eq!(ProbeResult::from_console(console.as_bytes()), Some(result));
        assert_eq!(ProbeResult::from_console(b"nothing\n"), None);
        let probe = Probe {
            kernel: Path::new("/nonexistent"),
            init: Path::new("/nonexistent"),
            disk: Path::new("/nonexistent"),
            fs: Filesystem::Ext4,
            name: "a b",
            timeout: Duration::from_secs(1),
        };
        let runner = crate::runner::kvm::KvmRunner;
        let err = probe.spec(&runner).unwrap_err().to_string();
        assert!(err.contains("`a b` must be letters"), "{err}");
    }
}
