//! Erasing a value from a table (`shoplake erase`, issue #27): each date
//! that holds a row with the value is read once and written again without
//! those rows, and the rows that left are written as `delete` change-data
//! files, so the change feed shows the erasure as deletes. The caller
//! commits the actions as one version.

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, BooleanArray, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use deltalake::kernel::Action;
use deltalake::DeltaTable;
use futures::StreamExt;

use super::files::FileLayout;
use super::rewrite::{partition_files, ChangeFiles, DELETE};
use super::stream::NewFiles;
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;
use crate::validate::ValidBatch;

/// What erasing the value from the dates does: the actions to commit and
/// the rows each date loses.
#[derive(Debug, Default)]
pub struct ErasePlan {
    pub actions: Vec<Action>,
    /// (date, rows erased, rows kept), by date.
    pub dates: Vec<(NaiveDate, u64, u64)>,
    pub files_removed: u64,
    pub files_added: u64,
}

/// Writes each of `dates` again without the rows whose `column` is `value`.
pub async fn erase_from_dates(
    table: &DeltaTable,
    def: &TableDefinition,
    location: &Location,
    column: &str,
    value: &str,
    dates: &[NaiveDate],
) -> Result<ErasePlan> {
    let fail = |e: String| Error::internal(Stage::Write, location, e);
    let layout = FileLayout::of(table, def, location)?;
    // The table's columns (a column the definition adds later is not in the files).
    let columns: Vec<&str> = layout
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| crate::table::spec::has_column(table, c))
        .collect();
    let mut plan = ErasePlan::default();
    let mut changes = ChangeFiles::new(&layout);
    for date in dates {
        let removes = partition_files(table, location, &def.partition_by, *date)?;
        let paths: Vec<String> = removes.iter().map(|r| r.path.clone()).collect();
        let mut copy = NewFiles::with_layout(layout.clone(), location);
        let (mut erased, mut kept) = (0u64, 0u64);
        let mut scan = super::diff::scan(table, location, def, *date, &paths, &columns).await?;
        while let Some(batch) = scan.next().await {
            let batch = batch.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
            let values =
                batch.column_by_name(column).ok_or_else(|| fail(format!("the table has no column {column}")))?;
            let values = cast(values, &DataType::Utf8).map_err(|e| fail(e.to_string()))?;
            let goes: BooleanArray = values.as_string::<i32>().iter().map(|v| Some(v == Some(value))).collect();
            if goes.true_count() > 0 {
                let gone = filter_record_batch(&batch, &goes).map_err(|e| fail(e.to_string()))?;
                changes.write(&layout, &gone, StringArray::from(vec![DELETE; gone.num_rows()]), location).await?;
                erased += gone.num_rows() as u64;
            }
            let stays = datafusion::arrow::compute::not(&goes).map_err(|e| fail(e.to_string()))?;
            let rows = filter_record_batch(&batch, &stays).map_err(|e| fail(e.to_string()))?;
            kept += rows.num_rows() as u64;
            copy.write(ValidBatch { seq: 0, rows }).await?;
        }
        let adds = copy.finish(location, *date, &[]).await?;
        plan.files_removed += removes.len() as u64;
        plan.files_added += adds.len() as u64;
        plan.actions.extend(removes.into_iter().map(Action::Remove));
        plan.actions.extend(adds.into_iter().map(Action::Add));
        plan.dates.push((*date, erased, kept));
    }
    plan.actions.extend(changes.finish(location).await?.into_iter().map(Action::Cdc));
    Ok(plan)
}
