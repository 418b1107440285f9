//! The load's middle: the table opened once (and what its protocol asks),
//! then the export read → transformed → validated as a stream of tasks, each
//! valid row into the checks and into the sink (new files for a new date,
//! a comparison with the date's rows otherwise), and the sink finished.

use chrono::NaiveDate;
use deltalake::DeltaTable;

use super::config::IngestConfig;
use crate::definition::TableDefinition;
use crate::erasure::{Erasure, Suppression};
use crate::error::{Error, Result, Stage};
use crate::read;
use crate::storage::{Location, Storage};
use crate::write::diff::CurrentPartition;
use crate::{check, features, rejects, source, transform, validate, write};

/// Where the day's valid rows go as they are validated.
pub(super) enum Sink<'a> {
    /// A date the table has no rows for: files written at once (the table
    /// is created, or taken over, with the first rows).
    New { files: Option<write::stream::NewFiles>, table: Option<DeltaTable> },
    /// A date with rows (or a dry run): compared with them and, in a load
    /// of a table that has fingerprints, written as they go by: they are
    /// the date's files if anything changed.
    Compare { classifier: write::diff::Classifier<'a>, files: Option<write::stream::NewFiles> },
}

/// The table as the load opened it, once, and what follows from it.
pub(super) struct Opened {
    pub(super) table: Option<DeltaTable>,
    pub(super) hasher: crate::row_hash::ValueHasher,
    pub(super) rules: features::rules::RowRules,
    pub(super) append_only: bool,
    /// What the outcome depends on besides the export: recorded with the
    /// load, compared by an identical re-run.
    pub(super) load_fingerprint: String,
    /// The values erased from the table, kept out of this load.
    pub(super) suppression: Option<std::sync::Arc<Suppression>>,
    /// The definition's PII columns, never written as read.
    pub(super) pii: Option<std::sync::Arc<crate::pii::PiiRules>>,
}

/// Opens the table; its schema is compared with the definition before the
/// export is read (a change that cannot be made in place is refused here,
/// exit 2), and so is its protocol (a feature shoplake does not honour);
/// the fingerprint and the table's row rules follow.
pub(super) async fn open(storage: &Storage, config: &IngestConfig, def: &'static TableDefinition) -> Result<Opened> {
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
    // Known before a byte is read: a hashed column without its key is the user's to fix (exit 2).
    let pii = crate::pii::PiiRules::of(def).map_err(|why| Error::usage(Stage::Validate, location, why))?;
    let pii_key = pii.as_ref().and_then(crate::pii::PiiRules::key_id);
    let load_fingerprint = write::identical::load_fingerprint(
        def,
        config.max_reject_ratio,
        config.guards,
        &config.target.rejects,
        pii_key,
    );
    let suppression = match &table {
        Some(table) => {
            let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
            let erasures = Erasure::recorded(snapshot.metadata().configuration());
            Suppression::of(&erasures).map_err(|why| Error::usage(Stage::Write, location, why))?
        }
        None => None,
    };
    let suppression = suppression.map(std::sync::Arc::new);
    let pii = pii.map(std::sync::Arc::new);
    Ok(Opened { table, hasher: plan.hasher(def), rules, append_only, load_fingerprint, suppression, pii })
}

/// What went by once the export was read, transformed, validated and
/// compared with the date or written.
pub(super) struct Streamed<'c> {
    pub(super) summary: read::ReadSummary,
    pub(super) validated: validate::Outcome,
    pub(super) sink: Sink<'c>,
    /// The table the rows were compared with (`None` for a new date).
    pub(super) compared_table: Option<DeltaTable>,
    /// The checks' results (judged after the reject ratio).
    pub(super) checks: Vec<check::CheckResult>,
    /// The export's content hash, read as it streamed by.
    pub(super) digest: Option<u128>,
    /// The table lacks the fingerprint column: taken over when committing.
    pub(super) adopt: bool,
    /// Rows of the date may not change (`delta.appendOnly`).
    pub(super) frozen: bool,
    pub(super) load_fingerprint: String,
    pub(super) suppression: Option<std::sync::Arc<Suppression>>,
    pub(super) pii: Option<std::sync::Arc<crate::pii::PiiRules>>,
}

/// The export flows: read → transform → validate, each stage a task, and
/// the valid rows into the checks and the sink as they come.
pub(super) async fn stream<'c>(
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
        Ok(rows) => validate::start(
            def,
            &opened.hasher,
            opened.rules.clone(),
            validate::Privacy { suppression: opened.suppression.clone(), pii: opened.pii.clone() },
            rows,
            uri.clone(),
            expected,
        ),
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
    let (digest, load_fingerprint, suppression, pii) =
        (digest.get(), opened.load_fingerprint, opened.suppression, opened.pii);
    Ok(Streamed {
        summary,
        validated,
        sink,
        compared_table,
        checks,
        digest,
        adopt,
        frozen,
        load_fingerprint,
        suppression,
        pii,
    })
}

/// The sink's files finished (superseded rows left out): the table to
/// commit on and what the day changes; a change to an append-only date is
/// refused here, before any file was written.
pub(super) async fn finish(
    streamed: Streamed<'_>,
    config: &IngestConfig,
    rows_valid: u64,
) -> Result<(Option<DeltaTable>, write::DayChanges), write::Attempt> {
    let (date, location) = (config.date, &config.target.table);
    let Streamed { validated, sink, compared_table, frozen, .. } = streamed;
    let superseded = &validated.superseded;
    Ok(match sink {
        Sink::Compare { classifier, files } => {
            let mut diff = classifier.finish(superseded)?;
            if frozen && !diff.is_empty() {
                return Err(refuse_append_only(location, date, &diff).into());
            }
            let written = match (files, &compared_table) {
                (Some(files), Some(_)) => {
                    // A comparison made on disk names its changed rows: they are taken from the files.
                    let fetch = (!diff.pending.is_empty()).then_some(&diff.pending);
                    let (adds, fetched) = files.finish_fetching(location, date, superseded, fetch).await?;
                    diff.changes.extend(fetched);
                    Some(adds)
                }
                _ if !diff.pending.is_empty() => {
                    let message = "the changed rows of a comparison on disk were not written as they went by";
                    return Err(Error::internal(Stage::Write, location, message).into());
                }
                _ => None,
            };
            (compared_table, write::DayChanges::Diff { diff, written })
        }
        Sink::New { files: Some(files), table: Some(table) } => {
            let adds = files.finish(location, date, superseded).await?;
            (Some(table), write::DayChanges::New { adds, rows: rows_valid })
        }
        // No valid row: the date stays empty (the table is created if it is new).
        Sink::New { table, .. } => (table, write::DayChanges::New { adds: Vec::new(), rows: 0 }),
    })
}

/// One batch of valid rows into the checks and the sink.
pub(super) async fn consume(
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
pub(super) async fn writable_table(
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
pub(super) fn refuse_append_only(location: &Location, date: NaiveDate, diff: &write::diff::Diff) -> Error {
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
pub(super) async fn first_error(
    reader: tokio::task::JoinHandle<Result<read::ReadSummary>>,
    error: Error,
    uri: &str,
) -> Error {
    match reader.await {
        Ok(Err(read_error)) => read_error,
        Err(join) => Error::internal(Stage::Read, uri, join),
        Ok(Ok(_)) => error,
    }
}
