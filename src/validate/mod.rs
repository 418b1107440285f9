//! Stage 4, validate: takes the transform's rows as they come, sets aside
//! the ones whose values broke a rule (rejects), checks what the definition
//! promises (non-nullable columns have values), fingerprints each row, and
//! keeps, of rows sharing a key, the last one in file order, without
//! holding the day's rows: only a 128-bit hash of each key, its line and
//! where its row went (`latest.rs`: on disk past its share of
//! `--memory-limit`).
//!
//! Rows flow on as soon as a batch is done. A later line can supersede a
//! row already handed on (the same key further down the file): such rows
//! are named in the outcome, and the write stage leaves them out (they are
//! rare: an export repeats a key only when it was changed while exported).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, is_null};
use datafusion::arrow::datatypes::{Schema, SchemaRef, UInt64Type};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::definition::{Kind, TableDefinition};
use crate::erasure::Suppression;
use crate::error::{Error, Result, Stage};
use crate::features::rules::RowRules;
use crate::read::{ExpectedLines, Reject, LINE, RAW, REJECT};
use crate::row_hash::{self, ValueHasher};
use latest::LatestByKey;

mod latest;

/// Valid rows of the table's schema (fingerprint included), numbered so a
/// later stage can name a row: (`seq`, row within the batch).
#[derive(Debug)]
pub struct ValidBatch {
    pub seq: u32,
    pub rows: RecordBatch,
}

/// What validation found once the stream has ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lines whose values broke a rule.
    pub value_rejects: Vec<Reject>,
    /// Rows the transform passed on (the rest were filtered).
    pub rows_transformed: u64,
    /// Rows dropped because a later line has the same key.
    pub rows_duplicate: u64,
    /// Rows kept: the day's content.
    pub rows_valid: u64,
    /// Rows holding an erased value, kept out ([`crate::erasure`]).
    pub rows_suppressed: u64,
    /// Rows that broke one of the table's own rules (CHECK constraints and
    /// the like), by rule: the load is refused if any did.
    pub broken: std::collections::BTreeMap<String, crate::features::rules::Broken>,
    /// Rows handed on and then superseded by a later line with their key:
    /// (`seq`, row). The day's content leaves them out.
    pub superseded: Vec<(u32, u32)>,
}

/// Batches of valid rows in flight between validation and the next stage.
const IN_FLIGHT: usize = 2;

/// Starts validating `transformed`; valid rows arrive on the receiver (in
/// no particular order), the outcome once the receiver is drained.
/// What a load keeps out (erased values) and never writes as read (PII).
pub struct Privacy {
    pub suppression: Option<Arc<Suppression>>,
    pub pii: Option<Arc<crate::pii::PiiRules>>,
}

