//! Stage 2, read: streams a day's export into typed Arrow batches by the
//! table definition. It checks the header, counts blank lines (filtered),
//! rejects lines whose fields cannot be told apart (wrong count, broken
//! quoting, bad UTF-8, too long), and reads every other line's values by
//! their column's kind. A value that breaks its rule does not reject the line
//! here: it is recorded in `_reject`, because the transform's filter comes
//! first (PRODUCT.md, "What happens to each input line").

mod columns;
mod group;
pub mod header;
mod jsonl;
use shoplake_parse::records;
pub mod values;

use std::io::Read;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::definition::{Column, Kind, SourceFormat, TableDefinition};
use crate::error::{Error, Result, Stage};
use columns::{BatchBuilder, BATCH_ROWS};
use group::{FieldGroup, GROUP_ROWS};
use header::{HeaderLayout, ValueSource};
use jsonl::{JsonLayout, JsonLine};
use records::{Chunk, Chunker, Fields};

/// Bookkeeping columns carried beside the table's columns until validation.
pub const LINE: &str = "_line";
pub const REJECT: &str = "_reject";
pub const RAW: &str = "_raw";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A line that is refused, kept in the rejects table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reject {
    pub line: u64,
    pub raw: String,
    pub reason: String,
}

/// What the reader knows once it has reached the end of the file.
#[derive(Debug, Default)]
pub struct ReadSummary {
    /// Records after the header (lines, unless quoted fields span lines).
    pub rows_read: u64,
    /// Physical lines after the header.
    pub lines_read: u64,
    /// Empty or whitespace-only lines (filtered).
    pub blank_lines: u64,
    /// JSONL lines of another object type than the table's (`object_type`).
    pub other_type: u64,
    /// Lines refused before their values could be read.
    pub line_rejects: Vec<Reject>,
    /// The export's header as read (a JSONL export's: the pointers read).
    pub header: Vec<String>,
    /// Header columns not loaded (`unknown_columns = "ignore"`).
    pub ignored_columns: Vec<String>,
    /// Declared columns the export lacks, loaded as null (`missing_columns = "null"`).
    pub missing_columns: Vec<String>,
}

pub type BatchReceiver = mpsc::Receiver<RecordBatch>;

/// The columns the reader produces: every column but the derived ones and
/// the fingerprint (a file date the export does not hold included).
pub fn read_columns(def: &TableDefinition) -> impl Iterator<Item = &Column> {
    def.columns.iter().filter(|c| !matches!(c.kind, Kind::Derived | Kind::RowHash))
}

