//! The comparison of a day with the date's rows when the date's key index
//! is past its share of `--memory-limit` ([`crate::spill`]): the date's
//! keys and fingerprints are on disk by partition of key, and so are the
//! export's (key, fingerprint, row name) as its rows go by; once every row
//! went by, each partition is compared alone. What it finds is the diff an
//! index in memory finds; the changed rows themselves are taken from the
//! files they were written to ([`Pending`], read again by the writers),
//! instead of being held as they went by.

use chrono::NaiveDate;
use datafusion::arrow::datatypes::SchemaRef;
use hashbrown::HashTable;

use super::merge_source::Pending;
use crate::error::{Error, Result, Stage};
use crate::spill::{self, Fields, Record, Spilled};
use crate::storage::Location;

/// One of the date's rows, on disk: its key's fingerprint and the bits of
/// its values' the comparison uses ([`value_bits`]).
pub(super) struct Stored {
    pub(super) key: u128,
    pub(super) hash: u64,
    pub(super) stale: bool,
}

impl Record for Stored {
    const BYTES: usize = 25;
    fn key(&self) -> u128 {
        self.key
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend(self.key.to_le_bytes());
        out.extend(self.hash.to_le_bytes());
        out.push(self.stale as u8);
    }
    fn read(bytes: &[u8]) -> Self {
        let mut fields = Fields(bytes);
        Stored { key: fields.u128(), hash: fields.u64(), stale: fields.u8() != 0 }
    }
}

/// One of the export's valid rows, on disk: its fingerprints (of its
/// values, the bits the comparison uses) and its name.
pub(super) struct Probe {
    pub(super) key: u128,
    pub(super) hash: u64,
    pub(super) seq: u32,
    pub(super) row: u32,
}

impl Record for Probe {
    const BYTES: usize = 32;
    fn key(&self) -> u128 {
        self.key
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend(self.key.to_le_bytes());
        out.extend(self.hash.to_le_bytes());
        out.extend(self.seq.to_le_bytes());
        out.extend(self.row.to_le_bytes());
    }
    fn read(bytes: &[u8]) -> Self {
        let mut fields = Fields(bytes);
        Probe { key: fields.u128(), hash: fields.u64(), seq: fields.u32(), row: fields.u32() }
    }
}

/// What comparing the partitions on disk found.
pub(super) struct Compared {
    pub(super) pending: Pending,
    pub(super) inserted: u64,
    pub(super) updated: u64,
    pub(super) unchanged: u64,
    pub(super) deleted_keys: Vec<u128>,
}

/// One of the date's rows in a partition's table, and whether the export has it.
struct Held {
    stored: Stored,
    seen: bool,
}

/// Compares the export's rows (`probes`) with the date's (`stored`), one
/// partition of keys at a time; superseded rows are left out. `schema`:
/// the merge's, when the changed rows are to be taken from the files.
pub(super) fn compare(
    stored: &Spilled<Stored>,
    probes: &Spilled<Probe>,
    superseded: &[(u32, u32)],
    schema: Option<SchemaRef>,
    location: &Location,
    date: NaiveDate,
) -> Result<Compared> {
    let io = |e| Error::io(Stage::Write, location, "reading the spilled key index", e);
    let mut changed: Vec<((u32, u32), bool)> = Vec::new();
    let mut compared =
        Compared { pending: Pending::default(), inserted: 0, updated: 0, unchanged: 0, deleted_keys: Vec::new() };
    for partition in 0..spill::PARTITIONS {
        let rows = stored.read(partition).map_err(io)?;
        let mut table: HashTable<Held> = HashTable::with_capacity(rows.len());
        for row in rows {
            let key = row.key;
            match table.entry(key as u64, |e| e.stored.key == key, |e| e.stored.key as u64) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(Error::internal(
                        Stage::Write,
                        location,
                        format!(
                            "the table holds one key twice for {date} (key fingerprint {key:032x}); the \
                             partition must be repaired before loading"
                        ),
                    ))
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(Held { stored: row, seen: false });
                }
            }
        }
        for probe in probes.read(partition).map_err(io)? {
            let name = (probe.seq, probe.row);
            if superseded.binary_search(&name).is_ok() {
                continue;
            }
            match table.find_mut(probe.key as u64, |e| e.stored.key == probe.key) {
                None => changed.push((name, true)),
                Some(held) => {
                    held.seen = true;
                    match held.stored.hash != probe.hash || held.stored.stale {
                        true => changed.push((name, false)),
                        false => compared.unchanged += 1,
                    }
                }
            }
        }
        compared.deleted_keys.extend(table.iter().filter(|e| !e.seen).map(|e| e.stored.key));
    }
    compared.inserted = changed.iter().filter(|(_, insert)| *insert).count() as u64;
    compared.updated = changed.len() as u64 - compared.inserted;
    if let Some(schema) = schema {
        changed.sort_unstable();
        let (names, inserts) = changed.into_iter().unzip();
        compared.pending = Pending::new(names, inserts, schema);
    }
    Ok(compared)
}
