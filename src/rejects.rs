//! The rejects table (`<table>_rejects` by default): every refused line of
//! a date with its line number, raw text and reason, replaced for that date
//! by every successful load.
//!
//! A load writes the date's rejects *before* its table commit and records,
//! in that commit, the rejects table's version that holds them (commit info
//! `rejects_version`, and a Delta `txn` action per date, see [`pairing`]).
//! Readers pair the two tables by that record only, never by time: the
//! rejects of a table version are, for each date, that date's partition of
//! the rejects table at the version recorded by the last commit that loaded
//! the date ([`crate::audit::pairing`]). A load that fails after writing its
//! rejects leaves a rejects version no table commit names: readers never
//! see it, and the next load of the date replaces it.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, Date32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, Expr};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::StructField;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use futures::TryStreamExt;
use serde_json::json;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::{days_since_epoch, Reject};
use crate::schema::open::open_or_create;
use crate::storage::{Location, Storage};
use crate::table::commit::{commit_error, Attempt};
use crate::table::spec::{delta_type, TableSpec};

pub const PARTITION: &str = "export_date";

/// Table properties the rejects table shares with its table, so its log and
/// files last as long (time travel of the pair needs both).
const SHARED_PROPERTIES: [&str; 3] =
    ["delta.logRetentionDuration", "delta.deletedFileRetentionDuration", "delta.checkpointInterval"];

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

fn shared_properties(def: &TableDefinition) -> Vec<(String, String)> {
    def.properties
        .iter()
        .filter(|(k, _)| SHARED_PROPERTIES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
        // Statistics on the raw lines (or the reasons, which quote values)
        // would keep prefixes of them in the log, out of an erasure's reach.
        properties: shared_properties(def)
            .into_iter()
            .chain([("delta.dataSkippingStatsColumns".to_string(), "line".to_string())])
            .collect(),
        row_hash: None,
        def: None,
    }
}

/// One date's rejected lines, as a load found them.
pub struct DayRejects<'a> {
    pub date: NaiveDate,
    pub source_uri: &'a str,
    pub run_id: &'a str,
    /// Sorted by line.
    pub rejects: &'a [Reject],
}

/// (line, raw, reason): what identifies a date's rejects, for comparisons.
pub type Content = Vec<(u64, String, String)>;

impl DayRejects<'_> {
    pub fn content(&self) -> Content {
        self.rejects.iter().map(|r| (r.line, r.raw.clone(), r.reason.clone())).collect()
    }
}

/// The rejects table, created on first use (with the table's retention),
/// and given the table's retention if it was created without it.
pub async fn open_for_writing(storage: &Storage, location: &Location, def: &TableDefinition) -> Result<DeltaTable> {
    let table = open_or_create(storage, location, &spec(def)).await?;
    let config =
        table.snapshot().map_err(|e| Error::delta(Stage::Rejects, location, e))?.metadata().configuration().clone();
    let missing: Vec<(String, String)> =
        shared_properties(def).into_iter().filter(|(k, v)| config.get(k) != Some(v)).collect();
    if missing.is_empty() {
        return Ok(table);
    }
    tracing::info!(table = %location, properties = ?missing, "giving the rejects table its table's retention");
    table
        .set_tbl_properties()
        .with_properties(missing.into_iter().collect())
        .await
        .map_err(|e| Error::delta(Stage::Rejects, location, e))
}

/// Makes the rejects table's partition for the date hold exactly `day`'s
/// rejects. Returns the version at which it does: a new one if it had to
/// be written, else the version it was read at.
pub(crate) async fn stage(
    storage: &Storage,
    location: &Location,
    def: &TableDefinition,
    day: &DayRejects<'_>,
) -> Result<i64, Attempt> {
    let table = open_for_writing(storage, location, def).await?;
    let wanted = day.content();
    if content(&table, location, day.date).await? == wanted {
        return Ok(crate::storage::version_of(&table));
    }
    let info = json!({ "run_id": day.run_id, "export_dates": [day.date.to_string()], "source": day.source_uri });
    let properties = CommitProperties::default().with_metadata([("shoplake".to_string(), info)]);
    let table = write_days(table, location, &[day.date], vec![batch(day)?], properties).await?;
    Ok(crate::storage::version_of(&table))
}

