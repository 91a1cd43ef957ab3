//! virtio-blk (virtio 1.2, 5.2) backed by a host file.
//!
//! A request is a descriptor chain holding, in order, a 16-byte
//! device-readable header (type, reserved, sector), the data
//! (device-writable for IN and GET_ID, device-readable for OUT), and a
//! status byte, the last byte of the last, device-writable, descriptor.
//! Where one part ends and the next begins is counted in bytes, not
//! descriptors (a driver may combine them). A chain that breaks these rules, reaches past
//! the end of the disk or of guest RAM, or names an unknown type gets an
//! error status; a chain with nowhere to put a status is returned unused.
//! Nothing a guest writes into a queue can make the VMM fail.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

use super::VirtioDevice;
use crate::vmm::memory::GuestMem;

pub(crate) const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: u32 = 16;
/// Data buffers per request: without it Linux sends one segment at a time.
/// The queue's 256 descriptors hold this many plus header and status.
const SEG_MAX: u32 = 126;
/// What GET_ID returns (NUL-padded to 20 bytes) for a disk served without
/// an id of its own (tests).
#[cfg(test)]
pub(crate) const DISK_ID: &[u8] = b"ktstr-template";

/// Why a request failed; each maps to a status byte.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VirtioBlockError {
    #[error("malformed descriptor chain: {0}")]
    Malformed(&'static str),
    #[error("request past the end of the disk")]
    PastEnd,
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("disk I/O: {0}")]
    Io(#[from] io::Error),
}

