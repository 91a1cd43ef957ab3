//! A template's key, `<fs>-<MiB>m-<fingerprint>`, and the capacity in it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::filesystem::Filesystem;
use crate::units;

const MIB: u64 = 1 << 20;
const MIN_MIB: u64 = 16;
const MAX_MIB: u64 = 16 << 20; // 16 TiB
/// Hex characters of the formatter fingerprint kept in a key.
pub const FINGERPRINT_LEN: usize = 16;

/// A disk capacity: a whole number of MiB, 16 MiB to 16 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Capacity {
    mib: u64,
}

impl Capacity {
    /// The smallest capacity of any key, whatever the formatter allows.
    pub const MIN_MIB: u64 = MIN_MIB;

    /// `mib` MiB; an error says the range when it is outside it.
    pub fn from_mib(mib: u64) -> Result<Self, CapacityError> {
        if !(MIN_MIB..=MAX_MIB).contains(&mib) {
            return Err(CapacityError(format!(
                "capacity {mib} MiB is out of range: it must be at least 16 MiB and at most 16 TiB"
            )));
        }
        Ok(Capacity { mib })
    }

    /// The capacity in MiB.
    pub fn mib(self) -> u64 {
        self.mib
    }

    /// The capacity in bytes.
    pub fn bytes(self) -> u64 {
        self.mib * MIB
    }

    /// The image sizes an entry of this capacity may have. ktstr floors a
    /// capacity that is not a whole number of MiB into its key (256 MiB + 1
    /// byte is `…-256m-…` with a 268,435,457-byte image), so anything from
    /// the capacity up to, not including, one MiB more.
    pub fn image_len_range(self) -> std::ops::Range<u64> {
        self.bytes()..self.bytes() + MIB
    }
}

/// A capacity outside what a key can hold; it says the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CapacityError(String);

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mib % 1024 == 0 {
            write!(f, "{}GiB", self.mib / 1024)
        } else {
            write!(f, "{}MiB", self.mib)
        }
    }
}

impl FromStr for Capacity {
    type Err = String;

