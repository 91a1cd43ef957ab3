//! The COM1 console: vm-superio's 16550 with output captured in memory and
//! the time of the first byte noted.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use vm_superio::Serial;

use super::IrqLine;

/// The most console output kept: a guest that prints without end must not
/// exhaust the host's memory before its deadline.
pub const CONSOLE_LIMIT: usize = 16 << 20;

/// What the guest printed (its last [`CONSOLE_LIMIT`] bytes at most, where
/// the result line and the tail an error shows are), and when it started.
#[derive(Debug)]
pub struct Console {
    start: Instant,
    bytes: Vec<u8>,
    first_output: Option<Duration>,
    limit: usize,
}

impl Console {
    /// A console for a run that began at `start`.
    pub fn new(start: Instant) -> Self {
        Self::with_limit(start, CONSOLE_LIMIT)
    }

    fn with_limit(start: Instant, limit: usize) -> Self {
        Console {
            start,
            bytes: Vec::new(),
            first_output: None,
            limit,
        }
    }

    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// From the start of the run to the first byte.
    pub fn first_output(&self) -> Option<Duration> {
        self.first_output
    }
}

// The UART writes one byte per THR write; keeping them in memory (not on
// stdout) lets the caller show the tail of a failed guest's console.
impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.first_output.is_none() && !buf.is_empty() {
            self.first_output = Some(self.start.elapsed());
        }
        self.bytes.extend_from_slice(buf);
        if self.bytes.len() > self.limit {
            // Drop the oldest half at once, so trimming stays cheap per byte.
            let excess = self.bytes.len() - self.limit / 2;
            self.bytes.drain(..excess);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The UART at its port base, registers addressed by offset 0-7.
#[derive(Debug)]
pub struct SerialDevice {
    uart: Serial<IrqLine, vm_superio::serial::NoEvents, Console>,
}

impl SerialDevice {
    pub fn new(irq: IrqLine, console: Console) -> Self {
        SerialDevice {
            uart: Serial::new(irq, console),
        }
    }

    /// Reads register `offset` (0-7 from the port base); with no input
    /// attached, the receive side is always empty.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// A failed interrupt only loses a wake-up; the byte itself is kept, so
    /// the error is logged, not fatal.
    pub fn write(&mut self, offset: u8, value: u8) {
        if let Err(e) = self.uart.write(offset, value) {
            tracing::debug!("serial: {e}");
        }
    }

    #[cfg(test)]
    pub fn console(&self) -> &Console {
        self.uart.writer()
    }

    pub fn into_console(self) -> Console {
        self.uart.into_writer()
    }
}

#[cfg(test)]
mod tests {
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
    fn endless_output_keeps_only_the_tail() {
        let mut console = Console::with_limit(Instant::now(), 64);
        for i in 0..1000u32 {
            console.write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        assert!(console.bytes().len() <= 64);
        assert!(console.bytes().ends_with(b"998\n999\n"));
    }

    #[test]
    fn enabling_the_tx_interrupt_raises_the_line() {
        let mut serial = device();
        serial.write(IER, 0x2); // THR-empty interrupt
        serial.write(THR, b'x');
        assert!(serial.uart.interrupt_evt().take_count() >= 1);
    }
}
