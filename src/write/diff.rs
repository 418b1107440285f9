//! Compares the day's validated rows with the rows the table holds for that
//! day, by key and by a 128-bit hash of the other columns, so the merge is
//! given only what changes: rows to insert, rows to update and keys to
//! delete. Merging only the changed rows keeps a 1%-changed re-export cheap
//! (delta-rs #4422) and an identical re-run free (no commit at all).

use std::hash::BuildHasher;
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
use futures::{StreamExt, TryStreamExt};
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_128;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::days_since_epoch;
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

/// Diffs `incoming` (the day's rows, table schema) against the table's partition for `date`.
pub async fn against_partition(
    table: &DeltaTable,
    location: &Location,
    def: &'static TableDefinition,
    key: &str,
    date: NaiveDate,
    incoming: &[RecordBatch],
) -> Result<Diff> {
    let hasher = Arc::new(ValueHasher::new(def));
    let started = std::time::Instant::now();
    let current = CurrentPartition::read(table, location, def, key, date, &hasher).await?;
    tracing::debug!(
        rows = current.rows,
        ms = started.elapsed().as_millis() as u64,
        "read the partition's keys and hashes"
    );
    let mut diff = Diff { current_rows: current.rows, ..Diff::default() };
    if current.rows == 0 {
        // A new partition: everything is an insert, written as is.
        diff.inserted = incoming.iter().map(|b| b.num_rows() as u64).sum();
        return Ok(diff);
    }
    let mut index = current.index;
    let schema = merge_source_schema(def);
    let started = std::time::Instant::now();
    let incoming_hashes = hash_batches(&hasher, incoming.iter().cloned(), location).await?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "hashed the export's rows");

    for (batch, hashes) in incoming.iter().zip(incoming_hashes) {
        let ids = batch.column_by_name(key).expect("validated batch has the key").as_string::<i32>();
        let mut ops: Vec<Option<&str>> = Vec::with_capacity(batch.num_rows());
        for (row, hash) in hashes.iter().enumerate() {
            let id = ids.value(row);
            let key_hash = index.hasher.hash_one(id);
            let found = index.entries.find_mut(key_hash, |e| {
                e.key_hash == key_hash && current.ids[e.batch as usize].value(e.row as usize) == id
            });
            ops.push(match found {
                None => {
                    diff.inserted += 1;
                    Some(OP_INSERT)
                }
                Some(entry) => {
                    entry.seen = true;
                    if entry.hash == *hash {
                        diff.unchanged += 1;
                        None
                    } else {
                        diff.updated += 1;
                        Some(OP_UPDATE)
                    }
                }
            });
        }
        let changed = BooleanArray::from(ops.iter().map(|op| op.is_some()).collect::<Vec<_>>());
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

    let gone: Vec<&str> =
        index.entries.iter().filter(|e| !e.seen).map(|e| current.ids[e.batch as usize].value(e.row as usize)).collect();
    diff.deleted = gone.len() as u64;
    if !gone.is_empty() {
        diff.changes
            .push(deletions(&schema, def, key, date, &gone).map_err(|e| Error::internal(Stage::Write, location, e))?);
    }
    Ok(diff)
}

