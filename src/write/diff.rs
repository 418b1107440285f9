//! Compares the day's validated rows with the rows the table holds for that
//! day, by a 128-bit fingerprint of the key and one of the other columns, so
//! the merge is given only what changes: rows to insert, rows to update and
//! keys to delete. Merging only the changed rows keeps a 1%-changed re-export cheap
//! (delta-rs #4422) and an identical re-run free (no commit at all).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use deltalake::DeltaTable;
use futures::StreamExt;
use hashbrown::HashTable;

use super::merge_source::{merge_source_schema, Pending, OP, OP_INSERT, OP_UPDATE};
use super::provenance::{self, DateProvenance};
use super::spilled::{self, Probe, Stored};
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::days_since_epoch;
use crate::row_hash::{self, key_fingerprint, Fingerprint, ValueHasher};
use crate::spill::{Claim, Spilled, Spilling};
use crate::storage::Location;
use crate::validate::ValidBatch;

#[derive(Debug, Default)]
pub struct Diff {
    /// The export's inserted and updated rows (schema: `merge_source_schema`).
    pub changes: Vec<RecordBatch>,
    /// The key fingerprints of the rows the export no longer has: the
    /// rewrite finds their rows by them (the index keeps no keys).
    pub deleted_keys: Vec<u128>,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Rows the table held for the day before this load.
    pub current_rows: u64,
    /// The changed rows, by name, when the comparison was made on disk:
    /// the writers take them from their files into `changes`.
    pub pending: Pending,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.inserted == 0 && self.updated == 0 && self.deleted == 0
    }
}

/// Compares the day's rows with what the table holds for the date, batch
/// by batch as they are validated: unchanged rows are only counted, the
/// changed ones kept for the merge (a corrected re-export changes a few).
pub struct Classifier<'a> {
    current: &'a CurrentPartition,
    def: &'a TableDefinition,
    location: &'a Location,
    schema: SchemaRef,
    /// Changed rows of each batch (unless only counting).
    changes: Vec<Changed>,
    keep_rows: bool,
    unchanged: u64,
    /// The export's rows, on disk, when the date's index is.
    probes: Option<Spilling<Probe>>,
}

/// The changed rows of one batch: each row's (seq, row) and whether it is
/// an insert, and the rows with their `_op` when they are kept.
struct Changed {
    names: Vec<(u32, u32)>,
    inserts: Vec<bool>,
    rows: Option<RecordBatch>,
}

impl<'a> Classifier<'a> {
    /// A classifier that keeps the changed rows, for a load to write them.
    pub fn new(current: &'a CurrentPartition, def: &'a TableDefinition, location: &'a Location) -> Self {
        let schema = merge_source_schema(def);
        Classifier { current, def, location, schema, changes: Vec::new(), keep_rows: true, unchanged: 0, probes: None }
    }

    /// A classifier that only counts (a dry run): a dry run of a first load
    /// would otherwise hold the whole day (1.36 GB at 5M rows).
    pub fn counting(current: &'a CurrentPartition, def: &'a TableDefinition, location: &'a Location) -> Self {
        Classifier { keep_rows: false, ..Classifier::new(current, def, location) }
    }

