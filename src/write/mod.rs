//! Stage 5, write: makes the table's partition for the date equal the
//! validated rows, in one Delta commit scoped to that partition.
//!
//! * The partition is empty: the rows were written as they were validated
//!   ([`stream`]: several files at once), and one commit adds them.
//! * It has rows: the rows were compared with it as they were validated
//!   ([`diff`]); if any differ, the date's files are rewritten as they
//!   stream by, with the changed rows in place of the old ones, and one
//!   commit replaces them ([`rewrite`]). Only that date's files are read or
//!   written, and concurrent loads of other dates do not conflict.
//! * Nothing differs: no commit at all.
//!
//! Before its commit, a load writes the date's rejects and records the
//! rejects version holding them in the commit ([`crate::rejects`]); if only
//! the rejects changed, the commit carries no data, just that record.
//!
//! Guards refuse (exit 4, nothing committed) an export that would empty a
//! date that has rows, or delete more than 100 rows and more than
//! `--max-delete-ratio` of them; updates never count as deletions.
//!
//! A commit conflict (another writer touched the same date) is returned as
//! such: the ingest starts over, a bounded number of times.

pub mod diff;
pub mod erase;
mod files;
pub mod identical;
pub mod merge_source;
pub mod provenance;
mod rewrite;
mod spilled;
pub mod stream;

use chrono::NaiveDate;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::DeltaTable;

use crate::definition::TableDefinition;
use crate::error::{Error, Kind, Result, Stage};
use crate::rejects::{self, pairing, DayRejects};
use crate::storage::{Location, Storage};
use crate::table::commit::commit;
pub use crate::table::commit::{backoff, commit_error, commit_info, Attempt, MAX_ATTEMPTS};
use diff::Diff;

/// Rows per Parquet row group: several per day, so a day's partition is
/// read back on all cores.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// How data files are written: fast compression, row groups small enough
/// to scan in parallel, no dictionaries where values are mostly distinct.
pub fn writer_properties(def: &TableDefinition) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    for column in def.columns.iter().filter(|c| !c.dictionary) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column.name.as_str()), false);
    }
    // Fingerprints are random bytes: neither a dictionary nor compression helps.
    let row_hash = ColumnPath::from(def.row_hash_column());
    builder = builder
        .set_column_dictionary_enabled(row_hash.clone(), false)
        .set_column_compression(row_hash, Compression::UNCOMPRESSED);
    builder.build()
}

/// What one load asks of the table.
pub struct LoadRequest<'a> {
    pub def: &'static TableDefinition,
    pub location: &'a Location,
    pub date: NaiveDate,
    pub rejects_location: &'a Location,
    /// The day's rejected lines, written to the rejects table first.
    pub rejects: DayRejects<'a>,
    pub guards: Guards,
    /// Recorded in the commit info under "shoplake".
    pub commit_info: serde_json::Value,
}

/// What a load found to do, worked out while the day's rows went by.
pub enum DayChanges {
    /// A date the table had no rows for: its rows, written, to add.
    New { adds: Vec<Add>, rows: u64 },
    /// A date with rows: what differs, and the day's rows if they were
    /// written while they were compared (the files the date will hold).
    Diff { diff: Diff, written: Option<Vec<Add>> },
}

impl DayChanges {
    /// The diff, if it changes rows.
    fn non_empty_diff(&self) -> Option<&Diff> {
        match self {
            DayChanges::Diff { diff, .. } if !diff.is_empty() => Some(diff),
            _ => None,
        }
    }

    /// What it does to the rows: a diff's counts (a new date inserts all).
    fn as_diff(&self) -> Diff {
        match self {
            DayChanges::New { rows, .. } => Diff { inserted: *rows, ..Diff::default() },
            DayChanges::Diff { diff, .. } => Diff {
                inserted: diff.inserted,
                updated: diff.updated,
                deleted: diff.deleted,
                unchanged: diff.unchanged,
                current_rows: diff.current_rows,
                ..Diff::default()
            },
        }
    }
}

/// What a load may delete without an operator saying so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guards {
    /// Allow an export without valid rows to empty a date that has rows.
    pub allow_empty: bool,
    /// Refuse deleting more than this share of a date's rows (and more than [`SHRINK_FLOOR_ROWS`]).
    pub max_delete_ratio: f64,
}

/// Deleting up to this many rows of a date is never refused by the ratio.
pub const SHRINK_FLOOR_ROWS: u64 = 100;

