//! Stage 4, validate: takes the transform's rows, sets aside the ones whose
//! values broke a rule (rejects), checks what the definition promises (the
//! key is present and unique, non-nullable columns have values) and keeps,
//! of rows sharing a key, the last one in file order.

use std::hash::BuildHasher;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{filter_record_batch, is_null};
use datafusion::arrow::datatypes::{Schema, UInt64Type};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use hashbrown::HashTable;
use std::sync::Arc;

use crate::definition::{Kind, TableDefinition};
use crate::error::{Error, Result, Stage};
use crate::read::{Reject, LINE, RAW, REJECT};
use crate::row_hash::{self, ValueHasher};

/// The rows to load, and what was set aside.
#[derive(Debug)]
pub struct Validated {
    /// Rows of the table's schema, one per key.
    pub batches: Vec<RecordBatch>,
    /// Lines whose values broke a rule.
    pub value_rejects: Vec<Reject>,
    /// Rows the transform passed on (the rest were filtered).
    pub rows_transformed: u64,
    /// Rows dropped because a later line has the same key.
    pub rows_duplicate: u64,
    /// Rows kept: the day's content.
    pub rows_valid: u64,
}

pub async fn run(
    def: &TableDefinition,
    hasher: &ValueHasher,
    mut transformed: SendableRecordBatchStream,
    source_uri: &str,
) -> Result<Validated> {
    // The table's columns but the fingerprint, which is added last.
    let table_schema = def.arrow_schema();
    let row_hash = def.row_hash_column();
    let schema = Arc::new(Schema::new(
        table_schema.fields().iter().filter(|f| f.name() != row_hash).cloned().collect::<Vec<_>>(),
    ));
    let key = def.day_key();
    let mut kept: Vec<KeptBatch> = Vec::new();
    let mut value_rejects = Vec::new();
    let mut rows_transformed = 0u64;
    let mut latest = LatestByKey::default();
    let hasher = Arc::new(hasher.clone());
    let hashing = Arc::new(tokio::sync::Semaphore::new(2));

    while let Some(batch) = transformed.next().await {
        let batch = batch.map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
        rows_transformed += batch.num_rows() as u64;
        check_transform_output(def, &batch)?;

        let reasons = batch.column_by_name(REJECT).expect("checked").as_string::<i32>();
        let lines = batch.column_by_name(LINE).expect("checked").as_primitive::<UInt64Type>();
        if reasons.null_count() < reasons.len() {
            let raws = batch.column_by_name(RAW).expect("checked").as_string::<i32>();
            for row in (0..batch.num_rows()).filter(|&r| reasons.is_valid(r)) {
                value_rejects.push(Reject {
                    line: lines.value(row),
                    raw: raws.value(row).to_string(),
                    reason: reasons.value(row).to_string(),
                });
            }
        }
        let accepted = if reasons.null_count() == reasons.len() {
            batch.clone()
        } else {
            filter_record_batch(&batch, &is_null(reasons).expect("is_null never fails"))
                .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?
        };
        check_not_null(def, &accepted, source_uri)?;

        let table_columns: Vec<ArrayRef> =
            schema.fields().iter().map(|f| accepted.column_by_name(f.name()).expect("checked").clone()).collect();
        let rows = RecordBatch::try_new(schema.clone(), table_columns)
            .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?;
        let ids = rows.column_by_name(key).expect("checked").as_string::<i32>().clone();
        let lines = accepted.column_by_name(LINE).expect("checked").as_primitive::<UInt64Type>().clone();
        let batch_index = kept.len();
        // Fingerprints are computed while the rest of the file is read.
        let hashes = hash_in_background(&hasher, &hashing, rows.clone());
        kept.push(KeptBatch { keep: vec![true; rows.num_rows()], rows, ids, hashes });
        for row in 0..lines.len() {
            latest.offer(&mut kept, batch_index, row, lines.value(row));
        }
    }

    let mut batches = Vec::with_capacity(kept.len());
    let (mut rows_valid, mut rows_duplicate) = (0u64, 0u64);
    let row_hash_at = table_schema.index_of(row_hash).expect("own column");
    for batch in kept {
        let hashes = batch
            .hashes
            .await
            .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?
            .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?;
        let keep = BooleanArray::from(batch.keep);
        let duplicates = keep.false_count() as u64;
        rows_duplicate += duplicates;
        rows_valid += keep.len() as u64 - duplicates;
        let mut columns = batch.rows.columns().to_vec();
        columns.insert(row_hash_at, row_hash::to_array(&hashes));
        let rows = RecordBatch::try_new(table_schema.clone(), columns)
            .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?;
        let rows = if duplicates == 0 {
            rows
        } else {
            filter_record_batch(&rows, &keep).map_err(|e| Error::internal(Stage::Validate, source_uri, e))?
        };
        if rows.num_rows() > 0 {
            batches.push(rows);
        }
    }
    value_rejects.sort();
    Ok(Validated { batches, value_rejects, rows_transformed, rows_duplicate, rows_valid })
}

