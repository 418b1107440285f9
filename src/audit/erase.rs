//! `shoplake erase`: removes every row holding a value (the key, or a
//! column the definition marks `erasable`) from every date of a table, and
//! every rejected line holding it from the rejects table, and records the
//! erasure with the table so no later load brings the value back
//! ([`crate::erasure`]). One commit on the table (operation DELETE, its
//! commit info carrying the erasure's id and the value's keyed hash, never
//! the value) and, when rejected lines held it, one on the rejects table
//! before it, whose version the table's commit records for those dates.
//!
//! Older versions still hold the value (time travel) until `--purge` takes
//! it out of them too ([`super::purge`]). Erasing a value already erased,
//! with nothing left of it, records nothing new: the earlier erasure is
//! the one (a retried request stacks no erasures).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, MetadataExt};
use deltalake::protocol::DeltaOperation;
use deltalake::DeltaTable;
use serde::Serialize;
use serde_json::{json, Value};

use crate::erasure::{raw_fields, Erasure, ErasureKey};
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};
use crate::target::TableTarget;

/// What is erased: a key, or a value of an erasable column.
#[derive(Debug, Clone)]
pub enum By {
    Key(String),
    Column { column: String, value: String },
}

#[derive(Debug, Clone)]
pub struct EraseConfig {
    pub targets: Vec<TableTarget>,
    pub by: By,
    pub reason: String,
    /// Count what would go, write nothing.
    pub dry_run: bool,
    /// Then purge the value from the table's past ([`super::purge`]).
    pub purge: bool,
    /// Then rewrite the exports under this source without it ([`super::exports`]).
    pub exports: Option<Location>,
}

/// What erasing did (or would do) to one table.
#[derive(Debug, Clone, Serialize)]
pub struct Erased {
    pub table_name: String,
    pub table: String,
    pub column: String,
    pub dry_run: bool,
    /// The erasure's id and the value's keyed hash (none in a dry run).
    pub erasure_id: Option<String>,
    pub value_hash: Option<String>,
    /// Rows erased, and files holding them, by date.
    pub dates: Vec<ErasedDate>,
    pub rows_erased: u64,
    pub rejects_erased: u64,
    /// The table's version recording the erasure.
    pub table_version: Option<i64>,
    pub rejects_version: Option<i64>,
    /// Said when there was nothing to erase from or to record in.
    pub note: Option<String>,
    /// What purging did, to the table and to its rejects table (with `--purge`).
    pub purged: Vec<super::purge::Purged>,
    /// The exports written again without the value (with `--exports`).
    pub exports: Vec<super::exports::RewrittenExport>,
    /// The version recording rewritten exports as their dates' last loads.
    pub exports_recorded_version: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasedDate {
    pub date: NaiveDate,
    pub rows: u64,
    pub files: u64,
}

impl Erased {
    /// What an erasure's lineage run and metrics say of it: counts, ids and
    /// the keyed hash, never the value (lineage/schemas: ErasureReport).
    pub fn summary(&self) -> serde_json::Value {
        let still_holding: usize = self.purged.iter().map(|p| p.still_holding.len()).sum();
        json!({
            "table_name": self.table_name,
            "table": self.table,
            "erasure_id": self.erasure_id,
            "column": self.column,
            "value_hash": self.value_hash,
            "rows_erased": self.rows_erased,
            "rejects_erased": self.rejects_erased,
            "table_version": self.table_version,
            "rejects_version": self.rejects_version,
            "files_purged": self.purged.iter().map(|p| p.files_deleted.len()).sum::<usize>(),
            "object_versions_purged": self.purged.iter().map(|p| p.object_versions_deleted).sum::<u64>(),
            "versions_unreadable": self.purged.first().map(|p| p.versions_unreadable.clone()).unwrap_or_default(),
            "log_expired_through": self.purged.first().and_then(|p| p.log_expired_through),
            "exit_code": if still_holding > 0 { crate::error::Kind::DataRejected.exit_code() } else { 0 },
        })
    }
}

/// The summary of an erasure that failed before it could say more.
pub fn failed_summary(table_name: &str, table: &str, column: &str, error: &Error) -> serde_json::Value {
    json!({
        "table_name": table_name,
        "table": table,
        "erasure_id": null,
        "column": column,
        "rows_erased": 0,
        "rejects_erased": 0,
        "exit_code": error.kind.exit_code(),
    })
}

/// Erases the value from every target; the key is needed unless it is a dry run.
pub async fn run(storage: &Storage, config: &EraseConfig) -> Result<Vec<Erased>> {
    let key = match config.dry_run {
        true => None,
        false => Some(ErasureKey::from_env().map_err(|why| Error::usage(Stage::CommandLine, "erase", why))?),
    };
    let value = match &config.by {
        By::Key(value) | By::Column { value, .. } => value,
    };
    if config.reason.contains(value.as_str()) {
        // The log keeps every commit's reason, past any purge.
        return Err(Error::usage(
            Stage::CommandLine,
            "erase --reason",
            "the reason holds the value being erased: the table's log keeps every commit's reason, so say why \
             without it (a request id, the webhook's id)",
        ));
    }
    let mut erased = Vec::new();
    for target in &config.targets {
        erased.push(erase_table(storage, config, target, key.as_ref()).await?);
    }
    Ok(erased)
}

/// The column and value to erase in `target`'s table.
fn column_of<'a>(config: &'a EraseConfig, target: &'a TableTarget) -> Result<(&'a str, &'a str)> {
    let def = target.def;
    match &config.by {
        By::Key(value) => Ok((def.day_key(), value)),
        By::Column { column, value } => match def.columns.iter().find(|c| c.name == *column) {
            Some(c) if c.erasable || c.name == def.day_key() => Ok((c.name.as_str(), value)),
            _ => {
                let erasable: Vec<&str> = def.columns.iter().filter(|c| c.erasable).map(|c| c.name.as_str()).collect();
                Err(Error::usage(
                    Stage::CommandLine,
                    &target.table,
                    format!(
                        "{column} is not an erasable column of {} (erasable: {}; mark a column `erasable = true` in \
                         {}/table.toml, or erase by --key)",
                        def.name,
                        if erasable.is_empty() { "none".to_string() } else { erasable.join(", ") },
                        def.origin
                    ),
                ))
            }
        },
    }
}

