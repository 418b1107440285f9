//! `shoplake restore`: a new version whose content equals an earlier one,
//! recorded as a RESTORE in the history. The rejects table is brought back
//! to what it held when that version was committed, so the two agree.

use serde_json::json;

use super::{existing_table, history, rejects_time_for};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};
use deltalake::kernel::transaction::CommitProperties;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub restored_version: i64,
    /// The new version, or `None` when the table already was at that version.
    pub new_version: Option<i64>,
    pub rejects_changed: bool,
}

pub async fn run(
    storage: &Storage,
    location: &Location,
    rejects_location: &Location,
    version: i64,
    run_id: &str,
) -> Result<RestoreOutcome> {
    let table = existing_table(storage, location).await?;
    let latest = crate::storage::version_of(&table);
    if version < 0 || version > latest {
        return Err(Error::usage(
            Stage::Write,
            location,
            format!("version {version} does not exist (latest is {latest})"),
        ));
    }
    if history::commit_time(&table, version).await?.is_none() {
        return Err(Error::usage(Stage::Write, location, format!("version {version} is no longer in the commit log")));
    }
    let rejects_time = rejects_time_for(&table, version).await?;
    let new_version = if version == latest {
        None
    } else {
        let info =
            json!({ "run_id": run_id, "restored_version": version, "shoplake_version": env!("CARGO_PKG_VERSION") });
        let (restored, _metrics) = table
            .restore()
            .with_version_to_restore(version as u64)
            .with_commit_properties(CommitProperties::default().with_metadata([("shoplake".to_string(), info)]))
            .await
            .map_err(|e| Error::delta(Stage::Write, location, e))?;
        Some(crate::storage::version_of(&restored))
    };
    let rejects_changed = match rejects_time {
        Some(time) => restore_rejects(storage, rejects_location, time, run_id).await?,
        None => false,
    };
    Ok(RestoreOutcome { restored_version: version, new_version, rejects_changed })
}

/// Brings the rejects table to its state at `time`.
async fn restore_rejects(
    storage: &Storage,
    location: &Location,
    time: chrono::DateTime<chrono::Utc>,
    run_id: &str,
) -> Result<bool> {
    let Some(current) = storage.open_table(location).await? else {
        return Ok(false);
    };
    let latest = current.version();
    let mut then = storage.open_table(location).await?.expect("just opened");
    let info = CommitProperties::default()
        .with_metadata([("shoplake".to_string(), json!({ "run_id": run_id, "restored_as_of": time.to_rfc3339() }))]);
    match then.load_with_datetime(time).await {
        Ok(()) if then.version() == latest => Ok(false),
        Ok(()) => {
            let target = then.version().unwrap_or(0);
            current
                .restore()
                .with_version_to_restore(target)
                .with_commit_properties(info)
                .await
                .map_err(|e| Error::delta(Stage::Rejects, location, e))?;
            Ok(true)
        }
        // The rejects table did not exist then: no line was rejected yet.
        Err(_) => {
            current
                .delete()
                .with_commit_properties(info)
                .await
                .map_err(|e| Error::delta(Stage::Rejects, location, e))?;
            Ok(true)
        }
    }
}
