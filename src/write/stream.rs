//! A new date's rows written as they are validated: several Parquet writers
//! at once (one per core, up to four), each closing its file at
//! [`TARGET_FILE_BYTES`], so a first load never holds the day in memory and
//! uses every core. Nothing is committed here: the files become the table's
//! only with the load's commit (a failed load leaves them unreferenced, for
//! `maintain --vacuum` to remove).
//!
//! A row a later line supersedes (the same key further down the export) may
//! already be in a file when that line comes: each file remembers which
//! batches it holds, and the few files holding superseded rows are written
//! again without them before the commit.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, Date32Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use deltalake::kernel::Add;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::writer_properties;
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;
use crate::validate::{without_rows, ValidBatch};

/// The size a data file is closed at: readers (Spark's 128 MiB input
/// splits, DataFusion's row groups) read files of this size in parallel,
/// and a day of a few million rows is a handful of files, not thousands.
pub const TARGET_FILE_BYTES: usize = 128 << 20;

/// Parquet files a load writes at once (each on its own core).
pub fn parallel_writers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// A data file written, and the batches it holds, in order: (seq, rows).
#[derive(Debug, Clone)]
struct WrittenFile {
    add: Add,
    batches: Vec<(u32, usize)>,
}

/// The writers of a new date's files.
pub struct NewFiles {
    writers: Vec<(mpsc::Sender<ValidBatch>, JoinHandle<Result<Vec<WrittenFile>>>)>,
    rows_sent: Vec<u64>,
    order: Arc<Vec<usize>>,
}

impl NewFiles {
    /// Writers into `table`, whose columns the batches are put in the order of.
    pub fn start(table: &DeltaTable, def: &TableDefinition, location: &Location) -> Result<NewFiles> {
        let order = Arc::new(table_order(table, location, &def.arrow_schema())?);
        let writers = (0..parallel_writers())
            .map(|_| {
                let (tx, rx) = mpsc::channel::<ValidBatch>(1);
                let writer = RecordBatchWriter::for_table(table)
                    .map(|w| w.with_writer_properties(writer_properties(def)))
                    .map_err(|e| Error::delta(Stage::Write, location, e));
                let (order, location) = (order.clone(), location.clone());
                (tx, tokio::spawn(async move { write_files(writer?, rx, &order, &location).await }))
            })
            .collect::<Vec<_>>();
        let rows_sent = vec![0; writers.len()];
        Ok(NewFiles { writers, rows_sent, order })
    }

    /// Hands a batch to the writer with the fewest rows so far.
    pub async fn write(&mut self, batch: ValidBatch) -> Result<()> {
        let (lightest, _) = self.rows_sent.iter().enumerate().min_by_key(|(_, rows)| **rows).expect("a writer");
        self.rows_sent[lightest] += batch.rows.num_rows() as u64;
        if self.writers[lightest].0.send(batch).await.is_err() {
            // The writer stopped on an error: `finish` returns it.
            self.rows_sent[lightest] = u64::MAX;
        }
        Ok(())
    }

    /// Closes every file; the ones holding a superseded row are written
    /// again without them. Returns the files to commit.
    pub async fn finish(
        self,
        table: &DeltaTable,
        def: &TableDefinition,
        location: &Location,
        date: chrono::NaiveDate,
        superseded: &[(u32, u32)],
    ) -> Result<Vec<Add>> {
        let mut files = Vec::new();
        for (tx, task) in self.writers {
            drop(tx);
            files.extend(task.await.map_err(|e| Error::internal(Stage::Write, location, e))??);
        }
        let mut adds = Vec::with_capacity(files.len());
        for file in files {
            let touched = file.batches.iter().any(|(seq, _)| superseded.binary_search_by_key(seq, |(s, _)| *s).is_ok());
            if touched {
                adds.push(rewrite_without(table, def, location, date, &self.order, file, superseded).await?);
            } else {
                adds.push(file.add);
            }
        }
        Ok(adds)
    }
}