impl VirtioBlockError {
    fn status(&self) -> u8 {
        match self {
            VirtioBlockError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// The block device: a file and its size in sectors.
#[derive(Debug)]
pub(crate) struct Block {
    disk: File,
    sectors: u64,
    /// The serial the guest reads (`/sys/block/vdX/serial`), NUL-padded.
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
}

impl Block {
    /// Serves `disk`; its size (rounded down to whole sectors) is the capacity.
    #[cfg(test)]
    pub(crate) fn new(disk: File) -> io::Result<Self> {
        Block::with_id(disk, DISK_ID)
    }

    /// Serves `disk` (its size rounded down to whole sectors is the capacity)
    /// with the serial `id` (at most 20 bytes): with several
    /// disks the guest tells them apart by it, not by probe order.
    pub(crate) fn with_id(disk: File, id: &[u8]) -> io::Result<Self> {
        let sectors = disk.metadata()?.len() / SECTOR_SIZE;
        let mut padded = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let Some(room) = padded.get_mut(..id.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a disk serial has at most {VIRTIO_BLK_ID_BYTES} bytes"),
            ));
        };
        room.copy_from_slice(id);
        Ok(Block {
            disk,
            sectors,
            id: padded,
        })
    }

    /// Serves one chain; returns how many bytes it wrote into guest memory
    /// (for the used ring), or None when the chain has no status byte.
    fn serve(&mut self, mem: &GuestMem, descs: &[Descriptor]) -> Option<u32> {
        let last = descs.last()?;
        if !last.is_write_only() || last.len() == 0 {
            return None;
        }
        let status_addr = last.addr().checked_add(u64::from(last.len()) - 1)?;
        let mut body: Vec<Segment> = descs.iter().map(Segment::from).collect();
        if let Some(end) = body.last_mut() {
            end.len -= 1;
        }
        let (written, status) = match self.execute(mem, body) {
            Ok(written) => (written, VIRTIO_BLK_S_OK as u8),
            Err(e) => {
                tracing::debug!("virtio-blk: {e}");
                (0, e.status())
            }
        };
        mem.write_obj(status, status_addr).ok()?;
        Some(written + 1)
    }

    fn execute(&mut self, mem: &GuestMem, mut body: Vec<Segment>) -> Result<u32, VirtioBlockError> {
        let header = split_front(&mut body, HEADER_LEN)
            .filter(|h| h.iter().all(|s| !s.writable))
            .ok_or(VirtioBlockError::Malformed(
                "header not a readable 16 bytes",
            ))?;
        let mut bytes = [0u8; HEADER_LEN as usize];
        let mut at = 0;
        for s in &header {
            let len = s.len as usize;
            mem.read_slice(&mut bytes[at..at + len], s.addr)?;
            at += len;
        }
        let kind = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
        let data = body;
        match kind {
            VIRTIO_BLK_T_IN => self.transfer(mem, &data, sector, true),
            VIRTIO_BLK_T_OUT => self.transfer(mem, &data, sector, false).map(|_| 0),
            VIRTIO_BLK_T_FLUSH => self.disk.sync_all().map(|_| 0).map_err(Into::into),
            VIRTIO_BLK_T_GET_ID => get_id(mem, &data, &self.id),
            other => Err(VirtioBlockError::Unsupported(other)),
        }
    }

    /// Moves whole sectors between the disk and the data buffers; returns
    /// the bytes moved.
    fn transfer(
        &mut self,
        mem: &GuestMem,
        data: &[Segment],
        sector: u64,
        read: bool,
    ) -> Result<u32, VirtioBlockError> {
        if data.iter().any(|d| d.writable != read) {
            return Err(VirtioBlockError::Malformed(
                "data buffer of the wrong direction",
            ));
        }
        let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
        let end = sector
            .checked_mul(SECTOR_SIZE)
            .and_then(|start| start.checked_add(total))
            .ok_or(VirtioBlockError::PastEnd)?;
        if total % SECTOR_SIZE != 0 {
            return Err(VirtioBlockError::Malformed(
                "length not a whole number of sectors",
            ));
        }
        if end > self.sectors * SECTOR_SIZE {
            return Err(VirtioBlockError::PastEnd);
        }
        // Straight between the file and guest RAM, no bounce buffer; one
        // seek, since the buffers follow each other on the disk.
        self.disk.seek(SeekFrom::Start(sector * SECTOR_SIZE))?;
        for d in data {
            let len = d.len as usize;
            if read {
                mem.read_exact_volatile_from(d.addr, &mut self.disk, len)?;
            } else {
                mem.write_all_volatile_to(d.addr, &mut self.disk, len)?;
            }
        }
        Ok(total as u32)
    }
}

/// A run of guest bytes from a descriptor, or part of one: the driver may
/// put the header, data and status byte in descriptors as it likes (virtio
/// 1.2, 2.6.4), so a request is cut by byte counts, not descriptors.
#[derive(Debug, Clone, Copy)]
struct Segment {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

impl From<&Descriptor> for Segment {
    fn from(d: &Descriptor) -> Self {
        Segment {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        }
    }
}

/// Cuts the first `n` bytes off `segments`, splitting one if needed;
/// None when there are fewer. Empty segments are dropped from both parts.
fn split_front(segments: &mut Vec<Segment>, n: u32) -> Option<Vec<Segment>> {
    let mut front = Vec::new();
    let mut need = n;
    let mut rest = segments.drain(..).filter(|s| s.len > 0);
    while need > 0 {
        let mut s = rest.next()?;
        let take = s.len.min(need);
        front.push(Segment { len: take, ..s });
        need -= take;
        if take < s.len {
            s.addr = s.addr.checked_add(u64::from(take))?;
            s.len -= take;
            let tail: Vec<Segment> = std::iter::once(s).chain(rest).collect();
            *segments = tail;
            return Some(front);
        }
    }
    let tail: Vec<Segment> = rest.collect();
    *segments = tail;
    Some(front)
}

/// Writes the disk id, NUL-padded, into the data buffers.
fn get_id(mem: &GuestMem, data: &[Segment], id: &[u8]) -> Result<u32, VirtioBlockError> {
    if data.is_empty() {
        return Err(VirtioBlockError::Malformed("GET_ID without a buffer"));
    }
    if data.iter().any(|d| !d.writable) {
        return Err(VirtioBlockError::Malformed("GET_ID buffer not writable"));
    }
    let mut written = 0;
    for d in data {
        let len = (d.len as usize).min(id.len() - written);
        mem.write_slice(&id[written..written + len], d.addr)?;
        written += len;
    }
    Ok(written as u32)
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX)
    }

