//! Rendering query results: aligned tables with a row-count footer for
//! people, CSV or JSON (one object per line) for machines.

use datafusion::arrow::array::RecordBatch;
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
                    writer.write(batch).map_err(error)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            let mut writer = json::LineDelimitedWriter::new(Vec::new());
            for batch in batches {
                writer.write(batch).map_err(error)?;
            }
            writer.finish().map_err(error)?;
            Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
        }
    }
}
