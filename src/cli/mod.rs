//! The command line: flags are parsed ([`args`]), checked and resolved
//! into each command's config ([`resolve`]) before anything runs; `run`
//! decides the exit code in one place (PRODUCT.md, "Exit codes").

mod args;
mod resolve;
mod tables;

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Parser;

use crate::audit::{changes, history, maintain, query, restore};
use crate::backfill;
use crate::error::{Error, Kind, Result, Stage};
use crate::generate;
use crate::ingest;
use crate::lineage::Lineage;
use crate::output::{self, Format};
use crate::report::RunReport;
use crate::storage::Storage;
pub use args::DEFAULT_TABLE_NAME;
use args::{
    BackfillArgs, Cli, Command, HistoryFormat, IngestArgs, LoadArgs, LogFormat, ReportFormat, RestoreArgs,
    SchemaCommand,
};

/// Prints to stdout; a reader that went away (a closed pipe) is not a
/// failure of the run, and must not turn its exit code into a panic's.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod catalog;
mod erase;

/// Parses the command line, runs the command, and returns its exit code.
pub fn run() -> Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(e.exit_code() as u8));
        }
    };
    init_logging(cli.log_format);
    let memory_limit = shoplake_parse::arguments::size(&cli.memory_limit)
        .map_err(|e| Error::usage(Stage::CommandLine, "--memory-limit", e))?;
    crate::session::set_memory_limit(memory_limit)
        .map_err(|e| Error::internal(Stage::CommandLine, "--memory-limit", e))?;
    let encryption = crate::storage::Encryption::from_flags(cli.s3_sse.as_deref(), cli.s3_kms_key_id.as_deref())?;
    let storage = Storage::for_one_command(crate::storage::S3Options { encryption, ..Default::default() });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(Stage::CommandLine, "tokio runtime", e))?;
    runtime.block_on(dispatch(cli.command, storage))
}

