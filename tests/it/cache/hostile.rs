//! Hostile cache contents: links named like debris and like entries that lead
//! out of the root, FIFOs, sockets, read-only trees, names with newlines or
//! bytes that are not UTF-8, 255-byte names, pid fields past i32, a `.locks`
//! that is a file, lockfiles that are links or FIFOs. `clean`, `clean --all`
//! and `template list` must leave everything outside the root byte-for-byte
//! as it was, never hang (each run is killed after a minute), and say what
//! they skipped and why.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::{
    current_key, dead_pid, ktstr, ktstr_ok, magic_image, populate, prerequisite, stderr, stdout,
};

const KEY: &str = "btrfs-256m-a1b2c3d4e5f6a7b8";
const OTHER: &str = "ext4-64m-0011223344556677";
/// An entry whose `template.img` is a directory.
const DIR_IMAGE: &str = "xfs-300m-1111111111111111";
/// An entry whose `template.img` is a symlink out of the root.
const LINK_IMAGE: &str = "ext4-16m-2222222222222222";
/// A symlink named like an entry, to a directory holding a valid image.
const LINK_ENTRY: &str = "ext4-16m-3333333333333333";
/// A FIFO named like an entry.
const FIFO_ENTRY: &str = "ext4-16m-4444444444444444";
/// Real (invalid) entries: empty, and a zero-filled image.
const EMPTY_ENTRY: &str = "ext4-16m-5555555555555555";
const ZERO_ENTRY: &str = "ext4-16m-6666666666666666";
/// A user's read-only tree named like a dead writer's staging directory.
const USER_TREE: &str = "btrfs-256m-a1b2c3d4e5f6a7b8.old.tmp";
const NEWLINE_DIR: &str = "btrfs-256m-a1b2c3d4e5f6a7b8\nkept forged: in use";
/// A debris-like file whose name has a newline.
const NEWLINE_FILE: &str = ".per-test-1-5-\nkept forged: x.img";

/// Every path under `dir` with its mode and its bytes (a link's target):
/// equal snapshots mean nothing there changed, byte for byte.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut all = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let bytes = if meta.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            Vec::new()
        } else if meta.file_type().is_symlink() {
            fs::read_link(&path).unwrap().into_os_string().into_vec()
        } else {
            fs::read(&path).unwrap()
        };
        all.insert(path, (meta.permissions().mode(), bytes));
    }
    all
}

/// Files and a directory holding a valid-looking image, outside the root.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), b"precious").unwrap();
    fs::create_dir(dir.path().join("entry")).unwrap();
    magic_image(
        &dir.path().join("entry").join("template.img"),
        Filesystem::Ext4,
        16,
        4096,
    );
    fs::create_dir(dir.path().join("entry").join("sub")).unwrap();
    fs::write(dir.path().join("entry").join("sub").join("f"), b"keep").unwrap();
    dir
}

