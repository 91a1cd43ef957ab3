//! The smallest capacity each formatter accepts, by the version it prints.
//!
//! A formatter refuses a device under its own floor, and here it would do so
//! in the guest, after a boot. So the floor is known before any work, from a
//! table keyed by the version the fingerprint query already reads
//! ([`crate::formatter::fingerprint`]); the host never formats a backing file to
//! find it. The rows are the formatters' default features on a sparse file,
//! measured here (the unit test below measures the installed ones again):
//!
//! | formatter | from version | refuses below |
//! | --- | --- | --- |
//! | mkfs.btrfs | btrfs-progs 6.2 | 114,294,784 bytes (109 MiB) |
//! | mkfs.xfs | xfsprogs 5.19 (measured with 6.1.0) | 300 MiB |
//! | mkfs.ext4 | e2fsprogs 1.47.0 | 106,496 bytes, under the 16 MiB every key needs |
//!
//! A row holds from its version until the next row. A version older than
//! every row, or one that cannot be read, gets the largest minimum the table
//! knows for that formatter: refusing a size an old formatter might take is
//! one clear message at once, while letting through one it refuses costs a
//! guest boot before the same refusal.

use std::cmp::Ordering;
use std::fmt;

use super::capacity::Capacity;
use super::filesystem::Filesystem;

const MIB: u64 = 1 << 20;

/// (filesystem, first version, smallest device in bytes), oldest first.
const TABLE: &[(Filesystem, &str, u64)] = &[
    (Filesystem::Btrfs, "6.2", 114_294_784),
    (Filesystem::Xfs, "5.19", 300 * MIB),
    (Filesystem::Ext4, "1.47.0", 106_496),
];

/// A formatter version: its dotted numbers, `6.2` or `1.47.0`.
#[derive(Debug, Clone)]
pub struct Version(Vec<u32>);

impl Version {
    /// Reads `6.2` or `v6.2`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let parts: Option<Vec<u32>> = text.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| p.len() >= 2).map(Version)
    }

    /// The version in a formatter's version output: its first word of
    /// dotted numbers (`mkfs.btrfs, part of btrfs-progs v6.2`, `mkfs.xfs
    /// version 6.1.0`, `mke2fs 1.47.0 (5-Feb-2023)`).
    pub fn from_output(output: &str) -> Option<Version> {
        output
            .split_whitespace()
            .map(|word| word.trim_end_matches([',', ';', ':']))
            .find_map(Version::parse)
    }
}

