//! The re-load of a date that has rows, once the diff found changes: the
//! date's files are read once, batch by batch, and written again with the
//! changed and deleted rows left out and the export's inserted and updated
//! rows added; one commit removes the old files and adds the new ones.
//!
//! Only the changed rows are held (the diff keeps them); the partition
//! streams through, so a re-load's memory does not grow with the day the
//! way delta-rs's MERGE did (it rewrites the same files but holds its
//! inputs and join state). The rows a commit changed are also written as
//! change-data files (`_change_data/`: `insert`, `update_preimage`,
//! `update_postimage`, `delete`), so the change data feed shows the
//! changed rows, not the whole date removed and added again.
//!
//! Every row is accounted for before anything is committed: the rows
//! copied must be the unchanged ones, the rows left out the updated and
//! deleted ones; otherwise the load fails and the table stays as it was.

use std::collections::HashMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add};
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::DeltaTable;
use futures::StreamExt;

use super::diff::Diff;
use super::files::{change_files, FileLayout};
use super::merge_source::{OP, OP_DELETE, OP_INSERT, OP_UPDATE};
use super::stream::NewFiles;
use super::{Attempt, LoadOutcome, LoadRequest};
use crate::error::{Error, Result, Stage};
use crate::row_hash::key_fingerprint;
use crate::storage::Location;
use crate::validate::ValidBatch;

/// Change types of Delta's change data feed.
const INSERT: &str = "insert";
const UPDATE_PREIMAGE: &str = "update_preimage";
const UPDATE_POSTIMAGE: &str = "update_postimage";
pub(super) const DELETE: &str = "delete";

/// The partition has rows and some differ: rewrite it, in one commit.
/// `written` are the day's rows, if they were written while they were
/// compared (a load); without them (a take-over) the rows that stay are
/// copied from the old files.
pub(super) async fn rewrite_partition(
    table: DeltaTable,
    request: &LoadRequest<'_>,
    diff: Diff,
    written: Option<Vec<Add>>,
    schema: Vec<Action>,
    properties: CommitProperties,
) -> Result<LoadOutcome, Attempt> {
    let LoadRequest { def, location, date, .. } = *request;
    let key = def.day_key();
    let layout = FileLayout::of(&table, def, location)?;
    let fail = |e: String| Error::internal(Stage::Write, location, e);

    // What happens to each existing row whose key changed: its old values
    // are an update's pre-image, or a delete.
    let leaving = leaving_rows(&diff, key, location)?;
    let removes = partition_files(&table, location, &def.partition_by, date)?;
    let paths: Vec<String> = removes.iter().map(|r| r.path.clone()).collect();

    let mut copy = written.is_none().then(|| NewFiles::with_layout(layout.clone(), location));
    let mut changes = ChangeFiles::new(&layout);
    // The old files are read for the rows that stay (when they are copied)
    // and for the rows that leave (the change feed's pre-images, deletes).
    let scanned = copy.is_some() || !leaving.is_empty();
    let (copied, left_out) = match scanned {
        true => {
            let old = OldRows { table: &table, request, layout: &layout, paths: &paths, leaving: &leaving };
            old.scan(&mut changes, copy.as_mut()).await?
        }
        false => (0, 0),
    };
    // The export's new and changed rows.
    let mut arrived = 0u64;
    for rows in diff.changes.iter().filter(|rows| rows.num_rows() > 0) {
        let ops = rows.column_by_name(OP).expect("own column").as_string::<i32>();
        let types: StringArray =
            ops.iter().map(|op| Some(if op == Some(OP_INSERT) { INSERT } else { UPDATE_POSTIMAGE })).collect();
        changes.write(&layout, rows, types, location).await?;
        arrived += rows.num_rows() as u64;
        if let Some(copy) = &mut copy {
            copy.write(ValidBatch { seq: 0, rows: layout.conform(rows, location)? }).await?;
        }
    }
    let adds = match (copy, written) {
        (Some(copy), _) => copy.finish(location, date, &[]).await?,
        (None, Some(written)) => written,
        (None, None) => unreachable!("rows are copied when none were written"),
    };
    let cdc = changes.finish(location).await?;

    // Every row accounted for, or nothing is committed: the files hold the
    // day's rows, the rows that stayed are the unchanged ones, the rows
    // that left the updated and deleted ones.
    let in_files = rows_in(&adds).map_err(fail)?;
    let expected_rows = diff.inserted + diff.updated + diff.unchanged;
    let stayed_right = !scanned || copied == diff.unchanged;
    if in_files != expected_rows
        || !stayed_right
        || left_out != diff.updated + diff.deleted
        || arrived != diff.inserted + diff.updated
    {
        return Err(fail(format!(
            "the rewrite of {date} does not add up: its files hold {in_files} rows for {expected_rows} planned; \
             {copied} stayed, {left_out} left and {arrived} arrived for {} unchanged, {} updated or deleted and \
             {} inserted or updated",
            diff.unchanged,
            diff.updated + diff.deleted,
            diff.inserted + diff.updated
        ))
        .into());
    }

    let (files_added, files_removed) = (adds.len() as u64, removes.len() as u64);
    let bytes_added = adds.iter().map(|a| a.size.max(0) as u64).sum();
    let mut actions: Vec<Action> = schema;
    actions.extend(removes.into_iter().map(Action::Remove));
    actions.extend(adds.into_iter().map(Action::Add));
    actions.extend(cdc.into_iter().map(Action::Cdc));
    let version = crate::table::commit::commit(
        &table,
        location,
        properties,
        actions,
        merge_operation(&def.partition_by, key, date),
    )
    .await?;
    Ok(LoadOutcome {
        table_version: version,
        committed: true,
        inserted: diff.inserted,
        updated: diff.updated,
        deleted: diff.deleted,
        unchanged: diff.unchanged,
        rows_before: diff.current_rows,
        files_added,
        files_removed,
        rejects_version: 0,
        added_columns: Vec::new(),
        bytes_added,
    })
}

