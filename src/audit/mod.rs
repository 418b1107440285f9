//! The audit commands: what the table said at a version or time, what
//! changed between versions, undoing a load, and keeping the table healthy
//! without losing the history audits rely on.

pub mod changes;
pub mod erase;
pub mod exports;
pub mod history;
pub mod maintain;
pub mod pairing;
pub mod purge;
pub mod query;
pub mod restore;
pub mod verify;

use deltalake::DeltaTable;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

pub use shoplake_parse::arguments::AsOf;

/// The table at `location`; a missing table is a usage error (exit 2).
pub async fn existing_table(storage: &Storage, location: &Location) -> Result<DeltaTable> {
    storage.open_table(location).await?.ok_or_else(|| not_loaded(location))
}

/// The error for a table that is not there: the user's (exit 2).
pub fn not_loaded(location: &Location) -> Error {
    Error::usage(Stage::Query, location, "there is no Delta table here (nothing loaded yet?)")
}

/// The table at `location` as of a version or time. A version that does not
/// exist, or a time before the first version, is a usage error (exit 2).
pub async fn table_as_of(storage: &Storage, location: &Location, as_of: &AsOf) -> Result<DeltaTable> {
    let mut table = existing_table(storage, location).await?;
    let latest = crate::storage::version_of(&table);
    let purges = purge::Purge::of_table(&table, Stage::Query, location)?;
    let refuse_purged = |version: i64| match purge::Purge::of_version(&purges, version) {
        Some(purge) => Err(purged_error(location, version, purge)),
        None => Ok(()),
    };
    match as_of {
        AsOf::Version(v) if *v < 0 || *v > latest => {
            return Err(Error::usage(
                Stage::Query,
                location,
                format!("version {v} does not exist (latest is {latest})"),
            ))
        }
        AsOf::Version(v) if *v == latest => {}
        AsOf::Version(v) => {
            refuse_purged(*v)?;
            table.load_version(*v as u64).await.map_err(|e| version_error(location, e))?
        }
        AsOf::Time(time) => {
            // The latest version committed at or before the time, by the log
            // listing's times (millisecond precision on S3, where a HEAD's
            // Last-Modified has whole seconds): as Spark resolves timestamps.
            let log = history::entries(&table, None).await?;
            // Delta times are milliseconds; a local file's time has nanoseconds.
            let millis = time.timestamp_millis();
            let chosen = log.iter().filter(|e| e.timestamp.timestamp_millis() <= millis).map(|e| e.version).max();
            match chosen {
                Some(v) if v == latest => {}
                Some(v) => {
                    refuse_purged(v)?;
                    table.load_version(v as u64).await.map_err(|e| version_error(location, e))?
                }
                None => {
                    let first = log.iter().min_by_key(|e| e.version).map(|e| e.timestamp.to_rfc3339());
                    return Err(Error::usage(
                        Stage::Query,
                        location,
                        format!("{time} is before the table's first version ({})", first.unwrap_or_default()),
                    ));
                }
            }
        }
    }
    Ok(table)
}

/// A version a purge made unreadable: the user's to choose another (exit 2).
pub fn purged_error(location: &Location, version: i64, purge: &purge::Purge) -> Error {
    Error::usage(
        Stage::Query,
        location,
        format!(
            "version {version} can no longer be read: erasure {} purged files it read (`shoplake history` shows \
             which versions; docs/privacy.md)",
            purge.erasure_id
        ),
    )
}

fn version_error(location: &Location, e: deltalake::DeltaTableError) -> Error {
    match e {
        deltalake::DeltaTableError::InvalidVersion(_) | deltalake::DeltaTableError::InvalidDateTimeString { .. } => {
            Error::usage(Stage::Query, location, e)
        }
        e => Error::delta(Stage::Query, location, e),
    }
}
