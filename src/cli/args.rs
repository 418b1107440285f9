//! The command line as clap parses it: raw flags only, resolved into each
//! command's config by [`super::resolve`] before anything runs.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::maintain;
use crate::output::Format;

/// The table a command works on when none is named.
pub const DEFAULT_TABLE_NAME: &str = "shopify_configuration";

#[derive(Debug, Parser)]
#[command(
    name = "shoplake",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SHOPLAKE_GIT_COMMIT"), ")"),
    about = "Loads daily exports into Delta Lake tables, idempotently, one table definition per export."
)]
pub struct Cli {
    /// Log format on stderr (levels with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Server-side encryption of every object written to S3: aws:kms or AES256.
    #[arg(long, global = true, env = "SHOPLAKE_S3_SSE", value_name = "aws:kms|AES256")]
    pub s3_sse: Option<String>,
    /// The KMS key (id, alias or ARN) of --s3-sse aws:kms [default: the bucket's].
    #[arg(long, global = true, env = "SHOPLAKE_S3_KMS_KEY_ID", value_name = "KEY")]
    pub s3_kms_key_id: Option<String>,
    /// Memory DataFusion's operators may hold before they spill to disk
    /// (sorts, aggregations and joins of transform.sql, the SQL checks and
    /// `query`), e.g. 512MiB, 2GiB.
    #[arg(long, global = true, env = "SHOPLAKE_MEMORY_LIMIT", value_name = "SIZE",
          default_value = crate::session::DEFAULT_MEMORY_LIMIT)]
    pub memory_limit: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load one day's export into its table (idempotent).
    Ingest(IngestArgs),
    /// Load a range of days, optionally several at a time.
    Backfill(BackfillArgs),
    /// One line per table version: what was loaded, from where, by which run.
    History(HistoryArgs),
    /// Read-only SQL over every defined table and its rejects table, each under its name.
    Query(QueryArgs),
    /// Row-level changes between two versions (change data feed).
    Changes(ChangesArgs),
    /// Make a new version equal to an earlier one (undo loads).
    Restore(RestoreArgs),
    /// Compact files, write a checkpoint, vacuum old files.
    Maintain(MaintainArgs),
    /// Erase a key or an erasable column's value from every date, and keep it out of later loads.
    Erase(EraseArgs),
    /// Write sample exports of a table (deterministic for a seed).
    Generate(GenerateArgs),
    /// Check every table definition without touching data (exit 2 on any problem).
    Validate(ValidateArgs),
    /// List the table definitions: source pattern, table and rejects table.
    Tables(TablesArgs),
    /// How a table differs from its definition (`diff`), or apply the in-place part (`apply`).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Register tables in AWS Glue or Unity Catalog (`sync`), or show how the catalog differs (`diff`).
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Create or update the catalog entries of the table and its rejects table (idempotent).
    Sync(CatalogSyncArgs),
    /// Show, without writing, how the catalog's entries differ from the tables' logs.
    Diff(CatalogSyncArgs),
}

