//! One cache, two tools: what ktstr 0.15.0 writes, with its own format
//! strings and sizes, read by `clean`, `clean --all` and `template list`;
//! ours written in its shapes; capacities its formatters refuse; and
//! lockfiles shared by users of different uids.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use cargo_ktstr::testing::cache::ensure::{Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::cache::per_test::PerTestImage;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::loopfs::LoopFs;
use crate::support::{
    LiveProcess, bin, current_key, dead_pid, ktstr, ktstr_cmd, ktstr_ok, populate, stderr,
    test_xdg_cache,
};

const MIB: u64 = 1 << 20;

/// ktstr 0.15.0's names, with its own format strings: `cache_key` and the
/// staging image in `src/vmm/disk_template/mod.rs`, the staging directory in
/// its `store_atomic`, the per-test clone in `src/vmm/setup/mod.rs`.
mod ktstr_names {
    use super::*;

    pub(super) fn cache_key(tag: &str, capacity_bytes: u64, version_fp: &str) -> String {
        let mib = capacity_bytes / (1024 * 1024);
        format!("{tag}-{mib}m-{version_fp}")
    }

    pub(super) fn staging_image(cache_key: &str, pid: u32) -> String {
        format!("template.img.in-flight.{cache_key}.{pid}")
    }

    pub(super) fn staging_dir(key: &str, pid: u32) -> String {
        format!("{key}.tmp.{pid}")
    }

    pub(super) fn per_test(pid: u32) -> String {
        format!(
            ".per-test-{pid}-{ns:x}-{rnd:x}.img",
            ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            rnd = rand::random::<u64>(),
        )
    }
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// The `name`s of a report list (`removed`, `kept`, `skipped`).
fn names_in(report: &Value, list: &str) -> BTreeSet<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect()
}

/// What ktstr leaves when its processes die mid-build or mid-test: every
/// debris shape, named as it names them; returns the names.
fn lay_ktstr_debris(root: &Path, key: &str, pid: u32) -> [String; 3] {
    let image = ktstr_names::staging_image(key, pid);
    let staging = ktstr_names::staging_dir(key, pid);
    let per_test = ktstr_names::per_test(pid);
    let sparse = fs::File::create(root.join(&image)).unwrap();
    sparse.set_len(256 * MIB).unwrap();
    fs::create_dir(root.join(&staging)).unwrap();
    fs::write(root.join(&staging).join("template.img"), vec![7u8; 4096]).unwrap();
    fs::write(root.join(&per_test), vec![9u8; 4096]).unwrap();
    [image, staging, per_test]
}

#[test]
fn ktstrs_debris_of_dead_and_live_owners_is_seen_by_clean_and_list() {
    // ktstr keeps its cache on btrfs or xfs; so does this test.
    let Some(disk) = LoopFs::new("btrfs", 512) else {
        return;
    };
    let root = disk.path().join("cache");
    fs::create_dir(&root).unwrap();
    let key = ktstr_names::cache_key("btrfs", 256 * MIB, "a1b2c3d4e5f6a7b8");
    let live = LiveProcess::spawn();
    let dead: BTreeSet<String> = lay_ktstr_debris(&root, &key, dead_pid()).into();
    let alive: BTreeSet<String> = lay_ktstr_debris(&root, &key, live.pid()).into();
    // A near miss (upper-case hex, which ktstr never writes) is not debris.
    let near_miss = format!(".per-test-{}-18ED3263-f29e.img", dead_pid());
    fs::write(root.join(&near_miss), b"a user's").unwrap();

    let listed = json(&ktstr_ok(&root, &["template", "list", "--json"]));
    let debris = &listed["debris"];
    assert_eq!(
        (
            &debris["in_flight"],
            &debris["staging_dir"],
            &debris["per_test"]
        ),
        (&2.into(), &2.into(), &2.into()),
        "{listed}"
    );
    assert_eq!(names_in(&listed, "skipped"), [near_miss.clone()].into());
    let table = ktstr_ok(&root, &["template", "list"]);
    assert!(
        table.contains("debris: 2 staging images, 2 staging directories, 2 per-test images ("),
        "{table}"
    );

    let dry = ktstr_ok(&root, &["clean", "--dry-run"]);
    for name in &dead {
        assert!(dry.contains(&format!("would remove {name} (")), "{dry}");
    }
    let cleaned = json(&ktstr_ok(&root, &["clean", "--json"]));
    assert_eq!(names_in(&cleaned, "removed"), dead);
    let kinds: BTreeSet<&str> = cleaned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["in-flight", "per-test", "staging-dir"].into());
    assert_eq!(names_in(&cleaned, "kept"), alive);
    for kept in cleaned["kept"].as_array().unwrap() {
        assert_eq!(kept["pid"], live.pid(), "{kept}");
    }
    assert!(names_in(&cleaned, "skipped").is_empty(), "{cleaned}");

    // --all: the live owner's debris is kept as debris, never skipped as
    // "not an entry".
    let all = json(&ktstr_ok(&root, &["clean", "--all", "--json"]));
    assert_eq!(names_in(&all, "kept"), alive, "{all}");
    assert_eq!(names_in(&all, "skipped"), [near_miss.clone()].into());

    drop(live);
    let text = ktstr_ok(&root, &["clean", "--all"]);
    assert!(
        text.contains("removed 0 templates and 3 debris entries"),
        "{text}"
    );
    let left: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [near_miss.as_str()], "only the user's file stays");
}

