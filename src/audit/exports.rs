//! `shoplake erase --exports` (issue #27, item 5): the raw exports under
//! the source are erased too. Every export of the table (its source
//! pattern, any date, loaded or not) is read record by record, and written
//! back without the records holding the value: a record whose erased
//! column's field is the value (as a load reads it: trimmed, its prefix
//! convention taken off), or any of whose fields is (a line that would be
//! rejected holds it too). Same name, same compression; on S3 the export's
//! older object versions go as well (a versioned bucket would keep them).
//!
//! A rewritten export is a new file: an identical re-run would parse it.
//! So for each rewritten date whose last load the table still describes
//! (nothing else touched the date before the erasure), and whose records
//! went only by the erased column (so a load of the new export gives the
//! table as it is), the erasure records the new export as that load's:
//! the next re-run of the date is a no-op again, with no version and no
//! parse ([`record`], read by `crate::write::provenance`).

use std::io::{BufRead, BufReader, Read, Write};

use chrono::NaiveDate;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::definition::TableDefinition;
use crate::erasure::{json_fields, raw_fields};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

use crate::write::provenance::SOURCE_REWRITES;

/// One export written again without the value.
#[derive(Debug, Clone, Serialize)]
pub struct RewrittenExport {
    pub date: NaiveDate,
    pub export: String,
    pub records_removed: u64,
    /// Every removed record held the value in the erased column.
    #[serde(skip)]
    pub by_column_only: bool,
    /// S3 object versions of the old export deleted.
    pub object_versions_deleted: u64,
}

/// Rewrites every export of `def` under `source` holding `value` (in `column`).
pub async fn erase(
    storage: &Storage,
    source: &Location,
    def: &'static TableDefinition,
    column: &str,
    value: &str,
) -> Result<Vec<RewrittenExport>> {
    let mut rewritten = Vec::new();
    for date in dates(storage, source, def).await? {
        let file = match crate::source::locate(storage, source, def, date).await {
            Ok(file) => file,
            // Both a file and its .gz, say: named by the load of that date, not here.
            Err(error) => {
                tracing::warn!(date = %date, "export not rewritten: {error}");
                continue;
            }
        };
        let (input, _digest) = crate::source::open(storage, &file).await?;
        let (column, value, uri) = (column.to_string(), value.to_string(), file.uri());
        let gzipped = file.gzipped;
        let filtered = tokio::task::spawn_blocking(move || without_value(def, input, &column, &value, gzipped, &uri))
            .await
            .map_err(|e| Error::internal(Stage::Source, file.uri(), e))??;
        let Some((bytes, removed, by_column_only)) = filtered else { continue };
        let (store, path) = storage.object_store(&file.location).await?;
        crate::source::check_unchanged(storage, &file).await?;
        // In parts past 10 MiB (object_store's BufWriter): an S3 put alone stops at 5 GB.
        let mut writer = object_store::buffered::BufWriter::new(store.clone(), path.clone());
        let written = async {
            use tokio::io::AsyncWriteExt;
            writer.write_all(&bytes).await?;
            writer.shutdown().await
        };
        written.await.map_err(|e| Error::io(Stage::Source, &file.location, "writing the export again", e))?;
        let mut export = RewrittenExport {
            date,
            export: file.uri(),
            records_removed: removed,
            by_column_only,
            object_versions_deleted: 0,
        };
        if let Some(versions) = storage.object_versions(&file.location).await? {
            for version in versions.list(path.as_ref()).await? {
                if version.key == path.as_ref() && !version.is_latest {
                    versions.delete(&version).await?;
                    export.object_versions_deleted += 1;
                }
            }
        }
        tracing::info!(export = %export.export, removed, "export written again without the erased value");
        rewritten.push(export);
    }
    Ok(rewritten)
}