/// One writer: batches in, a file closed whenever it reaches the target size.
async fn write_files(
    mut writer: RecordBatchWriter,
    mut batches: mpsc::Receiver<ValidBatch>,
    order: &[usize],
    location: &Location,
) -> Result<Vec<WrittenFile>> {
    let delta_error = |e| Error::delta(Stage::Write, location, e);
    let mut files = Vec::new();
    let mut in_file: Vec<(u32, usize)> = Vec::new();
    while let Some(batch) = batches.recv().await {
        let rows = batch.rows.num_rows();
        if rows == 0 {
            continue;
        }
        let ordered = batch.rows.project(order).map_err(|e| Error::internal(Stage::Write, location, e))?;
        writer.write(ordered).await.map_err(delta_error)?;
        in_file.push((batch.seq, rows));
        if writer.buffer_len() >= TARGET_FILE_BYTES {
            close(&mut writer, &mut in_file, &mut files, location).await?;
        }
    }
    if !in_file.is_empty() {
        close(&mut writer, &mut in_file, &mut files, location).await?;
    }
    Ok(files)
}

async fn close(
    writer: &mut RecordBatchWriter,
    in_file: &mut Vec<(u32, usize)>,
    files: &mut Vec<WrittenFile>,
    location: &Location,
) -> Result<()> {
    let adds = writer.flush().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    let batches = std::mem::take(in_file);
    match <[Add; 1]>::try_from(adds) {
        Ok([add]) => files.push(WrittenFile { add, batches }),
        Err(adds) => {
            return Err(Error::internal(
                Stage::Write,
                location,
                format!("one date's rows became {} files at once", adds.len()),
            ))
        }
    }
    Ok(())
}

/// The positions, in the definition's row schema, of the table's columns in
/// the table's order (a column added to a table comes last, wherever the
/// definition declares it).
fn table_order(table: &DeltaTable, location: &Location, schema: &SchemaRef) -> Result<Vec<usize>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    snapshot
        .schema()
        .fields()
        .map(|f| {
            schema.index_of(f.name()).map_err(|_| {
                Error::internal(
                    Stage::Write,
                    location,
                    format!("the table's column {} is not the definition's", f.name()),
                )
            })
        })
        .collect()
}

/// A written file again, without its superseded rows.
async fn rewrite_without(
    table: &DeltaTable,
    def: &TableDefinition,
    location: &Location,
    date: chrono::NaiveDate,
    order: &[usize],
    file: WrittenFile,
    superseded: &[(u32, u32)],
) -> Result<Add> {
    let fail = |e: String| Error::internal(Stage::Write, location, e);
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Write, location, e))?;
    let url = table.table_url().join(&file.add.path).map_err(|e| fail(e.to_string()))?;
    let read = ctx
        .read_parquet(url.to_string(), datafusion::prelude::ParquetReadOptions::default())
        .await
        .map_err(|e| Error::datafusion(Stage::Write, location, e))?
        .collect()
        .await
        .map_err(|e| Error::datafusion(Stage::Write, location, e))?;
    let table_schema = def.arrow_schema().project(order).map_err(|e| fail(e.to_string()))?;
    let rows = datafusion::arrow::compute::concat_batches(
        &read.first().map_or(table_schema.clone().into(), |b| b.schema()),
        &read,
    )
    .map_err(|e| fail(e.to_string()))?;
    // The file holds the batches one after the other; superseded rows go.
    let mut kept = Vec::with_capacity(file.batches.len());
    let mut offset = 0;
    for (seq, count) in &file.batches {
        let slice = rows.slice(offset, *count);
        offset += count;
        kept.push(without_rows(slice, *seq, superseded).map_err(|e| fail(e.to_string()))?);
    }
    // The partition column is in the file's path, not in the file: put it back.
    let mut writer = RecordBatchWriter::for_table(table)
        .map(|w| w.with_writer_properties(writer_properties(def)))
        .map_err(|e| Error::delta(Stage::Write, location, e))?;
    let days = crate::read::days_since_epoch(date);
    for batch in kept.into_iter().filter(|b| b.num_rows() > 0) {
        let columns: Vec<ArrayRef> = table_schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(column) => column.clone(),
                None if f.name() == &def.partition_by => Arc::new(Date32Array::from(vec![days; batch.num_rows()])),
                None => new_null_array(f.data_type(), batch.num_rows()),
            })
            .collect();
        let full = RecordBatch::try_new(Arc::new(table_schema.clone()), columns).map_err(|e| fail(e.to_string()))?;
        writer.write(full).await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    }
    let adds = writer.flush().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    adds.into_iter().next().ok_or_else(|| fail("a rewritten file came out empty".into()))
}