/// A dead writer's read-only staging directory (or entry): its image 0444
/// in a 0555 directory.
fn read_only_staging(dir: &Path) {
    fs::create_dir(dir).unwrap();
    let image = dir.join("template.img");
    fs::write(&image, b"ro").unwrap();
    fs::set_permissions(&image, fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
}

/// A tree of read-only files in read-only (and one unreadable) directories.
fn read_only_tree(dir: &Path) {
    fs::create_dir(dir).unwrap();
    for sub in ["a", "a/b", "c"] {
        fs::create_dir(dir.join(sub)).unwrap();
    }
    for file in ["f", "a/f", "a/b/f", "c/f"] {
        fs::write(dir.join(file), b"ro").unwrap();
        fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o444)).unwrap();
    }
    for (sub, mode) in [("a/b", 0o555), ("a", 0o555), ("c", 0o000), ("", 0o555)] {
        fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The names a plain `clean` must remove: debris-shaped, dead owner.
fn seed(root: &Path, out: &Path, dead: u32) -> Vec<PathBuf> {
    let removable: Vec<PathBuf> = [
        format!("template.img.in-flight.{KEY}.{dead}"),
        format!("{KEY}.tmp.{dead}"),
        format!(".per-test-{dead}-1-2.img"),
        format!("template.img.in-flight.{OTHER}.{dead}"),
        format!(".per-test-{dead}-3-4.img"),
        format!("{OTHER}.tmp.{dead}"),
        format!(".per-test-{dead}-5-6.img"),
        long_debris_name(dead),
    ]
    .iter()
    .map(|n| root.join(n))
    .collect();
    symlink(out.join("file"), &removable[0]).unwrap();
    symlink(out.join("entry"), &removable[1]).unwrap();
    symlink(out.join("file"), &removable[2]).unwrap();
    mkfifo(&removable[3]);
    drop(UnixListener::bind(&removable[4]).unwrap());
    read_only_staging(&removable[5]);
    read_only_tree(&root.join(format!("{USER_TREE}.{dead}")));
    fs::write(&removable[6], b"x").unwrap();
    fs::write(&removable[7], b"x").unwrap();

    // Never touched: not UTF-8, or a pid field that is not a positive i32.
    let raw = |bytes: &[u8]| root.join(OsStr::from_bytes(bytes));
    let with_pid = |bytes: &[u8]| [bytes, dead.to_string().as_bytes()].concat();
    fs::write(raw(&with_pid(b"template.img.in-flight.\xff.")), b"x").unwrap();
    fs::create_dir(raw(&with_pid(b"\xfe\xff.tmp."))).unwrap();
    for name in [
        format!("template.img.in-flight.{KEY}.4294967297"),
        format!("{KEY}.tmp.2147483648"),
        ".per-test-99999999999999999999999-1-2.img".into(),
        format!("{KEY}.tmp.-1"),
    ] {
        fs::write(root.join(name), b"x").unwrap();
    }
    // Newlines never fit the debris grammar: a name with one stays.
    fs::write(root.join(NEWLINE_FILE), b"x").unwrap();

    // Entry-shaped names.
    fs::create_dir_all(root.join(DIR_IMAGE).join("template.img")).unwrap();
    fs::write(root.join(DIR_IMAGE).join("template.img").join("f"), b"x").unwrap();
    fs::create_dir(root.join(LINK_IMAGE)).unwrap();
    symlink(out.join("file"), root.join(LINK_IMAGE).join("template.img")).unwrap();
    symlink(out.join("entry"), root.join(LINK_IMAGE).join("sub")).unwrap();
    symlink(out.join("entry"), root.join(LINK_ENTRY)).unwrap();
    mkfifo(&root.join(FIFO_ENTRY));
    fs::create_dir(root.join(NEWLINE_DIR)).unwrap();
    fs::create_dir(root.join(EMPTY_ENTRY)).unwrap();
    fs::create_dir(root.join(ZERO_ENTRY)).unwrap();
    fs::write(root.join(ZERO_ENTRY).join("template.img"), vec![0; 4096]).unwrap();
    fs::create_dir(root.join("k".repeat(255))).unwrap();
    fs::write(root.join(".locks"), b"not a directory").unwrap();
    removable
}

/// `template.img.in-flight.kkk…-16m-<16 hex>.<pid>`, exactly 255 bytes
/// (NAME_MAX): a long filesystem name still fits the key grammar.
fn long_debris_name(pid: u32) -> String {
    let pid = pid.to_string();
    let tail = "-16m-0123456789abcdef";
    let fill = 255 - "template.img.in-flight.".len() - tail.len() - 1 - pid.len();
    format!("template.img.in-flight.{}{tail}.{pid}", "k".repeat(fill))
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// No line of `text` is one a name with a newline forged.
fn no_forged_lines(text: &str) {
    assert!(
        !text.lines().any(|l| l.starts_with("kept forged")),
        "{text}"
    );
}

#[test]
fn hostile_roots_are_swept_without_leaving_the_root_or_hanging() {
    let (root, out) = (tempfile::tempdir().unwrap(), outside());
    let (root, out) = (root.path(), out.path());
    let removable = seed(root, out, dead_pid());
    let before = tree(out);
    let untouched = |step: &str| {
        assert_eq!(
            tree(out),
            before,
            "{step} changed something outside the root"
        );
    };

    let table = ktstr_ok(root, &["template", "list"]);
    no_forged_lines(&table);
    assert!(
        table.contains("not an entry: it holds `template.img`, which this tool never writes"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "skipped {LINK_ENTRY}: a symlink, not an entry directory"
        )),
        "{table}"
    );
    assert!(table.contains(&format!("skipped {FIFO_ENTRY}: not a directory")));
    assert!(table.contains("the name is not UTF-8"), "{table}");
    assert!(
        table.contains("debris: 4 staging images, 5 staging directories, 4 per-test images"),
        "{table}"
    );
    let doc: Value =
        serde_json::from_str(&ktstr_ok(root, &["template", "list", "--json"])).unwrap();
    let row = |name: &str| {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    assert_eq!(row(DIR_IMAGE).unwrap()["state"], "not-an-entry");
    assert_eq!(row(LINK_IMAGE).unwrap()["state"], "not-an-entry");
    assert_eq!(row(EMPTY_ENTRY).unwrap()["state"], "invalid");
    assert_eq!(row(NEWLINE_DIR).unwrap()["state"], "invalid");
    assert!(row(LINK_ENTRY).is_none());
    untouched("template list");

    let dry = ktstr_ok(root, &["clean", "--dry-run"]);
    no_forged_lines(&dry);
    assert!(dry.contains("would remove 8 debris entries"), "{dry}");
    assert!(!dry.contains("forged"), "{dry}");
    assert!(
        removable.iter().all(|p| exists(p)),
        "a dry run removed something"
    );
    untouched("clean --dry-run");

    let run = ktstr(root, &["-v", "clean"]);
    let text = stdout(&run);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(text.contains("removed 8 debris entries"), "{text}");
    assert!(text.contains("skipped 7"), "{text}");
    assert!(
        text.contains("it holds `a`, which this tool never writes there; left alone")
            || text.contains("it holds `c`, which this tool never writes there; left alone")
            || text.contains("it holds `f`, which this tool never writes there; left alone"),
        "{text}"
    );
    assert_eq!(
        text.matches("the name is not UTF-8; left alone").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("pid field is not a positive number").count(),
        4,
        "{text}"
    );
    for path in &removable {
        assert!(!exists(path), "{} left", path.display());
    }
    for name in [
        format!("template.img.in-flight.{KEY}.4294967297"),
        format!("{KEY}.tmp.2147483648"),
        format!("{KEY}.tmp.-1"),
        NEWLINE_FILE.into(),
        format!("{USER_TREE}.{}", removable_pid(&removable)),
    ] {
        assert!(root.join(&name).exists(), "{name} removed");
    }
    untouched("clean");

    // `.locks` is a file: entries cannot be locked, so none goes.
    let text = ktstr_ok(root, &["clean", "--all"]);
    assert!(
        text.contains("is not a directory; no entry was removed"),
        "{text}"
    );
    assert!(root.join(EMPTY_ENTRY).exists() && root.join(ZERO_ENTRY).exists());
    assert_eq!(fs::read(root.join(".locks")).unwrap(), b"not a directory");
    untouched("clean --all with a file for .locks");

    // Lockfiles that are a dangling link out of the root and a FIFO.
    fs::remove_file(root.join(".locks")).unwrap();
    fs::create_dir(root.join(".locks")).unwrap();
    let lured = out.join("created-through-a-link");
    symlink(
        &lured,
        root.join(".locks").join(format!("{EMPTY_ENTRY}.lock")),
    )
    .unwrap();
    mkfifo(&root.join(".locks").join(format!("{ZERO_ENTRY}.lock")));
    let before = tree(out);
    let untouched = |step: &str| {
        assert_eq!(
            tree(out),
            before,
            "{step} changed something outside the root"
        );
        assert!(!exists(&lured), "{step} created a file through a link");
    };
    let dry = ktstr_ok(root, &["clean", "--all", "--dry-run"]);
    no_forged_lines(&dry);
    untouched("clean --all --dry-run");

    let text = ktstr_ok(root, &["clean", "--all"]);
    no_forged_lines(&text);
    untouched("clean --all");
    assert!(
        text.contains(&format!("skipped {LINK_ENTRY}: a symlink")),
        "{text}"
    );
    assert!(
        text.contains(&format!("skipped {FIFO_ENTRY}: not a directory")),
        "{text}"
    );
    assert!(
        text.contains("\\nkept forged: in use: not named like a template key"),
        "{text}"
    );
    assert!(
        text.contains(&format!("skipped {}: not named like", "k".repeat(255))),
        "{text}"
    );
    // Named like entries, holding what no writer of the cache makes: stay.
    for name in [DIR_IMAGE, LINK_IMAGE] {
        assert!(
            text.contains(&format!("skipped {name}: not an entry: it holds `")),
            "{text}"
        );
        assert!(root.join(name).is_dir(), "{name} removed");
    }
    // The entry behind a symlinked lockfile cannot be locked: it stays.
    assert!(root.join(EMPTY_ENTRY).exists(), "{text}");
    assert!(text.contains("failed to remove 1"), "{text}");
    assert!(!exists(&root.join(ZERO_ENTRY)), "{text}");
    assert!(exists(&root.join(LINK_ENTRY)) && exists(&root.join(FIFO_ENTRY)));
    assert!(root.join(NEWLINE_DIR).is_dir());
}

/// Runs the binary as an unprivileged user on `root` (owned by it), so that
/// read-only directories really stop removals; as itself when not root.
fn as_unprivileged(root: &Path, args: &[&str]) -> std::process::Output {
    if !nix::unistd::geteuid().is_root() {
        return ktstr(root, args);
    }
    let owned = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root)
        .status()
        .unwrap();
    assert!(owned.success());
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::support::bin())
        .arg("--cache-dir")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_dead_writers_read_only_tree_is_removed_by_its_unprivileged_owner() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    fs::create_dir(&root).unwrap();
    // The unprivileged user must reach the root.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let debris = root.join(format!("{KEY}.tmp.{}", dead_pid()));
    read_only_staging(&debris);
    let entry = root.join(KEY);
    read_only_staging(&entry);
    let out = as_unprivileged(&root, &["clean", "--all"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("removed 1 template and 1 debris entry"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(!exists(&debris) && !exists(&entry));
}

#[test]
fn cache_dir_arguments_mean_what_they_say_and_delete_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, home) = (dir.path().join("cache"), dir.path().join("home"));
    fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    fs::create_dir(&cache).unwrap();
    let debris = |n: u32| cache.join(format!(".per-test-{}-{n}-0.img", dead_pid()));
    fs::write(debris(1), b"x").unwrap();

    // `..` resolves as the user wrote it: this is the cache.
    let dotted = dir.path().join("elsewhere").join("..").join("cache");
    let text = ktstr_ok(&dotted, &["clean"]);
    assert!(text.contains("removed 1 debris entry"), "{text}");
    assert!(!debris(1).exists());

    // A symlink to the cache is the cache; the link itself stays.
    let link = dir.path().join("link");
    symlink(&cache, &link).unwrap();
    fs::write(debris(2), b"x").unwrap();
    let text = ktstr_ok(&link, &["clean", "--all"]);
    assert!(text.contains("and 1 debris entry"), "{text}");
    assert!(!debris(2).exists() && fs::symlink_metadata(&link).unwrap().is_symlink());

    // A --cache-dir pointed at a home directory by mistake loses nothing.
    for sub in ["projects", ".config", "build.tmp"] {
        fs::create_dir_all(home.join(sub)).unwrap();
        fs::write(home.join(sub).join("file"), b"mine").unwrap();
    }
    fs::write(home.join("notes.txt"), b"mine").unwrap();
    let before = tree(&home);
    let text = ktstr_ok(&home, &["clean", "--all"]);
    assert!(
        text.contains("removed 0 templates and 0 debris entries"),
        "{text}"
    );
    assert!(
        text.contains("skipped projects: not named like a template key"),
        "{text}"
    );
    let mut after = tree(&home);
    // Only the lock directory `clean --all` needs is new.
    after.remove(&home.join(".locks"));
    after.remove(&home);
    let mut before = before;
    before.remove(&home);
    assert_eq!(after, before);
}

#[test]
fn clone_destinations_mean_what_they_say_and_overwrite_nothing() {
    let formatter = cargo_ktstr::testing::formatter::fingerprint::find_formatter(Filesystem::Ext4);
    if !prerequisite("mkfs.ext4", formatter.is_ok()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let key = current_key(Filesystem::Ext4, 16);
    let template = populate(&cache, Filesystem::Ext4, 16).path;
    let template_bytes = fs::read(&template).unwrap();
    let clone = |dest: &Path| {
        ktstr(
            &cache,
            &[
                "template",
                "clone",
                "--fs",
                "ext4",
                "--capacity",
                "16M",
                dest.to_str().unwrap(),
            ],
        )
    };

    fs::create_dir(dir.path().join("a")).unwrap();
    let dotted = dir.path().join("a").join("..").join("dest.img");
    let out = clone(&dotted);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fs::read(dir.path().join("dest.img")).unwrap() == template_bytes);

    let precious = dir.path().join("precious");
    fs::write(&precious, b"precious").unwrap();
    let to_file = dir.path().join("to-file");
    symlink(&precious, &to_file).unwrap();
    let dangling = dir.path().join("dangling");
    let lured = dir.path().join("lured");
    symlink(&lured, &dangling).unwrap();
    for dest in [&to_file, &dangling, &template] {
        let out = clone(dest);
        // A usage error (exit 2), said before any build.
        assert_eq!(out.status.code(), Some(2), "{}", dest.display());
        assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    }
    assert_eq!(fs::read(&precious).unwrap(), b"precious");
    assert!(!exists(&lured));
    assert!(fs::read(&template).unwrap() == template_bytes);

    let missing_dir = dir.path().join("no").join("such").join("dest.img");
    let out = clone(&missing_dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not exist: create it first"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("no").exists());
    let names: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the entry and .locks: {names:?} ({key})"
    );
}

/// The dead pid the seeded debris names carry.
fn removable_pid(removable: &[PathBuf]) -> String {
    let name = removable[0].file_name().unwrap().to_str().unwrap();
    name.rsplit('.').next().unwrap().to_owned()
}
