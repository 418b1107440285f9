//! Opens the Delta table of a definition, creating it on first use with the
//! definition's schema, partitioning and properties, taking over a table
//! another engine created (the legacy pipeline's, without the row
//! fingerprint), and refusing a table whose schema is not the definition's.
//! A table on S3 is written only once its store was found to enforce
//! conditional writes.

use std::collections::BTreeMap;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType as DeltaType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};
use crate::table::commit::{commit_error, commit_info, Attempt};
use crate::table::spec::TableSpec;

/// The table at `location`, created from `spec` if there is none yet.
/// Concurrent first loads race to create it; the losers load the winner's.
pub async fn open_or_create(storage: &Storage, location: &Location, spec: &TableSpec) -> Result<DeltaTable> {
    let mut last_error = None;
    for _ in 0..3 {
        if let Some(table) = storage.open_table(location).await? {
            let table = match schema_fit(&table, location, spec)? {
                Fit::Exact => table,
                Fit::WithoutRowHash => adopt(table, location, spec).await?,
            };
            storage.check_commits_are_safe(location).await?;
            return Ok(table);
        }
        if let Some(found) = storage.foreign_content(location).await? {
            // The log this command kept may predate another writer's new
            // table (whose files these are): look again before refusing.
            storage.refresh_log(location);
            if storage.open_table(location).await?.is_some() {
                continue;
            }
            return Err(Error::usage(
                Stage::Write,
                location,
                format!(
                    "this location holds files ({found}, ...) but no Delta table: shoplake creates a table only \
                     where nothing is (is --table or --lake pointing at the wrong place?)"
                ),
            ));
        }
        storage.prepare_for_writing(location)?;
        let empty =
            storage.table_builder(location).await?.build().map_err(|e| Error::delta(Stage::Write, location, e))?;
        let created = empty
            .create()
            .with_table_name(&spec.name)
            .with_comment(&spec.description)
            .with_columns(spec.fields.clone())
            .with_partition_columns([spec.partition_by.clone()])
            .with_configuration(spec.properties.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
            .with_save_mode(SaveMode::ErrorIfExists)
            // shoplake's own properties (the key) are not Delta's.
            .with_raise_if_key_not_exists(false)
            // Only version 0 may create the table: a creator that lost the
            // race must not commit a second CREATE on top, it loads instead.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(table) => {
                tracing::info!(table = %location, "created table");
                storage.check_commits_are_safe(location).await?;
                return Ok(table);
            }
            Err(e) => {
                // Losing the race to another creator: load the winner's table.
                if storage.open_table(location).await?.is_some() {
                    tracing::debug!(table = %location, "another writer created the table first");
                    continue;
                }
                match commit_error(Stage::Write, location, e) {
                    Attempt::Conflict(reason) => {
                        last_error = Some(Error::unavailable(
                            Stage::Write,
                            location,
                            format!("creating the table raced with other writers: {reason}"),
                        ));
                    }
                    Attempt::Failed(error) => return Err(error),
                }
            }
        }
    }
    Err(last_error.expect("three failed attempts"))
}

/// The checks `open_or_create` makes, for a table opened another way.
pub async fn check_table(storage: &Storage, location: &Location, spec: &TableSpec, table: &DeltaTable) -> Result<()> {
    if schema_fit(table, location, spec)? != Fit::Exact {
        return Err(Error::internal(Stage::Write, location, "a table to take over was read ahead"));
    }
    storage.check_commits_are_safe(location).await
}

/// How a table's schema fits its definition (column order and in-place
/// changes aside).
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    Exact,
    /// Every column but the row fingerprint: a table another engine (the
    /// legacy Spark pipeline) created; shoplake can take it over.
    WithoutRowHash,
}