/// Replaces the partitions of `dates` with `batches` in one commit.
pub(crate) async fn write_days(
    table: DeltaTable,
    location: &Location,
    dates: &[NaiveDate],
    batches: Vec<RecordBatch>,
    properties: CommitProperties,
) -> Result<DeltaTable, Attempt> {
    let delta_error = |e| commit_error(Stage::Rejects, location, e);
    let predicate = days_predicate(dates);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        table
            .delete()
            .with_predicate(predicate)
            .with_commit_properties(properties)
            .await
            .map(|(t, _)| t)
            .map_err(delta_error)
    } else {
        table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_commit_properties(properties)
            .await
            .map_err(delta_error)
    }
}

fn days_predicate(dates: &[NaiveDate]) -> Expr {
    let days: Vec<Expr> = dates.iter().map(|d| lit(ScalarValue::Date32(Some(days_since_epoch(*d))))).collect();
    match days.as_slice() {
        [one] => col(PARTITION).eq(one.clone()),
        _ => col(PARTITION).in_list(days, false),
    }
}

fn batch(day: &DayRejects<'_>) -> Result<RecordBatch> {
    let n = day.rejects.len();
    RecordBatch::try_new(
        arrow_schema(),
        vec![
            Arc::new(Date32Array::from(vec![days_since_epoch(day.date); n])),
            Arc::new(Int64Array::from_iter_values(day.rejects.iter().map(|r| r.line as i64))),
            Arc::new(StringArray::from_iter_values(day.rejects.iter().map(|r| r.raw.as_str()))),
            Arc::new(StringArray::from_iter_values(day.rejects.iter().map(|r| r.reason.as_str()))),
            Arc::new(StringArray::from(vec![day.source_uri; n])),
            Arc::new(StringArray::from(vec![day.run_id; n])),
        ],
    )
    .map_err(|e| Error::internal(Stage::Rejects, day.source_uri, e))
}

/// The rows of the partitions of `dates` in `table` (as loaded), in the
/// rejects schema.
pub async fn read_days(
    table: &DeltaTable,
    location: &Location,
    dates: &BTreeSet<NaiveDate>,
) -> Result<Vec<RecordBatch>> {
    let df_error = |e| Error::datafusion(Stage::Rejects, location, e);
    if dates.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = crate::session::context();
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Rejects, location, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Rejects, location, e))?;
    let columns: Vec<Expr> = arrow_schema().fields().iter().map(|f| col(f.name())).collect();
    let dates: Vec<NaiveDate> = dates.iter().copied().collect();
    let batches: Vec<RecordBatch> = ctx
        .read_table(provider)
        .and_then(|df| df.filter(days_predicate(&dates)))
        .and_then(|df| df.select(columns))
        .map_err(df_error)?
        .execute_stream()
        .await
        .map_err(df_error)?
        .try_collect()
        .await
        .map_err(df_error)?;
    // Partition columns come back dictionary- or view-typed: cast to the schema.
    batches
        .iter()
        .map(|b| {
            let columns = arrow_schema()
                .fields()
                .iter()
                .zip(b.columns())
                .map(|(f, c)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            RecordBatch::try_new(arrow_schema(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(Stage::Rejects, location, e))
}

/// The date's rejects in `table` (as loaded), by line.
pub async fn content(table: &DeltaTable, location: &Location, date: NaiveDate) -> Result<Content> {
    if crate::table::files_for_partition(table, location, PARTITION, date).await?.is_empty() {
        return Ok(Vec::new());
    }
    let batches = read_days(table, location, &BTreeSet::from([date])).await?;
    let mut rows = Vec::new();
    for batch in batches {
        let (lines, raw, reason) = (
            batch.column(1).as_primitive::<Int64Type>(),
            batch.column(2).as_string::<i32>(),
            batch.column(3).as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            rows.push((lines.value(row) as u64, raw.value(row).to_string(), reason.value(row).to_string()));
        }
    }
    rows.sort();
    Ok(rows)
}

/// The `txn` application id under which a table commit records the
/// rejects version of its date. Delta keeps the latest value per id in
/// every snapshot (and checkpoint), so the current pairing of a date is
/// read without walking the history.
pub mod pairing {
    use chrono::NaiveDate;
    use deltalake::DeltaTable;

    use crate::error::{Error, Result, Stage};
    use crate::storage::Location;

    pub fn app_id(date: NaiveDate) -> String {
        format!("shoplake-rejects/{date}")
    }

    /// The rejects version recorded for `date` by the table as loaded, if any.
    pub async fn recorded(table: &DeltaTable, location: &Location, date: NaiveDate) -> Result<Option<i64>> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Rejects, location, e))?;
        snapshot
            .transaction_version(table.log_store().as_ref(), app_id(date))
            .await
            .map_err(|e| Error::delta(Stage::Rejects, location, e))
    }
}
