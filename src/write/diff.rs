//! Compares the day's validated rows with the rows the table holds for that
//! day, by key and by a 128-bit hash of the other columns, so the merge is
//! given only what changes: rows to insert, rows to update and keys to
//! delete. Merging only the changed rows keeps a 1%-changed re-export cheap
//! (delta-rs #4422) and an identical re-run free (no commit at all).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, SessionContext};
use deltalake::DeltaTable;
use futures::StreamExt;
use hashbrown::HashTable;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::days_since_epoch;
use crate::row_hash;
use crate::storage::Location;

/// Column of the merge source saying what to do with the row.
pub const OP: &str = "_op";
pub const OP_INSERT: &str = "insert";
pub const OP_UPDATE: &str = "update";
pub const OP_DELETE: &str = "delete";

#[derive(Debug, Default)]
pub struct Diff {
    /// Merge source rows (schema: `merge_source_schema`).
    pub changes: Vec<RecordBatch>,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Rows the table held for the day before this load.
    pub current_rows: u64,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.inserted == 0 && self.updated == 0 && self.deleted == 0
    }
}

/// The table's columns, all nullable (deletes carry only the key), plus `_op`.
pub fn merge_source_schema(def: &TableDefinition) -> SchemaRef {
    let mut fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.data_type.clone(), true)).collect();
    fields.push(Field::new(OP, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Diffs `incoming` (the day's rows, table schema) against `current`, what
/// the table holds for `date`.
pub async fn against(
    current: &CurrentPartition,
    location: &Location,
    def: &'static TableDefinition,
    key: &str,
    date: NaiveDate,
    incoming: &[RecordBatch],
) -> Result<Diff> {
    let mut diff = Diff { current_rows: current.rows, ..Diff::default() };
    if current.rows == 0 {
        // A new partition: everything is an insert, written as is.
        diff.inserted = incoming.iter().map(|b| b.num_rows() as u64).sum();
        return Ok(diff);
    }
    let schema = merge_source_schema(def);
    let incoming_hashes = incoming
        .iter()
        .map(|b| row_hash::from_array(b.column_by_name(def.row_hash_column()).expect("validated rows have it")))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(Stage::Write, location, e))?;

    // Look every row up, on two threads: the index is only read (`seen` is atomic).
    let started = std::time::Instant::now();
    let work: Vec<(&RecordBatch, Vec<u128>)> = incoming.iter().zip(incoming_hashes).collect();
    let half = work.len().div_ceil(2);
    let ops: Vec<Vec<Option<&'static str>>> = std::thread::scope(|scope| {
        let parts: Vec<_> = work
            .chunks(half.max(1))
            .map(|part| scope.spawn(move || part.iter().map(|(b, h)| current.classify(b, h, key)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("diff thread panicked")).collect()
    });
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "compared the rows");

    for (batch, ops) in incoming.iter().zip(ops) {
        let changed = BooleanArray::from(ops.iter().map(|op| op.is_some()).collect::<Vec<_>>());
        diff.unchanged += changed.false_count() as u64;
        diff.inserted += ops.iter().filter(|op| **op == Some(OP_INSERT)).count() as u64;
        diff.updated += ops.iter().filter(|op| **op == Some(OP_UPDATE)).count() as u64;
        if changed.true_count() == 0 {
            continue;
        }
        let rows = filter_record_batch(batch, &changed).map_err(|e| Error::internal(Stage::Write, location, e))?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter_values(ops.into_iter().flatten())));
        diff.changes.push(
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::internal(Stage::Write, location, e))?,
        );
    }

    let gone: Vec<&str> = current
        .index
        .entries
        .iter()
        .filter(|e| !e.seen.load(Ordering::Relaxed))
        .map(|e| current.ids[e.batch as usize].value(e.row as usize))
        .collect();
    diff.deleted = gone.len() as u64;
    if !gone.is_empty() {
        diff.changes
            .push(deletions(&schema, def, key, date, &gone).map_err(|e| Error::internal(Stage::Write, location, e))?);
    }
    Ok(diff)
}

