//! Shared helpers: run the binary in a temporary cache.

use std::path::PathBuf;
use std::process::Output;

/// The `cargo-ktstr` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-ktstr"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
