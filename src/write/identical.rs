//! An identical re-run that does not parse. Each load records in its
//! commit what it loaded: the export's identity (the hash of its bytes; on
//! S3 also its ETag, size and version id) and a fingerprint of the
//! definition and of every setting that changes the outcome. A later run
//! of the date whose export and settings match that record, where no
//! commit since (by any writer: Spark, a restore, an OPTIMIZE, a schema
//! change) touched the date ([`DateProvenance`]) and the date's rejects
//! are as that load left them, changes nothing: it reports what that load
//! reported, without parsing the export, and on S3 without downloading it.
//! Whatever is uncertain takes the full diff.

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::provenance::{self, DateProvenance, LastLoad};
use crate::error::Result;
use crate::rejects;
use crate::source::{self, SourceFile};
use crate::storage::{Location, Storage};

/// What a load's outcome depends on besides the export: the definition,
/// the settings that can refuse or change it, the rejects table, this
/// program's version.
pub fn load_fingerprint(
    def: &crate::definition::TableDefinition,
    max_reject_ratio: f64,
    guards: super::Guards,
    rejects: &Location,
    pii_key: Option<String>,
) -> String {
    let settings = json!({
        "definition": def.fingerprint,
        // Another PII key writes other values: not a repeat.
        "pii_key": pii_key,
        "max_reject_ratio": max_reject_ratio,
        "max_delete_ratio": guards.max_delete_ratio,
        "allow_empty": guards.allow_empty,
        "rejects": rejects.to_string(),
        "shoplake": env!("CARGO_PKG_VERSION"),
    });
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(settings.to_string().as_bytes()))
}

/// The export's identity, as a load records it.
pub fn source_fingerprint(file: &SourceFile, digest: Option<u128>) -> Value {
    json!({
        "file": file.uri(),
        "size": file.size,
        "etag": file.e_tag,
        "version": file.version,
        "xxh3_128": digest.map(|d| format!("{d:032x}")),
    })
}

/// The load this run repeats, if it provably changes nothing: the run's
/// [`load_fingerprint`] and export are the last load's, nothing touched
/// the date since, and the date's rejects (in `rejects`) are as it left them.
pub async fn repeated_load<'p>(
    storage: &Storage,
    date: NaiveDate,
    rejects: &Location,
    fingerprint: &str,
    file: &SourceFile,
    provenance: &'p DateProvenance,
) -> Result<Option<&'p LastLoad>> {
    let Some(last) = provenance.untouched_since_last_load() else { return Ok(None) };
    let recorded = &last.info;
    if recorded.get("load_fingerprint").and_then(Value::as_str) != Some(fingerprint) {
        return Ok(None);
    }
    let source = &recorded["source_fingerprint"];
    if source["file"].as_str() != Some(file.uri().as_str()) || source["size"].as_u64() != Some(file.size) {
        return Ok(None);
    }
    let same_object = match (&file.location, &file.e_tag, source["etag"].as_str()) {
        // S3: the object's identity, without downloading it.
        (Location::S3 { .. }, Some(etag), Some(recorded_etag)) => {
            etag == recorded_etag && file.version.as_deref() == source["version"].as_str()
        }
        // A local file (or a store without ETags): its bytes, read but not parsed.
        _ => {
            let digest = source::digest(storage, file).await?;
            source["xxh3_128"].as_str() == Some(format!("{digest:032x}").as_str())
        }
    };
    if !same_object || !rejects_as_left(storage, date, rejects, recorded).await? {
        return Ok(None);
    }
    tracing::info!(date = %date, version = last.version, "the export and the date are as the last load left them: nothing to do");
    Ok(Some(last))
}

/// Whether the rejects table holds the date's rejects as the load recorded them.
async fn rejects_as_left(storage: &Storage, date: NaiveDate, location: &Location, recorded: &Value) -> Result<bool> {
    let Some(version) = recorded.get("rejects_version").and_then(Value::as_i64) else { return Ok(false) };
    if still_latest(storage, location, version).await? {
        return Ok(true);
    }
    match storage.open_table(location).await? {
        Some(table) => Ok(!provenance::touched_since(&table, location, rejects::PARTITION, date, version).await?),
        None => Ok(false),
    }
}

/// Whether `version` is the table's latest: its commit file is there and
/// its successor's is not (commits are numbered without gaps, and a log
/// cleanup removes only old ones). Two HEADs instead of opening the table:
/// on S3 the open is a listing of the log and reads of its commits.
async fn still_latest(storage: &Storage, location: &Location, version: i64) -> Result<bool> {
    use object_store::ObjectStoreExt;
    let (store, root) = storage.object_store(location).await?;
    let commit = |v: i64| root.clone().join("_delta_log").join(format!("{v:020}.json"));
    let found = |result: object_store::Result<object_store::ObjectMeta>| match result {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(crate::error::Error::object_store(crate::error::Stage::Write, location, e)),
    };
    if !found(store.head(&commit(version)).await)? {
        return Ok(false);
    }
    Ok(!found(store.head(&commit(version + 1)).await)?)
}