/// The transform's output, checked again on the data (the definition
/// pipeline checked the plan).
fn check_transform_output(def: &TableDefinition, batch: &RecordBatch) -> Result<()> {
    crate::transform::check_output(def, batch.schema().as_ref())
        .map_err(|message| Error::internal(Stage::Transform, format!("{}/transform.sql", def.origin), message))
}

/// A failed check is the data's fault: exit 4, nothing written.
fn check_not_null(def: &TableDefinition, batch: &RecordBatch, source_uri: &str) -> Result<()> {
    for column in def.columns.iter().filter(|c| !c.nullable && c.kind != Kind::RowHash) {
        let values = batch.column_by_name(&column.name).expect("checked");
        if values.null_count() > 0 {
            return Err(Error::rejected(
                Stage::Validate,
                source_uri,
                format!("check failed: {} is null in {} rows", column.name, values.null_count()),
            ));
        }
    }
    Ok(())
}

struct KeptBatch {
    rows: RecordBatch,
    ids: StringArray,
    keep: Vec<bool>,
    hashes: tokio::task::JoinHandle<std::result::Result<Vec<u128>, String>>,
}

/// Starts fingerprinting `rows` on a blocking thread, at most two at a time.
fn hash_in_background(
    hasher: &Arc<ValueHasher>,
    limit: &Arc<tokio::sync::Semaphore>,
    rows: RecordBatch,
) -> tokio::task::JoinHandle<std::result::Result<Vec<u128>, String>> {
    let (hasher, limit) = (hasher.clone(), limit.clone());
    tokio::spawn(async move {
        let _permit = limit.acquire_owned().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || hasher.hash_rows(&rows)).await.map_err(|e| e.to_string())?
    })
}

/// For each key, where its last line (highest line number) is.
#[derive(Default)]
struct LatestByKey {
    hasher: hashbrown::DefaultHashBuilder,
    table: HashTable<Latest>,
}

/// The row currently kept for a key; the key's hash is kept so that growing
/// the table never has to look the key up again.
struct Latest {
    hash: u64,
    batch: u32,
    row: u32,
    line: u64,
}

impl LatestByKey {
    fn offer(&mut self, kept: &mut [KeptBatch], batch: usize, row: usize, line: u64) {
        let id = kept[batch].ids.value(row);
        let hash = self.hasher.hash_one(id);
        let found =
            self.table.find_mut(hash, |e| e.hash == hash && kept[e.batch as usize].ids.value(e.row as usize) == id);
        match found {
            Some(entry) if entry.line < line => {
                kept[entry.batch as usize].keep[entry.row as usize] = false;
                (entry.batch, entry.row, entry.line) = (batch as u32, row as u32, line);
            }
            Some(_) => kept[batch].keep[row] = false,
            None => {
                self.table.insert_unique(hash, Latest { hash, batch: batch as u32, row: row as u32, line }, |e| e.hash);
            }
        }
    }
}
