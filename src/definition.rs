//! The table definition (`tables/<name>/table.toml`) and its transform SQL,
//! compiled into the binary. Everything that knows a column name gets it
//! from here: the reader, the transform, the merge and the table creation.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use crate::error::{Error, Result, Stage};

const SHOPIFY_CONFIGURATION_TOML: &str = include_str!("../tables/shopify_configuration/table.toml");
const SHOPIFY_CONFIGURATION_SQL: &str = include_str!("../tables/shopify_configuration/transform.sql");
const SHOPIFY_CONFIGURATION_CHECKS: &str = include_str!("../tables/shopify_configuration/checks.toml");

/// Name of the list item field, as Delta's Arrow mapping spells it.
pub const LIST_ITEM: &str = "element";

/// How a column's value is obtained from the export's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Flag,
    Count,
    CountList,
    FileDate,
    Derived,
    RowHash,
}

impl Kind {
    fn data_type(self) -> Option<DataType> {
        match self {
            Kind::Text => Some(DataType::Utf8),
            Kind::Flag => Some(DataType::Boolean),
            Kind::Count => Some(DataType::Int64),
            Kind::CountList => Some(long_list_type()),
            Kind::FileDate => Some(DataType::Date32),
            Kind::Derived => None,
            Kind::RowHash => Some(DataType::Binary),
        }
    }
}

pub fn long_list_type() -> DataType {
    DataType::List(Arc::new(Field::new(LIST_ITEM, DataType::Int64, true)))
}

/// The file format of `table.toml`; unknown keys are an error so a typo fails loudly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    name: String,
    description: String,
    key: Vec<String>,
    partition_by: String,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    columns: Vec<ColumnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    kind: Kind,
    #[serde(default = "default_nullable")]
    nullable: bool,
    #[serde(rename = "type")]
    type_name: Option<String>,
    /// Parquet dictionary encoding; off for columns of mostly distinct values.
    #[serde(default = "default_dictionary")]
    dictionary: bool,
}

fn default_dictionary() -> bool {
    true
}

fn default_nullable() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    pub data_type: DataType,
    pub dictionary: bool,
}

impl Column {
    pub fn is_from_export(&self) -> bool {
        !matches!(self.kind, Kind::Derived | Kind::RowHash)
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
    pub checks: Vec<crate::check::Check>,
}

impl TableDefinition {
    /// The compiled-in definition of `shopify_configuration`.
    pub fn shopify_configuration() -> &'static TableDefinition {
        static DEFINITION: OnceLock<TableDefinition> = OnceLock::new();
        DEFINITION.get_or_init(|| {
            TableDefinition::parse(SHOPIFY_CONFIGURATION_TOML, SHOPIFY_CONFIGURATION_SQL)
                .and_then(|def| def.with_checks(SHOPIFY_CONFIGURATION_CHECKS))
                .expect("the compiled-in table definition is valid (checked by unit tests)")
        })
    }

    pub fn parse(toml_text: &str, transform_sql: &str) -> Result<TableDefinition> {
        let file: TableFile =
            toml::from_str(toml_text).map_err(|e| Error::internal(Stage::Definition, "table.toml", e.message()))?;
        let fail = |message: String| Error::internal(Stage::Definition, &file.name, message);

        let mut columns = Vec::with_capacity(file.columns.len());
        for c in &file.columns {
            let declared = c.type_name.as_deref().map(parse_type_name).transpose().map_err(fail)?;
            let data_type = match (c.kind.data_type(), declared) {
                (Some(implied), None) => implied,
                (Some(implied), Some(declared)) if implied == declared => implied,
                (Some(_), Some(_)) => return Err(fail(format!("column {}: `type` contradicts its kind", c.name))),
                (None, Some(declared)) => declared,
                (None, None) => return Err(fail(format!("derived column {} needs a `type`", c.name))),
            };
            if columns.iter().any(|seen: &Column| seen.name == c.name) {
                return Err(fail(format!("column {} is declared twice", c.name)));
            }
            // Declaring a key implies not null.
            let nullable = c.nullable && !file.key.contains(&c.name);
            columns.push(Column { name: c.name.clone(), kind: c.kind, nullable, data_type, dictionary: c.dictionary });
        }
        for name in file.key.iter().chain(std::iter::once(&file.partition_by)) {
            if !columns.iter().any(|c| &c.name == name) {
                return Err(fail(format!("key or partition column {name} is not a column")));
            }
        }
        if !file.key.contains(&file.partition_by) {
            return Err(fail("the partition column must be part of the key".into()));
        }
        if columns.iter().filter(|c| c.kind == Kind::RowHash).count() != 1 {
            return Err(fail("exactly one row_hash column is needed (the loader compares rows by it)".into()));
        }
        let file_dates = columns.iter().filter(|c| c.kind == Kind::FileDate).count();
        if file_dates != 1 || columns.iter().find(|c| c.kind == Kind::FileDate).unwrap().name != file.partition_by {
            return Err(fail("exactly one file_date column, the partition column, is needed".into()));
        }
        Ok(TableDefinition {
            name: file.name,
            description: file.description,
            key: file.key,
            partition_by: file.partition_by,
            properties: file.properties,
            columns,
            transform_sql: transform_sql.to_string(),
            checks: Vec::new(),
        })
    }