pub fn start(
    def: &'static TableDefinition,
    hasher: &ValueHasher,
    rules: RowRules,
    privacy: Privacy,
    transformed: SendableRecordBatchStream,
    source_uri: String,
    expected: ExpectedLines,
) -> (mpsc::Receiver<ValidBatch>, JoinHandle<Result<Outcome>>) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let hasher = Arc::new(hasher.clone());
    let handle =
        tokio::spawn(async move { run(def, hasher, rules, privacy, transformed, &source_uri, tx, expected).await });
    (rx, handle)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    def: &'static TableDefinition,
    hasher: Arc<ValueHasher>,
    rules: RowRules,
    privacy: Privacy,
    mut transformed: SendableRecordBatchStream,
    source_uri: &str,
    tx: mpsc::Sender<ValidBatch>,
    expected: ExpectedLines,
) -> Result<Outcome> {
    let table_schema = def.arrow_schema();
    let row_hash = def.row_hash_column();
    let schema = rows_schema(def);
    let row_hash_at = table_schema.index_of(row_hash).expect("own column");
    let key = def.day_key();
    let mut outcome = Outcome::default();
    let mut latest = LatestByKey::new();
    let spill_error = |e| Error::io(Stage::Validate, source_uri, "spilling the export's key index", e);
    let mut fingerprinting = futures::stream::FuturesUnordered::new();
    let mut seq = 0u32;
    let mut emitted = 0u64;
    let mut dropped = 0u64;

    while let Some(batch) = transformed.next().await {
        let batch = batch.map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
        outcome.rows_transformed += batch.num_rows() as u64;
        check_transform_output(def, &batch)?;
        let accepted = without_value_rejects(&batch, &mut outcome.value_rejects, source_uri)?;
        let accepted = match &privacy.suppression {
            Some(suppression) => without_erased(&accepted, suppression, &mut outcome.rows_suppressed, source_uri)?,
            None => accepted,
        };
        check_not_null(def, &accepted, source_uri)?;
        if accepted.num_rows() == 0 {
            continue;
        }
        if seq == 0 {
            // The reader estimated the export's lines before sending a batch.
            latest.reserve(expected.get()).map_err(spill_error)?;
        }
        let keep = latest.keep_latest(&accepted, key, seq, &mut outcome.superseded).map_err(spill_error)?;
        dropped += keep.iter().filter(|k| !**k).count() as u64;
        let rows = handed_on(&accepted, &schema, &keep, source_uri)?;
        // Erased values were matched as read, above; PII is replaced before anything sees the rows.
        let rows = match &privacy.pii {
            Some(pii) => pii.apply(&rows).map_err(|e| Error::internal(Stage::Validate, source_uri, e))?,
            None => rows,
        };
        emitted += rows.num_rows() as u64;
        if !rules.is_empty() {
            // The table's row rules, naming rows by their export lines.
            let lines = accepted.column_by_name(LINE).expect("checked").as_primitive::<UInt64Type>();
            let kept_lines: Vec<u64> =
                keep.iter().enumerate().filter(|(_, k)| **k).map(|(row, _)| lines.value(row)).collect();
            rules.check(&rows, &|row| kept_lines[row], &mut outcome.broken, source_uri)?;
        }

        // Fingerprints on blocking threads, two batches at a time, while the rest is read.
        let (hasher, table_schema) = (hasher.clone(), table_schema.clone());
        let batch_seq = seq;
        fingerprinting.push(tokio::task::spawn_blocking(move || {
            let hashes = hasher.hash_rows(&rows)?;
            let mut columns = rows.columns().to_vec();
            columns.insert(row_hash_at, row_hash::to_array(&hashes));
            let rows = RecordBatch::try_new(table_schema, columns).map_err(|e| e.to_string())?;
            Ok::<_, String>(ValidBatch { seq: batch_seq, rows })
        }));
        seq += 1;
        while fingerprinting.len() >= IN_FLIGHT {
            if !hand_on(&mut fingerprinting, &tx, source_uri).await? {
                return Ok(outcome);
            }
        }
    }
    while !fingerprinting.is_empty() {
        if !hand_on(&mut fingerprinting, &tx, source_uri).await? {
            break;
        }
    }
    latest.finish(&mut outcome.superseded).map_err(spill_error)?;
    outcome.superseded.sort_unstable();
    outcome.rows_duplicate = dropped + outcome.superseded.len() as u64;
    outcome.rows_valid = emitted - outcome.superseded.len() as u64;
    outcome.value_rejects.sort();
    crate::features::rules::verdict(&outcome.broken, source_uri)?;
    Ok(outcome)
}

/// The columns of the valid rows as validation checks them: the table's
/// but the fingerprint, which is added last.
pub fn rows_schema(def: &TableDefinition) -> SchemaRef {
    let row_hash = def.row_hash_column();
    Arc::new(Schema::new(
        def.arrow_schema().fields().iter().filter(|f| f.name() != row_hash).cloned().collect::<Vec<_>>(),
    ))
}

/// The batch without the rows a value rule rejected, which go to `rejects`.
fn without_value_rejects(batch: &RecordBatch, rejects: &mut Vec<Reject>, source_uri: &str) -> Result<RecordBatch> {
    let reasons = batch.column_by_name(REJECT).expect("checked").as_string::<i32>();
    if reasons.null_count() == reasons.len() {
        return Ok(batch.clone());
    }
    let lines = batch.column_by_name(LINE).expect("checked").as_primitive::<UInt64Type>();
    let raws = batch.column_by_name(RAW).expect("checked").as_string::<i32>();
    for row in (0..batch.num_rows()).filter(|&r| reasons.is_valid(r)) {
        rejects.push(Reject {
            line: lines.value(row),
            raw: raws.value(row).to_string(),
            reason: reasons.value(row).to_string(),
        });
    }
    filter_record_batch(batch, &is_null(reasons).expect("is_null never fails"))
        .map_err(|e| Error::internal(Stage::Validate, source_uri, e))
}

