//! The filesystems a template can hold: formatter, package, superblock magic
//! and default capacity. How small a device each formatter takes depends on
//! its version: see [`crate::formatter::minimum`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

/// A filesystem a template can be formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// btrfs (`mkfs.btrfs`).
    Btrfs,
    /// XFS (`mkfs.xfs`).
    Xfs,
    /// ext4 (`mkfs.ext4`).
    Ext4,
}

impl Filesystem {
    /// Every filesystem, in the order the CLI lists them.
    pub const ALL: [Filesystem; 3] = [Filesystem::Btrfs, Filesystem::Xfs, Filesystem::Ext4];

    /// The name the kernel and the CLI use: `btrfs`, `xfs`, `ext4`.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Btrfs => "btrfs",
            Filesystem::Xfs => "xfs",
            Filesystem::Ext4 => "ext4",
        }
    }

    /// The formatter's file name, looked up on PATH, /sbin and /usr/sbin.
    pub fn mkfs(self) -> &'static str {
        match self {
            Filesystem::Btrfs => "mkfs.btrfs",
            Filesystem::Xfs => "mkfs.xfs",
            Filesystem::Ext4 => "mkfs.ext4",
        }
    }

    /// The Debian package that ships [`Filesystem::mkfs`].
    pub fn package(self) -> &'static str {
        match self {
            Filesystem::Btrfs => "btrfs-progs",
            Filesystem::Xfs => "xfsprogs",
            Filesystem::Ext4 => "e2fsprogs",
        }
    }

    /// The argument that makes the formatter print its version.
    ///
    /// mkfs.xfs and mkfs.ext4 reject `--version` and print a usage text that
    /// names the path they were run by, which would make the key depend on PATH.
    pub fn version_arg(self) -> &'static str {
        match self {
            Filesystem::Btrfs => "--version",
            Filesystem::Xfs | Filesystem::Ext4 => "-V",
        }
    }

    /// Arguments for a quiet, non-interactive format of a whole device.
    pub fn mkfs_args(self) -> &'static [&'static str] {
        match self {
            Filesystem::Btrfs => &["-q", "-f"],
            Filesystem::Xfs => &["-q", "-f"],
            Filesystem::Ext4 => &["-q", "-F"],
        }
    }

    /// Where the superblock magic sits, and its bytes.
    pub fn magic(self) -> (u64, &'static [u8]) {
        match self {
            Filesystem::Btrfs => (0x10040, b"_BHRfS_M"),
            Filesystem::Xfs => (0, b"XFSB"),
            // 0xEF53, little-endian, in the ext2/3/4 superblock at 1024 + 0x38.
            Filesystem::Ext4 => (0x438, &[0x53, 0xEF]),
        }
    }

    /// The capacity used when none is given; each is at least its
    /// formatter's minimum.
    /// The data of a read-only mount that replays no log and so writes
    /// nothing to the disk (with `MS_RDONLY`): xfs `norecovery`, ext4
    /// `noload`; btrfs writes nothing when mounted `ro`.
    pub fn read_only_mount_data(self) -> Option<&'static str> {
        match self {
            Filesystem::Btrfs => None,
            Filesystem::Xfs => Some("norecovery"),
            Filesystem::Ext4 => Some("noload"),
        }
    }

    /// The CLI's capacity when none is given, in MiB.
    pub fn default_capacity_mib(self) -> u64 {
        match self {
            // mkfs.xfs refuses anything smaller.
            Filesystem::Xfs => 300,
            Filesystem::Btrfs | Filesystem::Ext4 => 256,
        }
    }

    /// Whether `reader` carries this filesystem's superblock magic.
    pub fn has_magic<R: Read + Seek>(self, reader: &mut R) -> io::Result<bool> {
        let (offset, magic) = self.magic();
        let mut buf = [0u8; 8];
        let buf = &mut buf[..magic.len()];
        reader.seek(SeekFrom::Start(offset))?;
        match reader.read_exact(buf) {
            Ok(()) => Ok(buf == magic),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the file or device at `path` carries this filesystem's magic.
    pub fn path_has_magic(self, path: &Path) -> io::Result<bool> {
        self.has_magic(&mut File::open(path)?)
    }
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Filesystem {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filesystem::ALL
            .into_iter()
            .find(|fs| fs.name() == s)
            .ok_or_else(|| format!("unknown filesystem `{s}`: expected btrfs, xfs or ext4"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn image_with_magic(fs: Filesystem) -> Vec<u8> {
        let (offset, magic) = fs.magic();
        let mut img = vec![0u8; 128 * 1024];
        img[offset as usize..offset as usize + magic.len()].copy_from_slice(magic);
        img
    }

    #[test]
    fn each_magic_is_recognised_and_only_its_own() {
        for fs in Filesystem::ALL {
            let img = image_with_magic(fs);
            assert!(fs.has_magic(&mut Cursor::new(&img)).unwrap(), "{fs}");
            for other in Filesystem::ALL.into_iter().filter(|o| *o != fs) {
                assert!(
                    !other.has_magic(&mut Cursor::new(&img)).unwrap(),
                    "{other} on {fs}"
                );
            }
        }
    }

    #[test]
    fn zeroed_and_truncated_images_have_no_magic() {
        for fs in Filesystem::ALL {
            assert!(!fs.has_magic(&mut Cursor::new(vec![0u8; 1 << 20])).unwrap());
            assert!(!fs.has_magic(&mut Cursor::new(vec![0u8; 0])).unwrap());
            let mut img = image_with_magic(fs);
            let (offset, _) = fs.magic();
            img.truncate(offset as usize + 1);
            assert!(!fs.has_magic(&mut Cursor::new(img)).unwrap());
        }
    }

    #[test]
    fn names_round_trip() {
        for fs in Filesystem::ALL {
            assert_eq!(fs.name().parse::<Filesystem>().unwrap(), fs);
        }
        assert!(
            "zfs"
                .parse::<Filesystem>()
                .unwrap_err()
                .contains("btrfs, xfs or ext4")
        );
    }
}
