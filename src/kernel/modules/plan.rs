//! Which module files to load, in what order: the closure of the modules a
//! guest needs under their hard dependencies (`modules.dep`) and soft ones
//! (`modules.softdep`, names resolved through `modules.alias`), as
//! `modprobe` would load them.
//!
//! A module comes after everything it depends on; a softdep's `pre:`
//! modules before it, its `post:` ones after. A needed module that is
//! built in is skipped; one that is neither built in nor installed is an
//! error. Softdeps are best effort, as in kmod: one that names nothing
//! installed is skipped, and one that fails to load in the guest is only
//! reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::index::{ModuleIndex, module_name};

/// One module file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModule {
    pub name: String,
    /// The installed file, possibly compressed.
    pub path: PathBuf,
    /// A softdep's module: its failure to load is not the guest's failure.
    pub optional: bool,
}

/// The modules `wanted` needs from the modules directory `dir` (indexed as
/// `index`), in load order.
pub fn load_order(index: &ModuleIndex, dir: &Path, wanted: &[&str]) -> Result<Vec<PlannedModule>> {
    let mut walk = Walk {
        index,
        dir,
        order: Vec::new(),
        seen: HashMap::new(),
    };
    for name in wanted {
        walk.visit(name, false, name)?;
    }
    Ok(walk.order)
}

struct Walk<'a> {
    index: &'a ModuleIndex,
    dir: &'a Path,
    order: Vec<PlannedModule>,
    /// Modules entered, with their place in `order` once placed (a cycle,
    /// which depmod refuses anyway, then ends at the module entered first).
    seen: HashMap<String, Option<usize>>,
}