impl Guards {
    /// Refuses, before anything is written, a load that would empty or
    /// shrink a date beyond what was allowed. Updates are not deletions.
    fn check(&self, location: &Location, date: NaiveDate, incoming_rows: u64, diff: &Diff) -> Result<()> {
        let (deleted, held) = (diff.deleted, diff.current_rows);
        if incoming_rows == 0 && held > 0 {
            if self.allow_empty {
                return Ok(());
            }
            return Err(Error::rejected(
                Stage::Write,
                location,
                format!(
                    "the export has no valid rows for {date}: loading it would delete {held} rows \
                     (pass --allow-empty to empty the date)"
                ),
            ));
        }
        if deleted > SHRINK_FLOOR_ROWS && deleted as f64 > self.max_delete_ratio * held as f64 {
            return Err(Error::rejected(
                Stage::Write,
                location,
                format!(
                    "loading it would delete {deleted} of {held} rows for {date} ({:.1}%), more than \
                     --max-delete-ratio {} allows; a corrected re-export normally deletes far fewer \
                     (pass --max-delete-ratio 1 to allow it)",
                    100.0 * deleted as f64 / held as f64,
                    self.max_delete_ratio
                ),
            ));
        }
        Ok(())
    }
}

/// What the load did to the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOutcome {
    /// The table version after the load (the new one if it committed).
    pub table_version: i64,
    pub committed: bool,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Rows the table held for the date before the load.
    pub rows_before: u64,
    pub files_added: u64,
    pub files_removed: u64,
    /// The rejects table's version holding this load's rejects.
    pub rejects_version: i64,
    /// Columns added to the table before the load's commit (schema evolution).
    pub added_columns: Vec<String>,
    /// Bytes of the data files the commit added.
    pub bytes_added: u64,
}

/// What loading the day would do, with nothing written (`--dry-run`): the
/// same guards as a load, on the same counts.
pub fn plan_day(request: &LoadRequest<'_>, changes: &DayChanges, version: i64) -> Result<LoadOutcome> {
    let diff = changes.as_diff();
    let incoming = diff.inserted + diff.updated + diff.unchanged;
    request.guards.check(request.location, request.date, incoming, &diff)?;
    Ok(LoadOutcome {
        table_version: version,
        committed: false,
        inserted: diff.inserted,
        updated: diff.updated,
        deleted: diff.deleted,
        unchanged: diff.unchanged,
        rows_before: diff.current_rows,
        ..LoadOutcome::default()
    })
}

/// Commits the day: the guards, the rejects, the definition's new columns,
/// then the data's commit. A conflict with a concurrent writer is returned
/// as such (the caller starts the load over). Files written while the rows
/// were compared that the commit does not take (nothing changed, a guard
/// refused, the commit failed) are deleted again, where the store lets the
/// loader delete (else `maintain --vacuum` removes them).
pub async fn commit_day(
    storage: &Storage,
    request: &LoadRequest<'_>,
    table: DeltaTable,
    changes: DayChanges,
) -> Result<LoadOutcome, Attempt> {
    let store = table.object_store();
    let written: Vec<String> = match &changes {
        DayChanges::Diff { written: Some(adds), .. } => adds.iter().map(|a| a.path.clone()).collect(),
        _ => Vec::new(),
    };
    let result = commit_changes(storage, request, table, changes).await;
    // Only a rewrite adds files to a date that had rows: the written ones.
    if !written.is_empty() && !matches!(&result, Ok(outcome) if outcome.files_added > 0) {
        discard(store.as_ref(), request.location, &written).await;
    }
    result
}

