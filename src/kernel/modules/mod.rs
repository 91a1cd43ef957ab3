//! A stock kernel's modules, made ready for the template guest: which ones
//! it needs ([`GUEST_NEEDS`] and their closure, [`plan`]), read from kmod's
//! indexes ([`index`]) and decompressed on the host ([`decompress`]), and
//! refused before any boot when the kernel would refuse them (an unsigned
//! module for a kernel that enforces signatures).
//!
//! The guest needs only its disk: the formatter runs in user space, and the
//! magic check reads `/dev/vda` raw, so no filesystem module is loaded.

pub(crate) mod decompress;
pub(crate) mod index;
pub(crate) mod plan;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use self::index::ModuleIndex;

/// What the template guest loads: the virtio-mmio transport and the block
/// driver behind `/dev/vda` (their dependencies, `virtio` and
/// `virtio_ring` where those are modules, come with them).
pub const GUEST_NEEDS: &[&str] = &["virtio_mmio", "virtio_blk"];

/// The marker `scripts/sign-file` appends after a module's signature.
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Whether a kernel refuses unsigned modules, as its config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    /// Unsigned modules load (or no config says otherwise).
    Optional,
    /// `MODULE_SIG_FORCE` or a forced lockdown.
    Enforced,
    /// Its config exists but cannot be read; signed modules load anyway.
    Unknown { config: PathBuf, why: String },
}

/// One module, uncompressed, for the guest to load.
#[derive(Debug, Clone)]
pub struct GuestModule {
    pub name: String,
    pub bytes: Vec<u8>,
    /// A softdep: failing to load it is reported, not fatal.
    pub optional: bool,
}

/// The modules `wanted` needs from modules directory `dir`, in load order
/// and uncompressed. An unsigned one is an error where the kernel enforces
/// signatures, or where whether it does is unknown.
pub(crate) fn guest_modules(
    dir: &Path,
    wanted: &[&str],
    signatures: &Signatures,
) -> Result<Vec<GuestModule>> {
    let index = ModuleIndex::read(dir)?;
    let mut modules = Vec::new();
    for planned in plan::load_order(&index, dir, wanted)? {
        let bytes = decompress::read_module(&planned.path)?;
        let unsigned = !bytes.ends_with(SIGNATURE_MAGIC);
        match signatures {
            Signatures::Enforced if unsigned => bail!(
                "the kernel enforces module signatures, and module `{}` (`{}`) is not signed: \
                 use the modules that came with this kernel, or a kernel without \
                 CONFIG_MODULE_SIG_FORCE (for instance one built by `cargo ktstr kernel build`)",
                planned.name,
                planned.path.display()
            ),
            Signatures::Unknown { config, why } if unsigned => bail!(
                "module `{}` (`{}`) is not signed, and whether the kernel enforces module \
                 signatures is unknown: its config `{}`, which says so, cannot be read ({why}). \
                 Make the config readable ({}), or use a kernel built by \
                 `cargo ktstr kernel build`",
                planned.name,
                planned.path.display(),
                config.display(),
                super::unreadable::make_readable(config)
            ),
            _ => {}
        }
        modules.push(GuestModule {
            name: planned.name,
            bytes,
            optional: planned.optional,
        });
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A modules directory with `virtio_blk` needing `virtio_ring`, whose
    /// files hold `body`.
    fn tree(body: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("virtio_ring.ko"), body).unwrap();
        std::fs::write(k.join("virtio_blk.ko"), body).unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/virtio_blk.ko: kernel/virtio_ring.ko\nkernel/virtio_ring.ko:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn unsigned_modules_are_refused_only_where_signatures_are_enforced() {
        let dir = tree(b"\x7fELF unsigned");
        let modules = guest_modules(dir.path(), &["virtio_blk"], &Signatures::Optional).unwrap();
        let names: Vec<_> = modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["virtio_ring", "virtio_blk"]);
        let err = guest_modules(dir.path(), &["virtio_blk"], &Signatures::Enforced)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`virtio_ring`") && err.contains("not signed"),
            "{err}"
        );
        // An unreadable config leaves the policy unknown: the fact is named.
        let unknown = Signatures::Unknown {
            config: "/boot/config-6.8.0-45-generic".into(),
            why: "Permission denied (os error 13)".into(),
        };
        let err = guest_modules(dir.path(), &["virtio_blk"], &unknown)
            .unwrap_err()
            .to_string();
        for needle in [
            "`virtio_ring`",
            "whether the kernel enforces module signatures is unknown",
            "`/boot/config-6.8.0-45-generic`",
            "Permission denied",
            "dpkg-statoverride",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }

        // Signed modules load whatever the policy, known or not.
        let signed = [b"\x7fELF".as_slice(), b"sig", SIGNATURE_MAGIC].concat();
        let dir = tree(&signed);
        for signatures in [Signatures::Enforced, unknown] {
            let modules = guest_modules(dir.path(), &["virtio_blk"], &signatures).unwrap();
            assert_eq!(modules.len(), 2);
        }
    }

    /// The host's own kernels' trees, where installed (CI installs Debian's
    /// 6.1 and 6.12): the guest's needs resolve, and btrfs's closure has its
    /// dependencies before it and its crc32c softdep.
    #[test]
    fn the_installed_module_trees_resolve() {
        let Ok(entries) = std::fs::read_dir("/lib/modules") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs Debian's kernels"
            );
            return eprintln!("skipped: no /lib/modules");
        };
        let mut checked = 0;
        for dir in entries.flatten().map(|e| e.path()) {
            if !dir.join("modules.dep").is_file() {
                continue;
            }
            // Debian signs its modules: an unreadable config costs nothing.
            let unknown = Signatures::Unknown {
                config: dir.join("config"),
                why: "unreadable".into(),
            };
            let modules = guest_modules(&dir, GUEST_NEEDS, &unknown).unwrap();
            let names: Vec<_> = modules.iter().map(|m| m.name.as_str()).collect();
            assert!(
                names.ends_with(&["virtio_mmio", "virtio_blk"]),
                "{}: {names:?}",
                dir.display()
            );
            assert!(
                modules
                    .iter()
                    .all(|m| m.bytes.starts_with(b"\x7fELF") && !m.optional)
            );

            let index = ModuleIndex::read(&dir).unwrap();
            let order = plan::load_order(&index, &dir, &["btrfs"]).unwrap();
            let at = |n: &str| order.iter().position(|m| m.name == n);
            let btrfs = at("btrfs").unwrap();
            assert!(at("libcrc32c").unwrap() < btrfs && at("raid6_pq").unwrap() < btrfs);
            assert!(
                order
                    .iter()
                    .any(|m| m.name.starts_with("crc32c") && m.optional)
            );
            checked += 1;
        }
        if checked == 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI installs Debian's kernels"
            );
            eprintln!("skipped: no modules tree in /lib/modules");
        }
    }
}
