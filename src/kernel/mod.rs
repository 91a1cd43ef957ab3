//! Guest kernels: build one from a source tree, keep it in the cache, and
//! resolve which one a template build uses.
//!
//! A kernel is tinyconfig plus [`crate::kernel::FRAGMENT`], so a cached kernel is named by
//! the source's version and a hash of the fragment: a new fragment gives a
//! new entry instead of silently reusing a kernel that lacks an option.

use sha2::{Digest, Sha256};

pub mod build;
pub mod resolve;
pub mod source;
pub mod store;

/// The config fragment merged onto tinyconfig: what the template guest needs.
pub const FRAGMENT: &str = include_str!("template.config");

/// Hex characters of the fragment hash kept in a kernel's cache name.
const FRAGMENT_HASH_LEN: usize = 12;

/// The first hex characters of SHA-256 over [`FRAGMENT`].
pub fn fragment_hash() -> String {
    Sha256::digest(FRAGMENT.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..FRAGMENT_HASH_LEN]
        .to_owned()
}

/// The options the fragment turns on (`CONFIG_X=y`) and off
/// (`# CONFIG_X is not set`), for checking the merged `.config`.
pub fn fragment_options() -> (Vec<&'static str>, Vec<&'static str>) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for line in FRAGMENT.lines() {
        if let Some(name) = line.strip_suffix("=y") {
            on.push(name);
        } else if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            off.push(name);
        }
    }
    (on, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_has_what_the_guest_needs() {
        let (on, off) = fragment_options();
        for needed in [
            "CONFIG_64BIT",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_RD_GZIP",
            "CONFIG_DEVTMPFS",
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
            "CONFIG_VIRTIO_BLK",
            "CONFIG_BTRFS_FS",
            "CONFIG_XFS_FS",
            "CONFIG_EXT4_FS",
            "CONFIG_KVM_GUEST",
        ] {
            assert!(on.contains(&needed), "{needed}");
        }
        assert!(off.contains(&"CONFIG_MODULES"));
        assert_eq!(fragment_hash().len(), FRAGMENT_HASH_LEN);
    }
}