impl Walk<'_> {
    /// Places module or alias `raw`; `wanted_by` names who asked, for the error.
    fn visit(&mut self, raw: &str, optional: bool, wanted_by: &str) -> Result<()> {
        let name = module_name(raw);
        let name = name.as_str();
        let Some((path, deps)) = self.index.deps.get(name) else {
            if self.index.is_builtin(name) {
                return Ok(());
            }
            // Aliases keep their dashes (`crypto-crc32c`); module names do not.
            let aliased = self
                .index
                .aliases
                .get(raw)
                .or_else(|| self.index.aliases.get(name));
            if let Some(targets) = aliased.cloned() {
                // Any one of an alias's modules will do, so none is required.
                for target in targets {
                    self.visit(&target, true, wanted_by)?;
                }
                return Ok(());
            }
            if optional {
                return Ok(());
            }
            bail!(
                "the kernel needs module `{name}` (for `{wanted_by}`), which is neither in `{}` \
                 nor built in (`modules.builtin`): install the modules of this very kernel release \
                 (Debian and Ubuntu: its linux-image package; Fedora: kernel-modules-core), \
                 or run `depmod` if they are there",
                self.dir.join("modules.dep").display()
            );
        };
        if let Some(placed) = self.seen.get(name) {
            // Needed after all by a module that requires it.
            if let Some(at) = placed.filter(|_| !optional) {
                self.order[at].optional = false;
            }
            return Ok(());
        }
        let full = self.dir.join(path);
        if !full.is_file() {
            if optional {
                return Ok(());
            }
            bail!(
                "the kernel needs module `{name}` (for `{wanted_by}`), which `{}` lists as `{}`, \
                 but that file is missing: reinstall this kernel's modules",
                self.dir.join("modules.dep").display(),
                full.display()
            );
        }
        self.seen.insert(name.to_owned(), None);
        let soft = self.index.softdeps.get(name).cloned().unwrap_or_default();
        for pre in &soft.pre {
            self.visit(pre, true, name)?;
        }
        for dep in deps {
            self.visit(dep, optional, name)?;
        }
        self.seen.insert(name.to_owned(), Some(self.order.len()));
        self.order.push(PlannedModule {
            name: name.to_owned(),
            path: full,
            optional,
        });
        for post in &soft.post {
            self.visit(post, true, name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::{parse_alias, parse_dep, parse_softdep};
    use super::*;

    /// A modules directory with these index texts and an empty file for
    /// every module `modules.dep` lists, except those in `absent`.
    fn tree(
        dep: &str,
        softdep: &str,
        alias: &str,
        absent: &[&str],
    ) -> (tempfile::TempDir, ModuleIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = ModuleIndex {
            deps: parse_dep(dep),
            softdeps: parse_softdep(softdep),
            aliases: parse_alias(alias),
            builtin: vec!["virtio".into()],
        };
        for (name, (path, _)) in &index.deps {
            if !absent.contains(&name.as_str()) {
                let file = dir.path().join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, b"").unwrap();
            }
        }
        (dir, index)
    }

    fn names(order: &[PlannedModule]) -> Vec<(&str, bool)> {
        order
            .iter()
            .map(|m| (m.name.as_str(), m.optional))
            .collect()
    }

    const DEP: &str = "k/virtio_mmio.ko.xz: k/virtio_ring.ko.xz\n\
                       k/virtio_blk.ko.xz: k/virtio_ring.ko.xz\n\
                       k/virtio_ring.ko.xz:\n\
                       k/btrfs.ko.xz: k/xor.ko.xz k/libcrc32c.ko.xz\n\
                       k/xor.ko.xz:\nk/libcrc32c.ko.xz:\n\
                       k/crc32c-intel.ko.xz:\nk/crc32c_generic.ko.xz:\nk/post.ko.xz:\n";
    const SOFTDEP: &str = "softdep btrfs pre: crypto-crc32c nosuch post: post\n\
                           softdep libcrc32c pre: crc32c\n";
    const ALIAS: &str = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
                         alias crc32c crc32c_intel\n";

    #[test]
    fn dependencies_come_first_and_each_module_once() {
        let (dir, index) = tree(DEP, SOFTDEP, ALIAS, &[]);
        let order =
            load_order(&index, dir.path(), &["virtio_mmio", "virtio-blk", "virtio"]).unwrap();
        // virtio is built in: nothing to load.
        assert_eq!(
            names(&order),
            [
                ("virtio_ring", false),
                ("virtio_mmio", false),
                ("virtio_blk", false)
            ]
        );
        assert_eq!(order[1].path, dir.path().join("k/virtio_mmio.ko.xz"));
    }

    #[test]
    fn softdeps_go_through_aliases_and_are_optional() {
        let (dir, index) = tree(DEP, SOFTDEP, ALIAS, &[]);
        let order = load_order(&index, dir.path(), &["btrfs"]).unwrap();
        assert_eq!(
            names(&order),
            [
                ("crc32c_intel", true),
                ("crc32c_generic", true),
                ("xor", false),
                ("libcrc32c", false),
                ("btrfs", false),
                ("post", true),
            ]
        );
        // A module first met as a softdep, then needed outright, is required.
        let order = load_order(&index, dir.path(), &["btrfs", "crc32c_generic"]).unwrap();
        assert!(
            order
                .iter()
                .any(|m| m.name == "crc32c_generic" && !m.optional)
        );
    }

    #[test]
    fn a_missing_module_is_named_and_a_missing_softdep_is_skipped() {
        let (dir, index) = tree(DEP, SOFTDEP, ALIAS, &[]);
        let err = load_order(&index, dir.path(), &["virtio_mmio", "virtio_scsi"]).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("`virtio_scsi`") && err.contains("modules.dep"),
            "{err}"
        );

        let (dir, index) = tree(DEP, SOFTDEP, ALIAS, &["virtio_ring", "post"]);
        let err = load_order(&index, dir.path(), &["virtio_blk"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`virtio_ring` (for `virtio_blk`)") && err.contains("file is missing"),
            "{err}"
        );
        // The softdep `post` is missing too, and only skipped.
        let order = load_order(&index, dir.path(), &["xor"]).unwrap();
        assert_eq!(names(&order), [("xor", false)]);
    }
}
