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

/// Whether a test can use `what`; when it cannot, says why and skips, except
/// in CI (env `CI` set), where every prerequisite is installed and a
/// missing one is a failure.
pub fn prerequisite(what: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required in CI: {why}");
    }
    eprintln!("skipped: {what}: {why}");
    false
}

/// The guest kernel tests boot, resolved as the CLI does ($KTSTR_KERNEL, else
/// the newest cached kernel); `None` after saying why it skips.
pub fn guest_kernel() -> Option<PathBuf> {
    match cargo_ktstr::kernel::resolve::resolve_from_env(None) {
        Ok(kernel) => Some(kernel),
        Err(e) => {
            prerequisite("a guest kernel", Some(format!("{e:#}")));
            None
        }
    }
}

/// Whether this process runs as root (loop devices, mounts).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
