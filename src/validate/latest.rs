//! The export's key index, for the duplicate rule (the last line of a key
//! wins): where the last line of each key went, by a 128-bit fingerprint
//! of the key, 24 bytes a key.
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
use crate::row_hash::{key_fingerprint, Fingerprint};
use crate::spill::{self, Claim, Fields, Record, Spilled, Spilling};

/// Where the last line of each key is: its place among the rows handed on.
pub(super) struct LatestByKey {
    table: HashTable<Latest>,
    /// Where each batch's rows begin among the rows handed on.
    places: Places,
    /// Past its share of the memory (or past what an entry can say): every
    /// row's entry, on disk.
    spilled: Option<Spilling<KeyLine>>,
    /// The table's memory, claimed from the process's pool.
    claim: Claim,
}

/// A key's last line so far, in memory: 24 bytes (with the line and the
/// row's name as u64 and two u32, 32, and 8Mi buckets of them at 5M keys).
/// A line or place past `u32::MAX` sends the index to disk, whose records
/// hold them whole.
struct Latest {
    key: Fingerprint,
    line: u32,
    /// The row's place among the rows handed on ([`Places`]); while its
    /// batch is judged, the batch's start plus its row in the batch.
    place: u32,
}

/// One row's entry on disk: its key, line and name (seq, row).
struct KeyLine {
    key: u128,
    line: u64,
    seq: u32,
    row: u32,
}

impl Record for KeyLine {
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
        KeyLine { key: fields.u128(), line: fields.u64(), seq: fields.u32(), row: fields.u32() }
    }
}

/// The rows handed on, numbered in order across batches: a row's name
/// (seq, row within what its batch handed on) is its place less its
/// batch's start, so an entry holds one u32 instead of two.
#[derive(Default)]
struct Places {
    /// The place of each batch's first row (batches that handed on nothing
    /// share their successor's).
    starts: Vec<u32>,
    /// Rows handed on so far.
    handed: u64,
}

impl Places {
    /// The (seq, row) of the row at `place`.
    fn name(&self, place: u32) -> (u32, u32) {
        let seq = self.starts.partition_point(|start| *start <= place) - 1;
        (seq as u32, place - self.starts[seq])
    }
}

enum Offer {
    /// The key's first line.
    New,
    /// An earlier line of a key already seen further down: this row goes.
    Older,
    /// A later line of a key: the row at this place is superseded.
    Newer { place: u32 },
}

impl LatestByKey {
    pub(super) fn new() -> Self {
        LatestByKey {
            table: HashTable::new(),
            places: Places::default(),
            spilled: None,
            claim: Claim::new("the export's key index"),
        }
    }

    /// Room for `lines` keys at once (growing a table holds the old one and
    /// the new one), or on disk from the start when they would not fit.
    pub(super) fn reserve(&mut self, lines: Option<u64>) -> io::Result<()> {
        self.room_for(lines.unwrap_or(0) as usize)
    }

    /// Room for `more` keys, claimed from the pool, else on disk.
    fn room_for(&mut self, more: usize) -> io::Result<()> {
        if self.spilled.is_some() || self.claim.make_room(&mut self.table, more, |e| e.key.bucket(), false) {
            return Ok(());
        }
        self.spill()
    }

