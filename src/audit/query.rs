//! `shoplake query`: read-only SQL (DataFusion) over the table and its
//! rejects table, at the latest version or as of a version or a time.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use super::{existing_table, rejects_time_for, table_as_of, AsOf};
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
    // The rejects table as it was beside the chosen version.
    let rejects_time = match &config.as_of {
        None => None,
        Some(AsOf::Time(time)) => Some(*time),
        Some(AsOf::Version(version)) => {
            let latest = existing_table(storage, &config.table).await?;
            rejects_time_for(&latest, *version).await?
        }
    };
    let rejects = match storage.open_table(&config.rejects_table).await? {
        None => None,
        Some(mut rejects) => match rejects_time {
            None => Some(rejects),
            Some(time) => match rejects.load_with_datetime(time).await {
                Ok(()) => Some(rejects),
                // The rejects table did not exist yet at that time.
                Err(_) => None,
            },
        },
    };

    let ctx = SessionContext::new();
    let register = |name: String, provider| {
        ctx.register_table(name, provider).map_err(|e| Error::datafusion(Stage::Query, &config.table, e))
    };
    table.update_datafusion_session(&ctx.state()).map_err(|e| Error::delta(Stage::Query, &config.table, e))?;
    let provider = table.table_provider().await.map_err(|e| Error::datafusion(Stage::Query, &config.table, e))?;
    register(def.name.clone(), provider)?;
    let rejects_name = format!("{}_rejects", def.name);
    match rejects {
        Some(rejects) => {
            rejects
                .update_datafusion_session(&ctx.state())
                .map_err(|e| Error::delta(Stage::Query, &config.rejects_table, e))?;
            let provider = rejects
                .table_provider()
                .await
                .map_err(|e| Error::datafusion(Stage::Query, &config.rejects_table, e))?;
            register(rejects_name, provider)?;
        }
        None => {
            let empty = MemTable::try_new(crate::rejects::arrow_schema(), vec![vec![]])
                .map_err(|e| Error::datafusion(Stage::Query, &config.rejects_table, e))?;
            register(rejects_name, Arc::new(empty))?;
        }
    }

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
