//! Which program a guest runs as its PID 1.
//!
//! The guest's init is this crate's init ([`super::init`]), inside some
//! binary linked with this crate: `cargo-ktstr` itself, or a test harness
//! that calls [`init_if_guest`] first thing in `main`. A harness is not
//! `cargo-ktstr`, so [`GuestInit::Find`] looks, in order, for
//!
//! 1. this very program, when it called [`init_if_guest`] (the CLI does);
//! 2. `cargo-ktstr` next to this program, or one directory up from cargo's
//!    `deps/` and `examples/` (where `cargo test` and `cargo run --example`
//!    put theirs, beside `target/<profile>/cargo-ktstr`);
//! 3. `cargo-ktstr` on PATH.
//!
//! A `cargo-ktstr` found this way must be the same version as the library:
//! the two speak the result line of [`super::protocol`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

/// The name of the binary looked for next to this program and on PATH.
pub(crate) const INIT_BINARY: &str = "cargo-ktstr";

/// Set once this process called [`init_if_guest`] and carried on: it can
/// be a guest's init, since it will call it again there.
static CALLS_INIT: AtomicBool = AtomicBool::new(false);

/// Makes this program a guest init: call it first thing in `main`.
///
/// As PID 1 of a guest booted by this crate (the kernel runs it as
/// `/init`) it runs the guest's init and never returns. Anywhere else it
/// returns at once, and [`GuestInit::Find`] then picks this program as the
/// init of the guests it boots, so a harness needs no `cargo-ktstr`.
///
/// ```no_run
/// // First thing in the harness's `main`:
/// cargo_ktstr::init_if_guest();
/// ```
pub fn init_if_guest() {
    if super::init::is_guest_init() {
        super::init::run();
    }
    CALLS_INIT.store(true, Ordering::Relaxed);
}

/// Where a guest's init comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GuestInit {
    /// Search as the [module](self) says: this program if it called
    /// [`init_if_guest`], else `cargo-ktstr` next to it, else on PATH.
    #[default]
    Find,
    /// This very program, which must call [`init_if_guest`] first thing
    /// in `main` (or be `cargo-ktstr`).
    CurrentExe,
    /// A given binary linked with this crate that calls [`init_if_guest`]
    /// (`cargo-ktstr` does).
    Path(PathBuf),
}

impl GuestInit {
    /// The program to put in the guest as `/init`; the error names every
    /// place that was tried.
    pub fn resolve(&self) -> Result<PathBuf> {
        let exe = || {
            std::env::current_exe().map_err(|e| {
                anyhow::anyhow!(
                    "cannot find this program's own path ({e}), which the guest would run as \
                     its init"
                )
            })
        };
        match self {
            GuestInit::Path(path) if is_executable(path) => Ok(path.clone()),
            GuestInit::Path(path) => bail!(
                "the guest init `{}` is not an executable file",
                path.display()
            ),
            GuestInit::CurrentExe => exe(),
            GuestInit::Find => {
                let exe = exe()?;
                find(
                    &exe,
                    CALLS_INIT.load(Ordering::Relaxed),
                    std::env::var_os("PATH").as_deref(),
                )
            }
        }
    }
}

/// [`GuestInit::Find`]'s search from `exe`, whether it called
/// [`init_if_guest`], and a PATH value.
fn find(exe: &Path, calls_init: bool, path_var: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    if calls_init {
        return Ok(exe.to_owned());
    }
    let mut tried = Vec::new();
    for dir in beside(exe) {
        let candidate = dir.join(INIT_BINARY);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        tried.push(format!("`{}`", candidate.display()));
    }
    if let Some(found) = crate::host::find_program_in(INIT_BINARY, path_var, &[]) {
        return Ok(found);
    }
    bail!(
        "no guest init found: this program (`{}`) did not call cargo_ktstr::init_if_guest(), \
         there is no {INIT_BINARY} at {}, and none on PATH. Call init_if_guest() first thing in \
         main, install cargo-ktstr (the same version as this library), or name an init with \
         TemplateCache::init",
        exe.display(),
        tried.join(" or ")
    )
}

/// The directories a `cargo-ktstr` beside `exe` may be in.
fn beside(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut dirs = vec![dir.to_owned()];
    // cargo: target/<profile>/{deps,examples}/<bin> beside target/<profile>/cargo-ktstr.
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
        && let Some(up) = dir.parent()
    {
        dirs.push(up.to_owned());
    }
    dirs
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_program_that_calls_the_hook_is_its_own_init() {
        let exe = Path::new("/nowhere/harness");
        assert_eq!(find(exe, true, None).unwrap(), exe);
    }

    #[test]
    fn next_to_the_program_then_one_up_from_deps_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("debug/examples/harness");
        let up = dir.path().join("debug").join(INIT_BINARY);
        let on_path = dir.path().join("bin").join(INIT_BINARY);
        executable(&on_path);
        let path_var = std::ffi::OsString::from(dir.path().join("bin"));
        assert_eq!(find(&exe, false, Some(&path_var)).unwrap(), on_path);
        executable(&up);
        assert_eq!(find(&exe, false, Some(&path_var)).unwrap(), up);
        let next = dir.path().join("debug/examples").join(INIT_BINARY);
        executable(&next);
        assert_eq!(find(&exe, false, Some(&path_var)).unwrap(), next);
    }

    #[test]
    fn the_error_names_what_was_tried_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("deps/it-0123");
        let err = format!("{:#}", find(&exe, false, Some("".as_ref())).unwrap_err());
        for needle in [
            exe.display().to_string(),
            dir.path().join("deps/cargo-ktstr").display().to_string(),
            dir.path().join("cargo-ktstr").display().to_string(),
            "init_if_guest()".into(),
            "PATH".into(),
            "TemplateCache::init".into(),
        ] {
            assert!(err.contains(&needle), "{needle:?} missing from: {err}");
        }
        let missing = GuestInit::Path(dir.path().join("nope"));
        assert!(format!("{:#}", missing.resolve().unwrap_err()).contains("nope"));
    }
}
