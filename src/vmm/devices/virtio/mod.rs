//! Virtio devices over the MMIO transport (virtio 1.2, section 4.2.2,
//! "modern" version 2 registers only). [`mmio::MmioTransport`] owns the
//! registers, feature negotiation, the device status and the queues; a
//! [`VirtioDevice`] says what it is and serves its queue.

use virtio_queue::Queue;

use crate::vmm::memory::GuestMem;

pub(crate) mod block;
pub(crate) mod mmio;

/// What the transport needs from a device.
pub(crate) trait VirtioDevice {
    /// The virtio device id (2 for a block device).
    fn device_type(&self) -> u32;

    /// The feature bits the device offers (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;

    /// Device-specific configuration space, read at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Serves every available request on `queue`; true if any was used.
    fn process_queue(&mut self, mem: &GuestMem, queue: &mut Queue) -> bool;
}
