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

/// Writes `contents` to an executable file at `path` from a child process.
///
/// Tests run on many threads, and each spawn forks: a child forked while
/// this process held the file open for writing keeps that descriptor until
/// it execs, and exec'ing the file meanwhile fails with ETXTBSY. A file
/// written by another process is never open for writing here.
pub(crate) fn executable(path: &std::path::Path, contents: &[u8]) {
    use std::io::Write;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(contents).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "writing {}",
        path.display()
    );
}

/// An executable shell script at `path` that runs `body`.
pub(crate) fn script(path: &std::path::Path, body: &str) {
    executable(path, format!("#!/bin/sh\n{body}\n").as_bytes());
}
