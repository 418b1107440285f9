//! What a table shoplake creates is made of: its Delta columns (from the
//! definition's Arrow types), partitioning and properties, and the columns
//! Delta keeps statistics for.

use datafusion::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use deltalake::kernel::{ArrayType, DataType as DeltaType, StructField};
use deltalake::DeltaTable;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};

/// Delta type of an Arrow type used by table definitions.
pub fn delta_type(arrow: &ArrowType) -> Option<DeltaType> {
    Some(match arrow {
        ArrowType::Utf8 => DeltaType::STRING,
        ArrowType::Boolean => DeltaType::BOOLEAN,
        ArrowType::Int64 => DeltaType::LONG,
        ArrowType::Float64 => DeltaType::DOUBLE,
        ArrowType::Decimal128(precision, scale) => DeltaType::decimal(*precision, u8::try_from(*scale).ok()?).ok()?,
        ArrowType::Date32 => DeltaType::DATE,
        ArrowType::Timestamp(TimeUnit::Microsecond, Some(_)) => DeltaType::TIMESTAMP,
        ArrowType::Binary => DeltaType::BINARY,
        ArrowType::List(item) => {
            DeltaType::Array(Box::new(ArrayType::new(delta_type(item.data_type())?, item.is_nullable())))
        }
        _ => return None,
    })
}

/// The Delta columns of a definition, in order.
pub fn delta_fields(def: &TableDefinition) -> Result<Vec<StructField>> {
    def.columns
        .iter()
        .map(|c| {
            let data_type = delta_type(&c.data_type).ok_or_else(|| {
                Error::internal(Stage::Definition, &def.name, format!("column {} has an unsupported type", c.name))
            })?;
            Ok(StructField::new(&c.name, data_type, c.nullable))
        })
        .collect()
}

/// Table property recording the definition's key (Delta has no key of its own).
pub const KEY_PROPERTY: &str = "shoplake.key";
/// Table property of a table shoplake took over from another engine.
pub const ADOPTED_PROPERTY: &str = "shoplake.adopted";

/// Table property naming the columns Delta keeps min/max statistics for.
const STATS_COLUMNS: &str = "delta.dataSkippingStatsColumns";

/// The columns Delta can skip files on: numbers, decimals, text, dates and
/// timestamps, but the partition (its value is in the path) and `erasable`
/// columns (their values in the log's statistics would outlive an erasure:
/// docs/privacy.md). Delta Spark
/// refuses to change any property of a table that lists another type here
/// (booleans, lists, the binary row fingerprint): `ALTER TABLE SET
/// TBLPROPERTIES` failed with DELTA_COLUMN_DATA_SKIPPING_NOT_SUPPORTED_TYPE.
pub(crate) fn stats_columns(def: &TableDefinition) -> String {
    let skippable = |t: &ArrowType| {
        matches!(
            t,
            ArrowType::Utf8
                | ArrowType::Int64
                | ArrowType::Float64
                | ArrowType::Decimal128(..)
                | ArrowType::Date32
                | ArrowType::Timestamp(..)
        )
    };
    let names: Vec<&str> = def
        .columns
        .iter()
        .filter(|c| c.name != def.partition_by && !c.erasable && skippable(&c.data_type))
        .map(|c| c.name.as_str())
        .collect();
    names.join(",")
}

/// What a new table is created with.
pub struct TableSpec {
    pub name: String,
    pub description: String,
    pub fields: Vec<StructField>,
    pub partition_by: String,
    pub properties: Vec<(String, String)>,
    /// The row fingerprint column, which a table to take over may lack.
    pub row_hash: Option<String>,
    /// The definition of a data table (a rejects table has none): its
    /// schema may evolve in place (`crate::schema`).
    pub def: Option<&'static TableDefinition>,
}

impl TableSpec {
    pub fn of(def: &'static TableDefinition) -> Result<TableSpec> {
        Ok(TableSpec { def: Some(def), ..TableSpec::shape_of(def)? })
    }

    /// The columns, partitioning and properties of `def`'s table.
    pub fn shape_of(def: &TableDefinition) -> Result<TableSpec> {
        Ok(TableSpec {
            name: def.name.clone(),
            description: def.description.clone(),
            fields: delta_fields(def)?,
            partition_by: def.partition_by.clone(),
            properties: def
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([(STATS_COLUMNS.to_string(), stats_columns(def)), (KEY_PROPERTY.to_string(), def.key.join(","))])
                .collect(),
            row_hash: Some(def.row_hash_column().to_string()),
            def: None,
        })
    }
}

/// Whether the table has the definition's row fingerprint column (one
/// that has not needs taking over before its rows can be compared).
pub fn has_column(table: &DeltaTable, name: &str) -> bool {
    table.snapshot().is_ok_and(|s| s.schema().fields().any(|f| f.name() == name))
}