    /// The definition with the checks of `checks.toml`, which must name its columns.
    pub fn with_checks(mut self, checks_toml: &str) -> Result<TableDefinition> {
        let file: crate::check::ChecksFile =
            toml::from_str(checks_toml).map_err(|e| Error::internal(Stage::Definition, "checks.toml", e.message()))?;
        let columns: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        for check in &file.checks {
            check.validate(&columns).map_err(|m| Error::internal(Stage::Definition, "checks.toml", m))?;
        }
        self.checks = file.checks;
        Ok(self)
    }

    /// The columns read from the export, in definition order.
    pub fn export_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.is_from_export())
    }

    /// Key columns other than the partition column (the row identity within a day).
    pub fn row_key(&self) -> Vec<&str> {
        self.key.iter().filter(|k| **k != self.partition_by).map(String::as_str).collect()
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
        &self.columns.iter().find(|c| c.kind == Kind::RowHash).expect("checked when parsed").name
    }

    /// The Arrow schema of the table's rows, in definition order.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable)).collect::<Vec<_>>(),
        ))
    }
}

fn parse_type_name(name: &str) -> std::result::Result<DataType, String> {
    match name {
        "string" => Ok(DataType::Utf8),
        "boolean" => Ok(DataType::Boolean),
        "long" => Ok(DataType::Int64),
        "date" => Ok(DataType::Date32),
        "array<long>" => Ok(long_list_type()),
        "binary" => Ok(DataType::Binary),
        other => Err(format!("unknown type `{other}` (string, boolean, long, date, array<long>)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_definition_is_valid() {
        let def = TableDefinition::shopify_configuration();
        assert_eq!(def.name, "shopify_configuration");
        assert_eq!(def.columns.len(), 24);
        assert_eq!(def.row_hash_column(), "_row_hash");
        assert_eq!(def.hashed_columns().count(), 21, "all but id, export_date and the hash itself");
        assert_eq!(def.export_columns().count(), 22);
        assert_eq!(def.row_key(), vec!["id"]);
        let id = def.columns.iter().find(|c| c.name == "id").unwrap();
        assert!(!id.nullable, "a key column is not nullable");
        // PRODUCT.md says "the 14 flag columns" but its header lists 13; the header rules.
        assert_eq!(def.columns.iter().filter(|c| c.kind == Kind::Flag).count(), 13);
        assert_eq!(def.checks.len(), 4, "checks.toml is compiled in");
    }

    #[test]
    fn a_typo_fails_loudly() {
        let text = SHOPIFY_CONFIGURATION_TOML.replacen(
            "kind = \"text\"\nnullable = false",
            "kind = \"text\"\nnulable = false",
            1,
        );
        let err = TableDefinition::parse(&text, "").unwrap_err();
        assert!(err.message.contains("nulable"), "{err}");
        let text = SHOPIFY_CONFIGURATION_TOML.replacen("kind = \"flag\"", "kind = \"flags\"", 1);
        assert!(TableDefinition::parse(&text, "").is_err());
    }

    #[test]
    fn derived_columns_need_a_type() {
        let text = SHOPIFY_CONFIGURATION_TOML.replace("type = \"boolean\"\n", "");
        let err = TableDefinition::parse(&text, "").unwrap_err();
        assert!(err.message.contains("needs a `type`"), "{err}");
    }
}