    /// A size in the grammar of [`crate::units`] (`256M`, `256MiB`, `1g`,
    /// `262144K`, bytes) that is a whole number of MiB in range.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let accepted = "a capacity is a whole number of MiB from 16 MiB to 16 TiB: \
                        256M, 256MiB, 1G, 1GiB, 262144K or its bytes";
        let bytes = units::parse_size(s).map_err(|e| format!("{e}; {accepted}"))?;
        if bytes % MIB != 0 {
            return Err(format!(
                "capacity `{s}` ({bytes} bytes) is not a whole number of MiB: the nearest \
                 capacities are {}; {accepted}",
                nearest_mib(bytes)
                    .map(|mib| format!("{}M", mib))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        Capacity::from_mib(bytes / MIB).map_err(|e| format!("{e}; {accepted}"))
    }
}

/// The valid capacities on either side of `bytes`, in MiB.
fn nearest_mib(bytes: u64) -> impl Iterator<Item = u64> {
    let below = (bytes / MIB).clamp(MIN_MIB, MAX_MIB);
    let above = (bytes / MIB + 1).clamp(MIN_MIB, MAX_MIB);
    std::iter::once(below).chain((above != below).then_some(above))
}

/// The key of one template: filesystem, capacity, formatter fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The filesystem.
    pub fs: Filesystem,
    /// The disk's capacity.
    pub capacity: Capacity,
    /// The first [`FINGERPRINT_LEN`] hex characters of a formatter
    /// fingerprint, of either [`crate::cache::fingerprint::Scheme`].
    pub fingerprint: String,
}

impl Key {
    /// The key of `fs` and `capacity` for a formatter whose fingerprint is
    /// `fingerprint` (cut to [`FINGERPRINT_LEN`] characters).
    pub fn new(fs: Filesystem, capacity: Capacity, fingerprint: &str) -> Self {
        Key {
            fs,
            capacity,
            fingerprint: fingerprint[..FINGERPRINT_LEN.min(fingerprint.len())].to_owned(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}m-{}",
            self.fs,
            self.capacity.mib(),
            self.fingerprint
        )
    }
}

impl FromStr for Key {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a template key (<fs>-<MiB>m-<16 hex>)");
        let mut parts = s.splitn(3, '-');
        let (fs, cap, fp) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(bad()),
        };
        let fs: Filesystem = fs.parse().map_err(|_| bad())?;
        let mib = cap
            .strip_suffix('m')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if fp.len() != FINGERPRINT_LEN || !fp.bytes().all(hex) {
            return Err(bad());
        }
        let capacity = Capacity::from_mib(mib).map_err(|_| bad())?;
        Ok(Key::new(fs, capacity, fp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn capacity_accepts_the_documented_forms() {
        for (text, mib) in [
            ("256M", 256),
            ("256MiB", 256),
            ("1G", 1024),
            ("1GiB", 1024),
            ("268435456", 256),
            ("16M", 16),
            ("16384G", 16 << 20),
            ("256m", 256),
            ("262144K", 256),
            ("1t", 1 << 20),
            ("1TiB", 1 << 20),
            ("10T", 10 << 20),
            ("16T", 16 << 20),
        ] {
            assert_eq!(text.parse::<Capacity>().unwrap().mib(), mib, "{text}");
        }
    }

    #[test]
    fn capacity_rejects_everything_else_and_says_what_is_accepted() {
        for text in [
            "",
            "M",
            "15M",
            "0",
            "1000",
            "1.5G",
            "256 M",
            "256MB",
            "-1G",
            "16385G",
            "17T",
            "99999999999999999999G",
        ] {
            let err = text.parse::<Capacity>().unwrap_err();
            assert!(err.contains("256M, 256MiB, 1G, 1GiB"), "{text}: {err}");
        }
    }

    #[test]
    fn a_capacity_between_mibs_is_told_the_nearest_valid_ones() {
        let err = "268435457".parse::<Capacity>().unwrap_err();
        assert!(
            err.contains("the nearest capacities are 256M and 257M"),
            "{err}"
        );
        let err = "1000K".parse::<Capacity>().unwrap_err();
        assert!(err.contains("the nearest capacities are 16M;"), "{err}");
    }

    #[test]
    fn an_image_may_run_up_to_a_mib_past_its_capacity() {
        // ktstr 0.15 publishes 256 MiB + 1 byte as `…-256m-…`.
        let range = Capacity::from_mib(256).unwrap().image_len_range();
        assert!(range.contains(&268_435_456));
        assert!(range.contains(&268_435_457));
        assert!(range.contains(&(257 * MIB - 1)));
        assert!(!range.contains(&(257 * MIB)));
        assert!(!range.contains(&(256 * MIB - 1)));
    }

    #[test]
    fn key_renders_like_ktstr_and_rotates_with_the_fingerprint() {
        let cap = Capacity::from_mib(256).unwrap();
        let a = Key::new(Filesystem::Btrfs, cap, "a1b2c3d4e5f6a7b8c9d0");
        assert_eq!(a.to_string(), "btrfs-256m-a1b2c3d4e5f6a7b8");
        // A fingerprint differing in its 16th hex character is a new key;
        // one differing only past it is the same key (16 are kept).
        let b = Key::new(Filesystem::Btrfs, cap, "a1b2c3d4e5f6a7b9c9d0");
        assert_eq!(b.to_string(), "btrfs-256m-a1b2c3d4e5f6a7b9");
        let c = Key::new(Filesystem::Btrfs, cap, "a1b2c3d4e5f6a7b8ffff");
        assert_eq!(c, a);
    }

    #[test]
    fn key_parse_rejects_near_misses() {
        for s in [
            "btrfs-256m",
            "btrfs-256-a1b2c3d4e5f6a7b8",
            "zfs-256m-a1b2c3d4e5f6a7b8",
            "btrfs-256m-A1B2C3D4E5F6A7B8",
            "btrfs-256m-a1b2c3d4e5f6a7b",
            "btrfs-m-a1b2c3d4e5f6a7b8",
            "btrfs-+256m-a1b2c3d4e5f6a7b8",
        ] {
            assert!(s.parse::<Key>().is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn key_round_trips(fs in 0usize..3, mib in 16u64..=(16 << 20), fp in "[0-9a-f]{16}") {
            let key = Key::new(Filesystem::ALL[fs], Capacity::from_mib(mib).unwrap(), &fp);
            prop_assert_eq!(key.to_string().parse::<Key>().unwrap(), key);
        }
    }
}
