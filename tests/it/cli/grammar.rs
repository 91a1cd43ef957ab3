//! One grammar for sizes and durations, exit 2 for every usage error, and
//! `template clone`'s arguments checked before anything is built.

use std::path::Path;
use std::process::Output;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::gates::formatter;
use crate::support::{build_cmd, guest_prerequisites, ktstr, names, stderr};

/// Asserts `out` exited `code` with `needle` in its stderr.
fn exits(out: &Output, code: i32, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: {needle:?} missing from: {err}"
    );
}

/// Nothing was built or locked: the root was never even made.
fn nothing_built(root: &Path) {
    assert!(
        !root.exists() || names(root).is_empty(),
        "{:?}",
        names(root)
    );
}

#[test]
fn capacity_reads_sizes_as_max_size_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    // Accepted: the run gets past parsing to the DEST check (the capacity
    // maximum is 16 TiB, so 10T is in range).
    let dest = dir.path().join("missing").join("x.img");
    for size in ["10T", "1TiB", "1t", "256m", "262144K", "16T"] {
        let out = ktstr(
            &root,
            &[
                "template",
                "clone",
                "--fs",
                "ext4",
                "--capacity",
                size,
                dest.to_str().unwrap(),
            ],
        );
        exits(&out, 2, "does not exist", size);
        // `clean --max-size` reads the same text the same way.
        let out = ktstr(&root, &["clean", "--dry-run", "--max-size", size]);
        assert!(out.status.success(), "--max-size {size}: {}", stderr(&out));
    }
    for (size, needle) in [
        ("17T", "at most 16 TiB"),
        ("268435457", "the nearest capacities are 256M and 257M"),
        ("1.5G", "256M, 256MiB, 1G, 1GiB"),
        ("4GB", "write 4G or 4GiB"),
    ] {
        let out = ktstr(
            &root,
            &[
                "template",
                "clone",
                "--fs",
                "ext4",
                "--capacity",
                size,
                dest.to_str().unwrap(),
            ],
        );
        exits(&out, 2, needle, size);
    }
    let out = ktstr(&root, &["clean", "--dry-run", "--max-size", "4GB"]);
    exits(&out, 2, "write 4G or 4GiB", "--max-size 4GB");
    nothing_built(&root);
}

#[test]
fn durations_take_a_unit_or_are_seconds_for_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let build = [
        "template",
        "build",
        "--fs",
        "ext4",
        "--kernel",
        "/nonexistent",
    ];
    if !formatter(Filesystem::Ext4) {
        return;
    }
    // Parsed: the run gets as far as the kernel, which is missing (exit 1).
    for flags in [
        ["--timeout", "10s", "--lock-timeout", "5m"],
        ["--timeout", "30", "--lock-timeout", "0"],
        ["--timeout", "1d", "--lock-timeout", "2h"],
    ] {
        let out = ktstr(&root, &[&build[..], &flags[..]].concat());
        exits(&out, 1, "/nonexistent", &flags.join(" "));
    }
    for (flag, value, needle) in [
        ("--timeout", "0", "give 1s to 1d"),
        ("--timeout", "86401", "give 1s to 1d"),
        ("--timeout", "2d", "give 1s to 1d"),
        ("--timeout", "1.5s", "90s, 30m, 12h, 7d, 2w"),
        ("--lock-timeout", "5x", "unknown unit `x`"),
    ] {
        let out = ktstr(&root, &[&build[..], &[flag, value][..]].concat());
        exits(&out, 2, needle, &format!("{flag} {value}"));
    }
    // --older-than reads a bare number as seconds too.
    for value in ["0", "90", "90s", "7d"] {
        let out = ktstr(&root, &["clean", "--dry-run", "--older-than", value]);
        assert!(
            out.status.success(),
            "--older-than {value}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn too_little_memory_is_refused_before_any_boot() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    if !formatter(Filesystem::Ext4) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    for template in [
        &["--fs", "ext4", "--capacity", "64M"][..],
        &["ext4:64M"][..],
    ] {
        let out = build_cmd(&root, &kernel, template)
            .args(["--memory", "16M"])
            .output()
            .unwrap();
        let err = stderr(&out);
        exits(&out, 2, "guest memory of 16 MiB is too little", &err);
        assert!(err.contains("M or more"), "{err}");
        // Refused before the boot: no guest was started, nothing published.
        assert!(!err.contains("Booting"), "{err}");
        assert!(!err.contains("console"), "{err}");
        let entries: Vec<_> = (names(&root).into_iter())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(entries.is_empty(), "{entries:?}");
    }
    // `--memory 256` is still MiB, and more than the maximum is refused.
    let out = ktstr(&root, &["template", "build", "--memory", "4G"]);
    exits(&out, 2, "from 1M to 3072M", "--memory 4G");
}