async fn erase_table(
    storage: &Storage,
    config: &EraseConfig,
    target: &TableTarget,
    key: Option<&ErasureKey>,
) -> Result<Erased> {
    let (def, location) = (target.def, &target.table);
    let (column, value) = column_of(config, target)?;
    if config.exports.is_some() && !def.column(column).is_some_and(|c| c.is_from_export()) {
        // Its records could only be found by loading them: refused before anything is erased.
        return Err(Error::usage(
            Stage::CommandLine,
            location,
            format!(
                "erase --exports finds an export's records by a column read from it, and {column} is derived by \
                 {}'s transform.sql: erase the table without --exports, and its exports by an erasable column the \
                 export holds",
                def.name
            ),
        ));
    }
    let mut erased = Erased {
        table_name: def.name.clone(),
        table: location.to_string(),
        column: column.to_string(),
        dry_run: config.dry_run,
        erasure_id: None,
        value_hash: None,
        dates: Vec::new(),
        rows_erased: 0,
        rejects_erased: 0,
        table_version: None,
        rejects_version: None,
        note: None,
        purged: Vec::new(),
        exports: Vec::new(),
        exports_recorded_version: None,
    };
    let table = match storage.open_table(location).await? {
        Some(table) => table,
        None if config.dry_run => {
            erased.note = Some("no table here yet: the erasure would create it, to record the erasure".to_string());
            return Ok(erased);
        }
        // No table yet: created (as a first load would) so the erasure is
        // recorded with it, and its first load keeps the value out.
        None => {
            crate::schema::open::open_or_create(storage, location, &crate::table::spec::TableSpec::of(def)?).await?
        }
    };
    crate::features::check_writable(&table, location, crate::features::Command::Load)?;
    // Files are written again in the table's schema: one the definition
    // has not reached yet would get columns the table does not have.
    let plan = crate::schema::plan(def, Some(&table), location)?;
    // A table that never held a row takes a changed definition whole, in
    // a commit of its own, as a load would: its files are then written in
    // the definition's columns (they were the old ones: exit 1 before).
    let table = match (plan.replace, config.dry_run) {
        (true, false) => {
            let info = json!({ "shoplake_version": env!("CARGO_PKG_VERSION"), "before": "erase" });
            crate::schema::apply::apply(table, def, location, info).await.map_err(Error::from)?.0
        }
        _ if !plan.added.is_empty() || !plan.refused.is_empty() => {
            return Err(Error::usage(
                Stage::Write,
                location,
                "the table is behind its definition (`shoplake schema diff`): load a date or run `shoplake schema \
                 apply` first, then erase",
            ));
        }
        _ => table,
    };
    let counts = rows_by_date(&table, location, &def.partition_by, column, value).await?;
    // Read before anything is written: a purge may expire the log they are in.
    let last_loads = match (&config.exports, key) {
        (Some(_), Some(_)) => untouched_last_loads(&table, target).await?,
        _ => BTreeMap::new(),
    };
    for (date, rows) in &counts {
        let files = crate::table::files_for_partition(&table, location, &def.partition_by, *date).await?.len() as u64;
        erased.dates.push(ErasedDate { date: *date, rows: *rows, files });
    }
    erased.rows_erased = counts.values().sum();
    let rejects = storage.open_table(&target.rejects).await?;
    let (kept_rejects, rejects_dates) = match &rejects {
        Some(rejects) => rejects_without(rejects, &target.rejects, value).await?,
        None => (Vec::new(), BTreeMap::new()),
    };
    erased.rejects_erased = rejects_dates.values().sum();
    let Some(key) = key else { return Ok(erased) };

    let hash = key.hash(value);
    let recorded = crate::erasure::Erasure::recorded(
        table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?.metadata().configuration(),
    );
    let earlier = recorded.into_iter().find(|e| e.column == column && e.hash == hash);
    if let (Some(earlier), 0, 0) = (&earlier, erased.rows_erased, erased.rejects_erased) {
        erased.note = Some(format!("already erased by erasure {}: nothing new recorded", earlier.id));
        erased.erasure_id = Some(earlier.id.clone());
        erased.value_hash = Some(hash);
        let erased = purge_after(storage, config, target, value, erased).await?;
        return exports_after(storage, config, target, last_loads, value, erased).await;
    }
    let erasure = Erasure { id: uuid::Uuid::new_v4().to_string(), column: column.to_string(), hash };
    let info = json!({
        "erasure": {
            "id": erasure.id,
            "column": erasure.column,
            "value_hash": erasure.hash,
            "reason": config.reason,
            "rows_erased": erased.rows_erased,
            "rejects_erased": erased.rejects_erased,
        },
        "shoplake_version": env!("CARGO_PKG_VERSION"),
    });
    // The rejects first: the table's commit names the version without them.
    let mut paired: Vec<(NaiveDate, i64)> = Vec::new();
    if let (Some(rejects), false) = (rejects, rejects_dates.is_empty()) {
        let dates: Vec<NaiveDate> = rejects_dates.keys().copied().collect();
        let properties = CommitProperties::default().with_metadata([("shoplake".to_string(), info.clone())]);
        let written = crate::rejects::write_days(rejects, &target.rejects, &dates, kept_rejects, properties).await?;
        let version = crate::storage::version_of(&written);
        paired = dates.into_iter().map(|date| (date, version)).collect();
        erased.rejects_version = Some(version);
    }
    let dates: Vec<NaiveDate> = counts.keys().copied().collect();
    let plan = crate::write::erase::erase_from_dates(&table, def, location, column, value, &dates).await?;
    let (name, recorded) = erasure.property();
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let metadata = snapshot
        .metadata()
        .clone()
        .add_config_key(name, recorded)
        .map_err(|e| Error::internal(Stage::Write, location, e))?;
    let mut actions = vec![Action::Metadata(metadata)];
    actions.extend(plan.actions);
    let mut info = info;
    info["rejects_versions"] = paired.iter().map(|(date, version)| (date.to_string(), json!(version))).collect();
    let mut properties = CommitProperties::default().with_metadata([("shoplake".to_string(), info)]);
    // As a load records it: each date's rejects version, as the date's transaction.
    for (date, version) in paired {
        let app_id = crate::rejects::pairing::app_id(date);
        properties = properties.with_application_transaction(deltalake::kernel::Transaction::new(app_id, version));
    }
    let operation = DeltaOperation::Delete { predicate: Some(format!("{column} = <erased value {}>", erasure.id)) };
    let version = crate::table::commit::commit(&table, location, properties, actions, operation).await?;
    tracing::info!(table = %location, erasure = %erasure.id, rows = erased.rows_erased, version, "erased");
    erased.table_version = Some(version);
    erased.erasure_id = Some(erasure.id);
    erased.value_hash = Some(erasure.hash);
    let erased = purge_after(storage, config, target, value, erased).await?;
    exports_after(storage, config, target, last_loads, value, erased).await
}

