//! The virtio-mmio register window (virtio 1.2, 4.2.2).
//!
//! The driver resets the device (status 0), acknowledges it, reads the
//! device features a 32-bit half at a time, writes the ones it accepts,
//! sets FEATURES_OK (which sticks only if the set is acceptable: a subset
//! of what is offered, VIRTIO_F_VERSION_1 included), sizes and places each
//! queue and marks it ready, then sets DRIVER_OK. A write to QueueNotify
//! has the device serve that queue; used buffers raise the interrupt, which
//! the driver acknowledges through InterruptACK.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};

use super::VirtioDevice;
use crate::vmm::devices::IrqLine;
use crate::vmm::memory::GuestMem;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION_MODERN: u32 = 2;
const VENDOR_ID: u32 = 0x5453_4b54; // "KTST"
const QUEUE_MAX_SIZE: u16 = 256;

/// A device behind its MMIO registers.
#[derive(Debug)]
pub(crate) struct MmioTransport<D> {
    device: D,
    mem: GuestMem,
    irq: IrqLine,
    queue: Queue,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// A transport with one queue.
    pub(crate) fn new(device: D, mem: GuestMem, irq: IrqLine) -> Self {
        MmioTransport {
            device,
            mem,
            irq,
            queue: Queue::new(QUEUE_MAX_SIZE).expect("a power-of-two queue size"),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
        }
    }

    /// Reads at `offset` into the window; bad sizes and offsets read zero.
    pub(crate) fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        // The spec allows only aligned 32-bit accesses below the config space.
        if data.len() != 4 {
            return;
        }
        let value = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION_MODERN,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => half(self.device.features(), self.device_features_sel),
            // A maximum of 0 tells the driver a selected queue does not exist.
            VIRTIO_MMIO_QUEUE_NUM_MAX if self.queue_sel == 0 => u32::from(self.queue.max_size()),
            VIRTIO_MMIO_QUEUE_READY if self.queue_sel == 0 => u32::from(self.queue.ready()),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            // The configuration never changes.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            // Legacy (version 1) registers and unknown offsets.
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    /// Writes at `offset`; the config space and odd sizes are read-only.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES => self.set_driver_features(value),
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt_status &= !value,
            VIRTIO_MMIO_STATUS => self.set_status(value),
            reg => self.write_queue_register(reg, value),
        }
    }

    fn set_driver_features(&mut self, value: u32) {
        // Features are fixed once FEATURES_OK is set.
        if self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.driver_features =
                    (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
            }
            _ => {}
        }
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver sets bits one step at a time; only the step that adds
        // FEATURES_OK is checked, and refusing it is how a device says no.
        let mut value = value;
        let newly = value & !self.status;
        if newly & VIRTIO_CONFIG_S_FEATURES_OK != 0 && !self.features_acceptable() {
            value &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        self.status = value;
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.features();
        self.driver_features & !offered == 0
            && self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0
    }

    fn reset(&mut self) {
        self.queue.reset();
        self.status = 0;
        self.interrupt_status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }

    /// Queue size and addresses, for the selected queue while it is not
    /// ready (the spec forbids changing a live queue).
    fn write_queue_register(&mut self, reg: u32, value: u32) {
        if self.queue_sel != 0 {
            return;
        }
        let q = &mut self.queue;
        match reg {
            VIRTIO_MMIO_QUEUE_READY => q.set_ready(value == 1),
            _ if q.ready() => {}
            VIRTIO_MMIO_QUEUE_NUM => q.set_size(value as u16),
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.set_avail_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => q.set_avail_ring_address(None, Some(value)),
            VIRTIO_MMIO_QUEUE_USED_LOW => q.set_used_ring_address(Some(value), None),
            VIRTIO_MMIO_QUEUE_USED_HIGH => q.set_used_ring_address(None, Some(value)),
            _ => {}
        }
    }

    /// Serves queue `index` once the driver is done setting up; a queue
    /// the driver left invalid is not touched.
    fn notify(&mut self, index: u32) {
        let live = self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0
            && self.status & VIRTIO_CONFIG_S_FAILED == 0;
        if index != 0 || !live || !self.queue.ready() || !self.queue.is_valid(&self.mem) {
            return;
        }
        if self.device.process_queue(&self.mem, &mut self.queue)
            && self.queue.needs_notification(&self.mem).unwrap_or(true)
        {
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING;
            if let Err(e) = self.irq.trigger() {
                tracing::warn!("virtio-mmio: cannot raise the interrupt: {e}");
            }
        }
    }
}

