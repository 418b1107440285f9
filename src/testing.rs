//! Reading a table back as plain values, for the CLI, property and S3
//! integration tests (and anyone checking a table by hand): every row of a
//! table of any definition as sorted `column=value` strings, by date and
//! key, plus the data files of each date.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// What a table holds, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSnapshot {
    /// `None` when there is no table.
    pub version: Option<i64>,
    /// date → key → the row's values as sorted `column=value` strings.
    pub rows: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// date → active data files.
    pub files: BTreeMap<String, Vec<String>>,
}

/// The table of `def` at its latest version, or at `version`.
pub async fn snapshot(
    storage: &Storage,
    def: &TableDefinition,
    location: &Location,
    version: Option<i64>,
) -> Result<TableSnapshot> {
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
    for (id, date, values) in batches.iter().flat_map(|b| rows_of(def, b)) {
        if rows.entry(date.clone()).or_default().insert(id.clone(), values).is_some() {
            return Err(Error::internal(Stage::Query, location, format!("key ({id}, {date}) appears twice")));
        }
    }
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let partition = format!("{}=", def.partition_by);
    for uri in table.get_file_uris().map_err(delta_error)? {
        let date =
            uri.split(partition.as_str()).nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("").to_string();
        files.entry(date).or_default().push(uri);
    }
    for list in files.values_mut() {
        list.sort();
    }
    Ok(TableSnapshot { version: Some(crate::storage::version_of(&table)), rows, files })
}

/// (key, date, sorted `column=value` strings) for each row of a batch.
pub fn rows_of(def: &TableDefinition, batch: &RecordBatch) -> Vec<(String, String, Vec<String>)> {
    let options = FormatOptions::default().with_null("<null>");
    let schema = batch.schema();
    let formatters: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("displayable column"))
        .collect();
    let index = |name: &str| schema.index_of(name).expect("the key and partition columns");
    let (id_index, date_index) = (index(def.day_key()), index(&def.partition_by));
    let row_hash = def.row_hash_column();
    (0..batch.num_rows())
        .map(|row| {
            // Column order differs between reads (partition columns last): compare as a set.
            // The fingerprint is a function of the other values: leave it out.
            let mut values: Vec<String> = schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name() != row_hash)
                .map(|(i, f)| format!("{}={}", f.name(), formatters[i].value(row)))
                .collect();
            values.sort();
            (formatters[id_index].value(row).to_string(), formatters[date_index].value(row).to_string(), values)
        })
        .collect()
}
