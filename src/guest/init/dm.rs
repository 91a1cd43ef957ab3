//! In the guest: device-mapper devices made through the DM ioctl on
//! `/dev/mapper/control`, the interface `dmsetup` wraps, so the initramfs
//! needs no dmsetup and no libdevmapper.
//!
//! Every call is one `struct dm_ioctl` (`include/uapi/linux/dm-ioctl.h`)
//! followed by its payload in one buffer: a table load carries
//! `struct dm_target_spec`s each followed by its parameter string, a
//! message carries `struct dm_target_msg` and the text. A device is made by
//! create, table load and resume; removal suspends nothing itself (the
//! kernel flushes the target as it goes).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The control node devtmpfs makes once dm-mod is loaded.
const CONTROL: &str = "/dev/mapper/control";
/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const TARGET_SPEC: usize = 40;
/// Where the name starts in the header, and its room (with the NUL).
const NAME_AT: usize = 48;
const NAME_LEN: usize = 128;
/// The interface version asked for: 4.0.0 works with every kernel since 2.6.
const VERSION: [u32; 3] = [4, 0, 0];
/// Room for what the kernel writes back (status, errors).
const REPLY_ROOM: usize = 16 << 10;

const DEV_CREATE: u8 = 3;
const DEV_REMOVE: u8 = 4;
const DEV_SUSPEND: u8 = 6;
const TABLE_LOAD: u8 = 9;
const TABLE_STATUS: u8 = 12;
const TARGET_MSG: u8 = 14;
/// `DM_SUSPEND_FLAG`: with DEV_SUSPEND, suspend rather than resume.
const SUSPEND_FLAG: u32 = 1 << 1;
/// `DM_SKIP_LOCKFS_FLAG`: suspend without freezing the filesystem on the
/// device, whose freeze fails once a failing disk has shut it down.
const SKIP_LOCKFS_FLAG: u32 = 1 << 10;

/// One line of a table: `length` sectors from `start` mapped by `target`
/// with `params`, as `dmsetup create --table` takes it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub start: u64,
    pub length: u64,
    pub kind: String,
    pub params: String,
}

/// An open `/dev/mapper/control`.
#[derive(Debug)]
pub(crate) struct DmControl {
    file: File,
}