    /// Takes in one batch of valid rows.
    pub fn add(&mut self, batch: &ValidBatch) -> Result<()> {
        let fail = |e: String| Error::internal(Stage::Write, self.location, e);
        let rows = &batch.rows;
        let hashes =
            row_hash::from_array(rows.column_by_name(self.def.row_hash_column()).expect("validated rows have it"))
                .map_err(fail)?;
        if self.current.spilled.is_some() {
            return self.add_on_disk(batch, &hashes);
        }
        let ops = self.current.classify(rows, &hashes, self.def.day_key());
        let changed = BooleanArray::from(ops.iter().map(|op| op.is_some()).collect::<Vec<_>>());
        self.unchanged += changed.false_count() as u64;
        if changed.true_count() == 0 {
            return Ok(());
        }
        let names: Vec<(u32, u32)> =
            ops.iter().enumerate().filter(|(_, op)| op.is_some()).map(|(row, _)| (batch.seq, row as u32)).collect();
        let inserts: Vec<bool> = ops.iter().flatten().map(|op| *op == OP_INSERT).collect();
        if !self.keep_rows {
            self.changes.push(Changed { names, inserts, rows: None });
            return Ok(());
        }
        let kept = filter_record_batch(rows, &changed).map_err(|e| fail(e.to_string()))?;
        let mut columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != OP)
            .map(|f| kept.column_by_name(f.name()).expect("table column").clone())
            .collect();
        columns.push(Arc::new(StringArray::from_iter_values(ops.into_iter().flatten())));
        let rows = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| fail(e.to_string()))?;
        self.changes.push(Changed { names, inserts, rows: Some(rows) });
        Ok(())
    }

    /// The batch's keys, fingerprints and names, to disk: compared once
    /// every row went by.
    fn add_on_disk(&mut self, batch: &ValidBatch, hashes: &[u128]) -> Result<()> {
        let io = |e| Error::io(Stage::Write, self.location, "spilling the export's keys", e);
        let probes = match &mut self.probes {
            Some(probes) => probes,
            None => self.probes.insert(Spilling::new().map_err(io)?),
        };
        let ids =
            batch.rows.column_by_name(self.def.day_key()).expect("validated batch has the key").as_string::<i32>();
        for (row, hash) in hashes.iter().enumerate() {
            let probe = Probe {
                key: key_fingerprint(ids.value(row)),
                hash: value_bits(*hash),
                seq: batch.seq,
                row: row as u32,
            };
            probes.push(&probe).map_err(io)?;
        }
        Ok(())
    }

    /// The diff, once every row went by: superseded rows (a later line has
    /// their key) are left out, and the keys no row had are deleted.
    pub fn finish(self, superseded: &[(u32, u32)]) -> Result<Diff> {
        let fail = |e: String| Error::internal(Stage::Write, self.location, e);
        if let Some(date) = &self.current.spilled {
            let io = |e| Error::io(Stage::Write, self.location, "spilling the export's keys", e);
            let probes = match self.probes {
                Some(probes) => probes.finish().map_err(io)?,
                None => Spilling::new().and_then(Spilling::finish).map_err(io)?,
            };
            let schema = self.keep_rows.then(|| self.schema.clone());
            let compared = spilled::compare(&date.stored, &probes, superseded, schema, self.location, date.date)?;
            return Ok(Diff {
                deleted: compared.deleted_keys.len() as u64,
                deleted_keys: compared.deleted_keys,
                inserted: compared.inserted,
                updated: compared.updated,
                unchanged: compared.unchanged,
                current_rows: self.current.rows,
                pending: compared.pending,
                changes: Vec::new(),
            });
        }
        let mut diff = Diff { current_rows: self.current.rows, unchanged: self.unchanged, ..Diff::default() };
        let mut dropped = 0u64;
        for Changed { names, inserts, rows } in self.changes {
            let keep: BooleanArray = names.iter().map(|name| Some(superseded.binary_search(name).is_err())).collect();
            dropped += keep.false_count() as u64;
            for (kept, insert) in keep.values().iter().zip(&inserts) {
                match (kept, insert) {
                    (true, true) => diff.inserted += 1,
                    (true, false) => diff.updated += 1,
                    (false, _) => {}
                }
            }
            let Some(rows) = rows else { continue };
            let rows = if keep.false_count() == 0 {
                rows
            } else {
                filter_record_batch(&rows, &keep).map_err(|e| fail(e.to_string()))?
            };
            if rows.num_rows() > 0 {
                diff.changes.push(rows);
            }
        }
        // A superseded row that was not a change was counted unchanged.
        diff.unchanged -= (superseded.len() as u64).saturating_sub(dropped).min(diff.unchanged);
        diff.deleted_keys = self.current.index.iter().filter(|e| !e.seen()).map(|e| e.key.into()).collect();
        diff.deleted = diff.deleted_keys.len() as u64;
        Ok(diff)
    }
}

