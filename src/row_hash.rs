//! Row fingerprints: a 128-bit hash of a row's value columns (every column
//! but the key and the fingerprint itself), stored in the table's
//! `row_hash` column. A re-load compares the export with the table by key
//! and fingerprint, reading only those two columns of the partition.
//!
//! The hash is xxh3-128 over our own canonical encoding of the values (a
//! presence byte, then length-prefixed text, little-endian numbers, list
//! lengths and items), not over a library's row format, so it stays the same
//! across library versions.
//!
//! Columns a table gained after it was created (schema evolution, marked
//! [`ADDED_COLUMN`] in the table's schema) are encoded only when they hold
//! a value, after the others, with their name: a row whose new column is
//! null keeps the fingerprint it had before the column existed, so old
//! files need no rewrite and re-loading an old export changes nothing.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use xxhash_rust::xxh3::xxh3_128;

use crate::definition::TableDefinition;

/// Field metadata marking a column added to an existing table.
pub const ADDED_COLUMN: (&str, &str) = ("shoplake.fingerprint", "when_present");

/// Computes the fingerprints of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueHasher {
    /// Encoded always, in the table's column order.
    columns: Vec<String>,
    /// Added later: encoded with their name when not null, sorted by name.
    added: Vec<String>,
}

/// A column as the hasher reads it, with its null mask resolved once.
enum Values<'a> {
    Text(&'a datafusion::arrow::array::StringArray),
    TextView(&'a datafusion::arrow::array::StringViewArray),
    Flag(&'a datafusion::arrow::array::BooleanArray),
    Long(&'a datafusion::arrow::array::Int64Array),
    Double(&'a datafusion::arrow::array::Float64Array),
    Decimal(&'a datafusion::arrow::array::Decimal128Array),
    Date(&'a datafusion::arrow::array::Date32Array),
    Timestamp(&'a datafusion::arrow::array::TimestampMicrosecondArray),
    LongList(&'a datafusion::arrow::array::ListArray),
    TextList(&'a datafusion::arrow::array::ListArray),
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
            DataType::Float64 => Values::Double(array.as_primitive()),
            DataType::Decimal128(..) => Values::Decimal(array.as_primitive()),
            DataType::Date32 => Values::Date(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Values::Timestamp(array.as_primitive()),
            DataType::List(item) if item.data_type() == &DataType::Int64 => Values::LongList(array.as_list::<i32>()),
            DataType::List(item) if item.data_type() == &DataType::Utf8 => Values::TextList(array.as_list::<i32>()),
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
            Values::Double(a) => out.extend_from_slice(&a.value(row).to_bits().to_le_bytes()),
            Values::Decimal(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::Date(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::Timestamp(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::TextList(a) => {
                let offsets = a.value_offsets();
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                let items = a.values().as_string::<i32>();
                out.extend_from_slice(&((to - from) as u32).to_le_bytes());
                for i in from..to {
                    if items.is_null(i) {
                        out.push(0);
                    } else {
                        out.push(1);
                        text(items.value(i), out);
                    }
                }
            }
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
    /// The fingerprint of a new table of `def`: every value column, always encoded.
    pub fn new(def: &TableDefinition) -> Self {
        ValueHasher { columns: def.hashed_columns().map(|c| c.name.clone()).collect(), added: Vec::new() }
    }

    /// The fingerprint of `def`'s rows in an existing table whose columns
    /// are `table_columns` (name, added later?), in the table's order.
    /// Hashed columns the table does not have yet will be added to it, so
    /// they count as added.
    pub fn for_table<'a>(def: &TableDefinition, table_columns: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        let hashed: Vec<&str> = def.hashed_columns().map(|c| c.name.as_str()).collect();
        let mut columns = Vec::new();
        let mut added = Vec::new();
        for (name, was_added) in table_columns {
            if hashed.contains(&name) {
                if was_added {
                    added.push(name.to_string());
                } else {
                    columns.push(name.to_string());
                }
            }
        }
        let not_in_table: Vec<String> =
            hashed.iter().filter(|h| !columns.iter().chain(&added).any(|c| c == *h)).map(|h| h.to_string()).collect();
        added.extend(not_in_table);
        added.sort();
        ValueHasher { columns, added }
    }

    /// One hash per row of `batch`, which holds the value columns by name.
    pub fn hash_rows(&self, batch: &RecordBatch) -> std::result::Result<Vec<u128>, String> {
        // An added column the rows do not have yet (a table not evolved
        // yet) is null in every row: it adds nothing to the fingerprint.
        let added_names: Vec<&String> = self.added.iter().filter(|n| batch.column_by_name(n).is_some()).collect();
        let arrays = self
            .columns
            .iter()
            .chain(added_names.iter().copied())
            .map(|name| {
                let array = batch.column_by_name(name).ok_or_else(|| format!("no column {name}"))?;
                normalise(array).map_err(|e| format!("column {name}: {e}"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let columns = arrays
            .iter()
            .zip(self.columns.iter().chain(added_names.iter().copied()))
            .map(|(a, name)| {
                Column::of(a).ok_or_else(|| format!("column {name} has unexpected type {}", a.data_type()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (always, added) = columns.split_at(self.columns.len());
        let mut buffer = Vec::with_capacity(512);
        Ok((0..batch.num_rows())
            .map(|row| {
                buffer.clear();
                for column in always {
                    column.encode(row, &mut buffer);
                }
                for (column, name) in added.iter().zip(&added_names) {
                    if !column.nulls.is_some_and(|n| n.is_null(row)) {
                        buffer.push(2);
                        text(name, &mut buffer);
                        column.encode(row, &mut buffer);
                    }
                }
                xxh3_128(&buffer)
            })
            .collect())
    }
}

/// Lists of text as the hasher reads them (a scan may give string views).
fn normalise(array: &ArrayRef) -> std::result::Result<ArrayRef, String> {
    match array.data_type() {
        DataType::List(item) if matches!(item.data_type(), DataType::Utf8View | DataType::LargeUtf8) => {
            let target = DataType::List(Arc::new(item.as_ref().clone().with_data_type(DataType::Utf8)));
            datafusion::arrow::compute::cast(array, &target).map_err(|e| e.to_string())
        }
        _ => Ok(array.clone()),
    }
}

/// The fingerprint of a row's key within its day: what the export's
/// duplicate rule and the date's index compare instead of the key itself
/// (a UUID key is 36 bytes; its fingerprint 16, and a collision of two keys
/// one in 2^128).
pub fn key_fingerprint(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// A 128-bit fingerprint as two halves: 8-byte aligned, a key index's
/// entry of one and 8 bytes more takes 24 bytes, not the 32 a `u128`
/// (16-byte aligned) pads it to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u64; 2]);

impl From<u128> for Fingerprint {
    fn from(hash: u128) -> Self {
        Fingerprint([hash as u64, (hash >> 64) as u64])
    }
}

impl From<Fingerprint> for u128 {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.0[0] as u128 | (fingerprint.0[1] as u128) << 64
    }
}

impl Fingerprint {
    /// The index's hash: a fingerprint's bits are already uniform.
    pub fn bucket(&self) -> u64 {
        self.0[0]
    }
}

/// Fingerprints as the table stores them.
pub fn to_array(hashes: &[u128]) -> ArrayRef {
    let bytes: Vec<[u8; 16]> = hashes.iter().map(|h| h.to_be_bytes()).collect();
    Arc::new(BinaryArray::from_iter_values(bytes.iter()))
}

/// A stored fingerprint that is missing (a row written by another engine,
/// e.g. Spark, which cannot compute it) or not 16 bytes: it matches no
/// computed fingerprint, so the row counts as changed and the next load
/// rewrites it with its fingerprint. (xxh3-128 gives 0 for one input in 2^128.)
pub const UNKNOWN: u128 = 0;

/// Fingerprints as the table stores them, read back (any binary type);
/// [`UNKNOWN`] for a null or malformed one.
pub fn from_array(array: &ArrayRef) -> std::result::Result<Vec<u128>, String> {
    let binary = datafusion::arrow::compute::cast(array, &DataType::Binary).map_err(|e| e.to_string())?;
    let binary = binary.as_binary::<i32>();
    Ok((0..binary.len())
        .map(|i| {
            if binary.is_null(i) {
                return UNKNOWN;
            }
            <[u8; 16]>::try_from(binary.value(i)).map_or(UNKNOWN, u128::from_be_bytes)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn batch(text: Vec<Option<&str>>, flags: Vec<Option<bool>>, counts: Vec<Option<i64>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("t", DataType::Utf8, true),
            Field::new("f", DataType::Boolean, true),
            Field::new("n", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(text)),
                Arc::new(BooleanArray::from(flags)),
                Arc::new(Int64Array::from(counts)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn equal_rows_hash_equal_and_nulls_differ_from_values() {
        let hasher = ValueHasher { columns: vec!["t".into(), "f".into(), "n".into()], added: Vec::new() };
        let b = batch(
            vec![Some("a"), Some("a"), None, Some(""), Some("ab"), Some("a")],
            vec![Some(true), Some(true), Some(true), Some(true), Some(true), None],
            vec![Some(1), Some(1), Some(1), Some(1), Some(1), Some(1)],
        );
        let h = hasher.hash_rows(&b).unwrap();
        assert_eq!(h[0], h[1]);
        assert_ne!(h[0], h[2], "null text differs from a value");
        assert_ne!(h[2], h[3], "null text differs from empty text");
        assert_ne!(h[0], h[4]);
        assert_ne!(h[0], h[5], "null flag differs from true");
        assert_eq!(from_array(&to_array(&h)).unwrap(), h);
        let stored: ArrayRef =
            Arc::new(BinaryArray::from(vec![None, Some(&b"short"[..]), Some(&h[0].to_be_bytes()[..])]));
        assert_eq!(from_array(&stored).unwrap(), vec![UNKNOWN, UNKNOWN, h[0]], "missing fingerprints are unknown");
    }

    #[test]
    fn a_column_added_later_changes_no_fingerprint_while_it_is_null() {
        let before = ValueHasher { columns: vec!["t".into(), "f".into()], added: Vec::new() };
        let after = ValueHasher { columns: vec!["t".into(), "f".into()], added: vec!["n".into()] };
        let b = batch(vec![Some("a"), Some("a")], vec![Some(true), Some(true)], vec![None, Some(0)]);
        let (old, new) = (before.hash_rows(&b).unwrap(), after.hash_rows(&b).unwrap());
        assert_eq!(old[0], new[0], "null in the added column: the fingerprint it had");
        assert_ne!(old[1], new[1], "a value in the added column changes it");
        // Beside it: the same column present from the start is always encoded.
        let from_start = ValueHasher { columns: vec!["t".into(), "f".into(), "n".into()], added: Vec::new() };
        assert_ne!(from_start.hash_rows(&b).unwrap()[0], old[0]);
    }

    #[test]
    fn the_encoding_is_stable() {
        // A stored fingerprint must not change between releases: this pins one.
        let hasher = ValueHasher { columns: vec!["t".into(), "f".into(), "n".into()], added: Vec::new() };
        let h = hasher.hash_rows(&batch(vec![Some("shopify_")], vec![Some(false)], vec![None])).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&[1, 8, 0, 0, 0]);
        expected.extend_from_slice(b"shopify_");
        expected.extend_from_slice(&[1, 0, 0]);
        assert_eq!(h[0], xxh3_128(&expected));
    }
}
