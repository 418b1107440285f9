//! `shoplake ingest`: one date's export through every stage, source → read
//! → transform → validate → write → report, with the counts that must add
//! up (`rows_read = filtered + rejected + duplicate + valid`). The write
//! stage writes the rejects table first and the table's commit last, so a
//! failure anywhere leaves the table as it was.

use std::time::Instant;

mod account;
mod config;
mod stream;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::report::{RunReport, Status};
use crate::storage::Storage;
use crate::write::diff::CurrentPartition;
use crate::{check, rejects, source, write};
pub use config::IngestConfig;

/// Runs one ingest. The report is returned even when the run fails, with
/// what was known when it stopped. A commit conflict with a concurrent
/// writer of the same date starts the load over (the table opened and the
/// export read again, nothing read before kept), a bounded number of
/// times, then fails with exit 5.
pub async fn run(storage: &Storage, config: &IngestConfig, run_id: &str) -> (RunReport, Result<()>) {
    let started = Instant::now();
    let def = config.target.def;
    let mut attempt = 1;
    loop {
        // Each attempt reads the logs as they are now (a backfill's later
        // dates, a retry after a conflict), not as this process last listed them.
        storage.refresh_log(&config.target.table);
        storage.refresh_log(&config.target.rejects);
        let mut report = RunReport::for_target(
            &config.target,
            config.date.to_string(),
            config.source.join(&def.source_file(config.date)).to_string(),
            run_id.to_string(),
        );
        let result = match run_stages(storage, config, def, run_id, &mut report).await {
            Ok(()) => Ok(()),
            Err(write::Attempt::Failed(error)) => Err(error),
            Err(write::Attempt::Conflict(reason)) if attempt < write::MAX_ATTEMPTS => {
                let pause = write::backoff(attempt);
                tracing::warn!(date = %config.date, attempt, %reason, pause_ms = pause.as_millis() as u64,
                    "commit conflict with a concurrent writer of the date; loading it again");
                tokio::time::sleep(pause).await;
                write::provenance::forget_read_commits();
                attempt += 1;
                continue;
            }
            Err(write::Attempt::Conflict(reason)) => Err(Error::unavailable(
                Stage::Write,
                &config.target.table,
                format!("gave up after {attempt} commit conflicts with concurrent writers: {reason}"),
            )),
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        if let Err(error) = &result {
            report.status = Status::Failed;
            tracing::debug!(date = %config.date, kind = ?error.kind, "ingest failed");
        }
        return (report, result);
    }
}

async fn run_stages(
    storage: &Storage,
    config: &IngestConfig,
    def: &'static TableDefinition,
    run_id: &str,
    report: &mut RunReport,
) -> Result<(), write::Attempt> {
    let (date, location) = (config.date, &config.target.table);
    let mut stages = crate::report::StageTimes::start();
    let opened = stream::open(storage, config, def).await?;
    stages.done("open table");
    let file = source::locate(storage, &config.source, def, date).await?;
    report.source = file.uri();
    stages.done("locate export");
    // Who wrote the date, read once from the log: it tells whether this run
    // repeats the last load (nothing to parse), and which stored
    // fingerprints the diff may trust.
    let provenance = match &opened.table {
        Some(table) => write::provenance::of_date(table, location, def, date).await?,
        None => None,
    };
    stages.done("provenance");
    if let Some(provenance) = &provenance {
        let (rejects, fingerprint) = (&config.target.rejects, &opened.load_fingerprint);
        if let Some(last) =
            write::identical::repeated_load(storage, date, rejects, fingerprint, &file, provenance).await?
        {
            account::repeated(
                report,
                last,
                opened.table.as_ref().map_or(-1, crate::storage::version_of),
                config.dry_run,
            );
            stages.done("identical re-run");
            stages.log(&date.to_string());
            return Ok(());
        }
    }
    // What the table holds for the date (its keys and fingerprints).
    let has_rows = provenance.as_ref().is_some_and(|p| !p.own_files.is_empty() || !p.foreign_files.is_empty());
    let current = match &opened.table {
        Some(table) if has_rows => {
            CurrentPartition::read(table, location, def, &opened.hasher, date, provenance).await?
        }
        _ => CurrentPartition::empty(),
    };
    let streamed = stream::stream(storage, config, def, opened, &file, &current, has_rows).await?;
    stages.done("read, transform, validate, compare or write");
    let suppression = streamed.suppression.as_deref();
    let pii = streamed.pii.as_deref();
    let rejects =
        account::account(report, &streamed.summary, &streamed.validated, config.max_reject_ratio, suppression, pii)?;
    report.checks = streamed.checks.clone();
    check::verdict(&report.checks, &report.source)?;
    stages.done("checks");
    let info = account::commit_info(def, run_id, report, &file, streamed.digest, &streamed.load_fingerprint);
    let adopt = streamed.adopt;
    let (table, changes) = stream::finish(streamed, config, report.rows_valid).await?;
    let request = write::LoadRequest {
        def,
        location,
        date,
        rejects_location: &config.target.rejects,
        rejects: rejects::DayRejects { date, source_uri: &report.source, run_id, rejects: &rejects },
        guards: config.guards,
        commit_info: info,
    };
    let outcome = match (config.dry_run, table) {
        (true, table) => write::plan_day(&request, &changes, table.as_ref().map_or(-1, crate::storage::version_of))?,
        (false, Some(table)) if !adopt => write::commit_day(storage, &request, table, changes).await?,
        // A new table (no row came), or one to take over: created or adopted now.
        (false, read) => {
            let table = stream::writable_table(storage, config, read.as_ref()).await?;
            write::commit_day(storage, &request, table, changes).await?
        }
    };
    stages.done(if config.dry_run { "plan" } else { "commit" });
    stages.log(&date.to_string());
    account::loaded(report, &outcome, config.dry_run, date);
    Ok(())
}

/// One ingest as a lineage run: `START` before the export is read, then
/// `COMPLETE` or `FAIL` with what the load did (nothing is sent when
/// lineage is off).
pub async fn traced(
    storage: &Storage,
    config: &IngestConfig,
    run_id: &str,
    lineage: &crate::lineage::Lineage,
    parent: Option<crate::lineage::ParentRun>,
) -> (RunReport, Result<()>) {
    if !lineage.enabled() {
        return run(storage, config, run_id).await;
    }
    let start = crate::lineage::load_start(&config.target, config.date, &config.source);
    let traced = lineage.start(config.target.name(), parent, start).await;
    let (report, result) = run(storage, config, run_id).await;
    let sources = crate::transform::column_sources(config.target.def).await.unwrap_or_else(|e| {
        tracing::warn!("lineage: no column lineage: {e}");
        Default::default()
    });
    lineage.finish(&traced, crate::lineage::load_end(&report, result.as_ref().err(), &sources)).await;
    (report, result)
}
