//! Who a template root admits, read from its own permission bits.
//!
//! A root that is group- or world-writable (`chmod 1777`, or a group's
//! `2775`) is *shared*: every user it admits must be able to lock, read and
//! clone what any of them published, whatever each writer's umask. So in a
//! shared root lockfiles are 0666 (as ktstr makes them) and a published
//! entry is readable, and its directory searchable, by everyone the root
//! admits; where the root is not sticky, also writable, so they can replace
//! or remove it too. In a sticky root (1777) only an entry's owner (or root)
//! can rename or remove it: the kernel says so, and `replace_refusal`
//! says it before any work.
//!
//! Any other root is *private*: its lockfiles are 0600, since flock(2) needs
//! only a descriptor, and one another user could open for reading would let
//! them block the owner's `--force` and `clean --all`.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A root's sharing, from its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sharing {
    root_mode: u32,
}

impl Sharing {
    /// The sharing of `root` (not followed if a symlink); a root that cannot
    /// be examined counts as private.
    pub(crate) fn of(root: &Path) -> Sharing {
        let root_mode = std::fs::metadata(root).map_or(0o700, |m| m.permissions().mode() & 0o7777);
        Sharing { root_mode }
    }

    #[cfg(test)]
    fn with_mode(root_mode: u32) -> Sharing {
        Sharing { root_mode }
    }

    /// Group- or world-writable.
    pub(crate) fn is_shared(self) -> bool {
        self.root_mode & 0o022 != 0
    }

    fn sticky(self) -> bool {
        self.root_mode & 0o1000 != 0
    }

    /// The permission bits of a lockfile this tool creates.
    pub(crate) fn lockfile_mode(self) -> u32 {
        if self.is_shared() { 0o666 } else { 0o600 }
    }

    /// The bits of a published entry's directory in a shared root (`None`:
    /// a private root keeps what the writer's umask gave): the owner's rwx,
    /// and for group and others what the root grants them, less write in a
    /// sticky root, where only the owner may remove an entry anyway.
    pub(crate) fn entry_dir_mode(self) -> Option<u32> {
        if !self.is_shared() {
            return None;
        }
        let others = if self.sticky() { 0o055 } else { 0o077 };
        Some(0o700 | (self.root_mode & others))
    }

    /// The bits of a published `template.img` in a shared root: its
    /// directory's, less execute.
    pub(crate) fn image_mode(self) -> Option<u32> {
        self.entry_dir_mode().map(|mode| mode & 0o666)
    }
}

/// Why this process could not replace or remove the entry `entry` (with
/// its metadata) in `root`, if it could not: naming the entry's owner, whose
/// ownership is what matters (not the root's).
pub(crate) fn replace_refusal(root: &Path, entry: &Path, meta: &Metadata) -> Option<String> {
    let me = nix::unistd::geteuid();
    if me.is_root() || meta.uid() == me.as_raw() {
        return None;
    }
    let owner = format!("{} (uid {})", user_name(meta.uid()), meta.uid());
    let sticky = std::fs::metadata(root).is_ok_and(|m| m.permissions().mode() & 0o1000 != 0);
    let writable = nix::unistd::access(entry, nix::unistd::AccessFlags::W_OK).is_ok();
    if !sticky && writable {
        return None;
    }
    let why = if sticky {
        "the root is sticky (1777), so only its owner (or root) may replace or remove it"
    } else {
        "its directory is not writable to you"
    };
    let ask = if meta.uid() == 0 {
        "root".to_owned()
    } else {
        format!("{} (or root)", user_name(meta.uid()))
    };
    Some(format!(
        "`{}` belongs to {owner}, and {why}; ask {ask} to remove it, or pass a --cache-dir of \
         your own",
        entry.display()
    ))
}

/// A user's name, or `uid N` where the user database has none for it.
pub(crate) fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_shares_what_its_bits_say() {
        let private = Sharing::with_mode(0o755);
        assert!(!private.is_shared());
        assert_eq!(private.lockfile_mode(), 0o600);
        assert_eq!(private.entry_dir_mode(), None);

        let world = Sharing::with_mode(0o1777);
        assert_eq!(world.lockfile_mode(), 0o666);
        assert_eq!(world.entry_dir_mode(), Some(0o755));
        assert_eq!(world.image_mode(), Some(0o644));

        let group = Sharing::with_mode(0o2770);
        assert_eq!(group.entry_dir_mode(), Some(0o770));
        assert_eq!(group.image_mode(), Some(0o660));
    }

    #[test]
    fn root_may_replace_anything_and_an_owner_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(replace_refusal(dir.path(), dir.path(), &meta), None);
        assert_eq!(user_name(0), "root");
    }
}
