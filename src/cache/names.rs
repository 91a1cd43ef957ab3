//! Every name in the template root, next to its parser.
//!
//! The three debris shapes carry their owner's pid so `clean` can tell a dead
//! writer's leftovers from a live one's work in progress.

use std::borrow::Cow;
use std::ffi::OsStr;

use serde::Serialize;

use super::key::{FINGERPRINT_LEN, Key};

/// A published entry's image, inside `<key>/`.
pub(crate) const TEMPLATE_FILE: &str = "template.img";
/// Everything this tool and ktstr (0.15 and 0.50 alike) write into an entry
/// or a staging directory. A directory named like either that holds anything
/// else is a user's, never removed (see `tree::remove_owned_dir`).
pub(crate) const ENTRY_FILES: &[&str] = &[TEMPLATE_FILE];
/// The directory of per-key lockfiles. Never deleted.
pub use crate::store::lock::LOCKS_DIR;

const IN_FLIGHT_PREFIX: &str = "template.img.in-flight.";
const STAGING_DIR_INFIX: &str = ".tmp.";
const PER_TEST_PREFIX: &str = ".per-test-";
const PER_TEST_SUFFIX: &str = ".img";
const REPLACED_SUFFIX: &str = ".old";

/// The shape of a piece of debris.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebrisKind {
    /// `template.img.in-flight.<key>.<pid>`: a staging image.
    InFlight,
    /// `<key>.tmp.<pid>/`: a publish staging directory.
    StagingDir,
    /// `.per-test-<pid>-<ns>-<rnd>.img`: a per-test clone; `ns` and `rnd`
    /// in lower-case hex, as ktstr 0.15 writes them.
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
pub(crate) enum RootName {
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
///
/// Only the exact debris grammar counts, so a `--cache-dir` aimed at the
/// wrong directory never offers a user's `backup.tmp.4000000/` for removal:
/// `<key>` below is key-shaped (`<fs>-<MiB>m-<16 hex>`, any lowercase fs name
/// so ktstr 0.15's keys qualify too).
pub(crate) fn classify(name: &OsStr) -> RootName {
    let Some(name) = name.to_str() else {
        return RootName::NotUtf8;
    };
    if name == LOCKS_DIR {
        return RootName::Locks;
    }
    // template.img.in-flight.<key>.<pid>
    if let Some((_, pid)) = name
        .strip_prefix(IN_FLIGHT_PREFIX)
        .and_then(|r| r.rsplit_once('.'))
        .filter(|(key, _)| key_shaped(key))
    {
        return debris(DebrisKind::InFlight, pid);
    }
    // .per-test-<pid>-<ns hex>-<rnd hex>.img
    if let Some(rest) = name
        .strip_prefix(PER_TEST_PREFIX)
        .and_then(|r| r.strip_suffix(PER_TEST_SUFFIX))
    {
        let fields: Vec<&str> = rest.split('-').collect();
        if let [pid, nanos, rnd] = fields[..]
            && lower_hex(nanos, NANOS_HEX_MAX)
            && lower_hex(rnd, RND_HEX_MAX)
        {
            return debris(DebrisKind::PerTest, pid);
        }
        return RootName::Other;
    }
    // <key>.tmp.<pid> or <key>.old.tmp.<pid>
    if let Some((stem, pid)) = name.rsplit_once(STAGING_DIR_INFIX) {
        let key = stem.strip_suffix(REPLACED_SUFFIX).unwrap_or(stem);
        if key_shaped(key) {
            return debris(DebrisKind::StagingDir, pid);
        }
    }
    RootName::Other
}

/// Whether `name` is one plain name in a directory: not empty, `.` or `..`,
/// and without a `/` or NUL (a plan must not lead out of its root).
pub(crate) fn is_plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// `<fs>-<MiB>m-<16 lowercase hex>` with any lowercase alphanumeric `fs`.
pub(crate) fn key_shaped(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(fs), Some(mib), Some(fp)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    !fs.is_empty()
        && fs
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && mib.strip_suffix('m').is_some_and(digits)
        && fp.len() == FINGERPRINT_LEN
        && fp.bytes().all(hex)
}

/// The per-test fields' widest forms: a u128 of nanoseconds and a u64, in
/// hex without padding (ktstr 0.15 `{ns:x}` and `{rnd:x}`). Decimal nanos,
/// which cargo-ktstr wrote before, are hex digits too.
const NANOS_HEX_MAX: usize = 32;
const RND_HEX_MAX: usize = 16;

/// One to `max` lower-case hex digits.
fn lower_hex(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Debris of `kind` when `pid` looks like a number at all (a signed or
/// out-of-range one is debris never touched); anything else is a user's name.
fn debris(kind: DebrisKind, pid: &str) -> RootName {
    if !pid
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'+' || b == b'-')
    {
        return RootName::Other;
    }
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
pub(crate) fn in_flight(key: &Key, pid: u32) -> String {
    format!("{IN_FLIGHT_PREFIX}{key}.{pid}")
}

/// `<key>.tmp.<pid>`
pub(crate) fn staging_dir(key: &Key, pid: u32) -> String {
    format!("{key}{STAGING_DIR_INFIX}{pid}")
}

/// `<key>.old.tmp.<pid>`: a replaced entry moved aside where the filesystem
/// cannot exchange two names; the staging-directory debris shape.
pub(crate) fn replaced_dir(key: &Key, pid: u32) -> String {
    format!("{key}{REPLACED_SUFFIX}{STAGING_DIR_INFIX}{pid}")
}

/// `.per-test-<pid>-<ns>-<rnd>.img`, both numbers in unpadded lower-case
/// hex: ktstr 0.15's own shape, so either tool's per-test names are one.
pub(crate) fn per_test(pid: u32, nanos: u128, rnd: u64) -> String {
    format!("{PER_TEST_PREFIX}{pid}-{nanos:x}-{rnd:x}{PER_TEST_SUFFIX}")
}

/// `name` for a line of text output, its control characters escaped (`\n`):
/// a newline in a name must not forge a line of a report.
pub(crate) fn shown(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_control) {
        Cow::Owned(name.escape_debug().to_string())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Capacity;
    use crate::formatter::filesystem::Filesystem;
    use proptest::prelude::*;

    const K: &str = "btrfs-256m-a1b2c3d4e5f6a7b8";

    #[test]
    fn documented_examples() {
        let cases = [
            (
                format!("template.img.in-flight.{K}.4242"),
                DebrisKind::InFlight,
                Some(4242),
            ),
            (format!("{K}.tmp.77"), DebrisKind::StagingDir, Some(77)),
            (format!("{K}.old.tmp.78"), DebrisKind::StagingDir, Some(78)),
            // ktstr 0.15 keys: other fs names and sizes, same grammar.
            (
                "vfat-8m-0123456789abcdef.tmp.5".into(),
                DebrisKind::StagingDir,
                Some(5),
            ),
            (
                ".per-test-9-123456789-abcdef.img".into(),
                DebrisKind::PerTest,
                Some(9),
            ),
            (
                format!("template.img.in-flight.{K}.0"),
                DebrisKind::InFlight,
                None,
            ),
            (
                format!("template.img.in-flight.{K}.-5"),
                DebrisKind::InFlight,
                None,
            ),
            (
                format!("template.img.in-flight.{K}.+5"),
                DebrisKind::InFlight,
                None,
            ),
            (
                format!("template.img.in-flight.{K}.2147483648"),
                DebrisKind::InFlight,
                None,
            ),
            (format!("{K}.tmp."), DebrisKind::StagingDir, None),
            (".per-test-0-1-a.img".into(), DebrisKind::PerTest, None),
            // ktstr 0.15's own per-test clone (`{ns:x}`, `{rnd:x}`), and one
            // whose clock read failed (`unwrap_or(0)`).
            (
                ".per-test-7970-18ed326334bfd9f9-f29e8c64b4ae6027.img".into(),
                DebrisKind::PerTest,
                Some(7970),
            ),
            (".per-test-12-0-7.img".into(), DebrisKind::PerTest, Some(12)),
            // Widest fields: u128 nanos, u64 rnd.
            (
                format!(".per-test-3-{:x}-{:x}.img", u128::MAX, u64::MAX),
                DebrisKind::PerTest,
                Some(3),
            ),
        ];
        for (name, kind, pid) in cases {
            assert_eq!(
                classify(OsStr::new(&name)),
                RootName::Debris { kind, pid },
                "{name}"
            );
        }
    }

    #[test]
    fn entries_locks_and_user_files_are_not_debris() {
        for name in [
            K,
            "template.img",
            "template.img.in-flight",
            ".per-test-1",
            // What a misdirected --cache-dir (a home directory) may hold.
            "backup.tmp.4000000",
            "notes.tmp.4000001",
            "x.tmp.y.tmp.12",
            ".per-test-4000002-notes.img",
            ".per-test-4000002-1-a-b.img",
            ".per-test-4000002-1-.img",
            // Near misses of the hex fields: upper case, not hex, a prefix,
            // wider than a u128 or a u64.
            ".per-test-4000002-18ED3263-f29e.img",
            ".per-test-4000002-18ed-F29E.img",
            ".per-test-4000002-1g-f29e.img",
            ".per-test-4000002-0x18ed-f29e.img",
            ".per-test-4000002-100000000000000000000000000000000-1.img",
            ".per-test-4000002-1-10000000000000000.img",
            "template.img.in-flight.k.12",
            "template.img.in-flight.notes.12",
            "btrfs-256m-a1b2c3d4e5f6a7b8.bak.tmp.3",
            "Btrfs-256m-a1b2c3d4e5f6a7b8.tmp.3",
            "btrfs-256m-a1b2c3d4e5f6a7b8x.tmp.3",
            "btrfs-256-a1b2c3d4e5f6a7b8.tmp.3",
        ] {
            assert_eq!(classify(OsStr::new(name)), RootName::Other, "{name}");
        }
        assert_eq!(classify(OsStr::new(".locks")), RootName::Locks);
    }

    /// The exact format string ktstr 0.15 names its per-test clones with
    /// (`src/vmm/setup/mod.rs`), against ours.
    #[test]
    fn per_test_names_are_ktstrs() {
        let (pid, ns, rnd) = (7970u32, 0x18ed326334bfd9f9u128, 0xf29e8c64b4ae6027u64);
        let ktstr = format!(".per-test-{pid}-{ns:x}-{rnd:x}.img");
        assert_eq!(per_test(pid, ns, rnd), ktstr);
        assert_eq!(
            ktstr,
            ".per-test-7970-18ed326334bfd9f9-f29e8c64b4ae6027.img"
        );
        // No padding: a small random number stays short, as ktstr writes it.
        assert_eq!(per_test(5, 255, 10), ".per-test-5-ff-a.img");
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

        /// Names assembled from the pieces debris names are made of (and
        /// near misses of them): whatever the classifier calls debris must
        /// match the documented grammar, checked here by a separate matcher.
        #[test]
        fn only_the_documented_grammar_is_debris(parts in proptest::collection::vec(piece(), 1..7)) {
            let name = parts.concat();
            if let RootName::Debris { kind, .. } = classify(OsStr::new(&name)) {
                prop_assert!(grammar(&name) == Some(kind), "{:?} as {:?}", name, kind);
            }
        }

        #[test]
        fn keys_are_never_debris(fs in 0usize..3, mib in 16u64..100_000, fp in "[0-9a-f]{16}") {
            let key = Key::new(Filesystem::ALL[fs], Capacity::from_mib(mib).unwrap(), &fp);
            prop_assert_eq!(classify(OsStr::new(&key.to_string())), RootName::Other);
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(IN_FLIGHT_PREFIX.to_owned()),
            Just(PER_TEST_PREFIX.to_owned()),
            Just(STAGING_DIR_INFIX.to_owned()),
            Just(".old".to_owned()),
            Just(".img".to_owned()),
            Just("-".to_owned()),
            Just(".".to_owned()),
            Just(K.to_owned()),
            "[a-z0-9]{1,5}-[0-9]{1,4}m-[0-9a-f]{15,17}",
            "[0-9]{1,11}",
            "[0-9a-f]{1,18}",
            "[0-9a-fA-F]{30,34}",
            "[a-zA-Z]{1,8}",
        ]
    }

    /// The documented debris grammar, written as a right-to-left scan,
    /// independently of [`classify`].
    fn grammar(name: &str) -> Option<DebrisKind> {
        let pid_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit() || "+-".contains(c));
        let key_ok = |s: &str| {
            let fp = s.get(s.len().checked_sub(16)?..)?;
            let head = s[..s.len() - 16].strip_suffix("m-")?;
            let (fs, mib) = head.rsplit_once('-')?;
            let ok = fp
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                && !mib.is_empty()
                && mib.chars().all(|c| c.is_ascii_digit())
                && !fs.is_empty()
                && fs
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            ok.then_some(())
        };
        if let Some(rest) = name.strip_prefix("template.img.in-flight.") {
            let (key, pid) = rest.rsplit_once('.')?;
            return (key_ok(key).is_some() && pid_ok(pid)).then_some(DebrisKind::InFlight);
        }
        if let Some(rest) = name
            .strip_prefix(".per-test-")
            .and_then(|r| r.strip_suffix(".img"))
        {
            let hex = |s: &str, max: usize| {
                !s.is_empty() && s.len() <= max && s.chars().all(|c| "0123456789abcdef".contains(c))
            };
            let f: Vec<&str> = rest.split('-').collect();
            let ok = f.len() == 3 && pid_ok(f[0]) && hex(f[1], 32) && hex(f[2], 16);
            return ok.then_some(DebrisKind::PerTest);
        }
        let (stem, pid) = name.rsplit_once(".tmp.")?;
        let key = stem.strip_suffix(".old").unwrap_or(stem);
        (key_ok(key).is_some() && pid_ok(pid)).then_some(DebrisKind::StagingDir)
    }
}
