//! `clean --older-than/--max-size/--min-free`, `clean --plan` and
//! `template list`'s last use, on real loop filesystems with real holders.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cargo_ktstr::testing::cache::last_use;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use serde_json::Value;

use crate::support::loopfs::LoopFs;
use crate::support::{FlockHolder, dead_pid, ktstr, ktstr_ok, magic_image, stderr, stdout};

/// `ext4-32m-<i as 16 hex>`.
fn key(i: u64) -> String {
    format!("ext4-32m-{i:016x}")
}

/// A valid entry with 8 MiB allocated, last used `ago` (its lockfile, made
/// now, set as old so it records no use).
fn entry(root: &Path, i: u64, ago: Duration) -> String {
    let name = key(i);
    let dir = root.join(&name);
    fs::create_dir_all(&dir).unwrap();
    magic_image(&dir.join("template.img"), Filesystem::Ext4, 32, 8 << 20);
    fs::create_dir_all(root.join(".locks")).unwrap();
    let lockfile = root.join(".locks").join(format!("{name}.lock"));
    fs::write(&lockfile, b"").unwrap();
    let t = SystemTime::now() - ago;
    for path in [&dir, &lockfile] {
        fs::File::open(path).unwrap().set_modified(t).unwrap();
    }
    name
}

fn lockfile(root: &Path, name: &str) -> std::path::PathBuf {
    root.join(".locks").join(format!("{name}.lock"))
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn json(root: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ktstr_ok(root, args)).unwrap()
}

/// (name, reason) of each removal, in order.
fn removals(report: &Value) -> Vec<(String, String)> {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("name"), s("reason"))
        })
        .collect()
}

fn mount(fs: &str) -> Option<(LoopFs, std::path::PathBuf)> {
    let mnt = LoopFs::new(fs, 512)?;
    let root = mnt.path().join("cache");
    fs::create_dir(&root).unwrap();
    Some((mnt, root))
}

#[test]
fn budgets_remove_least_recently_used_first_keep_what_is_held_and_say_why() {
    for fs in ["btrfs", "xfs", "ext4"] {
        let Some((_mnt, root)) = mount(fs) else {
            return;
        };
        let e: Vec<String> = [10, 8, 6, 2, 0]
            .iter()
            .enumerate()
            .map(|(i, d)| entry(&root, i as u64, days(*d)))
            .collect();
        // A cloner holds the second oldest.
        let holder = FlockHolder::shared(&lockfile(&root, &e[1]));

        let listed = json(
            &root,
            &["template", "list", "--json", "--sort", "last-used"],
        );
        let order: Vec<_> = listed["entries"].as_array().unwrap().iter().collect();
        assert_eq!(order[0]["name"], e[0].as_str(), "{fs}");
        assert!(order[0]["last_used_secs"].as_u64().unwrap() >= 10 * 86_400 - 5);
        assert!(order[4]["last_used_secs"].as_u64().unwrap() < 60);

        let r = json(&root, &["clean", "--older-than", "7d", "--json"]);
        assert_eq!(removals(&r), [(e[0].clone(), "older-than".into())], "{fs}");
        let kept = &r["kept"][0];
        assert_eq!(kept["name"], e[1].as_str());
        assert_eq!(kept["pid"], holder.pid());
        assert!(!root.join(&e[0]).exists() && root.join(&e[1]).exists());

        // Four entries of ~8 MiB left, one held: two more must go for 20 MiB.
        let out = ktstr_ok(&root, &["-v", "clean", "--max-size", "20M"]);
        assert!(
            out.contains(&format!("kept {}: in use by pid {}", e[1], holder.pid())),
            "{out}"
        );
        assert!(
            out.contains(&format!("removed {} (template", e[2])),
            "{out}"
        );
        assert!(out.contains("; max-size, last used 6d ago)"), "{out}");
        assert!(out.contains(" of 20 MiB; "), "{out}");
        assert!(!root.join(&e[2]).exists() && !root.join(&e[3]).exists());
        assert!(
            root.join(&e[4]).exists(),
            "the most recently used went: {out}"
        );

        // More free space than removing everything can give: nothing goes
        // for it, and the shortfall is an error.
        let avail = nix::sys::statvfs::statvfs(&root).unwrap();
        let want = avail.blocks_available() * avail.fragment_size() + (12 << 20);
        let out = ktstr(&root, &["clean", "--min-free", &want.to_string(), "--json"]);
        assert_eq!(out.status.code(), Some(1), "{fs}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("short of --min-free"), "{err}");
        assert!(err.contains("none was removed"), "{err}");
        let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert!(removals(&r).is_empty());
        assert_eq!(r["budget"]["min_free_unreachable"], true);
        assert!(r["budget"]["min_free_short_bytes"].as_u64().unwrap() > 2 << 20);
        assert!(root.join(&e[4]).exists(), "an entry went for nothing");
        assert!(root.join(&e[1]).exists(), "a held entry went");
        drop(holder);
    }
}

#[test]
fn budget_values_that_do_not_parse_or_cannot_be_met_are_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        ["clean", "--older-than", "7y"],
        ["clean", "--older-than", "1.5h"],
        ["clean", "--max-size", "4GB"],
        ["clean", "--min-free", "100000T"],
    ] {
        let out = ktstr(root.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("90s, 30m, 12h, 7d, 2w")
                || err.contains("512M, 4G")
                || err.contains("whole filesystem"),
            "{err}"
        );
    }
}

