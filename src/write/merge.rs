//! The MERGE of a date's changes: only the rows that differ (inserts,
//! updates, and deletes carried as rows marked `delete`), with the date
//! named literally in the condition, so only that date's files are read or
//! rewritten.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::DeltaTable;

use super::diff::{Diff, OP, OP_DELETE, OP_INSERT, OP_UPDATE};
use super::{commit_error, writer_properties, Attempt, LoadOutcome, LoadRequest};
use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// Rows per batch inside the MERGE. delta-rs's default (8192) spends a
/// tenth of a 1M-row re-load on per-batch overhead in the target scan and
/// join; 64Ki measured 0.25 s faster at the same peak memory (128Ki: slower
/// and more memory).
const MERGE_BATCH_ROWS: usize = 64 * 1024;

/// delta-rs's own session defaults, with [`MERGE_BATCH_ROWS`].
fn merge_session(location: &Location) -> Result<Arc<dyn Session>> {
    let overrides = HashMap::from([("datafusion.execution.batch_size".to_string(), MERGE_BATCH_ROWS.to_string())]);
    let session = DeltaSessionContext::new_with_session_overrides(&overrides)
        .map_err(|e| Error::delta(Stage::Write, location, e))?;
    Ok(Arc::new(session.state()))
}

/// The partition has rows: merge only what differs.
pub(super) async fn merge_changes(
    table: DeltaTable,
    request: &LoadRequest<'_>,
    diff: Diff,
    properties: CommitProperties,
) -> Result<LoadOutcome, Attempt> {
    let LoadRequest { def, location, date, .. } = *request;
    let key = def.day_key();
    let ctx = SessionContext::new();
    let source = ctx.read_batches(diff.changes).map_err(|e| Error::datafusion(Stage::Write, location, e))?;
    // The literal date prunes the scan to the partition and scopes the
    // commit's conflict check to it.
    let on = format!("target.{p} = '{date}' AND target.{key} = source.{key}", p = def.partition_by);
    let merge_error = |e| Attempt::Failed(Error::delta(Stage::Write, location, e));
    let (table, metrics) = table
        .merge(source, on)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(writer_properties(def))
        .with_commit_properties(properties)
        .with_session_state(merge_session(location)?)
        .when_matched_delete(|delete| delete.predicate(format!("source.{OP} = '{OP_DELETE}'")))
        .map_err(merge_error)?
        .when_matched_update(|update| {
            def.value_columns().fold(update.predicate(format!("source.{OP} = '{OP_UPDATE}'")), |u, c| {
                u.update(c.name.as_str(), format!("source.{}", c.name))
            })
        })
        .map_err(merge_error)?
        .when_not_matched_insert(|insert| {
            def.columns.iter().fold(insert.predicate(format!("source.{OP} = '{OP_INSERT}'")), |i, c| {
                i.set(c.name.as_str(), format!("source.{}", c.name))
            })
        })
        .map_err(merge_error)?
        .await
        .map_err(|e| commit_error(Stage::Write, location, e))?;

    tracing::debug!(?metrics, "merge finished");
    let merged = (
        metrics.num_target_rows_inserted as u64,
        metrics.num_target_rows_updated as u64,
        metrics.num_target_rows_deleted as u64,
    );
    if merged != (diff.inserted, diff.updated, diff.deleted) {
        // Should never happen; the table is still consistent, but say so loudly.
        tracing::error!(?merged, planned = ?(diff.inserted, diff.updated, diff.deleted), "merge changed other row counts than planned");
    }
    Ok(LoadOutcome {
        table_version: crate::storage::version_of(&table),
        committed: true,
        inserted: merged.0,
        updated: merged.1,
        deleted: merged.2,
        unchanged: diff.unchanged,
        rows_before: diff.current_rows,
        files_added: metrics.num_target_files_added as u64,
        files_removed: metrics.num_target_files_removed as u64,
        rejects_version: 0,
        added_columns: Vec::new(),
        bytes_added: 0,
    })
}
