//! The audit commands: what the table said at a version or time, what
//! changed between versions, undoing a load, and keeping the table healthy
//! without losing the history audits rely on.

pub mod changes;
pub mod history;
pub mod maintain;
pub mod query;
pub mod restore;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// A point in the table's history, as given to `--as-of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    Version(i64),
    Time(DateTime<Utc>),
}

impl AsOf {
    /// A version number or an RFC 3339 timestamp.
    pub fn parse(text: &str) -> Result<AsOf> {
        if let Ok(version) = text.parse::<i64>() {
            return Ok(AsOf::Version(version));
        }
        DateTime::parse_from_rfc3339(text).map(|t| AsOf::Time(t.with_timezone(&Utc))).map_err(|_| {
            Error::usage(
                Stage::CommandLine,
                "--as-of",
                format!("{text:?} is neither a version number nor an RFC 3339 timestamp"),
            )
        })
    }
}

/// The table at `location`; a missing table is a usage error (exit 2).
pub async fn existing_table(storage: &Storage, location: &Location) -> Result<DeltaTable> {
    storage
        .open_table(location)
        .await?
        .ok_or_else(|| Error::usage(Stage::Query, location, "there is no Delta table here (nothing loaded yet?)"))
}

/// The table at `location` as of a version or time. A version that does not
/// exist, or a time before the first version, is a usage error (exit 2).
pub async fn table_as_of(storage: &Storage, location: &Location, as_of: &AsOf) -> Result<DeltaTable> {
    let mut table = existing_table(storage, location).await?;
    let latest = crate::storage::version_of(&table);
    match as_of {
        AsOf::Version(v) if *v < 0 || *v > latest => {
            return Err(Error::usage(
                Stage::Query,
                location,
                format!("version {v} does not exist (latest is {latest})"),
            ))
        }
        AsOf::Version(v) if *v == latest => {}
        AsOf::Version(v) => table.load_version(*v as u64).await.map_err(|e| version_error(location, e))?,
        AsOf::Time(time) => {
            let first = history::commit_time(&table, 0).await?;
            if let Some(first) = first {
                // Delta resolves times to the millisecond.
                if time.timestamp_millis() < first.timestamp_millis() {
                    return Err(Error::usage(
                        Stage::Query,
                        location,
                        format!("{time} is before the table's first version ({first})"),
                    ));
                }
            }
            table.load_with_datetime(*time).await.map_err(|e| version_error(location, e))?;
        }
    }
    Ok(table)
}

/// When the rejects table matched version `version` of the table: a run
/// writes its rejects right after its table commit, so that is just before
/// the next version was committed. `None` means the rejects table's latest state.
pub async fn rejects_time_for(table: &DeltaTable, version: i64) -> Result<Option<DateTime<Utc>>> {
    if version >= crate::storage::version_of(table) {
        return Ok(None);
    }
    Ok(history::commit_time(table, version + 1).await?.map(|next| next - chrono::Duration::milliseconds(1)))
}

fn version_error(location: &Location, e: deltalake::DeltaTableError) -> Error {
    match e {
        deltalake::DeltaTableError::InvalidVersion(_) | deltalake::DeltaTableError::InvalidDateTimeString { .. } => {
            Error::usage(Stage::Query, location, e)
        }
        e => Error::delta(Stage::Query, location, e),
    }
}