#[derive(Debug, Args)]
pub struct CatalogSyncArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// Every defined table (not with --table or --rejects-table).
    #[arg(long)]
    pub all_tables: bool,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Show, without writing, how the table and its definition differ and what a load would do.
    Diff(SchemaArgs),
    /// Add the definition's new columns and set its changed properties, as one version (no data rewritten).
    Apply(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// Where `apply` registers the changed table.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// Where the table definitions are.
#[derive(Debug, Args)]
pub struct DefinitionsArgs {
    /// A folder of table definitions (<name>/table.toml) [default: ./tables when present, else the built-in ones].
    #[arg(long, env = "SHOPLAKE_TABLES", value_name = "DIR")]
    pub tables: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub definitions: DefinitionsArgs,
    /// The table (its definition's name).
    #[arg(long, env = "SHOPLAKE_TABLE_NAME", default_value = DEFAULT_TABLE_NAME, value_name = "NAME")]
    pub table_name: String,
    /// Where tables live: a local path or s3://bucket/prefix; a table is its definition's table_path under it.
    #[arg(long, env = "SHOPLAKE_LAKE", default_value = "./lake", value_name = "URI")]
    pub lake: String,
    /// The Delta table itself, overriding --lake [default: <lake>/<table_path>].
    #[arg(long, env = "SHOPLAKE_TABLE", value_name = "URI")]
    pub table: Option<String>,
    /// The rejects table [default: the table's URI with `_rejects` appended].
    #[arg(long, env = "SHOPLAKE_REJECTS_TABLE", value_name = "URI")]
    pub rejects_table: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Where the daily exports are: a local directory or s3://bucket/prefix (each table's source pattern is under it).
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    pub source: String,
    #[command(flatten)]
    pub table: TableArgs,
    /// Every defined table, each in its own commit (not with --table or --rejects-table).
    #[arg(long)]
    pub all_tables: bool,
    /// Fail (exit 4, nothing written) when more than this share of lines is rejected.
    #[arg(long, default_value_t = 0.01)]
    pub max_reject_ratio: f64,
    /// Fail (exit 4, nothing written) when a load would delete more than 100
    /// rows and more than this share of the date's rows (1 allows any).
    #[arg(long, default_value_t = 0.1)]
    pub max_delete_ratio: f64,
    /// Allow an export without valid rows to empty a day that has rows.
    #[arg(long)]
    pub allow_empty: bool,
    /// Read, check and compare with the table, report what a load would do, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the run's metrics here (Prometheus text format, for node_exporter's textfile collector).
    #[arg(long, env = "SHOPLAKE_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091).
    #[arg(long, env = "SHOPLAKE_PUSHGATEWAY")]
    pub pushgateway: Option<String>,
    /// Run report on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    #[command(flatten)]
    pub lineage: LineageArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// Where tables are registered after a commit that creates or changes them
/// (each flag overrides a definition's `[catalog]`; docs/catalogs.md).
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Register the table and its rejects table in AWS Glue or Unity Catalog (`none`: not even as
    /// a definition's [catalog] says).
    #[arg(long = "catalog", env = "SHOPLAKE_CATALOG", value_enum, value_name = "glue|unity|none")]
    pub kind: Option<crate::metastore::CatalogKind>,
    /// The Glue database (created if absent); Glue is reached with the S3 credentials and region,
    /// at AWS_ENDPOINT_URL_GLUE if set.
    #[arg(long, env = "SHOPLAKE_GLUE_DATABASE", value_name = "NAME")]
    pub glue_database: Option<String>,
    /// The Unity Catalog server (its bearer token in UNITY_CATALOG_TOKEN).
    #[arg(long, env = "SHOPLAKE_UNITY_URL", value_name = "URL")]
    pub unity_url: Option<String>,
    /// The Unity Catalog schema tables go in, as catalog.schema (created if absent) [default: unity.default].
    #[arg(long, env = "SHOPLAKE_UNITY_SCHEMA", value_name = "CATALOG.SCHEMA")]
    pub unity_schema: Option<String>,
}

/// Where OpenLineage events go (none by default).
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// Send OpenLineage events to this server (e.g. Marquez, http://marquez:5000): POST <URL>/api/v1/lineage,
    /// with OPENLINEAGE_API_KEY (if set) as a bearer token.
    #[arg(long, env = "OPENLINEAGE_URL", value_name = "URL")]
    pub lineage_url: Option<String>,
    /// Append OpenLineage events to this file, one JSON event a line.
    #[arg(long, env = "SHOPLAKE_LINEAGE_FILE", value_name = "PATH")]
    pub lineage_file: Option<PathBuf>,
    /// The OpenLineage namespace of shoplake's jobs.
    #[arg(long, env = "OPENLINEAGE_NAMESPACE", default_value = crate::lineage::DEFAULT_NAMESPACE, value_name = "NS")]
    pub lineage_namespace: String,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The export date: YYYY-MM-DD, or `yesterday` / `today` (UTC, when the run starts;
    /// for schedulers that cannot compute a date, e.g. a Kubernetes CronJob).
    #[arg(long, value_parser = parse_date)]
    pub date: NaiveDate,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// First date, YYYY-MM-DD (or `yesterday` / `today`, UTC).
    #[arg(long, value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last date, YYYY-MM-DD (included; or `yesterday` / `today`, UTC).
    #[arg(long, value_parser = parse_date)]
    pub to: NaiveDate,
    /// Dates loaded at the same time.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Skip dates without an export instead of failing with exit 3.
    #[arg(long)]
    pub skip_missing: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// Only the newest N versions.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// The SQL (DataFusion dialect).
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub sql: Option<String>,
    /// Read the SQL from a file.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// A version number or an RFC 3339 time (the latest version committed at or
    /// before it) for the --table-name table; NAME=VERSION|TIME for another
    /// table, '*=TIME' for every table. Repeatable.
    #[arg(long, value_name = "[NAME=]VERSION|TIME")]
    pub as_of: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// First version whose changes are listed.
    #[arg(long)]
    pub from_version: i64,
    /// Last version (default: the latest).
    #[arg(long)]
    pub to_version: Option<i64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// The version whose content the table gets back.
    #[arg(long)]
    pub version: i64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("erased").required(true).args(["key", "where_"])))]
