//! Whether the process that wrote a piece of debris still runs.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Whether `pid` may still be running. Only ESRCH says it is gone: EPERM is a
/// live process of another user, and any other errno is no proof of death.
pub(crate) fn alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid));
        // pid 1 belongs to root; as another user kill() says EPERM: alive.
        let errno = crate::testutil::as_nobody(|| kill(Pid::from_raw(1), None));
        assert_eq!(errno, Err(Errno::EPERM));
        assert!(crate::testutil::as_nobody(|| alive(1)));
    }
}