/// Hashes batches on blocking threads, two at a time, keeping their order.
async fn hash_batches(
    hasher: &Arc<ValueHasher>,
    batches: impl Iterator<Item = RecordBatch>,
    location: &Location,
) -> Result<Vec<Vec<u128>>> {
    futures::stream::iter(batches)
        .map(|batch| {
            let hasher = hasher.clone();
            tokio::task::spawn_blocking(move || hasher.hash_rows(&batch))
        })
        .buffered(2)
        .map(|joined| match joined {
            Ok(Ok(hashes)) => Ok(hashes),
            Ok(Err(e)) => Err(Error::internal(Stage::Write, location, e)),
            Err(e) => Err(Error::internal(Stage::Write, location, e)),
        })
        .try_collect()
        .await
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

/// Hashes the value (non-key) columns of each row: a canonical encoding of
/// the values (a presence byte, then length-prefixed text, little-endian
/// numbers, list lengths and items), hashed with xxh3-128. The encoding is
/// ours, not Arrow's, so it does not change with library versions.
struct ValueHasher {
    columns: Vec<String>,
}

/// A column as the hasher reads it, with its null mask resolved once.
enum Values<'a> {
    Text(&'a datafusion::arrow::array::StringArray),
    TextView(&'a datafusion::arrow::array::StringViewArray),
    Flag(&'a datafusion::arrow::array::BooleanArray),
    Long(&'a datafusion::arrow::array::Int64Array),
    Date(&'a datafusion::arrow::array::Date32Array),
    LongList(&'a datafusion::arrow::array::ListArray),
}

struct Column<'a> {
    values: Values<'a>,
    nulls: Option<&'a datafusion::arrow::buffer::NullBuffer>,
}

impl<'a> Column<'a> {
    fn of(array: &'a ArrayRef) -> Option<Column<'a>> {
        let values = match array.data_type() {
            DataType::Utf8 => Values::Text(array.as_string::<i32>()),
            DataType::Utf8View => Values::TextView(array.as_string_view()),
            DataType::Boolean => Values::Flag(array.as_boolean()),
            DataType::Int64 => Values::Long(array.as_primitive()),
            DataType::Date32 => Values::Date(array.as_primitive()),
            DataType::List(item) if item.data_type() == &DataType::Int64 => Values::LongList(array.as_list::<i32>()),
            _ => return None,
        };
        Some(Column { values, nulls: array.nulls() })
    }

    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            out.push(0);
            return;
        }
        out.push(1);
        match &self.values {
            Values::Text(a) => text(a.value(row), out),
            Values::TextView(a) => text(a.value(row), out),
            Values::Flag(a) => out.push(a.value(row) as u8),
            Values::Long(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::Date(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::LongList(a) => {
                let offsets = a.value_offsets();
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                let items = a.values().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                out.extend_from_slice(&((to - from) as u32).to_le_bytes());
                for i in from..to {
                    if items.is_null(i) {
                        out.push(0);
                    } else {
                        out.push(1);
                        out.extend_from_slice(&items.value(i).to_le_bytes());
                    }
                }
            }
        }
    }
}

fn text(value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

impl ValueHasher {
    fn new(def: &TableDefinition) -> Self {
        ValueHasher { columns: def.value_columns().map(|c| c.name.clone()).collect() }
    }

    /// One hash per row of `batch`, which holds the value columns by name.
    fn hash_rows(&self, batch: &RecordBatch) -> std::result::Result<Vec<u128>, String> {
        let arrays = self
            .columns
            .iter()
            .map(|name| batch.column_by_name(name).ok_or_else(|| format!("no column {name}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let columns = arrays
            .iter()
            .zip(&self.columns)
            .map(|(a, name)| {
                Column::of(a).ok_or_else(|| format!("column {name} has unexpected type {}", a.data_type()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut buffer = Vec::with_capacity(512);
        Ok((0..batch.num_rows())
            .map(|row| {
                buffer.clear();
                for column in &columns {
                    column.encode(row, &mut buffer);
                }
                xxh3_128(&buffer)
            })
            .collect())
    }
}

struct Held {
    key_hash: u64,
    batch: u32,
    row: u32,
    hash: u128,
    seen: bool,
}

#[derive(Default)]
struct KeyIndex {
    hasher: hashbrown::DefaultHashBuilder,
    entries: HashTable<Held>,
}

/// The keys and value hashes of the rows the table holds for the day.
struct CurrentPartition {
    ids: Vec<StringArray>,
    index: KeyIndex,
    rows: u64,
}

impl CurrentPartition {
    async fn read(
        table: &DeltaTable,
        location: &Location,
        def: &'static TableDefinition,
        key: &str,
        date: NaiveDate,
        hasher: &Arc<ValueHasher>,
    ) -> Result<CurrentPartition> {
        let df_error = |e| Error::datafusion(Stage::Write, location, e);
        let mut partition = CurrentPartition { ids: Vec::new(), index: KeyIndex::default(), rows: 0 };
        if !has_files_for(table, location, def, date).await? {
            return Ok(partition);
        }
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Write, location, e))?;
        let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
        let wanted: Vec<_> = std::iter::once(key).chain(hasher.columns.iter().map(String::as_str)).map(col).collect();
        let stream = ctx
            .read_table(provider)
            .and_then(|df| df.filter(col(&def.partition_by).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))))))
            .and_then(|df| df.select(wanted))
            .map_err(df_error)?
            .execute_stream()
            .await
            .map_err(df_error)?;

        // Hash on blocking threads, two batches at a time, in order.
        let subject = location.to_string();
        let mut prepared = stream
            .map(|batch| {
                let (hasher, subject, key) = (hasher.clone(), subject.clone(), key.to_string());
                tokio::task::spawn_blocking(move || -> Result<(StringArray, Vec<u128>)> {
                    let batch = batch.map_err(|e| Error::datafusion(Stage::Write, &subject, e))?;
                    let fail = |e: String| Error::internal(Stage::Write, &subject, e);
                    // Parquet may hand back other (view, dictionary) types than
                    // the definition's: hash them as they come when possible.
                    let (batch, hashes) = match hasher.hash_rows(&batch) {
                        Ok(hashes) => (batch, hashes),
                        Err(_) => {
                            let cast_batch = cast_to_definition(&batch, def).map_err(fail)?;
                            let hashes = hasher.hash_rows(&cast_batch).map_err(fail)?;
                            (cast_batch, hashes)
                        }
                    };
                    let ids = cast(batch.column_by_name(&key).expect("selected"), &DataType::Utf8)
                        .map_err(|e| fail(e.to_string()))?;
                    Ok((ids.as_string::<i32>().clone(), hashes))
                })
            })
            .buffered(2);

        while let Some(joined) = prepared.next().await {
            let (ids, hashes) = joined.map_err(|e| Error::internal(Stage::Write, location, e))??;
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
                    hashbrown::hash_table::Entry::Occupied(_) => return Err(Error::internal(
                        Stage::Write,
                        location,
                        format!(
                            "the table holds key {id} twice for {date}; the partition must be repaired before loading"
                        ),
                    )),
                    hashbrown::hash_table::Entry::Vacant(slot) => {
                        slot.insert(Held { key_hash: h, batch: batch_index, row: row as u32, hash, seen: false });
                    }
                }
            }
            partition.rows += ids.len() as u64;
            partition.ids.push(ids);
        }
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

/// Casts the columns a batch holds to the definition's types, by name.
fn cast_to_definition(batch: &RecordBatch, def: &TableDefinition) -> std::result::Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for field in batch.schema().fields() {
        let column = batch.column_by_name(field.name()).expect("own field");
        let wanted = def
            .columns
            .iter()
            .find(|c| &c.name == field.name())
            .map(|c| c.data_type.clone())
            .unwrap_or_else(|| field.data_type().clone());
        let cast_column = if column.data_type() == &wanted {
            column.clone()
        } else {
            cast(column, &wanted).map_err(|e| e.to_string())?
        };
        fields.push(Field::new(field.name(), wanted, true));
        columns.push(cast_column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}
