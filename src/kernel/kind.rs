//! What a cached kernel is for, and so which config fragments it is built
//! from: the template guest's kernel, or the KVM host that boots it in the
//! nested-KVM test lane.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The template guest's needs: merged onto tinyconfig for every kind.
const TEMPLATE_FRAGMENT: &str = include_str!("template.config");
/// KVM with AMD SVM built in, merged after [`TEMPLATE_FRAGMENT`].
const KVM_HOST_FRAGMENT: &str = include_str!("kvm-host.config");

/// Hex characters of the fragment hash kept in a kernel's cache name.
const FRAGMENT_HASH_LEN: usize = 12;

/// The infix that marks a KVM-host kernel's cache name.
const KVM_HOST_INFIX: &str = "-kvm-host-";

/// A kind of kernel `kernel build` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelKind {
    /// Boots the template guest: tinyconfig plus `template.config`.
    Template,
    /// A KVM host for the nested lane: the template kernel plus
    /// `kvm-host.config`, so it can also run the template guest itself.
    KvmHost,
}

impl KernelKind {
    /// Its config fragments, as (file name, text), in merge order.
    pub fn fragments(self) -> &'static [(&'static str, &'static str)] {
        match self {
            KernelKind::Template => &[("template.config", TEMPLATE_FRAGMENT)],
            KernelKind::KvmHost => &[
                ("template.config", TEMPLATE_FRAGMENT),
                ("kvm-host.config", KVM_HOST_FRAGMENT),
            ],
        }
    }

    /// The first hex characters of SHA-256 over the fragments in order; for
    /// [`KernelKind::Template`] that is the hash of `template.config` alone,
    /// as kernels cached before kinds existed were named.
    pub fn fragment_hash(self) -> String {
        let mut hasher = Sha256::new();
        for (_, text) in self.fragments() {
            hasher.update(text.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..FRAGMENT_HASH_LEN]
            .to_owned()
    }

    /// The options the fragments turn on and off ([`fragment_options`]).
    pub fn options(self) -> (Vec<&'static str>, Vec<&'static str>) {
        fragment_options(self.fragments())
    }

    /// The cache name this kind of kernel from source `version` had before
    /// keys named the source ([`Self::keyed_name`]); still found, see
    /// `build::adopt_legacy`.
    pub fn entry_name(self, version: &str) -> String {
        match self {
            KernelKind::Template => format!("{version}-{}", self.fragment_hash()),
            KernelKind::KvmHost => format!("{version}{KVM_HOST_INFIX}{}", self.fragment_hash()),
        }
    }

    /// The cache name of this kind of kernel with key `short_key`
    /// ([`super::key::KeyInputs::short_key`]): what [`Self::entry_name`]
    /// was before keys named the source.
    pub fn keyed_name(self, version: &str, short_key: &str) -> String {
        match self {
            KernelKind::Template => format!("{version}-{short_key}"),
            KernelKind::KvmHost => format!("{version}{KVM_HOST_INFIX}{short_key}"),
        }
    }

    /// The kind of the cached kernel named `name`.
    pub fn of_entry(name: &str) -> KernelKind {
        if name.contains(KVM_HOST_INFIX) {
            KernelKind::KvmHost
        } else {
            KernelKind::Template
        }
    }
}

/// The options `fragments` turn on (`CONFIG_X=y`) and off
/// (`# CONFIG_X is not set`), for checking the merged `.config`.
pub(crate) fn fragment_options<'a>(fragments: &[(&str, &'a str)]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for line in fragments.iter().flat_map(|(_, text)| text.lines()) {
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

/// The variables `fragments` pass to make, from `# make: NAME=value ...`
/// lines: a comment to merge_config.sh, so a fragment carries compiler
/// flags too and its hash (the kernel's cache name) covers them.
pub(crate) fn make_variables<'a>(fragments: &[(&str, &'a str)]) -> Vec<&'a str> {
    fragments
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter_map(|line| line.strip_prefix("# make:"))
        .flat_map(str::split_whitespace)
        .collect()
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelKind::Template => "template",
            KernelKind::KvmHost => "kvm-host",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_fragment_has_what_the_guest_needs() {
        let (on, off) = KernelKind::Template.options();
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
    }

    #[test]
    fn make_lines_pass_variables_and_other_comments_do_not() {
        let fragments = [
            (
                "a",
                "# make: KCFLAGS=-x  V=1\n# CONFIG_A is not set\n# a make: note\n",
            ),
            ("b", "CONFIG_B=y\n# make: W=2\n"),
        ];
        assert_eq!(make_variables(&fragments), ["KCFLAGS=-x", "V=1", "W=2"]);
        assert_eq!(
            make_variables(KernelKind::Template.fragments()),
            ["KCFLAGS=-fno-builtin-memset"]
        );
    }

    #[test]
    fn a_kvm_host_is_a_template_kernel_with_kvm_amd_built_in() {
        let (template_on, _) = KernelKind::Template.options();
        let (on, off) = KernelKind::KvmHost.options();
        assert!(template_on.iter().all(|o| on.contains(o)));
        for needed in ["CONFIG_KVM", "CONFIG_KVM_AMD", "CONFIG_CPU_SUP_AMD"] {
            assert!(on.contains(&needed), "{needed}");
        }
        assert!(off.contains(&"CONFIG_KVM_INTEL") && off.contains(&"CONFIG_MODULES"));
    }

    #[test]
    fn names_tell_the_kinds_apart_and_keep_the_old_template_names() {
        let template = KernelKind::Template.entry_name("6.12.57");
        let host = KernelKind::KvmHost.entry_name("6.12.57");
        assert_ne!(template, host);
        // The template hash is the hash of template.config alone.
        let alone = Sha256::digest(TEMPLATE_FRAGMENT.as_bytes());
        let alone: String = alone.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(template, format!("6.12.57-{}", &alone[..FRAGMENT_HASH_LEN]));
        assert_eq!(KernelKind::of_entry(&template), KernelKind::Template);
        assert_eq!(KernelKind::of_entry(&host), KernelKind::KvmHost);
        assert_ne!(
            KernelKind::Template.fragment_hash(),
            KernelKind::KvmHost.fragment_hash()
        );
    }
}
