//! Kernel modules in the template guest, both sides of it.
//!
//! The host ([`crate::guest::initramfs::add_modules`]) puts each module, uncompressed, at `/modules/<name>.ko` and
//! lists them in load order in `/modules/order`, one a line:
//! `<name>.ko` for a module the guest needs, `<name>.ko optional` for a
//! softdep whose failure is only reported. A kernel that needs no modules
//! gets no `/modules` at all. The guest's init loads each with
//! `finit_module(2)`, counts "already loaded" (`EEXIST`) as done, then
//! waits for `/dev/vda`, which appears only once virtio_blk has probed.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};

/// Where the modules and their order are in the initramfs.
pub(crate) const MODULES_DIR: &str = "/modules";
/// The order file's name in [`MODULES_DIR`].
pub(crate) const ORDER_FILE: &str = "order";
/// The word that marks an optional module in the order file.
pub(crate) const OPTIONAL: &str = "optional";
/// How long the guest waits for its disk after loading the modules (the
/// probe takes milliseconds; TCG on a loaded host, a few hundred).
pub(crate) const DISK_DEADLINE: Duration = Duration::from_secs(20);

/// The order file's lines as (file name, optional).
fn parse_order(text: &str) -> Vec<(&str, bool)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next() == Some(OPTIONAL)))
        })
        .collect()
}

/// In the guest: loads every module `dir`'s order file lists; returns the
/// failures of optional ones, for the console. No order file: nothing to do.
pub(crate) fn load_modules(dir: &Path) -> Result<Vec<String>> {
    let order_path = dir.join(ORDER_FILE);
    let text = match std::fs::read_to_string(&order_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read {}", order_path.display()));
        }
    };
    let mut skipped = Vec::new();
    for (file, optional) in parse_order(&text) {
        let path = dir.join(file);
        match load_one(&path) {
            Ok(()) => {}
            Err(e) if optional => skipped.push(format!("{file}: {e}")),
            Err(e) => bail!(
                "failed to load module {}: {e} (the kernel's log above says why; a module \
                 from another kernel release fails so)",
                path.display()
            ),
        }
    }
    Ok(skipped)
}

fn load_one(path: &Path) -> Result<(), Errno> {
    let file = File::open(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::initramfs::{Archive, add_modules};
    use crate::kernel::modules::GuestModule;

    #[test]
    fn the_order_file_round_trips() {
        let modules = [
            GuestModule {
                name: "virtio_ring".into(),
                bytes: b"r".to_vec(),
                optional: false,
            },
            GuestModule {
                name: "crc32c_intel".into(),
                bytes: b"c".to_vec(),
                optional: true,
            },
        ];
        let mut archive = Archive::default();
        add_modules(&mut archive, &modules).unwrap();
        let order = "virtio_ring.ko\ncrc32c_intel.ko optional\n";
        assert_eq!(
            parse_order(order),
            [("virtio_ring.ko", false), ("crc32c_intel.ko", true)]
        );
        let cpio = archive.finish().unwrap();
        let text = String::from_utf8_lossy(&cpio);
        assert!(
            text.contains("modules/virtio_ring.ko") && text.contains(order),
            "{text}"
        );
    }

    #[test]
    fn no_order_file_loads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_modules(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_module_that_will_not_load_is_fatal_unless_optional() {
        // Not a module at all: finit_module refuses it (or, unprivileged, EPERM).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.ko"), b"not an ELF").unwrap();
        std::fs::write(dir.path().join(ORDER_FILE), "bad.ko optional\n").unwrap();
        let skipped = load_modules(dir.path()).unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].starts_with("bad.ko: "), "{skipped:?}");
        std::fs::write(dir.path().join(ORDER_FILE), "bad.ko\n").unwrap();
        let err = load_modules(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("failed to load module") && err.contains("bad.ko"),
            "{err}"
        );
    }
}
