//! `shoplake ingest`: one date's export through every stage, source → read
//! → transform → validate → write → report, with the counts that must add
//! up (`rows_read = filtered + rejected + duplicate + valid`). The write
//! stage writes the rejects table first and the table's commit last, so a
//! failure anywhere leaves the table as it was.

use std::time::Instant;

use chrono::NaiveDate;
use serde_json::json;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::{self, Reject};
use crate::report::{RunReport, Status};
use crate::storage::{Location, Storage};
use crate::target::TableTarget;
use crate::write::diff::CurrentPartition;
use crate::{check, features, rejects, source, transform, validate, write};
use deltalake::DeltaTable;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub date: NaiveDate,
    /// The root the definition's source pattern is under.
    pub source: Location,
    pub target: TableTarget,
    /// Highest share of rejected lines a load accepts (0.01 = 1%).
    pub max_reject_ratio: f64,
    /// What the load may delete (empty export, shrink).
    pub guards: write::Guards,
    /// Everything up to the commit, nothing written (`--dry-run`).
    pub dry_run: bool,
}

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

/// Where the day's valid rows go as they are validated.
enum Sink<'a> {
    /// A date the table has no rows for: files written at once (the table
    /// is created, or taken over, with the first rows).
    New { files: Option<write::stream::NewFiles>, table: Option<DeltaTable> },
    /// A date with rows (or a dry run): compared with them and, in a load
    /// of a table that has fingerprints, written as they go by: they are
    /// the date's files if anything changed.
    Compare { classifier: write::diff::Classifier<'a>, files: Option<write::stream::NewFiles> },
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
    let opened = open(storage, config, def).await?;
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
            repeated(report, last, opened.table.as_ref().map_or(-1, crate::storage::version_of), config.dry_run);
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
    let streamed = stream(storage, config, def, opened, &file, &current, has_rows).await?;
    stages.done("read, transform, validate, compare or write");
    let rejects = account(report, &streamed, config.max_reject_ratio)?;
    report.checks = streamed.checks.clone();
    check::verdict(&report.checks, &report.source)?;
    stages.done("checks");
    let info = commit_info(def, run_id, report, &file, &streamed);
    let adopt = streamed.adopt;
    let (table, changes) = finish(streamed, config, report.rows_valid).await?;
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
            let table = writable_table(storage, config, read.as_ref()).await?;
            write::commit_day(storage, &request, table, changes).await?
        }
    };
    stages.done(if config.dry_run { "plan" } else { "commit" });
    stages.log(&date.to_string());
    loaded(report, &outcome, config.dry_run, date);
    Ok(())
}

/// The table as the load opened it, once, and what follows from it.
struct Opened {
    table: Option<DeltaTable>,
    hasher: crate::row_hash::ValueHasher,
    rules: features::rules::RowRules,
    append_only: bool,
    /// What the outcome depends on besides the export: recorded with the
    /// load, compared by an identical re-run.
    load_fingerprint: String,
}

/// Opens the table; its schema is compared with the definition before the
/// export is read (a change that cannot be made in place is refused here,
/// exit 2), and so is its protocol (a feature shoplake does not honour);
/// the fingerprint and the table's row rules follow.
async fn open(storage: &Storage, config: &IngestConfig, def: &'static TableDefinition) -> Result<Opened> {
    let location = &config.target.table;
    let table = storage.open_table(location).await?;
    let plan = crate::schema::plan(def, table.as_ref(), location)?;
    plan.check(def, location)?;
    let (rules, append_only) = match &table {
        Some(table) => {
            let writable = features::check_writable(table, location, features::Command::Load)?;
            let rules = features::rules::RowRules::of_table(table, def, validate::rows_schema(def), location)?;
            (rules, writable.append_only)
        }
        None => (features::rules::RowRules::none(), false),
    };
    let load_fingerprint =
        write::identical::load_fingerprint(def, config.max_reject_ratio, config.guards, &config.target.rejects);
    Ok(Opened { table, hasher: plan.hasher(def), rules, append_only, load_fingerprint })
}

/// What went by once the export was read, transformed, validated and
/// compared with the date or written.
struct Streamed<'c> {
    summary: read::ReadSummary,
    validated: validate::Outcome,
    sink: Sink<'c>,
    /// The table the rows were compared with (`None` for a new date).
    compared_table: Option<DeltaTable>,
    /// The checks' results (judged after the reject ratio).
    checks: Vec<check::CheckResult>,
    /// The export's content hash, read as it streamed by.
    digest: Option<u128>,
    /// The table lacks the fingerprint column: taken over when committing.
    adopt: bool,
    /// Rows of the date may not change (`delta.appendOnly`).
    frozen: bool,
    load_fingerprint: String,
}

