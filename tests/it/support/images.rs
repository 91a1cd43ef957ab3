//! Images and entries for the tests to work on: real mkfs images, fakes
//! that only carry a superblock magic, published templates, a full disk,
//! and which extents a clone shares.

use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::cache::ensure::{Ensured, Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use super::{prerequisite, stderr};

/// Formats `path` as a real `fs` image of `mib` MiB with the host's mkfs.
/// `false` (after [`prerequisite`]) when the formatter is not installed.
pub(crate) fn mkfs_image(path: &Path, fs: Filesystem, mib: u64) -> bool {
    let Ok(mkfs) = cargo_ktstr::testing::formatter::fingerprint::find_formatter(fs) else {
        return prerequisite(fs.mkfs(), false);
    };
    std::fs::File::create(path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let out = Command::new(mkfs)
        .args(fs.mkfs_args())
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", fs.mkfs(), stderr(&out));
    true
}

/// Writes a sparse image of `mib` MiB carrying `fs`'s superblock magic and
/// `data` bytes of real data at its start (so it has allocated blocks).
pub(crate) fn magic_image(path: &Path, fs: Filesystem, mib: u64, data: usize) {
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(mib << 20).unwrap();
    file.write_all(&vec![0xa5; data]).unwrap();
    let (offset, magic) = fs.magic();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(magic).unwrap();
    file.sync_all().unwrap();
}

/// The installed formatter's key for `fs` and `mib`.
pub(crate) fn current_key(fs: Filesystem, mib: u64) -> String {
    let fp = cargo_ktstr::testing::formatter::fingerprint::fingerprint(fs).unwrap();
    format!("{fs}-{mib}m-{}", &fp[..16])
}

/// Publishes a real template (host mkfs) under `root`, as a cache hit for
/// the CLI tests.
pub(crate) fn populate(root: &Path, fs: Filesystem, mib: u64) -> Ensured {
    let cap = Capacity::from_mib(mib).unwrap();
    Ensurer::new(root, &HostMkfsBuilder)
        .ensure(fs, cap)
        .unwrap()
}

/// How many of `file`'s first 512 extents exist and how many share their
/// blocks with another file (FIEMAP, `FIEMAP_EXTENT_SHARED`): a reflink
/// clone's extents are shared, a real copy's are not.
pub(crate) fn shared_extents(file: &std::fs::File) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FLAG_SYNC: u32 = 1;
    const EXTENT_SHARED: u32 = 0x2000;
    const MAX: usize = 512;
    // struct fiemap (32 bytes) then MAX struct fiemap_extent (56 bytes each),
    // as u64 words for alignment.
    let mut buf = vec![0u64; (32 + 56 * MAX) / 8];
    buf[1] = u64::MAX; // fm_length: the whole file
    // fm_flags (u32 at byte 16) and fm_extent_count (u32 at byte 24).
    buf[2] = u64::from(FLAG_SYNC);
    buf[3] = MAX as u64;
    // SAFETY: FS_IOC_FIEMAP reads the header and writes at most
    // fm_extent_count extents into the buffer, which is sized for them and
    // outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
    assert_eq!(rc, 0, "FIEMAP: {}", std::io::Error::last_os_error());
    // fm_mapped_extents: the u32 at byte 20.
    let mapped = (buf[2] >> 32) as usize;
    let shared = (0..mapped.min(MAX))
        .filter(|i| {
            // fe_flags: the u32 at byte 40 of each extent.
            let flags = buf[(32 + 56 * i + 40) / 8] as u32;
            flags & EXTENT_SHARED != 0
        })
        .count();
    (mapped, shared)
}

/// Writes `path` until its filesystem has no block left.
pub(crate) fn fill_disk(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Then what a short write left, a block at a time.
    while file
        .write_all(&chunk[..4096])
        .and_then(|()| file.sync_all())
        .is_ok()
    {}
}