fn schema_fit(table: &DeltaTable, location: &Location, spec: &TableSpec) -> Result<Fit> {
    // A data table follows its definition: additive changes are applied
    // with the next load's commit, the rest refused (crate::schema).
    if let Some(def) = spec.def {
        let plan = crate::schema::plan(def, Some(table), location)?;
        plan.check(def, location)?;
        return Ok(if plan.adopt { Fit::WithoutRowHash } else { Fit::Exact });
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let actual: BTreeMap<String, DeltaType> =
        snapshot.schema().fields().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
    let wanted: BTreeMap<String, DeltaType> =
        spec.fields.iter().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
    if actual == wanted {
        return Ok(Fit::Exact);
    }
    let names = |cols: &BTreeMap<String, DeltaType>| {
        cols.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>().join(", ")
    };
    Err(Error::usage(
        Stage::Write,
        location,
        format!(
            "the table's schema does not match its definition, so shoplake will not write to it; table: [{}]; definition: [{}]",
            names(&actual),
            names(&wanted)
        ),
    ))
}

/// Takes over a table that has every column but the row fingerprint: adds
/// it (nullable; existing rows have none, so their next load rewrites them
/// with one) and the definition's table properties that are missing.
async fn adopt(table: DeltaTable, location: &Location, spec: &TableSpec) -> Result<DeltaTable> {
    let row_hash = spec.row_hash.as_deref().expect("only tables of definitions with a fingerprint are adopted");
    tracing::warn!(table = %location, "taking over a table written without shoplake's row fingerprint: adding column {row_hash}");
    let info =
        serde_json::json!({ "adopted": true, "added_column": row_hash, "shoplake_version": env!("CARGO_PKG_VERSION") });
    let mapping = crate::features::mapping::ColumnMapping::of(&table, location)?;
    let field = StructField::new(row_hash, DeltaType::BINARY, true);
    let table = match mapping.is_on() {
        true => add_mapped_column(table, location, field, &mapping, info).await?,
        false => table
            .add_columns()
            .with_fields([field])
            .with_commit_properties(CommitProperties::default().with_metadata(commit_info(info)))
            .await
            .map_err(|e| Error::delta(Stage::Write, location, e))?,
    };
    let config =
        table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?.metadata().configuration().clone();
    let adopted = (crate::schema::ADOPTED_PROPERTY.to_string(), "true".to_string());
    let missing: std::collections::HashMap<String, String> =
        spec.properties.iter().chain([&adopted]).filter(|(k, v)| config.get(k) != Some(v)).cloned().collect();
    if missing.is_empty() {
        return Ok(table);
    }
    let keys: Vec<String> = missing.keys().cloned().collect();
    let before = table.clone();
    match table.set_tbl_properties().with_properties(missing).with_raise_if_not_exists(false).await {
        Ok(table) => Ok(table),
        Err(e) => {
            // Time travel and `changes` need them; loading does not.
            tracing::warn!(table = %location, properties = ?keys, "could not set the definition's table properties: {}", crate::error::flatten(&e));
            Ok(before)
        }
    }
}

/// ADD COLUMN on a table with column mapping, which deltalake refuses:
/// the column (nullable) with a physical name and id of its own, in a
/// metadata commit of shoplake's.
async fn add_mapped_column(
    table: DeltaTable,
    location: &Location,
    field: StructField,
    mapping: &crate::features::mapping::ColumnMapping,
    info: serde_json::Value,
) -> Result<DeltaTable> {
    use deltalake::kernel::{MetadataExt, StructType};
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let kernel_error = |e: deltalake::kernel::Error| Error::internal(Stage::Write, location, e);
    let name = field.name().clone();
    let mapped = mapping.mapped_field(field.clone(), &[name.as_str()]);
    let schema = StructType::try_new(snapshot.schema().fields().cloned().chain([mapped]))
        .map_err(|e| Error::internal(Stage::Write, location, e))?;
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&schema)
        .map_err(kernel_error)?
        .add_config_key(crate::features::mapping::MAX_ID.to_string(), mapping.max_id_after(1).to_string())
        .map_err(kernel_error)?;
    let operation = deltalake::protocol::DeltaOperation::AddColumn { fields: vec![field] };
    let change = serde_json::json!({ "added_column": name, "column_mapping": true });
    let (table, _) = crate::schema::apply::commit_metadata(table, metadata, operation, info, change, location)
        .await
        .map_err(Error::from)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::check_conditional_writes;
    use futures::stream::BoxStream;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::path::Path as StorePath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions, PutOptions,
        PutResult,
    };
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    /// A store that ignores the put mode, like S3 servers without conditional writes.
    #[derive(Debug, Default)]
    struct Unconditional(InMemory);

    impl std::fmt::Display for Unconditional {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Unconditional")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Unconditional {
        async fn put_opts(
            &self,
            location: &StorePath,
            payload: PutPayload,
            _: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.0.put_opts(location, payload, PutOptions::default()).await
        }
        async fn put_multipart_opts(
            &self,
            location: &StorePath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &StorePath, options: GetOptions) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<StorePath>>,
        ) -> BoxStream<'static, object_store::Result<StorePath>> {
            self.0.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &StorePath, to: &StorePath, options: CopyOptions) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn stores_without_conditional_writes_are_refused_and_nothing_is_left_behind() {
        let location = Location::parse("s3://lake/t").unwrap();
        let prefix = StorePath::from("t");
        let commit = StorePath::from("t/_delta_log/00000000000000000000.json");
        let objects = |store: &dyn ObjectStore| {
            let listed: Vec<_> =
                futures::executor::block_on(store.list(None).map_ok(|m| (m.location, m.size)).try_collect()).unwrap();
            listed
        };

        let safe = InMemory::new();
        safe.put(&commit, PutPayload::from_static(b"{\"commitInfo\":{}}")).await.unwrap();
        let before = objects(&safe);
        check_conditional_writes(&safe, &prefix, &location).await.expect("InMemory enforces them");
        assert_eq!(objects(&safe), before, "no object added or changed");

        let unsafe_store = Unconditional::default();
        unsafe_store.0.put(&commit, PutPayload::from_static(b"{\"commitInfo\":{}}")).await.unwrap();
        let before = objects(&unsafe_store.0);
        let err = check_conditional_writes(&unsafe_store, &prefix, &location).await.unwrap_err();
        assert!(err.message.contains("does not enforce conditional writes"), "{err}");
        assert_eq!(err.kind, crate::error::Kind::Usage);
        let after = objects(&unsafe_store.0);
        assert_eq!(after, before, "the commit file was rewritten with its own bytes only");
        let bytes = unsafe_store.0.get(&commit).await.unwrap().bytes().await.unwrap();
        assert_eq!(&bytes[..], b"{\"commitInfo\":{}}");
    }
}
