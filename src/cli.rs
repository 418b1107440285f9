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

#[derive(Debug, Parser)]
#[command(name = "shoplake", version, about = "Loads daily Shopify configuration exports into a Delta Lake table.")]
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
    /// Allow an export without rows to empty a day that has rows.
    #[arg(long)]
    allow_empty: bool,
    /// Run report on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// The export date, YYYY-MM-DD.
    #[arg(long)]
    date: NaiveDate,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// First date, YYYY-MM-DD.
    #[arg(long)]
    from: NaiveDate,
    /// Last date, YYYY-MM-DD (included).
    #[arg(long)]
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
            let format = args.load.format;
            let config = ingest_config(args.date, &args.load)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let (report, result) = ingest::run(&storage, &config, &run_id).await;
            print_reports(format, std::slice::from_ref(&report), None);
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Backfill(args) => {
            let config = backfill_config(&args)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let (reports, error) = backfill::run(&storage, &config, &run_id).await;
            print_reports(args.load.format, &reports, Some((config.from, config.to)));
            error.map_or(Ok(ExitCode::SUCCESS), Err)
        }
        Command::History(args) => {
            let (table, _) = table_locations(&args.table)?;
            let entries = history::entries(&crate::audit::existing_table(&storage, &table).await?, args.limit).await?;
            let format = match args.format {
                HistoryFormat::Table => Format::Table,
                HistoryFormat::Json => Format::Json,
            };
            print!("{}", output::render(&[history::to_batch(&entries)], format)?);
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
            print!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Changes(args) => {
            let (table, _) = table_locations(&args.table)?;
            let batches = changes::run(&storage, &table, args.from_version, args.to_version).await?;
            print!("{}", output::render(&batches, args.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            let (table, rejects_table) = table_locations(&args.table)?;
            let run_id = uuid::Uuid::new_v4().to_string();
            let outcome = restore::run(&storage, &table, &rejects_table, args.version, &run_id).await?;
            match outcome.new_version {
                Some(v) => {
                    println!("{table}: restored the content of version {} as version {v}", outcome.restored_version)
                }
                None => println!("{table}: already at version {}; nothing to restore", outcome.restored_version),
            }
            if outcome.rejects_changed {
                println!("{rejects_table}: restored to its state at version {}", outcome.restored_version);
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
                checkpoint: args.checkpoint,
            };
            for line in maintain::run(&storage, &config).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let config = generate_config(&args)?;
            for file in generate::run(&storage, &config).await? {
                println!("{}  {} lines, {} bytes", file.location, file.lines, file.bytes);
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
    if !(0.0..=1.0).contains(&args.max_reject_ratio) {
        return Err(Error::usage(Stage::CommandLine, "--max-reject-ratio", "must be between 0 and 1"));
    }
    let (table, rejects_table) = table_locations(&args.table)?;
    Ok(IngestConfig {
        date,
        source: Location::parse(&args.source)?,
        table,
        rejects_table,
        max_reject_ratio: args.max_reject_ratio,
        allow_empty: args.allow_empty,
    })
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
                println!("{}", report.to_json());
            }
        }
        (ReportFormat::Json, Some((from, to))) => {
            let dates: Vec<serde_json::Value> =
                reports.iter().map(|r| serde_json::to_value(r).expect("report serializes")).collect();
            println!("{}", serde_json::json!({ "from": from.to_string(), "to": to.to_string(), "dates": dates }));
        }
        (ReportFormat::Text, _) => {
            for report in reports {
                print!("{}", report.to_text());
            }
        }
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().init(),
    }
}
