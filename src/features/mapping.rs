//! Column mapping (`delta.columnMapping.mode` = `name` or `id`): a table
//! whose columns Spark or Databricks can rename and drop keeps, for each
//! column, a physical name (what its Parquet files and partition values
//! are keyed by) and an id (written as the Parquet field id). shoplake
//! reads through it (delta-rs maps the names back) and writes files,
//! partition values and statistics under the physical names; a column a
//! load adds gets a new physical name and id, as the protocol asks.

use std::collections::HashMap;

use deltalake::kernel::{MetadataValue, StructField};
use deltalake::DeltaTable;

use crate::error::{Error, Result, Stage};
use crate::storage::Location;

pub const MODE: &str = "delta.columnMapping.mode";
pub const MAX_ID: &str = "delta.columnMapping.maxColumnId";
pub const PHYSICAL_NAME: &str = "delta.columnMapping.physicalName";
pub const ID: &str = "delta.columnMapping.id";
/// Where arrow-rs's Parquet writer takes a field's id from.
pub const PARQUET_FIELD_ID: &str = "PARQUET:field_id";

/// A table's column mapping (none for most tables).
#[derive(Debug, Clone, Default)]
pub struct ColumnMapping {
    on: bool,
    /// Logical name → (physical name, id).
    columns: HashMap<String, (String, i64)>,
    max_id: i64,
    table_id: String,
}

impl ColumnMapping {
    /// The mapping of `table` as loaded.
    pub fn of(table: &DeltaTable, location: &Location) -> Result<ColumnMapping> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
        let configuration = snapshot.metadata().configuration();
        let mode = configuration.get(MODE).map(|m| m.to_ascii_lowercase()).unwrap_or_default();
        if mode != "name" && mode != "id" {
            return Ok(ColumnMapping::default());
        }
        let mut columns = HashMap::new();
        for field in snapshot.schema().fields() {
            let physical = match field.metadata().get(PHYSICAL_NAME) {
                Some(MetadataValue::String(name)) => name.clone(),
                _ => {
                    return Err(Error::usage(
                        Stage::Write,
                        location,
                        format!("column mapping is on but column {} has no physical name", field.name()),
                    ))
                }
            };
            let id = match field.metadata().get(ID) {
                Some(MetadataValue::Number(id)) => *id,
                _ => {
                    return Err(Error::usage(
                        Stage::Write,
                        location,
                        format!("column mapping is on but column {} has no id", field.name()),
                    ))
                }
            };
            columns.insert(field.name().clone(), (physical, id));
        }
        let max_id = configuration
            .get(MAX_ID)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| columns.values().map(|(_, id)| *id).max().unwrap_or(0));
        Ok(ColumnMapping { on: true, columns, max_id, table_id: snapshot.metadata().id().to_string() })
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The physical name of a column the table has, or of one `added`
    /// (the columns a load adds, in order) brings; the name itself when
    /// mapping is off.
    pub fn physical(&self, name: &str, added: &[&str]) -> (String, Option<i64>) {
        if !self.on {
            return (name.to_string(), None);
        }
        if let Some((physical, id)) = self.columns.get(name) {
            return (physical.clone(), Some(*id));
        }
        match added.iter().position(|a| *a == name) {
            Some(at) => {
                let (physical, id) = self.new_column(name, at);
                (physical, Some(id))
            }
            None => (name.to_string(), None),
        }
    }

    /// The physical name and id of the `at`-th column a load adds: ids go
    /// on from the table's highest; the name is unique to the table, the
    /// column and its id (the same in every stage of one load, a new one
    /// for a column dropped and added again).
    fn new_column(&self, name: &str, at: usize) -> (String, i64) {
        let id = self.max_id + 1 + at as i64;
        let hash = xxhash_rust::xxh3::xxh3_128(format!("{}/{name}/{id}", self.table_id).as_bytes());
        (format!("col-{}", uuid::Uuid::from_u128(hash)), id)
    }

    /// The key of partition values in the log (the partition column's
    /// physical name under column mapping).
    pub fn partition_key(&self, partition_by: &str) -> String {
        self.physical(partition_by, &[]).0
    }

    /// `field` (a column a load adds) with its physical name and id.
    pub fn mapped_field(&self, field: StructField, added: &[&str]) -> StructField {
        if !self.on {
            return field;
        }
        let (physical, id) = self.physical(field.name(), added);
        field.add_metadata([
            (PHYSICAL_NAME.to_string(), MetadataValue::String(physical)),
            (ID.to_string(), MetadataValue::Number(id.expect("a mapped column has an id"))),
        ])
    }

    /// The table's highest column id once `added` columns are in.
    pub fn max_id_after(&self, added: usize) -> i64 {
        self.max_id + added as i64
    }
}
