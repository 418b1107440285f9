//! Table definitions, read at run time: every table shoplake loads is a
//! folder `tables/<name>/` holding `table.toml` (its columns with their
//! kinds, key, partitioning, properties, where its exports and its table
//! live), and optionally `transform.sql` and `checks.toml`. Everything that
//! knows a column name gets it from here: the reader, the transform, the
//! merge, the table creation, the generator.
//!
//! [`file`] is the raw, file-shaped form (`TableFile`, unknown keys refused);
//! [`TableDefinition`] the resolved one, made by one conversion that does
//! the checks spanning fields; [`checks`] the data-quality checks a
//! definition declares. Finding and checking definitions (which needs the
//! SQL planner) is [`crate::catalog`]'s, a floor above.

pub mod checks;
mod conventions;
pub(crate) mod file;
pub mod format;
pub mod registry;
pub mod sample;
mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

pub use format::SourceFormat;
pub use types::{long_list_type, text_list_type, timestamp_utc, type_name};

/// Name of the list item field, as Delta's Arrow mapping spells it.
pub const LIST_ITEM: &str = "element";

/// Where `{date}` goes in a source pattern.
pub const DATE_PLACEHOLDER: &str = "{date}";

/// How a column's value is obtained from the export's text (tables/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Flag,
    Count,
    CountList,
    Float,
    Decimal,
    Date,
    Timestamp,
    TextList,
    FileDate,
    Derived,
    RowHash,
}

/// `records` in table.toml: how the export's records are framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Records {
    /// A line break always ends a record (PRODUCT.md).
    #[default]
    Lines,
    /// RFC 4180: a quoted field may span lines (Shopify's admin exports).
    Quoted,
}

/// Bounds of a quoted record when table.toml does not say: a description
/// of a thousand lines fits, and a stray quote costs at most this much
/// scanning before its line is rejected alone.
pub const DEFAULT_MAX_RECORD_LINES: u32 = 1000;
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;

/// What a load does with export columns the definition does not declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownColumns {
    /// The load is refused (exit 4), naming them.
    #[default]
    Refuse,
    /// They are not loaded; the run report names them.
    Ignore,
}

/// What a load does with declared columns the export lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingColumns {
    /// The load is refused (exit 4), naming them.
    #[default]
    Refuse,
    /// Nullable columns are loaded as null (the run report names them);
    /// a missing not-null column is still refused.
    Null,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// Where the export holds the column's value: its header text
    /// (`header`; its name unless declared, e.g. `Variant SKU`), or in a
    /// JSONL export its JSON pointer (`path`; `/<name>` unless declared).
    pub header: String,
    pub kind: Kind,
    pub nullable: bool,
    pub data_type: DataType,
    /// Parquet dictionary encoding; off for columns of mostly distinct values.
    pub dictionary: bool,
    /// Read from the export (a `file_date` may come from the file name alone).
    pub in_export: bool,
    /// The zone of timestamps written without an offset.
    pub time_zone: Option<chrono_tz::Tz>,
    /// How `shoplake generate` makes up values.
    pub sample: sample::Sample,
    /// How the export writes its values when not by the defaults
    /// (`strip_prefix`, `null_values`, `true_values`/`false_values`,
    /// `timestamp_format`).
    pub conventions: shoplake_parse::values::Conventions,
    /// Rows may be erased by this column's value (`shoplake erase --where`).
    pub erasable: bool,
    /// Personal data never written as read (`crate::pii`).
    pub pii: Option<Pii>,
    /// Empty on a group's later rows: taken from the group's first row (`group_by`).
    pub fill_down: bool,
}

/// What a load writes for a column's personal data (`pii` in table.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pii {
    /// HMAC-SHA256 with `SHOPLAKE_PII_KEY`, in hex.
    Hash,
    /// All but the last four characters as `*`.
    Mask,
    /// Null.
    Drop,
}

impl Column {
    pub fn is_from_export(&self) -> bool {
        self.in_export
    }
}

