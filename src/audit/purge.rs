//! `shoplake erase --purge` (issue #27, item 3): after an erasure, the value
//! is taken out of the table's past too, physically.
//!
//! * The data files and change-data files holding it are deleted at once,
//!   whatever the retention, and only they: every other file, and so every
//!   version that did not read one of them, stays for time travel. Which
//!   files hold it is what `erase --verify` finds, object by object.
//! * On S3, every version of those objects goes (a versioned bucket keeps
//!   a deleted object as a noncurrent version), and every noncurrent
//!   version of any object that holds the value.
//! * Statistics: a load collects none for `erasable` columns
//!   (`crate::table::spec::stats_columns`), so an erasure by one of them
//!   leaves the log clean. The key's statistics are kept (skipping files by
//!   key is worth it), so a commit or checkpoint may hold a key erased, as
//!   may one another engine wrote: then a checkpoint is written at the
//!   latest version and every log file up to the newest holding the value
//!   is expired, as Delta's own log retention does; the versions that only
//!   those files described go with them.
//! * The versions that can no longer be read are recorded, before anything
//!   is deleted, as a table property `shoplake.purged.<erasure id>` =
//!   `versions:<ranges>;changes:<ranges>`: `history` shows them, `query
//!   --as-of` and `changes` refuse them (exit 2) naming the erasure. A purge
//!   cut short is finished by running it again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, MetadataExt};
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::verify::{verify, Held};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// The table properties recording purges start with this.
pub const PROPERTY_PREFIX: &str = "shoplake.purged.";

/// What purging one table (or rejects table) did.
#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub table: String,
    pub erasure_id: String,
    /// Data and change-data files deleted (paths under the table).
    pub files_deleted: Vec<String>,
    /// S3 object versions deleted (every version of those files, and
    /// noncurrent versions holding the value).
    pub object_versions_deleted: u64,
    /// Versions that can no longer be read, and versions whose changes can no longer be read.
    pub versions_unreadable: String,
    pub changes_unreadable: String,
    /// Log files up to this version were expired (they held the value).
    pub log_expired_through: Option<i64>,
    /// The version recording the purge.
    pub version: Option<i64>,
    /// What still holds the value afterwards (nothing, when it worked).
    pub still_holding: Vec<Held>,
}

