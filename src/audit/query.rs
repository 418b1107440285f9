//! `shoplake query`: read-only SQL (DataFusion) over every defined table
//! and its rejects table, each under its name (so an auditor can join
//! them), at the latest version or as of a version or a time. The
//! rejects are those the table's log pairs with the chosen version
//! ([`super::pairing`]); an error reading them is an error, never an empty table.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use super::pairing;
use super::{existing_table, table_as_of, AsOf};
use crate::error::{Error, Result, Stage};
use crate::storage::Storage;
use crate::target::TableTarget;

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Every defined table; each that exists is registered under its name
    /// (and its rejects table under `<name>_rejects`).
    pub targets: Vec<TableTarget>,
    /// The table the command names (`--table-name`): it must exist.
    pub main: String,
    pub sql: String,
    /// `--as-of` by table name; tables not named are read at their latest version.
    pub as_of: BTreeMap<String, AsOf>,
}

pub async fn run(storage: &Storage, config: &QueryConfig) -> Result<Vec<RecordBatch>> {
    let ctx = crate::session::context();
    let mut main_location = None;
    for target in &config.targets {
        let required = target.name() == config.main || config.as_of.contains_key(target.name());
        if target.name() == config.main {
            main_location = Some(target.table.clone());
        }
        if !required && storage.open_table(&target.table).await?.is_none() {
            tracing::debug!(table = target.name(), location = %target.table, "not loaded yet: not registered");
            continue;
        }
        register(&ctx, storage, target, config.as_of.get(target.name())).await?;
    }
    let subject = main_location.map_or_else(|| config.main.clone(), |l| l.to_string());
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(&config.sql, read_only).await.map_err(|e| query_error(&subject, e))?;
    frame.collect().await.map_err(|e| query_error(&subject, e))
}

/// Registers one table (as of `as_of`) and the rejects its log pairs with that version.
async fn register(ctx: &SessionContext, storage: &Storage, target: &TableTarget, as_of: Option<&AsOf>) -> Result<()> {
    let location = &target.table;
    let table = match as_of {
        None => existing_table(storage, location).await?,
        Some(as_of) => table_as_of(storage, location, as_of).await?,
    };
    // The rejects that go with the chosen version, by the log's pairing.
    let latest = match as_of {
        None => table.clone(),
        Some(_) => existing_table(storage, location).await?,
    };
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
    let register = |name: String, provider| {
        ctx.register_table(name, provider).map_err(|e| Error::datafusion(Stage::Query, location, e))
    };
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Query, location, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Query, location, e))?;
    register(target.name().to_string(), provider)?;
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
