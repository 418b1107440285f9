//! Reading a table back as plain values, for the CLI, property and S3
//! integration tests (and anyone checking a table by hand): every row as
//! sorted `column=value` strings, by date and key, plus the data files of
//! each date.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// What a table holds, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSnapshot {
    /// `None` when there is no table.
    pub version: Option<i64>,
    /// export_date → id → the row's values as sorted `column=value` strings.
    pub rows: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// export_date → active data files.
    pub files: BTreeMap<String, Vec<String>>,
}

/// The table at its latest version, or at `version`.
pub async fn snapshot(storage: &Storage, location: &Location, version: Option<i64>) -> Result<TableSnapshot> {
    let Some(mut table) = storage.open_table(location).await? else {
        return Ok(TableSnapshot { version: None, rows: BTreeMap::new(), files: BTreeMap::new() });
    };
    let delta_error = |e| Error::delta(Stage::Query, location, e);
    if let Some(v) = version {
        table.load_version(v as u64).await.map_err(delta_error)?;
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).map_err(delta_error)?;
    ctx.register_table("t", table.table_provider().await.map_err(|e| Error::datafusion(Stage::Query, location, e))?)
        .map_err(|e| Error::datafusion(Stage::Query, location, e))?;
    let batches = ctx
        .sql("SELECT * FROM t")
        .await
        .map_err(|e| Error::datafusion(Stage::Query, location, e))?
        .collect()
        .await
        .map_err(|e| Error::datafusion(Stage::Query, location, e))?;
    let mut rows: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (id, date, values) in batches.iter().flat_map(rows_of) {
        if rows.entry(date.clone()).or_default().insert(id.clone(), values).is_some() {
            return Err(Error::internal(Stage::Query, location, format!("key ({id}, {date}) appears twice")));
        }
    }
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for uri in table.get_file_uris().map_err(delta_error)? {
        let date = uri.split("export_date=").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("").to_string();
        files.entry(date).or_default().push(uri);
    }
    for list in files.values_mut() {
        list.sort();
    }
    Ok(TableSnapshot { version: Some(crate::storage::version_of(&table)), rows, files })
}

/// (id, export_date, sorted `column=value` strings) for each row of a batch.
pub fn rows_of(batch: &RecordBatch) -> Vec<(String, String, Vec<String>)> {
    let options = FormatOptions::default().with_null("<null>");
    let schema = batch.schema();
    let formatters: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("displayable column"))
        .collect();
    let index = |name: &str| schema.index_of(name).expect("id and export_date columns");
    let (id_index, date_index) = (index("id"), index("export_date"));
    (0..batch.num_rows())
        .map(|row| {
            // Column order differs between reads (partition columns last): compare as a set.
            // The fingerprint is a function of the other values: leave it out.
            let mut values: Vec<String> = schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name() != "_row_hash")
                .map(|(i, f)| format!("{}={}", f.name(), formatters[i].value(row)))
                .collect();
            values.sort();
            (formatters[id_index].value(row).to_string(), formatters[date_index].value(row).to_string(), values)
        })
        .collect()
}
