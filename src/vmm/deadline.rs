//! The deadline of a run: a one-shot POSIX timer that sends
//! [`kick_signal`] to the vCPU's own thread, whose handler sets that
//! thread's `kvm_run.immediate_exit`.
//!
//! A signal that lands while the thread is in KVM_RUN interrupts it
//! (EINTR); one that lands while the thread is handling an exit makes the
//! next KVM_RUN return at once, so no kick is lost, and no second thread has
//! to be scheduled for a run to start or end.

use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::OnceLock;
use std::time::Duration;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

/// Why the deadline could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    #[error("cannot arm the run's deadline timer: {0}")]
    Timer(io::Error),
    #[error("cannot install the vCPU kick signal handler: {0}")]
    Signal(vmm_sys_util::errno::Error),
}

thread_local! {
    /// This thread's `kvm_run.immediate_exit` while it runs a vCPU.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

/// The real-time signal that kicks a vCPU thread out of KVM_RUN.
pub(crate) fn kick_signal() -> i32 {
    SIGRTMIN() + 4
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer is this thread's live kvm_run mapping: `Armed`
        // borrows the vCPU that owns it and clears the pointer before that
        // borrow ends. The handler interrupts this same thread, perhaps while
        // `VcpuFd::run` holds a `&mut kvm_run`; that page is shared with the
        // kernel, which writes it during every KVM_RUN, so nothing caches
        // it, and this one volatile byte store is the protocol KVM documents
        // for `immediate_exit`.
        unsafe { flag.write_volatile(1) };
    }
}

/// Installs the handler once per process. Its outcome is kept: were a
/// failure forgotten, the next run would arm a timer whose signal, with no
/// handler, terminates the process.
fn install_kick_handler() -> Result<(), DeadlineError> {
    static INSTALLED: OnceLock<Result<(), vmm_sys_util::errno::Error>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| register_signal_handler(kick_signal(), on_kick));
    (*result).map_err(DeadlineError::Signal)
}

/// Runs `body` with a deadline armed `after` from now for `vcpu`, run by
/// this thread; disarms it before returning. Scoped, not a value the caller
/// holds: an `Armed` leaked with `mem::forget` would let its timer write
/// into a kvm_run page freed with the vCPU.
pub(crate) fn with_deadline<R>(
    vcpu: &mut VcpuFd,
    after: Duration,
    body: impl FnOnce(&mut Armed<'_>) -> R,
) -> Result<R, DeadlineError> {
    let mut armed = Armed::arm(vcpu, after)?;
    Ok(body(&mut armed))
}

/// A deadline armed for the calling thread's vCPU, which it borrows (and
/// runs, [`Armed::run`]) until it is dropped and disarmed, so the vCPU and
/// the kvm_run page the handler writes cannot go away first. Not `Send`
/// (the timer signals this thread).
#[derive(Debug)]
pub(crate) struct Armed<'a> {
    timer: libc::timer_t,
    vcpu: &'a mut VcpuFd,
}

impl<'a> Armed<'a> {
    /// Kicks `vcpu`, run by this thread, out of KVM_RUN `after` from now.
    fn arm(vcpu: &'a mut VcpuFd, after: Duration) -> Result<Self, DeadlineError> {
        install_kick_handler()?;
        unblock_kick_signal()?;
        IMMEDIATE_EXIT.with(|c| c.set(&raw mut vcpu.get_kvm_run().immediate_exit));
        let timer = create_timer().inspect_err(|_| clear())?;
        let armed = Armed { timer, vcpu };
        // A zero it_value would disarm the timer: a deadline already passed
        // fires in a nanosecond instead.
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos().into(),
            },
        };
        // SAFETY: `timer` was just created and `spec` is a valid itimerspec.
        if unsafe { libc::timer_settime(armed.timer, 0, &spec, ptr::null_mut()) } != 0 {
            return Err(DeadlineError::Timer(io::Error::last_os_error()));
        }
        Ok(armed)
    }

    /// One KVM_RUN of the borrowed vCPU.
    pub(crate) fn run(&mut self) -> Result<VcpuExit<'_>, kvm_ioctls::Error> {
        self.vcpu.run()
    }

    /// Forgets a kick, so the next [`Armed::run`] enters the guest.
    pub(crate) fn clear_kick(&mut self) {
        self.vcpu.set_kvm_immediate_exit(0);
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        // SAFETY: the timer is ours and deleted once. A signal it already
        // queued is delivered as this call returns, while the pointer below
        // is still live.
        unsafe { libc::timer_delete(self.timer) };
        clear();
    }
}

fn clear() {
    IMMEDIATE_EXIT.with(|c| c.set(ptr::null_mut()));
}

/// A timer that signals this very thread (SIGEV_THREAD_ID), not the process.
fn create_timer() -> Result<libc::timer_t, DeadlineError> {
    // SAFETY: sigevent is a plain C struct for which all zeroes is valid.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = kick_signal();
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = ptr::null_mut();
    // SAFETY: both pointers are valid for the call; the kernel fills `timer`.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
        return Err(DeadlineError::Timer(io::Error::last_os_error()));
    }
    Ok(timer)
}

/// A caller that blocks signals in its threads must still get the kick.
fn unblock_kick_signal() -> Result<(), DeadlineError> {
    // SAFETY: sigset_t is plain data that sigemptyset initializes.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; pthread_sigmask only reads it.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut())
    };
    match rc {
        0 => Ok(()),
        errno => Err(DeadlineError::Timer(io::Error::from_raw_os_error(errno))),
    }
}
