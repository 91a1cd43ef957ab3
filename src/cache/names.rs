//! Every name in the template root, next to its parser.
//!
//! The three debris shapes carry their owner's pid so `clean` can tell a dead
//! writer's leftovers from a live one's work in progress.

use std::borrow::Cow;
use std::ffi::OsStr;

use serde::Serialize;

use super::key::Key;

/// A published entry's image, inside `<key>/`.
pub const TEMPLATE_FILE: &str = "template.img";
/// The directory of per-key lockfiles. Never deleted.
pub const LOCKS_DIR: &str = ".locks";

const IN_FLIGHT_PREFIX: &str = "template.img.in-flight.";
const STAGING_DIR_INFIX: &str = ".tmp.";
const PER_TEST_PREFIX: &str = ".per-test-";
const PER_TEST_SUFFIX: &str = ".img";

/// The shape of a piece of debris.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebrisKind {
    /// `template.img.in-flight.<key>.<pid>`: a staging image.
    InFlight,
    /// `<key>.tmp.<pid>/`: a publish staging directory.
    StagingDir,
    /// `.per-test-<pid>-<ns>-<rnd>.img`: a per-test clone.
    PerTest,
}

impl DebrisKind {
    pub const ALL: [DebrisKind; 3] = [
        DebrisKind::InFlight,
        DebrisKind::StagingDir,
        DebrisKind::PerTest,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            DebrisKind::InFlight => "staging image",
            DebrisKind::StagingDir => "staging directory",
            DebrisKind::PerTest => "per-test image",
        }
    }
}

/// What a name in the template root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootName {
    /// `.locks`.
    Locks,
    /// One of the debris shapes; `pid` is `None` when the pid field does not
    /// parse to a positive i32, and such debris is never touched.
    Debris { kind: DebrisKind, pid: Option<i32> },
    /// Anything else: a published entry when it is a directory.
    Other,
    /// A name that is not UTF-8; never touched.
    NotUtf8,
}

/// Classifies one name found directly in the template root.
pub fn classify(name: &OsStr) -> RootName {
    let Some(name) = name.to_str() else {
        return RootName::NotUtf8;
    };
    if name == LOCKS_DIR {
        return RootName::Locks;
    }
    if let Some((_, pid)) = name
        .strip_prefix(IN_FLIGHT_PREFIX)
        .and_then(|r| r.rsplit_once('.'))
    {
        return debris(DebrisKind::InFlight, pid);
    }
    if let Some(rest) = name
        .strip_prefix(PER_TEST_PREFIX)
        .filter(|r| r.ends_with(PER_TEST_SUFFIX))
    {
        return debris(
            DebrisKind::PerTest,
            rest.split('-').next().unwrap_or_default(),
        );
    }
    if let Some(at) = name.rfind(STAGING_DIR_INFIX) {
        return debris(
            DebrisKind::StagingDir,
            &name[at + STAGING_DIR_INFIX.len()..],
        );
    }
    RootName::Other
}

fn debris(kind: DebrisKind, pid: &str) -> RootName {
    RootName::Debris {
        kind,
        pid: parse_pid(pid),
    }
}

/// A pid field: ASCII digits only, positive, within i32.
fn parse_pid(field: &str) -> Option<i32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// `template.img.in-flight.<key>.<pid>`
pub fn in_flight(key: &Key, pid: u32) -> String {
    format!("{IN_FLIGHT_PREFIX}{key}.{pid}")
}

/// `<key>.tmp.<pid>`
pub fn staging_dir(key: &Key, pid: u32) -> String {
    format!("{key}{STAGING_DIR_INFIX}{pid}")
}

/// `<key>.old.tmp.<pid>`: a replaced entry moved aside where the filesystem
/// cannot exchange two names; the staging-directory debris shape.
pub fn replaced_dir(key: &Key, pid: u32) -> String {
    format!("{key}.old{STAGING_DIR_INFIX}{pid}")
}

/// `.per-test-<pid>-<ns>-<rnd>.img`
pub fn per_test(pid: u32, nanos: u128, rnd: u64) -> String {
    format!("{PER_TEST_PREFIX}{pid}-{nanos}-{rnd:016x}{PER_TEST_SUFFIX}")
}

/// `<key>.lock`, inside [`LOCKS_DIR`].
pub fn lock_file(key: &str) -> String {
    format!("{key}.lock")
}

