//! What the host and the template guest tell each other.
//!
//! Host to guest: the kernel command line carries `ktstr.fs=<fs>[,<fs>...]`,
//! one filesystem per disk in disk order (the kernel passes a dotted
//! parameter it does not know on to nobody, so init reads it from
//! /proc/cmdline). The formatter is `/sbin/mkfs.<fs>` in the initramfs and
//! disk `i` is the virtio-blk disk with serial `disk<i>`
//! ([`crate::guest::init::disks`]).
//!
//! Guest to host: one line on the console per disk,
//!
//! ```text
//! KTSTR_TEMPLATE_RESULT disk=<i> status=<exit status> magic=<yes|no> output=<escaped text>
//! ```
//!
//! or one line without `disk=` that stands for every disk, when init failed
//! before it formatted any.
//!
//! `status` is the formatter's exit code (128 + signal when it was killed,
//! 127 when init could not run it at all); `magic` says whether init found
//! the filesystem's superblock magic on /dev/vda after a sync; `output` is
//! the formatter's output (or init's own error), escaped onto one line:
//! backslash, newline, carriage return and tab as `\\ \n \r \t`, any other
//! byte outside printable ASCII as `\xNN`. A build succeeded when
//! `status=0 magic=yes`.
//!
//! Verification: `ktstr.verify=mount` (or `=hash`) on the command line has
//! init, after mkfs and the magic check, mount `/dev/vda` read-only with the
//! guest's own kernel (btrfs `ro`, xfs `ro,norecovery`, ext4 `ro,noload`:
//! options that replay no log and write nothing), read its statfs and
//! unmount it. `=hash` also hashes the whole disk before the mount and after
//! the unmount, and fails when the two differ (the test that proves the
//! image stays what mkfs wrote). The result line then carries one more
//! field, before `output`:
//!
//! ```text
//! KTSTR_TEMPLATE_RESULT status=0 magic=yes verified=<blocks>x<block size> output=...
//! KTSTR_TEMPLATE_RESULT status=0 magic=yes verified=no output=<why>
//! ```
//!
//! A build that did not ask prints the line without it, exactly as before,
//! so parsers that predate the field still read every unverified build.

use std::fmt::Write as _;

use crate::formatter::filesystem::Filesystem;

/// The marker that starts the result line.
pub(crate) const RESULT_MARKER: &str = "KTSTR_TEMPLATE_RESULT";
/// The command-line parameter naming the filesystems to format.
pub(crate) const FS_PARAM: &str = "ktstr.fs";
/// Where the initramfs puts the init (this binary), and so the name the
/// kernel runs it by.
pub(crate) const INIT_PATH: &str = "/init";
/// The block device of a guest with one disk.
pub(crate) const DISK: &str = "/dev/vda";
/// The command-line parameter asking init to verify the new filesystem.
pub(crate) const VERIFY_PARAM: &str = "ktstr.verify";
/// The most formatter output a result line carries.
const OUTPUT_LIMIT: usize = 4096;

/// The formatter's path inside the initramfs: the name mkfs was installed
/// under, since mke2fs picks its filesystem from the name it is run by.
pub(crate) fn formatter_path(fs: Filesystem) -> String {
    format!("/sbin/{}", fs.mkfs())
}

/// The kernel command line of a template guest; `reboot` is how the
/// runner wants the guest to reset (`reboot=t` or `reboot=k`).
pub fn cmdline(fs: Filesystem, reboot: &str) -> String {
    cmdline_many(&[fs], reboot)
}

/// `quiet`, unless the guest console is logged in full (at -vv, debug
/// level): then the kernel's boot messages too. Each console byte is a port
/// write the VMM handles; nested under TCG, twenty builds took 63 s quiet
/// and 95 s with them. Errors and the init's result lines print either way.
pub(crate) fn quiet_unless_logged() -> &'static str {
    match tracing::enabled!(tracing::Level::DEBUG) {
        true => "",
        false => "quiet",
    }
}

