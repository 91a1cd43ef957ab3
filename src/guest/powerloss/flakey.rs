//! The failing-disk half of the lane: dm-flakey under the cache.
//!
//! With `ktstr.powerloss.flakey=1` beside [`super::MODE_PARAM`], disk 0 is
//! the only disk. Init puts a device-mapper device over it whose table is
//! `linear` while the disk is healthy and `flakey` with no up interval and
//! `error_writes` or `drop_writes` while it fails ([`Fault`]), switched by a
//! table reload. It makes the cache filesystem on it and runs each of
//! [`SCENARIOS`]: the disk fails, one operation runs (a publish with the host
//! formatter, or a `template clone`), the disk heals, the filesystem is
//! unmounted, the caches dropped and the filesystem mounted again (ext4 and
//! xfs shut down on a write error; an xfs that refuses the mount is
//! repaired with `xfs_repair -L` first), and the tool's lookup says what the
//! cache holds; then the operation runs again on the healthy disk. Each
//! scenario ends with one console line the host judges:
//!
//! ```text
//! KTSTR_FLAKEY_STEP {"n":1,"action":"publish","fault":"error_writes",…}
//! ```

use serde::{Deserialize, Serialize};

/// The switch, beside [`super::MODE_PARAM`], that selects this run.
pub(crate) const FLAKEY_PARAM: &str = "ktstr.powerloss.flakey";
/// The marker of a scenario's line.
pub(crate) const STEP_MARKER: &str = "KTSTR_FLAKEY_STEP";
/// Where the initramfs holds xfs_repair, for an xfs the mount refuses.
pub(crate) const XFS_REPAIR: &str = "/sbin/xfs_repair";
/// How the disk fails: dm-flakey's feature of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Every write and flush fails with EIO.
    ErrorWrites,
    /// Every write and flush is reported done and thrown away.
    DropWrites,
}

impl Fault {
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Fault::ErrorWrites => "error_writes",
            Fault::DropWrites => "drop_writes",
        }
    }
}

/// What runs on the failing disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `template build` of an ext4 template of this many MiB.
    Publish,
    /// `template clone` of the ext4 template of this many MiB, published.
    Clone,
}

/// One scenario: `action` on a template of `mib` MiB while the disk fails
/// with `fault`; without `readback`, a publish skips reading its image
/// back ([`crate::store::readback`]), to show what that check prevents.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub action: Action,
    pub fault: Fault,
    pub mib: u64,
    pub readback: bool,
}

/// Each fault under each action, then a publish with dropped writes and no
/// read-back; the clones use the first publish's key, each publish a key
/// of its own, so each starts from a miss.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        action: Action::Publish,
        fault: Fault::ErrorWrites,
        mib: 16,
        readback: true,
    },
    Scenario {
        action: Action::Clone,
        fault: Fault::ErrorWrites,
        mib: 16,
        readback: true,
    },
    Scenario {
        action: Action::Publish,
        fault: Fault::DropWrites,
        mib: 20,
        readback: true,
    },
    Scenario {
        action: Action::Clone,
        fault: Fault::DropWrites,
        mib: 16,
        readback: true,
    },
    Scenario {
        action: Action::Publish,
        fault: Fault::DropWrites,
        mib: 24,
        readback: false,
    },
];

/// What is at a path once the disk is healthy and mounted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Found {
    /// Nothing there.
    Absent,
    /// The lookup serves it (an entry), or it exists (a clone): its sha256.
    Valid(String),
    /// The lookup takes it for a torn entry, and why.
    Invalid(String),
    /// The lookup takes it for a user's directory, and why.
    Foreign(String),
    /// The lookup or the read failed.
    Error(String),
}

/// What one scenario found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its place in the run.
    pub n: usize,
    /// The operation: a publish or a clone.
    pub action: Action,
    /// How the disk failed during it.
    pub fault: Fault,
    /// Whether a publish read its image back.
    pub readback: bool,
    /// The template's key.
    pub key: String,
    /// The cache root, or the clone's destination.
    pub target: String,
    /// The operation's error on the failing disk, as the tool prints it.
    pub error: Option<String>,
    /// What the operation said it made (sha256), when it said it succeeded.
    pub built: Option<String>,
    /// When the healed disk's filesystem would not mount: why, and the
    /// repair that let it (xfs).
    pub repaired: Option<String>,
    /// The key's entry after the disk healed and the remount.
    pub entry: Found,
    /// A clone's destination after the disk healed and the remount.
    pub dest: Option<Found>,
    /// The template root's other names then (other entries, `.locks`,
    /// what the failed run left), to read beside a failure.
    pub others: Vec<String>,
    /// The same operation on the healthy disk: its error, if it failed.
    pub next_error: Option<String>,
    /// What it made (sha256).
    pub next_built: Option<String>,
    /// And what the lookup (or the clone's file) shows after it.
    pub next: Found,
}

impl StepRecord {
    /// The line the guest prints, newline included.
    pub fn render(&self) -> String {
        let json = serde_json::to_string(self).expect("a record serializes");
        format!("{STEP_MARKER} {json}\n")
    }

    /// Every record in a console transcript, in order.
    pub fn all_from_console(console: &[u8]) -> Vec<StepRecord> {
        String::from_utf8_lossy(console)
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find(STEP_MARKER)? + STEP_MARKER.len()..];
                serde_json::from_str(rest.trim()).ok()
            })
            .collect()
    }
}
