//! The one way shoplake commits to a Delta table: actions on top of the
//! snapshot a command read, with its commit info, and a conflict with a
//! concurrent writer told apart from a failure (a load starts over on the
//! first, a bounded number of times, with jittered backoff).

use std::time::Duration;

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::Action;
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};

use crate::error::{Error, Kind, Stage};
use crate::storage::Location;

/// Attempts before a run gives up on commit conflicts (exit 5).
pub const MAX_ATTEMPTS: u32 = 8;

/// Commits `actions` on top of `table`'s snapshot and returns the new
/// version. delta-rs's post-commit step (reload the table at the new
/// version, list the whole log for expired entries) runs only when the
/// commit is due a checkpoint: otherwise it is two more log listings on S3
/// per load for nothing the load needs (the caller knows what it wrote).
pub(crate) async fn commit(
    table: &DeltaTable,
    location: &Location,
    properties: CommitProperties,
    actions: Vec<Action>,
    operation: DeltaOperation,
) -> Result<i64, Attempt> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let interval = deltalake::table::config::TablePropertiesExt::checkpoint_interval(snapshot.table_config()).get();
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .into_prepared_commit_future()
        .await
        .map_err(|e| commit_error(Stage::Write, location, e))?
        .await
        .map_err(|e| commit_error(Stage::Write, location, e))?;
    let version = committed.version;
    if (version + 1) % interval == 0 {
        // The commit stands whatever happens here: a checkpoint that could
        // not be written is `maintain --checkpoint`'s to write.
        if let Err(error) = committed.await {
            tracing::warn!(%error, version, "the commit is in, but its checkpoint was not written");
        }
    }
    Ok(version as i64)
}

/// The commit info of a table commit: the `shoplake` object, and the same
/// as Delta's `userMetadata` string, which Spark's and Databricks'
/// `DESCRIBE HISTORY` show (they drop keys they do not know).
pub fn commit_info(shoplake: serde_json::Value) -> [(String, serde_json::Value); 2] {
    let user_metadata = serde_json::Value::String(shoplake.to_string());
    [("shoplake".to_string(), shoplake), ("userMetadata".to_string(), user_metadata)]
}

/// Why one attempt at a commit did not commit: a conflict with a
/// concurrent writer (worth reloading and trying again), or a failure.
pub enum Attempt {
    Conflict(String),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(error: Error) -> Self {
        Attempt::Failed(error)
    }
}

impl From<Attempt> for Error {
    fn from(attempt: Attempt) -> Self {
        match attempt {
            Attempt::Failed(error) => error,
            Attempt::Conflict(reason) => {
                Error::new(Stage::Write, Kind::Unavailable, "commit", format!("commit conflict: {reason}"))
            }
        }
    }
}

/// Sorts commit conflicts (worth a retry) from other deltalake errors.
pub fn commit_error(stage: Stage, location: &Location, err: DeltaTableError) -> Attempt {
    let conflict = match &err {
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        ),
        _ => false,
    };
    if conflict {
        Attempt::Conflict(crate::error::flatten(&err))
    } else {
        Attempt::Failed(Error::delta(stage, location, err))
    }
}

/// How long to wait before attempt `attempt + 1`.
pub fn backoff(attempt: u32) -> Duration {
    // Exponential with jitter, so racing writers spread out.
    let base = 100u64 << attempt.min(6);
    let jitter = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
    ) % base;
    Duration::from_millis(base + jitter)
}
