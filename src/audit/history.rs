//! `shoplake history`: one line per table version — when, what operation,
//! which date and file it loaded, by which run, and the row counts — read
//! from the commit log (commit info written by every shoplake commit).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use deltalake::DeltaTable;
use futures::TryStreamExt;
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
}

impl HistoryEntry {
    fn text(&self, key: &str) -> Option<String> {
        self.shoplake.get(key).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    }

    fn count(&self, key: &str, metric: &str) -> Option<i64> {
        let as_i64 = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        self.shoplake.get(key).and_then(as_i64).or_else(|| self.metrics.get(metric).and_then(as_i64))
    }
}

fn commit_path(version: i64) -> StorePath {
    StorePath::from(format!("_delta_log/{version:020}.json"))
}

/// When version `version` was committed (its log file's time), if its log entry still exists.
pub async fn commit_time(table: &DeltaTable, version: i64) -> Result<Option<DateTime<Utc>>> {
    let store = table.log_store().object_store(None);
    match store.head(&commit_path(version)).await {
        Ok(meta) => Ok(Some(meta.last_modified)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::object_store(Stage::Query, table.table_url(), e)),
    }
}

/// The newest `limit` versions, newest first.
pub async fn entries(table: &DeltaTable, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
    let subject = table.table_url().to_string();
    let store = table.log_store().object_store(None);
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&StorePath::from("_delta_log")))
        .try_collect()
        .await
        .map_err(|e| Error::object_store(Stage::Query, &subject, e))?;
    let mut commits: Vec<(i64, object_store::ObjectMeta)> = listed
        .into_iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?.to_string();
            let version = name.strip_suffix(".json")?.parse::<i64>().ok()?;
            Some((version, meta))
        })
        .collect();
    commits.sort_by(|a, b| b.0.cmp(&a.0));
    commits.truncate(limit.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(commits.len());
    for (version, meta) in commits {
        let fetched = store.get(&meta.location).await.map_err(|e| Error::object_store(Stage::Query, &subject, e))?;
        let bytes = fetched.bytes().await.map_err(|e| Error::object_store(Stage::Query, &subject, e))?;
        let info = String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|action| action.get("commitInfo").cloned())
            .unwrap_or(Value::Null);
        let object = |key: &str| info.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        out.push(HistoryEntry {
            version,
            timestamp: meta.last_modified,
            operation: info.get("operation").and_then(Value::as_str).unwrap_or("?").to_string(),
            shoplake: object("shoplake"),
            metrics: object("operationMetrics"),
        });
    }
    Ok(out)
}

/// History as a batch, for the table/CSV/JSON renderers.
pub fn to_batch(entries: &[HistoryEntry]) -> RecordBatch {
    let text = |f: &dyn Fn(&HistoryEntry) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(entries.iter().map(f).collect::<Vec<_>>()))
    };
    let count = |key: &str, metric: &str| -> ArrayRef {
        Arc::new(Int64Array::from(entries.iter().map(|e| e.count(key, metric)).collect::<Vec<_>>()))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("version", Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.version)))),
        ("timestamp", text(&|e| Some(e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)))),
        ("operation", text(&|e| Some(e.operation.clone()))),
        ("export_date", text(&|e| e.text("export_date"))),
        ("source", text(&|e| e.text("source"))),
        ("run_id", text(&|e| e.text("run_id"))),
        ("rows_read", count("rows_read", "")),
        ("rows_valid", count("rows_valid", "")),
        ("rows_rejected", count("rows_rejected", "")),
        ("rows_inserted", count("rows_inserted", "num_target_rows_inserted")),
        ("rows_updated", count("rows_updated", "num_target_rows_updated")),
        ("rows_deleted", count("rows_deleted", "num_target_rows_deleted")),
        ("restored_version", count("restored_version", "")),
    ];
    let schema = Schema::new(
        columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    debug_assert!(columns.iter().all(|(_, a)| a.data_type() != &DataType::Null));
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect())
        .expect("consistent history batch")
}