/// The date's old files, read once for what the rewrite needs of them.
struct OldRows<'a> {
    table: &'a DeltaTable,
    request: &'a LoadRequest<'a>,
    layout: &'a FileLayout,
    paths: &'a [String],
    /// Key fingerprint of each row that leaves → its change type.
    leaving: &'a HashMap<u128, &'static str>,
}

impl OldRows<'_> {
    /// The rows that leave go to the change files (an update's pre-image,
    /// or a delete); the rest are copied, when they are. Returns (rows
    /// that stayed, rows that left).
    async fn scan(&self, changes: &mut ChangeFiles, mut copy: Option<&mut NewFiles>) -> Result<(u64, u64)> {
        let LoadRequest { def, location, date, .. } = *self.request;
        let fail = |e: String| Error::internal(Stage::Write, location, e);
        // The table's columns (one the load adds reads as null in old rows).
        let columns: Vec<&str> = self
            .layout
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|c| crate::table::spec::has_column(self.table, c))
            .collect();
        let (mut copied, mut left_out) = (0u64, 0u64);
        let mut scan = super::diff::scan(self.table, location, def, date, self.paths, &columns).await?;
        while let Some(batch) = scan.next().await {
            let batch = batch.map_err(|e| Error::datafusion(Stage::Write, location, e))?;
            let ids = cast(batch.column_by_name(def.day_key()).expect("scanned the key"), &DataType::Utf8)
                .map_err(|e| fail(e.to_string()))?;
            let kinds: Vec<Option<&str>> = ids
                .as_string::<i32>()
                .iter()
                .map(|id| id.and_then(|id| self.leaving.get(&key_fingerprint(id)).copied()))
                .collect();
            let leaves = BooleanArray::from(kinds.iter().map(|k| k.is_some()).collect::<Vec<_>>());
            if leaves.true_count() > 0 {
                let old = filter_record_batch(&batch, &leaves).map_err(|e| fail(e.to_string()))?;
                let types = StringArray::from(kinds.iter().flatten().copied().collect::<Vec<_>>());
                changes.write(self.layout, &old, types, location).await?;
                left_out += old.num_rows() as u64;
            }
            copied += (batch.num_rows() - leaves.true_count()) as u64;
            if let Some(copy) = copy.as_deref_mut() {
                let stays = datafusion::arrow::compute::not(&leaves).map_err(|e| fail(e.to_string()))?;
                let kept = filter_record_batch(&batch, &stays).map_err(|e| fail(e.to_string()))?;
                copy.write(ValidBatch { seq: 0, rows: kept }).await?;
            }
        }
        Ok((copied, left_out))
    }
}