/// Merge source rows that delete `ids`: the key and the date, nulls elsewhere.
fn deletions(
    schema: &SchemaRef,
    def: &TableDefinition,
    key: &str,
    date: NaiveDate,
    ids: &[&str],
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = ids.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            if field.name() == key {
                Arc::new(StringArray::from_iter_values(ids.iter().copied()))
            } else if field.name() == &def.partition_by {
                Arc::new(Date32Array::from(vec![days_since_epoch(date); n]))
            } else if field.name() == OP {
                Arc::new(StringArray::from(vec![OP_DELETE; n]))
            } else {
                new_null_array(field.data_type(), n)
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

struct Held {
    key_hash: u64,
    batch: u32,
    row: u32,
    hash: u128,
    /// Set when the export has the key; the keys never seen are deleted.
    seen: AtomicBool,
}

#[derive(Default)]
struct KeyIndex {
    hasher: hashbrown::DefaultHashBuilder,
    entries: HashTable<Held>,
}

/// The keys and value hashes of the rows the table holds for a day.
pub struct CurrentPartition {
    ids: Vec<StringArray>,
    index: KeyIndex,
    /// Rows the table holds for the day.
    pub rows: u64,
}

impl CurrentPartition {
    /// A date with no rows (or no table yet).
    pub fn empty() -> CurrentPartition {
        CurrentPartition { ids: Vec::new(), index: KeyIndex::default(), rows: 0 }
    }

    /// What each row of `batch` is to the table: `None` unchanged, else insert or update.
    fn classify(&self, batch: &RecordBatch, hashes: &[u128], key: &str) -> Vec<Option<&'static str>> {
        let ids = batch.column_by_name(key).expect("validated batch has the key").as_string::<i32>();
        hashes
            .iter()
            .enumerate()
            .map(|(row, hash)| {
                let id = ids.value(row);
                let key_hash = self.index.hasher.hash_one(id);
                let found = self.index.entries.find(key_hash, |e| {
                    e.key_hash == key_hash && self.ids[e.batch as usize].value(e.row as usize) == id
                });
                match found {
                    None => Some(OP_INSERT),
                    Some(entry) => {
                        entry.seen.store(true, Ordering::Relaxed);
                        (entry.hash != *hash || entry.hash == row_hash::UNKNOWN).then_some(OP_UPDATE)
                    }
                }
            })
            .collect()
    }

    /// Reads the keys and value hashes of the table's rows for `date` (only
    /// that partition's files), hashing on blocking threads.
    pub async fn read(
        table: &DeltaTable,
        location: &Location,
        def: &'static TableDefinition,
        key: &str,
        date: NaiveDate,
    ) -> Result<CurrentPartition> {
        let started = std::time::Instant::now();
        let df_error = |e| Error::datafusion(Stage::Write, location, e);
        let mut partition = CurrentPartition { ids: Vec::new(), index: KeyIndex::default(), rows: 0 };
        if !has_files_for(table, location, def, date).await? {
            return Ok(partition);
        }
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Write, location, e))?;
        let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
        // Only the key and the fingerprint: the values themselves are not read.
        let mut stream = ctx
            .read_table(provider)
            .and_then(|df| df.filter(col(&def.partition_by).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))))))
            .and_then(|df| df.select(vec![col(key), col(def.row_hash_column())]))
            .map_err(df_error)?
            .execute_stream()
            .await
            .map_err(df_error)?;

        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_error)?;
            let fail = |e: String| Error::internal(Stage::Write, location, e);
            let hashes = row_hash::from_array(batch.column(1)).map_err(fail)?;
            let ids = cast(batch.column(0), &DataType::Utf8).map_err(|e| fail(e.to_string()))?;
            let ids = ids.as_string::<i32>().clone();
            let batch_index = partition.ids.len() as u32;
            for (row, hash) in hashes.into_iter().enumerate() {
                let id = ids.value(row);
                let h = partition.index.hasher.hash_one(id);
                let all_ids = &partition.ids;
                let slot = partition.index.entries.entry(
                    h,
                    |e| {
                        let other = if e.batch == batch_index { &ids } else { &all_ids[e.batch as usize] };
                        e.key_hash == h && other.value(e.row as usize) == id
                    },
                    |e| e.key_hash,
                );
                match slot {
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
                        slot.insert(Held {
                            key_hash: h,
                            batch: batch_index,
                            row: row as u32,
                            hash,
                            seen: AtomicBool::new(false),
                        });
                    }
                }
            }
            partition.rows += ids.len() as u64;
            partition.ids.push(ids);
        }
        tracing::debug!(
            rows = partition.rows,
            ms = started.elapsed().as_millis() as u64,
            "read the partition's keys and hashes"
        );
        Ok(partition)
    }
}

/// Whether the table has any data file for the date (partition pruning is
/// exact, so this reads only the log).
pub async fn has_files_for(
    table: &DeltaTable,
    location: &Location,
    def: &TableDefinition,
    date: NaiveDate,
) -> Result<bool> {
    Ok(!files_for_partition(table, location, &def.partition_by, date).await?.is_empty())
}

/// The data files of a date partition.
pub async fn files_for_partition(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<Vec<String>> {
    use deltalake::{FilterOp, FilterValue};
    let day = date.to_string();
    let filter = (partition_by, FilterOp::Eq, FilterValue::Scalar(day.as_str()));
    let files = table.get_files_by_partitions(&[filter]).await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    Ok(files.into_iter().map(|p| p.to_string()).collect())
}