/// The batch without the rows holding an erased value, counted.
fn without_erased(
    batch: &RecordBatch,
    suppression: &Suppression,
    suppressed: &mut u64,
    source_uri: &str,
) -> Result<RecordBatch> {
    let mut keep = vec![true; batch.num_rows()];
    for column in suppression.columns() {
        // A column the definition no longer has keeps nothing out.
        let Some(values) = batch.column_by_name(column).and_then(|c| c.as_string_opt::<i32>()) else { continue };
        for (row, kept) in keep.iter_mut().enumerate() {
            if *kept && values.is_valid(row) && suppression.erased(column, values.value(row)) {
                *kept = false;
            }
        }
    }
    let gone = keep.iter().filter(|k| !**k).count() as u64;
    if gone == 0 {
        return Ok(batch.clone());
    }
    *suppressed += gone;
    filter_record_batch(batch, &BooleanArray::from(keep)).map_err(|e| Error::internal(Stage::Validate, source_uri, e))
}

/// The kept rows in the table's columns (the fingerprint aside).
fn handed_on(accepted: &RecordBatch, schema: &SchemaRef, keep: &[bool], source_uri: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> =
        schema.fields().iter().map(|f| accepted.column_by_name(f.name()).expect("checked").clone()).collect();
    let fail = |e| Error::internal(Stage::Validate, source_uri, e);
    let rows = RecordBatch::try_new(schema.clone(), columns).map_err(fail)?;
    if keep.iter().all(|k| *k) {
        return Ok(rows);
    }
    filter_record_batch(&rows, &BooleanArray::from(keep.to_vec())).map_err(fail)
}

type Fingerprinting = futures::stream::FuturesUnordered<JoinHandle<std::result::Result<ValidBatch, String>>>;

/// Hands on the next fingerprinted batch; `false` when the consumer is gone
/// (it failed, and its error is the one to report).
async fn hand_on(pending: &mut Fingerprinting, tx: &mpsc::Sender<ValidBatch>, source_uri: &str) -> Result<bool> {
    let Some(done) = pending.next().await else { return Ok(true) };
    let batch = done
        .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?
        .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?;
    Ok(tx.send(batch).await.is_ok())
}

/// Every valid row in memory, superseded ones left out, as read (no
/// erasures, no PII rules: for tests that want the whole day).
pub async fn collect(
    def: &'static TableDefinition,
    hasher: &ValueHasher,
    transformed: SendableRecordBatchStream,
    source_uri: &str,
) -> Result<(Vec<RecordBatch>, Outcome)> {
    let privacy = Privacy { suppression: None, pii: None };
    let (mut rx, handle) =
        start(def, hasher, RowRules::none(), privacy, transformed, source_uri.to_string(), ExpectedLines::default());
    let mut batches = Vec::new();
    while let Some(batch) = rx.recv().await {
        batches.push(batch);
    }
    let outcome = handle.await.map_err(|e| Error::internal(Stage::Validate, source_uri, e))??;
    let rows = batches
        .into_iter()
        .map(|b| without_rows(b.rows, b.seq, &outcome.superseded))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(Stage::Validate, source_uri, e))?;
    Ok((rows.into_iter().filter(|b| b.num_rows() > 0).collect(), outcome))
}

/// `rows` of batch `seq` without the superseded ones (a sorted list).
pub fn without_rows(
    rows: RecordBatch,
    seq: u32,
    superseded: &[(u32, u32)],
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let from = superseded.partition_point(|(s, _)| *s < seq);
    let gone: Vec<u32> = superseded[from..].iter().take_while(|(s, _)| *s == seq).map(|(_, r)| *r).collect();
    if gone.is_empty() {
        return Ok(rows);
    }
    let keep: BooleanArray = (0..rows.num_rows() as u32).map(|r| Some(gone.binary_search(&r).is_err())).collect();
    filter_record_batch(&rows, &keep)
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