/// Purges the value from the table at `location`, for erasure `erasure_id`.
pub async fn purge(storage: &Storage, location: &Location, value: &str, erasure_id: &str) -> Result<Purged> {
    let mut purged = Purged {
        table: location.to_string(),
        erasure_id: erasure_id.to_string(),
        files_deleted: Vec::new(),
        object_versions_deleted: 0,
        versions_unreadable: String::new(),
        changes_unreadable: String::new(),
        log_expired_through: None,
        version: None,
        still_holding: Vec::new(),
    };
    let Some(table) = storage.open_table(location).await? else { return Ok(purged) };
    let holding = verify(storage, location, value).await?.holding;
    if holding.is_empty() {
        return Ok(purged);
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let current: BTreeSet<String> = snapshot.log_data().iter().map(|file| file.path().to_string()).collect();
    let files: BTreeSet<String> =
        holding.iter().filter(|h| !h.in_log() && h.version_id.is_none()).map(|h| decoded(&h.path)).collect();
    if let Some(file) = files.iter().find(|f| current.contains(*f)) {
        return Err(Error::usage(
            Stage::Write,
            location,
            format!("the latest version still holds the value ({file}): erase it first, then purge"),
        ));
    }
    let log = read_log(&table, location).await?;
    let latest = crate::storage::version_of(&table);
    let record_version = latest + 1;
    let (mut versions, changes) = unreadable(&log, &files, latest);
    // Log files holding the value: every log file up to the newest of them goes.
    let expire_through =
        holding.iter().filter(|h| h.in_log() && h.version_id.is_none()).filter_map(|h| log_version(&h.path)).max();
    if let Some(through) = expire_through {
        // The versions after it are read from the next checkpoint on.
        let next_checkpoint = log.checkpoints.iter().copied().filter(|c| *c > through).min().unwrap_or(record_version);
        versions.extend(log.first..next_checkpoint);
    }
    purged.versions_unreadable = ranges(&versions);
    purged.changes_unreadable = ranges(&changes);
    purged.log_expired_through = expire_through;

    // Recorded first: a purge cut short is still named, and run again finishes.
    let (name, recorded) = record(snapshot.metadata().configuration(), erasure_id, &versions, &changes);
    let metadata = snapshot
        .metadata()
        .clone()
        .add_config_key(name.clone(), recorded.clone())
        .map_err(|e| Error::internal(Stage::Write, location, e))?;
    let info = json!({
        "purge": {
            "erasure_id": erasure_id,
            "files_deleted": files.len(),
            "versions_unreadable": purged.versions_unreadable,
            "changes_unreadable": purged.changes_unreadable,
            "log_expired_through": expire_through,
        },
        "shoplake_version": env!("CARGO_PKG_VERSION"),
    });
    let properties = CommitProperties::default().with_metadata(crate::table::commit::commit_info(info));
    let operation = DeltaOperation::SetTableProperties { properties: HashMap::from([(name, recorded)]) };
    let version =
        crate::table::commit::commit(&table, location, properties, vec![Action::Metadata(metadata)], operation)
            .await
            .map_err(Error::from)?;
    purged.version = Some(version);

    let (store, root) = storage.object_store(location).await?;
    let under = |relative: &str| StorePath::from(format!("{}/{relative}", root.as_ref().trim_end_matches('/')));
    let mut doomed: BTreeSet<String> = files.clone();
    if let Some(through) = expire_through {
        let mut table = table;
        table.load().await.map_err(|e| Error::delta(Stage::Write, location, e))?;
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| Error::delta(Stage::Write, location, e))?;
        doomed.extend(log.files.iter().filter(|(v, _)| *v <= through).map(|(_, path)| path.clone()));
    }
    for relative in &doomed {
        match store.delete(&under(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::object_store(Stage::Write, location, e)),
        }
    }
    purged.files_deleted = files.into_iter().collect();
    // On S3: every version of what was deleted, and noncurrent versions holding the value.
    if let Some(versions) = storage.object_versions(location).await? {
        let prefix = format!("{}/", root.as_ref().trim_end_matches('/'));
        let relative = |key: &str| decoded(key.strip_prefix(&prefix).unwrap_or(key));
        let noncurrent: BTreeSet<(String, String)> =
            holding.iter().filter_map(|h| h.version_id.as_ref().map(|id| (decoded(&h.path), id.clone()))).collect();
        // A delete marker over a purged noncurrent version hides nothing any more.
        let marked: BTreeSet<&String> = noncurrent.iter().map(|(path, _)| path).collect();
        for version in versions.list(&prefix).await? {
            let path = relative(&version.key);
            let purged_marker = version.delete_marker && marked.contains(&path);
            if doomed.contains(&path) || purged_marker || noncurrent.contains(&(path, version.version_id.clone())) {
                versions.delete(&version).await?;
                purged.object_versions_deleted += 1;
            }
        }
    }
    purged.still_holding = verify(storage, location, value).await?.holding;
    tracing::info!(table = %location, erasure = erasure_id, files = purged.files_deleted.len(),
        versions = %purged.versions_unreadable, "purged");
    Ok(purged)
}

/// The table property recording a purge, merged with an earlier purge of the same erasure.
fn record(
    configuration: &HashMap<String, String>,
    erasure_id: &str,
    versions: &BTreeSet<i64>,
    changes: &BTreeSet<i64>,
) -> (String, String) {
    let name = format!("{PROPERTY_PREFIX}{erasure_id}");
    let (mut versions, mut changes) = (versions.clone(), changes.clone());
    if let Some(earlier) = configuration.get(&name).and_then(|text| Purge::parse(erasure_id, text)) {
        versions.extend(earlier.versions);
        changes.extend(earlier.changes);
    }
    (name, format!("versions:{};changes:{}", ranges(&versions), ranges(&changes)))
}

