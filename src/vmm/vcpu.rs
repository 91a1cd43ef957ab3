//! The vCPU thread: KVM_RUN, exit handling, and the kick that ends a run at
//! its deadline.
//!
//! Exits are handled by [`handle_exit`], a function of the exit and the
//! [`Bus`] only, so every exit kind is tested without a VM. The deadline is
//! enforced from the caller's thread: it sets the `kicked` flag and sends
//! [`kick_signal`] to the vCPU thread, whose handler sets
//! `kvm_run.immediate_exit`. A signal that lands while the thread is in
//! KVM_RUN interrupts it (EINTR); one that lands just before makes the next
//! KVM_RUN return at once, so no kick is ever lost.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use super::bus::{Bus, BusEvent};
use crate::runner::RunEnd;

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
    #[error("cannot start the vCPU thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot install the vCPU kick signal handler: {0}")]
    Signal(vmm_sys_util::errno::Error),
}

/// What the run loop does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    Continue,
    Stop(RunEnd),
}

/// Handles one exit: device accesses go to the bus; reset, shutdown and
/// the other terminal exits end the run.
pub fn handle_exit(exit: VcpuExit<'_>, bus: &mut Bus) -> Result<ExitAction, VcpuError> {
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
        // A signal interrupted the guest; the loop checks why.
        VcpuExit::Intr => {}
        VcpuExit::FailEntry(reason, _) => return Err(VcpuError::FailEntry(reason)),
        VcpuExit::InternalError => return Err(VcpuError::Internal),
        other => return Err(VcpuError::Unexpected(format!("{other:?}"))),
    }
    Ok(ExitAction::Continue)
}

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, for the kick handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The real-time signal that kicks a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> i32 {
    SIGRTMIN() + 4
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer is this thread's live kvm_run mapping; the
        // thread clears it before the mapping goes away (see `run_vcpu`).
        unsafe { flag.write_volatile(1) };
    }
}

fn install_kick_handler() -> Result<(), VcpuError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| result = register_signal_handler(kick_signal(), on_kick));
    result.map_err(VcpuError::Signal)
}

/// Runs the vCPU until the run ends; `kicked` turns an interruption into a
/// timeout.
fn run_vcpu(vcpu: &mut VcpuFd, bus: &mut Bus, kicked: &AtomicBool) -> Result<RunEnd, VcpuError> {
    let immediate_exit = &raw mut vcpu.get_kvm_run().immediate_exit;
    IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
    let result = loop {
        if kicked.load(Ordering::Acquire) {
            break Ok(RunEnd::Timeout);
        }
        let action = match vcpu.run() {
            Ok(exit) => handle_exit(exit, bus),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(ExitAction::Continue)
            }
            Err(e) => Err(VcpuError::Run(e)),
        };
        match action {
            Ok(ExitAction::Continue) => {}
            Ok(ExitAction::Stop(end)) => break Ok(end),
            Err(e) => break Err(e),
        }
    };
    IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    result
}

/// Runs the vCPU on its own thread until the guest ends the run or
/// `deadline` passes; returns how it ended and the bus (with the console).
pub fn run_until(
    mut vcpu: VcpuFd,
    mut bus: Bus,
    deadline: Instant,
) -> Result<(RunEnd, Bus), VcpuError> {
    install_kick_handler()?;
    let kicked = std::sync::Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let thread_kicked = kicked.clone();
    let handle = thread::Builder::new()
        .name("ktstr-vcpu0".into())
        .spawn(move || {
            let end = run_vcpu(&mut vcpu, &mut bus, &thread_kicked);
            // The vCPU fd (and its kvm_run mapping) is closed here, before
            // the caller tears the VM down.
            drop(vcpu);
            let _ = done_tx.send(());
            end.map(|end| (end, bus))
        })
        .map_err(VcpuError::Thread)?;
    let wait = deadline.saturating_duration_since(Instant::now());
    if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(wait) {
        kicked.store(true, Ordering::Release);
        // The thread may have ended on its own meanwhile; a kick then is moot.
        let _ = handle.kill(kick_signal());
    }
    handle
        .join()
        .unwrap_or_else(|_| Err(VcpuError::Unexpected("the vCPU thread panicked".into())))
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
        assert_eq!(handle(VcpuExit::Intr).unwrap(), ExitAction::Continue);
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
