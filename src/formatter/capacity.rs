//! A disk's capacity, as a template's key and the formatters' minimums
//! count it: a whole number of MiB.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::units;

const MIB: u64 = 1 << 20;
const MIN_MIB: u64 = 16;
const MAX_MIB: u64 = 16 << 20; // 16 TiB

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