/// A purge, as a table property records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    pub erasure_id: String,
    /// Versions whose files were purged, or whose log was expired.
    pub versions: BTreeSet<i64>,
    /// Versions whose change data was purged.
    pub changes: BTreeSet<i64>,
}

impl Purge {
    /// The purges `table` records, read off the snapshot it has loaded.
    pub fn of_table(
        table: &deltalake::DeltaTable,
        stage: Stage,
        subject: impl std::fmt::Display,
    ) -> Result<Vec<Purge>> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(stage, subject, e))?;
        Ok(Purge::recorded(snapshot.metadata().configuration()))
    }

    /// The purges a table's properties record.
    pub fn recorded(configuration: &HashMap<String, String>) -> Vec<Purge> {
        let mut purges: Vec<Purge> = configuration
            .iter()
            .filter_map(|(name, text)| Purge::parse(name.strip_prefix(PROPERTY_PREFIX)?, text))
            .collect();
        purges.sort_by(|a, b| a.erasure_id.cmp(&b.erasure_id));
        purges
    }

    fn parse(erasure_id: &str, text: &str) -> Option<Purge> {
        let mut purge =
            Purge { erasure_id: erasure_id.to_string(), versions: BTreeSet::new(), changes: BTreeSet::new() };
        for part in text.split(';') {
            let (what, list) = part.split_once(':')?;
            let set = match what {
                "versions" => &mut purge.versions,
                "changes" => &mut purge.changes,
                _ => return None,
            };
            for range in list.split(',').filter(|r| !r.is_empty()) {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                set.extend(from.parse::<i64>().ok()?..=to.parse::<i64>().ok()?);
            }
        }
        Some(purge)
    }

    /// The purge that made `version` unreadable, if any.
    pub fn of_version(purges: &[Purge], version: i64) -> Option<&Purge> {
        purges.iter().find(|p| p.versions.contains(&version))
    }
}

/// `0-3,7,9-10`.
fn ranges(versions: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i64, i64)> = None;
    for &v in versions {
        run = match run {
            Some((from, to)) if v == to + 1 => Some((from, v)),
            Some(done) => {
                parts.push(range_text(done));
                Some((v, v))
            }
            None => Some((v, v)),
        };
    }
    parts.extend(run.map(range_text));
    parts.join(",")
}

fn range_text((from, to): (i64, i64)) -> String {
    match from == to {
        true => from.to_string(),
        false => format!("{from}-{to}"),
    }
}

/// The files one commit adds, removes, and writes as change data.
#[derive(Default)]
struct CommitFiles {
    added: Vec<String>,
    removed: Vec<String>,
    change_data: Vec<String>,
}

/// What the log still has: each commit's actions on files, its checkpoints, its files.
#[derive(Default)]
struct Log {
    /// The oldest version whose commit file is there.
    first: i64,
    /// By version, the files its commit names.
    commits: BTreeMap<i64, CommitFiles>,
    checkpoints: BTreeSet<i64>,
    /// Every versioned file of the log (commits, checkpoints, checksums): version, path under the table.
    files: Vec<(i64, String)>,
}

async fn read_log(table: &deltalake::DeltaTable, location: &Location) -> Result<Log> {
    let store = table.log_store().object_store(None);
    let fail = |e| Error::object_store(Stage::Write, location, e);
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&StorePath::from("_delta_log"))).try_collect().await.map_err(fail)?;
    let mut log = Log::default();
    for meta in listed {
        let path = meta.location.to_string();
        let Some(version) = log_version(&path) else { continue };
        log.files.push((version, path.clone()));
        if path.contains(".checkpoint") {
            log.checkpoints.insert(version);
        } else if path.ends_with(".json") {
            let bytes = store.get(&meta.location).await.map_err(fail)?.bytes().await.map_err(fail)?;
            let mut actions = CommitFiles::default();
            for line in String::from_utf8_lossy(&bytes).lines() {
                let Ok(action) = serde_json::from_str::<Value>(line) else { continue };
                let path =
                    |kind: &str| action.get(kind).and_then(|a| a.get("path")).and_then(Value::as_str).map(decoded);
                actions.added.extend(path("add"));
                actions.removed.extend(path("remove"));
                actions.change_data.extend(path("cdc"));
            }
            log.commits.insert(version, actions);
        }
    }
    log.first = log.commits.keys().next().copied().unwrap_or(0);
    Ok(log)
}

