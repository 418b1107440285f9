//! The command line: flags are parsed, checked and resolved into each
//! command's config before anything runs; `run` decides the exit code in
//! one place (PRODUCT.md, "Exit codes").

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::query::QueryConfig;
use crate::audit::{changes, history, maintain, query, restore, AsOf};
use crate::backfill::{self, BackfillConfig};
use crate::error::{Error, Result, Stage};
use crate::generate::{self, GenerateConfig};
use crate::ingest::{self, IngestConfig};
use crate::output::{self, Format};
use crate::report::RunReport;
use crate::storage::{Location, Storage};

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

#[derive(Debug, Parser)]
#[command(
    name = "shoplake",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SHOPLAKE_GIT_COMMIT"), ")"),
    about = "Loads daily Shopify configuration exports into a Delta Lake table."
)]
struct Cli {
    /// Log format on stderr (levels with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load one day's export into the table (idempotent).
    Ingest(IngestArgs),
    /// Load a range of days, optionally several at a time.
    Backfill(BackfillArgs),
    /// One line per table version: what was loaded, from where, by which run.
    History(HistoryArgs),
    /// Read-only SQL over shopify_configuration and shopify_configuration_rejects.
    Query(QueryArgs),
    /// Row-level changes between two versions (change data feed).
    Changes(ChangesArgs),
    /// Make a new version equal to an earlier one (undo loads).
    Restore(RestoreArgs),
    /// Compact files, write a checkpoint, vacuum old files.
    Maintain(MaintainArgs),
    /// Write sample exports (deterministic for a seed).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct HistoryArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Only the newest N versions.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    format: HistoryFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HistoryFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct QueryArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The SQL (DataFusion dialect).
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    sql: Option<String>,
    /// Read the SQL from a file.
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    /// A version number, or an RFC 3339 time (the latest version committed at or before it).
    #[arg(long)]
    as_of: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct ChangesArgs {
    #[command(flatten)]
    table: TableArgs,
    /// First version whose changes are listed.
    #[arg(long)]
    from_version: i64,
    /// Last version (default: the latest).
    #[arg(long)]
    to_version: Option<i64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The version whose content the table gets back.
    #[arg(long)]
    version: i64,
}

#[derive(Debug, Args)]
struct MaintainArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Compact small files within each date (no data changes).
    #[arg(long)]
    optimize: bool,
    /// Delete files no version within the retention needs.
    #[arg(long)]
    vacuum: bool,
    /// What vacuum keeps: time travel works this far back.
    #[arg(long, default_value_t = maintain::DEFAULT_RETENTION_HOURS)]
    retention_hours: u64,
    /// Allow a retention under 7 days (destroys audit history).
    #[arg(long)]
    force: bool,
    /// With --vacuum: list the files vacuum would delete, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write a checkpoint of the commit log.
    #[arg(long)]
    checkpoint: bool,
}

