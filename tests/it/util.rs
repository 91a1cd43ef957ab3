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

/// Whether a test can run: `Err(why)` prints that it skipped and why, except
/// under CI (`$CI` set), where a missing prerequisite fails the test.
pub fn prerequisite(test: &str, available: Result<(), String>) -> bool {
    match available {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: prerequisite missing under CI: {why}")
        }
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            false
        }
    }
}

/// `/dev/kvm` opens read-write.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm is not usable ({e})"))
}
