//! Who wrote a date's data, read from the table's commit log only (never
//! from the data files): which of the date's active files hold row
//! fingerprints shoplake computed itself, which ones another writer added
//! (Spark, Python deltalake, Trino, a restore), and whether anything touched
//! the date since shoplake last loaded it.
//!
//! A stored `_row_hash` is only trusted in files shoplake's own loads added:
//! an `UPDATE` by another engine rewrites a row's values but keeps its old
//! fingerprint, so rows in other writers' files are compared by value. A
//! commit that only rearranges files (`OPTIMIZE`: `dataChange = false`)
//! passes on the trust of the files it replaced.
//!
//! The log is walked from the newest commit back until every active file of
//! the date is accounted for and shoplake's last load of the date is found.
//! A load that left only its own files behind says so in its commit info
//! ([`FINGERPRINTS_TRUSTED`]), so the walk stops there. Whatever the log no
//! longer holds (cleaned up, never written) counts as another writer's.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// Commit info key (in the `shoplake` object): after this load, every data
/// file of its date holds fingerprints shoplake computed from its values.
pub const FINGERPRINTS_TRUSTED: &str = "fingerprints_trusted";

/// Commits read at once while walking the log back (S3 GETs in flight).
const READ_AHEAD_COMMITS: usize = 16;

/// shoplake's last load of a date, as its commit recorded it.
#[derive(Debug, Clone)]
pub struct LastLoad {
    pub version: i64,
    /// The commit info's `shoplake` object.
    pub info: Value,
}

/// Who wrote what a date's partition holds.
#[derive(Debug, Clone, Default)]
pub struct DateProvenance {
    /// Active files whose stored fingerprints shoplake wrote.
    pub own_files: Vec<String>,
    /// Active files another writer added, or whose origin the log no longer
    /// says: their rows are compared by value.
    pub foreign_files: Vec<String>,
    /// shoplake's last load of the date, if the log still has it.
    pub last_load: Option<LastLoad>,
    /// Rows the date's files hold, by their statistics (`None` when a file
    /// has none): sizes the diff's key index once.
    pub rows: Option<u64>,
    /// Whether a commit after that load added or removed files of the date
    /// (any writer, `OPTIMIZE` included), or changed the table's schema,
    /// properties or protocol.
    touched_since_last_load: bool,
}

impl DateProvenance {
    /// shoplake's last load of the date when nothing has touched the date
    /// since (so the table holds exactly what that load left).
    pub fn untouched_since_last_load(&self) -> Option<&LastLoad> {
        (!self.touched_since_last_load).then_some(self.last_load.as_ref()).flatten()
    }

    /// Whether every fingerprint of the date can be taken as stored.
    pub fn fingerprints_trusted(&self) -> bool {
        self.foreign_files.is_empty()
    }

    /// Reads the provenance of `active_files` (the date's files in `table`'s
    /// current snapshot, as paths relative to the table root, decoded).
    pub async fn read(
        table: &DeltaTable,
        location: &Location,
        partition_by: &str,
        date: NaiveDate,
        active_files: Vec<String>,
    ) -> Result<DateProvenance> {
        let started = std::time::Instant::now();
        let day = date.to_string();
        let key = crate::features::mapping::ColumnMapping::of(table, location)?.partition_key(partition_by);
        let mut walk = Walk::new(active_files);
        let latest = crate::storage::version_of(table);
        let versions = commits_back(table, (0..=latest).rev());
        futures::pin_mut!(versions);
        let mut commits_read = 0u32;
        while let Some(next) = versions.next().await {
            let (version, bytes) = next.map_err(|e| Error::delta(Stage::Write, location, e))?;
            // An older log than the table keeps: the rest is unknown.
            let Some(bytes) = bytes else { break };
            commits_read += 1;
            let commit = Commit::parse(&bytes, &key, &day)
                .map_err(|e| Error::internal(Stage::Write, location, format!("commit {version} of the log: {e}")))?;
            if walk.step(version, commit, &day) {
                break;
            }
        }
        let provenance = walk.finish();
        tracing::debug!(
            date = %date,
            commits_read,
            own_files = provenance.own_files.len(),
            foreign_files = provenance.foreign_files.len(),
            last_load = provenance.last_load.as_ref().map(|l| l.version),
            touched_since_last_load = provenance.touched_since_last_load,
            ms = started.elapsed().as_millis() as u64,
            "read who wrote the date's files"
        );
        Ok(provenance)
    }
}