#[derive(Debug, Args)]
struct TableArgs {
    /// The Delta table: a local path or s3://bucket/prefix.
    #[arg(long, env = "SHOPLAKE_TABLE", default_value = "./lake/shopify_configuration")]
    table: String,
    /// The rejects table [default: the table's URI with `_rejects` appended].
    #[arg(long, env = "SHOPLAKE_REJECTS_TABLE")]
    rejects_table: Option<String>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Where the daily exports are: a local directory or s3://bucket/prefix.
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    source: String,
    #[command(flatten)]
    table: TableArgs,
    /// Fail (exit 4, nothing written) when more than this share of lines is rejected.
    #[arg(long, default_value_t = 0.01)]
    max_reject_ratio: f64,
    /// Fail (exit 4, nothing written) when a load would delete more than 100
    /// rows and more than this share of the date's rows (1 allows any).
    #[arg(long, default_value_t = 0.1)]
    max_delete_ratio: f64,
    /// Allow an export without valid rows to empty a day that has rows.
    #[arg(long)]
    allow_empty: bool,
    /// Read, check and compare with the table, report what a load would do, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the run's metrics here (Prometheus text format, for node_exporter's textfile collector).
    #[arg(long, env = "SHOPLAKE_METRICS_FILE")]
    metrics_file: Option<std::path::PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091).
    #[arg(long, env = "SHOPLAKE_PUSHGATEWAY")]
    pushgateway: Option<String>,
    /// Run report on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// The export date: YYYY-MM-DD, or `yesterday` / `today` (UTC, when the run starts;
    /// for schedulers that cannot compute a date, e.g. a Kubernetes CronJob).
    #[arg(long, value_parser = parse_date)]
    date: NaiveDate,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// First date, YYYY-MM-DD (or `yesterday` / `today`, UTC).
    #[arg(long, value_parser = parse_date)]
    from: NaiveDate,
    /// Last date, YYYY-MM-DD (included; or `yesterday` / `today`, UTC).
    #[arg(long, value_parser = parse_date)]
    to: NaiveDate,
    /// Dates loaded at the same time.
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Skip dates without an export instead of failing with exit 3.
    #[arg(long)]
    skip_missing: bool,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// First date, YYYY-MM-DD.
    #[arg(long)]
    from: NaiveDate,
    /// Last date, YYYY-MM-DD (included).
    #[arg(long)]
    to: NaiveDate,
    /// Shops on the first day.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory: a local path or s3://bucket/prefix.
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    out: String,
    /// Add malformed lines like real exports have (about 0.4%).
    #[arg(long)]
    dirty: bool,
}

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(Stage::CommandLine, "tokio runtime", e))?;
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    deltalake::aws::register_handlers(None);
    let storage = Storage::new();
    match command {
        Command::Ingest(args) => {
            let started = std::time::Instant::now();
            let format = args.load.format;
            let config = ingest_config(args.date, &args.load)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let (report, result) = ingest::run(&storage, &config, &run_id).await;
            let code = result.as_ref().map_or_else(|e| e.kind.exit_code(), |()| 0);
            publish_metrics(&args.load, &config.table, std::slice::from_ref(&report), code, started.elapsed()).await;
            print_reports(format, std::slice::from_ref(&report), None);
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Backfill(args) => {
            let started = std::time::Instant::now();
            let config = backfill_config(&args)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let (stop, signal) = backfill::stop_on_signals();
            let (reports, error) = backfill::run(&storage, &config, &run_id, &stop).await;
            let interrupted = signal.load(std::sync::atomic::Ordering::SeqCst) as u8;
            let code = match (&error, interrupted) {
                (Some(e), _) => e.kind.exit_code(),
                (None, 0) => 0,
                (None, signal) => 128 + signal,
            };
            publish_metrics(&args.load, &config.ingest.table, &reports, code, started.elapsed()).await;
            print_reports(args.load.format, &reports, Some((config.from, config.to)));
            match error {
                Some(e) => Err(e),
                None => Ok(ExitCode::from(code)),
            }
        }
        Command::History(args) => {
            let (table, _) = table_locations(&args.table)?;
            let entries = history::entries(&crate::audit::existing_table(&storage, &table).await?, args.limit).await?;
            let format = match args.format {
                HistoryFormat::Table => Format::Table,
                HistoryFormat::Json => Format::Json,
            };
            say_raw!("{}", output::render(&[history::to_batch(&entries)], format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => {
            let (table, rejects_table) = table_locations(&args.table)?;
            let sql = match (&args.sql, &args.file) {
                (Some(sql), _) => sql.clone(),
                (None, Some(path)) => {
                    std::fs::read_to_string(path).map_err(|e| Error::usage(Stage::CommandLine, path.display(), e))?
                }
                (None, None) => unreachable!("clap requires --sql or --file"),
            };
            let as_of = args.as_of.as_deref().map(AsOf::parse).transpose()?;
            let batches = query::run(&storage, &QueryConfig { table, rejects_table, sql, as_of }).await?;
            say_raw!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Changes(args) => {
            let (table, _) = table_locations(&args.table)?;
            let batches = changes::run(&storage, &table, args.from_version, args.to_version).await?;
            say_raw!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            let (table, rejects_table) = table_locations(&args.table)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let outcome = restore::run(&storage, &table, &rejects_table, args.version, &run_id).await?;
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
        Command::Maintain(args) => {
            let (table, rejects_table) = table_locations(&args.table)?;
            let config = maintain::MaintainConfig {
                tables: vec![table, rejects_table],
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
            let config = generate_config(&args)?;
            for file in generate::run(&storage, &config).await? {
                say!("{}  {} lines, {} bytes", file.location, file.lines, file.bytes);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The table and its rejects table.
fn table_locations(args: &TableArgs) -> Result<(Location, Location)> {
    let table = Location::parse(&args.table)?;
    let rejects_table = match &args.rejects_table {
        Some(uri) => Location::parse(uri)?,
        None => table.with_suffix("_rejects"),
    };
    Ok((table, rejects_table))
}

fn ingest_config(date: NaiveDate, args: &LoadArgs) -> Result<IngestConfig> {
    for (flag, ratio) in [("--max-reject-ratio", args.max_reject_ratio), ("--max-delete-ratio", args.max_delete_ratio)]
    {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::usage(Stage::CommandLine, flag, "must be between 0 and 1"));
        }
    }
    let (table, rejects_table) = table_locations(&args.table)?;
    if table == rejects_table {
        return Err(Error::usage(Stage::CommandLine, "--rejects-table", "must not be the table itself"));
    }
    Ok(IngestConfig {
        date,
        source: Location::parse(&args.source)?,
        table,
        rejects_table,
        max_reject_ratio: args.max_reject_ratio,
        guards: crate::write::Guards { allow_empty: args.allow_empty, max_delete_ratio: args.max_delete_ratio },
        dry_run: args.dry_run,
    })
}

/// Writes and pushes the run's metrics where asked; a failure to publish
/// them is a warning, never a failed load.
async fn publish_metrics(
    args: &LoadArgs,
    table: &Location,
    reports: &[RunReport],
    code: u8,
    took: std::time::Duration,
) {
    if args.metrics_file.is_none() && args.pushgateway.is_none() {
        return;
    }
    let metrics = crate::metrics::RunMetrics::of(&table.to_string(), reports, code, took);
    if let Some(path) = &args.metrics_file {
        if let Err(e) = metrics.write_file(path) {
            tracing::warn!(path = %path.display(), "could not write the metrics file: {e}");
        }
    }
    if let Some(gateway) = &args.pushgateway {
        if let Err(e) = metrics.push(gateway).await {
            let gateway = crate::metrics::redact(gateway);
            tracing::warn!(%gateway, "could not push the metrics to the Pushgateway: {}", crate::metrics::redact(&e));
        }
    }
}

fn backfill_config(args: &BackfillArgs) -> Result<BackfillConfig> {
    check_range(args.from, args.to)?;
    if args.parallel == 0 {
        return Err(Error::usage(Stage::CommandLine, "--parallel", "must be at least 1"));
    }
    Ok(BackfillConfig {
        from: args.from,
        to: args.to,
        parallel: args.parallel,
        skip_missing: args.skip_missing,
        ingest: ingest_config(args.from, &args.load)?,
    })
}

fn generate_config(args: &GenerateArgs) -> Result<GenerateConfig> {
    check_range(args.from, args.to)?;
    Ok(GenerateConfig {
        from: args.from,
        to: args.to,
        rows: args.rows,
        seed: args.seed,
        out: Location::parse(&args.out)?,
        dirty: args.dirty,
    })
}

/// A date as YYYY-MM-DD, or `today` / `yesterday` in UTC.
fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    let today = chrono::Utc::now().date_naive();
    match text {
        "today" => Ok(today),
        "yesterday" => Ok(today.pred_opt().expect("a day before today")),
        _ => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|e| format!("{text:?} is not a date YYYY-MM-DD (nor `today` or `yesterday`): {e}")),
    }
}

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if from > to {
        return Err(Error::usage(Stage::CommandLine, "--from/--to", format!("{from} is after {to}")));
    }
    Ok(())
}

fn print_reports(format: ReportFormat, reports: &[RunReport], range: Option<(NaiveDate, NaiveDate)>) {
    match (format, range) {
        (ReportFormat::Json, None) => {
            for report in reports {
                say!("{}", report.to_json());
            }
        }
        (ReportFormat::Json, Some((from, to))) => {
            let dates: Vec<serde_json::Value> =
                reports.iter().map(|r| serde_json::to_value(r).expect("report serializes")).collect();
            say!("{}", serde_json::json!({ "from": from.to_string(), "to": to.to_string(), "dates": dates }));
        }
        (ReportFormat::Text, None) => {
            for report in reports {
                say_raw!("{}", report.to_text());
            }
        }
        (ReportFormat::Text, Some(_)) => say_raw!("{}", backfill::summary(reports)),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // deltalake logs every commit race it resolves (and the create race it
    // loses) at warn/error, and warns on every merge that one of its own scan
    // metrics is missing; shoplake reports what matters itself.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(concat!(
            "warn,shoplake=info,deltalake_core::kernel::transaction=error,",
            "deltalake_core::operations::merge=error,buoyant_kernel=off,aws_config=error",
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