/// A named per-test image of ours, read the way ktstr's sweep reads one (the
/// pid is the first field), with the fields in ktstr's hex: the nanoseconds
/// parse as hex to this very moment.
#[test]
fn our_per_test_names_are_ktstrs_shape() {
    let root = tempfile::tempdir().unwrap();
    let cap = Capacity::from_mib(16).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let at = Ensurer::new(root.path(), &HostMkfsBuilder);
    let image = PerTestImage::create_named(&at, Filesystem::Ext4, cap).unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = image.path();
    let name = path.file_name().unwrap().to_str().unwrap();
    let fields = name
        .strip_prefix(".per-test-")
        .and_then(|r| r.strip_suffix(".img"))
        .unwrap();
    let [pid, ns, rnd] = fields.split('-').collect::<Vec<_>>()[..] else {
        panic!("{name}")
    };
    assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
    let ns = u128::from_str_radix(ns, 16).unwrap();
    assert!((before..=after).contains(&ns), "{name}: nanos not in hex");
    assert!(
        rnd.len() <= 16 && u64::from_str_radix(rnd, 16).is_ok(),
        "{name}"
    );
    let unpadded = |f: &str| f == "0" || !f.starts_with('0');
    assert!(unpadded(rnd), "{name}: padded");

    let listed = json(&ktstr_ok(root.path(), &["template", "list", "--json"]));
    assert_eq!(listed["debris"]["per_test"], 1, "{listed}");
    let kept = json(&ktstr_ok(root.path(), &["clean", "--json"]));
    assert_eq!(names_in(&kept, "kept"), [name.to_owned()].into());
    drop(image);
    assert!(!path.exists());
}