/// Each date's last load, for the dates the table holds as that load left them.
async fn untouched_last_loads(table: &DeltaTable, target: &TableTarget) -> Result<BTreeMap<NaiveDate, Value>> {
    let (def, location) = (target.def, &target.table);
    let dates = crate::table::partition_dates(table, location, &def.partition_by, Stage::Write)?;
    let mut loads = BTreeMap::new();
    for date in dates {
        let provenance = crate::write::provenance::of_date(table, location, def, date).await?;
        if let Some(last) = provenance.as_ref().and_then(|p| p.untouched_since_last_load()) {
            loads.insert(date, last.info.clone());
        }
    }
    Ok(loads)
}

/// With `--exports`, the value out of the raw exports; the rewritten
/// exports of dates the table held as their last load left them before
/// the erasure (`last_loads`) recorded as those loads', so their identical
/// re-runs stay no-ops.
async fn exports_after(
    storage: &Storage,
    config: &EraseConfig,
    target: &TableTarget,
    last_loads: BTreeMap<NaiveDate, Value>,
    value: &str,
    mut erased: Erased,
) -> Result<Erased> {
    let Some(source) = &config.exports else { return Ok(erased) };
    let (def, location) = (target.def, &target.table);
    erased.exports = super::exports::erase(storage, source, def, &erased.column, value).await?;
    let rejects_version =
        storage.open_table(&target.rejects).await?.map(|rejects| crate::storage::version_of(&rejects));
    let mut loads = Vec::new();
    for export in erased.exports.iter().filter(|e| e.by_column_only) {
        let Some(mut info) = last_loads.get(&export.date).cloned() else { continue };
        if let Some(version) = rejects_version {
            info["rejects_version"] = json!(version);
        }
        let fingerprint = super::exports::fingerprint(storage, source, def, export.date).await?;
        loads.push((export.date, info, fingerprint));
    }
    if loads.is_empty() {
        return Ok(erased);
    }
    let table = storage.open_table(location).await?.ok_or_else(|| super::not_loaded(location))?;
    let info = super::exports::record(loads);
    let properties = CommitProperties::default().with_metadata([("shoplake".to_string(), info)]);
    let operation = DeltaOperation::Update { predicate: Some("exports rewritten without an erased value".into()) };
    let version = crate::table::commit::commit(&table, location, properties, Vec::new(), operation).await?;
    erased.exports_recorded_version = Some(version);
    Ok(erased)
}

