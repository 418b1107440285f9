//! Key indexes past their share of `--memory-limit`, on disk: fixed-size
//! records appended to one of [`PARTITIONS`] files by the top bits of
//! their key's fingerprint, then read back one partition at a time, so a
//! partition (1/256th of the day) is in memory where the whole index would
//! not fit. The files are unlinked as they are made: a killed load leaves
//! nothing behind.
//!
//! The budget: each of a load's two key indexes (the export's, for the
//! duplicate rule, and the date's, for the comparison) claims its memory
//! from the process's pool (`--memory-limit`, which DataFusion's operators
//! share) as it grows, up to 3/8 of the limit ([`Claim`]); past that, or
//! when the pool is spent, it goes to disk. The two together stay under
//! 3/4 of the limit, and a date of up to about 7 million rows stays in
//! memory at the default 1 GiB.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use hashbrown::HashTable;

/// Partition files per spilled index: at 50M rows, about 200K records
/// (under 10 MB) a partition.
pub const PARTITIONS: usize = 256;
/// Buffered bytes per partition file while the index is written.
const BUFFER_BYTES: usize = 32 << 10;

/// The share of `--memory-limit` one key index may hold in memory.
const SHARE_EIGHTHS: usize = 3;

/// The bytes of a hash table of `entries` entries of `entry_bytes` each:
/// hashbrown keeps 7/8 of its buckets full at most, rounds the buckets to
/// a power of two and adds a control byte to each.
pub fn table_bytes(entries: usize, entry_bytes: usize) -> usize {
    let buckets = (entries.saturating_mul(8) / 7).max(4).checked_next_power_of_two().unwrap_or(usize::MAX);
    buckets.saturating_mul(entry_bytes + 1)
}

/// A key index's claim on the process's memory pool, grown with the index.
pub struct Claim {
    reservation: MemoryReservation,
    most: usize,
}

impl Claim {
    /// A claim named `name` (DataFusion's errors name the pool's consumers).
    pub fn new(name: &str) -> Claim {
        let reservation = MemoryConsumer::new(name).register(&crate::session::memory_pool());
        Claim { reservation, most: crate::session::memory_limit() / 8 * SHARE_EIGHTHS }
    }

    /// Makes room in `table` for `more` entries, its memory claimed first:
    /// `false` (the table left as it is, for the caller to go to disk) when
    /// the memory is past the index's share or the pool cannot give it,
    /// unless `forced` (an index that cannot go to disk claims it anyway).
    pub fn make_room<T>(
        &mut self,
        table: &mut HashTable<T>,
        more: usize,
        hasher: impl Fn(&T) -> u64,
        forced: bool,
    ) -> bool {
        let needed = table.len() + more;
        if needed <= table.capacity() {
            return true;
        }
        // hashbrown grows to the next power of two of buckets at least.
        let bytes = table_bytes(needed.max(table.capacity() + 1), std::mem::size_of::<T>());
        let held = self.reservation.size();
        let claimed = bytes <= held || (bytes <= self.most && self.reservation.try_grow(bytes - held).is_ok());
        if !claimed {
            if !forced {
                return false;
            }
            self.reservation.grow(bytes - held);
        }
        table.reserve(more, hasher);
        true
    }

    /// Gives everything back (the index went to disk).
    pub fn free(&mut self) {
        self.reservation.free();
    }
}

/// A record of a spilled index: a fixed number of bytes, with the key
/// fingerprint that picks its partition.
pub trait Record: Sized {
    const BYTES: usize;
    fn key(&self) -> u128;
    fn write(&self, out: &mut Vec<u8>);
    fn read(bytes: &[u8]) -> Self;
}

/// The partition of a key fingerprint: its top bits (the hash tables of a
/// partition use the low ones).
fn partition_of(key: u128) -> usize {
    (key >> (128 - PARTITIONS.trailing_zeros())) as usize
}

/// An index being written to disk.
pub struct Spilling<R: Record> {
    files: Vec<BufWriter<File>>,
    encoded: Vec<u8>,
    records: u64,
    _record: std::marker::PhantomData<R>,
}

