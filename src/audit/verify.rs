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
//! verify names them until they are purged. S3 noncurrent versions of a
//! versioned bucket are not read.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::erasure::raw_fields;
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// What verifying one table (or rejects table) found.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub table: String,
    pub objects_checked: u64,
    /// Objects holding the value: their path under the table, and what they are.
    pub holding: Vec<Held>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub path: String,
    pub kind: &'static str,
}

/// Reads every object under `location` for `value`.
pub async fn verify(storage: &Storage, location: &Location, value: &str) -> Result<Evidence> {
    let (store, root) = storage.object_store(location).await?;
    let mut evidence = Evidence { table: location.to_string(), objects_checked: 0, holding: Vec::new() };
    let mut listing = store.list(Some(&root));
    let mut paths = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::object_store(Stage::Query, location, e))?;
        paths.push(meta.location);
    }
    paths.sort();
    for path in paths {
        let relative = path.as_ref().strip_prefix(root.as_ref()).unwrap_or(path.as_ref()).trim_start_matches('/');
        let kind = kind_of(relative);
        let holds = match relative.ends_with(".parquet") {
            true => parquet_holds(&store, &path, value, location).await?,
            false => {
                let bytes = store
                    .get(&path)
                    .await
                    .map_err(|e| Error::object_store(Stage::Query, location, e))?
                    .bytes()
                    .await
                    .map_err(|e| Error::object_store(Stage::Query, location, e))?;
                text_holds(&String::from_utf8_lossy(&bytes), value)
            }
        };
        evidence.objects_checked += 1;
        if holds {
            evidence.holding.push(Held { path: relative.to_string(), kind });
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

/// A text object (a commit, say) holds the value as a JSON string.
fn text_holds(text: &str, value: &str) -> bool {
    text.contains(&serde_json::Value::String(value.to_string()).to_string())
}

/// A string holds the value as itself, as a field of a line, or as a JSON string.
fn string_holds(text: &str, value: &str) -> bool {
    text == value || raw_fields(text).iter().any(|field| field == value) || text_holds(text, value)
}

async fn parquet_holds(
    store: &Arc<dyn ObjectStore>,
    path: &object_store::path::Path,
    value: &str,
    location: &Location,
) -> Result<bool> {
    use deltalake::datafile::DataFileReader;
    let mut batches = deltalake::datafile::reader::ParquetFileReader::new(store.clone())
        .read_file(path.clone())
        .await
        .map_err(|e| Error::delta(Stage::Query, location, e))?;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| Error::delta(Stage::Query, location, e))?;
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