/// With `--purge`, the value out of the table's and the rejects table's past.
async fn purge_after(
    storage: &Storage,
    config: &EraseConfig,
    target: &TableTarget,
    value: &str,
    mut erased: Erased,
) -> Result<Erased> {
    if let (true, Some(id)) = (config.purge, erased.erasure_id.clone()) {
        for location in [&target.table, &target.rejects] {
            erased.purged.push(super::purge::purge(storage, location, value, &id).await?);
        }
    }
    Ok(erased)
}

/// Rows holding the value, by date.
async fn rows_by_date(
    table: &DeltaTable,
    location: &Location,
    partition_by: &str,
    column: &str,
    value: &str,
) -> Result<BTreeMap<NaiveDate, u64>> {
    let df_error = |e| Error::datafusion(Stage::Query, location, e);
    let ctx = crate::session::context();
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Query, location, e))?;
    let provider = table.table_provider().await.map_err(df_error)?;
    let batches = ctx
        .read_table(provider)
        .and_then(|df| df.filter(col(column).eq(lit(value))))
        .and_then(|df| df.aggregate(vec![col(partition_by)], vec![count(lit(1)).alias("n")]))
        .map_err(df_error)?
        .collect()
        .await
        .map_err(df_error)?;
    let mut counts = BTreeMap::new();
    for batch in batches {
        let fail = |e: String| Error::internal(Stage::Query, location, e);
        let dates = cast(batch.column(0), &DataType::Date32).map_err(|e| fail(e.to_string()))?;
        let dates = dates.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let n = batch.column(1).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            if let Some(date) = dates.value_as_date(row) {
                counts.insert(date, n.value(row) as u64);
            }
        }
    }
    Ok(counts)
}

/// The rejects table's rows of the dates where a rejected line holds the
/// value, without those lines; and how many each such date loses.
async fn rejects_without(
    rejects: &DeltaTable,
    location: &Location,
    value: &str,
) -> Result<(Vec<RecordBatch>, BTreeMap<NaiveDate, u64>)> {
    let fail = |e: String| Error::internal(Stage::Rejects, location, e);
    let all_dates = crate::table::partition_dates(rejects, location, crate::rejects::PARTITION, Stage::Rejects)?;
    let batches = crate::rejects::read_days(rejects, location, &all_dates).await?;
    let mut holding: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    let mut marked = Vec::new();
    for batch in batches {
        let raws = batch.column_by_name("raw").ok_or_else(|| fail("the rejects table has no raw column".into()))?;
        let raws = raws.as_string::<i32>();
        let dates = batch.column(0).as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let holds: Vec<bool> = (0..batch.num_rows())
            .map(|row| raws.is_valid(row) && raw_fields(raws.value(row)).iter().any(|field| field == value))
            .collect();
        for (row, held) in holds.iter().enumerate() {
            if let (true, Some(date)) = (*held, dates.value_as_date(row)) {
                *holding.entry(date).or_default() += 1;
            }
        }
        marked.push((batch, holds));
    }
    // Only the dates that lose a line are written again, with their other lines.
    let mut kept = Vec::new();
    for (batch, holds) in marked {
        let dates = batch.column(0).as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| Some(!holds[row] && dates.value_as_date(row).is_some_and(|d| holding.contains_key(&d))))
            .collect();
        kept.push(filter_record_batch(&batch, &keep).map_err(|e| fail(e.to_string()))?);
    }
    Ok((kept, holding))
}
