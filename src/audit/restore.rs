//! `shoplake restore`: a new version whose content equals an earlier one,
//! recorded as a RESTORE in the history. The rejects table is brought back
//! first, date by date, to the rejects the table's log pairs with that
//! version ([`super::pairing`]), in one commit whose version the RESTORE
//! commit records; so the two tables agree, and a failure at any point
//! leaves the table as it was. Any error is an error: nothing is emptied
//! or guessed on the way.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use serde_json::json;

use super::pairing::{self, Pairing};
use super::{existing_table, history};
use crate::error::{Error, Result, Stage};
use crate::rejects;
use crate::storage::Storage;
use crate::target::TableTarget;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub restored_version: i64,
    /// The new version, or `None` when the table already was at that version.
    pub new_version: Option<i64>,
    /// Dates whose rejects were brought back.
    pub rejects_dates: Vec<NaiveDate>,
    /// Dates loaded before pairings were recorded: their rejects were left as they are.
    pub unpaired_dates: Vec<NaiveDate>,
}

pub async fn run(storage: &Storage, target: &TableTarget, version: i64, run_id: &str) -> Result<RestoreOutcome> {
    let (def, location, rejects_location) = (target.def, &target.table, &target.rejects);
    let table = existing_table(storage, location).await?;
    crate::features::check_writable(&table, location, crate::features::Command::Restore)?;
    let latest = crate::storage::version_of(&table);
    if version < 0 || version > latest {
        return Err(Error::usage(
            Stage::Write,
            location,
            format!("version {version} does not exist (latest is {latest})"),
        ));
    }
    // A version whose files a purge deleted cannot be made the latest again.
    let purges = super::purge::Purge::of_table(&table, Stage::Write, location)?;
    if let Some(purge) = super::purge::Purge::of_version(&purges, version) {
        return Err(super::purged_error(location, version, purge));
    }
    if !history::has_commit(&table, version).await? {
        return Err(Error::usage(Stage::Write, location, format!("version {version} is no longer in the commit log")));
    }
    if version == latest {
        return Ok(RestoreOutcome {
            restored_version: version,
            new_version: None,
            rejects_dates: vec![],
            unpaired_dates: vec![],
        });
    }

    let log = pairing::table_log(&table).await?;
    // A version before an erasure holds the erased values: restoring it
    // would bring them back (and drop the record that keeps them out).
    let erased_since: Vec<String> = log
        .iter()
        .filter(|entry| entry.version > version)
        .filter_map(|entry| {
            Some(format!("{} (version {})", entry.shoplake.get("erasure")?.get("id")?.as_str()?, entry.version))
        })
        .collect();
    if !erased_since.is_empty() {
        return Err(Error::usage(
            Stage::Write,
            location,
            format!(
                "version {version} is older than erasure {}: restoring it would bring erased values back, so it \
                 is refused; restore a version after the erasure",
                erased_since.join(", ")
            ),
        ));
    }
    let (now, then) = (pairing::as_of(&log, latest), pairing::as_of(&log, version));
    // Dates whose rejects differ between now and then; dates loaded since
    // have none then. Unpaired dates are unknown then: left as they are.
    let mut unpaired = Vec::new();
    let mut forget = BTreeSet::new();
    let mut changed = BTreeSet::new();
    for date in now.keys().chain(then.keys()) {
        match (now.get(date), then.get(date)) {
            (Some(Pairing::Version(_)), Some(Pairing::Unpaired)) => {
                unpaired.push(*date);
                forget.insert(*date);
            }
            (_, Some(Pairing::Unpaired)) => unpaired.push(*date),
            (a, b) if a != b => {
                changed.insert(*date);
            }
            _ => {}
        }
    }
    unpaired.sort();
    unpaired.dedup();
    let restoring: pairing::Pairings =
        then.iter().filter(|(d, _)| changed.contains(d)).map(|(d, p)| (*d, *p)).collect();
    let (batches, _) = pairing::rejects_for(storage, rejects_location, &restoring, false).await?;

    let rejects_table = rejects::open_for_writing(storage, rejects_location, def).await?;
    let dates: Vec<NaiveDate> = changed.iter().copied().collect();
    let rejects_version = if dates.is_empty() {
        crate::storage::version_of(&rejects_table)
    } else {
        let info = json!({
            "run_id": run_id,
            "restored_version": version,
            "export_dates": dates.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        });
        let properties = CommitProperties::default().with_metadata([("shoplake".to_string(), info)]);
        let written = rejects::write_days(rejects_table, rejects_location, &dates, batches, properties).await?;
        crate::storage::version_of(&written)
    };

    let info = json!({
        "run_id": run_id,
        "restored_version": version,
        "rejects_version": rejects_version,
        "shoplake_version": env!("CARGO_PKG_VERSION"),
    });
    // The per-date records follow: restored dates now name the version just written.
    let mut properties = CommitProperties::default().with_metadata(crate::table::commit::commit_info(info));
    for date in &dates {
        properties =
            properties.with_application_transaction(Transaction::new(rejects::pairing::app_id(*date), rejects_version));
    }
    for date in &forget {
        // "Unknown": the next load of the date records a real version.
        properties = properties.with_application_transaction(Transaction::new(rejects::pairing::app_id(*date), -1));
    }
    let (restored, _metrics) = table
        .restore()
        .with_version_to_restore(version as u64)
        .with_commit_properties(properties)
        .await
        .map_err(|e| Error::delta(Stage::Write, location, e))?;
    Ok(RestoreOutcome {
        restored_version: version,
        new_version: Some(crate::storage::version_of(&restored)),
        rejects_dates: dates,
        unpaired_dates: unpaired,
    })
}
