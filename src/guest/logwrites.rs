//! A dm-log-writes log read on the host, and the disk states a power cut
//! could have left, for the power-loss lane ([`super::powerloss`]).
//!
//! The log (the kernel's `Documentation/admin-guide/device-mapper/
//! log-writes.rst`): block 0 holds the super (magic, version, entry count,
//! the data disk's logical block size); the entries follow, each a block
//! holding `sector, nr_sectors, flags, data_len` (little-endian u64s) and,
//! for a mark, its name, then `nr_sectors` blocks of the data written
//! (none for a discard). Sectors count in the super's block size.
//!
//! log-writes logs a write once a flush covers it, so the log is the
//! order in which writes became durable: replaying entries `0..=i` where
//! `i` is a flush, a FUA write or a mark gives the disk a power cut there
//! leaves ([`check_points`]). A cut before the next flush may also keep
//! any subset of the writes the flush would have covered, in any order
//! (CrashMonkey's model): [`torn_states`] samples those, always keeping
//! FUA writes, which were durable when they completed.
//!
//! Discards are not replayed: the lane's data disk does not support them,
//! so log-writes logged them without passing them down.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use rand::Rng;
use rand::seq::IndexedRandom;

/// The super's magic and the one version there is.
const MAGIC: u64 = 0x006a_7366_7773_6872;
const VERSION: u64 = 1;

/// An entry's flags.
pub(crate) const FLUSH: u64 = 1 << 0;
pub(crate) const FUA: u64 = 1 << 1;
pub(crate) const DISCARD: u64 = 1 << 2;
pub(crate) const MARK: u64 = 1 << 3;

/// One logged write, flush or mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// First block written, in the log's block size.
    pub sector: u64,
    pub nr_sectors: u64,
    pub flags: u64,
    /// A mark's name.
    pub mark: Option<String>,
    /// Where its data starts in the log, in bytes.
    data_at: u64,
}

impl Entry {
    /// Whether it writes data to the disk.
    pub fn writes(&self) -> bool {
        self.nr_sectors > 0 && self.flags & (DISCARD | MARK) == 0
    }
}

/// A log, its entries indexed.
#[derive(Debug)]
pub struct Log {
    file: File,
    /// The log's sector size, from its super block.
    pub block_size: u64,
    /// Every entry after the super block, in log order.
    pub entries: Vec<Entry>,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Log {
    /// Reads the log at `path`.
    pub fn open(path: &Path) -> Result<Log> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("failed to open `{shown}`"))?;
        let mut sup = [0u8; 32];
        file.read_exact_at(&mut sup, 0)
            .with_context(|| format!("failed to read the super of `{shown}`"))?;
        ensure!(
            u64_at(&sup, 0) == MAGIC,
            "`{shown}` is no dm-log-writes log (bad magic): was log-writes set up over the disk?"
        );
        ensure!(
            u64_at(&sup, 8) == VERSION,
            "`{shown}` is a log of version {}, this reader knows version {VERSION}",
            u64_at(&sup, 8)
        );
        let count = u64_at(&sup, 16);
        let block_size = u64::from(u32::from_le_bytes(sup[24..28].try_into().expect("4")));
        ensure!(
            block_size.is_power_of_two() && block_size >= 512,
            "`{shown}` has a block size of {block_size}"
        );
        let len = file.metadata()?.len();
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = block_size;
        let mut header = vec![0u8; block_size as usize];
        for i in 0..count {
            file.read_exact_at(&mut header, at)
                .with_context(|| format!("entry {i} of `{shown}` is cut short"))?;
            let (sector, nr_sectors, flags) =
                (u64_at(&header, 0), u64_at(&header, 8), u64_at(&header, 16));
            let mark = (flags & MARK != 0).then(|| {
                let data_len = (u64_at(&header, 24) as usize).min(header.len() - 32);
                let name = &header[32..32 + data_len];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                String::from_utf8_lossy(&name[..end]).into_owned()
            });
            let entry = Entry {
                sector,
                nr_sectors,
                flags,
                mark,
                data_at: at + block_size,
            };
            at += block_size;
            if entry.writes() {
                at += nr_sectors * block_size;
            }
            if at > len {
                bail!("entry {i} of `{shown}` runs past its end ({at} > {len} bytes)");
            }
            entries.push(entry);
        }
        Ok(Log {
            file,
            block_size,
            entries,
        })
    }

    /// The index of the mark named `name`.
    pub fn mark(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.mark.as_deref() == Some(name))
    }

    /// Writes entry `i`'s data into `image`, where it went on the disk.
    pub fn apply(&self, i: usize, image: &File) -> Result<()> {
        let entry = &self.entries[i];
        if !entry.writes() {
            return Ok(());
        }
        let mut data = vec![0u8; (entry.nr_sectors * self.block_size) as usize];
        self.file
            .read_exact_at(&mut data, entry.data_at)
            .with_context(|| format!("failed to read the data of log entry {i}"))?;
        image
            .write_all_at(&data, entry.sector * self.block_size)
            .with_context(|| format!("failed to replay log entry {i}"))
    }
}

/// The entries from `from` on after which a power cut leaves exactly the
/// log's prefix: flushes, FUA writes and marks.
pub fn check_points(log: &Log, from: usize) -> Vec<usize> {
    (from..log.entries.len())
        .filter(|&i| log.entries[i].flags & (FLUSH | FUA | MARK) != 0)
        .collect()
}

