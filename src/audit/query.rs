//! `shoplake query`: read-only SQL (DataFusion) over every defined table
//! and its rejects table, each under its name (so an auditor can join
//! them), at the latest version or as of a version or a time. Only the
//! tables the SQL names are opened and registered. The
//! rejects are those the table's log pairs with the chosen version
//! ([`super::pairing`]); an error reading them is an error, never an empty table.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use super::pairing;
use super::{not_loaded, table_as_of, AsOf};
use crate::error::{Error, Result, Stage};
use crate::storage::Storage;
use crate::target::TableTarget;

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Every defined table; each that exists is registered under its name
    /// (and its rejects table under `<name>_rejects`); one not loaded yet is
    /// left out, and a query that names it is refused.
    pub targets: Vec<TableTarget>,
    /// The table the command is about (`--table-name`), for messages.
    pub main: String,
    pub sql: String,
    /// `--as-of` by table name: each named table must exist at that point.
    pub as_of: BTreeMap<String, AsOf>,
    /// `--as-of '*=TIME'`: every loaded table not named above, at that time.
    pub as_of_every: Option<AsOf>,
}

pub async fn run(storage: &Storage, config: &QueryConfig) -> Result<Vec<RecordBatch>> {
    let ctx = crate::session::context();
    let subject = config
        .targets
        .iter()
        .find(|t| t.name() == config.main)
        .map_or_else(|| config.main.clone(), |t| t.table.to_string());
    let named = named_tables(&ctx, &config.sql, &subject)?;
    let mut left_out = Vec::new();
    for target in &config.targets {
        let rejects_name = format!("{}{}", target.name(), crate::target::REJECTS_SUFFIX);
        let as_of = config.as_of.get(target.name());
        // Only the tables the SQL names are opened (on S3 each open is a
        // listing of its log): a query of one table reads one log.
        let with_rejects = named.contains(&rejects_name);
        if !named.contains(target.name()) && !with_rejects && as_of.is_none() {
            continue;
        }
        // Opened once: the latest version, registered as is unless a point is asked.
        let latest = match (as_of, storage.open_table(&target.table).await?) {
            (None, None) => {
                tracing::info!(table = target.name(), location = %target.table, "not loaded yet: left out of the query");
                left_out.push(target);
                continue;
            }
            (Some(_), None) => return Err(not_loaded(&target.table)),
            (_, Some(latest)) => latest,
        };
        let point = as_of.or(config.as_of_every.as_ref());
        register(&ctx, storage, target, latest, point, with_rejects).await?;
    }
    refuse_tables_not_loaded(&named, &left_out)?;
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(&config.sql, read_only).await.map_err(|e| query_error(&subject, e))?;
    frame.collect().await.map_err(|e| query_error(&subject, e))
}

/// The names of the tables `sql` reads (CTEs aside); SQL that does not
/// parse is the user's to fix (exit 2).
fn named_tables(ctx: &SessionContext, sql: &str, subject: &str) -> Result<HashSet<String>> {
    let state = ctx.state();
    let statement = state
        .sql_to_statement(sql, &state.config().options().sql_parser.dialect)
        .map_err(|e| query_error(subject, e))?;
    let references = state.resolve_table_references(&statement).map_err(|e| query_error(subject, e))?;
    Ok(references.iter().map(|reference| reference.table().to_string()).collect())
}

/// A query that names a defined table not loaded yet (or its rejects table)
/// is refused by name, rather than with DataFusion's "table not found".
fn refuse_tables_not_loaded(named: &HashSet<String>, left_out: &[&TableTarget]) -> Result<()> {
    for target in left_out {
        let rejects_name = format!("{}{}", target.name(), crate::target::REJECTS_SUFFIX);
        let Some(name) = [target.name(), rejects_name.as_str()].into_iter().find(|n| named.contains(*n)) else {
            continue;
        };
        return Err(Error::usage(
            Stage::Query,
            &target.table,
            format!(
                "table {name} is not loaded yet: there is no Delta table here (load a date of {} first)",
                target.name()
            ),
        ));
    }
    Ok(())
}

/// Registers one table (`latest`, or as of `as_of`) and, `with_rejects`,
/// the rejects its log pairs with that version.
async fn register(
    ctx: &SessionContext,
    storage: &Storage,
    target: &TableTarget,
    latest: DeltaTable,
    as_of: Option<&AsOf>,
    with_rejects: bool,
) -> Result<()> {
    let location = &target.table;
    let table = match as_of {
        None => latest.clone(),
        Some(as_of) => table_as_of(storage, location, as_of).await?,
    };
    let register = |name: String, provider| {
        ctx.register_table(name, provider).map_err(|e| Error::datafusion(Stage::Query, location, e))
    };
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Query, location, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Query, location, e))?;
    register(target.name().to_string(), provider)?;
    if !with_rejects {
        return Ok(());
    }
    // The rejects that go with the chosen version, by the log's pairing.
    let log = pairing::table_log(&latest).await?;
    let version = crate::storage::version_of(&table);
    let is_latest = version == crate::storage::version_of(&latest);
    let pairings = pairing::as_of(&log, version);
    let (rejects, unpaired) = pairing::rejects_for(storage, &target.rejects, &pairings, is_latest).await?;
    if !unpaired.is_empty() {
        let shown = if is_latest { "are shown as the rejects table has them now" } else { "are not shown" };
        tracing::warn!(
            "{}: {} date(s) were loaded before shoplake recorded which rejects go with each version ({}{}); \
             their rejects {shown}. Re-run those dates to record it.",
            target.name(),
            unpaired.len(),
            unpaired.iter().take(3).map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            if unpaired.len() > 3 { ", ..." } else { "" },
        );
    }
    let rejects = MemTable::try_new(crate::rejects::arrow_schema(), vec![rejects])
        .map_err(|e| Error::datafusion(Stage::Query, &target.rejects, e))?;
    register(format!("{}{}", target.name(), crate::target::REJECTS_SUFFIX), Arc::new(rejects))?;
    Ok(())
}

/// Mistakes in the SQL are the user's (exit 2); the rest are ours or the store's.
fn query_error(table: &str, e: DataFusionError) -> Error {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Error::usage(Stage::Query, table, crate::error::flatten(&e)),
        _ => Error::datafusion(Stage::Query, table, e),
    }
}
