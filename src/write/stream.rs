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
//! again without them before the commit. When the comparison with the
//! date's rows was made on disk (its key index past its share of
//! `--memory-limit`), the changed rows are taken from the files the same
//! way, rather than held as they went by.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Field, Schema};
use deltalake::datafile::writer::DeltaWriter;
use deltalake::kernel::Add;
use deltalake::DeltaTable;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::files::FileLayout;
use super::merge_source::Pending;
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;
use crate::validate::ValidBatch;

/// The size a data file is closed at: readers (Spark's 128 MiB input
/// splits, DataFusion's row groups) read files of this size in parallel,
/// and a day of a few million rows is a handful of files, not thousands.
pub const TARGET_FILE_BYTES: usize = 128 << 20;
/// Arrow bytes per Parquet byte, to close a file near [`TARGET_FILE_BYTES`]
/// from the size of the rows sent to it (Snappy-compressed Parquet of a
/// day's export measured about a third of its Arrow size).
const ARROW_PER_PARQUET_BYTE: usize = 3;

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

/// One writer: where its batches go, and the task that writes them.
type Writer = (mpsc::Sender<ValidBatch>, JoinHandle<Result<Vec<WrittenFile>>>);

/// A file being written: its writer, the batches in it and their Arrow bytes.
type OpenFile = (DeltaWriter, Vec<(u32, usize)>, usize);

/// Parallel writers of one date's data files.
pub struct NewFiles {
    writers: Vec<Writer>,
    rows_sent: Vec<u64>,
    layout: FileLayout,
}

impl NewFiles {
    /// Writers of `table`'s files, in its schema once `def`'s columns are in it.
    pub fn start(table: &DeltaTable, def: &TableDefinition, location: &Location) -> Result<NewFiles> {
        Ok(NewFiles::with_layout(FileLayout::of(table, def, location)?, location))
    }