/// The schema of the batches the reader produces: [`read_columns`]
/// (nullable: a bad value is null), then `_line`, `_reject`, `_raw`.
pub fn export_schema(def: &TableDefinition) -> SchemaRef {
    let mut fields: Vec<Field> = read_columns(def).map(|c| Field::new(&c.name, c.data_type.clone(), true)).collect();
    fields.push(Field::new(LINE, DataType::UInt64, false));
    fields.push(Field::new(REJECT, DataType::Utf8, true));
    fields.push(Field::new(RAW, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// How many lines an export holds, estimated from its size and its first
/// chunk before any batch is sent: the stages that index every key size
/// their tables once with it (growing a hash table of millions of entries
/// holds the old table and the new one at once).
#[derive(Debug, Clone, Default)]
pub struct ExpectedLines {
    /// The bytes the reader will read, when known (not for a compressed export).
    total_bytes: Option<u64>,
    lines: Arc<std::sync::OnceLock<u64>>,
}

impl ExpectedLines {
    pub fn of_size(total_bytes: Option<u64>) -> ExpectedLines {
        ExpectedLines { total_bytes, lines: Arc::default() }
    }

    /// The estimate, once the first chunk was read.
    pub fn get(&self) -> Option<u64> {
        self.lines.get().copied()
    }

    /// Estimates from `sample`, the export's first chunk. A line that holds
    /// a key has a separator per column and its end at least, which bounds
    /// the estimate when the sample is not like the rest (blank lines first).
    fn observe(&self, sample: &[u8], columns: usize) {
        let Some(total) = self.total_bytes else { return };
        let lines = memchr::memchr_iter(b'\n', sample).count() as u64;
        if lines > 0 && !sample.is_empty() {
            let estimate = (total as u128 * lines as u128 / sample.len() as u128) as u64;
            let _ = self.lines.set(estimate.min(total / columns.max(1) as u64 + 1));
        }
    }
}

/// Starts reading `input` on blocking threads. Batches arrive on the
/// receiver, not necessarily in file order (`_line` says where each row
/// was); the handle gives the summary (or the error that stopped the read)
/// once the receiver has been drained.
pub fn start(
    def: &'static TableDefinition,
    date: NaiveDate,
    source_uri: String,
    input: Box<dyn Read + Send>,
) -> (BatchReceiver, JoinHandle<Result<ReadSummary>>) {
    start_sized(def, date, source_uri, input, ExpectedLines::default())
}

/// [`start`], estimating the export's lines into `expected` from its first chunk.
pub fn start_sized(
    def: &'static TableDefinition,
    date: NaiveDate,
    source_uri: String,
    input: Box<dyn Read + Send>,
    expected: ExpectedLines,
) -> (BatchReceiver, JoinHandle<Result<ReadSummary>>) {
    let (tx, rx) = mpsc::channel(2);
    let handle = tokio::task::spawn_blocking(move || read_export(def, date, &source_uri, input, &tx, &expected));
    (rx, handle)
}

/// Bytes per chunk handed to a parser thread.
const CHUNK_BYTES: usize = 8 << 20;

fn read_export(
    def: &'static TableDefinition,
    date: NaiveDate,
    source_uri: &str,
    input: Box<dyn Read + Send>,
    tx: &mpsc::Sender<RecordBatch>,
    expected: &ExpectedLines,
) -> Result<ReadSummary> {
    let io_error = |e: std::io::Error| {
        // A GET of the export that failed says what went wrong itself.
        let e = match crate::source::carried_error(e) {
            Ok(error) => return error,
            Err(e) => e,
        };
        // Corrupt compressed data is a bad file; anything else is the store.
        if matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput) {
            Error::rejected(Stage::Read, source_uri, format!("the file cannot be read: {e}"))
        } else {
            Error::unavailable(Stage::Read, source_uri, format!("reading failed: {e}"))
        }
    };
    let mut chunker = Chunker::framed(input, CHUNK_BYTES, records::MAX_LINE_BYTES, def.framing);
    let empty = || Error::rejected(Stage::Read, source_uri, "the file is empty: no header line");
    let mut first = match (chunker.next_chunk().map_err(io_error)?, def.format) {
        (Some(chunk), _) => chunk,
        // No object at all: a JSONL export of a day without any.
        (None, SourceFormat::Jsonl) => {
            return Ok(ReadSummary { header: JsonLayout::of(def).pointers(), ..ReadSummary::default() })
        }
        (None, SourceFormat::Csv) => return Err(empty()),
    };
    expected.observe(&first.bytes, def.export_columns().count());
    let (shape, header_report) = match def.format {
        SourceFormat::Csv => {
            let mut records = first.records();
            let header = records.next().ok_or_else(empty)?;
            let layout = read_header(def, source_uri, header.bytes)?;
            let report = (layout.0, layout.1.ignored.clone(), layout.1.missing.clone());
            (first.start, first.first_line) = records.position();
            (Shape::Csv(layout.1), report)
        }
        SourceFormat::Jsonl => {
            let layout = JsonLayout::of(def);
            let report = (layout.pointers(), Vec::new(), Vec::new());
            (Shape::Jsonl(layout), report)
        }
    };

    let keep_raw = def.columns.iter().any(|c| c.fill_down && !c.nullable);
    let parser =
        ChunkParser { def, keep_raw, shape, date, file_date: values::FileDate::new(date), schema: export_schema(def) };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    // Chunks go to parser threads; each sends its batches on `tx` itself.
    // The workers share the only handle on the queue's receiving end: when
    // they have all stopped (the consumer went away, or a worker failed), the
    // queue closes and the loop below stops reading instead of blocking on
    // a queue nobody empties.
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Chunk>(threads);
    let chunk_rx = std::sync::Arc::new(std::sync::Mutex::new(chunk_rx));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let queue = chunk_rx.clone();
                let parser = &parser;
                scope.spawn(move || {
                    let mut summary = ReadSummary::default();
                    loop {
                        let next = queue.lock().expect("chunk queue").recv();
                        let Ok(chunk) = next else { return Ok(summary) };
                        if !parser.parse(&chunk, &mut summary, tx)? {
                            return Ok(summary);
                        }
                    }
                })
            })
            .collect();
        drop(chunk_rx);
        let mut chunk = Some(first);
        let mut failure = None;
        while let Some(next) = chunk.take() {
            if chunk_tx.send(next).is_err() {
                break;
            }
            match chunker.next_chunk() {
                Ok(following) => chunk = following,
                Err(e) => failure = Some(io_error(e)),
            }
        }
        drop(chunk_tx);
        let mut summary = ReadSummary::default();
        let mut worker_error = None;
        for worker in workers {
            match worker.join().expect("a parser thread panicked") {
                Ok(part) => {
                    summary.rows_read += part.rows_read;
                    summary.lines_read += part.lines_read;
                    summary.blank_lines += part.blank_lines;
                    summary.other_type += part.other_type;
                    summary.line_rejects.extend(part.line_rejects);
                }
                Err(error) => worker_error = worker_error.or(Some(error)),
            }
        }
        (summary.header, summary.ignored_columns, summary.missing_columns) = header_report;
        match failure.or(worker_error) {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    })
}

