//! A failing disk under the cache: an operation that met an I/O error, a
//! filesystem the kernel made read-only after one, or a file the disk did
//! not keep as written ([`crate::store::readback`]) fails with a message
//! naming the disk's path and saying what to do.

use std::path::Path;

use crate::store::readback::NotAsWritten;

/// What to do, in every failing-disk message.
const ADVICE: &str = "the disk may be failing, or the kernel made its filesystem read-only \
     after an error (`dmesg` says which); once it is healthy and mounted read-write, \
     `cargo ktstr clean` sweeps what this left, then try again";

/// Whether `err` comes from a failing disk: EIO or EROFS in its chain,
/// from this process or in a formatter's words, or a file the disk did not
/// keep as written.
pub(crate) fn is_disk_failure(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let errno = match cause.downcast_ref::<std::io::Error>() {
            Some(e) if e.get_ref().is_some_and(|inner| inner.is::<NotAsWritten>()) => {
                Some(libc::EIO)
            }
            Some(e) => e.raw_os_error(),
            None => cause.downcast_ref::<nix::errno::Errno>().map(|e| *e as i32),
        };
        let text = cause.to_string();
        matches!(errno, Some(libc::EIO | libc::EROFS))
            || cause.is::<NotAsWritten>()
            || text.contains("Input/output error")
            || text.contains("Read-only file system")
    })
}

/// `err`, led by "the disk holding `path` failed" and what to do, when it
/// comes from a failing disk (a full one has its own message).
pub(crate) fn when_disk_fails(path: &Path, err: anyhow::Error) -> anyhow::Error {
    if !is_disk_failure(&err) || super::heal::is_disk_full(&err) {
        return err;
    }
    err.context(format!(
        "the disk holding `{}` failed a write or a read: {ADVICE}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_get_the_advice_and_others_do_not() {
        let root = Path::new("/c/templates");
        let eio = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EIO))
            .context("failed to fsync `/c/templates/x`");
        let text = format!("{:#}", when_disk_fails(root, eio));
        assert!(
            text.starts_with("the disk holding `/c/templates` failed")
                && text.contains("cargo ktstr clean")
                && text.contains("failed to fsync `/c/templates/x`"),
            "{text}"
        );
        let mkfs = anyhow::anyhow!("`mkfs.ext4 x` failed: x: Read-only file system while …");
        assert!(is_disk_failure(&mkfs));
        let dropped = anyhow::Error::new(std::io::Error::other(NotAsWritten {
            path: "/c/x".into(),
            offset: 0,
        }));
        assert!(is_disk_failure(&dropped));
        let denied = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            format!("{:#}", when_disk_fails(root, denied)),
            "Permission denied (os error 13)"
        );
        let full = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(!format!("{:#}", when_disk_fails(root, full)).contains("failing"));
    }
}
