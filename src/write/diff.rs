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
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, SessionContext};
use deltalake::DeltaTable;
use futures::StreamExt;
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
    def: &TableDefinition,
    key: &str,
    date: NaiveDate,
    incoming: &[RecordBatch],
) -> Result<Diff> {
    let hasher = ValueHasher::new(def)?;
    let current = CurrentPartition::read(table, location, def, key, date, &hasher).await?;
    let mut diff = Diff { current_rows: current.rows, ..Diff::default() };
    let mut index = current.index;
    let schema = merge_source_schema(def);

    for batch in incoming {
        let ids = batch.column_by_name(key).expect("validated batch has the key").as_string::<i32>();
        let hashes = hasher.hash_rows(batch).map_err(|e| Error::internal(Stage::Write, location, e))?;
        let mut ops: Vec<Option<&str>> = Vec::with_capacity(batch.num_rows());
        for (row, hash) in hashes.iter().enumerate() {
            let id = ids.value(row);
            let found = index
                .entries
                .find_mut(index.hasher.hash_one(id), |e| current.ids[e.batch as usize].value(e.row as usize) == id);
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

/// Hashes the value (non-key) columns of a row through Arrow's row format,
/// which encodes equal values, nulls included, as equal bytes.
struct ValueHasher {
    columns: Vec<(String, DataType)>,
    converter: RowConverter,
}

impl ValueHasher {
    fn new(def: &TableDefinition) -> Result<Self> {
        let columns: Vec<(String, DataType)> =
            def.value_columns().map(|c| (c.name.clone(), c.data_type.clone())).collect();
        let converter = RowConverter::new(columns.iter().map(|(_, t)| SortField::new(t.clone())).collect())
            .map_err(|e| Error::internal(Stage::Definition, &def.name, e))?;
        Ok(ValueHasher { columns, converter })
    }

    /// One hash per row; `batch` must hold the value columns with the definition's types.
    fn hash_rows(&self, batch: &RecordBatch) -> std::result::Result<Vec<u128>, String> {
        let arrays = self
            .columns
            .iter()
            .map(|(name, _)| batch.column_by_name(name).cloned().ok_or_else(|| format!("no column {name}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&arrays).map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|row| xxh3_128(row.as_ref())).collect())
    }
}

struct Entry {
    batch: u32,
    row: u32,
    hash: u128,
    seen: bool,
}

#[derive(Default)]
struct KeyIndex {
    hasher: hashbrown::DefaultHashBuilder,
    entries: HashTable<Entry>,
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
        def: &TableDefinition,
        key: &str,
        date: NaiveDate,
        hasher: &ValueHasher,
    ) -> Result<CurrentPartition> {
        let df_error = |e| Error::datafusion(Stage::Write, location, e);
        let mut partition = CurrentPartition { ids: Vec::new(), index: KeyIndex::default(), rows: 0 };
        if !has_files_for(table, location, def, date).await? {
            return Ok(partition);
        }
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Write, location, e))?;
        let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
        let wanted: Vec<_> =
            std::iter::once(key).chain(hasher.columns.iter().map(|(n, _)| n.as_str())).map(col).collect();
        let mut stream = ctx
            .read_table(provider)
            .and_then(|df| df.filter(col(&def.partition_by).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))))))
            .and_then(|df| df.select(wanted))
            .map_err(df_error)?
            .execute_stream()
            .await
            .map_err(df_error)?;

        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_error)?;
            // Parquet may hand back view or dictionary types: compare in the definition's types.
            let batch = cast_to_definition(&batch, def).map_err(|e| Error::internal(Stage::Write, location, e))?;
            let hashes = hasher.hash_rows(&batch).map_err(|e| Error::internal(Stage::Write, location, e))?;
            let ids = batch.column_by_name(key).expect("selected").as_string::<i32>().clone();
            let batch_index = partition.ids.len() as u32;
            for (row, hash) in hashes.into_iter().enumerate() {
                let id = ids.value(row);
                let h = partition.index.hasher.hash_one(id);
                let all_ids = &partition.ids;
                let duplicate = partition.index.entries.find(h, |e| {
                    let other = if e.batch == batch_index { &ids } else { &all_ids[e.batch as usize] };
                    other.value(e.row as usize) == id
                });
                if duplicate.is_some() {
                    return Err(Error::internal(
                        Stage::Write,
                        location,
                        format!(
                            "the table holds key {id} twice for {date}; the partition must be repaired before loading"
                        ),
                    ));
                }
                let state_hasher = &partition.index.hasher;
                partition.index.entries.insert_unique(
                    h,
                    Entry { batch: batch_index, row: row as u32, hash, seen: false },
                    |e| {
                        let other = if e.batch == batch_index { &ids } else { &all_ids[e.batch as usize] };
                        state_hasher.hash_one(other.value(e.row as usize))
                    },
                );
            }
            partition.rows += batch.num_rows() as u64;
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