/// Whether and how the guest checks the filesystem it made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// No check beyond the superblock magic.
    #[default]
    Off,
    /// Mount read-only, statfs, unmount.
    Mount,
    /// [`Verify::Mount`], hashing the whole disk before and after.
    Hash,
}

impl Verify {
    /// The command-line argument that asks for it; empty for [`Verify::Off`].
    pub fn param(self) -> String {
        match self {
            Verify::Off => String::new(),
            Verify::Mount => format!("{VERIFY_PARAM}=mount"),
            Verify::Hash => format!("{VERIFY_PARAM}=hash"),
        }
    }

    /// The verification a kernel command line asks for.
    pub fn from_cmdline(cmdline: &str) -> Verify {
        let value = cmdline
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix(VERIFY_PARAM)?.strip_prefix('='));
        match value {
            None => Verify::Off,
            Some("hash") => Verify::Hash,
            // Any other value asks for a check: a typo must not skip it.
            Some(_) => Verify::Mount,
        }
    }
}

/// What the read-only mount found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The mount failed (or the disk changed under it); `output` says why.
    No,
    /// Mounted read-only; statfs counted `blocks` of `block_size` bytes.
    Mounted {
        /// statfs `f_blocks`.
        blocks: u64,
        /// statfs `f_bsize`.
        block_size: u64,
    },
}

/// The kernel command line of a template guest that formats disk `i` with
/// `filesystems[i]`.
pub(crate) fn cmdline_many(filesystems: &[Filesystem], reboot: &str) -> String {
    let names: Vec<&str> = filesystems.iter().map(|fs| fs.name()).collect();
    format!(
        "console=ttyS0 {reboot} panic=-1 {FS_PARAM}={}",
        names.join(",")
    )
}

/// The filesystems named on a kernel command line, one per disk.
pub(crate) fn filesystems_from_cmdline(cmdline: &str) -> Result<Vec<Filesystem>, String> {
    let value = cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(FS_PARAM)?.strip_prefix('='))
        .ok_or_else(|| format!("no {FS_PARAM}= on the kernel command line `{cmdline}`"))?;
    value.split(',').map(str::parse).collect()
}

/// What the guest reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateResult {
    /// The formatter's exit status.
    pub status: i32,
    /// Whether the superblock magic was on the disk after a sync.
    pub magic: bool,
    /// The read-only mount's result; `None` when none was asked for (or
    /// the guest predates the field).
    pub verified: Option<Verified>,
    /// The formatter's output, or init's own error.
    pub output: String,
}

impl TemplateResult {
    /// Formatted with the magic in place (verification is judged apart).
    pub fn succeeded(&self) -> bool {
        self.status == 0 && self.magic
    }

    /// The line the guest prints for disk `disk`, newline included.
    pub fn render_for_disk(&self, disk: usize) -> String {
        let line = self.render();
        let rest = line.strip_prefix(RESULT_MARKER).unwrap_or(&line);
        format!("{RESULT_MARKER} disk={disk}{rest}")
    }

    /// The line the guest prints for every disk at once, newline included.
    pub fn render(&self) -> String {
        let magic = if self.magic { "yes" } else { "no" };
        let mut output = self.output.as_bytes();
        if output.len() > OUTPUT_LIMIT {
            // Keep the end: a formatter's last words say why it failed.
            output = &output[output.len() - OUTPUT_LIMIT..];
        }
        let verified = match self.verified {
            None => String::new(),
            Some(Verified::No) => " verified=no".to_owned(),
            Some(Verified::Mounted { blocks, block_size }) => {
                format!(" verified={blocks}x{block_size}")
            }
        };
        format!(
            "{RESULT_MARKER} status={} magic={magic}{verified} output={}\n",
            self.status,
            escape(output)
        )
    }

    /// The last result line in a console transcript, for whichever disk.
    pub fn from_console(console: &[u8]) -> Option<TemplateResult> {
        Self::all_from_console(console).pop().map(|(_, r)| r)
    }