/// The 32-bit half `sel` of `features`.
fn half(features: u64, sel: u32) -> u32 {
    match sel {
        0 => features as u32,
        1 => (features >> 32) as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_blk::{
        VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_T_GET_ID,
    };
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::vmm::devices::virtio::block::tests::{DATA, HEADER, STATUS, chain, disk, memory};
    use crate::vmm::devices::virtio::block::{Block, DISK_ID};

    fn transport() -> (tempfile::NamedTempFile, MmioTransport<Block>) {
        let (file, block) = disk();
        (
            file,
            MmioTransport::new(block, memory(), IrqLine::new(None, 5).unwrap()),
        )
    }

    fn read(t: &mut MmioTransport<Block>, reg: u32) -> u32 {
        let mut data = [0u8; 4];
        t.read(u64::from(reg), &mut data);
        u32::from_le_bytes(data)
    }

    fn write(t: &mut MmioTransport<Block>, reg: u32, value: u32) {
        t.write(u64::from(reg), &value.to_le_bytes());
    }

    fn negotiate(t: &mut MmioTransport<Block>, high: u32) -> u32 {
        write(t, VIRTIO_MMIO_STATUS, 0);
        let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        write(t, VIRTIO_MMIO_STATUS, status);
        write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        write(t, VIRTIO_MMIO_DRIVER_FEATURES, 1 << VIRTIO_BLK_F_FLUSH);
        write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write(t, VIRTIO_MMIO_DRIVER_FEATURES, high);
        status |= VIRTIO_CONFIG_S_FEATURES_OK;
        write(t, VIRTIO_MMIO_STATUS, status);
        read(t, VIRTIO_MMIO_STATUS)
    }

    #[test]
    fn identifies_as_a_modern_block_device_with_its_capacity() {
        let (_file, mut t) = transport();
        assert_eq!(read(&mut t, VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        assert_eq!(read(&mut t, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(read(&mut t, VIRTIO_MMIO_DEVICE_ID), 2);
        let low = (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX);
        assert_eq!(read(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), low);
        write(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(read(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 1);
        assert_eq!(read(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        let mut capacity = [0u8; 8];
        t.read(u64::from(VIRTIO_MMIO_CONFIG), &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 128);
        assert_eq!(read(&mut t, VIRTIO_MMIO_CONFIG + 12), 126, "seg_max");
        assert_eq!(read(&mut t, VIRTIO_MMIO_CONFIG + 64), 0, "past the config");
        // A byte read of a 32-bit register is not a register read.
        let mut byte = [0xffu8];
        t.read(0, &mut byte);
        assert_eq!(byte, [0]);
    }

    #[test]
    fn features_ok_sticks_only_with_version_1_and_offered_bits() {
        let (_file, mut t) = transport();
        assert_eq!(negotiate(&mut t, 0) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
        assert_eq!(negotiate(&mut t, 1 | 2) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
        assert_ne!(negotiate(&mut t, 1) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    }

    #[test]
    fn a_notified_queue_is_served_and_raises_the_interrupt_until_acked() {
        let (_file, mut t) = transport();
        negotiate(&mut t, 1);
        let mem = t.mem.clone();
        let vq = MockSplitQueue::create(&mem, GuestAddress(0), 16);
        write(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
        write(&mut t, VIRTIO_MMIO_QUEUE_NUM, 16);
        write(
            &mut t,
            VIRTIO_MMIO_QUEUE_DESC_LOW,
            vq.desc_table_addr().0 as u32,
        );
        write(
            &mut t,
            VIRTIO_MMIO_QUEUE_AVAIL_LOW,
            vq.avail_addr().0 as u32,
        );
        write(&mut t, VIRTIO_MMIO_QUEUE_USED_LOW, vq.used_addr().0 as u32);
        write(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
        assert_eq!(read(&mut t, VIRTIO_MMIO_QUEUE_READY), 1);

        mem.write_obj(VIRTIO_BLK_T_GET_ID, GuestAddress(HEADER))
            .unwrap();
        let get_id = chain(&[(HEADER, 16, false), (DATA, 20, true), (STATUS, 1, true)]);
        vq.add_desc_chains(&get_id, 0).unwrap();
        // Not served before DRIVER_OK.
        write(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(vq.used().idx().load(), 0);
        let status = read(&mut t, VIRTIO_MMIO_STATUS);
        write(
            &mut t,
            VIRTIO_MMIO_STATUS,
            status | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        write(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(vq.used().idx().load(), 1);
        let mut id = [0u8; 14];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, DISK_ID);
        assert_eq!(
            read(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
            VIRTIO_MMIO_INT_VRING
        );
        assert_eq!(t.irq.take_count(), 1);
        write(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        assert_eq!(read(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

        // A reset takes the queue down.
        write(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(read(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
        assert_eq!(read(&mut t, VIRTIO_MMIO_STATUS), 0);
    }

    proptest::proptest! {
        /// Any sequence of register accesses, of any width, leaves the
        /// transport answering (the VMM never panics on a guest's whim).
        #[test]
        fn arbitrary_register_traffic_never_panics(
            ops in proptest::collection::vec(
                (0u64..0x140, proptest::num::u32::ANY, proptest::sample::select(vec![1usize, 2, 4, 8]),
                 proptest::bool::ANY),
                1..64,
            ),
        ) {
            let (_file, mut t) = transport();
            for (offset, value, len, is_write) in ops {
                let bytes = value.to_le_bytes();
                let mut data = [0u8; 8];
                data[..len.min(4)].copy_from_slice(&bytes[..len.min(4)]);
                if is_write {
                    t.write(offset, &data[..len]);
                } else {
                    t.read(offset, &mut data[..len]);
                }
            }
            proptest::prop_assert_eq!(read(&mut t, VIRTIO_MMIO_MAGIC_VALUE), MAGIC);
        }
    }
}
