//! Initramfs archives built in memory: newc cpio, uncompressed (under TCG
//! the kernel unpacking a gzip archive of the template guest took 0.9 s of
//! its boot; copying it as it is takes next to nothing).
//!
//! The template guest's holds the init (this very binary), the formatter,
//! every shared object both need, `/dev/console`, and mount points for
//! devtmpfs, proc and sysfs. No shell, no busybox. The nested lane's outer
//! guest ([`crate::guest::nested`]) adds more programs to the same shape.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cpio::newc::{self, ModeFileType};

use super::init::modules::{MODULES_DIR, OPTIONAL, ORDER_FILE};
use super::protocol::{INIT_PATH, formatter_path};
use crate::elf::libs::shared_objects;
use crate::elf::notes::read_program;
use crate::formatter::filesystem::Filesystem;
use crate::kernel::modules::GuestModule;

/// mke2fs reads its defaults from here; the guest's mkfs.ext4 should format
/// exactly as the host's would.
const MKE2FS_CONF: &str = "/etc/mke2fs.conf";

/// Builds the initramfs that formats a disk with `fs`: `init` becomes
/// `/init`, `formatter` becomes `/sbin/mkfs.<fs>`, and `modules` (a stock
/// kernel's, in load order; none for a kernel build's) go under `/modules`.
pub fn template_initramfs(
    init: &Path,
    formatter: &Path,
    fs: Filesystem,
    modules: &[GuestModule],
) -> Result<Vec<u8>> {
    template_initramfs_many(init, &[(fs, formatter)], modules)
}

/// [`template_initramfs`] for a guest with several disks: each distinct
/// filesystem's formatter, once.
pub(crate) fn template_initramfs_many(
    init: &Path,
    formatters: &[(Filesystem, &Path)],
    modules: &[GuestModule],
) -> Result<Vec<u8>> {
    let mut archive = Archive::with_init(init)?;
    let mut added = Vec::new();
    for &(fs, formatter) in formatters {
        if added.contains(&fs) {
            continue;
        }
        added.push(fs);
        archive.program(&formatter_path(fs), formatter)?;
    }
    add_modules(&mut archive, modules)?;
    if added.contains(&Filesystem::Ext4) {
        archive.mke2fs_conf()?;
    }
    archive.finish()
}

/// Adds `modules` and their order file to `archive`.
pub(crate) fn add_modules(archive: &mut Archive, modules: &[GuestModule]) -> Result<()> {
    if modules.is_empty() {
        return Ok(());
    }
    let mut order = String::new();
    for module in modules {
        let file = format!("{}.ko", module.name);
        archive.file(&format!("{MODULES_DIR}/{file}"), 0o644, &module.bytes)?;
        order += &file;
        if module.optional {
            order += " ";
            order += OPTIONAL;
        }
        order += "\n";
    }
    archive.file(
        &format!("{MODULES_DIR}/{ORDER_FILE}"),
        0o644,
        order.as_bytes(),
    )
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
}

/// A newc archive under construction; parents are added before children.
#[derive(Debug, Default)]
pub(crate) struct Archive {
    cpio: Vec<u8>,
    dirs: BTreeSet<String>,
    next_ino: u32,
    /// Host paths of the programs added, whose shared objects
    /// [`Archive::finish`] adds.
    programs: Vec<std::path::PathBuf>,
}

impl Archive {
    /// An archive with `init` as `/init`, the mount points init uses, and
    /// the two device nodes it needs before devtmpfs is mounted.
    pub(crate) fn with_init(init: &Path) -> Result<Archive> {
        let mut archive = Archive::default();
        for dir in ["dev", "proc", "sys", "tmp", "sbin", "etc"] {
            archive.dir(dir);
        }
        // The kernel opens /dev/console as init's stdio before devtmpfs is
        // mounted; Rust's runtime opens /dev/null for any stdio fd left closed.
        archive.char_device("dev/console", 0o600, (5, 1));
        archive.char_device("dev/null", 0o666, (1, 3));
        archive.program(INIT_PATH, init)?;
        Ok(archive)
    }

    /// Adds the ELF program `host` as `guest`, cut to what runs; its shared
    /// objects come with it when the archive is finished.
    pub(crate) fn program(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.file(guest, 0o755, &read_program(host)?)?;
        self.programs.push(host.to_owned());
        Ok(())
    }

    /// Adds the host file `host` as `guest`, as it is.
    pub(crate) fn host_file(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.file(guest, 0o644, &read(host)?)
    }

    /// The host's mke2fs defaults, where it has them: the guest's
    /// mkfs.ext4 then formats exactly as the host's would.
    pub(crate) fn mke2fs_conf(&mut self) -> Result<()> {
        match Path::new(MKE2FS_CONF).is_file() {
            true => self.host_file(MKE2FS_CONF, Path::new(MKE2FS_CONF)),
            false => Ok(()),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, kind: ModeFileType) -> newc::Builder {
        self.next_ino += 1;
        newc::Builder::new(name)
            .ino(self.next_ino)
            .mode(mode)
            .set_mode_file_type(kind)
    }

    /// Adds directory `path` and its parents.
    pub(crate) fn dir(&mut self, path: &str) {
        let path = path.trim_start_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_owned());
        let entry = self.entry(path, 0o755, ModeFileType::Directory).nlink(2);
        // Writing into a Vec cannot fail.
        let _ = entry.write(&mut self.cpio, 0).finish();
    }