/// `bytes` formatted by the host's `fs` formatter at `path`.
fn mkfs_at(path: &Path, fs: Filesystem, bytes: u64) {
    fs::File::create(path).unwrap().set_len(bytes).unwrap();
    let mkfs = cargo_ktstr::testing::formatter::fingerprint::find_formatter(fs).unwrap();
    let out = Command::new(mkfs)
        .args(fs.mkfs_args())
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn clone_without_a_kernel(root: &Path, mib: u64, dest: &Path) -> Output {
    ktstr_cmd(root)
        .args(["template", "clone", "--fs", "btrfs", "--capacity"])
        .arg(format!("{mib}M"))
        .args(["--kernel", "/nonexistent/bzImage"])
        .arg(dest)
        .output()
        .unwrap()
}

/// ktstr 0.15 floors a capacity that is not whole MiB into its key: 256 MiB
/// and one byte is `btrfs-256m-…` with a 268,435,457-byte image. A hit.
#[test]
fn an_image_ktstr_floored_into_its_key_is_a_valid_entry() {
    let (root, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = 256 * MIB + 1;
    let fp = &current_key(Filesystem::Btrfs, 256)["btrfs-256m-".len()..];
    let key = ktstr_names::cache_key("btrfs", bytes, fp);
    assert_eq!(key, current_key(Filesystem::Btrfs, 256));
    fs::create_dir(root.path().join(&key)).unwrap();
    mkfs_at(
        &root.path().join(&key).join("template.img"),
        Filesystem::Btrfs,
        bytes,
    );

    let listed = json(&ktstr_ok(root.path(), &["template", "list", "--json"]));
    assert_eq!(listed["entries"][0]["state"], "ok", "{listed}");
    let dest = out.path().join("d.img");
    let cloned = clone_without_a_kernel(root.path(), 256, &dest);
    assert!(cloned.status.success(), "{}", stderr(&cloned));
    assert_eq!(fs::metadata(&dest).unwrap().len(), bytes);
    let all = json(&ktstr_ok(root.path(), &["clean", "--all", "--json"]));
    assert_eq!(all["removed"][0]["name"], key.as_str());
    assert_eq!(all["removed"][0]["invalid"], Value::Null);
}

/// An image cut short past its magic (a torn copy, a disk-full restore), or
/// a MiB too long, is invalid: a miss with a warning, rebuilt by the next
/// build, listed and cleaned as invalid.
#[test]
fn an_image_of_the_wrong_size_is_invalid_everywhere() {
    let (root, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let key = current_key(Filesystem::Btrfs, 256);
    let image = root.join(&key).join("template.img");
    let cap = Capacity::from_mib(256).unwrap();
    let at = Ensurer::new(root, &HostMkfsBuilder);
    assert!(at.ensure(Filesystem::Btrfs, cap).unwrap().built);
    let truncate = |len: u64| {
        fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap()
            .set_len(len)
            .unwrap();
    };
    truncate(128 * MIB);
    assert!(
        Filesystem::Btrfs.path_has_magic(&image).unwrap(),
        "the magic survives"
    );
    let why = "template.img is 134217728 bytes";

    let missed = clone_without_a_kernel(root, 256, &out.path().join("d.img"));
    let err = stderr(&missed);
    assert_eq!(missed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ignoring the cached template") && err.contains(why),
        "{err}"
    );
    assert!(
        err.contains("failed to build the template"),
        "a miss builds: {err}"
    );

    let table = ktstr_ok(root, &["template", "list"]);
    let row = table.lines().find(|l| l.starts_with(&key)).unwrap();
    assert!(row.contains(&format!("invalid: {why}")), "{row}");
    let listed = json(&ktstr_ok(root, &["template", "list", "--json"]));
    assert_eq!(listed["entries"][0]["state"], "invalid");
    assert!(
        listed["entries"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(why)
    );

    // The next build replaces it.
    let rebuilt = at.ensure(Filesystem::Btrfs, cap).unwrap();
    assert!(rebuilt.built);
    assert_eq!(fs::metadata(&image).unwrap().len(), 256 * MIB);

    // One MiB too long is as wrong as too short.
    truncate(257 * MIB);
    let listed = json(&ktstr_ok(root, &["template", "list", "--json"]));
    let detail = listed["entries"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("template.img is 269484032 bytes"),
        "{detail}"
    );
    let dry = json(&ktstr_ok(root, &["clean", "--all", "--dry-run", "--json"]));
    let invalid = dry["removed"][0]["invalid"].as_str().unwrap();
    assert!(
        invalid.starts_with("template.img is 269484032 bytes"),
        "{dry}"
    );
    let text = ktstr_ok(root, &["-v", "clean", "--all"]);
    let line = format!("removed {key} (template, invalid: template.img is 269484032 bytes");
    assert!(text.contains(&line), "{text}");
    assert!(!root.join(&key).exists());
}

/// What `mkfs.<fs>` says its version is, read independently of the product:
/// the word after `marker`, without a leading `v`.
fn formatter_version(fs: Filesystem, marker: &str) -> String {
    let mkfs = cargo_ktstr::testing::formatter::fingerprint::find_formatter(fs).unwrap();
    let out = Command::new(mkfs).arg(fs.version_arg()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = text
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let word = after.split_whitespace().next().unwrap();
    word.trim_start_matches('v').to_owned()
}

fn build_without_a_kernel(root: &Path, fs: &str, capacity: &str) -> Output {
    ktstr_cmd(root)
        .args(["template", "build", "--fs", fs, "--capacity", capacity])
        .args(["--kernel", "/nonexistent/bzImage"])
        .output()
        .unwrap()
}

/// Refused before any work: no root made, no kernel looked for; one MiB
/// more passes the check and gets as far as the (missing) kernel.
#[test]
fn capacities_the_formatter_refuses_are_refused_first() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let btrfs = formatter_version(Filesystem::Btrfs, "btrfs-progs ");
    let xfs = formatter_version(Filesystem::Xfs, "version ");
    let refusals = [
        (
            "btrfs",
            "64M",
            "btrfs needs at least 109 MiB",
            format!("btrfs-progs {btrfs}"),
            "114294784",
        ),
        (
            "btrfs",
            "108M",
            "btrfs needs at least 109 MiB",
            format!("btrfs-progs {btrfs}"),
            "114294784",
        ),
        (
            "xfs",
            "299M",
            "xfs needs at least 300 MiB",
            format!("xfsprogs {xfs}"),
            "314572800",
        ),
    ];
    for (fs, capacity, need, version, bytes) in refusals {
        let out = build_without_a_kernel(&root, fs, capacity);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{fs} {capacity}: {err}");
        for part in [need, &version, bytes] {
            assert!(err.contains(part), "{fs} {capacity}: no `{part}` in {err}");
        }
        assert!(
            !err.contains("/nonexistent"),
            "{fs} {capacity}: work began: {err}"
        );
        assert!(!root.exists(), "{fs} {capacity}: the root was made");
    }
    let clone = ktstr_cmd(&root)
        .args(["template", "clone", "--fs", "btrfs", "--capacity", "100M"])
        .arg(base.path().join("d.img"))
        .output()
        .unwrap();
    assert!(
        stderr(&clone).contains("btrfs needs at least 109 MiB"),
        "{}",
        stderr(&clone)
    );
    for (fs, capacity) in [("btrfs", "109M"), ("xfs", "300M"), ("ext4", "16M")] {
        let err = stderr(&build_without_a_kernel(&root, fs, capacity));
        assert!(
            err.contains("/nonexistent/bzImage"),
            "{fs} {capacity}: {err}"
        );
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// The binary as uid and gid 65534 (another CI runner's user).
fn as_nobody(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--cache-dir")
        .arg(root)
        .args(args)
        .env("XDG_CACHE_HOME", test_xdg_cache())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

/// A root its owner shared (`chmod 1777`): another uid clones from entries
/// whose lockfiles we made (0666) and ktstr made (0644 under a 022 umask),
/// and a lockfile we make under a 077 umask is still 0666. Entries stay
/// their builder's: another uid's `clean --all` fails on them and says so.
#[test]
fn users_of_one_shared_cache_share_its_lockfiles() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return eprintln!("skipped: needs root to run as another uid");
    }
    let base = tempfile::tempdir().unwrap();
    chmod(base.path(), 0o755);
    let (root, out) = (base.path().join("root"), base.path().join("out"));
    for dir in [&root, &out] {
        fs::create_dir(dir).unwrap();
        chmod(dir, 0o1777);
    }
    populate(&root, Filesystem::Ext4, 16);
    let ours = root
        .join(".locks")
        .join(format!("{}.lock", current_key(Filesystem::Ext4, 16)));
    assert_eq!(
        mode(&root.join(".locks")),
        0o1777,
        ".locks takes the root's mode"
    );
    assert_eq!(mode(&ours), 0o666);
    populate(&root, Filesystem::Ext4, 24);
    let theirs = root
        .join(".locks")
        .join(format!("{}.lock", current_key(Filesystem::Ext4, 24)));
    fs::remove_file(&theirs).unwrap();
    // ktstr's open: read-write, create, 0666; its 022 umask leaves 0644.
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&theirs)
        .unwrap();
    chmod(&theirs, 0o644);

    for (mib, dest) in [("16M", "a.img"), ("24M", "b.img")] {
        let dest = out.join(dest);
        let args = [
            "template",
            "clone",
            "--fs",
            "ext4",
            "--capacity",
            mib,
            dest.to_str().unwrap(),
        ];
        let cloned = as_nobody(&root, &args);
        assert!(cloned.status.success(), "{mib}: {}", stderr(&cloned));
        assert_eq!(fs::metadata(&dest).unwrap().uid(), 65534);
    }

    let swept = as_nobody(&root, &["clean", "--all", "--json"]);
    let report = json(&String::from_utf8_lossy(&swept.stdout));
    assert_eq!(report["failed"].as_array().unwrap().len(), 2, "{report}");
    let error = report["failed"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("belongs to root (uid 0)") && error.contains("ask root to remove it"),
        "{error}"
    );

    fs::remove_file(&ours).unwrap();
    let sweep = Command::new("sh")
        .args(["-c", "umask 077; exec \"$0\" \"$@\""])
        .arg(bin())
        .arg("--cache-dir")
        .arg(&root)
        .args(["clean", "--all"])
        .env("XDG_CACHE_HOME", test_xdg_cache())
        .output()
        .unwrap();
    assert!(sweep.status.success(), "{}", stderr(&sweep));
    assert_eq!(
        mode(&ours),
        0o666,
        "a lockfile's mode does not follow the umask"
    );
    assert!(!root.join(current_key(Filesystem::Ext4, 16)).exists());
    let _ = ktstr(&root, &["clean", "--all"]);
}