/// The export flows: read → transform → validate, each stage a task, and
/// the valid rows into the checks and the sink as they come.
async fn stream<'c>(
    storage: &Storage,
    config: &'c IngestConfig,
    def: &'static TableDefinition,
    opened: Opened,
    file: &source::SourceFile,
    current: &'c CurrentPartition,
    has_rows: bool,
) -> Result<Streamed<'c>, write::Attempt> {
    let (date, location, uri) = (config.date, &config.target.table, file.uri());
    tracing::info!(date = %date, source = %uri, bytes = file.size, "reading export");
    let (input, digest) = source::open(storage, file).await?;
    // A compressed export's size says little about its lines.
    let expected = read::ExpectedLines::of_size((!file.gzipped).then_some(file.size));
    let (batches, reader) = read::start_sized(def, date, uri.clone(), input, expected.clone());
    let (mut valid, validation) = match transform::run(def, batches, &uri).await {
        Ok(rows) => validate::start(def, &opened.hasher, opened.rules.clone(), rows, uri.clone(), expected),
        Err(error) => return Err(first_error(reader, error, &uri).await.into()),
    };
    let table = opened.table;
    let adopt = table.as_ref().is_some_and(|t| !crate::table::spec::has_column(t, def.row_hash_column()));
    let previous = match &table {
        Some(table) => check::previous_day(table, location, &def.partition_by, date)?,
        None => None,
    };
    // An append-only table's rows may not change: a date that has rows is
    // only counted (a load that would change it is refused before anything
    // is written); a new date is appended as usual.
    let frozen = opened.append_only && has_rows;
    let (mut sink, compared_table) = if has_rows || adopt || config.dry_run {
        let classifier = match config.dry_run || frozen {
            true => write::diff::Classifier::counting(current, def, location),
            false => write::diff::Classifier::new(current, def, location),
        };
        let files = match &table {
            Some(table) if !adopt && !config.dry_run && !frozen => {
                Some(write::stream::NewFiles::start(table, def, location)?)
            }
            _ => None,
        };
        (Sink::Compare { classifier, files }, table)
    } else {
        (Sink::New { files: None, table }, None)
    };
    let mut checks = check::Accumulator::new(def, &uri);
    let mut consumed: Result<(), write::Attempt> = Ok(());
    while let Some(batch) = valid.recv().await {
        consumed = consume(storage, config, &mut sink, &mut checks, batch).await;
        if consumed.is_err() {
            break;
        }
    }
    drop(valid);
    // The reader's own failure (a bad header, say) explains the rest.
    let summary = reader.await.map_err(|e| Error::internal(Stage::Read, &uri, e))??;
    let validated = validation.await.map_err(|e| Error::internal(Stage::Validate, &uri, e))??;
    consumed?;
    source::check_unchanged(storage, file).await?;
    let checks = checks.finish(validated.rows_valid, previous).await?;
    let (digest, load_fingerprint) = (digest.get(), opened.load_fingerprint);
    Ok(Streamed { summary, validated, sink, compared_table, checks, digest, adopt, frozen, load_fingerprint })
}

/// The day's counts into the report, every line in exactly one bucket (or
/// the load fails); then the reject ratio. Returns the day's rejected
/// lines, by line.
fn account(report: &mut RunReport, streamed: &Streamed<'_>, max_reject_ratio: f64) -> Result<Vec<Reject>> {
    let (summary, validated, uri) = (&streamed.summary, &streamed.validated, report.source.clone());
    let line_rejects = summary.line_rejects.len() as u64;
    report.rows_read = summary.rows_read;
    report.rows_filtered = summary.rows_read - line_rejects - validated.rows_transformed;
    report.rows_rejected = line_rejects + validated.value_rejects.len() as u64;
    report.rows_duplicate = validated.rows_duplicate;
    report.rows_valid = validated.rows_valid;
    report.ignored_columns = summary.ignored_columns.clone();
    report.header = summary.header.clone();
    report.missing_columns = summary.missing_columns.clone();
    let accounted = report.rows_filtered + report.rows_rejected + report.rows_duplicate + report.rows_valid;
    if accounted != report.rows_read {
        return Err(Error::internal(
            Stage::Validate,
            &uri,
            format!("{} lines read but {accounted} accounted for", report.rows_read),
        ));
    }
    let mut all_rejects: Vec<Reject> = summary.line_rejects.clone();
    all_rejects.extend(validated.value_rejects.iter().cloned());
    all_rejects.sort();
    tracing::info!(
        rows_read = report.rows_read,
        rows_valid = report.rows_valid,
        rows_filtered = report.rows_filtered,
        blank_lines = summary.blank_lines,
        rows_rejected = report.rows_rejected,
        rows_duplicate = report.rows_duplicate,
        "export validated"
    );
    check_reject_ratio(&uri, report.rows_read, &all_rejects, max_reject_ratio)?;
    Ok(all_rejects)
}