impl Ord for Version {
    /// Missing parts count as zero: `6.2` is `6.2.0`.
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.0.len().max(other.0.len());
        let part = |v: &Version, i: usize| v.0.get(i).copied().unwrap_or(0);
        (0..len)
            .map(|i| part(self, i).cmp(&part(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// A formatter's smallest device and where the figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minimum {
    pub bytes: u64,
    /// The table row's version, e.g. `btrfs-progs 6.2`.
    pub row: String,
    /// Whether the installed version was found in the table (else the
    /// largest known minimum stands in).
    pub known: bool,
}

impl Minimum {
    /// The smallest whole number of MiB a key may ask for: the formatter's
    /// floor, and never under the 16 MiB every key needs.
    pub(crate) fn mib(&self) -> u64 {
        self.bytes.div_ceil(MIB).max(Capacity::MIN_MIB)
    }
}

/// `fs`'s formatter minimum for the `version` it printed.
pub(crate) fn minimum(fs: Filesystem, version: Option<&Version>) -> Minimum {
    let rows: Vec<(Version, u64)> = TABLE
        .iter()
        .filter(|(f, ..)| *f == fs)
        .map(|(_, v, bytes)| (Version::parse(v).expect("a table version"), *bytes))
        .collect();
    let row = |(v, bytes): &(Version, u64), known| Minimum {
        bytes: *bytes,
        row: format!("{} {v}", fs.package()),
        known,
    };
    let applies = version.and_then(|have| rows.iter().rev().find(|(from, _)| from <= have));
    match applies {
        Some(found) => row(found, true),
        None => {
            let largest = rows.iter().max_by_key(|(_, b)| *b).expect("a row per fs");
            row(largest, false)
        }
    }
}

/// Refuses `capacity` when `fs`'s installed formatter (which printed
/// `version`) would refuse a device that small; the message gives the
/// minimum and the version.
pub(crate) fn check(
    fs: Filesystem,
    capacity: Capacity,
    version: Option<&Version>,
) -> Result<(), String> {
    let min = minimum(fs, version);
    if capacity.mib() >= min.mib() {
        return Ok(());
    }
    let installed = match version {
        Some(v) if min.known => format!("{} {v}", fs.package()),
        Some(v) => format!(
            "{} {v}, a version this tool has no figure for, so {}'s is assumed",
            fs.package(),
            min.row
        ),
        None => format!(
            "{} of a version that could not be read, so {}'s is assumed",
            fs.package(),
            min.row
        ),
    };
    Err(format!(
        "{fs} needs at least {} MiB: {} ({installed}) refuses a device under {} bytes, \
         and {capacity} was asked for; pass --capacity {}M or more",
        min.mib(),
        fs.mkfs(),
        min.bytes,
        min.mib()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_are_read_from_each_formatters_own_output() {
        let outputs = [
            ("mkfs.btrfs, part of btrfs-progs v6.2\n", "6.2"),
            ("mkfs.xfs version 6.1.0\n", "6.1.0"),
            (
                "mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n",
                "1.47.0",
            ),
        ];
        for (output, want) in outputs {
            assert_eq!(Version::from_output(output), Some(v(want)), "{output}");
        }
        assert_eq!(Version::from_output("mkfs.btrfs, no version here"), None);
        assert!(v("6.2") == v("6.2.0") && v("6.10") > v("6.2") && v("5.19") < v("6.1.0"));
    }

    #[test]
    fn the_installed_debian_12_formatters_have_their_measured_minimums() {
        let btrfs = minimum(Filesystem::Btrfs, Some(&v("6.2")));
        assert_eq!(
            (btrfs.bytes, btrfs.mib(), btrfs.known),
            (114_294_784, 109, true)
        );
        let xfs = minimum(Filesystem::Xfs, Some(&v("6.1.0")));
        assert_eq!((xfs.mib(), xfs.known), (300, true));
        let ext4 = minimum(Filesystem::Ext4, Some(&v("1.47.0")));
        assert_eq!((ext4.bytes, ext4.mib()), (106_496, 16));
    }

    #[test]
    fn an_unknown_version_gets_the_largest_known_minimum() {
        // Newer than every row: the newest row holds.
        assert!(minimum(Filesystem::Xfs, Some(&v("6.8"))).known);
        // Older than every row, or unreadable: the largest known, said so.
        for version in [Some(v("5.10")), None] {
            let min = minimum(Filesystem::Xfs, version.as_ref());
            assert_eq!((min.mib(), min.known), (300, false));
        }
    }

    #[test]
    fn a_small_capacity_is_refused_with_the_minimum_and_the_version() {
        let cap = |mib| Capacity::from_mib(mib).unwrap();
        let err = check(Filesystem::Btrfs, cap(64), Some(&v("6.2"))).unwrap_err();
        for part in [
            "at least 109 MiB",
            "btrfs-progs 6.2",
            "114294784",
            "--capacity 109M",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(check(Filesystem::Btrfs, cap(108), Some(&v("6.2"))).is_err());
        assert!(check(Filesystem::Btrfs, cap(109), Some(&v("6.2"))).is_ok());
        assert!(check(Filesystem::Xfs, cap(299), Some(&v("6.1.0"))).is_err());
        assert!(check(Filesystem::Xfs, cap(300), Some(&v("6.1.0"))).is_ok());
        assert!(check(Filesystem::Ext4, cap(16), Some(&v("1.47.0"))).is_ok());
        let err = check(Filesystem::Xfs, cap(64), None).unwrap_err();
        assert!(
            err.contains("could not be read") && err.contains("xfsprogs 5.19"),
            "{err}"
        );
    }

    /// The table against the installed formatters themselves, on sparse files
    /// in a temporary directory: each accepts its minimum and refuses one
    /// block less. (The product never does this; it reads the table.)
    #[test]
    fn the_table_matches_the_installed_formatters() {
        let dir = tempfile::tempdir().unwrap();
        for fs in Filesystem::ALL {
            let Ok(formatter) = crate::formatter::fingerprint::formatter(fs) else {
                assert!(std::env::var_os("CI").is_none(), "{} is missing", fs.mkfs());
                eprintln!("skipped {fs}: {} is not installed", fs.mkfs());
                continue;
            };
            let version = formatter.version.expect("a readable version");
            let min = minimum(fs, Some(&version));
            assert!(min.known, "{fs} {version} is not in the table");
            let path = dir.path().join(fs.name());
            let formats = |len: u64| {
                let _ = std::fs::remove_file(&path);
                std::fs::File::create(&path).unwrap().set_len(len).unwrap();
                let mkfs = crate::formatter::fingerprint::find_formatter(fs).unwrap();
                std::process::Command::new(mkfs)
                    .args(fs.mkfs_args())
                    .arg(&path)
                    .output()
                    .unwrap()
                    .status
                    .success()
            };
            assert!(formats(min.bytes), "{fs} {version} refuses {}", min.bytes);
            assert!(
                !formats(min.bytes - 4096),
                "{fs} {version} takes less than {}",
                min.bytes
            );
        }
    }
}
