//! Stage 2, read: streams a day's export into typed Arrow batches by the
//! table definition. It checks the header, counts blank lines (filtered),
//! rejects lines whose fields cannot be told apart (wrong count, broken
//! quoting, bad UTF-8, too long), and reads every other line's values by
//! their column's kind. A value that breaks its rule does not reject the line
//! here: it is recorded in `_reject`, because the transform's filter comes
//! first (PRODUCT.md, "What happens to each input line").

mod columns;
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
    fn parse(&self, chunk: &Chunk, summary: &mut ReadSummary, tx: &mpsc::Sender<RecordBatch>) -> Result<bool> {
        let mut batch = BatchBuilder::new(self.def, self.schema.clone());
        let mut fields = Fields::default();
        let mut reasons: Vec<String> = Vec::new();
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
            reasons.clear();
            let read = match &self.shape {
                Shape::Csv(layout) => {
                    self.csv_values(layout, &mut fields, record.bytes, all_utf8, &mut batch, &mut reasons)
                }
                Shape::Jsonl(layout) => self.json_values(layout, record.bytes, &mut batch, &mut reasons),
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    summary.other_type += 1;
                    continue;
                }
                Err(reason) => {
                    summary.line_rejects.push(line_reject(reason));
                    continue;
                }
            }
            batch.lines.append_value(record.line);
            if reasons.is_empty() {
                batch.rejects.append_null();
                // A row the fill of its group may still reject keeps its text (`crate::transform`).
                match self.keep_raw {
                    true => batch.raws.append_value(String::from_utf8_lossy(record.bytes)),
                    false => batch.raws.append_null(),
                }
            } else {
                batch.rejects.append_value(reasons.join("; "));
                batch.raws.append_value(String::from_utf8_lossy(record.bytes));
            }
            if batch.rows() >= BATCH_ROWS && tx.blocking_send(batch.finish()?).is_err() {
                return Ok(false);
            }
        }
        if batch.rows() > 0 && tx.blocking_send(batch.finish()?).is_err() {
            return Ok(false);
        }
        Ok(true)
    }

    /// Appends a CSV record's values to `batch` (a value breaking its rule
    /// adds its reason); `Err` when its fields cannot be told apart, and
    /// then nothing is appended.
    fn csv_values(
        &self,
        layout: &HeaderLayout,
        fields: &mut Fields,
        bytes: &[u8],
        known_utf8: bool,
        batch: &mut BatchBuilder,
        reasons: &mut Vec<String>,
    ) -> std::result::Result<bool, String> {
        fields.split(bytes)?;
        if fields.len() != layout.field_count {
            return Err(format!("expected {} fields, found {}", layout.field_count, fields.len()));
        }
        let utf8 = if known_utf8 { Ok(()) } else { std::str::from_utf8(bytes).map(drop) };
        if let Err(e) = utf8 {
            return Err(format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1));
        }
        for (builder, source) in batch.columns.iter_mut().zip(&layout.sources) {
            match *source {
                ValueSource::Field(position) => {
                    let field = fields.get(bytes, position);
                    // SAFETY: the whole record is valid UTF-8 (checked above, or with its
                    // whole chunk, which records are cut from at ASCII line ends), and a
                    // field is a slice of it cut at ASCII commas and quotes (or such a
                    // slice with ASCII quotes removed), so it is valid UTF-8 too.
                    let text = unsafe { std::str::from_utf8_unchecked(field) };
                    if let Err(reason) = builder.append(text, &self.file_date) {
                        reasons.push(format!("{}: {reason}", builder.name));
                    }
                }
                ValueSource::FileDate => builder.append_date(self.date),
                ValueSource::Missing => builder.append_null(),
            }
        }
        Ok(true)
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

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};

    fn def() -> &'static TableDefinition {
        crate::catalog::built_in("shopify_configuration")
    }

    const GOOD: &str = "a1,shop.myshopify.com,APP,True,False,3,\"[0, 4]\",true,false,1,0,2.0,True,False,True,False,True,False,shopify_,False,app_store,2019-04-01";

    fn header() -> String {
        def().export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2019, 4, 1).unwrap()
    }

    #[tokio::test]
    async fn a_consumer_that_stops_early_does_not_hang_the_reader() {
        // Far more chunks than the queues between the reading thread and the parsers hold.
        let mut input = header();
        input.push('\n');
        for i in 0..400_000 {
            input.push_str(&GOOD.replacen("a1,", &format!("s{i},"), 1));
            input.push('\n');
        }
        let (mut rx, handle) =
            start(def(), day(), "big.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
        assert!(rx.recv().await.is_some());
        drop(rx); // A later stage failed.
        let finished = tokio::time::timeout(std::time::Duration::from_secs(60), handle).await;
        assert!(finished.is_ok(), "the reader is still blocked a minute after its consumer went away");
    }

    #[tokio::test]
    async fn the_lines_are_estimated_from_the_first_chunk_before_a_batch_is_sent() {
        let export = |lines: usize, width: usize| {
            let mut input = header();
            input.push('\n');
            for i in 0..lines {
                input.push_str(&GOOD.replacen("a1,", &format!("s{i:0width$},"), 1));
                input.push('\n');
            }
            input.into_bytes()
        };
        // Smaller than a chunk: the count is exact (the header is a line).
        let small = export(1_000, 6);
        let expected = ExpectedLines::of_size(Some(small.len() as u64));
        let (mut rx, handle) =
            start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(small)), expected.clone());
        assert!(rx.recv().await.is_some());
        assert_eq!(expected.get(), Some(1_001), "known when the first batch comes");
        while rx.recv().await.is_some() {}
        handle.await.unwrap().unwrap();
        // Several chunks (lines of one width, the header's aside): within 0.1%.
        let big = export(200_000, 6);
        let expected = ExpectedLines::of_size(Some(big.len() as u64));
        let (mut rx, handle) =
            start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(big)), expected.clone());
        while rx.recv().await.is_some() {}
        handle.await.unwrap().unwrap();
        let estimate = expected.get().unwrap();
        assert!(estimate.abs_diff(200_001) <= 200, "{estimate}");
        // Blank lines first: the estimate stays within what lines of every
        // column could number (a byte a column at least).
        let columns = def().export_columns().count();
        let rows = export(10, 2);
        let header_end = rows.iter().position(|b| *b == b'\n').unwrap() + 1;
        let mut blank_first = rows[..header_end].to_vec();
        blank_first.extend(vec![b'\n'; 1 << 20]);
        blank_first.extend(&rows[header_end..]);
        let expected = ExpectedLines::of_size(Some(blank_first.len() as u64));
        let (mut rx, handle) = start_sized(
            def(),
            day(),
            "t.csv".into(),
            Box::new(std::io::Cursor::new(blank_first.clone())),
            expected.clone(),
        );
        while rx.recv().await.is_some() {}
        handle.await.unwrap().unwrap();
        assert_eq!(expected.get(), Some(blank_first.len() as u64 / columns as u64 + 1));
        // No size (a compressed export): no estimate.
        let no_size = ExpectedLines::of_size(None);
        let (mut rx, handle) =
            start_sized(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(export(10, 2))), no_size.clone());
        while rx.recv().await.is_some() {}
        handle.await.unwrap().unwrap();
        assert_eq!(no_size.get(), None);
    }

    #[tokio::test]
    async fn blank_lines_are_counted_and_an_open_quote_breaks_only_its_line() {
        let input = format!(
            "{h}\n{GOOD}\n\n  \t\n{open}\n{next}\n\r\n",
            h = header(),
            open = GOOD.replacen("a1,", "a2,", 1).replacen("\"[0, 4]\"", "\"[0, 4", 1),
            next = GOOD.replacen("a1,", "a3,", 1)
        );
        let (mut rx, handle) = start(def(), day(), "t.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
        let mut rows = 0;
        while let Some(batch) = rx.recv().await {
            rows += batch.num_rows();
        }
        let summary = handle.await.unwrap().unwrap();
        assert_eq!(summary.rows_read, 6, "every line after the header");
        assert_eq!(summary.blank_lines, 3);
        assert_eq!(summary.line_rejects.len(), 1);
        assert_eq!(summary.line_rejects[0].line, 5);
        assert!(summary.line_rejects[0].reason.contains("unterminated quote"), "{:?}", summary.line_rejects);
        assert_eq!(rows, 2, "the lines before and after the open quote are read");
    }

    #[tokio::test]
    async fn reads_values_and_keeps_bad_ones_for_later() {
        let header = def().export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
        let good = "a1,shop.myshopify.com,APP,True,False,3,\"[0, 4]\",true,false,1,0,2.0,True,False,True,False,True,False,shopify_,False,app_store,2019-04-01";
        let bad_flag = good.replacen("a1,", "a2,", 1).replacen("True,False,3", "Maybe,False,3", 1);
        let short = "a3,too,short";
        let input = format!("\u{feff}{header}\r\n{good}\r\n{bad_flag}\r\n{short}\r\n");
        let day = NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        let (mut rx, handle) = start(def(), day, "test.csv".into(), Box::new(std::io::Cursor::new(input.into_bytes())));
        let batch = rx.recv().await.unwrap();
        assert!(rx.recv().await.is_none());
        let summary = handle.await.unwrap().unwrap();
        assert_eq!(summary.rows_read, 3);
        assert_eq!(summary.line_rejects.len(), 1);
        assert_eq!(summary.line_rejects[0].line, 4);
        assert_eq!(summary.line_rejects[0].reason, "expected 22 fields, found 3");
        assert_eq!(batch.num_rows(), 2);
        let reject = batch.column_by_name(REJECT).unwrap().as_string::<i32>();
        assert!(reject.is_null(0));
        assert_eq!(reject.value(1), "autocomplete_enabled: 'Maybe' is not a boolean");
        let raw = batch.column_by_name(RAW).unwrap().as_string::<i32>();
        assert!(raw.value(1).starts_with("a2,shop"));
        let lists = batch.column_by_name("nbrs_pinned_items").unwrap().as_list::<i32>();
        assert_eq!(lists.value(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().values(), &[0, 4]);
        let counts =
            batch.column_by_name("nbr_metafields").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(counts.value(0), 2);
    }
}
