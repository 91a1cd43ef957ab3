//! kmod's text indexes in `/lib/modules/<release>/`, parsed: `modules.dep`
//! (`path: dep dep ...`), `modules.softdep` (`softdep name pre: a b post: c`),
//! `modules.alias` (`alias pattern name`) and `modules.builtin` (one path a
//! line). Depmod writes these on every distribution (Debian, Fedora, Ubuntu
//! alike); the `.bin` files beside them hold the same facts in a trie.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A module's name as kmod compares it: its file name without `.ko` and
/// any compression suffix, with `-` read as `_`.
pub(crate) fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// The soft dependencies of one module.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SoftDeps {
    /// Loaded before the module, when they can be.
    pub pre: Vec<String>,
    /// Loaded after it, when they can be.
    pub post: Vec<String>,
}

/// The parsed indexes of one modules directory.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// Name -> (path relative to the directory, its hard dependencies' paths).
    pub deps: HashMap<String, (String, Vec<String>)>,
    /// Name -> its soft dependencies (`modules.softdep`).
    pub softdeps: HashMap<String, SoftDeps>,
    /// Alias -> module names, in file order (an alias may name several:
    /// `crc32c` is both `crc32c_intel` and `crc32c_generic`).
    pub aliases: HashMap<String, Vec<String>>,
    /// Names of the modules built into the kernel image.
    pub builtin: Vec<String>,
}

impl ModuleIndex {
    /// Reads the indexes of `dir`; only `modules.dep` must be there.
    pub fn read(dir: &Path) -> Result<ModuleIndex> {
        let dep_file = dir.join("modules.dep");
        let dep = fs::read_to_string(&dep_file).with_context(|| {
            format!(
                "failed to read `{}`: the kernel's modules are not installed (or depmod never ran)",
                dep_file.display()
            )
        })?;
        let optional = |name: &str| -> Result<String> {
            let path: PathBuf = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e).with_context(|| format!("failed to read `{}`", path.display())),
            }
        };
        Ok(ModuleIndex {
            deps: parse_dep(&dep),
            softdeps: parse_softdep(&optional("modules.softdep")?),
            aliases: parse_alias(&optional("modules.alias")?),
            builtin: optional("modules.builtin")?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| module_name(l.trim()))
                .collect(),
        })
    }

    /// Whether `name` is built into the kernel (`modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.iter().any(|b| b == name)
    }
}

/// `modules.dep`: `kernel/a/x.ko.xz: kernel/b/y.ko.xz kernel/c/z.ko.xz`.
pub(crate) fn parse_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(path, deps)| {
            let path = path.trim().to_owned();
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            (module_name(&path), (path, deps))
        })
        .collect()
}

/// `modules.softdep`: `softdep btrfs pre: sha256 crc32c post: x`; several
/// lines for one module add up.
pub(crate) fn parse_softdep(text: &str) -> HashMap<String, SoftDeps> {
    let mut all: HashMap<String, SoftDeps> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(name) = words.next() else { continue };
        let entry = all.entry(module_name(name)).or_default();
        let mut into_post = None;
        for word in words {
            match word {
                "pre:" => into_post = Some(false),
                "post:" => into_post = Some(true),
                dep => match into_post {
                    Some(false) => entry.pre.push(dep.to_owned()),
                    Some(true) => entry.post.push(dep.to_owned()),
                    None => {}
                },
            }
        }
    }
    all
}

/// `modules.alias`: `alias crypto-crc32c crc32c_intel`. Device patterns
/// (`pci:v*d*...`) are kept too, though only exact names are looked up:
/// softdeps name modules or crypto aliases, never devices.
pub(crate) fn parse_alias(text: &str) -> HashMap<String, Vec<String>> {
    let mut all: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(alias), Some(module)) =
            (words.next(), words.next(), words.next())
        {
            all.entry(alias.to_owned())
                .or_default()
                .push(module_name(module));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_directories_suffixes_and_dashes() {
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio_mmio.ko.xz"),
            "virtio_mmio"
        );
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(module_name("a/b.ko.zst"), "b");
        assert_eq!(module_name("crc32c-generic"), "crc32c_generic");
    }

    #[test]
    fn the_three_text_indexes_parse() {
        let deps = parse_dep(
            "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n",
        );
        assert_eq!(
            deps["virtio_mmio"],
            (
                "kernel/drivers/virtio/virtio_mmio.ko".to_owned(),
                vec![
                    "kernel/drivers/virtio/virtio.ko".to_owned(),
                    "kernel/drivers/virtio/virtio_ring.ko".to_owned()
                ]
            )
        );
        assert!(deps["virtio_ring"].1.is_empty());

        let soft = parse_softdep(
            "# comment\nsoftdep btrfs pre: sha256\nsoftdep btrfs pre: crypto-crc32c post: zz\nsoftdep x\n",
        );
        assert_eq!(soft["btrfs"].pre, ["sha256", "crypto-crc32c"]);
        assert_eq!(soft["btrfs"].post, ["zz"]);
        assert_eq!(soft["x"], SoftDeps::default());

        let aliases = parse_alias(
            "# Aliases extracted from modules themselves.\n\
             alias crc32c crc32c-intel\nalias crc32c crc32c_generic\nalias pci:v*d* virtio_pci\n",
        );
        assert_eq!(aliases["crc32c"], ["crc32c_intel", "crc32c_generic"]);
        assert_eq!(aliases["pci:v*d*"], ["virtio_pci"]);
    }
}
