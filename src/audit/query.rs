//! `shoplake query`: read-only SQL (DataFusion) over the table and its
//! rejects table, at the latest version or as of a version or a time. The
//! rejects are those the table's log pairs with the chosen version
//! ([`super::pairing`]); an error reading them is an error, never an empty table.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use super::pairing;
use super::{existing_table, table_as_of, AsOf};
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub table: Location,
    pub rejects_table: Location,
    pub sql: String,
    pub as_of: Option<AsOf>,
}

pub async fn run(storage: &Storage, config: &QueryConfig) -> Result<Vec<RecordBatch>> {
    let def = TableDefinition::shopify_configuration();
    let table = match &config.as_of {
        None => existing_table(storage, &config.table).await?,
        Some(as_of) => table_as_of(storage, &config.table, as_of).await?,
    };
    // The rejects that go with the chosen version, by the log's pairing.
    let latest = existing_table(storage, &config.table).await?;
    let log = pairing::table_log(&latest).await?;
    let version = crate::storage::version_of(&table);
    let is_latest = version == crate::storage::version_of(&latest);
    let pairings = pairing::as_of(&log, version);
    let (rejects, unpaired) = pairing::rejects_for(storage, &config.rejects_table, &pairings, is_latest).await?;
    if !unpaired.is_empty() {
        let shown = if is_latest { "are shown as the rejects table has them now" } else { "are not shown" };
        tracing::warn!(
            "{} date(s) were loaded before shoplake recorded which rejects go with each version ({}{}); \
             their rejects {shown}. Re-run those dates to record it.",
            unpaired.len(),
            unpaired.iter().take(3).map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            if unpaired.len() > 3 { ", ..." } else { "" },
        );
    }

    let ctx = SessionContext::new();
    let register = |name: String, provider| {
        ctx.register_table(name, provider).map_err(|e| Error::datafusion(Stage::Query, &config.table, e))
    };
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Query, &config.table, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Query, &config.table, e))?;
    register(def.name.clone(), provider)?;
    let rejects_name = format!("{}_rejects", def.name);
    let rejects = MemTable::try_new(crate::rejects::arrow_schema(), vec![rejects])
        .map_err(|e| Error::datafusion(Stage::Query, &config.rejects_table, e))?;
    register(rejects_name, Arc::new(rejects))?;

    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(&config.sql, read_only).await.map_err(|e| query_error(&config.table, e))?;
    frame.collect().await.map_err(|e| query_error(&config.table, e))
}

/// Mistakes in the SQL are the user's (exit 2); the rest are ours or the store's.
fn query_error(table: &Location, e: DataFusionError) -> Error {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Error::usage(Stage::Query, table, crate::error::flatten(&e)),
        _ => Error::datafusion(Stage::Query, table, e),
    }
}