/// Refuses, as a conflict, to build the date's commit on `table` when
/// another writer changed the date after the load read it (`read`: the
/// table as the load read it, `None` when there was none yet).
///
/// A commit is checked by Delta only against the commits after the
/// snapshot it is built on. A load that found no table (or took one over)
/// builds on a table opened later, which may already hold another
/// writer's load of the date: committing the day's rows on top would add
/// them beside that writer's, a blind append with nothing to conflict
/// with. So the date's files and its rejects record must be as read.
pub async fn check_date_as_read(
    read: Option<&DeltaTable>,
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<(), Attempt> {
    if read.is_some_and(|read| crate::storage::version_of(read) == crate::storage::version_of(table)) {
        return Ok(());
    }
    let before = match read {
        Some(read) => date_state(read, location, partition_by, date).await?,
        None => (Vec::new(), None),
    };
    let now = date_state(table, location, partition_by, date).await?;
    if before == now {
        return Ok(());
    }
    Err(Attempt::Conflict(format!(
        "another writer loaded {date} while this load read it (version {} holds {} of its files, the load read {})",
        crate::storage::version_of(table),
        now.0.len(),
        before.0.len()
    )))
}

/// The date's active files (sorted) and the rejects version recorded for it.
async fn date_state(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<(Vec<String>, Option<i64>)> {
    let (mut files, _) = provenance::active_files(table, location, partition_by, date).await?;
    files.sort();
    Ok((files, rejects::pairing::recorded(table, location, date).await?))
}

/// Deletes files no commit references, best effort.
async fn discard(store: &dyn object_store::ObjectStore, location: &Location, paths: &[String]) {
    let mut left = 0;
    for path in paths {
        if let Err(error) =
            object_store::ObjectStoreExt::delete(store, &object_store::path::Path::from(path.as_str())).await
        {
            tracing::debug!(%error, path, "could not delete an unreferenced file");
            left += 1;
        }
    }
    if left > 0 {
        tracing::warn!(table = %location, files = left, "files written for a load that committed nothing are left for `maintain --vacuum`");
    }
}

async fn commit_changes(
    storage: &Storage,
    request: &LoadRequest<'_>,
    table: DeltaTable,
    changes: DayChanges,
) -> Result<LoadOutcome, Attempt> {
    let LoadRequest { def, location, date, .. } = *request;
    let version_before = crate::storage::version_of(&table);
    let diff = changes.as_diff();
    let incoming = diff.inserted + diff.updated + diff.unchanged;
    request.guards.check(location, date, incoming, &diff)?;

    // Nothing to change: the rows are the same and the rejects the table
    // names for the date are this load's. Nothing is written, not even to
    // the rejects table (a run that commits nothing must not move it).
    if diff.is_empty() {
        if let Some(recorded) = recorded_rejects_match(storage, &table, request, diff.current_rows).await? {
            return Ok(LoadOutcome {
                table_version: version_before,
                unchanged: diff.unchanged,
                rows_before: diff.current_rows,
                rejects_version: recorded,
                ..LoadOutcome::default()
            });
        }
    }
    // The rejects first: the commit names the version that holds them
    // (`stage` opens the rejects table, creating it if needed: once).
    let rejects_version = rejects::stage(storage, request.rejects_location, def, &request.rejects).await?;
    // Columns the definition added and properties it changed go in the
    // data's own commit: one load, one version. (A table that never held a
    // row takes a changed definition whole, in a commit of its own first.)
    let plan = crate::schema::plan(def, Some(&table), location)?;
    plan.check(def, location)?;
    let (table, plan, metadata) = if plan.replace {
        let schema_info = serde_json::json!({
            "run_id": request.commit_info.get("run_id"),
            "shoplake_version": env!("CARGO_PKG_VERSION"),
        });
        let (table, plan) = crate::schema::apply::apply(table, def, location, schema_info).await?;
        (table, plan, None)
    } else {
        let metadata = crate::schema::apply::evolved_metadata(&table, &plan, location)?;
        (table, plan, metadata)
    };
    let added_columns: Vec<String> = plan.added.iter().map(|a| a.name.clone()).collect();
    let properties = commit_properties(request, &changes, rejects_version, metadata.is_some().then_some(&plan));
    let schema: Vec<Action> = metadata.into_iter().map(Action::Metadata).collect();
    let outcome = match changes {
        DayChanges::New { adds, .. } => commit_new_files(table, request, &diff, schema, adds, properties).await?,
        DayChanges::Diff { diff, .. } if diff.is_empty() => {
            record_pairing(table, request, &diff, schema, properties).await?
        }
        DayChanges::Diff { diff, written } => {
            rewrite::rewrite_partition(table, request, diff, written, schema, properties).await?
        }
    };
    let bytes_added = match outcome.bytes_added {
        0 if outcome.committed => bytes_added(storage, location, outcome.table_version).await,
        known => known,
    };
    Ok(LoadOutcome { rejects_version, added_columns, bytes_added, ..outcome })
}

/// The load's commit properties: its commit info with the counts and the
/// rejects version it pairs with (and the schema change it makes), Spark's
/// MERGE metrics, and the date's `txn` recording the pairing.
fn commit_properties(
    request: &LoadRequest<'_>,
    changes: &DayChanges,
    rejects_version: i64,
    schema_change: Option<&crate::schema::SchemaPlan>,
) -> CommitProperties {
    let diff = changes.as_diff();
    let mut info = request.commit_info.clone();
    if let Some(fields) = info.as_object_mut() {
        for (name, count) in [
            ("rows_inserted", diff.inserted),
            ("rows_updated", diff.updated),
            ("rows_deleted", diff.deleted),
            ("rows_unchanged", diff.unchanged),
            ("rows_before", diff.current_rows),
        ] {
            fields.insert(name.to_string(), count.into());
        }
        fields.insert("rejects_version".to_string(), rejects_version.into());
        if let Some(plan) = schema_change {
            fields.insert("schema_change".to_string(), serde_json::to_value(plan).expect("a plan serializes"));
        }
        // Every row this load leaves for the date has the fingerprint of its
        // values: rows another engine changed were compared by value and
        // rewritten (provenance), so the next load may trust them all.
        fields.insert(provenance::FINGERPRINTS_TRUSTED.to_string(), true.into());
    }
    let mut app_metadata = commit_info(info).to_vec();
    if let Some(diff) = changes.non_empty_diff() {
        // Spark's names for a MERGE's counts, which its DESCRIBE HISTORY shows.
        let metrics = serde_json::json!({
            "numTargetRowsInserted": diff.inserted.to_string(),
            "numTargetRowsUpdated": diff.updated.to_string(),
            "numTargetRowsDeleted": diff.deleted.to_string(),
            "numTargetRowsCopied": diff.unchanged.to_string(),
            "numOutputRows": (diff.unchanged + diff.inserted + diff.updated).to_string(),
        });
        app_metadata.push(("operationMetrics".to_string(), metrics));
    }
    CommitProperties::default()
        .with_metadata(app_metadata)
        .with_application_transaction(Transaction::new(pairing::app_id(request.date), rejects_version))
}

/// A new date's files, written already, added in one commit that replaces
/// the date (it conflicts with any concurrent writer of the date).
async fn commit_new_files(
    table: DeltaTable,
    request: &LoadRequest<'_>,
    diff: &Diff,
    schema: Vec<Action>,
    adds: Vec<Add>,
    properties: CommitProperties,
) -> Result<LoadOutcome, Attempt> {
    let LoadRequest { def, location, date, .. } = *request;
    let files_added = adds.len() as u64;
    let bytes_added = adds.iter().map(|a| a.size.max(0) as u64).sum();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![def.partition_by.clone()]),
        predicate: Some(format!("{} = '{date}'", def.partition_by)),
    };
    let actions = schema.into_iter().chain(adds.into_iter().map(Action::Add)).collect();
    let version = commit(&table, location, properties, actions, operation).await?;
    Ok(LoadOutcome {
        table_version: version,
        committed: true,
        inserted: diff.inserted,
        files_added,
        bytes_added,
        ..LoadOutcome::default()
    })
}