/// Whether a commit after `since` added or removed files of the date, or
/// changed the table's metadata (the rejects of an identical re-run must
/// be as the load it repeats left them). A commit the log no longer holds
/// counts as a change.
pub async fn touched_since(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
    since: i64,
) -> Result<bool> {
    let day = date.to_string();
    let key = crate::features::mapping::ColumnMapping::of(table, location)?.partition_key(partition_by);
    let latest = crate::storage::version_of(table);
    let versions = commits_back(table, (since + 1..=latest).rev());
    futures::pin_mut!(versions);
    while let Some(next) = versions.next().await {
        let (version, bytes) = next.map_err(|e| Error::delta(Stage::Write, location, e))?;
        let Some(bytes) = bytes else { return Ok(true) };
        let commit = Commit::parse(&bytes, &key, &day)
            .map_err(|e| Error::internal(Stage::Write, location, format!("commit {version} of the log: {e}")))?;
        if commit.touches_day || commit.changes_metadata {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The commit files of `versions`, several read at once, each read once
/// per process (a back-fill walks the same commits for every date).
fn commits_back(
    table: &DeltaTable,
    versions: impl Iterator<Item = i64>,
) -> impl futures::Stream<Item = deltalake::DeltaResult<(i64, Option<bytes::Bytes>)>> {
    let log_store = table.log_store();
    let root = table.table_url().to_string();
    futures::stream::iter(versions)
        .map(move |version| {
            let (log_store, root) = (log_store.clone(), root.clone());
            async move {
                let key = (root, version);
                if let Some(bytes) = COMMITS.lock().expect("commit cache").get(&key) {
                    return Ok((version, Some(bytes.clone())));
                }
                let bytes = log_store.read_commit_entry(version as u64).await?;
                if let Some(bytes) = &bytes {
                    COMMITS.lock().expect("commit cache").insert(key, bytes.clone());
                }
                Ok((version, bytes))
            }
        })
        .buffered(READ_AHEAD_COMMITS)
}

/// Forgets every commit file read so far: a load that starts over after a
/// conflict reads the log as it is now, with nothing carried over.
pub fn forget_read_commits() {
    COMMITS.lock().expect("commit cache").clear();
}

/// Commit files read in this process, by table and version: a commit
/// never changes once written.
static COMMITS: std::sync::LazyLock<std::sync::Mutex<HashMap<(String, i64), bytes::Bytes>>> =
    std::sync::LazyLock::new(Default::default);

/// What the walk has learnt so far.
struct Walk {
    active: Vec<String>,
    /// File → where it came from, once known.
    origin: HashMap<String, Origin>,
    /// Files whose adding commit is still to be found.
    pending: HashSet<String>,
    last_load: Option<LastLoad>,
    touched_since_last_load: bool,
    /// A newer commit changed the metadata (a column dropped and added
    /// again reads null under a new physical name): the fingerprints of
    /// files added before it describe values their rows may no longer read.
    metadata_changed_since: bool,
}

#[derive(Debug, Clone)]
enum Origin {
    Own,
    Foreign,
    /// Rewritten without a data change from these files (`OPTIMIZE`).
    Rearranged(Vec<String>),
}

impl Walk {
    fn new(active: Vec<String>) -> Walk {
        let pending = active.iter().cloned().collect();
        Walk {
            active,
            origin: HashMap::new(),
            pending,
            last_load: None,
            touched_since_last_load: false,
            metadata_changed_since: false,
        }
    }

    /// Takes in one commit (newest first); `true` when nothing older matters.
    fn step(&mut self, version: i64, commit: Commit, day: &str) -> bool {
        let load_of_day = commit.shoplake_load_of.as_deref() == Some(day);
        if self.last_load.is_none() {
            if load_of_day {
                self.last_load = Some(LastLoad { version, info: commit.shoplake.clone().unwrap_or(Value::Null) });
            } else if commit.touches_day || commit.changes_metadata {
                self.touched_since_last_load = true;
            }
        }
        for add in &commit.adds {
            if !self.pending.remove(&add.path) {
                continue;
            }
            let origin = if self.metadata_changed_since {
                Origin::Foreign
            } else if load_of_day {
                Origin::Own
            } else if !add.data_change && !commit.removed_with_data_change {
                // Files rewritten without changing rows carry their rows' fingerprints along.
                self.pending.extend(commit.removes.iter().cloned());
                Origin::Rearranged(commit.removes.clone())
            } else {
                Origin::Foreign
            };
            self.origin.insert(add.path.clone(), origin);
        }
        // A load that left only its own files: everything older is its own too.
        if load_of_day && commit.fingerprints_trusted {
            let origin = if self.metadata_changed_since { Origin::Foreign } else { Origin::Own };
            for path in self.pending.drain() {
                self.origin.insert(path, origin.clone());
            }
        }
        // Files this commit added were written in its metadata; older ones were not.
        self.metadata_changed_since |= commit.changes_metadata;
        self.pending.is_empty() && self.last_load.is_some()
    }

    fn finish(self) -> DateProvenance {
        let mut provenance = DateProvenance {
            last_load: self.last_load,
            touched_since_last_load: self.touched_since_last_load,
            ..DateProvenance::default()
        };
        for path in self.active {
            if trusted(&self.origin, &path, 0) {
                provenance.own_files.push(path);
            } else {
                provenance.foreign_files.push(path);
            }
        }
        provenance
    }
}

/// Whether a file's fingerprints are shoplake's; unknown origins are not.
fn trusted(origin: &HashMap<String, Origin>, path: &str, depth: u32) -> bool {
    // Rearrangements chain (an OPTIMIZE of an OPTIMIZE); a cycle cannot
    // happen in a valid log, but a broken one must not loop.
    if depth > 64 {
        return false;
    }
    match origin.get(path) {
        Some(Origin::Own) => true,
        Some(Origin::Rearranged(sources)) => sources.iter().all(|s| trusted(origin, s, depth + 1)),
        Some(Origin::Foreign) | None => false,
    }
}

/// The commit info key of a commit recording rewritten exports as their
/// dates' loads (`shoplake erase --exports`): date → that load's info.
pub const SOURCE_REWRITES: &str = "source_rewrites";

/// What one commit did to one date.
#[derive(Debug, Default)]
struct Commit {
    /// The commit info's `shoplake` object, if shoplake wrote the commit.
    shoplake: Option<Value>,
    /// The date a shoplake load loaded (not a restore, not maintenance).
    shoplake_load_of: Option<String>,
    fingerprints_trusted: bool,
    /// Files of the date this commit added.
    adds: Vec<FileAction>,
    /// Files of the date this commit removed.
    removes: Vec<String>,
    removed_with_data_change: bool,
    touches_day: bool,
    /// A new schema, properties or protocol.
    changes_metadata: bool,
}

#[derive(Debug)]
struct FileAction {
    path: String,
    data_change: bool,
}

impl Commit {
    /// Parses a commit file (one JSON action per line), keeping what
    /// concerns partition `partition_by = day`.
    fn parse(bytes: &[u8], partition_by: &str, day: &str) -> std::result::Result<Commit, String> {
        let mut commit = Commit::default();
        let mut restore = false;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            let action: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            let Some(object) = action.as_object() else { continue };
            if let Some(info) = object.get("commitInfo") {
                restore = info.get("operation").and_then(Value::as_str) == Some("RESTORE");
                commit.shoplake = info.get("shoplake").cloned();
            } else if let Some(add) = object.get("add") {
                if in_day(add, partition_by, day) {
                    commit.touches_day = true;
                    commit.adds.push(FileAction { path: decoded_path(add)?, data_change: data_change(add) });
                }
            } else if let Some(remove) = object.get("remove") {
                if in_day(remove, partition_by, day) {
                    commit.touches_day = true;
                    commit.removed_with_data_change |= data_change(remove);
                    commit.removes.push(decoded_path(remove)?);
                }
            } else if object.contains_key("metaData") || object.contains_key("protocol") {
                commit.changes_metadata = true;
            }
        }
        if let Some(info) = &commit.shoplake {
            let is_load = info.get("run_id").is_some() && info.get("restored_version").is_none() && !restore;
            if is_load {
                commit.shoplake_load_of = info.get("export_date").and_then(Value::as_str).map(str::to_string);
                commit.fingerprints_trusted = info.get(FINGERPRINTS_TRUSTED).and_then(Value::as_bool) == Some(true);
            }
            // An erasure that rewrote the date's export records it as the
            // date's last load, with the new export (`crate::audit::exports`).
            let rewrite = info.get(SOURCE_REWRITES).and_then(|r| r.get(day)).cloned();
            if let Some(rewrite) = rewrite {
                commit.shoplake_load_of = Some(day.to_string());
                commit.shoplake = Some(rewrite);
            }
        }
        Ok(commit)
    }
}

/// Whether a file action belongs to the date's partition (a file without
/// partition values belongs to none: the table is partitioned by date).
fn in_day(action: &Value, partition_by: &str, day: &str) -> bool {
    action.get("partitionValues").and_then(|p| p.get(partition_by)).and_then(Value::as_str) == Some(day)
}

/// Actions without the flag change data (the protocol's default is true).
fn data_change(action: &Value) -> bool {
    action.get("dataChange").and_then(Value::as_bool).unwrap_or(true)
}

/// The action's path as the snapshot gives it: percent-decoded.
fn decoded_path(action: &Value) -> std::result::Result<String, String> {
    let raw = action.get("path").and_then(Value::as_str).ok_or("a file action without a path")?;
    Ok(percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned())
}

/// Who wrote the date, or `None` when shoplake never loaded it and it has
/// no files (a new date: nothing to walk the log for).
pub async fn of_date(
    table: &DeltaTable,
    location: &Location,
    def: &crate::definition::TableDefinition,
    date: NaiveDate,
) -> Result<Option<DateProvenance>> {
    let (files, rows) = active_files(table, location, &def.partition_by, date).await?;
    if files.is_empty() && crate::rejects::pairing::recorded(table, location, date).await?.is_none() {
        return Ok(None);
    }
    let mut provenance = DateProvenance::read(table, location, &def.partition_by, date, files).await?;
    provenance.rows = rows;
    Ok(Some(provenance))
}

/// The decoded paths of the date's active files, as [`DateProvenance::read`]
/// takes them, and the rows they hold if every file's statistics say.
pub(crate) async fn active_files(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<(Vec<String>, Option<u64>)> {
    use deltalake::{FilterOp, FilterValue};
    let day = date.to_string();
    let filter = (partition_by, FilterOp::Eq, FilterValue::Scalar(day.as_str()));
    let files: Vec<(String, Option<u64>)> = table
        .get_active_add_actions_by_partitions(&[filter])
        .map_ok(|file| (file.path().into_owned(), crate::features::live_rows(&file)))
        .try_collect()
        .await
        .map_err(|e| Error::delta(Stage::Write, location, e))?;
    let rows = files.iter().map(|(_, rows)| *rows).sum();
    Ok((files.into_iter().map(|(path, _)| path).collect(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: &str = "2019-04-01";

    fn add(path: &str, day: &str, data_change: bool) -> String {
        json!({"add": {"path": path, "partitionValues": {"export_date": day}, "dataChange": data_change, "size": 1}})
            .to_string()
    }
    fn remove(path: &str, day: &str, data_change: bool) -> String {
        json!({"remove": {"path": path, "partitionValues": {"export_date": day}, "dataChange": data_change}})
            .to_string()
    }
    fn info(operation: &str, shoplake: Option<Value>) -> String {
        let mut info = json!({"operation": operation});
        if let Some(s) = shoplake {
            info["shoplake"] = s;
        }
        json!({ "commitInfo": info }).to_string()
    }
    fn load(day: &str, trusted: bool) -> Option<Value> {
        Some(json!({"run_id": "r", "export_date": day, FINGERPRINTS_TRUSTED: trusted}))
    }

    /// Walks commits given newest first, as the log would be read.
    fn walk(active: &[&str], commits: &[Vec<String>]) -> DateProvenance {
        let mut walk = Walk::new(active.iter().map(|s| s.to_string()).collect());
        let newest = commits.len() as i64 - 1;
        for (i, lines) in commits.iter().enumerate() {
            let commit = Commit::parse(lines.join("\n").as_bytes(), "export_date", DAY).unwrap();
            if walk.step(newest - i as i64, commit, DAY) {
                break;
            }
        }
        walk.finish()
    }

    #[test]
    fn files_of_shoplake_loads_are_trusted_and_untouched() {
        let p = walk(&["a", "b"], &[vec![info("MERGE", load(DAY, false)), add("a", DAY, true), add("b", DAY, true)]]);
        assert_eq!(p.own_files, vec!["a", "b"]);
        assert!(p.fingerprints_trusted());
        assert_eq!(p.untouched_since_last_load().map(|l| l.version), Some(0));
    }

    #[test]
    fn another_engines_update_is_foreign_and_touches_the_date() {
        let p = walk(
            &["a", "c"],
            &[
                vec![info("UPDATE", None), remove("b", DAY, true), add("c", DAY, true)],
                vec![info("WRITE", load(DAY, true)), add("a", DAY, true), add("b", DAY, true)],
            ],
        );
        assert_eq!(p.own_files, vec!["a"]);
        assert_eq!(p.foreign_files, vec!["c"]);
        assert!(p.untouched_since_last_load().is_none());
    }

    #[test]
    fn optimize_passes_trust_on_but_still_touches_the_date() {
        let own = walk(
            &["c"],
            &[
                vec![info("OPTIMIZE", None), remove("a", DAY, false), remove("b", DAY, false), add("c", DAY, false)],
                vec![info("WRITE", load(DAY, false)), add("a", DAY, true), add("b", DAY, true)],
            ],
        );
        assert_eq!(own.own_files, vec!["c"]);
        assert!(own.untouched_since_last_load().is_none(), "an optimize rewrote the date's files");

        let mixed = walk(
            &["d"],
            &[
                vec![info("OPTIMIZE", None), remove("a", DAY, false), remove("c", DAY, false), add("d", DAY, false)],
                vec![info("UPDATE", None), remove("b", DAY, true), add("c", DAY, true)],
                vec![info("WRITE", load(DAY, false)), add("a", DAY, true), add("b", DAY, true)],
            ],
        );
        assert_eq!(mixed.foreign_files, vec!["d"], "compacted from a foreign file");
    }

    #[test]
    fn other_dates_and_a_trusted_load_end_the_walk() {
        // Date 2 loaded after date 1: date 1 is untouched.
        let p = walk(
            &["a", "old"],
            &[
                vec![info("WRITE", load("2019-04-02", true)), add("x", "2019-04-02", true)],
                vec![info("MERGE", load(DAY, true)), add("a", DAY, true)],
                // Never reached: the load above vouches for every file of its date.
                vec!["not json".into()],
            ],
        );
        assert_eq!(p.own_files, vec!["a", "old"]);
        assert_eq!(p.untouched_since_last_load().map(|l| l.version), Some(1));
    }

    #[test]
    fn unknown_origins_restores_and_schema_changes_are_not_trusted() {
        let p = walk(&["a"], &[vec![info("RESTORE", load(DAY, true)), add("a", DAY, true)]]);
        assert_eq!(p.foreign_files, vec!["a"], "a restore re-adds files of any writer");
        assert!(p.last_load.is_none());

        let p = walk(&["gone"], &[vec![info("MERGE", load(DAY, false))]]);
        assert_eq!(p.foreign_files, vec!["gone"], "the log does not say who added it");

        let p = walk(
            &["a"],
            &[
                vec![info("ADD COLUMN", None), json!({"metaData": {}}).to_string()],
                vec![info("WRITE", load(DAY, true)), add("a", DAY, true)],
            ],
        );
        assert_eq!(p.foreign_files, vec!["a"], "a column dropped and added again reads null in it: hashed as read");
        assert!(p.untouched_since_last_load().is_none(), "the schema changed since");
        // Beside it: a schema change before the load leaves its files its own.
        let p = walk(
            &["a"],
            &[
                vec![info("WRITE", load(DAY, true)), add("a", DAY, true)],
                vec![info("ADD COLUMN", None), json!({"metaData": {}}).to_string()],
            ],
        );
        assert_eq!(p.own_files, vec!["a"]);
        assert!(p.untouched_since_last_load().is_some());
    }

    #[test]
    fn paths_are_compared_decoded() {
        let p = walk(
            &["export_date=2019-04-01/a b"],
            &[vec![info("WRITE", load(DAY, false)), add("export_date%3D2019-04-01/a%20b", DAY, true)]],
        );
        assert_eq!(p.own_files.len(), 1);
    }
}