/// One stored row: fingerprints only, 24 bytes. Keeping the keys
/// themselves (a UUID is 36 bytes and its offset 4) cost 190 MB more at 5M
/// rows; the whole value fingerprint and two flags, 16 bytes more (128 MiB
/// at 5M: the index has 8Mi buckets).
struct Held {
    /// The fingerprint of the row's key ([`key_fingerprint`]).
    key: Fingerprint,
    /// 62 bits of the fingerprint of the row's values as the table holds
    /// them (bits 2 to 63), and two flags ([`STALE`], [`SEEN`]) in the
    /// lowest two. 62 bits suffice: a row is compared only with its own
    /// key's stored row, so a change goes unseen only if its fingerprint
    /// agrees in those bits by chance (once in 2^62 changed rows), not
    /// among all the day's rows as keys are.
    state: AtomicU64,
}

/// The stored fingerprint is not the one of the row's values (another
/// engine changed the row, or wrote it without one): the row is rewritten
/// even if the export has the same values.
const STALE: u64 = 1;
/// The export has the key; the keys never seen are deleted.
const SEEN: u64 = 2;
/// The bits of a [`Held`]'s state that are the value fingerprint's.
const VALUE_BITS: u64 = !(STALE | SEEN);

/// The bits of a value fingerprint the comparison uses, in memory or on disk.
pub(super) fn value_bits(hash: u128) -> u64 {
    hash as u64 & VALUE_BITS
}

impl Held {
    fn new(key: Fingerprint, hash: u128, stale: bool) -> Held {
        Held { key, state: AtomicU64::new(value_bits(hash) | if stale { STALE } else { 0 }) }
    }

    /// Marks the key seen in the export; whether the row it has (`hash`) must be written.
    fn changed_by(&self, hash: u128) -> bool {
        let state = self.state.fetch_or(SEEN, Ordering::Relaxed);
        state & STALE != 0 || state & VALUE_BITS != value_bits(hash)
    }

    fn seen(&self) -> bool {
        self.state.load(Ordering::Relaxed) & SEEN != 0
    }
}

/// The key and value fingerprints of the rows the table holds for a day:
/// in memory, or on disk past the index's share of `--memory-limit`.
pub struct CurrentPartition {
    index: HashTable<Held>,
    /// The index's memory in the process's pool, given back with it.
    claim: Option<Claim>,
    spilled: Option<SpilledDate>,
    /// Rows the table holds for the day.
    pub rows: u64,
    /// Who wrote the day's files.
    pub provenance: DateProvenance,
}

/// The date's index, on disk.
struct SpilledDate {
    stored: Spilled<Stored>,
    date: NaiveDate,
}

impl CurrentPartition {
    /// A date with no rows (or no table yet).
    pub fn empty() -> CurrentPartition {
        CurrentPartition {
            index: HashTable::new(),
            claim: None,
            spilled: None,
            rows: 0,
            provenance: DateProvenance::default(),
        }
    }