/// The dates with an export under `source`, by the definition's pattern.
async fn dates(storage: &Storage, source: &Location, def: &TableDefinition) -> Result<Vec<NaiveDate>> {
    let (before, after) = def.source_pattern.split_once(crate::definition::DATE_PLACEHOLDER).expect("validated");
    let directory = before.rsplit_once('/').map_or("", |(dir, _)| dir);
    let listed = match directory.is_empty() {
        true => source.clone(),
        false => source.join(directory),
    };
    let (store, root) = storage.object_store(source).await?;
    let (_, under) = storage.object_store(&listed).await?;
    let objects: Vec<object_store::ObjectMeta> = match store.list(Some(&under)).try_collect().await {
        Ok(objects) => objects,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(Error::object_store(Stage::Source, &listed, e)),
    };
    let root = format!("{}/", root.as_ref().trim_end_matches('/'));
    let mut dates: Vec<NaiveDate> = objects
        .iter()
        .filter_map(|meta| {
            let relative = meta.location.as_ref().strip_prefix(root.trim_start_matches('/'))?;
            let rest = relative.strip_prefix(before)?;
            let date = shoplake_parse::values::ymd(rest.get(..10)?)?;
            let tail = &rest[10..];
            (tail == after || tail.strip_suffix(".gz") == Some(after)).then_some(date)
        })
        .collect();
    dates.sort();
    dates.dedup();
    Ok(dates)
}

/// The export without the records holding the value, compressed as it
/// was; `None` when no record holds it.
fn without_value(
    def: &TableDefinition,
    input: Box<dyn Read + Send>,
    column: &str,
    value: &str,
    gzipped: bool,
    uri: &str,
) -> Result<Option<(Vec<u8>, u64, bool)>> {
    let io = |e| Error::io(Stage::Source, uri, "reading the export", e);
    let quoted = !matches!(def.framing, shoplake_parse::framing::Framing::Lines);
    let prefix = def.column(column).and_then(|c| c.conventions.strip_prefix.clone());
    let header_text = def.column(column).map(|c| c.header.clone()).unwrap_or_else(|| column.to_string());
    let mut reader = BufReader::new(input);
    let mut kept: Vec<u8> = Vec::new();
    let (mut removed, mut by_column_only) = (0u64, true);
    let jsonl = def.format == crate::definition::SourceFormat::Jsonl;
    // Where the column is in a CSV line, once its header was read (a JSONL export has none).
    let mut at: Option<Option<usize>> = jsonl.then_some(None);
    let mut fields = shoplake_parse::records::Fields::default();
    while let Some(record) = next_record(&mut reader, quoted).map_err(io)? {
        let text = String::from_utf8_lossy(&record);
        let line = text.trim_end_matches(['\n', '\r']);
        let Some(position) = at else {
            // The header: where the erased column is.
            at = Some(match fields.split(line.as_bytes()) {
                Ok(()) => (0..fields.len())
                    .position(|i| String::from_utf8_lossy(fields.get(line.as_bytes(), i)).trim() == header_text),
                Err(_) => None,
            });
            kept.extend_from_slice(&record);
            continue;
        };
        // A JSONL record is parsed once: its erased column by pointer, and every value it holds.
        let object = jsonl.then(|| serde_json::from_str::<Value>(line).ok()).flatten().filter(Value::is_object);
        let in_column = match &object {
            Some(object) => pointer_holds(object, &header_text, prefix.as_deref(), value),
            None => position.is_some_and(|i| {
                fields.split(line.as_bytes()).is_ok() && i < fields.len() && {
                    let field = String::from_utf8_lossy(fields.get(line.as_bytes(), i)).trim().to_string();
                    let read = match &prefix {
                        Some(p) => field.strip_prefix(p.as_str()).unwrap_or(&field).to_string(),
                        None => field,
                    };
                    read == value
                }
            }),
        };
        let held = match &object {
            Some(object) => json_fields(object),
            None => raw_fields(line),
        };
        if in_column || held.iter().any(|field| field == value) {
            removed += 1;
            by_column_only &= in_column;
        } else {
            kept.extend_from_slice(&record);
        }
    }
    if removed == 0 {
        return Ok(None);
    }
    let bytes = match gzipped {
        false => kept,
        true => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&kept).map_err(io)?;
            encoder.finish().map_err(io)?
        }
    };
    Ok(Some((bytes, removed, by_column_only)))
}