/// The sink's files finished (superseded rows left out): the table to
/// commit on and what the day changes; a change to an append-only date is
/// refused here, before any file was written.
async fn finish(
    streamed: Streamed<'_>,
    config: &IngestConfig,
    rows_valid: u64,
) -> Result<(Option<DeltaTable>, write::DayChanges), write::Attempt> {
    let (date, location) = (config.date, &config.target.table);
    let Streamed { validated, sink, compared_table, frozen, .. } = streamed;
    let superseded = &validated.superseded;
    Ok(match sink {
        Sink::Compare { classifier, files } => {
            let diff = classifier.finish(superseded)?;
            if frozen && !diff.is_empty() {
                return Err(refuse_append_only(location, date, &diff).into());
            }
            let written = match (files, &compared_table) {
                (Some(files), Some(table)) => Some(files.finish(table, location, date, superseded).await?),
                _ => None,
            };
            (compared_table, write::DayChanges::Diff { diff, written })
        }
        Sink::New { files: Some(files), table: Some(table) } => {
            let adds = files.finish(&table, location, date, superseded).await?;
            (Some(table), write::DayChanges::New { adds, rows: rows_valid })
        }
        // No valid row: the date stays empty (the table is created if it is new).
        Sink::New { table, .. } => (table, write::DayChanges::New { adds: Vec::new(), rows: 0 }),
    })
}

/// The load's commit info: what it read and counted, the export's identity
/// and the load's fingerprint (an identical re-run compares both).
fn commit_info(
    def: &TableDefinition,
    run_id: &str,
    report: &RunReport,
    file: &source::SourceFile,
    streamed: &Streamed<'_>,
) -> serde_json::Value {
    json!({
        "run_id": run_id,
        "export_date": report.date,
        "source": report.source,
        "rows_read": report.rows_read,
        "rows_filtered": report.rows_filtered,
        "rows_rejected": report.rows_rejected,
        "rows_duplicate": report.rows_duplicate,
        "rows_valid": report.rows_valid,
        "checks": report.checks,
        "header_policy": { "unknown_columns": def.unknown_columns, "missing_columns": def.missing_columns },
        "ignored_columns": report.ignored_columns,
        "null_columns": report.missing_columns,
        "source_fingerprint": write::identical::source_fingerprint(file, streamed.digest),
        "load_fingerprint": streamed.load_fingerprint,
        "shoplake_version": env!("CARGO_PKG_VERSION"),
        "shoplake_commit": env!("SHOPLAKE_GIT_COMMIT"),
    })
}

/// What the load did, into the report and the log.
fn loaded(report: &mut RunReport, outcome: &write::LoadOutcome, dry_run: bool, date: NaiveDate) {
    report.status = match (dry_run, outcome.committed) {
        (true, _) => Status::DryRun,
        (false, true) => Status::Committed,
        (false, false) => Status::Unchanged,
    };
    // A dry run against a table that does not exist yet has no version.
    report.table_version = (outcome.table_version >= 0).then_some(outcome.table_version);
    report.rows_inserted = outcome.inserted;
    report.rows_updated = outcome.updated;
    report.rows_deleted = outcome.deleted;
    report.rows_unchanged = outcome.unchanged;
    report.files_added = outcome.files_added;
    report.files_removed = outcome.files_removed;
    report.added_columns = outcome.added_columns.clone();
    report.bytes_added = outcome.bytes_added;
    if outcome.deleted > 0 {
        tracing::warn!(date = %date, deleted = outcome.deleted, of = outcome.rows_before, "rows deleted: the export no longer has them");
    }
    tracing::info!(
        version = outcome.table_version,
        committed = outcome.committed,
        rejects_version = outcome.rejects_version,
        "table loaded"
    );
}