/// Rows the files hold, from their statistics.
fn rows_in(adds: &[Add]) -> std::result::Result<u64, String> {
    adds.iter().try_fold(0u64, |sum, add| match add.get_stats() {
        Ok(Some(stats)) => Ok(sum + stats.num_records.max(0) as u64),
        Ok(None) => Err(format!("{} has no statistics", add.path)),
        Err(e) => Err(format!("{}: {e}", add.path)),
    })
}

/// The commit's operation: a MERGE on the key, scoped to the date (the
/// date in the predicate scopes the conflict check to its partition).
fn merge_operation(partition_by: &str, key: &str, date: NaiveDate) -> DeltaOperation {
    let clause = |action: &str, op: &str| MergePredicate {
        action_type: action.to_string(),
        predicate: Some(format!("source.{OP} = '{op}'")),
    };
    DeltaOperation::Merge {
        predicate: Some(format!("{partition_by} = '{date}'")),
        merge_predicate: Some(format!("target.{partition_by} = '{date}' AND target.{key} = source.{key}")),
        matched_predicates: vec![clause("delete", OP_DELETE), clause("update", OP_UPDATE)],
        not_matched_predicates: vec![clause("insert", OP_INSERT)],
        not_matched_by_source_predicates: Vec::new(),
    }
}

/// The key fingerprints whose stored row leaves the partition, and the
/// change type of its old values (an update's pre-image, or a delete).
fn leaving_rows(diff: &Diff, key: &str, location: &Location) -> Result<HashMap<u128, &'static str>> {
    let mut leaving: HashMap<u128, &'static str> = diff.deleted_keys.iter().map(|deleted| (*deleted, DELETE)).collect();
    for batch in &diff.changes {
        let ops = batch.column_by_name(OP).expect("own column").as_string::<i32>();
        let ids = batch
            .column_by_name(key)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::internal(Stage::Write, location, format!("the changes' {key} is not text")))?;
        for (id, op) in ids.iter().zip(ops.iter()) {
            if let (Some(id), Some(OP_UPDATE)) = (id, op) {
                leaving.insert(key_fingerprint(id), UPDATE_PREIMAGE);
            }
        }
    }
    Ok(leaving)
}

/// The `remove` actions of every file the table holds for the date.
pub(super) fn partition_files(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<Vec<deltalake::kernel::Remove>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let day = date.to_string();
    let key = crate::features::mapping::ColumnMapping::of(table, location)?.partition_key(partition_by);
    Ok(snapshot
        .log_data()
        .iter()
        .filter(|file| file.partition_values_map().get(&key).cloned().flatten().as_deref() == Some(&day))
        .map(|file| file.remove_action(true))
        .collect())
}

/// The change-data files of the commit (none when the table does not
/// record changes).
pub(super) struct ChangeFiles {
    writer: Option<deltalake::datafile::writer::DeltaWriter>,
}

impl ChangeFiles {
    pub(super) fn new(layout: &FileLayout) -> Self {
        ChangeFiles { writer: layout.change_data_feed.then(|| layout.change_writer()) }
    }

    pub(super) async fn write(
        &mut self,
        layout: &FileLayout,
        rows: &RecordBatch,
        types: StringArray,
        location: &Location,
    ) -> Result<()> {
        let Some(writer) = &mut self.writer else { return Ok(()) };
        let changes = layout.as_changes(rows, types, location)?;
        layout.write(writer, &changes, location).await
    }

    pub(super) async fn finish(self, location: &Location) -> Result<Vec<deltalake::kernel::AddCDCFile>> {
        match self.writer {
            Some(writer) => {
                Ok(change_files(writer.close().await.map_err(|e| Error::delta(Stage::Write, location, e))?))
            }
            None => Ok(Vec::new()),
        }
    }
}
