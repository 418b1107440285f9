//! The merge source: the rows a load changes, in the table's columns with
//! `_op` saying what to do with each, and the changed rows still to take
//! from the written files when the comparison was made on disk.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::definition::TableDefinition;

/// Column of the merge source saying what to do with the row.
pub const OP: &str = "_op";
pub const OP_INSERT: &str = "insert";
pub const OP_UPDATE: &str = "update";
pub const OP_DELETE: &str = "delete";

/// The table's columns, all nullable, plus `_op`.
pub fn merge_source_schema(def: &TableDefinition) -> SchemaRef {
    let mut fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.data_type.clone(), true)).collect();
    fields.push(Field::new(OP, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The changed rows a comparison on disk found, by name (seq, row), sorted:
/// the writers take them from their files ([`Pending::take`]).
#[derive(Debug, Default)]
pub struct Pending {
    pub names: Vec<(u32, u32)>,
    /// Whether each named row is an insert (else an update).
    inserts: Vec<bool>,
    /// The merge's schema (the table's columns, then `_op`).
    schema: Option<SchemaRef>,
}

impl Pending {
    pub(super) fn new(names: Vec<(u32, u32)>, inserts: Vec<bool>, schema: SchemaRef) -> Pending {
        Pending { names, inserts, schema: Some(schema) }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The rows of `rows` (named `names`) it names, with their `_op`, in
    /// the merge's schema; `None` if it names none of them.
    pub fn take(&self, rows: &RecordBatch, names: &[(u32, u32)]) -> std::result::Result<Option<RecordBatch>, String> {
        let schema = self.schema.as_ref().ok_or("rows taken without a schema")?;
        let ops: Vec<Option<&'static str>> = names
            .iter()
            .map(|name| {
                let at = self.names.binary_search(name).ok()?;
                Some(if self.inserts[at] { OP_INSERT } else { OP_UPDATE })
            })
            .collect();
        let wanted: BooleanArray = ops.iter().map(|op| Some(op.is_some())).collect();
        if wanted.true_count() == 0 {
            return Ok(None);
        }
        let kept = filter_record_batch(rows, &wanted).map_err(|e| e.to_string())?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields().iter().filter(|f| f.name() != OP) {
            let column =
                kept.column_by_name(field.name()).ok_or_else(|| format!("a written file lacks {}", field.name()))?;
            columns.push(match column.data_type() == field.data_type() {
                true => column.clone(),
                false => cast(column, field.data_type()).map_err(|e| e.to_string())?,
            });
        }
        columns.push(Arc::new(StringArray::from_iter_values(ops.into_iter().flatten())));
        RecordBatch::try_new(schema.clone(), columns).map(Some).map_err(|e| e.to_string())
    }
}