    /// Moves the index to disk: the entries so far, then every row's.
    fn spill(&mut self) -> io::Result<()> {
        let mut spilling = Spilling::new()?;
        for entry in self.table.drain() {
            let (seq, row) = self.places.name(entry.place);
            spilling.push(&KeyLine { key: entry.key.into(), line: entry.line.into(), seq, row })?;
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
        let keys: Vec<u128> = (0..ids.len()).map(|r| key_fingerprint(ids.value(r))).collect();
        debug_assert_eq!(seq as usize, self.places.starts.len(), "batches are numbered in order");
        let start = self.places.handed;
        let past_u32 =
            start + keys.len() as u64 > u32::MAX as u64 || lines.values().iter().any(|l| *l > u32::MAX as u64);
        if past_u32 && self.spilled.is_none() {
            self.spill()?;
        }
        self.room_for(keys.len())?;
        self.places.starts.push(start.min(u32::MAX as u64) as u32);
        if let Some(spilling) = &mut self.spilled {
            for (row, key) in keys.iter().enumerate() {
                spilling.push(&KeyLine { key: *key, line: lines.value(row), seq, row: row as u32 })?;
            }
            self.places.handed += keys.len() as u64;
            return Ok(vec![true; keys.len()]);
        }
        let start = start as u32;
        let mut keep = vec![true; accepted.num_rows()];
        for (row, key) in keys.iter().enumerate() {
            let line = lines.value(row) as u32;
            match self.offer(Fingerprint::from(*key), line, start + row as u32) {
                Offer::New => {}
                Offer::Older => keep[row] = false,
                Offer::Newer { place } if place >= start => keep[(place - start) as usize] = false,
                Offer::Newer { place } => superseded.push(self.places.name(place)),
            }
        }
        let mut position = 0u32;
        for (row, kept) in keep.iter().enumerate() {
            if *kept {
                self.place(Fingerprint::from(keys[row]), start + row as u32, start + position);
                position += 1;
            }
        }
        self.places.handed += position as u64;
        Ok(keep)
    }

    /// Once every row went by: on disk, the rows a later line of their key
    /// superseded, found one partition of keys at a time.
    pub(super) fn finish(self, superseded: &mut Vec<(u32, u32)>) -> io::Result<()> {
        let Some(spilling) = self.spilled else { return Ok(()) };
        let spilled: Spilled<KeyLine> = spilling.finish()?;
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

    fn offer(&mut self, key: Fingerprint, line: u32, place: u32) -> Offer {
        match self.table.find_mut(key.bucket(), |e| e.key == key) {
            Some(entry) if entry.line > line => Offer::Older,
            Some(entry) => {
                let before = Offer::Newer { place: entry.place };
                (entry.line, entry.place) = (line, place);
                before
            }
            None => {
                self.table.insert_unique(key.bucket(), Latest { key, line, place }, |e| e.key.bucket());
                Offer::New
            }
        }
    }

    /// The kept row at place `judged` while its batch was judged is at `place`.
    fn place(&mut self, key: Fingerprint, judged: u32, place: u32) {
        if let Some(entry) = self.table.find_mut(key.bucket(), |e| e.key == key) {
            if entry.place == judged {
                entry.place = place;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_takes_24_bytes() {
        // 5M keys: 8Mi buckets of 24 bytes, not of 32.
        assert_eq!(std::mem::size_of::<Latest>(), 24);
    }

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    /// `rows` of (key, line) as a batch of the validate stage.
    fn batch(rows: &[(String, u64)]) -> RecordBatch {
        let schema =
            Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new(LINE, DataType::UInt64, false)]);
        let keys = StringArray::from_iter_values(rows.iter().map(|(key, _)| key.as_str()));
        let lines = UInt64Array::from_iter_values(rows.iter().map(|(_, line)| *line));
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(keys), Arc::new(lines)]).unwrap()
    }

    /// The lines that end as the day's rows: those handed on, less the
    /// superseded, with the index moved to disk before batch `spill_at`.
    fn kept_lines(batches: &[Vec<(String, u64)>], spill_at: Option<usize>) -> BTreeSet<u64> {
        let mut index = LatestByKey::new();
        let mut superseded = Vec::new();
        let mut handed: Vec<Vec<u64>> = Vec::new();
        for (seq, rows) in batches.iter().enumerate() {
            if spill_at == Some(seq) {
                index.spill().unwrap();
            }
            let keep = index.keep_latest(&batch(rows), "id", seq as u32, &mut superseded).unwrap();
            handed.push(rows.iter().zip(keep).filter(|(_, kept)| *kept).map(|((_, line), _)| *line).collect());
        }
        assert_eq!(index.spilled.is_some(), spill_at.is_some());
        index.finish(&mut superseded).unwrap();
        let superseded: BTreeSet<(u32, u32)> = superseded.into_iter().collect();
        let mut kept = BTreeSet::new();
        for (seq, lines) in handed.iter().enumerate() {
            for (row, line) in lines.iter().enumerate() {
                if !superseded.contains(&(seq as u32, row as u32)) {
                    kept.insert(*line);
                }
            }
        }
        kept
    }

    #[test]
    fn the_last_line_of_each_key_is_kept_in_memory_on_disk_and_moved_to_disk_midway() {
        // 600 lines of 150 keys, out of line order across and within
        // batches (as a transform may hand them on), in batches of 1 to 97;
        // then a batch that hands on nothing (only older lines of keys seen).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut rows: Vec<(String, u64)> = (6..=600).map(|line| (format!("k{}", next(150)), line)).collect();
        for i in (1..rows.len()).rev() {
            rows.swap(i, next(i as u64 + 1) as usize);
        }
        let mut batches = Vec::new();
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let size = (1 + next(97) as usize).min(rest.len());
            batches.push(rest[..size].to_vec());
            rest = &rest[size..];
        }
        let older: Vec<(String, u64)> = (1..=5).map(|line| (batches[0][0].0.clone(), line)).collect();
        rows.extend(older.iter().cloned());
        batches.insert(2, older);
        assert!(batches.len() > 8);
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (key, line) in &rows {
            let at = last.entry(key).or_default();
            *at = (*at).max(*line);
        }
        let expected: BTreeSet<u64> = last.values().copied().collect();
        assert_eq!(kept_lines(&batches, None), expected, "in memory");
        for spill_at in [0, 1, batches.len() / 2, batches.len() - 1] {
            assert_eq!(kept_lines(&batches, Some(spill_at)), expected, "moved to disk before batch {spill_at}");
        }
    }

    #[test]
    fn a_line_past_u32_sends_the_index_to_disk_and_is_still_judged_by_its_whole_number() {
        let far = u32::MAX as u64 + 10;
        let batches = [
            vec![("a".to_string(), 1), ("b".to_string(), 2)],
            // `a` again past u32 (kept), and `b` at a line that would
            // wrap to below its first line (kept too: it is later).
            vec![("a".to_string(), far), ("b".to_string(), far + 1)],
            vec![("a".to_string(), 3)],
        ];
        let mut index = LatestByKey::new();
        let mut superseded = Vec::new();
        for (seq, rows) in batches.iter().enumerate() {
            index.keep_latest(&batch(rows), "id", seq as u32, &mut superseded).unwrap();
            assert_eq!(index.spilled.is_some(), seq >= 1, "batch {seq}");
        }
        index.finish(&mut superseded).unwrap();
        superseded.sort_unstable();
        assert_eq!(superseded, [(0, 0), (0, 1), (2, 0)]);
    }

    #[test]
    fn a_place_names_its_batch_and_row_past_batches_that_handed_on_nothing() {
        let places = Places { starts: vec![0, 3, 3, 7], handed: 9 };
        let names: Vec<(u32, u32)> = (0..9).map(|place| places.name(place)).collect();
        assert_eq!(names, [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2), (2, 3), (3, 0), (3, 1)]);
    }
}
