//! Kernels and configs this user cannot read. Ubuntu installs
//! `/boot/vmlinuz-*` and `/boot/config-*` mode 0600, so an unprivileged
//! build sees kernels it cannot boot: resolution skips them, `kernel list`
//! marks them, and where one is all there is, the error names the file and
//! the three ways out.
//!
//! Readability is tried by opening the file, not by reading its mode bits:
//! root reads a 0600 file, and ACLs may grant what the mode does not.

use std::fs::File;
use std::io;
use std::path::Path;

/// Why this user cannot open `path` for reading; `None` when they can.
pub(crate) fn read_error(path: &Path) -> Option<io::Error> {
    File::open(path).err()
}

/// How to make `path` readable for every user, for one line of text.
pub(crate) fn make_readable(path: &Path) -> String {
    let path = path.display();
    // dpkg resets a plain chmod when the kernel package is upgraded.
    format!(
        "Ubuntu: `sudo dpkg-statoverride --update --add root root 0644 {path}`; elsewhere: \
         `sudo chmod 0644 {path}`"
    )
}

/// The error for kernel `image` that this user cannot read, found as
/// `what` (`from --kernel`, `the running kernel`).
pub(crate) fn kernel_error(image: &Path, what: &str, why: &io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "the kernel `{}` ({what}) cannot be read by this user ({why}); some distributions \
         install their kernels readable only by root. Either:\n\
         - make it readable ({}),\n\
         - pass a kernel you can read with `--kernel PATH`, or\n\
         - build one with `cargo ktstr kernel build --source PATH` (a kernel source tree or \
         tarball, e.g. from the distribution's linux-source package)",
        image.display(),
        make_readable(image),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_file_and_three_ways_out() {
        let image = Path::new("/boot/vmlinuz-6.8.0-45-generic");
        let why = io::Error::from(io::ErrorKind::PermissionDenied);
        let err = kernel_error(image, "from --kernel", &why).to_string();
        for needle in [
            "`/boot/vmlinuz-6.8.0-45-generic` (from --kernel)",
            "permission denied",
            "sudo dpkg-statoverride --update --add root root 0644 /boot/vmlinuz-6.8.0-45-generic",
            "sudo chmod 0644 /boot/vmlinuz-6.8.0-45-generic",
            "`--kernel PATH`",
            "cargo ktstr kernel build --source",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(read_error(dir.path()).is_none());
        let missing = read_error(&dir.path().join("nope")).unwrap();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
