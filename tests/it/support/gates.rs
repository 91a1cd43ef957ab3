//! Prerequisite gates: each says whether what a test needs is there. A
//! missing one skips the test with a line saying why, except under CI
//! (`CI` set), where it fails the test.

use std::path::{Path, PathBuf};

use cargo_ktstr::runner::qemu::{Accel, QemuRunner};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::formatter::fingerprint::find_formatter;
use cargo_ktstr::testing::kernel::stock::{BOOT_DIR, MODULES_ROOT, boot_kernels};

/// Whether a test's prerequisite is there. Missing, it skips the test with a
/// line saying why, except in CI (`CI` set), where it fails.
pub(crate) fn prerequisite(what: &str, available: bool) -> bool {
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing, and CI must run every test"
        );
        eprintln!("skipped: {what} is missing");
    }
    available
}

/// Whether `/dev/kvm` opens read-write (for the VMM tests).
pub(crate) fn kvm_usable() -> bool {
    cargo_ktstr::testing::host::open_kvm().is_ok()
}

/// The guest kernel tests boot, resolved as the CLI does ($KTSTR_KERNEL, else
/// the newest cached kernel); `None` (after [`prerequisite`]) without one.
pub(crate) fn guest_kernel() -> Option<PathBuf> {
    match cargo_ktstr::testing::kernel::resolve::resolve_from_env(None) {
        Ok(kernel) => Some(kernel),
        Err(e) => {
            eprintln!("{e:#}");
            prerequisite("a guest kernel", false);
            None
        }
    }
}

/// A kernel and QEMU, or `None` after saying which is missing.
pub(crate) fn guest_prerequisites() -> Option<(PathBuf, QemuRunner)> {
    let kernel = guest_kernel()?;
    match QemuRunner::find(Accel::Tcg) {
        Ok(qemu) => Some((kernel, qemu)),
        Err(e) => {
            eprintln!("{e:#}");
            prerequisite("QEMU", false);
            None
        }
    }
}

/// Debian's kernel of `series` (`6.1.`, `6.12.`) in /boot with its modules.
pub(crate) fn debian_kernel(series: &str) -> Option<PathBuf> {
    let found = boot_kernels(Path::new(BOOT_DIR), Path::new(MODULES_ROOT))
        .into_iter()
        .find(|k| k.has_modules && k.release.starts_with(series) && k.release.ends_with("-amd64"));
    let what = format!("Debian's {series}x kernel with its modules (.ci/install-deps)");
    prerequisite(&what, found.is_some()).then(|| found.unwrap().image)
}

/// Whether QEMU is on PATH.
pub(crate) fn qemu_installed() -> bool {
    prerequisite(
        "qemu-system-x86_64",
        cargo_ktstr::testing::host::find_program("qemu-system-x86_64").is_some(),
    )
}

/// Whether `fs`'s formatter is installed.
pub(crate) fn formatter(fs: Filesystem) -> bool {
    prerequisite(fs.mkfs(), find_formatter(fs).is_ok())
}
