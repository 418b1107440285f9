//! The in-place part of a schema plan (added columns, table properties) as
//! the table's new metadata: no data file is rewritten, and the table keeps
//! its id, name and description (delta-rs's merge and write schema modes
//! re-create the metadata with a new table id, so shoplake writes the
//! metadata itself). A load puts it in its own commit, beside its rows
//! ([`evolved_metadata`]); `schema apply` commits it alone ([`apply`]).

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Metadata, MetadataExt, StructField, StructType};
use deltalake::protocol::DeltaOperation;
use deltalake::DeltaTable;

use super::{plan, SchemaPlan};
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;
use crate::table::commit::{commit_error, Attempt};

/// Applies `def`'s in-place changes to `table`, planned again against the
/// table as it is now (a concurrent apply is not repeated). Returns the
/// table after the commit (or as it was, with nothing to apply) and what
/// was applied.
pub(crate) async fn apply(
    table: DeltaTable,
    def: &TableDefinition,
    location: &Location,
    info: serde_json::Value,
) -> Result<(DeltaTable, SchemaPlan), Attempt> {
    let plan = plan(def, Some(&table), location)?;
    plan.check(def, location)?;
    if !plan.has_changes() {
        return Ok((table, plan));
    }
    if plan.replace {
        return replace(table, def, location, plan, info).await;
    }
    let metadata = evolved_metadata(&table, &plan, location)?.expect("the plan has changes");
    let added: Vec<StructField> = plan.added.iter().map(|a| a.field.clone()).collect();
    let operation = if added.is_empty() {
        DeltaOperation::SetTableProperties {
            properties: plan.properties.iter().map(|(k, c)| (k.clone(), c.definition.clone())).collect(),
        }
    } else {
        DeltaOperation::AddColumn { fields: added }
    };
    let change = serde_json::to_value(&plan).expect("a plan serializes");
    let (table, version) = commit_metadata(table, metadata, operation, info, change, location).await?;
    tracing::info!(
        table = %location,
        version,
        added = %plan.added.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "),
        properties = plan.properties.len(),
        "schema evolved in place"
    );
    Ok((table, plan))
}

/// The metadata `plan`'s in-place changes give `table`: its schema plus the
/// added columns, the declared properties set, its id, name, description and
/// partitioning kept. `None` when there is nothing to change in place.
pub(crate) fn evolved_metadata(
    table: &DeltaTable,
    plan: &SchemaPlan,
    location: &Location,
) -> Result<Option<Metadata>, Attempt> {
    if !plan.has_changes() || plan.replace {
        return Ok(None);
    }
    let snapshot = table.snapshot().map_err(|e| Attempt::Failed(Error::delta(Stage::Write, location, e)))?;
    let schema_error = |e: deltalake::kernel::Error| Attempt::Failed(Error::internal(Stage::Write, location, e));
    let mut metadata = snapshot.metadata().clone();
    if !plan.added.is_empty() {
        let added = plan.added.iter().map(|a| a.field.clone());
        let schema = StructType::try_new(snapshot.schema().fields().cloned().chain(added))
            .map_err(|e| Attempt::Failed(Error::internal(Stage::Write, location, e)))?;
        metadata = metadata.with_schema(&schema).map_err(schema_error)?;
        // Column mapping tracks the highest column id it gave.
        let mapping = crate::features::mapping::ColumnMapping::of(table, location)?;
        if mapping.is_on() {
            let max = mapping.max_id_after(plan.added.len()).to_string();
            metadata =
                metadata.add_config_key(crate::features::mapping::MAX_ID.to_string(), max).map_err(schema_error)?;
        }
    }
    for (name, change) in &plan.properties {
        metadata = metadata.add_config_key(name.clone(), change.definition.clone()).map_err(schema_error)?;
    }
    Ok(Some(metadata))
}

/// A table that never held a row takes the definition's schema,
/// partitioning and properties, keeping its id, name and description.
async fn replace(
    table: DeltaTable,
    def: &TableDefinition,
    location: &Location,
    plan: SchemaPlan,
    info: serde_json::Value,
) -> Result<(DeltaTable, SchemaPlan), Attempt> {
    let delta_error = |e| Attempt::Failed(Error::delta(Stage::Write, location, e));
    let snapshot = table.snapshot().map_err(delta_error)?;
    let spec = crate::table::spec::TableSpec::shape_of(def)?;
    let schema = StructType::try_new(spec.fields.clone())
        .map_err(|e| Attempt::Failed(Error::internal(Stage::Write, location, e)))?;
    let old = snapshot.metadata().clone();
    let kernel_error = |e: deltalake::kernel::Error| Attempt::Failed(Error::internal(Stage::Write, location, e));
    let mut metadata = deltalake::kernel::new_metadata(&schema, [spec.partition_by.clone()], spec.properties.clone())
        .map_err(kernel_error)?
        .with_table_id(old.id().to_string())
        .map_err(kernel_error)?;
    if let Some(name) = old.name() {
        metadata = metadata.with_name(name.to_string()).map_err(kernel_error)?;
    }
    if let Some(description) = old.description() {
        metadata = metadata.with_description(description.to_string()).map_err(kernel_error)?;
    }
    let operation = DeltaOperation::Create {
        mode: deltalake::protocol::SaveMode::Overwrite,
        location: table.table_url().clone(),
        protocol: snapshot.protocol().clone(),
        metadata: metadata.clone(),
    };
    let change = serde_json::json!({ "replaced": "the table held no row" });
    let (table, version) = commit_metadata(table, metadata, operation, info, change, location).await?;
    tracing::info!(table = %location, version, "a table without rows took its definition's schema");
    Ok((table, plan))
}

/// Commits `metadata` alone as `operation`, its commit info `info` with
/// `change` as `schema_change`. Returns the table at the new version.
pub(crate) async fn commit_metadata(
    mut table: DeltaTable,
    metadata: Metadata,
    operation: DeltaOperation,
    mut info: serde_json::Value,
    change: serde_json::Value,
    location: &Location,
) -> Result<(DeltaTable, u64), Attempt> {
    if let Some(fields) = info.as_object_mut() {
        fields.insert("schema_change".into(), change);
    }
    let delta_error = |e| Attempt::Failed(Error::delta(Stage::Write, location, e));
    let snapshot = table.snapshot().map_err(delta_error)?;
    let commit =
        CommitBuilder::from(CommitProperties::default().with_metadata(crate::table::commit::commit_info(info)))
            .with_actions(vec![Action::Metadata(metadata)])
            .build(Some(snapshot), table.log_store(), operation)
            .await
            .map_err(|e| commit_error(Stage::Write, location, e))?;
    table.load_version(commit.version()).await.map_err(delta_error)?;
    Ok((table, commit.version()))
}
