//! Nothing the tool did not write is ever removed: random roots mixing the
//! cache's own entries and debris with a user's files and directories, some
//! named like keys or nearly so, swept by `clean --all`, `--stale` and every
//! budget. Every file of the user's survives byte for byte (a link with its
//! target), and every entry of the cache's goes under `--all`.
//!
//! A key-named directory holding nothing but a regular `template.img` is an
//! entry by definition, and the exact debris grammar is the cache's, so the
//! user's side never takes those shapes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use proptest::prelude::*;

use crate::support::{dead_pid, ktstr, magic_image, stderr};

/// What a user keeps in a directory named like (or nearly like) a key.
#[derive(Debug, Clone)]
enum UserItem {
    File(String, Vec<u8>),
    Dir(String, String, Vec<u8>),
    Link(String, String),
}

/// One name of the root.
#[derive(Debug, Clone)]
enum Item {
    /// A cache entry: a key-named directory with a magic image (or none).
    Entry { name: String, image: bool },
    /// A dead writer's staging image or staging directory.
    Debris { name: String, dir: bool },
    /// A user's directory: never empty of foreign names.
    UserDir { name: String, items: Vec<UserItem> },
    /// A user's file named like a key or nearly.
    UserFile { name: String, bytes: Vec<u8> },
}

fn hex16() -> impl Strategy<Value = String> {
    "[0-9a-f]{16}"
}

/// A key of a filesystem this tool formats.
fn key() -> impl Strategy<Value = String> {
    (prop_oneof!["btrfs", "ext4", "xfs"], 300u64..2048, hex16())
        .prop_map(|(fs, mib, hex)| format!("{fs}-{mib}m-{hex}"))
}

/// A key-shaped name this tool does not format (ktstr 0.15 knew more).
fn other_key() -> impl Strategy<Value = String> {
    (1u64..2048, hex16()).prop_map(|(mib, hex)| format!("vfat-{mib}m-{hex}"))
}