    /// The config space (struct virtio_blk_config) up to seg_max: capacity
    /// in sectors (le64), size_max (not offered, 0), seg_max (le32).
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 16];
        config[..8].copy_from_slice(&self.sectors.to_le_bytes());
        config[12..].copy_from_slice(&SEG_MAX.to_le_bytes());
        let start = offset.min(config.len() as u64) as usize;
        let n = data.len().min(config.len() - start);
        data[..n].copy_from_slice(&config[start..start + n]);
    }

    fn process_queue(&mut self, mem: &GuestMem, queue: &mut Queue) -> bool {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.collect();
            // Every chain goes back to the driver, served or not, so a bad
            // one cannot wedge the queue.
            let written = self.serve(mem, &descs).unwrap_or(0);
            if let Err(e) = queue.add_used(mem, head, written) {
                tracing::debug!("virtio-blk: cannot return chain {head}: {e}");
                break;
            }
            used = true;
        }
        used
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::FileExt;

    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    use super::*;

    pub(crate) const HEADER: u64 = 0x10_0000;
    pub(crate) const DATA: u64 = 0x20_0000;
    pub(crate) const STATUS: u64 = 0x30_0000;
    const DISK_SECTORS: u64 = 128;

    pub(crate) fn disk() -> (tempfile::NamedTempFile, Block) {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(DISK_SECTORS * SECTOR_SIZE).unwrap();
        let block = Block::new(file.reopen().unwrap()).unwrap();
        (file, block)
    }

    pub(crate) fn memory() -> GuestMem {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    /// Descriptors as (addr, len, device-writable), chained in order.
    pub(crate) fn chain(parts: &[(u64, u32, bool)]) -> Vec<RawDescriptor> {
        parts
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, writable))| {
                let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 };
                if i + 1 < parts.len() {
                    flags |= VRING_DESC_F_NEXT;
                }
                RawDescriptor::from(Descriptor::new(addr, len, flags as u16, i as u16 + 1))
            })
            .collect()
    }

    pub(crate) fn write_header(mem: &GuestMem, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(HEADER)).unwrap();
        mem.write_obj(sector, GuestAddress(HEADER + 8)).unwrap();
    }

    /// Submits one chain and serves it; returns (status byte, used length).
    fn submit(block: &mut Block, mem: &GuestMem, descs: &[RawDescriptor]) -> (u8, u32) {
        mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        let vq = MockSplitQueue::create(mem, GuestAddress(0), 16);
        vq.add_desc_chains(descs, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        assert!(block.process_queue(mem, &mut queue));
        let used = vq.used().ring().ref_at(0).unwrap().load();
        (mem.read_obj(GuestAddress(STATUS)).unwrap(), used.len())
    }

    /// Header, one data buffer, status.
    fn request(len: u32, writable: bool) -> Vec<RawDescriptor> {
        chain(&[
            (HEADER, 16, false),
            (DATA, len, writable),
            (STATUS, 1, true),
        ])
    }

    const OK: u8 = VIRTIO_BLK_S_OK as u8;
    const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

    #[test]
    fn out_then_in_round_trips_through_the_disk_file() {
        let (file, mut block) = disk();
        let mem = memory();
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 1) as u8).collect();
        mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        write_header(&mem, VIRTIO_BLK_T_OUT, 3);
        assert_eq!(submit(&mut block, &mem, &request(1024, false)), (OK, 1));
        let mut on_disk = vec![0u8; 1024];
        file.as_file()
            .read_exact_at(&mut on_disk, 3 * SECTOR_SIZE)
            .unwrap();
        assert_eq!(on_disk, pattern);

        mem.write_slice(&[0u8; 1024], GuestAddress(DATA)).unwrap();
        write_header(&mem, VIRTIO_BLK_T_IN, 3);
        assert_eq!(submit(&mut block, &mem, &request(1024, true)), (OK, 1025));
        let mut back = vec![0u8; 1024];
        mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
        assert_eq!(back, pattern);
    }

    #[test]
    fn a_request_may_span_several_data_buffers() {
        let (file, mut block) = disk();
        let mem = memory();
        mem.write_slice(&[1u8; 512], GuestAddress(DATA)).unwrap();
        mem.write_slice(&[2u8; 1024], GuestAddress(DATA + 0x1000))
            .unwrap();
        write_header(&mem, VIRTIO_BLK_T_OUT, 10);
        let descs = chain(&[
            (HEADER, 16, false),
            (DATA, 512, false),
            (DATA + 0x1000, 1024, false),
            (STATUS, 1, true),
        ]);
        assert_eq!(submit(&mut block, &mem, &descs), (OK, 1));
        let mut on_disk = vec![0u8; 1536];
        file.as_file()
            .read_exact_at(&mut on_disk, 10 * SECTOR_SIZE)
            .unwrap();
        assert!(on_disk[..512].iter().all(|b| *b == 1));
        assert!(on_disk[512..].iter().all(|b| *b == 2));
    }

    #[test]
    fn flush_and_get_id_succeed() {
        let (_file, mut block) = disk();
        let mem = memory();
        write_header(&mem, VIRTIO_BLK_T_FLUSH, 0);
        let flush = chain(&[(HEADER, 16, false), (STATUS, 1, true)]);
        assert_eq!(submit(&mut block, &mem, &flush), (OK, 1));
        write_header(&mem, VIRTIO_BLK_T_GET_ID, 0);
        assert_eq!(submit(&mut block, &mem, &request(20, true)), (OK, 21));
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id[..DISK_ID.len()], DISK_ID);
        assert!(id[DISK_ID.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_disk_given_its_own_serial_reports_it_and_a_long_one_is_refused() {
        let (file, _) = disk();
        let mut block = Block::with_id(file.reopen().unwrap(), b"disk3").unwrap();
        let mem = memory();
        write_header(&mem, VIRTIO_BLK_T_GET_ID, 0);
        assert_eq!(submit(&mut block, &mem, &request(20, true)), (OK, 21));
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"disk3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert!(Block::with_id(file.reopen().unwrap(), &[b'x'; 21]).is_err());
    }

    #[test]
    fn requests_past_the_end_fail_with_ioerr() {
        let (_file, mut block) = disk();
        let mem = memory();
        for (sector, len) in [
            (DISK_SECTORS, 512),
            (DISK_SECTORS - 1, 1024),
            (u64::MAX / 2, 512),
        ] {
            write_header(&mem, VIRTIO_BLK_T_IN, sector);
            let (status, _) = submit(&mut block, &mem, &request(len, true));
            assert_eq!(status, IOERR, "sector {sector} len {len}");
        }
        write_header(&mem, VIRTIO_BLK_T_IN, DISK_SECTORS - 1);
        assert_eq!(submit(&mut block, &mem, &request(512, true)).0, OK);
    }

    #[test]
    fn a_write_straddling_the_end_changes_nothing() {
        let (file, mut block) = disk();
        let mem = memory();
        let last = (DISK_SECTORS - 1) * SECTOR_SIZE;
        file.as_file().write_all_at(&[0x11; 512], last).unwrap();
        mem.write_slice(&[0x22; 1024], GuestAddress(DATA)).unwrap();
        write_header(&mem, VIRTIO_BLK_T_OUT, DISK_SECTORS - 1);
        assert_eq!(submit(&mut block, &mem, &request(1024, false)), (IOERR, 1));
        let meta = file.as_file().metadata().unwrap();
        assert_eq!(meta.len(), DISK_SECTORS * SECTOR_SIZE);
        let mut sector = [0u8; 512];
        file.as_file().read_exact_at(&mut sector, last).unwrap();
        assert_eq!(sector, [0x11; 512]);
    }

    #[test]
    fn header_data_and_status_may_share_descriptors() {
        let (file, mut block) = disk();
        let mem = memory();
        // OUT: the header and the data in one readable buffer.
        write_header(&mem, VIRTIO_BLK_T_OUT, 5);
        mem.write_slice(&[0x33; 512], GuestAddress(HEADER + 16))
            .unwrap();
        let out = chain(&[(HEADER, 16 + 512, false), (STATUS, 1, true)]);
        assert_eq!(submit(&mut block, &mem, &out), (OK, 1));
        let mut on_disk = [0u8; 512];
        file.as_file()
            .read_exact_at(&mut on_disk, 5 * SECTOR_SIZE)
            .unwrap();
        assert_eq!(on_disk, [0x33; 512]);
        // IN: the header split in two, the data and the status in one
        // writable buffer whose last byte is the status.
        write_header(&mem, VIRTIO_BLK_T_IN, 5);
        let status_at = STATUS - 512;
        let into = chain(&[
            (HEADER, 4, false),
            (HEADER + 4, 12, false),
            (status_at, 513, true),
        ]);
        assert_eq!(submit(&mut block, &mem, &into), (OK, 513));
        let mut back = [0u8; 512];
        mem.read_slice(&mut back, GuestAddress(status_at)).unwrap();
        assert_eq!(back, [0x33; 512]);
    }

    #[test]
    fn unknown_types_are_unsupported() {
        let (_file, mut block) = disk();
        let mem = memory();
        write_header(&mem, 0x99, 0);
        let status = submit(&mut block, &mem, &request(512, true)).0;
        assert_eq!(status, VIRTIO_BLK_S_UNSUPP as u8);
    }

    #[test]
    fn malformed_chains_get_an_error_or_are_returned_unused() {
        let (_file, mut block) = disk();
        let mem = memory();
        write_header(&mem, VIRTIO_BLK_T_IN, 0);
        let short_header = chain(&[(HEADER, 8, false), (DATA, 512, true), (STATUS, 1, true)]);
        let wrong_way = chain(&[(HEADER, 16, false), (DATA, 512, false), (STATUS, 1, true)]);
        let odd_length = chain(&[(HEADER, 16, false), (DATA, 100, true), (STATUS, 1, true)]);
        let outside_ram = chain(&[(HEADER, 16, false), (1 << 40, 512, true), (STATUS, 1, true)]);
        let status_only = chain(&[(STATUS, 1, true)]);
        for descs in [
            short_header,
            wrong_way,
            odd_length,
            outside_ram,
            status_only,
        ] {
            assert_eq!(submit(&mut block, &mem, &descs), (IOERR, 1));
        }
        // No writable status byte at all: returned with nothing written.
        let no_status = chain(&[(HEADER, 16, false)]);
        assert_eq!(submit(&mut block, &mem, &no_status), (0xee, 0));
        // And the device goes on serving.
        assert_eq!(submit(&mut block, &mem, &request(512, true)).0, OK);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Whatever a guest puts in the queue (addresses in or out of RAM,
        /// any lengths, flags and links, any header), the device answers
        /// without panicking and keeps serving.
        #[test]
        fn arbitrary_chains_never_break_the_device(
            descs in proptest::collection::vec(
                (0u64..(20 << 20), proptest::prop_oneof![0u32..2048, proptest::num::u32::ANY],
                 0u16..8, 0u16..20),
                1..8,
            ),
            kind in proptest::prop_oneof![0u32..10, proptest::num::u32::ANY],
            sector in proptest::prop_oneof![0u64..200, proptest::num::u64::ANY],
        ) {
            let (_file, mut block) = disk();
            let mem = memory();
            write_header(&mem, kind, sector);
            let raw: Vec<RawDescriptor> = descs
                .iter()
                .map(|&(addr, len, flags, next)| {
                    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
                })
                .collect();
            let vq = MockSplitQueue::create(&mem, GuestAddress(0), 16);
            vq.add_desc_chains(&raw, 0).unwrap();
            let mut queue: Queue = vq.create_queue().unwrap();
            block.process_queue(&mem, &mut queue);
            // Still serving: a well-formed request right after succeeds.
            write_header(&mem, VIRTIO_BLK_T_IN, 0);
            mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
            let good = request(512, true);
            // A fresh queue elsewhere: the first one may hold anything now.
            let vq = MockSplitQueue::create(&mem, GuestAddress(0x8000), 16);
            vq.add_desc_chains(&good, 0).unwrap();
            let mut queue: Queue = vq.create_queue().unwrap();
            proptest::prop_assert!(block.process_queue(&mem, &mut queue));
            proptest::prop_assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), OK);
        }
    }
}
