//! What this crate knows of the formatters (`mkfs.btrfs`, `mkfs.xfs`,
//! `mkfs.ext4`): a disk's capacity ([`capacity`]), the filesystems and their superblock magic
//! ([`filesystem`]), where the formatter is and the fingerprints that key a
//! template ([`fingerprint`], memoised per formatter), and the smallest
//! device each version accepts ([`minimum`]). Used by the cache, the guest
//! and the probe alike; it imports none of them.

pub(crate) mod capacity;
pub(crate) mod filesystem;
pub(crate) mod fingerprint;
pub(crate) mod minimum;