/// A table's definition, checked for consistency when loaded.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    pub name: String,
    pub description: String,
    pub key: Vec<String>,
    pub partition_by: String,
    pub properties: BTreeMap<String, String>,
    pub columns: Vec<Column>,
    pub transform_sql: String,
    /// Data-quality checks (`checks.toml`), run before every commit.
    pub checks: Vec<checks::Check>,
    /// The export of a date, relative to `--source`, with `{date}` for the
    /// date (a `.gz` of it is read the same way).
    pub source_pattern: String,
    /// The table, relative to the lake root (`--lake`).
    pub table_path: String,
    pub unknown_columns: UnknownColumns,
    pub missing_columns: MissingColumns,
    /// How the export's records are framed (`records`, `max_record_lines`,
    /// `max_record_bytes`).
    pub framing: shoplake_parse::framing::Framing,
    /// CSV with a header, or JSON Lines (`format`).
    pub format: SourceFormat,
    /// A JSONL table's object type: lines of other types are counted apart.
    pub object_type: Option<String>,
    /// The column whose value names a group of rows (a product's variants,
    /// an order's line items): `fill_down` columns come from its first row.
    pub group_by: Option<String>,
    /// Where the table is registered when the command line does not say (`[catalog]`).
    pub catalog: Option<registry::Metastore>,
    /// The folder the definition was read from, or `built-in:<name>`.
    pub origin: String,
    /// A hash of its files: a load records it, and a later run of the date
    /// under another definition does not count as identical.
    pub fingerprint: String,
}

impl TableDefinition {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The columns read from the export, in definition order.
    pub fn export_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.is_from_export())
    }

    /// Key columns other than the partition column (the row identity within a day).
    pub fn row_key(&self) -> Vec<&str> {
        self.key.iter().filter(|k| **k != self.partition_by).map(String::as_str).collect()
    }

    /// The one key column within a day (a text column; checked when resolved).
    pub fn day_key(&self) -> &str {
        self.row_key().first().copied().expect("checked when resolved")
    }

    /// Columns that are not part of the key: what an update may change.
    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !self.key.contains(&c.name))
    }

    /// The columns a row's fingerprint covers: every value column but the fingerprint.
    pub fn hashed_columns(&self) -> impl Iterator<Item = &Column> {
        self.value_columns().filter(|c| c.kind != Kind::RowHash)
    }

    /// The column holding each row's fingerprint.
    pub fn row_hash_column(&self) -> &str {
        &self.columns.iter().find(|c| c.kind == Kind::RowHash).expect("checked when resolved").name
    }

    /// The Arrow schema of the table's rows, in definition order.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable)).collect::<Vec<_>>(),
        ))
    }

    /// The export of `date`, relative to the source root.
    pub fn source_file(&self, date: chrono::NaiveDate) -> String {
        self.source_pattern.replace(DATE_PLACEHOLDER, &date.format("%Y-%m-%d").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::built_in;

    #[test]
    fn shopify_configuration_is_built_in_as_declared() {
        let def = built_in("shopify_configuration");
        assert_eq!(def.columns.len(), 24);
        assert_eq!(def.row_hash_column(), "_row_hash");
        assert_eq!(def.hashed_columns().count(), 21, "all but id, export_date and the hash itself");
        assert_eq!(def.export_columns().count(), 22);
        assert_eq!(def.row_key(), vec!["id"]);
        assert!(!def.column("id").unwrap().nullable, "a key column is not nullable");
        // PRODUCT.md says "the 14 flag columns" but its header lists 13; the header rules.
        assert_eq!(def.columns.iter().filter(|c| c.kind == Kind::Flag).count(), 13);
        assert_eq!(def.checks.len(), 4, "checks.toml is built in");
        assert_eq!(def.source_pattern, "{date}.csv", "today's exports, by default");
        assert_eq!(def.table_path, "shopify_configuration");
        assert_eq!((def.unknown_columns, def.missing_columns), (UnknownColumns::Refuse, MissingColumns::Refuse));
        let day = chrono::NaiveDate::from_ymd_opt(2019, 4, 1).unwrap();
        assert_eq!(def.source_file(day), "2019-04-01.csv");
    }
}
