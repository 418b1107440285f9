//! `shoplake erase --verify`: where a value still is (issue #27, item 4).
//! Reads every object under a table and its rejects table (data files,
//! change-data files, commit files, checkpoints, whatever else is there),
//! current or not, and names each one holding the value: as a whole field
//! of a row or a rejected line, or as a JSON string (the statistics of the
//! log and checkpoints). The evidence, by object, is the answer to "is it
//! gone?"; a non-zero exit says it is not.
//!
//! An erasure alone leaves the value in older versions (their files, the
//! commits' statistics, the erasure's own `delete` change-data files):
//! verify names them until they are purged. On S3, every noncurrent
//! version of an object (a versioned bucket keeps what was deleted or
//! overwritten) is read too, and named with its version id.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use object_store::ObjectStore;
use serde::Serialize;

use crate::erasure::raw_fields;
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// What verifying one table (or rejects table) found.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub table: String,
    /// Objects read: current ones and, on S3, noncurrent versions.
    pub objects_checked: u64,
    /// Noncurrent S3 versions among them.
    pub noncurrent_checked: u64,
    /// Objects holding the value: their path under the table, and what they are.
    pub holding: Vec<Held>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub path: String,
    pub kind: &'static str,
    /// The S3 version id of a noncurrent version (none for a current object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl Held {
    /// A file of the log (a commit, a checkpoint), as opposed to data.
    pub fn in_log(&self) -> bool {
        self.path.starts_with("_delta_log/")
    }
}

/// Reads every object under `location` for `value`, and on S3 every
/// noncurrent version of one.
pub async fn verify(storage: &Storage, location: &Location, value: &str) -> Result<Evidence> {
    let (store, root) = storage.object_store(location).await?;
    let mut evidence =
        Evidence { table: location.to_string(), objects_checked: 0, noncurrent_checked: 0, holding: Vec::new() };
    let mut listing = store.list(Some(&root));
    let mut objects: Vec<(object_store::path::Path, Option<String>)> = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::object_store(Stage::Query, location, e))?;
        objects.push((meta.location, None));
    }
    if let Some(versions) = storage.object_versions(location).await? {
        let prefix = format!("{}/", root.as_ref().trim_end_matches('/'));
        for version in versions.list(&prefix).await? {
            if !version.is_latest && !version.delete_marker {
                objects.push((object_store::path::Path::from(version.key), Some(version.version_id)));
                evidence.noncurrent_checked += 1;
            }
        }
    }
    objects.sort();
    for (path, version_id) in objects {
        let relative = path.as_ref().strip_prefix(root.as_ref()).unwrap_or(path.as_ref()).trim_start_matches('/');
        let kind = kind_of(relative);
        let options = object_store::GetOptions { version: version_id.clone(), ..Default::default() };
        let fetched = match store.get_opts(&path, options).await {
            Ok(fetched) => fetched,
            // Gone since the listing (a vacuum, a purge beside this one): it holds nothing now.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(Error::object_store(Stage::Query, location, e)),
        };
        let bytes = fetched.bytes().await.map_err(|e| Error::object_store(Stage::Query, location, e))?;
        let holds = match relative.ends_with(".parquet") {
            true => parquet_holds(bytes, value, location)?,
            false => text_holds(&String::from_utf8_lossy(&bytes), value),
        };
        evidence.objects_checked += 1;
        if holds {
            evidence.holding.push(Held { path: relative.to_string(), kind, version_id });
        }
    }
    Ok(evidence)
}

fn kind_of(relative: &str) -> &'static str {
    match relative {
        p if p.starts_with("_delta_log/") && p.contains(".checkpoint") => "checkpoint",
        p if p.starts_with("_delta_log/") && p.ends_with(".json") => "commit",
        p if p.starts_with("_delta_log/") => "log",
        p if p.starts_with("_change_data/") || p.contains("/_change_data/") => "change data",
        p if p.ends_with(".parquet") => "data",
        _ => "other",
    }
}

/// A text object (a commit, say) holds the value as a JSON string, or in
/// one (a rejected line's prefix in the statistics), JSON in JSON included
/// (an `add` action's statistics are a JSON document in a string).
fn text_holds(text: &str, value: &str) -> bool {
    if text.contains(&serde_json::Value::String(value.to_string()).to_string()) {
        return true;
    }
    text.lines().any(|line| serde_json::from_str::<serde_json::Value>(line).is_ok_and(|json| json_holds(&json, value)))
}

fn json_holds(json: &serde_json::Value, value: &str) -> bool {
    use serde_json::Value;
    match json {
        Value::String(text) => string_holds(text, value),
        Value::Array(items) => items.iter().any(|item| json_holds(item, value)),
        Value::Object(fields) => fields.values().any(|item| json_holds(item, value)),
        _ => false,
    }
}

/// A string holds the value as itself, as a field of a line, or as a JSON string.
fn string_holds(text: &str, value: &str) -> bool {
    if text == value || raw_fields(text).iter().any(|field| field == value) {
        return true;
    }
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|json| json_holds(&json, value))
}

fn parquet_holds(bytes: bytes::Bytes, value: &str, location: &Location) -> Result<bool> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let fail = |e: String| Error::internal(Stage::Query, location, format!("a Parquet file does not read: {e}"));
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| fail(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        if batch.columns().iter().any(|column| array_holds(column, value)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Any string in the array, nested ones included.
fn array_holds(array: &ArrayRef, value: &str) -> bool {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().flatten().any(|s| string_holds(s, value)),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().flatten().any(|s| string_holds(s, value)),
        DataType::Utf8View => array.as_string_view().iter().flatten().any(|s| string_holds(s, value)),
        DataType::Struct(_) => array.as_struct().columns().iter().any(|c| array_holds(c, value)),
        DataType::List(_) => array_holds(array.as_list::<i32>().values(), value),
        DataType::LargeList(_) => array_holds(array.as_list::<i64>().values(), value),
        DataType::Map(_, _) => {
            let map = array.as_map();
            array_holds(map.keys(), value) || array_holds(map.values(), value)
        }
        DataType::Dictionary(_, _) => {
            let values = array.as_any_dictionary().values();
            array_holds(values, value)
        }
        _ => false,
    }
}
