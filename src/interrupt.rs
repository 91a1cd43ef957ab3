//! SIGINT, SIGTERM and SIGHUP: stop the guest, remove what this process
//! staged, exit with the signal's code.
//!
//! The binary calls [`watch`] before any thread exists: it blocks the three
//! signals in every thread and leaves one thread to take them with
//! sigwait(2), so no handler ever runs and that thread may do anything. It
//! records the first signal ([`received`]) and runs the wakers registered
//! with [`on_interrupt`] (a vCPU kick). The work observes the record at its
//! waiting points ([`check`]: the guest, a lock wait, a copy loop) and fails
//! with [`Interrupted`]; unwinding drops the guards that remove staging
//! images, staging directories and a half-written clone, and the binary then
//! says `interrupted` and exits 128 + the signal's number.
//!
//! A second signal, or a flow still running after the grace period given to
//! [`watch`], ends the process at once: the kernel then kills QEMU (its
//! parent-death signal), and `cargo ktstr clean` removes what is left.
//! Children start with an empty signal mask (std resets it), so QEMU and
//! mkfs still die of a Ctrl-C sent to the terminal's process group.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// The signals [`watch`] takes.
pub(crate) const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The first signal taken, 0 before.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

type Waker = Box<dyn Fn() + Send>;

/// What runs when the first signal arrives, by registration number.
static WAKERS: Mutex<Vec<(u64, Waker)>> = Mutex::new(Vec::new());
static NEXT_WAKER: AtomicU64 = AtomicU64::new(0);

/// The error a waiting point returns once a signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub(crate) struct Interrupted(pub Signal);

/// The signal taken, if one was.
pub(crate) fn received() -> Option<Signal> {
    Signal::try_from(RECEIVED.load(Ordering::SeqCst)).ok()
}

/// `Err` once a signal arrived: for a waiting point to stop at.
pub(crate) fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), |signal| Err(Interrupted(signal)))
}

/// The exit status for `signal`, as a shell reports a death by it.
pub(crate) fn exit_code(signal: Signal) -> u8 {
    128 + signal as i32 as u8
}

/// Runs `waker` on the signal thread when the first signal arrives (at once
/// if one already has), until the returned guard is dropped: for a wait
/// that polling cannot reach, such as a vCPU inside KVM_RUN.
pub(crate) fn on_interrupt(waker: impl Fn() + Send + 'static) -> WakerGuard {
    let id = NEXT_WAKER.fetch_add(1, Ordering::Relaxed);
    let mut wakers = WAKERS.lock().unwrap_or_else(|e| e.into_inner());
    wakers.push((id, Box::new(waker)));
    // Under the lock: a signal that came before the push is seen here, one
    // after it finds the waker in the list.
    if received().is_some() {
        (wakers.last().expect("just pushed").1)();
    }
    WakerGuard(id)
}

/// Unregisters its waker when dropped; until then the waker may run.
#[derive(Debug)]
pub(crate) struct WakerGuard(u64);

impl Drop for WakerGuard {
    fn drop(&mut self) {
        let mut wakers = WAKERS.lock().unwrap_or_else(|e| e.into_inner());
        wakers.retain(|(id, _)| *id != self.0);
    }
}

/// Blocks [`SIGNALS`] in this thread, and so in every thread it starts
/// later, and starts the thread that takes them. Call it before any other
/// thread exists. `grace`: how long the flow may take to stop once a signal
/// arrived before the process ends anyway (zero for a command with no
/// waiting points that observe [`check`]).
pub(crate) fn watch(grace: Duration) -> Result<()> {
    let set = signal_set();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("failed to block SIGINT, SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || take_signals(set, grace))
        .context("failed to start the signal thread")?;
    Ok(())
}

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in SIGNALS {
        set.add(signal);
    }
    set
}

/// The signal thread: records the first signal, wakes the waiters, then
/// gives the flow `grace` to unwind.
fn take_signals(set: SigSet, grace: Duration) {
    let Ok(first) = set.wait() else { return };
    RECEIVED.store(first as i32, Ordering::SeqCst);
    for (_, waker) in WAKERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        waker();
    }
    if grace.is_zero() {
        exit_now(first, "");
    }
    match wait_for(&set, grace) {
        Some(second) => exit_now(first, &format!(" (and {second}: not cleaning up)")),
        None => exit_now(
            first,
            &format!(
                " (still stopping after {}s: not cleaning up; `cargo ktstr clean` removes \
                 what is left)",
                grace.as_secs()
            ),
        ),
    }
}

/// The next of `set` within `timeout`, if any.
fn wait_for(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let spec = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos().into(),
    };
    loop {
        // SAFETY: both pointers are valid for the call; no siginfo is asked for.
        let signo = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &spec) };
        match signo {
            -1 if nix::errno::Errno::last() == nix::errno::Errno::EINTR => continue,
            -1 => return None,
            signo => return Signal::try_from(signo).ok(),
        }
    }
}

/// Ends the process from the signal thread, without running the flow's
/// destructors.
fn exit_now(signal: Signal, why: &str) -> ! {
    eprintln!("cargo-ktstr: interrupted by {signal}{why}");
    // SAFETY: _exit ends the process without touching its memory; no
    // destructor or atexit handler runs while another thread works.
    unsafe { libc::_exit(exit_code(signal).into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_exits_as_a_shell_reports_it() {
        assert_eq!(SIGNALS.map(exit_code), [130, 143, 129]);
        assert_eq!(
            Interrupted(Signal::SIGTERM).to_string(),
            "interrupted by SIGTERM"
        );
    }
}