async fn dispatch(command: Command, storage: Storage) -> Result<ExitCode> {
    deltalake::aws::register_handlers(None);
    match command {
        Command::Ingest(args) => ingest_command(args, &storage).await,
        Command::Backfill(args) => backfill_command(args, &storage).await,
        Command::History(args) => {
            let target = resolve::target(resolve::catalog(&args.table.definitions).await?, &args.table)?;
            let table = crate::audit::existing_table(&storage, &target.table).await?;
            let mut entries = history::entries(&table, args.limit).await?;
            history::mark_purged(&mut entries, &table)?;
            let format = match args.format {
                HistoryFormat::Table => Format::Table,
                HistoryFormat::Json => Format::Json,
            };
            say_raw!("{}", output::render(&[history::to_batch(&entries)], format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => {
            let catalog = resolve::catalog(&args.table.definitions).await?;
            let sql = match (&args.sql, &args.file) {
                (Some(sql), _) => sql.clone(),
                (None, Some(path)) => {
                    std::fs::read_to_string(path).map_err(|e| Error::usage(Stage::CommandLine, path.display(), e))?
                }
                (None, None) => unreachable!("clap requires --sql or --file"),
            };
            let config = resolve::query_config(catalog, &args, sql)?;
            let batches = query::run(&storage, &config).await?;
            say_raw!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Changes(args) => {
            let target = resolve::target(resolve::catalog(&args.table.definitions).await?, &args.table)?;
            let batches = changes::run(&storage, &target, args.from_version, args.to_version).await?;
            say_raw!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => restore_command(args, &storage).await,
        Command::Erase(args) => erase::command(args, &storage).await,
        Command::Maintain(args) => {
            let target = resolve::target(resolve::catalog(&args.table.definitions).await?, &args.table)?;
            let config = maintain::MaintainConfig {
                tables: vec![target.table, target.rejects],
                optimize: args.optimize,
                vacuum: args.vacuum,
                retention_hours: args.retention_hours,
                force: args.force,
                dry_run: args.dry_run,
                checkpoint: args.checkpoint,
            };
            for line in maintain::run(&storage, &config).await? {
                say!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let config = resolve::generate_config(resolve::catalog(&args.definitions).await?, &args)?;
            for file in generate::run(&storage, &config).await? {
                say!("{}  {} lines, {} bytes", file.location, file.lines, file.bytes);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            let catalog = resolve::catalog(&args.definitions).await?;
            say_raw!("{}", tables::validation(catalog));
            Ok(if catalog.problems().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(Kind::Usage.exit_code()) })
        }
        Command::Schema(command) => {
            let (args, apply) = match &command {
                SchemaCommand::Diff(args) => (args, false),
                SchemaCommand::Apply(args) => (args, true),
            };
            let target = resolve::target(resolve::catalog(&args.table.definitions).await?, &args.table)?;
            let metastore = resolve::metastore(&args.catalog, &target)?;
            say_raw!("{}", tables::schema(&storage, &target, apply, args.format).await?);
            if let (true, Some(metastore)) = (apply, &metastore) {
                catalog::register_after_commit(&storage, metastore, &target).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog(command) => catalog::command(command, &storage).await,
        Command::Tables(args) => {
            let catalog = resolve::catalog(&args.definitions).await?;
            say_raw!("{}", tables::listing(&storage, catalog, &args.source, &args.lake, args.format).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ingest`: each table's load of the date, its metrics, one report.
async fn ingest_command(args: IngestArgs, storage: &Storage) -> Result<ExitCode> {
    let catalog = resolve::catalog(&args.load.table.definitions).await?;
    let configs = resolve::ingest_configs(catalog, args.date, &args.load)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let lineage = Lineage::new(resolve::lineage_config(&args.load.lineage));
    abort_lineage_on_signals(&lineage);
    let mut outcomes = Vec::with_capacity(configs.len());
    for config in configs {
        let resolved = config.and_then(|c| Ok((resolve::metastore(&args.load.catalog, &c.target)?, c)));
        let (metastore, config) = match resolved {
            Ok(resolved) => resolved,
            Err(error) => {
                outcomes.push(refused(&error, args.date, &run_id));
                continue;
            }
        };
        let started = std::time::Instant::now();
        let (report, mut result) = ingest::traced(storage, &config, &run_id, &lineage, lineage.parent()).await;
        if let (Ok(()), Some(metastore), false) = (&result, &metastore, args.load.dry_run) {
            result = catalog::register_after_commit(storage, metastore, &config.target).await;
        }
        let code = result.as_ref().map_or_else(|e| e.kind.exit_code(), |()| 0);
        let reports = std::slice::from_ref(&report);
        publish_metrics(&args.load, &config.target, reports, code, started.elapsed()).await;
        outcomes.push((report, result));
    }
    finish_tables(&args.load, outcomes)
}

/// `backfill`: each table's range of dates, its metrics, one summary; a
/// signal starts no new date.
async fn backfill_command(args: BackfillArgs, storage: &Storage) -> Result<ExitCode> {
    let catalog = resolve::catalog(&args.load.table.definitions).await?;
    let configs = resolve::backfill_configs(catalog, &args)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let lineage = Lineage::new(resolve::lineage_config(&args.load.lineage));
    let (stop, signal) = backfill::stop_on_signals(lineage.clone());
    let mut outcomes = Vec::new();
    for config in configs {
        let resolved = config.and_then(|c| Ok((resolve::metastore(&args.load.catalog, &c.ingest.target)?, c)));
        let (metastore, config) = match resolved {
            Ok(resolved) => resolved,
            Err(error) => {
                outcomes.push((vec![refused(&error, args.from, &run_id).0], Some(error)));
                continue;
            }
        };
        let started = std::time::Instant::now();
        let (reports, mut error) = backfill::run(storage, &config, &run_id, &stop, &lineage).await;
        // What the dates that committed made is registered, even when a later date failed.
        if let (Some(metastore), false) = (&metastore, args.load.dry_run) {
            if let Err(failed) = catalog::register_after_commit(storage, metastore, &config.ingest.target).await {
                match error {
                    None => error = Some(failed),
                    Some(_) => tracing::warn!("{failed}"),
                }
            }
        }
        let code = error.as_ref().map_or(0, |e| e.kind.exit_code());
        publish_metrics(&args.load, &config.ingest.target, &reports, code, started.elapsed()).await;
        outcomes.push((reports, error));
    }
    let interrupted = signal.load(std::sync::atomic::Ordering::SeqCst) as u8;
    print_backfills(args.load.format, &outcomes, (args.from, args.to));
    let errors: Vec<Error> = outcomes.into_iter().filter_map(|(_, e)| e).collect();
    match (most_severe(errors, args.load.all_tables), interrupted) {
        (Some(error), _) => Err(error),
        (None, 0) => Ok(ExitCode::SUCCESS),
        (None, signal) => Ok(ExitCode::from(128 + signal)),
    }
}

/// `restore`: the content of an earlier version as a new one, its rejects
/// with it.
async fn restore_command(args: RestoreArgs, storage: &Storage) -> Result<ExitCode> {
    let target = resolve::target(resolve::catalog(&args.table.definitions).await?, &args.table)?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let outcome = restore::run(storage, &target, args.version, &run_id).await?;
    let (table, rejects_table) = (&target.table, &target.rejects);
    match outcome.new_version {
        Some(v) => {
            say!("{table}: restored the content of version {} as version {v}", outcome.restored_version)
        }
        None => say!("{table}: already at version {}; nothing to restore", outcome.restored_version),
    }
    if !outcome.rejects_dates.is_empty() {
        say!(
            "{rejects_table}: the rejects of {} date(s) are as they were at version {}",
            outcome.rejects_dates.len(),
            outcome.restored_version
        );
    }
    if !outcome.unpaired_dates.is_empty() {
        say!(
            "{rejects_table}: {} date(s) were loaded before shoplake recorded their rejects version; \
             their rejects were left as they are",
            outcome.unpaired_dates.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// With lineage on, a SIGINT or SIGTERM during an ingest ends its running
/// lineage runs as ABORT before the process stops (128 + the signal, as a
/// shell reports it); the table is left as the commit left it (a commit is
/// atomic). Without lineage the default handling (the process ends at once)
/// is kept.
fn abort_lineage_on_signals(lineage: &Lineage) {
    if !lineage.enabled() {
        return;
    }
    let lineage = lineage.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        let number = tokio::select! {
            _ = interrupt.recv() => 2,
            _ = terminate.recv() => 15,
        };
        tracing::warn!("interrupted: the runs in progress end as ABORT");
        lineage.abort_active().await;
        std::process::exit(128 + number);
    });
}

/// The report of a table that could not even start (its definition does
/// not validate), and its error.
fn refused(error: &Error, date: NaiveDate, run_id: &str) -> (RunReport, Result<()>) {
    let mut report = RunReport::new(date.to_string(), String::new(), String::new(), run_id.to_string());
    report.table_name = error.subject.clone();
    (report, Err(Error::new(error.stage, error.kind, &error.subject, &error.message)))
}

/// Exit codes by how much they ask of a person: a run of several tables
/// exits with the most severe of theirs. An internal error first, then a
/// configuration mistake, refused data, an unavailable store, a missing
/// export; re-running is safe (loads are idempotent), so a retry that
/// re-runs the tables that succeeded costs nothing.
const SEVERITY: [Kind; 6] =
    [Kind::Internal, Kind::Usage, Kind::DataRejected, Kind::Unavailable, Kind::Unregistered, Kind::SourceMissing];

/// The error to exit with: the most severe, each other one printed here
/// (the single one is printed by `main`).
fn most_severe(mut errors: Vec<Error>, several: bool) -> Option<Error> {
    if several {
        errors.sort_by_key(|e| SEVERITY.iter().position(|k| *k == e.kind));
        for error in errors.iter().skip(1) {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "shoplake: {error}");
        }
    }
    errors.into_iter().next()
}

/// Prints the reports of one ingest per table and picks the exit code.
fn finish_tables(args: &LoadArgs, outcomes: Vec<(RunReport, Result<()>)>) -> Result<ExitCode> {
    let reports: Vec<&RunReport> = outcomes.iter().map(|(r, _)| r).collect();
    match (args.format, args.all_tables) {
        (ReportFormat::Json, false) => reports.iter().for_each(|r| say!("{}", r.to_json())),
        (ReportFormat::Json, true) => {
            let tables: Vec<serde_json::Value> =
                reports.iter().map(|r| serde_json::to_value(r).expect("report serializes")).collect();
            let date = reports.first().map(|r| r.date.clone()).unwrap_or_default();
            say!("{}", serde_json::json!({ "date": date, "tables": tables }));
        }
        (ReportFormat::Text, _) => reports.iter().for_each(|r| say_raw!("{}", r.to_text())),
    }
    let errors: Vec<Error> = outcomes.into_iter().filter_map(|(_, result)| result.err()).collect();
    match most_severe(errors, args.all_tables) {
        Some(error) => Err(error),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn print_backfills(
    format: ReportFormat,
    outcomes: &[(Vec<RunReport>, Option<Error>)],
    (from, to): (NaiveDate, NaiveDate),
) {
    let several = outcomes.len() > 1;
    match format {
        ReportFormat::Json => {
            let table = |reports: &[RunReport]| {
                let dates: Vec<serde_json::Value> =
                    reports.iter().map(|r| serde_json::to_value(r).expect("report serializes")).collect();
                let name = reports.first().map(|r| r.table_name.clone()).unwrap_or_default();
                serde_json::json!({ "table_name": name, "from": from.to_string(), "to": to.to_string(), "dates": dates })
            };
            match (several, outcomes.first()) {
                (false, Some((reports, _))) => say!("{}", table(reports)),
                _ => {
                    let tables: Vec<serde_json::Value> = outcomes.iter().map(|(r, _)| table(r)).collect();
                    say!("{}", serde_json::json!({ "from": from.to_string(), "to": to.to_string(), "tables": tables }));
                }
            }
        }
        ReportFormat::Text => {
            for (reports, _) in outcomes {
                if several {
                    say!("== {} ==", reports.first().map_or("", |r| r.table_name.as_str()));
                }
                say_raw!("{}", backfill::summary(reports));
            }
        }
    }
}

/// Writes and pushes a table's metrics where asked; a failure to publish
/// them is a warning, never a failed load. With --all-tables each table
/// has its own file: the table's name before the file's extension.
async fn publish_metrics(
    args: &LoadArgs,
    target: &crate::target::TableTarget,
    reports: &[RunReport],
    code: u8,
    took: std::time::Duration,
) {
    if args.metrics_file.is_none() && args.pushgateway.is_none() {
        return;
    }
    let metrics = crate::metrics::RunMetrics::of(target.name(), &target.table.to_string(), reports, code, took);
    let per_table = args.all_tables.then_some(target.name());
    crate::metrics::publish(&metrics, args.metrics_file.as_deref(), args.pushgateway.as_deref(), per_table).await;
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // deltalake logs every commit race it resolves (and the create race it
    // loses) at warn/error; shoplake reports what matters itself.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(concat!(
            "warn,shoplake=info,deltalake_core::kernel::transaction=error,",
            "buoyant_kernel=off,aws_config=error",
        ))
    });
    // A stderr nobody reads any more (a closed pipe) loses log lines, never the run.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().init(),
    }
}
