//! The vCPU loop: KVM_RUN on the caller's thread until the run ends.
//!
//! Exits are handled by [`handle_exit`], a function of the exit and the
//! [`Bus`] only, so every exit kind is tested without a VM. The deadline
//! ([`super::deadline`]) interrupts KVM_RUN; an interruption at or after
//! the deadline is the timeout, one after a SIGINT, SIGTERM or SIGHUP
//! ([`crate::interrupt`]) an error.

use std::time::Instant;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::bus::{Bus, BusEvent};
use super::deadline::{Armed, DeadlineError, kick_signal, with_deadline};
use crate::outcome::RunEnd;

/// Why the vCPU could not go on.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
    #[error("KVM could not enter the guest (hardware reason {0:#x})")]
    FailEntry(u64),
    #[error("KVM reported an internal error running the guest")]
    Internal,
    #[error("unexpected vCPU exit: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Deadline(#[from] DeadlineError),
    #[error("stopped by a signal to this process")]
    Interrupted,
}

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitAction {
    Continue,
    /// A signal interrupted the guest: the deadline may have passed.
    Interrupted,
    Stop(RunEnd),
}

/// Handles one exit: device accesses go to the bus; reset, shutdown and
/// the other terminal exits end the run.
pub(crate) fn handle_exit(exit: VcpuExit<'_>, bus: &mut Bus) -> Result<ExitAction, VcpuError> {
    match exit {
        VcpuExit::IoIn(port, data) => bus.pio_read(port, data),
        VcpuExit::IoOut(port, data) => {
            if bus.pio_write(port, data) == BusEvent::Reset {
                return Ok(ExitAction::Stop(RunEnd::Reset));
            }
        }
        VcpuExit::MmioRead(addr, data) => bus.mmio_read(addr, data),
        VcpuExit::MmioWrite(addr, data) => bus.mmio_write(addr, data),
        // A triple fault, or HLT with nothing (no in-kernel irqchip) to wake it.
        VcpuExit::Shutdown | VcpuExit::Hlt => return Ok(ExitAction::Stop(RunEnd::Shutdown)),
        VcpuExit::SystemEvent(kind, _) => {
            return match kind {
                KVM_SYSTEM_EVENT_RESET => Ok(ExitAction::Stop(RunEnd::Reset)),
                KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_CRASH => {
                    Ok(ExitAction::Stop(RunEnd::Shutdown))
                }
                other => Err(VcpuError::Unexpected(format!("system event {other}"))),
            };
        }
        VcpuExit::Intr => return Ok(ExitAction::Interrupted),
        VcpuExit::FailEntry(reason, _) => return Err(VcpuError::FailEntry(reason)),
        VcpuExit::InternalError => return Err(VcpuError::Internal),
        other => return Err(VcpuError::Unexpected(format!("{other:?}"))),
    }
    Ok(ExitAction::Continue)
}

/// Runs `vcpu` on this thread until the guest ends the run or `deadline`
/// passes.
pub(crate) fn run_until(
    vcpu: &mut VcpuFd,
    bus: &mut Bus,
    deadline: Instant,
) -> Result<RunEnd, VcpuError> {
    let after = deadline.saturating_duration_since(Instant::now());
    with_deadline(vcpu, after, |armed| run_armed(armed, bus, deadline))?
}

fn run_armed(armed: &mut Armed<'_>, bus: &mut Bus, deadline: Instant) -> Result<RunEnd, VcpuError> {
    // SAFETY: pthread_self has no preconditions.
    let this = unsafe { libc::pthread_self() };
    // A signal to stop ([`crate::interrupt`]) kicks this thread as the
    // deadline does; the guard unregisters it while the kick's handler is
    // still armed.
    let _kick = crate::interrupt::on_interrupt(move || {
        // SAFETY: the thread is alive while the guard is: it drops the
        // guard before it returns.
        unsafe { libc::pthread_kill(this, kick_signal()) };
    });
    loop {
        let action = match armed.run() {
            Ok(exit) => handle_exit(exit, bus)?,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ExitAction::Interrupted
            }
            Err(e) => return Err(VcpuError::Run(e)),
        };
        match action {
            ExitAction::Continue => {}
            ExitAction::Interrupted => {
                // Clear the kick first, then look at the clock: the timer
                // fires once, and a kick landing after the look but before
                // a clear would be erased, and the run would never end.
                armed.clear_kick();
                if crate::interrupt::received().is_some() {
                    return Err(VcpuError::Interrupted);
                }
                if Instant::now() >= deadline {
                    return Ok(RunEnd::Timeout);
                }
            }
            ExitAction::Stop(end) => return Ok(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::bus::tests::test_bus;
    use crate::vmm::layout::SERIAL_PORT;

    fn handle(exit: VcpuExit<'_>) -> Result<ExitAction, VcpuError> {
        handle_exit(exit, &mut test_bus())
    }

    #[test]
    fn port_io_reaches_the_bus_and_the_i8042_reset_stops_the_run() {
        let mut bus = test_bus();
        let out = handle_exit(VcpuExit::IoOut(SERIAL_PORT, b"k"), &mut bus).unwrap();
        assert_eq!(out, ExitAction::Continue);
        assert_eq!(bus.console().bytes(), b"k");
        let mut data = [0u8; 1];
        let r = handle_exit(VcpuExit::IoIn(0x2f8, &mut data), &mut bus).unwrap();
        assert_eq!((r, data), (ExitAction::Continue, [0xff]));
        let r = handle_exit(VcpuExit::IoOut(0x64, &[0xfe]), &mut bus).unwrap();
        assert_eq!(r, ExitAction::Stop(RunEnd::Reset));
    }

    #[test]
    fn terminal_exits_say_how_the_run_ended() {
        assert_eq!(
            handle(VcpuExit::Shutdown).unwrap(),
            ExitAction::Stop(RunEnd::Shutdown)
        );
        assert_eq!(
            handle(VcpuExit::Hlt).unwrap(),
            ExitAction::Stop(RunEnd::Shutdown)
        );
        let reset = handle(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[])).unwrap();
        assert_eq!(reset, ExitAction::Stop(RunEnd::Reset));
        let off = handle(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, &[])).unwrap();
        assert_eq!(off, ExitAction::Stop(RunEnd::Shutdown));
        assert_eq!(handle(VcpuExit::Intr).unwrap(), ExitAction::Interrupted);
    }

    #[test]
    fn broken_states_are_errors_not_panics() {
        assert!(matches!(
            handle(VcpuExit::FailEntry(0x21, 0)),
            Err(VcpuError::FailEntry(0x21))
        ));
        assert!(matches!(
            handle(VcpuExit::InternalError),
            Err(VcpuError::Internal)
        ));
        assert!(matches!(
            handle(VcpuExit::Unknown),
            Err(VcpuError::Unexpected(_))
        ));
        assert!(matches!(
            handle(VcpuExit::SystemEvent(99, &[])),
            Err(VcpuError::Unexpected(_))
        ));
    }

    #[test]
    fn mmio_outside_any_device_reads_zero() {
        let mut data = [0xaau8; 4];
        let r = handle_exit(VcpuExit::MmioRead(0xe000_0000, &mut data), &mut test_bus()).unwrap();
        assert_eq!((r, data), (ExitAction::Continue, [0; 4]));
    }
}
