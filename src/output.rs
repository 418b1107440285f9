//! Rendering query results: aligned tables with a row-count footer for
//! people, CSV or JSON (one object per line) for machines.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::arrow::{csv, json};

use crate::error::{Error, Result, Stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn render(batches: &[RecordBatch], format: Format) -> Result<String> {
    let error = |e: datafusion::arrow::error::ArrowError| Error::internal(Stage::Report, "output", e);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match format {
        Format::Table => {
            let table = if batches.iter().any(|b| b.num_columns() > 0) {
                pretty_format_batches(batches).map_err(error)?.to_string()
            } else {
                String::new()
            };
            let noun = if rows == 1 { "row" } else { "rows" };
            Ok(if table.is_empty() { format!("({rows} {noun})\n") } else { format!("{table}\n({rows} {noun})\n") })
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
                for batch in batches {
                    writer.write(&nested_as_text(batch).map_err(error)?).map_err(error)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            // Every row has every column: a null is `null`, not a missing key.
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, json::writer::LineDelimited>(Vec::new());
            for batch in batches {
                writer.write(batch).map_err(error)?;
            }
            writer.finish().map_err(error)?;
            Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
        }
    }
}

/// CSV has no lists or structs: such columns (and binary ones) become text as
/// the table format shows them, so a list reads `[0, 4, 7]` as in the export.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let needs_text = |t: &DataType| t.is_nested() || matches!(t, DataType::Binary | DataType::LargeBinary);
    if !batch.schema().fields().iter().any(|f| needs_text(f.data_type())) {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !needs_text(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray =
            (0..column.len()).map(|i| column.is_valid(i).then(|| formatter.value(i).to_string())).collect();
        fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListArray};
    use datafusion::arrow::datatypes::Int64Type;

    #[test]
    fn lists_are_written_to_csv_as_in_the_export() {
        let pins = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(vec![Some(0), Some(4)]), None]);
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("pins", Arc::new(pins) as ArrayRef),
        ])
        .unwrap();
        let csv = render(&[batch], Format::Csv).unwrap();
        assert_eq!(csv, "n,pins\n1,\"[0, 4]\"\n2,\n");
    }
}