    /// The result for disk `disk`: its last line, else the last line that
    /// stands for every disk.
    pub fn for_disk(console: &[u8], disk: usize) -> Option<TemplateResult> {
        let all = Self::all_from_console(console);
        let last = |want: Option<usize>| {
            let found = all.iter().rev().find(|(d, _)| *d == want);
            found.map(|(_, r)| r.clone())
        };
        last(Some(disk)).or_else(|| last(None))
    }

    /// Every result line, with the disk it names (`None`: every disk).
    fn all_from_console(console: &[u8]) -> Vec<(Option<usize>, TemplateResult)> {
        let text = String::from_utf8_lossy(console);
        text.lines()
            .filter_map(|line| Self::parse(&line[line.find(RESULT_MARKER)?..]))
            .collect()
    }

    fn parse(line: &str) -> Option<(Option<usize>, TemplateResult)> {
        let rest = line.strip_prefix(RESULT_MARKER)?.trim_end_matches('\r');
        let (disk, rest) = match rest.strip_prefix(" disk=") {
            Some(rest) => {
                let (disk, rest) = rest.split_once(' ')?;
                (Some(disk.parse().ok()?), format!(" {rest}"))
            }
            None => (None, rest.to_owned()),
        };
        let rest = rest.strip_prefix(" status=")?;
        let (status, rest) = rest.split_once(' ')?;
        let (magic, mut rest) = rest.strip_prefix("magic=")?.split_once(' ')?;
        let mut verified = None;
        if let Some(after) = rest.strip_prefix("verified=") {
            let (value, after) = after.split_once(' ')?;
            verified = Some(match value {
                "no" => Verified::No,
                _ => {
                    let (blocks, block_size) = value.split_once('x')?;
                    Verified::Mounted {
                        blocks: blocks.parse().ok()?,
                        block_size: block_size.parse().ok()?,
                    }
                }
            });
            rest = after;
        }
        let output = rest.strip_prefix("output=")?;
        let result = TemplateResult {
            status: status.parse().ok()?,
            magic: match magic {
                "yes" => true,
                "no" => false,
                _ => return None,
            },
            verified,
            output: unescape(output),
        };
        Some((disk, result))
    }
}

pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