/// `name` for a line of text output, its control characters escaped (`\n`):
/// a newline in a name must not forge a line of a report.
pub fn shown(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_control) {
        Cow::Owned(name.escape_debug().to_string())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::filesystem::Filesystem;
    use crate::cache::key::Capacity;
    use proptest::prelude::*;

    #[test]
    fn documented_examples() {
        let cases = [
            (
                "template.img.in-flight.btrfs-256m-a1b2c3d4e5f6a7b8.4242",
                DebrisKind::InFlight,
                Some(4242),
            ),
            (
                "btrfs-256m-a1b2c3d4e5f6a7b8.tmp.77",
                DebrisKind::StagingDir,
                Some(77),
            ),
            (
                ".per-test-9-123456789-abcdef.img",
                DebrisKind::PerTest,
                Some(9),
            ),
            ("x.tmp.y.tmp.12", DebrisKind::StagingDir, Some(12)),
            ("template.img.in-flight.k.0", DebrisKind::InFlight, None),
            ("template.img.in-flight.k.-5", DebrisKind::InFlight, None),
            ("template.img.in-flight.k.+5", DebrisKind::InFlight, None),
            (
                "template.img.in-flight.k.2147483648",
                DebrisKind::InFlight,
                None,
            ),
            ("k.tmp.", DebrisKind::StagingDir, None),
        ];
        for (name, kind, pid) in cases {
            assert_eq!(
                classify(OsStr::new(name)),
                RootName::Debris { kind, pid },
                "{name}"
            );
        }
    }

    #[test]
    fn entries_and_locks_are_not_debris() {
        for name in [
            "btrfs-256m-a1b2c3d4e5f6a7b8",
            "template.img",
            "template.img.in-flight",
            ".per-test-1",
        ] {
            assert_eq!(classify(OsStr::new(name)), RootName::Other, "{name}");
        }
        assert_eq!(classify(OsStr::new(".locks")), RootName::Locks);
    }

    #[test]
    fn non_utf8_is_never_debris() {
        use std::os::unix::ffi::OsStrExt;
        let name = OsStr::from_bytes(b"template.img.in-flight.\xff.12");
        assert_eq!(classify(name), RootName::NotUtf8);
    }

    #[test]
    fn shown_names_keep_one_line() {
        assert_eq!(
            shown("btrfs-256m-a1b2c3d4e5f6a7b8"),
            "btrfs-256m-a1b2c3d4e5f6a7b8"
        );
        assert_eq!(shown("a\nkept b: forged"), "a\\nkept b: forged");
    }

    proptest! {
        #[test]
        fn generated_debris_parses_back_to_its_pid(
            pid in 1u32..=i32::MAX as u32,
            fs in 0usize..3,
            mib in 16u64..100_000,
            fp in "[0-9a-f]{16}",
            nanos: u128,
            rnd: u64,
        ) {
            let key = Key::new(Filesystem::ALL[fs], Capacity::from_mib(mib).unwrap(), &fp);
            let want = Some(pid as i32);
            prop_assert_eq!(
                classify(OsStr::new(&in_flight(&key, pid))),
                RootName::Debris { kind: DebrisKind::InFlight, pid: want }
            );
            prop_assert_eq!(
                classify(OsStr::new(&staging_dir(&key, pid))),
                RootName::Debris { kind: DebrisKind::StagingDir, pid: want }
            );
            prop_assert_eq!(
                classify(OsStr::new(&replaced_dir(&key, pid))),
                RootName::Debris { kind: DebrisKind::StagingDir, pid: want }
            );
            prop_assert_eq!(
                classify(OsStr::new(&per_test(pid, nanos, rnd))),
                RootName::Debris { kind: DebrisKind::PerTest, pid: want }
            );
        }

        #[test]
        fn names_outside_the_three_shapes_are_never_debris(name in "[^/\\x00]{1,64}") {
            let shaped = name.starts_with(IN_FLIGHT_PREFIX) && name[IN_FLIGHT_PREFIX.len()..].contains('.')
                || name.starts_with(PER_TEST_PREFIX) && name.ends_with(PER_TEST_SUFFIX)
                || name.contains(STAGING_DIR_INFIX);
            prop_assume!(!shaped);
            let is_debris = matches!(classify(OsStr::new(&name)), RootName::Debris { .. });
            prop_assert!(!is_debris, "{:?}", name);
        }

        #[test]
        fn keys_are_never_debris(fs in 0usize..3, mib in 16u64..100_000, fp in "[0-9a-f]{16}") {
            let key = Key::new(Filesystem::ALL[fs], Capacity::from_mib(mib).unwrap(), &fp);
            prop_assert_eq!(classify(OsStr::new(&key.to_string())), RootName::Other);
        }
    }
}
