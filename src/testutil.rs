//! Helpers shared by the unit tests.

/// Runs `f` on a thread without root's privileges (uid 65534), so EACCES and
/// EPERM can be staged when the tests run as root (CI does).
pub(crate) fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            if nix::unistd::geteuid().is_root() {
                // SAFETY: the raw syscall changes only this thread's
                // credentials (glibc's wrapper would change every thread's);
                // dropping every uid 0 also drops the thread's capabilities.
                let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
                assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap()
    })
}