/// Whether a JSONL object's value at `pointer`, its prefix stripped, is `value`.
fn pointer_holds(object: &Value, pointer: &str, prefix: Option<&str>, value: &str) -> bool {
    let Some(found) = object.pointer(pointer).and_then(Value::as_str) else { return false };
    prefix.and_then(|p| found.strip_prefix(p)).unwrap_or(found) == value
}

/// The next record with its line end: a line, or (quoted framing) the
/// lines of a record whose quotes are not closed at a line end.
fn next_record(reader: &mut impl BufRead, quoted: bool) -> std::io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let read = reader.read_until(b'\n', &mut record)?;
        if read == 0 {
            return Ok((!record.is_empty()).then_some(record));
        }
        let open = record.iter().filter(|&&b| b == b'"').count() % 2 == 1;
        if !(quoted && open) {
            return Ok(Some(record));
        }
    }
}

/// The commit info recording rewritten exports as the loads of their
/// dates: per date, the last load's info with the new export's identity.
pub fn record(loads: Vec<(NaiveDate, Value, Value)>) -> Value {
    let rewrites: Map<String, Value> = loads
        .into_iter()
        .map(|(date, mut last_load, source_fingerprint)| {
            last_load["source_fingerprint"] = source_fingerprint;
            (date.to_string(), last_load)
        })
        .collect();
    json!({ SOURCE_REWRITES: rewrites, "shoplake_version": env!("CARGO_PKG_VERSION") })
}

/// The export as the store has it now, for [`record`].
pub async fn fingerprint(
    storage: &Storage,
    source: &Location,
    def: &TableDefinition,
    date: NaiveDate,
) -> Result<Value> {
    let file = crate::source::locate(storage, source, def, date).await?;
    let digest = crate::source::digest(storage, &file).await?;
    Ok(crate::write::identical::source_fingerprint(&file, Some(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_record_spans_lines_and_a_line_record_does_not() {
        let text = b"a,\"x\ny\",b\nc,d\n";
        let mut quoted = BufReader::new(&text[..]);
        assert_eq!(next_record(&mut quoted, true).unwrap().unwrap(), b"a,\"x\ny\",b\n");
        assert_eq!(next_record(&mut quoted, true).unwrap().unwrap(), b"c,d\n");
        assert!(next_record(&mut quoted, true).unwrap().is_none());
        let mut lines = BufReader::new(&text[..]);
        assert_eq!(next_record(&mut lines, false).unwrap().unwrap(), b"a,\"x\n");
    }

    #[test]
    fn the_records_holding_the_value_go_and_the_rest_stay_byte_for_byte() {
        let def = crate::catalog::built_in("shopify_configuration");
        let header =
            def.columns.iter().filter(|c| c.in_export).map(|c| c.header.as_str()).collect::<Vec<_>>().join(",");
        let export = format!("{header}\r\ns1,rest\r\ns3,rest\r\ns30,x,s3\r\n\"s3\r\n");
        let out = without_value(def, Box::new(std::io::Cursor::new(export.into_bytes())), "id", "s3", false, "t")
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), format!("{header}\r\ns1,rest\r\n"));
        assert_eq!(out.1, 3, "by the column, by another field, and an unsplittable line");
        assert!(!out.2, "not by the column only");
        let none = without_value(def, Box::new(std::io::Cursor::new(b"id\ns1\n".to_vec())), "id", "s3", false, "t");
        assert!(none.unwrap().is_none());
    }
}
