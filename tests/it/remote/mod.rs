//! The remote kernel cache (`--remote`, `kernel push`, `remote check`):
//! against real servers with the `remote` feature, and what a binary built
//! without it says.

#[cfg(feature = "remote")]
mod servers;

/// Without the feature the flags still parse, and each use says how to get
/// a binary that has it.
#[cfg(not(feature = "remote"))]
#[test]
fn without_the_feature_remote_commands_say_how_to_get_it() {
    use crate::support::{bin, stderr};
    let base = tempfile::tempdir().unwrap();
    let url = "webdav+http://127.0.0.1:9/fleet";
    let runs: [&[&str]; 3] = [
        &["remote", "check", "--remote", url],
        &["kernel", "push", "--remote", url],
        &[
            "kernel",
            "build",
            "--source",
            "/nonexistent",
            "--remote",
            url,
        ],
    ];
    for args in runs {
        let out = std::process::Command::new(bin())
            .env("KTSTR_CACHE_DIR", base.path())
            .env_remove("KTSTR_REMOTE_CACHE")
            .args(args)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("--features remote"), "{args:?}: {err}");
    }
}
