//! The command-line surface: cargo subcommand form, exit codes, generated files.

use std::path::Path;
use std::process::Command;

use crate::util::{bin, stderr};

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
        (&build[..], "--timeout", "18446744073709551615", "1..=86400"),
        (&build[..], "--timeout", "0", "1..=86400"),
        (&build[..], "--memory", "8", "16..=3072"),
        (&build[..], "--memory", "4096", "16..=3072"),
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
    for sub in ["completions", "man"] {
        let mut names: Vec<_> = std::fs::read_dir(fresh.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
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
