//! Shared helpers: run the binary in a temporary cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `cargo-ktstr` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-ktstr"))
}

/// `cargo-ktstr --cache-dir <root> <args>`, with a clean environment for the
/// variables that steer the cache.
pub fn ktstr(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--cache-dir")
        .arg(root)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KTSTR_KERNEL")
        .output()
        .expect("failed to run cargo-ktstr")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
