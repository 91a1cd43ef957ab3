//! The COM1 console: vm-superio's 16550 writing into a bounded [`Console`].

use vm_superio::Serial;

use super::IrqLine;
use crate::outcome::Console;

/// The UART at its port base, registers addressed by offset 0-7.
#[derive(Debug)]
pub(crate) struct SerialDevice {
    uart: Serial<IrqLine, vm_superio::serial::NoEvents, Console>,
}

impl SerialDevice {
    pub(crate) fn new(irq: IrqLine, console: Console) -> Self {
        SerialDevice {
            uart: Serial::new(irq, console),
        }
    }

    /// Reads register `offset` (0-7 from the port base); with no input
    /// attached, the receive side is always empty.
    pub(crate) fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// A failed interrupt only loses a wake-up; the byte itself is kept, so
    /// the error is logged, not fatal.
    pub(crate) fn write(&mut self, offset: u8, value: u8) {
        if let Err(e) = self.uart.write(offset, value) {
            tracing::debug!("serial: {e}");
        }
    }

    #[cfg(test)]
    pub(crate) fn console(&self) -> &Console {
        self.uart.writer()
    }

    pub(crate) fn into_console(self) -> Console {
        self.uart.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const THR: u8 = 0;
    const IER: u8 = 1;
    const LSR: u8 = 5;

    fn device() -> SerialDevice {
        SerialDevice::new(IrqLine::new(None, 4).unwrap(), Console::new(Instant::now()))
    }

    #[test]
    fn bytes_written_to_thr_reach_the_console_with_a_first_output_time() {
        let mut serial = device();
        assert_eq!(serial.console().first_output(), None);
        for b in b"hi\n" {
            serial.write(THR, *b);
        }
        assert_eq!(serial.console().bytes(), b"hi\n");
        assert!(serial.console().first_output().is_some());
        // Transmitter empty: the driver may always write again.
        assert_ne!(serial.read(LSR) & 0x20, 0);
    }

    #[test]
    fn enabling_the_tx_interrupt_raises_the_line() {
        let mut serial = device();
        serial.write(IER, 0x2); // THR-empty interrupt
        serial.write(THR, b'x');
        assert!(serial.uart.interrupt_evt().take_count() >= 1);
    }
}