    fn char_device(&mut self, path: &str, mode: u32, (major, minor): (u32, u32)) {
        let entry = self
            .entry(path, mode, ModeFileType::Char)
            .rdev_major(major)
            .rdev_minor(minor);
        let _ = entry.write(&mut self.cpio, 0).finish();
    }

    /// Adds a symbolic link at `path` to `target`.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        let mut writer = self
            .entry(path, 0o777, ModeFileType::Symlink)
            .write(&mut self.cpio, target.len() as u32);
        writer.write_all(target.as_bytes())?;
        writer.finish()?;
        Ok(())
    }

    /// Adds a regular file with `bytes` at `path`.
    pub(crate) fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        let Ok(size) = u32::try_from(bytes.len()) else {
            bail!(
                "`/{path}` is too large for a cpio archive ({} bytes)",
                bytes.len()
            );
        };
        let mut writer = self
            .entry(path, mode, ModeFileType::Regular)
            .write(&mut self.cpio, size);
        writer.write_all(bytes)?;
        writer.finish()?;
        Ok(())
    }

    /// The finished archive, uncompressed: the kernel copies it as it is,
    /// which beats decompressing a large archive under TCG.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>> {
        let programs: Vec<&Path> = self.programs.iter().map(|p| p.as_path()).collect();
        for object in shared_objects(&programs)? {
            let guest = object.guest.to_string_lossy().into_owned();
            self.file(&guest, 0o755, &read_program(&object.host)?)?;
        }
        newc::trailer(&mut self.cpio)?;
        Ok(self.cpio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formatter::fingerprint::find_formatter;
    use std::path::PathBuf;

    /// One entry of an archive, read back.
    struct Entry {
        name: String,
        mode: u32,
        rdev: (u32, u32),
        body: Vec<u8>,
    }

    fn read_back(cpio: &[u8]) -> Vec<Entry> {
        use std::io::Read;
        let mut rest: &[u8] = cpio;
        let mut entries = Vec::new();
        loop {
            let mut reader = newc::Reader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                return entries;
            }
            let e = reader.entry();
            let mut entry = Entry {
                name: e.name().to_owned(),
                mode: e.mode(),
                rdev: (e.rdev_major(), e.rdev_minor()),
                body: Vec::new(),
            };
            reader.read_to_end(&mut entry.body).unwrap();
            entries.push(entry);
            rest = reader.finish().unwrap();
        }
    }

    /// A dynamically linked program that is surely here.
    fn some_program() -> PathBuf {
        PathBuf::from("/bin/true")
    }

    #[test]
    fn the_archive_holds_init_formatter_libraries_and_mount_points() {
        let fs = Filesystem::Btrfs;
        let formatter = find_formatter(fs).unwrap_or_else(|e| {
            // Any dynamic program shows the archive's shape; CI has the real one.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs btrfs-progs: {e}"
            );
            some_program()
        });
        let init = some_program();
        let gz = template_initramfs(&init, &formatter, fs, &[]).unwrap();
        let entries = read_back(&gz);
        let find = |name: &str| entries.iter().find(|e| e.name == name);
        for dir in ["dev", "proc", "sys", "sbin"] {
            let e = find(dir).unwrap_or_else(|| panic!("{dir} missing"));
            assert_eq!(e.mode & 0o170000, 0o040000, "{dir} is not a directory");
        }
        let console = find("dev/console").unwrap();
        assert_eq!((console.mode & 0o170000, console.rdev), (0o020000, (5, 1)));
        let init_entry = find("init").unwrap();
        assert_eq!(init_entry.mode, 0o100755);
        assert_eq!(init_entry.body, read_program(&init).unwrap());
        assert_eq!(
            find("sbin/mkfs.btrfs").unwrap().body,
            read_program(&formatter).unwrap()
        );
        for object in shared_objects(&[&init, &formatter]).unwrap() {
            let name = object.guest.to_string_lossy();
            assert!(
                find(name.trim_start_matches('/')).is_some(),
                "{name} missing"
            );
        }
        // Every entry's parent directory comes before it.
        let mut seen = BTreeSet::new();
        for Entry { name, .. } in &entries {
            if let Some((parent, _)) = name.rsplit_once('/') {
                assert!(seen.contains(parent), "{name} before {parent}");
            }
            seen.insert(name.clone());
        }
    }

    #[test]
    fn ext4_gets_the_hosts_mke2fs_defaults() {
        let gz =
            template_initramfs(&some_program(), &some_program(), Filesystem::Ext4, &[]).unwrap();
        let entries = read_back(&gz);
        assert!(entries.iter().any(|e| e.name == "sbin/mkfs.ext4"));
        let has_conf = entries.iter().any(|e| e.name == "etc/mke2fs.conf");
        assert_eq!(has_conf, Path::new(MKE2FS_CONF).is_file());
    }

    #[test]
    fn several_filesystems_get_each_formatter_once() {
        let program = some_program();
        let formatters = [
            (Filesystem::Xfs, program.as_path()),
            (Filesystem::Ext4, program.as_path()),
            (Filesystem::Xfs, program.as_path()),
        ];
        let cpio = template_initramfs_many(&program, &formatters, &[]).unwrap();
        let entries = read_back(&cpio);
        let count = |name: &str| entries.iter().filter(|e| e.name == name).count();
        assert_eq!(count("sbin/mkfs.xfs"), 1);
        assert_eq!(count("sbin/mkfs.ext4"), 1);
        assert_eq!(count("sbin/mkfs.btrfs"), 0);
        assert_eq!(
            count("etc/mke2fs.conf"),
            usize::from(Path::new(MKE2FS_CONF).is_file())
        );
    }
}
