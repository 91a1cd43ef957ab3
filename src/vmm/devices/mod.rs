//! The guest's devices: a 16550 console, the i8042 (for its reset line) and
//! a virtio-mmio block device. Each raises its interrupt through an
//! [`IrqLine`], an eventfd KVM turns into an IOAPIC edge (irqfd).

use std::io;

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub(crate) mod i8042;
pub(crate) mod serial;
pub(crate) mod virtio;

/// An interrupt line wired to a GSI through KVM_IRQFD.
#[derive(Debug)]
pub(crate) struct IrqLine {
    evt: EventFd,
}

impl IrqLine {
    /// Creates the eventfd and registers it for `gsi`; without a VM the line
    /// only counts triggers (for device unit tests).
    pub(crate) fn new(vm: Option<&VmFd>, gsi: u32) -> io::Result<Self> {
        let evt = EventFd::new(EFD_NONBLOCK)?;
        if let Some(vm) = vm {
            vm.register_irqfd(&evt, gsi).map_err(io::Error::from)?;
        }
        Ok(IrqLine { evt })
    }

    /// Raises the interrupt.
    pub(crate) fn trigger(&self) -> io::Result<()> {
        self.evt.write(1)
    }

    /// How many triggers since the last call.
    #[cfg(test)]
    pub(crate) fn take_count(&self) -> u64 {
        self.evt.read().unwrap_or(0)
    }
}

impl vm_superio::Trigger for IrqLine {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        IrqLine::trigger(self)
    }
}
