//! A table's export as the tests edit it: its records by the definition's
//! shape (a CSV header and its records, quoted ones spanning lines; or
//! JSON Lines), each record's values read as a load reads them (trimmed,
//! the prefix convention taken off; a JSONL value by its pointer). The
//! guarantees and features tests edit exports through it, so they hold for
//! any definition, not only one line a record with the key first.

use std::path::PathBuf;

use shoplake::definition::{SourceFormat, TableDefinition};
use shoplake_parse::framing::Framing;
use shoplake_parse::records::Fields;

use crate::lake::Lake;

pub struct Export {
    def: &'static TableDefinition,
    path: PathBuf,
    /// A CSV export's header line (a JSONL export has none).
    pub header: Option<Vec<u8>>,
    /// The records, in file order, without their line ends (bytes: a dirty
    /// export holds lines that are not UTF-8).
    pub records: Vec<Vec<u8>>,
}

impl Export {
    /// Table `name`'s export of `date`.
    pub fn read(lake: &Lake, name: &str, date: &str) -> Export {
        let def = lake.definition(name);
        let path = lake.export(name, date);
        let text = std::fs::read(&path).unwrap();
        let mut records = split(&text, def.framing);
        let header = match def.format {
            SourceFormat::Csv => Some(records.remove(0)),
            SourceFormat::Jsonl => None,
        };
        Export { def, path, header, records }
    }

    /// The physical line record `index` starts at (a CSV header is line 1).
    pub fn line_of(&self, index: usize) -> usize {
        let lines = |r: &Vec<u8>| r.iter().filter(|b| **b == b'\n').count() + 1;
        self.header.iter().chain(&self.records[..index]).map(lines).sum::<usize>() + 1
    }

    /// `column`'s value in `record`, as a load reads it; `None` when the
    /// export does not hold the column (a derived one) or the record does
    /// not read (too few fields, not JSON).
    pub fn value(&self, record: &[u8], column: &str) -> Option<String> {
        let column = self.def.column(column).filter(|c| c.is_from_export())?;
        let text = match self.def.format {
            SourceFormat::Csv => {
                let header = self.header.as_deref()?;
                let mut fields = Fields::default();
                fields.split(header).ok()?;
                let at = (0..fields.len())
                    .position(|i| String::from_utf8_lossy(fields.get(header, i)).trim() == column.header)?;
                fields.split(record).ok()?;
                (at < fields.len()).then(|| String::from_utf8_lossy(fields.get(record, at)).trim().to_string())?
            }
            SourceFormat::Jsonl => {
                let object: serde_json::Value = serde_json::from_slice(record).ok()?;
                match object.pointer(&column.header) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                }
            }
        };
        Some(match &column.conventions.strip_prefix {
            Some(prefix) => text.strip_prefix(prefix.as_str()).unwrap_or(&text).to_string(),
            None => text,
        })
    }

    /// The record's day key, when the export holds it (not a derived key).
    pub fn key(&self, record: &[u8]) -> Option<String> {
        self.value(record, self.def.day_key())
    }

    /// Whether `record` is one of the table's (not another object type's).
    pub fn own(&self, record: &[u8]) -> bool {
        !self.of_another_type(record)
    }

    /// A JSONL object whose type is not the table's (`object_type`).
    pub fn of_another_type(&self, record: &[u8]) -> bool {
        let Some(wanted) = &self.def.object_type else { return false };
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(record)
            .ok()
            .and_then(|o| {
                let text = |key: &str| o.get(key).and_then(serde_json::Value::as_str);
                shoplake::definition::format::object_type(text("__typename"), text("id")).map(|t| t != wanted)
            })
            .unwrap_or(false)
    }

    /// Writes the export back (the header, then every record).
    pub fn write(&self) {
        let mut text = Vec::new();
        for record in self.header.iter().chain(&self.records) {
            text.extend_from_slice(record);
            text.push(b'\n');
        }
        std::fs::write(&self.path, text).unwrap();
    }
}

/// The records of `text`: lines, or (quoted framing) lines joined while a
/// quote is open.
fn split(text: &[u8], framing: Framing) -> Vec<Vec<u8>> {
    let quoted = !matches!(framing, Framing::Lines);
    let mut records = Vec::new();
    let mut open: Option<Vec<u8>> = None;
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let record = match open.take() {
            Some(mut started) => {
                started.push(b'\n');
                started.extend_from_slice(line);
                started
            }
            None => line.to_vec(),
        };
        if quoted && record.iter().filter(|b| **b == b'"').count() % 2 == 1 {
            open = Some(record);
        } else {
            records.push(record);
        }
    }
    records.extend(open);
    records
}