pub(crate) fn unescape(s: &str) -> String {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b'r') => bytes.push(b'\r'),
            Some(b't') => bytes.push(b'\t'),
            Some(b'x') => {
                let hex: Vec<u8> = it.by_ref().take(2).collect();
                let parsed = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                bytes.push(parsed.unwrap_or(b'?'));
            }
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_round_trips_through_a_noisy_console() {
        let result = TemplateResult {
            status: 1,
            magic: false,
            verified: None,
            output: "mkfs.btrfs: error\n\tpath \\dev\\vda: \u{1b}[1m héllo\r\n".into(),
        };
        let line = result.render();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.is_ascii());
        let console =
            format!("[    0.1] booting\r\n[    0.2] x{line}\r\n[    0.3] reboot: Restarting\r\n");
        assert_eq!(
            TemplateResult::from_console(console.as_bytes()),
            Some(result)
        );
    }

    #[test]
    fn success_needs_status_zero_and_magic() {
        let ok = TemplateResult {
            status: 0,
            magic: true,
            verified: None,
            output: String::new(),
        };
        assert!(ok.succeeded());
        assert_eq!(
            ok.render(),
            "KTSTR_TEMPLATE_RESULT status=0 magic=yes output=\n"
        );
        assert!(
            !TemplateResult {
                magic: false,
                ..ok.clone()
            }
            .succeeded()
        );
        assert!(!TemplateResult { status: 2, ..ok }.succeeded());
    }

    #[test]
    fn no_or_garbled_line_is_none() {
        assert_eq!(
            TemplateResult::from_console(b"Kernel panic - not syncing\n"),
            None
        );
        assert_eq!(
            TemplateResult::from_console(b"KTSTR_TEMPLATE_RESULT status=x magic=yes output=\n"),
            None
        );
    }

    #[test]
    fn long_output_keeps_its_end() {
        let output = format!("{}the reason", "x".repeat(10_000));
        let line = TemplateResult {
            status: 1,
            magic: false,
            verified: None,
            output,
        }
        .render();
        assert!(line.len() < OUTPUT_LIMIT + 100);
        assert!(
            TemplateResult::from_console(line.as_bytes())
                .unwrap()
                .output
                .ends_with("the reason")
        );
    }

    #[test]
    fn the_verified_field_round_trips_and_its_absence_is_the_old_line() {
        for verified in [
            Some(Verified::No),
            Some(Verified::Mounted {
                blocks: 65536,
                block_size: 4096,
            }),
            None,
        ] {
            let result = TemplateResult {
                status: 0,
                magic: true,
                verified,
                output: "done verified=no".into(),
            };
            let line = result.render();
            assert_eq!(TemplateResult::from_console(line.as_bytes()), Some(result));
        }
        let mounted = TemplateResult {
            status: 0,
            magic: true,
            verified: Some(Verified::Mounted {
                blocks: 2,
                block_size: 512,
            }),
            output: String::new(),
        };
        assert_eq!(
            mounted.render(),
            "KTSTR_TEMPLATE_RESULT status=0 magic=yes verified=2x512 output=\n"
        );
        assert_eq!(
            TemplateResult::from_console(
                b"KTSTR_TEMPLATE_RESULT status=0 magic=yes verified=2x output=\n"
            ),
            None
        );
    }

    #[test]
    fn verification_comes_from_the_command_line() {
        assert_eq!(
            Verify::from_cmdline("console=ttyS0 ktstr.fs=xfs"),
            Verify::Off
        );
        for v in [Verify::Mount, Verify::Hash] {
            let line = format!("{} {}", cmdline(Filesystem::Xfs, "reboot=t"), v.param());
            assert_eq!(Verify::from_cmdline(&line), v);
        }
        assert_eq!(Verify::from_cmdline("ktstr.verify=yes"), Verify::Mount);
        assert_eq!(Verify::Off.param(), "");
    }

    #[test]
    fn the_filesystems_come_from_the_command_line() {
        for fs in Filesystem::ALL {
            assert_eq!(
                filesystems_from_cmdline(&cmdline(fs, "reboot=t")),
                Ok(vec![fs])
            );
        }
        let all = cmdline_many(&Filesystem::ALL, "reboot=k");
        assert!(all.ends_with(" ktstr.fs=btrfs,xfs,ext4"), "{all}");
        assert_eq!(filesystems_from_cmdline(&all).unwrap(), Filesystem::ALL);
        assert!(
            filesystems_from_cmdline("console=ttyS0")
                .unwrap_err()
                .contains("ktstr.fs=")
        );
        assert!(filesystems_from_cmdline("ktstr.fs=zfs").is_err());
        assert!(filesystems_from_cmdline("ktstr.fs=btrfs,").is_err());
        assert!(filesystems_from_cmdline("ktstr.fsx=btrfs").is_err());
    }

    #[test]
    fn each_disk_gets_its_own_line_and_a_line_for_all_stands_for_each() {
        let result = |status| TemplateResult {
            status,
            magic: status == 0,
            verified: None,
            output: format!("mkfs {status}"),
        };
        let console = format!(
            "{}noise\r\n{}",
            result(0).render_for_disk(1),
            result(3).render_for_disk(0)
        );
        assert!(console.starts_with("KTSTR_TEMPLATE_RESULT disk=1 status=0 magic=yes"));
        let console = console.as_bytes();
        assert_eq!(TemplateResult::for_disk(console, 0), Some(result(3)));
        assert_eq!(TemplateResult::for_disk(console, 1), Some(result(0)));
        assert_eq!(TemplateResult::for_disk(console, 2), None);
        let failed = result(127).render();
        assert_eq!(
            TemplateResult::for_disk(failed.as_bytes(), 2),
            Some(result(127))
        );
    }
}
