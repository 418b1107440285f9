//! The export's key index, for the duplicate rule (the last line of a key
//! wins): where the last line of each key went, by a 128-bit fingerprint
//! of the key, 32 bytes a key.
//!
//! In memory while it fits its share of `--memory-limit`
//! ([`crate::spill::Claim`]); past it, every row is handed on and
//! its key, line and place go to disk ([`crate::spill`]), and the rows a
//! later line superseded are found once the export has been read, one
//! partition of keys at a time. Either way the outcome is the same: the
//! superseded rows are named, and the write stage leaves them out.

use std::io;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use hashbrown::HashTable;

use crate::read::LINE;
use crate::spill::{self, Claim, Fields, Record, Spilled, Spilling};

/// Where the last line of each key is: (seq, row) of its batch.
pub(super) struct LatestByKey {
    table: HashTable<Latest>,
    /// Past its share of the memory: every row's entry, on disk.
    spilled: Option<Spilling<Latest>>,
    /// The table's memory, claimed from the process's pool.
    claim: Claim,
}

struct Latest {
    key: u128,
    line: u64,
    seq: u32,
    row: u32,
}

impl Record for Latest {
    const BYTES: usize = 32;
    fn key(&self) -> u128 {
        self.key
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend(self.key.to_le_bytes());
        out.extend(self.line.to_le_bytes());
        out.extend(self.seq.to_le_bytes());
        out.extend(self.row.to_le_bytes());
    }
    fn read(bytes: &[u8]) -> Self {
        let mut fields = Fields(bytes);
        Latest { key: fields.u128(), line: fields.u64(), seq: fields.u32(), row: fields.u32() }
    }
}

enum Offer {
    /// The key's first line.
    New,
    /// An earlier line of a key already seen further down: this row goes.
    Older,
    /// A later line of a key: the row it was is superseded.
    Newer { seq: u32, row: u32 },
}

impl LatestByKey {
    pub(super) fn new() -> Self {
        LatestByKey { table: HashTable::new(), spilled: None, claim: Claim::new("the export's key index") }
    }

    /// Room for `lines` keys at once (growing a table holds the old one and
    /// the new one), or on disk from the start when they would not fit.
    pub(super) fn reserve(&mut self, lines: Option<u64>) -> io::Result<()> {
        self.room_for(lines.unwrap_or(0) as usize)
    }

    /// Room for `more` keys, claimed from the pool, else on disk.
    fn room_for(&mut self, more: usize) -> io::Result<()> {
        if self.spilled.is_some() || self.claim.make_room(&mut self.table, more, |e| e.key as u64, false) {
            return Ok(());
        }
        self.spill()
    }

    /// Moves the index to disk: the entries so far, then every row's.
    fn spill(&mut self) -> io::Result<()> {
        let mut spilling = Spilling::new()?;
        for entry in self.table.drain() {
            spilling.push(&entry)?;
        }
        self.table = HashTable::new();
        self.claim.free();
        tracing::info!(
            entries = spilling.records(),
            "the export's key index is past its share of --memory-limit: spilled to disk"
        );
        self.spilled = Some(spilling);
        Ok(())
    }

    /// Which rows of batch `seq` are, so far, the last line of their key:
    /// the last line of each key wins, among this batch and the ones
    /// before (an earlier batch's row it supersedes goes to `superseded`).
    /// Rows are then named by their place among the rows handed on. On
    /// disk, every row is handed on and judged by [`LatestByKey::finish`].
    pub(super) fn keep_latest(
        &mut self,
        accepted: &RecordBatch,
        key: &str,
        seq: u32,
        superseded: &mut Vec<(u32, u32)>,
    ) -> io::Result<Vec<bool>> {
        let ids = accepted.column_by_name(key).expect("checked").as_string::<i32>();
        let lines = accepted.column_by_name(LINE).expect("checked").as_primitive::<UInt64Type>();
        let keys: Vec<u128> = (0..ids.len()).map(|r| crate::row_hash::key_fingerprint(ids.value(r))).collect();
        self.room_for(keys.len())?;
        if let Some(spilling) = &mut self.spilled {
            for (row, key) in keys.iter().enumerate() {
                spilling.push(&Latest { key: *key, line: lines.value(row), seq, row: row as u32 })?;
            }
            return Ok(vec![true; keys.len()]);
        }
        let mut keep = vec![true; accepted.num_rows()];
        for (row, key_hash) in keys.iter().enumerate() {
            match self.offer(*key_hash, lines.value(row), seq, row as u32) {
                Offer::New => {}
                Offer::Older => keep[row] = false,
                Offer::Newer { seq: old_seq, row: old_row } if old_seq == seq => keep[old_row as usize] = false,
                Offer::Newer { seq: old_seq, row: old_row } => superseded.push((old_seq, old_row)),
            }
        }
        let mut position = 0u32;
        for (row, kept) in keep.iter().enumerate() {
            if *kept {
                self.place(keys[row], seq, row as u32, position);
                position += 1;
            }
        }
        Ok(keep)
    }

    /// Once every row went by: on disk, the rows a later line of their key
    /// superseded, found one partition of keys at a time.
    pub(super) fn finish(self, superseded: &mut Vec<(u32, u32)>) -> io::Result<()> {
        let Some(spilling) = self.spilled else { return Ok(()) };
        let spilled: Spilled<Latest> = spilling.finish()?;
        for partition in 0..spill::PARTITIONS {
            let mut entries = spilled.read(partition)?;
            entries.sort_unstable_by_key(|e| (e.key, e.line));
            for pair in entries.windows(2) {
                if pair[0].key == pair[1].key {
                    superseded.push((pair[0].seq, pair[0].row));
                }
            }
        }
        Ok(())
    }

    fn offer(&mut self, key: u128, line: u64, seq: u32, row: u32) -> Offer {
        let hash = key as u64;
        match self.table.find_mut(hash, |e| e.key == key) {
            Some(entry) if entry.line > line => Offer::Older,
            Some(entry) => {
                let before = Offer::Newer { seq: entry.seq, row: entry.row };
                (entry.line, entry.seq, entry.row) = (line, seq, row);
                before
            }
            None => {
                self.table.insert_unique(hash, Latest { key, line, seq, row }, |e| e.key as u64);
                Offer::New
            }
        }
    }

    /// The kept row `row` of batch `seq` is row `position` of what was handed on.
    fn place(&mut self, key: u128, seq: u32, row: u32, position: u32) {
        if let Some(entry) = self.table.find_mut(key as u64, |e| e.key == key) {
            if entry.seq == seq && entry.row == row {
                entry.row = position;
            }
        }
    }
}