#[test]
fn a_plan_removes_exactly_what_it_listed_and_nothing_that_changed() {
    let Some((_mnt, root)) = mount("btrfs") else {
        return;
    };
    let e: Vec<String> = (0..3).map(|i| entry(&root, i, days(3))).collect();
    let dead = dead_pid();
    let piece = format!("template.img.in-flight.{}.{dead}", key(9));
    let replaced = format!(".per-test-{dead}-1-2.img");
    fs::write(root.join(&piece), b"x").unwrap();
    fs::write(root.join(&replaced), b"x").unwrap();

    let plan = json(&root, &["clean", "--all", "--dry-run", "--json"]);
    assert_eq!(plan["removed"].as_array().unwrap().len(), 5);
    let plan_path = root.parent().unwrap().join("plan.json");
    fs::write(&plan_path, plan.to_string()).unwrap();
    let plan_arg = plan_path.to_str().unwrap();

    // Since the plan: e1 is used, e2 is held, the per-test image is another
    // file by the same name, and a new entry appears.
    std::thread::sleep(Duration::from_millis(20));
    last_use::record(&root, &e[1]);
    let holder = FlockHolder::shared(&lockfile(&root, &e[2]));
    fs::remove_file(root.join(&replaced)).unwrap();
    fs::write(root.join(&replaced), b"y").unwrap();
    let fresh = entry(&root, 7, days(30));

    // Another root, another version, or malformed: an error that changes nothing.
    let other = root.parent().unwrap().join("other");
    fs::create_dir(&other).unwrap();
    // A plan that is not for this root, or not a plan, is a usage error.
    let out = ktstr(&other, &["clean", "--plan", plan_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is for the root"), "{}", stderr(&out));
    let mut v2 = plan.clone();
    v2["format_version"] = 2.into();
    let bad = root.parent().unwrap().join("bad.json");
    for text in [
        v2.to_string(),
        "{".to_owned(),
        "{\"format_version\": 1}".to_owned(),
    ] {
        fs::write(&bad, text).unwrap();
        let out = ktstr(&root, &["clean", "--plan", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    }
    assert!(root.join(&e[0]).exists() && root.join(&piece).exists());

    let r = json(&root, &["clean", "--plan", plan_arg, "--json"]);
    let mut gone = removals(&r);
    gone.sort();
    let mut want = vec![
        (e[0].clone(), "all".to_owned()),
        (piece.clone(), "debris".into()),
    ];
    want.sort();
    assert_eq!(gone, want);
    let kept: Vec<(String, String)> = r["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().into(),
                k["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        kept.contains(&(e[1].clone(), "changed since the plan; kept".into())),
        "{kept:?}"
    );
    assert!(
        kept.contains(&(replaced.clone(), "changed since the plan; kept".into())),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .any(|(n, why)| *n == e[2] && why.contains(&holder.pid().to_string()))
    );
    for name in [&e[1], &e[2], &replaced, &fresh] {
        assert!(root.join(name).exists(), "{name} went");
    }
}

/// A cached kernel under `base`, last used `ago`.
fn kernel(base: &Path, name: &str, ago: Duration) -> std::path::PathBuf {
    let dir = base.join("kernels").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("bzImage"), vec![7u8; 1 << 20]).unwrap();
    fs::File::open(&dir)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
    dir
}

fn with_base(base: &Path, args: &[&str]) -> std::process::Output {
    crate::support::ktstr_cmd(&base.join("disk_templates"))
        .env("KTSTR_CACHE_DIR", base)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn kernel_clean_keeps_what_a_build_uses_and_clean_sweeps_dead_kernel_scratch() {
    let Some((_mnt, root)) = mount("ext4") else {
        return;
    };
    let base = root.parent().unwrap().join("base");
    fs::create_dir_all(base.join("disk_templates")).unwrap();
    let old = kernel(&base, "6.1.0-aaaa", days(30));
    let in_use = kernel(&base, "6.2.0-bbbb", days(20));
    let newest = kernel(&base, "6.3.0-cccc", days(1));
    let build = FlockHolder::shared(&in_use);
    let dead = dead_pid();
    let scratch = base
        .join("kernels")
        .join(format!(".build-6.4.0-dddd.{dead}"));
    fs::create_dir_all(scratch.join("out")).unwrap();
    fs::write(scratch.join("out").join("vmlinux.o"), vec![1u8; 4 << 20]).unwrap();
    let locked = base
        .join("kernels")
        .join(format!(".build-6.4.0-eeee.{dead}"));
    fs::create_dir(&locked).unwrap();
    let holder = FlockHolder::exclusive(&locked);
    // A template entry: kernel cleanup leaves templates alone and vice versa.
    let tmpl = entry(&base.join("disk_templates"), 1, days(40));

    // `clean` (even with --all) sweeps the dead scratch and no kernel.
    let out = with_base(&base, &["clean", "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let swept = &r["kernel_scratch"]["removed"];
    assert_eq!(swept.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(swept[0]["reason"], "scratch");
    assert!(
        !scratch.exists() && locked.exists(),
        "the held scratch went"
    );
    assert!(old.exists() && in_use.exists() && newest.exists());
    assert!(!base.join("disk_templates").join(&tmpl).exists());

    let out = with_base(&base, &["kernel", "clean", "--keep", "1", "--dry-run"]);
    let text = stdout(&out);
    assert!(text.contains("would remove 6.1.0-aaaa"), "{text}");
    assert!(
        text.contains(&format!("kept 6.2.0-bbbb: in use by pid {}", build.pid())),
        "{text}"
    );
    assert!(old.exists());
    let out = with_base(&base, &["kernel", "clean", "--older-than", "2d", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!old.exists() && in_use.exists() && newest.exists());
    drop(build);
    let out = with_base(&base, &["kernel", "clean", "--keep", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!in_use.exists() && newest.exists());
    drop(holder);
}

/// An entry published as ktstr 0.15 publishes (staging directory, image
/// written in, renamed onto the key), never used since: its last use is its
/// publication. A hit through this tool records a use; ktstr's lookup, which
/// reads only `<key>/template.img`, finds the same image.
#[test]
fn an_entry_nobody_recorded_a_use_of_counts_from_its_publication() {
    let Some((_mnt, root)) = mount("ext4") else {
        return;
    };
    let name = crate::support::current_key(Filesystem::Ext4, 64);
    let staging = root.join(format!("{name}.tmp.{}", std::process::id()));
    fs::create_dir(&staging).unwrap();
    if !crate::support::mkfs_image(&staging.join("template.img"), Filesystem::Ext4, 64) {
        return;
    }
    fs::rename(&staging, root.join(&name)).unwrap();
    // Published three days ago.
    let published = SystemTime::now() - days(3);
    fs::File::open(root.join(&name))
        .unwrap()
        .set_modified(published)
        .unwrap();
    let image = fs::read(root.join(&name).join("template.img")).unwrap();

    let listed = json(&root, &["template", "list", "--json"]);
    let secs = listed["entries"][0]["last_used_secs"].as_u64().unwrap();
    assert!((3 * 86_400 - 5..3 * 86_400 + 60).contains(&secs), "{secs}");
    let r = json(
        &root,
        &["clean", "--older-than", "2d", "--dry-run", "--json"],
    );
    assert_eq!(removals(&r), [(name.clone(), "older-than".into())]);

    ktstr_ok(
        &root,
        &["template", "build", "--fs", "ext4", "--capacity", "64M"],
    );
    let listed = json(&root, &["template", "list", "--json"]);
    assert!(listed["entries"][0]["last_used_secs"].as_u64().unwrap() < 60);
    let r = json(&root, &["clean", "--older-than", "2d", "--json"]);
    assert!(removals(&r).is_empty(), "a used entry went: {r}");
    assert_eq!(
        fs::read(root.join(&name).join("template.img")).unwrap(),
        image
    );
}