    /// Writers of files laid out as `layout` says.
    pub fn with_layout(layout: FileLayout, location: &Location) -> NewFiles {
        let writers = (0..parallel_writers())
            .map(|_| {
                let (tx, rx) = mpsc::channel::<ValidBatch>(1);
                let (layout, location) = (layout.clone(), location.clone());
                (tx, tokio::spawn(async move { write_files(&layout, rx, &location).await }))
            })
            .collect::<Vec<_>>();
        let rows_sent = vec![0; writers.len()];
        NewFiles { writers, rows_sent, layout }
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
    pub async fn finish(self, location: &Location, date: NaiveDate, superseded: &[(u32, u32)]) -> Result<Vec<Add>> {
        Ok(self.finish_fetching(location, date, superseded, None).await?.0)
    }

    /// [`NewFiles::finish`], and the rows `fetch` names taken from the
    /// files as they are read again: the changed rows a comparison on disk
    /// found ([`Pending`]), with their `_op`, in the merge's schema.
    pub async fn finish_fetching(
        self,
        location: &Location,
        date: NaiveDate,
        superseded: &[(u32, u32)],
        fetch: Option<&Pending>,
    ) -> Result<(Vec<Add>, Vec<RecordBatch>)> {
        let mut files = Vec::new();
        let mut failed = None;
        for (tx, task) in self.writers {
            drop(tx);
            match task.await.map_err(|e| Error::internal(Stage::Write, location, e)).and_then(|files| files) {
                Ok(written) => files.extend(written),
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        let mut adds = Vec::with_capacity(files.len());
        let mut fetched = Vec::new();
        let holds = |names: &[(u32, u32)], file: &WrittenFile| {
            file.batches.iter().any(|(seq, _)| names.binary_search_by_key(seq, |(s, _)| *s).is_ok())
        };
        for file in files {
            let touched = holds(superseded, &file);
            let wanted = fetch.filter(|pending| holds(&pending.names, &file));
            if !touched && wanted.is_none() {
                adds.push(file.add);
                continue;
            }
            let again = ReadAgain { layout: &self.layout, location, date, superseded, fetch: wanted };
            let (add, rows) = again.read(file, touched).await?;
            adds.extend(add);
            fetched.extend(rows);
        }
        Ok((adds, fetched))
    }
}

/// The bytes of a batch's own slice of its buffers.
fn arrow_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum()
}

/// One writer: batches in, a file closed whenever it reaches the target size.
async fn write_files(
    layout: &FileLayout,
    mut batches: mpsc::Receiver<ValidBatch>,
    location: &Location,
) -> Result<Vec<WrittenFile>> {
    let mut files = Vec::new();
    let mut open: Option<OpenFile> = None;
    while let Some(batch) = batches.recv().await {
        let rows = batch.rows.num_rows();
        if rows == 0 {
            continue;
        }
        let conformed = layout.to_file(&batch.rows, location)?;
        let (writer, in_file, bytes) = open.get_or_insert_with(|| (layout.data_writer(), Vec::new(), 0));
        layout.write(writer, &conformed, location).await?;
        in_file.push((batch.seq, rows));
        *bytes += arrow_bytes(&conformed);
        if *bytes >= TARGET_FILE_BYTES * ARROW_PER_PARQUET_BYTE {
            let (writer, in_file, _) = open.take().expect("open above");
            files.push(close(writer, in_file, location).await?);
        }
    }
    if let Some((writer, in_file, _)) = open {
        files.push(close(writer, in_file, location).await?);
    }
    Ok(files)
}

async fn close(writer: DeltaWriter, batches: Vec<(u32, usize)>, location: &Location) -> Result<WrittenFile> {
    let adds = writer.close().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    match <[Add; 1]>::try_from(adds) {
        Ok([add]) => Ok(WrittenFile { add, batches }),
        Err(adds) => {
            Err(Error::internal(Stage::Write, location, format!("one date's rows became {} files at once", adds.len())))
        }
    }
}

/// A written file read again, in order: written once more without its
/// superseded rows (if it holds any), and the rows a fetch names taken.
struct ReadAgain<'a> {
    layout: &'a FileLayout,
    location: &'a Location,
    date: NaiveDate,
    superseded: &'a [(u32, u32)],
    fetch: Option<&'a Pending>,
}

impl ReadAgain<'_> {
    /// The file to commit in its place (none, if every row was
    /// superseded), and the fetched rows.
    async fn read(&self, file: WrittenFile, touched: bool) -> Result<(Option<Add>, Vec<RecordBatch>)> {
        let (layout, location) = (self.layout, self.location);
        let fail = |e: String| Error::internal(Stage::Write, location, e);
        // The file holds its batches one after the other: each row's name.
        let mut names = file.batches.iter().flat_map(|(seq, rows)| (0..*rows as u32).map(move |row| (*seq, row)));
        let mut writer = touched.then(|| layout.data_writer());
        let mut written = 0;
        let mut fetched = Vec::new();
        let mut stream = layout.read_back(&file.add, location).await?;
        while let Some(read) = stream.next().await {
            let read = read.map_err(|e| Error::delta(Stage::Write, location, e))?;
            let rows = self.with_date(layout.read_from_file(&read, location)?)?;
            let in_batch: Vec<(u32, u32)> = names.by_ref().take(rows.num_rows()).collect();
            if in_batch.len() != rows.num_rows() {
                return Err(fail(format!("{} holds more rows than were written to it", file.add.path)));
            }
            if let Some(writer) = &mut writer {
                let keep: BooleanArray =
                    in_batch.iter().map(|name| Some(self.superseded.binary_search(name).is_err())).collect();
                let kept = filter_record_batch(&rows, &keep).map_err(|e| fail(e.to_string()))?;
                if kept.num_rows() > 0 {
                    layout.write(writer, &layout.to_file(&kept, location)?, location).await?;
                    written += kept.num_rows();
                }
            }
            if let Some(pending) = self.fetch {
                fetched.extend(pending.take(&rows, &in_batch).map_err(fail)?);
            }
        }
        let Some(writer) = writer else { return Ok((Some(file.add), fetched)) };
        if written == 0 {
            writer.abort().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
            return Ok((None, fetched));
        }
        let adds = writer.close().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
        let add = adds.into_iter().next().ok_or_else(|| fail("a rewritten file came out empty".into()))?;
        Ok((Some(add), fetched))
    }

    /// The partition column is in the file's path, not in the file: put back.
    fn with_date(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let fail = |e: String| Error::internal(Stage::Write, self.location, e);
        let layout = self.layout;
        let days = crate::read::days_since_epoch(self.date);
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
        let partition = layout.schema.field_with_name(&layout.partition_by).map_err(|e| fail(e.to_string()))?;
        fields.push(Arc::new(partition.clone()));
        columns.push(Arc::new(Date32Array::from(vec![days; rows.num_rows()])));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| fail(e.to_string()))
    }
}
