//! Which rejects go with which table version, resolved from the commit logs
//! only, never by time (PRODUCT.md: each table commit records the rejects
//! version that goes with it).
//!
//! Walking the table's log up to a version gives, for each date, the
//! rejects version recorded by the last commit that loaded it (a RESTORE to
//! version N takes N's pairing). The rejects of that table version are each
//! date's partition of the rejects table at its recorded version. Most
//! dates' partitions have not changed since (the rejects table's own log
//! says which commits touched which dates), so they are read from its
//! latest version in one scan; only dates rewritten later are read at
//! their older version.
//!
//! Dates loaded before shoplake recorded pairings are *unpaired*: their
//! rejects are shown from the rejects table's latest version when the
//! latest table version is asked for, and not at all for `--as-of` (no
//! guess by time); the caller says so on stderr.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use deltalake::DeltaTable;
use serde_json::Value;

use super::history::{self, HistoryEntry};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// What the table's log says about one date's rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// The date's partition of the rejects table at this version.
    Version(i64),
    /// Loaded by a commit that recorded no rejects version.
    Unpaired,
}

/// The pairing of every date loaded by a table version.
pub type Pairings = BTreeMap<NaiveDate, Pairing>;

/// The table's log, oldest first, as far as it goes.
pub async fn table_log(table: &DeltaTable) -> Result<Vec<HistoryEntry>> {
    let mut log = history::entries(table, None).await?;
    log.reverse();
    Ok(log)
}

/// The pairings as of table version `version`, from its log (oldest first).
pub fn as_of(log: &[HistoryEntry], version: i64) -> Pairings {
    let restore_target = |entry: &HistoryEntry| {
        entry.count("restored_version", &[]).or_else(|| {
            (entry.operation == "RESTORE").then(|| entry.parameters.get("version").and_then(as_i64)).flatten()
        })
    };
    let targets: HashSet<i64> = log.iter().filter(|e| e.version <= version).filter_map(restore_target).collect();
    let mut kept: HashMap<i64, Pairings> = HashMap::new();
    let mut current = Pairings::new();
    for entry in log.iter().filter(|e| e.version <= version) {
        if let Some(target) = restore_target(entry) {
            // A version older than the log reaches is unknown: no pairing.
            current = kept.get(&target).cloned().unwrap_or_default();
        } else if let Some(date) = entry.text("export_date").and_then(|d| shoplake_parse::values::ymd(&d)) {
            let pairing = entry.count("rejects_version", &[]).map_or(Pairing::Unpaired, Pairing::Version);
            current.insert(date, pairing);
        } else if let Some(versions) = entry.shoplake.get("rejects_versions").and_then(Value::as_object) {
            // An erasure wrote these dates' rejects again.
            for (day, version) in versions {
                if let (Some(date), Some(version)) = (shoplake_parse::values::ymd(day), as_i64(version)) {
                    current.insert(date, Pairing::Version(version));
                }
            }
        }
        if targets.contains(&entry.version) {
            kept.insert(entry.version, current.clone());
        }
    }
    current
}

