//! A Delta table as shoplake makes and commits to it, whoever else writes
//! to it: what it is created with ([`spec`]) and the one way a commit is
//! made and a conflict recognised ([`commit`]).

pub mod commit;
pub mod spec;

use chrono::NaiveDate;
use deltalake::DeltaTable;

use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// The data files of a date partition.
pub async fn files_for_partition(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<Vec<String>> {
    use deltalake::{FilterOp, FilterValue};
    let day = date.to_string();
    let filter = (partition_by, FilterOp::Eq, FilterValue::Scalar(day.as_str()));
    let files = table.get_files_by_partitions(&[filter]).await.map_err(|e| Error::delta(Stage::Write, location, e))?;
    Ok(files.into_iter().map(|p| p.to_string()).collect())
}

/// The dates `table`'s current files are partitioned by (`partition_by`).
pub fn partition_dates(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    stage: Stage,
) -> Result<std::collections::BTreeSet<NaiveDate>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(stage, location, e))?;
    Ok(snapshot
        .log_data()
        .iter()
        .filter_map(|file| file.partition_values_map().get(partition_by).cloned().flatten())
        .filter_map(|day| shoplake_parse::values::ymd(&day))
        .collect())
}
