//! A template's key, `<fs>-<MiB>m-<fingerprint>`, and the capacity in it.

use std::fmt;
use std::str::FromStr;

use crate::formatter::filesystem::Filesystem;

pub use crate::formatter::capacity::{Capacity, CapacityError};
pub(crate) use crate::formatter::fingerprint::FINGERPRINT_LEN;
use crate::formatter::fingerprint::{Formatter, Scheme};

/// The key of one template: filesystem, capacity, formatter fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The filesystem.
    pub fs: Filesystem,
    /// The disk's capacity.
    pub capacity: Capacity,
    /// The first [`FINGERPRINT_LEN`] hex characters of a formatter
    /// fingerprint, of either [`crate::formatter::fingerprint::Scheme`].
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

    /// The key of `fs` and `capacity` under `scheme` for `formatter`.
    pub fn of(formatter: &Formatter, fs: Filesystem, capacity: Capacity, scheme: Scheme) -> Self {
        Key::new(fs, capacity, formatter.fingerprint_of(scheme))
    }

    /// This key under the installed formatter's other scheme, when it is
    /// current under one: where ktstr 0.50 (or 0.15) keeps the same
    /// template. `None` when it is stale or the formatter cannot be asked.
    pub fn under_other_scheme(&self) -> Option<Key> {
        let formatter = crate::formatter::fingerprint::formatter(self.fs).ok()?;
        let other = match formatter.scheme_of(&self.fingerprint)? {
            Scheme::Version => Scheme::Binary,
            Scheme::Binary => Scheme::Version,
        };
        Some(Key::of(&formatter, self.fs, self.capacity, other))
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

    const MIB: u64 = 1 << 20;
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
