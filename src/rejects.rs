//! The rejects table (`<table>_rejects` by default): every refused line of
//! a date with its line number, raw text and reason, replaced for that date
//! by every successful load and left alone when it would not change.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, Date32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, SessionContext};
use deltalake::kernel::StructField;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::{days_since_epoch, Reject};
use crate::storage::{Location, Storage};
use crate::write::table::{delta_type, open_or_create, TableSpec};

pub const PARTITION: &str = "export_date";

/// The rejects table's Arrow schema.
pub fn arrow_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(PARTITION, DataType::Date32, false),
        Field::new("line", DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

fn spec(def: &TableDefinition) -> TableSpec {
    TableSpec {
        name: format!("{}_rejects", def.name),
        description: format!("Lines of the daily exports refused when loading {}.", def.name),
        fields: arrow_schema()
            .fields()
            .iter()
            .map(|f| StructField::new(f.name(), delta_type(f.data_type()).expect("simple types"), f.is_nullable()))
            .collect(),
        partition_by: PARTITION.to_string(),
        properties: Vec::new(),
    }
}

/// Makes the date's rejects equal `rejects`. Returns whether it committed.
pub async fn replace_for_day(
    storage: &Storage,
    location: &Location,
    def: &TableDefinition,
    date: NaiveDate,
    source_uri: &str,
    run_id: &str,
    rejects: &[Reject],
) -> Result<bool> {
    let table = match storage.open_table(location).await? {
        None if rejects.is_empty() => return Ok(false),
        None => open_or_create(storage, location, &spec(def)).await?,
        Some(table) => table,
    };
    let day = col(PARTITION).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))));
    let current = current_for_day(&table, location, date).await?;
    let wanted: Vec<(u64, &str, &str)> = rejects.iter().map(|r| (r.line, r.raw.as_str(), r.reason.as_str())).collect();
    let same = current.len() == wanted.len()
        && current.iter().zip(&wanted).all(|(c, w)| c.0 == w.0 && c.1 == w.1 && c.2 == w.2);
    if same {
        return Ok(false);
    }
    let delta_error = |e| Error::delta(Stage::Rejects, location, e);
    if rejects.is_empty() {
        table.delete().with_predicate(day).await.map_err(delta_error)?;
        return Ok(true);
    }
    let n = rejects.len();
    let batch = RecordBatch::try_new(
        arrow_schema(),
        vec![
            Arc::new(Date32Array::from(vec![days_since_epoch(date); n])),
            Arc::new(Int64Array::from_iter_values(rejects.iter().map(|r| r.line as i64))),
            Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.raw.as_str()))),
            Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.reason.as_str()))),
            Arc::new(StringArray::from(vec![source_uri; n])),
            Arc::new(StringArray::from(vec![run_id; n])),
        ],
    )
    .map_err(|e| Error::internal(Stage::Rejects, location, e))?;
    table.write(vec![batch]).with_save_mode(SaveMode::Overwrite).with_replace_where(day).await.map_err(delta_error)?;
    Ok(true)
}

/// The date's rejects as (line, raw, reason), by line.
async fn current_for_day(
    table: &deltalake::DeltaTable,
    location: &Location,
    date: NaiveDate,
) -> Result<Vec<(u64, String, String)>> {
    let df_error = |e| Error::datafusion(Stage::Rejects, location, e);
    if crate::write::diff::files_for_partition(table, location, PARTITION, date).await?.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Rejects, location, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Rejects, location, e))?;
    let batches: Vec<RecordBatch> = ctx
        .read_table(provider)
        .and_then(|df| df.filter(col(PARTITION).eq(lit(ScalarValue::Date32(Some(days_since_epoch(date)))))))
        .and_then(|df| df.select(vec![col("line"), col("raw"), col("reason")]))
        .map_err(df_error)?
        .execute_stream()
        .await
        .map_err(df_error)?
        .try_collect()
        .await
        .map_err(df_error)?;
    let mut rows = Vec::new();
    for batch in batches {
        let utf8 = |i: usize| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8);
        let (raw, reason) = (utf8(1), utf8(2));
        let (raw, reason) = (
            raw.map_err(|e| Error::internal(Stage::Rejects, location, e))?,
            reason.map_err(|e| Error::internal(Stage::Rejects, location, e))?,
        );
        let lines = batch.column(0).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            rows.push((
                lines.value(row) as u64,
                raw.as_string::<i32>().value(row).to_string(),
                reason.as_string::<i32>().value(row).to_string(),
            ));
        }
    }
    rows.sort();
    Ok(rows)
}