/// A CSV export's header line: its names as read, and where each column's
/// value is in a line.
fn read_header(def: &TableDefinition, source_uri: &str, line: &[u8]) -> Result<(Vec<String>, HeaderLayout)> {
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    let mut fields = Fields::default();
    fields.split(line).map_err(|e| Error::rejected(Stage::Read, source_uri, format!("header line: {e}")))?;
    let names = (0..fields.len())
        .map(|i| std::str::from_utf8(fields.get(line, i)).map(|s| s.trim().to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::rejected(Stage::Read, source_uri, "header line is not valid UTF-8"))?;
    let layout =
        header::match_definition(def, &names).map_err(|message| Error::rejected(Stage::Read, source_uri, message))?;
    if !layout.ignored.is_empty() {
        tracing::warn!(source = source_uri, columns = %layout.ignored.join(", "), "the export has columns the definition does not declare: not loaded (unknown_columns = \"ignore\")");
    }
    if !layout.missing.is_empty() {
        tracing::warn!(source = source_uri, columns = %layout.missing.join(", "), "the export lacks declared columns: loaded as null (missing_columns = \"null\")");
    }
    Ok((names, layout))
}

/// How a record's values are found: by the header's positions, or by JSON pointers.
enum Shape {
    Csv(HeaderLayout),
    Jsonl(JsonLayout),
}

/// Turns chunks of records into batches of the export schema.
struct ChunkParser {
    def: &'static TableDefinition,
    /// Every row's raw text, not only a rejected one's (a required `fill_down` column).
    keep_raw: bool,
    shape: Shape,
    date: NaiveDate,
    file_date: values::FileDate,
    schema: SchemaRef,
}

impl ChunkParser {
    /// Parses one chunk, sending full batches on `tx`. `Ok(false)` when the
    /// consumer has stopped (it failed; its error is the one to report).
    ///
    /// A CSV record's fields are gathered into a [`FieldGroup`], whose
    /// values are parsed column by column; a JSONL line's values are parsed
    /// as the line is.
    fn parse(&self, chunk: &Chunk, summary: &mut ReadSummary, tx: &mpsc::Sender<RecordBatch>) -> Result<bool> {
        let mut batch = BatchBuilder::new(self.def, self.schema.clone());
        let mut fields = Fields::default();
        let mut reasons: Vec<String> = Vec::new();
        let mut group = FieldGroup::new(
            &chunk.bytes,
            match &self.shape {
                Shape::Csv(layout) => &layout.sources,
                Shape::Jsonl(_) => &[],
            },
        );
        // A CSV chunk's UTF-8 is checked once for the whole chunk (a record
        // is cut from it at line ends, so it is valid too); line by line only
        // when it is not. A JSONL line is checked as it is parsed.
        let all_utf8 = matches!(self.shape, Shape::Csv(_)) && std::str::from_utf8(&chunk.bytes[chunk.start..]).is_ok();
        for record in chunk.records() {
            summary.rows_read += 1;
            summary.lines_read += u64::from(record.lines);
            let line_reject = |reason: String| Reject {
                line: record.line,
                raw: String::from_utf8_lossy(record.bytes).into_owned(),
                reason,
            };
            if record.cut {
                summary.line_rejects.push(line_reject(format!(
                    "the line is longer than {} bytes (only its start is kept)",
                    records::MAX_LINE_BYTES
                )));
                continue;
            }
            if record.bytes.iter().all(u8::is_ascii_whitespace) {
                summary.blank_lines += 1;
                continue;
            }
            match &self.shape {
                Shape::Csv(layout) => match split_csv(layout, &mut fields, record.bytes, all_utf8) {
                    Ok(text) => {
                        group.push(record.line, text, &fields);
                        // A group never takes a batch past its size.
                        if group.rows() < GROUP_ROWS.min(BATCH_ROWS - batch.rows()) {
                            continue;
                        }
                        self.add_group(layout, &mut group, &mut batch);
                    }
                    Err(reason) => {
                        summary.line_rejects.push(line_reject(reason));
                        continue;
                    }
                },
                Shape::Jsonl(layout) => {
                    reasons.clear();
                    match self.json_values(layout, record.bytes, &mut batch, &mut reasons) {
                        Ok(true) => self.add_row(&mut batch, record.line, record.bytes, &reasons),
                        Ok(false) => {
                            summary.other_type += 1;
                            continue;
                        }
                        Err(reason) => {
                            summary.line_rejects.push(line_reject(reason));
                            continue;
                        }
                    }
                }
            }
            if batch.rows() >= BATCH_ROWS && tx.blocking_send(batch.finish()?).is_err() {
                return Ok(false);
            }
        }
        // Only CSV records are grouped.
        if let Shape::Csv(layout) = &self.shape {
            if group.rows() > 0 {
                self.add_group(layout, &mut group, &mut batch);
            }
        }
        if batch.rows() > 0 && tx.blocking_send(batch.finish()?).is_err() {
            return Ok(false);
        }
        Ok(true)
    }

    /// Appends the group's values to `batch`, column by column (a value
    /// breaking its rule adds its reason to its row), then each row's
    /// bookkeeping; empties the group.
    fn add_group(&self, layout: &HeaderLayout, group: &mut FieldGroup, batch: &mut BatchBuilder) {
        let rows = group.rows();
        let mut broken: Vec<(usize, String)> = Vec::new();
        for ((column, builder), source) in batch.columns.iter_mut().enumerate().zip(&layout.sources) {
            let name = builder.name;
            match (source, group.texts(column)) {
                (_, Some(texts)) => builder.append_texts(texts, &self.file_date, |row, reason| {
                    broken.push((row, format!("{name}: {reason}")));
                }),
                (ValueSource::FileDate, None) => (0..rows).for_each(|_| builder.append_date(self.date)),
                (_, None) => (0..rows).for_each(|_| builder.append_null()),
            }
        }
        // Stable: a row's reasons stay in the order of its columns.
        broken.sort_by_key(|(row, _)| *row);
        let mut broken = broken.into_iter().peekable();
        let mut reasons = Vec::new();
        for row in 0..rows {
            reasons.clear();
            while let Some((_, reason)) = broken.next_if(|(broken_row, _)| *broken_row == row) {
                reasons.push(reason);
            }
            self.add_row(batch, group.line(row), group.record(row), &reasons);
        }
        group.clear();
    }

    /// A row's bookkeeping, once its values are appended: its line, why its
    /// values break their rules (none when they do not), and its raw text
    /// when it may be rejected.
    fn add_row(&self, batch: &mut BatchBuilder, line: u64, raw: &[u8], reasons: &[String]) {
        batch.lines.append_value(line);
        if reasons.is_empty() {
            batch.rejects.append_null();
            // A row the fill of its group may still reject keeps its text (`crate::transform`).
            match self.keep_raw {
                true => batch.raws.append_value(String::from_utf8_lossy(raw)),
                false => batch.raws.append_null(),
            }
        } else {
            batch.rejects.append_value(reasons.join("; "));
            batch.raws.append_value(String::from_utf8_lossy(raw));
        }
    }

    /// Appends a JSONL line's values to `batch`; `Ok(false)` for an object
    /// of another type (nothing appended), `Err` for a line that is not one.
    fn json_values(
        &self,
        layout: &JsonLayout,
        bytes: &[u8],
        batch: &mut BatchBuilder,
        reasons: &mut Vec<String>,
    ) -> std::result::Result<bool, String> {
        let found = match layout.read(bytes)? {
            JsonLine::OtherType => return Ok(false),
            JsonLine::Object(found) => found,
        };
        for (i, builder) in batch.columns.iter_mut().enumerate() {
            match layout.text(&found, i) {
                Some(text) => {
                    if let Err(reason) = builder.append(&text, &self.file_date) {
                        reasons.push(format!("{}: {reason}", builder.name));
                    }
                }
                None => builder.append_date(self.date),
            }
        }
        Ok(true)
    }
}

/// A CSV record's fields, into `fields`, and the record as text; why not
/// when its fields cannot be told apart or it is not UTF-8 (`known_utf8`:
/// its chunk was checked whole).
fn split_csv<'r>(
    layout: &HeaderLayout,
    fields: &mut Fields,
    bytes: &'r [u8],
    known_utf8: bool,
) -> std::result::Result<&'r str, String> {
    fields.split(bytes)?;
    if fields.len() != layout.field_count {
        return Err(format!("expected {} fields, found {}", layout.field_count, fields.len()));
    }
    if known_utf8 {
        // SAFETY: the whole chunk is valid UTF-8 (checked by the caller), and
        // records are cut from it at ASCII line ends.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

#[cfg(test)]
mod tests;