/// The versions that read one of `files` (from its add to its remove), and
/// those whose change data is one of them.
fn unreadable(log: &Log, files: &BTreeSet<String>, latest: i64) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let (mut versions, mut changes) = (BTreeSet::new(), BTreeSet::new());
    let mut added: HashMap<&str, i64> = HashMap::new();
    for (&version, CommitFiles { added: adds, removed: removes, change_data: cdcs }) in &log.commits {
        for path in adds.iter().filter(|p| files.contains(*p)) {
            added.entry(path.as_str()).or_insert(version);
        }
        for path in removes.iter().filter(|p| files.contains(*p)) {
            // Added before the oldest commit still there: read from its start.
            let from = added.remove(path.as_str()).unwrap_or(log.first);
            versions.extend(from..version);
        }
        // A commit's changes are its change-data files, or without them its
        // added and removed files.
        let touched = |paths: &Vec<String>| paths.iter().any(|p| files.contains(p));
        if touched(cdcs) || (cdcs.is_empty() && (touched(adds) || touched(removes))) {
            changes.insert(version);
        }
    }
    // Added and never removed, yet not in the latest version: read to the end.
    for from in added.into_values() {
        versions.extend(from..=latest);
    }
    (versions, changes)
}

/// The version a log file is of (`_delta_log/00000000000000000007.json`, a checkpoint, a checksum).
fn log_version(path: &str) -> Option<i64> {
    let name = path.rsplit('/').next()?;
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// A path as Delta's log and object listings may spell it, decoded.
fn decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_reads_back_from_the_property_that_records_it() {
        let versions: BTreeSet<i64> = [0, 1, 2, 3, 7, 9, 10].into();
        let changes: BTreeSet<i64> = [4].into();
        assert_eq!(ranges(&versions), "0-3,7,9-10");
        let (name, text) = record(&HashMap::new(), "e1", &versions, &changes);
        assert_eq!(text, "versions:0-3,7,9-10;changes:4");
        let purges = Purge::recorded(&HashMap::from([(name.clone(), text.clone())]));
        assert_eq!(
            purges,
            vec![Purge { erasure_id: "e1".into(), versions: versions.clone(), changes: changes.clone() }]
        );
        assert_eq!(Purge::of_version(&purges, 7).map(|p| p.erasure_id.as_str()), Some("e1"));
        assert!(Purge::of_version(&purges, 8).is_none());
        let (_, merged) = record(&HashMap::from([(name, text)]), "e1", &[5].into(), &BTreeSet::new());
        assert_eq!(merged, "versions:0-3,5,7,9-10;changes:4", "a second purge adds to the first");
    }

    #[test]
    fn the_versions_a_purged_file_made_unreadable_are_from_its_add_to_its_remove() {
        let mut log = Log { first: 0, ..Log::default() };
        let files = |added: &[&str], removed: &[&str], change_data: &[&str]| CommitFiles {
            added: added.iter().map(|p| p.to_string()).collect(),
            removed: removed.iter().map(|p| p.to_string()).collect(),
            change_data: change_data.iter().map(|p| p.to_string()).collect(),
        };
        log.commits.insert(0, files(&[], &[], &[]));
        log.commits.insert(1, files(&["a"], &[], &[]));
        log.commits.insert(2, files(&["b"], &[], &[]));
        log.commits.insert(3, files(&[], &["a"], &["c"]));
        log.commits.insert(4, files(&[], &["b"], &[]));
        let files: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        let (versions, changes) = unreadable(&log, &files, 4);
        assert_eq!(versions, [1, 2].into(), "a was read by versions 1 and 2, not by 0 nor 3");
        assert_eq!(changes, [1, 3].into(), "a's add was version 1's change; c was version 3's");
        assert_eq!(log_version("_delta_log/00000000000000000012.checkpoint.parquet"), Some(12));
        assert_eq!(log_version("_delta_log/_last_checkpoint"), None);
    }
}