/// The bytes of the data files commit `version` added, read from its commit
/// file (for lineage's output statistics; 0 when it cannot be read).
async fn bytes_added(storage: &Storage, location: &Location, version: i64) -> u64 {
    let read = async {
        let (store, prefix) = storage.object_store(location).await.ok()?;
        let path = prefix.join("_delta_log").join(format!("{version:020}.json"));
        let bytes = object_store::ObjectStoreExt::get(store.as_ref(), &path).await.ok()?.bytes().await.ok()?;
        Some(
            bytes
                .split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
                .filter_map(|action| action.get("add").and_then(|a| a.get("size")).and_then(serde_json::Value::as_u64))
                .sum(),
        )
    };
    read.await.unwrap_or(0)
}

/// The rejects version the table records for the date, if it holds this
/// load's rejects (so an unchanged table needs no commit at all).
async fn recorded_rejects_match(
    storage: &Storage,
    table: &DeltaTable,
    request: &LoadRequest<'_>,
    rows_held: u64,
) -> Result<Option<i64>> {
    let (location, date) = (request.rejects_location, request.date);
    match pairing::recorded(table, request.location, date).await? {
        Some(recorded) if recorded >= 0 => {
            let Some(mut then) = storage.open_table(location).await? else { return Ok(None) };
            let content = match then.load_version(recorded as u64).await {
                Ok(()) => rejects::content(&then, location, date).await,
                Err(e) => Err(Error::delta(Stage::Rejects, location, e)),
            };
            match content {
                Ok(content) => Ok((content == request.rejects.content()).then_some(recorded)),
                // An outage is an error; a version no longer readable is just a record to renew.
                Err(error) if error.kind == Kind::Unavailable => Err(error),
                Err(error) => {
                    tracing::debug!(%error, "the recorded rejects version cannot be read; recording a new one");
                    Ok(None)
                }
            }
        }
        // Never recorded (a date loaded before shoplake recorded pairings, or
        // written by another engine), or forgotten by a restore: only an
        // empty date without rejects needs nothing.
        _ if rows_held == 0 && request.rejects.rejects.is_empty() => Ok(Some(-1)),
        _ => Ok(None),
    }
}

/// The rows are unchanged but the rejects are not: a commit without data
/// that records, for the date, the rejects version holding them. It
/// conflicts with any concurrent load of the same date.
async fn record_pairing(
    table: DeltaTable,
    request: &LoadRequest<'_>,
    diff: &Diff,
    schema: Vec<Action>,
    properties: CommitProperties,
) -> Result<LoadOutcome, Attempt> {
    let LoadRequest { def, location, date, .. } = *request;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![def.partition_by.clone()]),
        predicate: Some(format!("{} = '{date}'", def.partition_by)),
    };
    let version = commit(&table, location, properties, schema, operation).await?;
    Ok(LoadOutcome {
        table_version: version,
        committed: true,
        unchanged: diff.unchanged,
        rows_before: diff.current_rows,
        ..LoadOutcome::default()
    })
}