fn as_i64(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The rejects that go with `pairings`, and the unpaired dates. With
/// `latest_for_unpaired`, unpaired dates are read from the rejects table's
/// latest version; otherwise they are left out.
pub async fn rejects_for(
    storage: &Storage,
    location: &Location,
    pairings: &Pairings,
    latest_for_unpaired: bool,
) -> Result<(Vec<RecordBatch>, Vec<NaiveDate>)> {
    let unpaired: Vec<NaiveDate> = pairings.iter().filter(|(_, p)| **p == Pairing::Unpaired).map(|(d, _)| *d).collect();
    let paired: Vec<(NaiveDate, i64)> = pairings
        .iter()
        .filter_map(|(d, p)| match p {
            Pairing::Version(v) if *v >= 0 => Some((*d, *v)),
            _ => None,
        })
        .collect();
    if paired.is_empty() && (!latest_for_unpaired || unpaired.is_empty()) {
        return Ok((Vec::new(), unpaired));
    }
    let Some(latest) = storage.open_table(location).await? else {
        if paired.is_empty() {
            return Ok((Vec::new(), unpaired));
        }
        return Err(Error::internal(
            Stage::Rejects,
            location,
            "the table's log names rejects versions but the rejects table is missing",
        ));
    };
    let touched = LastTouch::read(&latest).await?;
    let mut from_latest: BTreeSet<NaiveDate> =
        if latest_for_unpaired { unpaired.iter().copied().collect() } else { BTreeSet::new() };
    let mut older: BTreeMap<i64, BTreeSet<NaiveDate>> = BTreeMap::new();
    for (date, version) in paired {
        if touched.since(date) <= version {
            from_latest.insert(date);
        } else {
            older.entry(version).or_default().insert(date);
        }
    }
    let mut batches = crate::rejects::read_days(&latest, location, &from_latest).await?;
    let purges = super::purge::Purge::of_table(&latest, Stage::Rejects, location)?;
    for (version, dates) in older {
        if let Some(purge) = super::purge::Purge::of_version(&purges, version) {
            return Err(super::purged_error(location, version, purge));
        }
        let mut then = storage.open_table(location).await?.expect("opened above");
        then.load_version(version as u64).await.map_err(|e| Error::delta(Stage::Rejects, location, e))?;
        batches.extend(crate::rejects::read_days(&then, location, &dates).await?);
    }
    Ok((batches, unpaired))
}

/// The last version of the rejects table that changed each date's rows.
struct LastTouch {
    by_date: HashMap<NaiveDate, i64>,
    /// The last commit that may have changed any date (one shoplake did not
    /// describe, e.g. written before it recorded `export_dates`).
    any: i64,
}

impl LastTouch {
    async fn read(rejects: &DeltaTable) -> Result<LastTouch> {
        let mut touched = LastTouch { by_date: HashMap::new(), any: -1 };
        for entry in history::entries(rejects, None).await? {
            let dates = entry.shoplake.get("export_dates").and_then(Value::as_array);
            match (dates, entry.operation.as_str()) {
                (Some(dates), _) => {
                    for date in dates.iter().filter_map(Value::as_str).filter_map(|d| d.parse::<NaiveDate>().ok()) {
                        let last = touched.by_date.entry(date).or_insert(entry.version);
                        *last = (*last).max(entry.version);
                    }
                }
                // Operations that never change rows.
                (None, "CREATE TABLE" | "OPTIMIZE" | "SET TBLPROPERTIES" | "VACUUM START" | "VACUUM END") => {}
                (None, _) => touched.any = touched.any.max(entry.version),
            }
        }
        Ok(touched)
    }

    fn since(&self, date: NaiveDate) -> i64 {
        self.by_date.get(&date).copied().unwrap_or(-1).max(self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(version: i64, operation: &str, shoplake: Value) -> HistoryEntry {
        HistoryEntry {
            version,
            timestamp: chrono::Utc::now(),
            operation: operation.to_string(),
            shoplake: shoplake.as_object().cloned().unwrap_or_default(),
            metrics: Default::default(),
            parameters: Default::default(),
            purged: None,
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2019, 4, d).unwrap()
    }

    #[test]
    fn each_date_takes_the_last_load_and_a_restore_takes_its_versions() {
        let log = vec![
            entry(0, "CREATE TABLE", Value::Null),
            entry(1, "WRITE", json!({"export_date": "2019-04-01"})), // before pairings were recorded
            entry(2, "WRITE", json!({"export_date": "2019-04-02", "rejects_version": 3})),
            entry(3, "MERGE", json!({"export_date": "2019-04-01", "rejects_version": 5})),
            entry(4, "OPTIMIZE", Value::Null),
            entry(5, "MERGE", json!({"export_date": "2019-04-02", "rejects_version": 7})),
            entry(6, "RESTORE", json!({"restored_version": 2, "rejects_version": 8})),
        ];
        assert_eq!(as_of(&log, 1), Pairings::from([(day(1), Pairing::Unpaired)]));
        assert_eq!(as_of(&log, 2), Pairings::from([(day(1), Pairing::Unpaired), (day(2), Pairing::Version(3))]));
        assert_eq!(
            as_of(&log, 5),
            Pairings::from([(day(1), Pairing::Version(5)), (day(2), Pairing::Version(7))]),
            "interleaved loads of other dates do not matter"
        );
        assert_eq!(as_of(&log, 6), as_of(&log, 2), "a restore pairs as the version it restored");
        let mut spark_restore = entry(7, "RESTORE", Value::Null);
        spark_restore.parameters.insert("version".into(), json!("3"));
        let mut with_spark = log.clone();
        with_spark.push(spark_restore);
        assert_eq!(as_of(&with_spark, 7), as_of(&log, 3), "another engine's RESTORE too");
    }

    /// One commit of a generated log, as it may come from any engine.
    #[derive(Debug, Clone)]
    enum Commit {
        /// shoplake's load of 2019-04-0`day`, with its rejects version (as
        /// a number or as text, or none: before pairings were recorded).
        Load { day: u32, rejects: Option<i64>, as_text: bool },
        /// shoplake's RESTORE to `target`, or another engine's (its parameters).
        Restore { target: i64, ours: bool },
        /// A commit with no date: OPTIMIZE, another engine's WRITE.
        Other,
        /// An `export_date` that is not a date as shoplake writes one.
        NotADate(&'static str),
    }

    fn commit() -> impl proptest::strategy::Strategy<Value = Commit> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1u32..4, proptest::option::of(0i64..20), any::<bool>())
                .prop_map(|(day, rejects, as_text)| Commit::Load { day, rejects, as_text }),
            2 => (0i64..14, any::<bool>()).prop_map(|(target, ours)| Commit::Restore { target, ours }),
            1 => Just(Commit::Other),
            1 => proptest::sample::select(vec!["2019-4-1", "x", "", "02019-04-01", "2019-04-01T00:00:00"])
                .prop_map(Commit::NotADate),
        ]
    }

    fn as_entry(version: i64, commit: &Commit) -> HistoryEntry {
        match commit {
            Commit::Load { day, rejects, as_text } => {
                let mut info = json!({"export_date": format!("2019-04-{day:02}")});
                if let Some(r) = rejects {
                    info["rejects_version"] = if *as_text { json!(r.to_string()) } else { json!(r) };
                }
                entry(version, "MERGE", info)
            }
            Commit::Restore { target, ours: true } => entry(version, "RESTORE", json!({"restored_version": target})),
            Commit::Restore { target, ours: false } => {
                let mut restore = entry(version, "RESTORE", Value::Null);
                restore.parameters.insert("version".into(), json!(target));
                restore
            }
            Commit::Other => entry(version, "OPTIMIZE", Value::Null),
            Commit::NotADate(text) => entry(version, "WRITE", json!({"export_date": text, "rejects_version": 1})),
        }
    }

    proptest::proptest! {
        /// Any log, starting at any version (older ones cleaned up), against
        /// the rule replayed naively (every version's pairings kept): a load
        /// pairs its date; a restore takes the pairings of the version it
        /// restored, or none if the log does not reach it; nothing else moves
        /// them. And asking past the log's end is asking for its end.
        #[test]
        fn pairings_follow_loads_and_restores_whatever_the_log(
            start in 0i64..3,
            commits in proptest::collection::vec(commit(), 0..14),
        ) {
            let log: Vec<HistoryEntry> =
                commits.iter().enumerate().map(|(i, c)| as_entry(start + i as i64, c)).collect();
            let mut states: HashMap<i64, Pairings> = HashMap::new();
            let mut current = Pairings::new();
            for (i, c) in commits.iter().enumerate() {
                let version = start + i as i64;
                match c {
                    Commit::Load { day: d, rejects, .. } => {
                        current.insert(day(*d), rejects.map_or(Pairing::Unpaired, Pairing::Version));
                    }
                    Commit::Restore { target, .. } => {
                        current = match *target < version { true => states.get(target).cloned().unwrap_or_default(), false => Pairings::new() };
                    }
                    Commit::Other | Commit::NotADate(_) => {}
                }
                states.insert(version, current.clone());
                proptest::prop_assert_eq!(as_of(&log, version), current.clone(), "as of version {}", version);
            }
            proptest::prop_assert_eq!(as_of(&log, start + commits.len() as i64 + 5), current);
        }
    }
}