/// A cut between two flushes: the disk as of flush `base`, plus `kept`,
/// some of the writes logged after it (and before the next flush), in
/// log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The flush entry the cut starts from.
    pub base: usize,
    /// Entries after `base` that reached the disk.
    pub kept: Vec<usize>,
    /// How many writes the cut dropped.
    pub dropped: usize,
}

/// Up to `count` cuts between flushes from `from` on, each dropping at
/// least one write: an epoch (the writes between two flushes) is picked at
/// random, then a point in it, then which of the writes before that point
/// survive (FUA writes always do). Sorted by `base`.
pub fn torn_states(log: &Log, from: usize, count: usize, rng: &mut impl Rng) -> Vec<Torn> {
    let flushes: Vec<usize> = (from..log.entries.len())
        .filter(|&i| log.entries[i].flags & FLUSH != 0)
        .collect();
    // Epochs with a write that a cut could drop.
    let epochs: Vec<(usize, Vec<usize>)> = flushes
        .windows(2)
        .map(|w| {
            let writes = (w[0] + 1..w[1])
                .filter(|&i| log.entries[i].writes())
                .collect();
            (w[0], writes)
        })
        .filter(|(_, writes): &(usize, Vec<usize>)| {
            writes.iter().any(|&i| log.entries[i].flags & FUA == 0)
        })
        .collect();
    let mut cuts = Vec::new();
    for _ in 0..count * 4 {
        if cuts.len() == count || epochs.is_empty() {
            break;
        }
        let (base, writes) = epochs.choose(rng).expect("not empty");
        let upto = rng.random_range(1..=writes.len());
        let (mut kept, mut dropped) = (Vec::new(), 0);
        for &i in &writes[..upto] {
            match log.entries[i].flags & FUA != 0 || rng.random_bool(0.5) {
                true => kept.push(i),
                false => dropped += 1,
            }
        }
        if dropped > 0 {
            cuts.push(Torn {
                base: *base,
                kept,
                dropped,
            });
        }
    }
    cuts.sort_by_key(|t| t.base);
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A log of 512-byte blocks holding `entries` (sector, flags, data or
    /// mark name).
    fn write_log(path: &Path, entries: &[(u64, u64, &[u8])]) {
        let mut log = vec![0u8; 512];
        log[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        log[8..16].copy_from_slice(&VERSION.to_le_bytes());
        log[16..24].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        log[24..28].copy_from_slice(&512u32.to_le_bytes());
        for &(sector, flags, data) in entries {
            let mut header = vec![0u8; 512];
            let blocks = if flags & MARK != 0 {
                0
            } else {
                data.len().div_ceil(512) as u64
            };
            header[0..8].copy_from_slice(&sector.to_le_bytes());
            header[8..16].copy_from_slice(&blocks.to_le_bytes());
            header[16..24].copy_from_slice(&flags.to_le_bytes());
            if flags & MARK != 0 {
                header[24..32].copy_from_slice(&(data.len() as u64).to_le_bytes());
                header[32..32 + data.len()].copy_from_slice(data);
            }
            log.extend_from_slice(&header);
            if flags & MARK == 0 {
                let mut padded = data.to_vec();
                padded.resize(blocks as usize * 512, 0);
                log.extend_from_slice(&padded);
            }
        }
        std::fs::write(path, log).unwrap();
    }

    #[test]
    fn a_log_replays_to_each_point_and_cuts_drop_only_unflushed_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let a = [b'a'; 512];
        let b = [b'b'; 1024];
        write_log(
            &path,
            &[
                (0, 0, &a),      // 0: a write
                (0, FLUSH, &[]), // 1: a flush
                (1, 0, &b),      // 2
                (4, FUA, &a),    // 3: durable at once
                (3, 0, &a),      // 4
                (0, MARK, b"ktstr-op-1"),
                (9, DISCARD, &[]),
                (0, FLUSH, &[]), // 7
            ],
        );
        let log = Log::open(&path).unwrap();
        assert_eq!(log.entries.len(), 8);
        assert_eq!(log.mark("ktstr-op-1"), Some(5));
        assert_eq!(check_points(&log, 2), [3, 5, 7]);

        let image = tempfile::tempfile().unwrap();
        image.set_len(8 * 512).unwrap();
        for i in 0..=7 {
            log.apply(i, &image).unwrap();
        }
        let mut got = vec![0u8; 8 * 512];
        image.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..512], &a);
        assert_eq!(&got[512..1536], &b);
        assert_eq!(&got[1536..2048], &a);
        assert_eq!(&got[2048..2560], &a);

        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let cuts = torn_states(&log, 0, 20, &mut rng);
        assert!(!cuts.is_empty());
        for cut in &cuts {
            assert_eq!(cut.base, 1, "{cut:?}");
            assert!(cut.dropped > 0 && cut.kept.iter().all(|&i| (2..=4).contains(&i)));
            assert!(
                cut.kept.contains(&3) || cut.kept.len() + cut.dropped < 2,
                "{cut:?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_no_log_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let err = Log::open(&path).unwrap_err().to_string();
        assert!(err.contains("no dm-log-writes log"), "{err}");
    }
}