impl DmControl {
    pub(crate) fn open() -> Result<DmControl> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(CONTROL)
            .with_context(|| format!("failed to open {CONTROL} (is the dm-mod module loaded?)"))?;
        Ok(DmControl { file })
    }

    /// Creates device `name` with `table`, live: returns its device number.
    pub(crate) fn create(&self, name: &str, table: &[Target]) -> Result<libc::dev_t> {
        self.call(DEV_CREATE, name, 0, &[])?;
        self.load(name, table)?;
        let reply = self.call(DEV_SUSPEND, name, 0, &[])?;
        let dev = u64::from_ne_bytes(reply[40..48].try_into().expect("8 bytes"));
        // The kernel's huge encoding: minor's low byte, major, minor's rest.
        let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
        Ok(libc::makedev(major as u32, minor as u32))
    }

    /// Loads `table` into `name`'s inactive slot; a resume makes it live.
    pub(crate) fn load(&self, name: &str, table: &[Target]) -> Result<()> {
        let mut payload = Vec::new();
        for target in table {
            let start = payload.len();
            payload.extend_from_slice(&target.start.to_ne_bytes());
            payload.extend_from_slice(&target.length.to_ne_bytes());
            payload.extend_from_slice(&0i32.to_ne_bytes());
            payload.extend_from_slice(&0u32.to_ne_bytes()); // next, set below
            let mut kind = [0u8; 16];
            let bytes = target.kind.as_bytes();
            if bytes.len() >= kind.len() {
                bail!("device-mapper target name `{}` is too long", target.kind);
            }
            kind[..bytes.len()].copy_from_slice(bytes);
            payload.extend_from_slice(&kind);
            payload.extend_from_slice(target.params.as_bytes());
            payload.push(0);
            // Each spec starts 8-byte aligned; `next` is relative to it.
            payload.resize(payload.len().next_multiple_of(8), 0);
            let next = (payload.len() - start) as u32;
            payload[start + 20..start + 24].copy_from_slice(&next.to_ne_bytes());
        }
        debug_assert!(table.is_empty() || payload.len() >= TARGET_SPEC);
        self.call_with(TABLE_LOAD, name, 0, table.len() as u32, &payload)
            .map(drop)
    }

    /// Swaps `name`'s table for `table` (`dmsetup suspend`, `reload`,
    /// `resume`), without freezing the filesystem on it: the caller syncs
    /// first if it wants what is cached written under the old table.
    pub(crate) fn reload(&self, name: &str, table: &[Target]) -> Result<()> {
        self.call(DEV_SUSPEND, name, SUSPEND_FLAG | SKIP_LOCKFS_FLAG, &[])?;
        self.load(name, table)?;
        self.call(DEV_SUSPEND, name, 0, &[]).map(drop)
    }

    /// Sends target message `text` (`mark <name>` to log-writes, say).
    pub(crate) fn message(&self, name: &str, text: &str) -> Result<()> {
        let mut payload = 0u64.to_ne_bytes().to_vec();
        payload.extend_from_slice(text.as_bytes());
        payload.push(0);
        self.call(TARGET_MSG, name, 0, &payload)
            .map(drop)
            .with_context(|| format!("device-mapper message `{text}` to {name} failed"))
    }

    /// The target's status line (`dmsetup status`).
    pub(crate) fn status(&self, name: &str) -> Result<String> {
        let reply = self.call(TABLE_STATUS, name, 0, &[])?;
        let start = u32::from_ne_bytes(reply[16..20].try_into().expect("4 bytes")) as usize;
        // One target: its spec, then its NUL-terminated status.
        let text = reply.get(start + TARGET_SPEC..).unwrap_or_default();
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        Ok(String::from_utf8_lossy(&text[..end]).into_owned())
    }

    /// Removes device `name`.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.call(DEV_REMOVE, name, 0, &[]).map(drop)
    }

    fn call(&self, cmd: u8, name: &str, flags: u32, payload: &[u8]) -> Result<Vec<u8>> {
        self.call_with(cmd, name, flags, 0, payload)
    }

    fn call_with(
        &self,
        cmd: u8,
        name: &str,
        flags: u32,
        targets: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        if name.len() >= NAME_LEN {
            bail!("device-mapper name `{name}` is too long");
        }
        let mut buf = vec![0u8; HEADER + payload.len() + REPLY_ROOM];
        let len = buf.len() as u32;
        for (i, v) in VERSION.iter().enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        buf[12..16].copy_from_slice(&len.to_ne_bytes());
        buf[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes());
        buf[20..24].copy_from_slice(&targets.to_ne_bytes());
        buf[28..32].copy_from_slice(&flags.to_ne_bytes());
        buf[NAME_AT..NAME_AT + name.len()].copy_from_slice(name.as_bytes());
        buf[HEADER..HEADER + payload.len()].copy_from_slice(payload);
        let request = nix::request_code_readwrite!(0xfd, cmd, HEADER);
        // SAFETY: `buf` is a dm_ioctl header followed by its payload and
        // `data_size` bytes long in all, which is all the kernel reads or
        // writes.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, buf.as_mut_ptr()) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            bail!("device-mapper ioctl {cmd} on `{name}` failed: {err} (the kernel log says why)");
        }
        Ok(buf)
    }
}

/// `path`'s device number as a table names it, `major:minor`.
pub(crate) fn dev_name(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(path)
        .with_context(|| format!("failed to stat `{}`", path.display()))?
        .rdev();
    Ok(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

/// `path`'s size in 512-byte sectors, from sysfs.
pub(crate) fn sectors(path: &Path) -> Result<u64> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let sys = format!("/sys/class/block/{name}/size");
    std::fs::read_to_string(&sys)
        .with_context(|| format!("failed to read {sys}"))?
        .trim()
        .parse()
        .with_context(|| format!("{sys} is no number"))
}

/// Makes block node `path` for `dev` (devtmpfs names dm devices `dm-N`;
/// a node of our own name saves looking which).
pub(crate) fn make_node(path: &Path, dev: libc::dev_t) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag, mknod};
    let _ = std::fs::remove_file(path);
    mknod(path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), dev)
        .with_context(|| format!("failed to make the block node `{}`", path.display()))
}