impl<R: Record> Spilling<R> {
    /// Empty partition files in the OS's temporary directory (TMPDIR).
    pub fn new() -> io::Result<Self> {
        let files = (0..PARTITIONS)
            .map(|_| tempfile::tempfile().map(|file| BufWriter::with_capacity(BUFFER_BYTES, file)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Spilling { files, encoded: Vec::with_capacity(R::BYTES), records: 0, _record: std::marker::PhantomData })
    }

    pub fn push(&mut self, record: &R) -> io::Result<()> {
        self.encoded.clear();
        record.write(&mut self.encoded);
        debug_assert_eq!(self.encoded.len(), R::BYTES);
        self.records += 1;
        self.files[partition_of(record.key())].write_all(&self.encoded)
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Done writing: the partitions, to read back one at a time.
    pub fn finish(self) -> io::Result<Spilled<R>> {
        let files = self
            .files
            .into_iter()
            .map(|file| file.into_inner().map_err(|e| e.into_error()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Spilled { files, records: self.records, _record: std::marker::PhantomData })
    }
}

/// A spilled index, written.
pub struct Spilled<R: Record> {
    files: Vec<File>,
    records: u64,
    _record: std::marker::PhantomData<R>,
}

impl<R: Record> Spilled<R> {
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The records of partition `partition`, in the order they were pushed.
    pub fn read(&self, partition: usize) -> io::Result<Vec<R>> {
        let file = &self.files[partition];
        let len = file.metadata()?.len() as usize;
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes.chunks_exact(R::BYTES).map(R::read).collect())
    }
}

/// Little-endian fields of a record, in order.
pub struct Fields<'a>(pub &'a [u8]);

impl Fields<'_> {
    pub fn u128(&mut self) -> u128 {
        let (head, rest) = self.0.split_at(16);
        self.0 = rest;
        u128::from_le_bytes(head.try_into().expect("16 bytes"))
    }
    pub fn u64(&mut self) -> u64 {
        let (head, rest) = self.0.split_at(8);
        self.0 = rest;
        u64::from_le_bytes(head.try_into().expect("8 bytes"))
    }
    pub fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes(head.try_into().expect("4 bytes"))
    }
    pub fn u8(&mut self) -> u8 {
        let (head, rest) = self.0.split_at(1);
        self.0 = rest;
        head[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pair(u128, u32);

    impl Record for Pair {
        const BYTES: usize = 20;
        fn key(&self) -> u128 {
            self.0
        }
        fn write(&self, out: &mut Vec<u8>) {
            out.extend(self.0.to_le_bytes());
            out.extend(self.1.to_le_bytes());
        }
        fn read(bytes: &[u8]) -> Self {
            let mut fields = Fields(bytes);
            Pair(fields.u128(), fields.u32())
        }
    }

    #[test]
    fn every_record_comes_back_once_in_its_keys_partition_in_order() {
        let mut spilling = Spilling::<Pair>::new().unwrap();
        let keys: Vec<u128> =
            (0..10_000u128).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)).collect();
        for (i, key) in keys.iter().enumerate() {
            spilling.push(&Pair(*key, i as u32)).unwrap();
        }
        let spilled = spilling.finish().unwrap();
        assert_eq!(spilled.records(), 10_000);
        let mut seen = Vec::new();
        for partition in 0..PARTITIONS {
            let records = spilled.read(partition).unwrap();
            assert!(records.iter().all(|r| partition_of(r.0) == partition));
            assert!(records.windows(2).all(|w| w[0].1 < w[1].1), "pushed order kept");
            seen.extend(records);
        }
        seen.sort_by_key(|r| r.1);
        assert_eq!(seen, keys.iter().enumerate().map(|(i, k)| Pair(*k, i as u32)).collect::<Vec<_>>());
    }

    #[test]
    fn a_table_takes_its_buckets_rounded_to_a_power_of_two() {
        // 5M keys: 8Mi buckets of 33 bytes (264 MiB); 7,340,032 is the most they hold.
        assert_eq!(table_bytes(5_000_000, 32), (8 << 20) * 33);
        assert_eq!(table_bytes(7_340_032, 32), (8 << 20) * 33);
        assert_eq!(table_bytes(7_340_033, 32), (16 << 20) * 33);
        // As hashbrown sizes them.
        let table: hashbrown::HashTable<u64> = hashbrown::HashTable::with_capacity(5_000_000);
        assert_eq!(table.capacity(), 7_340_032);
    }
}
