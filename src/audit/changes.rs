//! `shoplake changes`: the row-level changes between two versions (inserted,
//! updated before/after, deleted), each with the version it came from, read
//! from Delta's change data feed.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use deltalake::delta_datafusion::DeltaCdfTableProvider;

use super::existing_table;
use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};
use crate::target::TableTarget;

pub async fn run(storage: &Storage, target: &TableTarget, from: i64, to: Option<i64>) -> Result<Vec<RecordBatch>> {
    let (def, location) = (target.def, &target.table);
    let table = existing_table(storage, location).await?;
    let latest = crate::storage::version_of(&table);
    let to = to.unwrap_or(latest);
    if from < 0 || from > to || to > latest {
        return Err(Error::usage(
            Stage::Query,
            location,
            format!("versions {from}..{to} are not a range of this table's versions (0..{latest})"),
        ));
    }
    let enabled = table
        .snapshot()
        .map_err(|e| Error::delta(Stage::Query, location, e))?
        .metadata()
        .configuration()
        .get("delta.enableChangeDataFeed")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let purges = super::purge::Purge::of_table(&table, Stage::Query, location)?;
    if let Some((version, purge)) =
        (from..=to).find_map(|v| purges.iter().find(|p| p.changes.contains(&v)).map(|p| (v, p)))
    {
        return Err(Error::usage(
            Stage::Query,
            location,
            format!(
                "the changes of version {version} can no longer be read: erasure {} purged them (docs/privacy.md)",
                purge.erasure_id
            ),
        ));
    }
    // The log before a purge's checkpoint may be gone (its statistics held an erased value).
    if !super::history::has_commit(&table, from).await? {
        return Err(Error::usage(
            Stage::Query,
            location,
            format!("version {from}'s commit is no longer in the log (expired by a purge or the log's retention)"),
        ));
    }
    if !enabled {
        return Err(Error::usage(
            Stage::Query,
            location,
            "this table does not record row changes (delta.enableChangeDataFeed is not true)",
        ));
    }
    let builder = table.scan_cdf().with_starting_version(from as u64).with_ending_version(to as u64);
    let provider = DeltaCdfTableProvider::try_new(builder).map_err(|e| cdf_error(location, e))?;
    let ctx = crate::session::context();
    ctx.register_table("changes", Arc::new(provider)).map_err(|e| Error::datafusion(Stage::Query, location, e))?;
    let key = def.day_key();
    let columns: Vec<&str> = def.hashed_columns().map(|c| c.name.as_str()).collect();
    let df_error = |e| Error::datafusion(Stage::Query, location, e);
    let sql = format!(
        "SELECT _commit_version AS version, _change_type AS change, {p}, {key}, {cols} FROM changes",
        p = def.partition_by,
        cols = columns.join(", ")
    );
    // Read first, then sorted: a range without a data file scans no
    // partition at all, which a sort over the scan refuses to plan.
    let frame = ctx.sql(&sql).await.map_err(df_error)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let rows = frame.collect().await.map_err(df_error)?;
    let read = datafusion::datasource::MemTable::try_new(schema, vec![rows]).map_err(df_error)?;
    ctx.register_table("read_changes", Arc::new(read)).map_err(df_error)?;
    // Within a version, a key's update_preimage comes before its update_postimage.
    let sorted = format!(
        "SELECT * FROM read_changes \
         ORDER BY version, {p}, {key}, CASE change WHEN 'update_preimage' THEN 0 ELSE 1 END",
        p = def.partition_by
    );
    ctx.sql(&sorted).await.map_err(df_error)?.collect().await.map_err(df_error)
}

fn cdf_error(location: &Location, e: deltalake::DeltaTableError) -> Error {
    use deltalake::DeltaTableError as E;
    match e {
        E::ChangeDataNotRecorded { .. } | E::ChangeDataNotEnabled { .. } | E::ChangeDataInvalidVersionRange { .. } => {
            Error::usage(
                Stage::Query,
                location,
                format!("{e} (versions written before the change data feed was enabled have no row changes)"),
            )
        }
        e => Error::delta(Stage::Query, location, e),
    }
}
