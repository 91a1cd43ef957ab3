//! Routes port I/O and MMIO exits to the device that owns the address.
//!
//! Unclaimed ports read as all ones, like an empty ISA bus, and writes to
//! them are dropped: Linux probes legacy ports (other COM ports, the RTC,
//! PCI config) and must see "nothing here", not a crash.

use super::devices::i8042::{I8042, I8042Event};
use super::devices::serial::SerialDevice;
use super::devices::virtio::block::Block;
use super::devices::virtio::mmio::MmioTransport;
use super::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT, SERIAL_PORT, SERIAL_PORT_LEN};
use super::layout::{VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START};
use crate::outcome::Console;

/// What an access asked the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BusEvent {
    None,
    /// The guest pulsed the reset line.
    Reset,
}

/// The devices of one VM.
#[derive(Debug)]
pub(crate) struct Bus {
    serial: SerialDevice,
    i8042: I8042,
    /// Disk `i` answers at [`virtio_mmio_base`](super::layout::virtio_mmio_base)`(i)`.
    disks: Vec<MmioTransport<Block>>,
}

impl Bus {
    pub(crate) fn new(serial: SerialDevice, disks: Vec<MmioTransport<Block>>) -> Self {
        Bus {
            serial,
            i8042: I8042,
            disks,
        }
    }

    /// Legacy devices take byte accesses only; wider ones float high.
    pub(crate) fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        let [byte] = data else { return };
        if let Some(offset) = serial_offset(port) {
            *byte = self.serial.read(offset);
        } else if is_i8042(port) {
            *byte = self.i8042.read(port);
        }
    }

    pub(crate) fn pio_write(&mut self, port: u16, data: &[u8]) -> BusEvent {
        let &[value] = data else {
            return BusEvent::None;
        };
        if let Some(offset) = serial_offset(port) {
            self.serial.write(offset, value);
        } else if is_i8042(port) && self.i8042.write(port, value) == I8042Event::Reset {
            return BusEvent::Reset;
        }
        BusEvent::None
    }

    /// Unclaimed MMIO reads as zeros.
    pub(crate) fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        match self.disk_at(addr) {
            Some((disk, offset)) => disk.read(offset, data),
            None => data.fill(0),
        }
    }

    pub(crate) fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if let Some((disk, offset)) = self.disk_at(addr) {
            disk.write(offset, data);
        }
    }

    /// The disk whose window holds `addr`, and the offset into it.
    fn disk_at(&mut self, addr: u64) -> Option<(&mut MmioTransport<Block>, u64)> {
        let offset = addr.checked_sub(VIRTIO_MMIO_START)?;
        let index = usize::try_from(offset / VIRTIO_MMIO_SIZE).ok()?;
        let disk = self.disks.get_mut(index)?;
        Some((disk, offset % VIRTIO_MMIO_SIZE))
    }

    #[cfg(test)]
    pub(crate) fn console(&self) -> &Console {
        self.serial.console()
    }

    pub(crate) fn into_console(self) -> Console {
        self.serial.into_console()
    }
}

fn is_i8042(port: u16) -> bool {
    port == I8042_DATA_PORT || port == I8042_COMMAND_PORT
}

fn serial_offset(port: u16) -> Option<u8> {
    let offset = port.checked_sub(SERIAL_PORT)?;
    (offset < SERIAL_PORT_LEN).then_some(offset as u8)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use super::*;
    use crate::vmm::devices::IrqLine;

    pub(crate) fn test_bus() -> Bus {
        let serial =
            SerialDevice::new(IrqLine::new(None, 4).unwrap(), Console::new(Instant::now()));
        Bus::new(serial, Vec::new())
    }

    #[test]
    fn ports_reach_their_devices_and_unclaimed_ones_float_high() {
        let mut bus = test_bus();
        assert_eq!(bus.pio_write(SERIAL_PORT, b"A"), BusEvent::None);
        assert_eq!(bus.console().bytes(), b"A");
        let mut byte = [0u8; 1];
        bus.pio_read(0x2f8, &mut byte);
        assert_eq!(byte, [0xff]);
        bus.pio_read(SERIAL_PORT + 5, &mut byte);
        assert_ne!(byte[0] & 0x20, 0, "LSR says THR empty");
        assert_eq!(bus.pio_write(0x80, &[0x12]), BusEvent::None);
        assert_eq!(bus.pio_write(I8042_COMMAND_PORT, &[0xfe]), BusEvent::Reset);
    }

    #[test]
    fn each_virtio_window_reaches_its_own_disk_and_nothing_else_does() {
        use crate::vmm::devices::virtio::block::tests::{disk, memory};
        use crate::vmm::layout::virtio_mmio_base;
        let (_files, transports): (Vec<_>, Vec<_>) = (0..2)
            .map(|_| {
                let (file, block) = disk();
                let irq = IrqLine::new(None, 5).unwrap();
                (file, MmioTransport::new(block, memory(), irq))
            })
            .unzip();
        let serial =
            SerialDevice::new(IrqLine::new(None, 4).unwrap(), Console::new(Instant::now()));
        let mut bus = Bus::new(serial, transports);
        let mut word = [0u8; 4];
        for i in 0..2 {
            bus.mmio_read(virtio_mmio_base(i), &mut word);
            assert_eq!(&word, b"virt", "disk {i}");
        }
        // Disk 1's status register is its own: disk 0's stays as it was.
        bus.mmio_write(virtio_mmio_base(1) + 0x70, &1u32.to_le_bytes());
        bus.mmio_read(virtio_mmio_base(0) + 0x70, &mut word);
        assert_eq!(word, [0; 4]);
        bus.mmio_read(virtio_mmio_base(1) + 0x70, &mut word);
        assert_eq!(word, 1u32.to_le_bytes());
        bus.mmio_read(virtio_mmio_base(2), &mut word);
        assert_eq!(word, [0; 4]);
        bus.mmio_read(VIRTIO_MMIO_START - 4, &mut word);
        assert_eq!(word, [0; 4]);
    }
}
