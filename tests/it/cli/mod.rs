//! The command-line surface: cargo subcommand form, exit codes, generated files.

mod completions;
mod edges;
mod grammar;
mod output;
mod signals;
mod vmm;

use std::path::Path;
use std::process::Command;

use crate::support::{bin, stderr};

#[test]
fn runs_as_a_cargo_subcommand_and_directly() {
    for args in [&["ktstr", "--help"][..], &["--help"][..]] {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("clean"));
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_is_accepted() {
    let out = Command::new(bin())
        .args(["template", "clone", "--capacity", "1.5G", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("256M, 256MiB, 1G, 1GiB"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn numbers_out_of_range_are_usage_errors_before_anything_runs() {
    // A huge timeout once overflowed `Instant + Duration` after QEMU had
    // started (a panic, exit 101); 0 ran a guest that timed out at once.
    let build = [
        "template",
        "build",
        "--fs",
        "ext4",
        "--kernel",
        "/nonexistent",
    ];
    let kernel = ["kernel", "build", "--source", "/nonexistent"];
    for (args, flag, value, accepted) in [
        (
            &build[..],
            "--timeout",
            "18446744073709551615",
            "give 1s to 1d",
        ),
        (&build[..], "--timeout", "0", "give 1s to 1d"),
        (&build[..], "--memory", "0", "from 1M to 3072M"),
        (&build[..], "--memory", "4096", "from 1M to 3072M"),
        (&kernel[..], "--jobs", "0", "1..=1024"),
    ] {
        let out = Command::new(bin())
            .args(args)
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(accepted),
            "{flag} {value}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn committed_completions_and_man_pages_are_current() {
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("generate")
        .arg(fresh.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listing = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    for sub in ["completions", "man"] {
        let names = listing(&fresh.path().join(sub));
        assert!(!names.is_empty());
        // A committed file the model no longer generates is stale too.
        assert_eq!(
            listing(&repo.join(sub)),
            names,
            "{sub}/ holds other files than `cargo run -- generate .` makes: remove the extra ones"
        );
        for name in names {
            let want = std::fs::read(fresh.path().join(sub).join(&name)).unwrap();
            let have = std::fs::read(repo.join(sub).join(&name)).unwrap_or_default();
            assert!(
                want == have,
                "{sub}/{} is stale: run `cargo run -- generate .` and commit the result",
                name.to_string_lossy()
            );
        }
    }
}

/// Without --cache-dir the template root is `$KTSTR_CACHE_DIR/disk_templates`,
/// else `$XDG_CACHE_HOME/ktstr/disk_templates`; an empty variable is unset.
#[test]
fn the_default_root_is_resolved_like_ktstr() {
    let dead = crate::support::dead_pid();
    let debris = format!("template.img.in-flight.btrfs-256m-a1b2c3d4e5f6a7b8.{dead}");
    let (ktstr_dir, xdg) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lay = |dir: &Path| {
        std::fs::create_dir_all(dir.join("disk_templates")).unwrap();
        std::fs::write(dir.join("disk_templates").join(&debris), b"x").unwrap();
        // Beside the template root, not in it: never touched.
        std::fs::write(dir.join(&debris), b"x").unwrap();
    };
    let ktstr_base = ktstr_dir.path().to_owned();
    let xdg_base = xdg.path().join("ktstr");
    lay(&ktstr_base);
    lay(&xdg_base);
    let run = |ktstr_var: &str| {
        let out = Command::new(bin())
            .arg("clean")
            .env("KTSTR_CACHE_DIR", ktstr_var)
            .env("XDG_CACHE_HOME", xdg.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(ktstr_base.to_str().unwrap());
    assert!(!ktstr_base.join("disk_templates").join(&debris).exists());
    assert!(ktstr_base.join(&debris).exists());
    assert!(xdg_base.join("disk_templates").join(&debris).exists());
    run("");
    assert!(!xdg_base.join("disk_templates").join(&debris).exists());
    assert!(xdg_base.join(&debris).exists());
}

/// Warnings reach stderr by default, not under -q; RUST_LOG turns on debug
/// lines without -v.
#[test]
fn quiet_and_rust_log_steer_the_logs() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("btrfs-256m-a1b2c3d4e5f6a7b8")).unwrap();
    // `.locks` as a file: `clean --all` warns that it cannot lock entries.
    std::fs::write(root.path().join(".locks"), b"").unwrap();
    let run = |args: &[&str], rust_log: Option<&str>| {
        let mut cmd = crate::support::ktstr_cmd(root.path());
        cmd.args(args).env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    assert!(run(&["clean", "--all"], None).contains("WARN"));
    assert_eq!(run(&["-q", "clean", "--all"], None), "");
    assert!(!run(&["clean", "--all"], None).contains("DEBUG"));
    assert!(run(&["clean", "--all"], Some("debug")).contains("DEBUG"));
}