    /// What each row of `batch` is to the table: `None` unchanged, else insert or update.
    fn classify(&self, batch: &RecordBatch, hashes: &[u128], key: &str) -> Vec<Option<&'static str>> {
        let ids = batch.column_by_name(key).expect("validated batch has the key").as_string::<i32>();
        hashes
            .iter()
            .enumerate()
            .map(|(row, hash)| {
                let key = Fingerprint::from(key_fingerprint(ids.value(row)));
                match self.index.find(key.bucket(), |e| e.key == key) {
                    None => Some(OP_INSERT),
                    Some(entry) => entry.changed_by(*hash).then_some(OP_UPDATE),
                }
            })
            .collect()
    }

    /// Reads the keys and value fingerprints of the table's rows for `date`
    /// (only that partition's files). Files shoplake wrote give their stored
    /// fingerprints (two columns read); files another writer added are read
    /// whole and fingerprinted from their values ([`DateProvenance`]).
    pub async fn read(
        table: &DeltaTable,
        location: &Location,
        def: &'static TableDefinition,
        hasher: &ValueHasher,
        date: NaiveDate,
        known: Option<DateProvenance>,
    ) -> Result<CurrentPartition> {
        let key = def.day_key();
        let started = std::time::Instant::now();
        let mut partition = CurrentPartition::empty();
        let provenance = match known {
            Some(known) => known,
            None => match provenance::of_date(table, location, def, date).await? {
                Some(read) => read,
                None => return Ok(partition),
            },
        };
        if provenance.own_files.is_empty() && provenance.foreign_files.is_empty() {
            partition.provenance = provenance;
            return Ok(partition);
        }
        // Sized once from the files' statistics (growing a table this
        // large holds the old one and the new one at once), or on disk
        // from the start if it would not fit its share of the memory.
        let mut spill = DateSpill::for_table(table, def);
        spill.room_for(&mut partition.index, provenance.rows.unwrap_or(0) as usize, location)?;
        partition.provenance = provenance;
        let row_hash = def.row_hash_column();
        let own = std::mem::take(&mut partition.provenance.own_files);
        if !own.is_empty() {
            let mut stream = scan(table, location, def, date, &own, &[key, row_hash]).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
                let stored =
                    row_hash::from_array(batch.column(1)).map_err(|e| Error::internal(Stage::Write, location, e))?;
                // A missing stored fingerprint (an older load by another engine) is stale.
                let stale: Vec<bool> = stored.iter().map(|h| *h == row_hash::UNKNOWN).collect();
                partition.add(location, date, batch.column(0), stored, stale, &mut spill)?;
            }
        }
        partition.provenance.own_files = own;
        let foreign = &partition.provenance.foreign_files;
        if !foreign.is_empty() {
            // The values the fingerprint covers, as far as the table has
            // them (a column still to be added reads as null; a table to
            // take over has no fingerprints at all yet).
            let has_row_hash = crate::table::spec::has_column(table, row_hash);
            let mut columns: Vec<&str> = vec![key];
            columns.extend(has_row_hash.then_some(row_hash));
            columns.extend(
                def.hashed_columns().map(|c| c.name.as_str()).filter(|c| crate::table::spec::has_column(table, c)),
            );
            let mut stream = scan(table, location, def, date, &foreign.clone(), &columns).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
                let fail = |e: String| Error::internal(Stage::Write, location, e);
                let stored = match has_row_hash {
                    true => row_hash::from_array(batch.column(1)).map_err(fail)?,
                    false => vec![row_hash::UNKNOWN; batch.num_rows()],
                };
                let values = hasher.hash_rows(&batch).map_err(fail)?;
                let stale: Vec<bool> = stored.iter().zip(&values).map(|(s, v)| s != v).collect();
                partition.add(location, date, batch.column(0), values, stale, &mut spill)?;
            }
        }
        match spill.finish(date, location)? {
            Ok(spilled) => partition.spilled = Some(spilled),
            Err(claim) => partition.claim = Some(claim),
        }
        tracing::debug!(
            rows = partition.rows,
            spilled = partition.spilled.is_some(),
            foreign_files = partition.provenance.foreign_files.len(),
            ms = started.elapsed().as_millis() as u64,
            "read the partition's keys and fingerprints"
        );
        Ok(partition)
    }

    /// Indexes one batch of the partition's keys with their fingerprints.
    fn add(
        &mut self,
        location: &Location,
        date: NaiveDate,
        ids: &ArrayRef,
        hashes: Vec<u128>,
        stale: Vec<bool>,
        spill: &mut DateSpill,
    ) -> Result<()> {
        let ids = cast(ids, &DataType::Utf8).map_err(|e| Error::internal(Stage::Write, location, e))?;
        let ids = ids.as_string::<i32>();
        self.rows += ids.len() as u64;
        spill.room_for(&mut self.index, ids.len(), location)?;
        if let Some(spilling) = &mut spill.spilling {
            for (row, (hash, stale)) in hashes.into_iter().zip(stale).enumerate() {
                let stored = Stored { key: key_fingerprint(ids.value(row)), hash: value_bits(hash), stale };
                spilling.push(&stored).map_err(|e| spill_error(location, e))?;
            }
            return Ok(());
        }
        for (row, (hash, stale)) in hashes.into_iter().zip(stale).enumerate() {
            let id = ids.value(row);
            let key = Fingerprint::from(key_fingerprint(id));
            match self.index.entry(key.bucket(), |e| e.key == key, |e| e.key.bucket()) {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    return Err(Error::internal(
                        Stage::Write,
                        location,
                        format!(
                            "the table holds key {id} twice for {date}; the partition must be repaired before loading"
                        ),
                    ))
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(Held::new(key, hash, stale));
                }
            }
        }
        Ok(())
    }
}