/// One batch of valid rows into the checks and the sink.
async fn consume(
    storage: &Storage,
    config: &IngestConfig,
    sink: &mut Sink<'_>,
    checks: &mut check::Accumulator<'_>,
    batch: validate::ValidBatch,
) -> Result<(), write::Attempt> {
    checks.add(&batch.rows).await?;
    match sink {
        Sink::Compare { classifier, files } => {
            classifier.add(&batch)?;
            match files {
                Some(files) => Ok(files.write(batch).await?),
                None => Ok(()),
            }
        }
        Sink::New { files, table } => {
            if files.is_none() {
                // The first rows: the table is made ready to hold them.
                let ready = match table.take() {
                    Some(table) => {
                        storage.check_commits_are_safe(&config.target.table).await?;
                        table
                    }
                    // The load found no table: it reads as empty.
                    None => writable_table(storage, config, None).await?,
                };
                *files = Some(write::stream::NewFiles::start(&ready, config.target.def, &config.target.table)?);
                *table = Some(ready);
            }
            Ok(files.as_mut().expect("started above").write(batch).await?)
        }
    }
}

/// The table, created (with its rejects table first: if that cannot be
/// written, no table is created) or taken over if it must be, to commit
/// on; a conflict if another writer loaded the date since the load read
/// `read` (the table as it was then; `None`: there was none).
async fn writable_table(
    storage: &Storage,
    config: &IngestConfig,
    read: Option<&DeltaTable>,
) -> Result<DeltaTable, write::Attempt> {
    let (def, location) = (config.target.def, &config.target.table);
    rejects::open_for_writing(storage, &config.target.rejects, def).await?;
    let table =
        crate::schema::open::open_or_create(storage, location, &crate::table::spec::TableSpec::of(def)?).await?;
    write::check_date_as_read(read, &table, location, &def.partition_by, config.date).await?;
    Ok(table)
}

/// An append-only table (`delta.appendOnly`) refuses a load that changes
/// the date's rows: nothing was written.
fn refuse_append_only(location: &Location, date: NaiveDate, diff: &write::diff::Diff) -> Error {
    Error::usage(
        Stage::Write,
        location,
        format!(
            "the table is append-only (delta.appendOnly = true) and loading {date} would change its rows ({} \
             inserted, {} updated, {} deleted); nothing was written. New dates load; to re-load this one, \
             `ALTER TABLE <table> SET TBLPROPERTIES ('delta.appendOnly' = 'false')`",
            diff.inserted, diff.updated, diff.deleted
        ),
    )
}

/// The reader's error if it failed (it explains the rest), else `error`.
async fn first_error(reader: tokio::task::JoinHandle<Result<read::ReadSummary>>, error: Error, uri: &str) -> Error {
    match reader.await {
        Ok(Err(read_error)) => read_error,
        Err(join) => Error::internal(Stage::Read, uri, join),
        Ok(Ok(_)) => error,
    }
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

/// The report of a run that repeats `last`: what that load reported,
/// nothing changed.
fn repeated(report: &mut RunReport, last: &write::provenance::LastLoad, version: i64, dry_run: bool) {
    let count = |key: &str| last.info.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    report.status = if dry_run { Status::DryRun } else { Status::Unchanged };
    report.table_version = Some(version);
    report.rows_read = count("rows_read");
    report.rows_filtered = count("rows_filtered");
    report.rows_rejected = count("rows_rejected");
    report.rows_duplicate = count("rows_duplicate");
    report.rows_valid = count("rows_valid");
    report.rows_unchanged = report.rows_valid;
    report.checks = last.info.get("checks").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let names = |key: &str| -> Vec<String> {
        last.info.get(key).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    };
    report.ignored_columns = names("ignored_columns");
    report.missing_columns = names("null_columns");
}

fn check_reject_ratio(uri: &str, rows_read: u64, rejects: &[Reject], max_ratio: f64) -> Result<()> {
    if rows_read == 0 || rejects.is_empty() {
        return Ok(());
    }
    let ratio = rejects.len() as f64 / rows_read as f64;
    if ratio <= max_ratio {
        return Ok(());
    }
    let examples: Vec<String> = rejects.iter().take(3).map(|r| format!("line {}: {}", r.line, r.reason)).collect();
    Err(Error::rejected(
        Stage::Validate,
        uri,
        format!(
            "{} of {rows_read} lines rejected ({:.2}%), more than --max-reject-ratio {max_ratio} allows; first: {}",
            rejects.len(),
            ratio * 100.0,
            examples.join(" | ")
        ),
    ))
}