/// Names a user might have that are keys or just miss being one.
fn user_name() -> impl Strategy<Value = String> {
    prop_oneof![
        key(),
        other_key(),
        key().prop_map(|k| k[..k.len() - 1].to_owned()),
        key().prop_map(|k| k.to_uppercase()),
        key().prop_map(|k| k.replacen("m-", "-", 1)),
        key().prop_map(|k| format!("{k}.bak")),
        key().prop_map(|k| format!("{k}.tmp")),
        key().prop_map(|k| format!("{k}.tmp.x1")),
        "[a-z]{1,8}",
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn user_item() -> impl Strategy<Value = UserItem> {
    let file_name = prop_oneof![
        Just("thesis.tex".to_owned()),
        Just("template.img.bak".to_owned()),
        Just(".hidden".to_owned()),
        "[a-z]{1,6}",
    ];
    prop_oneof![
        (file_name.clone(), bytes()).prop_map(|(n, b)| UserItem::File(n, b)),
        // A directory (even one called template.img) with a file in it.
        (
            prop_oneof![Just("template.img".to_owned()), "[a-z]{1,6}"],
            file_name.clone(),
            bytes()
        )
            .prop_map(|(d, n, b)| UserItem::Dir(d, n, b)),
        // A link, even one called template.img, out of the root.
        (
            prop_oneof![Just("template.img".to_owned()), "[a-z]{1,6}"],
            "[a-z]{1,6}"
        )
            .prop_map(|(n, t)| UserItem::Link(n, t)),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (key(), any::<bool>()).prop_map(|(name, image)| Item::Entry { name, image }),
        (key(), any::<bool>()).prop_map(|(key, dir)| Item::Debris {
            name: if dir {
                format!("{key}.tmp.{{pid}}")
            } else {
                format!("template.img.in-flight.{key}.{{pid}}")
            },
            dir,
        }),
        (
            user_name(),
            prop::collection::vec(user_item(), 1..4),
            any::<bool>()
        )
            .prop_map(|(name, mut items, with_image)| {
                // Even beside a real-looking image the directory is a user's.
                if with_image {
                    items.push(UserItem::File("template.img".into(), b"img".to_vec()));
                }
                Item::UserDir { name, items }
            }),
        (user_name(), bytes()).prop_map(|(name, bytes)| Item::UserFile { name, bytes }),
    ]
}

/// Lays `items` out under `root` (each name once); the user's paths.
fn lay_out(root: &Path, items: &[Item], pid: u32) -> Vec<PathBuf> {
    let mut user = Vec::new();
    for item in items {
        match item {
            Item::Entry { name, image } => {
                let dir = root.join(name);
                if fs::create_dir(&dir).is_err() {
                    continue;
                }
                if *image {
                    magic_image(&dir.join("template.img"), Filesystem::Ext4, 1, 512);
                }
            }
            Item::Debris { name, dir } => {
                let path = root.join(name.replace("{pid}", &pid.to_string()));
                if path.exists() {
                    continue;
                }
                if *dir {
                    fs::create_dir(&path).unwrap();
                    fs::write(path.join("template.img"), b"partial").unwrap();
                } else {
                    fs::write(&path, b"partial").unwrap();
                }
            }
            Item::UserDir { name, items } => {
                let dir = root.join(name);
                if fs::create_dir(&dir).is_err() {
                    continue;
                }
                for it in items {
                    let made = match it {
                        UserItem::File(n, b) => fs::write(dir.join(n), b),
                        UserItem::Dir(d, n, b) => fs::create_dir(dir.join(d))
                            .and_then(|()| fs::write(dir.join(d).join(n), b)),
                        UserItem::Link(n, t) => {
                            symlink(Path::new("/nonexistent").join(t), dir.join(n))
                        }
                    };
                    let _ = made;
                }
                user.push(dir);
            }
            Item::UserFile { name, bytes } => {
                let path = root.join(name);
                if fs::write(&path, bytes).is_ok() && !path.is_dir() {
                    user.push(path);
                }
            }
        }
    }
    user
}

/// Every path under each of `paths` with what it holds: a file's bytes, a
/// link's target, or nothing for a directory.
fn snapshot(paths: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut all = BTreeMap::new();
    let mut pending = paths.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let held = if meta.file_type().is_symlink() {
            fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else if meta.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            b"<dir>".to_vec()
        } else {
            fs::read(&path).unwrap()
        };
        all.insert(path, held);
    }
    all
}

/// The sweeps the property holds under; `--min-free` asks for the whole
/// filesystem under `root`, which no sweep can free.
fn sweeps(root: &Path) -> Vec<Vec<String>> {
    let fs = nix::sys::statvfs::statvfs(root).unwrap();
    let whole = (fs.blocks() as u64 * fs.fragment_size() as u64).to_string();
    let sweep = |args: &[&str]| args.iter().map(|a| a.to_string()).collect();
    vec![
        sweep(&["clean"]),
        sweep(&["clean", "--all"]),
        sweep(&["clean", "--stale"]),
        sweep(&["clean", "--older-than", "0s"]),
        sweep(&["clean", "--max-size", "0"]),
        sweep(&["clean", "--min-free", &whole]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn clean_removes_nothing_it_did_not_write(
        items in prop::collection::vec(item(), 1..12),
        sweep in 0..6usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let user = lay_out(root, &items, dead_pid());
        let before = snapshot(&user);
        let args = &sweeps(root)[sweep];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ktstr(root, &args);
        // 1 is a budget not met; 2 would be a usage error.
        prop_assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
        prop_assert_eq!(snapshot(&user), before, "{:?} changed a user's file", args);
        if args == ["clean", "--all"] {
            for item in &items {
                if let Item::Entry { name, .. } = item {
                    let gone = !root.join(name).exists();
                    let users = user.iter().any(|p| p.starts_with(root.join(name)));
                    prop_assert!(gone || users, "the entry {} was kept", name);
                }
            }
        }
        // No entry: no `.locks` made (a user's root gains nothing).
        let entries = items.iter().any(|i| matches!(i, Item::Entry { .. }));
        if !entries {
            prop_assert!(!root.join(".locks").exists(), "a .locks made where no entry was");
        }
    }
}