/// Whether, and where, the date's index goes to disk while it is read.
struct DateSpill {
    /// The index's memory, claimed from the process's pool.
    claim: Claim,
    /// Whether it may go to disk: not when the changed rows cannot be taken
    /// from written files (a table to take over, without fingerprints, is
    /// compared but not written as the rows go by).
    may_spill: bool,
    spilling: Option<Spilling<Stored>>,
}

impl DateSpill {
    fn for_table(table: &DeltaTable, def: &TableDefinition) -> DateSpill {
        let may_spill = crate::table::spec::has_column(table, def.row_hash_column());
        DateSpill { claim: Claim::new("the date's key index"), may_spill, spilling: None }
    }

    /// Room for `more` keys in `index`, claimed from the pool, else on disk.
    fn room_for(&mut self, index: &mut HashTable<Held>, more: usize, location: &Location) -> Result<()> {
        if self.spilling.is_some() || self.claim.make_room(index, more, |e| e.key.bucket(), !self.may_spill) {
            return Ok(());
        }
        self.start(index, location)
    }

    /// Moves the index to disk: the entries so far, then every row's.
    fn start(&mut self, index: &mut HashTable<Held>, location: &Location) -> Result<()> {
        let mut spilling = Spilling::new().map_err(|e| spill_error(location, e))?;
        for held in std::mem::take(index) {
            let state = held.state.into_inner();
            let stored = Stored { key: held.key.into(), hash: state & VALUE_BITS, stale: state & STALE != 0 };
            spilling.push(&stored).map_err(|e| spill_error(location, e))?;
        }
        self.claim.free();
        tracing::info!(
            table = %location,
            "the date's key index is past its share of --memory-limit: spilled to disk"
        );
        self.spilling = Some(spilling);
        Ok(())
    }

    /// The index written, if it went to disk; else the claim on the
    /// memory it holds, to keep as long as the index.
    fn finish(self, date: NaiveDate, location: &Location) -> Result<std::result::Result<SpilledDate, Claim>> {
        let Some(spilling) = self.spilling else { return Ok(Err(self.claim)) };
        let stored = spilling.finish().map_err(|e| spill_error(location, e))?;
        Ok(Ok(SpilledDate { stored, date }))
    }
}

fn spill_error(location: &Location, error: std::io::Error) -> Error {
    Error::io(Stage::Write, location, "spilling the date's key index", error)
}

/// Streams `columns` of the date's rows in `files` (paths relative to the table).
pub(super) async fn scan(
    table: &DeltaTable,
    location: &Location,
    def: &TableDefinition,
    date: NaiveDate,
    files: &[String],
    columns: &[&str],
) -> Result<datafusion::execution::SendableRecordBatchStream> {
    let df_error = |e| Error::datafusion(Stage::Write, location, e);
    let ctx = crate::session::context();
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Write, location, e))?;
    let provider = table.table_provider().with_file_paths(files.iter().cloned()).await.map_err(df_error)?;
    ctx.read_table(provider)
        .and_then(|df| df.filter(col(&def.partition_by).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))))))
        .and_then(|df| df.select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>()))
        .map_err(df_error)?
        .execute_stream()
        .await
        .map_err(df_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_entry_takes_24_bytes() {
        // 5M keys: 8Mi buckets of 24 bytes, not of 40.
        assert_eq!(std::mem::size_of::<Held>(), 24);
    }

    #[test]
    fn a_row_is_changed_by_any_other_value_fingerprint_and_always_when_stale() {
        let key = Fingerprint::from(key_fingerprint("k"));
        let hash: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        let held = Held::new(key, hash, false);
        assert!(!held.seen());
        assert!(!held.changed_by(hash), "the same values are unchanged");
        assert!(held.seen(), "comparing marks the key seen");
        assert!(!held.changed_by(hash ^ 1 << 64), "the high half is not held");
        assert!(!held.changed_by(hash ^ 3), "the two lowest bits are the flags'");
        for bit in 2..64 {
            assert!(held.changed_by(hash ^ 1 << bit), "bit {bit} of the value fingerprint is compared");
        }
        let stale = Held::new(key, hash, true);
        assert!(stale.changed_by(hash), "a stale row is written even with the same values");
        assert!(stale.seen());
    }
}