/// The minimum the refusal names is enough: the guest boots in it.
#[test]
fn the_minimum_memory_named_is_enough_for_a_guest_build() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    if !formatter(Filesystem::Ext4) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let template = ["--fs", "ext4", "--capacity", "64M"];
    let out = build_cmd(&root, &kernel, &template)
        .args(["--memory", "1M"])
        .output()
        .unwrap();
    let err = stderr(&out);
    let minimum = (err.split("pass --memory ").nth(1))
        .and_then(|rest| rest.split('M').next())
        .unwrap_or_else(|| panic!("no minimum in: {err}"))
        .to_owned();
    let out = build_cmd(&root, &kernel, &template)
        .args(["--memory", &format!("{minimum}M")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "--memory {minimum}M: {}",
        stderr(&out)
    );
    eprintln!(
        "built with the minimum, {minimum} MiB, and kernel `{}`",
        kernel.display()
    );
}

#[test]
fn usage_errors_found_after_parsing_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    // Below the formatter's minimum, in both forms.
    if formatter(Filesystem::Xfs) {
        let out = ktstr(
            &root,
            &["template", "build", "--fs", "xfs", "--capacity", "16M"],
        );
        exits(
            &out,
            2,
            "pass --capacity 300M or more",
            "--fs xfs --capacity 16M",
        );
        let out = ktstr(&root, &["template", "build", "xfs:16M"]);
        exits(&out, 2, "pass --capacity 300M or more", "xfs:16M");
    }
    let out = ktstr(&root, &["template", "clone", "a.img", "b.img"]);
    exits(&out, 2, "give one DEST", "clone a.img b.img");
    // A plan that is not one; a file that cannot be read stays a failure.
    let plan = dir.path().join("plan.json");
    for (text, needle) in [
        ("not json", "is not a plan"),
        (r#"{"format_version": 999}"#, "of format version 999"),
    ] {
        std::fs::write(&plan, text).unwrap();
        let out = ktstr(&root, &["clean", "--plan", plan.to_str().unwrap()]);
        exits(&out, 2, needle, text);
    }
    let out = ktstr(&root, &["clean", "--plan", "/nonexistent/plan.json"]);
    exits(&out, 1, "failed to read the plan", "a missing plan");
}

#[test]
fn clone_pairs_are_checked_before_any_template_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let pair = |template: &str, name: &str| format!("{template}={}", at(name));
    let dot = format!("xfs={}/./a.img", dir.path().display());
    for (args, needle) in [
        (
            vec!["--fs".into(), "ext4".into(), pair("ext4", "a.img")],
            "--fs cannot be used with FS[:SIZE]=DEST pairs",
        ),
        (
            vec!["--capacity".into(), "64M".into(), pair("ext4:64M", "a.img")],
            "--capacity cannot be used with FS[:SIZE]=DEST pairs",
        ),
        (
            vec![pair("ext4:64M", "a.img"), dot.clone()],
            "are the same DEST",
        ),
        (
            vec![pair("ext4:64M", "a.img"), pair("ext4:64M", "missing/b.img")],
            "does not exist",
        ),
        (vec![at("missing/c.img")], "does not exist"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ktstr(&root, &[&["template", "clone"][..], &args[..]].concat());
        exits(&out, 2, needle, &args.join(" "));
        assert!(stderr(&out).contains("error: "), "{}", stderr(&out));
    }
    nothing_built(&root);
    // No DEST either.
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}
