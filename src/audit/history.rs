//! `shoplake history`: one line per table version — when, what operation,
//! which date and file it loaded, by which run, and the row counts — read
//! from the commit log (commit info written by every shoplake commit).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;
use serde_json::Value;

use crate::error::{Error, Result, Stage};

/// One version of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub version: i64,
    /// When the commit was stored; time travel by timestamp uses the same time.
    pub timestamp: DateTime<Utc>,
    pub operation: String,
    /// The "shoplake" commit info object (empty for commits by other tools).
    pub shoplake: serde_json::Map<String, Value>,
    /// Delta's own operation metrics (merge row counts and the like).
    pub metrics: serde_json::Map<String, Value>,
    /// Delta's operation parameters (a RESTORE's version, a WRITE's predicate, ...).
    pub parameters: serde_json::Map<String, Value>,
    /// What a purge took from this version (`crate::audit::purge`): said by [`mark_purged`].
    pub purged: Option<String>,
}

impl HistoryEntry {
    pub fn text(&self, key: &str) -> Option<String> {
        self.shoplake.get(key).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    }

    /// The data-quality checks of the load, in a few words: `4 ok`, `3 ok, 1 warn`.
    pub fn checks_summary(&self) -> Option<String> {
        let checks = self.shoplake.get("checks")?.as_array()?;
        let failed = |severity: &str| {
            checks
                .iter()
                .filter(|c| c["passed"] == false && c["severity"] == severity)
                .map(|c| c["name"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
        };
        let ok = checks.iter().filter(|c| c["passed"] == true).count();
        let mut parts = vec![format!("{ok} ok")];
        let warned = failed("warn");
        if !warned.is_empty() {
            parts.push(format!("{} warn ({})", warned.len(), warned.join(", ")));
        }
        Some(parts.join(", "))
    }

    /// What the commit did about columns, in a few words: columns a schema
    /// change added or a load ignored or loaded as null, and a header
    /// policy that is not the default.
    pub fn columns_summary(&self) -> Option<String> {
        let names = |value: Option<&Value>| -> Vec<String> {
            value
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let mut parts = Vec::new();
        let change = self.shoplake.get("schema_change");
        let added_objects: Vec<String> = change
            .and_then(|c| c.get("added"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        if !added_objects.is_empty() {
            parts.push(format!("added {}", added_objects.join(", ")));
        }
        if let Some(properties) = change.and_then(|c| c.get("properties")).and_then(Value::as_object) {
            if !properties.is_empty() {
                parts.push(format!("set {}", properties.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
        for (key, what) in [("ignored_columns", "ignored"), ("null_columns", "as null")] {
            let listed = names(self.shoplake.get(key));
            if !listed.is_empty() {
                parts.push(format!("{what} {}", listed.join(", ")));
            }
        }
        if let Some(policy) = self.shoplake.get("header_policy").and_then(Value::as_object) {
            for (key, value) in policy {
                if value.as_str().is_some_and(|v| v != "refuse") {
                    parts.push(format!("{key}={}", value.as_str().unwrap_or("?")));
                }
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// A count from shoplake's commit info, else the first of the engine's
    /// own operation metrics that is there (delta-rs and Spark name them differently).
    pub fn count(&self, key: &str, metrics: &[&str]) -> Option<i64> {
        let as_i64 = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        self.shoplake
            .get(key)
            .and_then(as_i64)
            .or_else(|| metrics.iter().find_map(|m| self.metrics.get(*m).and_then(as_i64)))
    }
}

fn commit_path(version: i64) -> StorePath {
    StorePath::from(format!("_delta_log/{version:020}.json"))
}

/// Whether version `version`'s commit file is still in the log.
pub async fn has_commit(table: &DeltaTable, version: i64) -> Result<bool> {
    let store = table.log_store().object_store(None);
    match store.head(&commit_path(version)).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::object_store(Stage::Query, table.table_url(), e)),
    }
}

/// The newest `limit` versions, newest first.
pub async fn entries(table: &DeltaTable, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
    let subject = table.table_url().to_string();
    let store = table.log_store().object_store(None);
    let commits = match commits_of_snapshot(table, limit) {
        Some(commits) => commits,
        None => listed_commits(store.as_ref(), &subject, limit).await?,
    };

    // Commit files are small: fetch several at a time (a long log on S3).
    let fetches = commits.into_iter().map(|(version, meta)| {
        let (store, subject) = (store.clone(), subject.clone());
        async move {
            let fetched =
                store.get(&meta.location).await.map_err(|e| Error::object_store(Stage::Query, &subject, e))?;
            let bytes = fetched.bytes().await.map_err(|e| Error::object_store(Stage::Query, &subject, e))?;
            Ok::<_, Error>(entry(version, meta.last_modified, &bytes))
        }
    });
    futures::stream::iter(fetches).buffered(16).try_collect().await
}

/// The newest `limit` commit files with their times, as the table's open
/// listed them: `None` when some are not in its log segment (older than a
/// checkpoint), then they are listed again. On S3 that saves a listing of
/// the log per `history`.
fn commits_of_snapshot(table: &DeltaTable, limit: Option<usize>) -> Option<Vec<(i64, object_store::ObjectMeta)>> {
    let snapshot = table.snapshot().ok()?;
    let latest = table.version()?;
    (0..=latest)
        .rev()
        .take(limit.unwrap_or(usize::MAX))
        .map(|version| {
            let millis = snapshot.version_timestamp(version)?;
            let meta = object_store::ObjectMeta {
                location: StorePath::from(format!("_delta_log/{version:020}.json")),
                last_modified: DateTime::from_timestamp_millis(millis)?,
                size: 0,
                e_tag: None,
                version: None,
            };
            Some((version as i64, meta))
        })
        .collect()
}

/// The newest `limit` commit files of the log, listed.
async fn listed_commits(
    store: &dyn object_store::ObjectStore,
    subject: &str,
    limit: Option<usize>,
) -> Result<Vec<(i64, object_store::ObjectMeta)>> {
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&StorePath::from("_delta_log")))
        .try_collect()
        .await
        .map_err(|e| Error::object_store(Stage::Query, subject, e))?;
    let mut commits: Vec<(i64, object_store::ObjectMeta)> = listed
        .into_iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?.to_string();
            let version = name.strip_suffix(".json")?.parse::<i64>().ok()?;
            Some((version, meta))
        })
        .collect();
    commits.sort_by_key(|c| std::cmp::Reverse(c.0));
    commits.truncate(limit.unwrap_or(usize::MAX));
    Ok(commits)
}

/// A version's entry, from its commit file.
fn entry(version: i64, timestamp: DateTime<Utc>, commit: &[u8]) -> HistoryEntry {
    let info = String::from_utf8_lossy(commit)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|action| action.get("commitInfo").cloned())
        .unwrap_or(Value::Null);
    let object = |key: &str| info.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
    HistoryEntry {
        version,
        timestamp,
        operation: info.get("operation").and_then(Value::as_str).unwrap_or("?").to_string(),
        shoplake: object("shoplake"),
        metrics: object("operationMetrics"),
        parameters: object("operationParameters"),
        purged: None,
    }
}

/// Marks the versions a purge made unreadable, or whose change data it took.
pub fn mark_purged(entries: &mut [HistoryEntry], table: &DeltaTable) -> Result<()> {
    let purges = crate::audit::purge::Purge::of_table(table, Stage::Query, table.table_url())?;
    for entry in entries.iter_mut() {
        let of = |what: &str, held: &dyn Fn(&crate::audit::purge::Purge) -> bool| {
            purges.iter().find(|p| held(p)).map(|p| format!("{what} (erasure {})", p.erasure_id))
        };
        entry.purged = of("unreadable", &|p| p.versions.contains(&entry.version))
            .or_else(|| of("changes unreadable", &|p| p.changes.contains(&entry.version)));
    }
    Ok(())
}

/// History as a batch, for the table/CSV/JSON renderers.
pub fn to_batch(entries: &[HistoryEntry]) -> RecordBatch {
    let text = |f: &dyn Fn(&HistoryEntry) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(entries.iter().map(f).collect::<Vec<_>>()))
    };
    let count = |key: &str, metrics: &[&str]| -> ArrayRef {
        Arc::new(Int64Array::from(entries.iter().map(|e| e.count(key, metrics)).collect::<Vec<_>>()))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("version", Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.version)))),
        ("timestamp", text(&|e| Some(e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)))),
        ("operation", text(&|e| Some(e.operation.clone()))),
        ("export_date", text(&|e| e.text("export_date"))),
        ("source", text(&|e| e.text("source"))),
        ("run_id", text(&|e| e.text("run_id"))),
        ("rows_read", count("rows_read", &[])),
        ("rows_valid", count("rows_valid", &[])),
        ("rows_rejected", count("rows_rejected", &[])),
        // delta-rs's merge metrics, then Spark's (MERGE, then WRITE / DELETE).
        (
            "rows_inserted",
            count("rows_inserted", &["num_target_rows_inserted", "numTargetRowsInserted", "numOutputRows"]),
        ),
        ("rows_updated", count("rows_updated", &["num_target_rows_updated", "numTargetRowsUpdated", "numUpdatedRows"])),
        ("rows_deleted", count("rows_deleted", &["num_target_rows_deleted", "numTargetRowsDeleted", "numDeletedRows"])),
        ("rows_before", count("rows_before", &[])),
        ("rejects_version", count("rejects_version", &[])),
        ("checks", text(&|e| e.checks_summary())),
        ("columns", text(&|e| e.columns_summary())),
        ("restored_version", count("restored_version", &[])),
        ("purged", text(&|e| e.purged.clone())),
    ];
    let schema = Schema::new(
        columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    debug_assert!(columns.iter().all(|(_, a)| a.data_type() != &DataType::Null));
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect())
        .expect("consistent history batch")
}