pub struct EraseArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// Every defined table, each in its own commit (not with --table or --rejects-table).
    #[arg(long)]
    pub all_tables: bool,
    /// The value of the definition's key column to erase.
    #[arg(long, value_name = "VALUE")]
    pub key: Option<String>,
    /// COLUMN=VALUE: erase the rows whose erasable COLUMN holds VALUE (e.g. shop_domain=x.myshopify.com).
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    pub where_: Option<String>,
    /// Why (recorded in the commit; never the value).
    #[arg(long, value_name = "TEXT", required_unless_present = "verify")]
    pub reason: Option<String>,
    /// Count the rows, rejected lines and files per date; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then delete every file of an older version holding the value, on S3 every object version too,
    /// and expire the log files whose statistics hold it (the versions they made readable go: docs/privacy.md).
    #[arg(long, conflicts_with_all = ["dry_run", "verify"])]
    pub purge: bool,
    /// Then rewrite every export of the table under --source without the value's records (the raw copies).
    #[arg(long, conflicts_with = "verify")]
    pub exports: bool,
    /// Where the daily exports are (for --exports): a local directory or s3://bucket/prefix.
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    pub source: String,
    /// Write the erasure's metrics here (Prometheus text format; one file per table with --all-tables).
    #[arg(long, env = "SHOPLAKE_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Push the erasure's metrics to this Prometheus Pushgateway (job shoplake_erase).
    #[arg(long, env = "SHOPLAKE_PUSHGATEWAY")]
    pub pushgateway: Option<String>,
    #[command(flatten)]
    pub lineage: LineageArgs,
    /// Erase nothing: read every object of the table and its rejects table and name each still holding the value (exit 4 if any).
    #[arg(long, conflicts_with = "dry_run")]
    pub verify: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub table: TableArgs,
    /// Compact small files within each date (no data changes).
    #[arg(long)]
    pub optimize: bool,
    /// Delete files no version within the retention needs.
    #[arg(long)]
    pub vacuum: bool,
    /// What vacuum keeps: time travel works this far back.
    #[arg(long, default_value_t = maintain::DEFAULT_RETENTION_HOURS)]
    pub retention_hours: u64,
    /// Allow a retention under 7 days (destroys audit history).
    #[arg(long)]
    pub force: bool,
    /// With --vacuum: list the files vacuum would delete, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a checkpoint of the commit log.
    #[arg(long)]
    pub checkpoint: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub definitions: DefinitionsArgs,
    /// The table whose exports are written.
    #[arg(long, env = "SHOPLAKE_TABLE_NAME", default_value = DEFAULT_TABLE_NAME, value_name = "NAME")]
    pub table_name: String,
    /// Exports of every defined table.
    #[arg(long)]
    pub all_tables: bool,
    /// First date, YYYY-MM-DD.
    #[arg(long)]
    pub from: NaiveDate,
    /// Last date, YYYY-MM-DD (included).
    #[arg(long)]
    pub to: NaiveDate,
    /// Rows on the first day.
    #[arg(long, default_value_t = 10_000)]
    pub rows: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Every row starts at this revision: the same keys as revision 0 with
    /// other values (a corrected re-export of the same rows).
    #[arg(long, default_value_t = 0)]
    pub revision: u64,
    /// The source root: a local path or s3://bucket/prefix (each table's source pattern is under it).
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    pub out: String,
    /// Add malformed lines like real exports have (about 0.4%).
    #[arg(long)]
    pub dirty: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub definitions: DefinitionsArgs,
}

#[derive(Debug, Args)]
pub struct TablesArgs {
    #[command(flatten)]
    pub definitions: DefinitionsArgs,
    #[arg(long, env = "SHOPLAKE_SOURCE", default_value = "./data/raw")]
    pub source: String,
    #[arg(long, env = "SHOPLAKE_LAKE", default_value = "./lake", value_name = "URI")]
    pub lake: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// A date as YYYY-MM-DD, or `today` / `yesterday` in UTC.
fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    shoplake_parse::arguments::date(text, chrono::Utc::now().date_naive())
}
