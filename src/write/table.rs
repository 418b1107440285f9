//! Opens the Delta table of a definition, creating it on first use with the
//! definition's schema, partitioning and properties, and refuses a table
//! whose schema is not the definition's.

use datafusion::arrow::datatypes::DataType as ArrowType;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{ArrayType, DataType as DeltaType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::definition::TableDefinition;
use crate::error::{Error, Kind, Result, Stage};
use crate::storage::{Location, Storage};

/// Delta type of an Arrow type used by table definitions.
pub fn delta_type(arrow: &ArrowType) -> Option<DeltaType> {
    Some(match arrow {
        ArrowType::Utf8 => DeltaType::STRING,
        ArrowType::Boolean => DeltaType::BOOLEAN,
        ArrowType::Int64 => DeltaType::LONG,
        ArrowType::Date32 => DeltaType::DATE,
        ArrowType::Binary => DeltaType::BINARY,
        ArrowType::List(item) => {
            DeltaType::Array(Box::new(ArrayType::new(delta_type(item.data_type())?, item.is_nullable())))
        }
        _ => return None,
    })
}

/// The Delta columns of a definition, in order.
pub fn delta_fields(def: &TableDefinition) -> Result<Vec<StructField>> {
    def.columns
        .iter()
        .map(|c| {
            let data_type = delta_type(&c.data_type).ok_or_else(|| {
                Error::internal(Stage::Definition, &def.name, format!("column {} has an unsupported type", c.name))
            })?;
            Ok(StructField::new(&c.name, data_type, c.nullable))
        })
        .collect()
}

/// Table property naming the columns Delta keeps min/max statistics for.
const STATS_COLUMNS: &str = "delta.dataSkippingStatsColumns";

/// Every column but the partition (its value is in the path) and the row
/// fingerprint (random bytes: no query filters on it, and Delta cannot keep
/// statistics of binary columns; it would warn on every file written).
fn stats_columns(def: &TableDefinition) -> String {
    let skipped = [def.partition_by.as_str(), def.row_hash_column()];
    let names: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).filter(|n| !skipped.contains(n)).collect();
    names.join(",")
}

/// What a new table is created with.
pub struct TableSpec {
    pub name: String,
    pub description: String,
    pub fields: Vec<StructField>,
    pub partition_by: String,
    pub properties: Vec<(String, String)>,
}

impl TableSpec {
    pub fn of(def: &TableDefinition) -> Result<TableSpec> {
        Ok(TableSpec {
            name: def.name.clone(),
            description: def.description.clone(),
            fields: delta_fields(def)?,
            partition_by: def.partition_by.clone(),
            properties: def
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([(STATS_COLUMNS.to_string(), stats_columns(def))])
                .collect(),
        })
    }
}

/// The table at `location`, created from `spec` if there is none yet.
/// Concurrent first loads race to create it; the losers load the winner's.
pub async fn open_or_create(storage: &Storage, location: &Location, spec: &TableSpec) -> Result<DeltaTable> {
    check_store(storage, location).await?;
    let mut last_error = None;
    for _ in 0..3 {
        if let Some(table) = storage.open_table(location).await? {
            check_schema(&table, location, &spec.fields)?;
            return Ok(table);
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
            // Only version 0 may create the table: a creator that lost the
            // race must not commit a second CREATE on top, it loads instead.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(table) => {
                tracing::info!(table = %location, "created table");
                return Ok(table);
            }
            Err(e) => {
                let error = Error::delta(Stage::Write, location, e);
                if error.kind == Kind::Unavailable {
                    return Err(error);
                }
                tracing::debug!(table = %location, error = %error, "creating the table raced with another writer");
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("three failed attempts"))
}

/// The checks `open_or_create` makes, for a table opened another way.
pub async fn check_table(storage: &Storage, location: &Location, spec: &TableSpec, table: &DeltaTable) -> Result<()> {
    check_store(storage, location).await?;
    check_schema(table, location, &spec.fields)
}

/// Tables on S3 are written only where commits are safe.
async fn check_store(storage: &Storage, location: &Location) -> Result<()> {
    if let Location::S3 { .. } = location {
        let (store, prefix) = storage.object_store(location).await?;
        check_conditional_writes(store.as_ref(), &prefix, location).await?;
    }
    Ok(())
}

fn check_schema(table: &DeltaTable, location: &Location, expected: &[StructField]) -> Result<()> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let schema = snapshot.schema();
    let actual: Vec<(String, DeltaType)> =
        schema.fields().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
    let wanted: Vec<(String, DeltaType)> =
        expected.iter().map(|f| (f.name().to_string(), f.data_type().clone())).collect();
    if actual != wanted {
        let names =
            |cols: &[(String, DeltaType)]| cols.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>().join(", ");
        return Err(Error::internal(
            Stage::Write,
            location,
            format!(
                "the table's schema does not match its definition; table: [{}]; definition: [{}]",
                names(&actual),
                names(&wanted)
            ),
        ));
    }
    Ok(())
}

/// Delta commits on S3 are safe only if the store refuses to overwrite an
/// existing object on a conditional put (`If-None-Match: *`): otherwise two
/// writers of the same version would silently lose one commit. deltalake 1.x
/// has no other locking, so a store that ignores the condition is refused.
pub async fn check_conditional_writes(
    store: &dyn ObjectStore,
    table_prefix: &StorePath,
    location: &Location,
) -> Result<()> {
    let probe = table_prefix.clone().join("_shoplake_probe").join(uuid::Uuid::new_v4().to_string());
    let put =
        |body: &'static str| store.put_opts(&probe, PutPayload::from_static(body.as_bytes()), PutMode::Create.into());
    put("first").await.map_err(|e| Error::object_store(Stage::Write, location, e))?;
    let second = put("second").await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(()),
        Err(e) => Err(Error::object_store(Stage::Write, location, e)),
        Ok(_) => Err(Error::internal(
            Stage::Write,
            location,
            "this store does not enforce conditional writes (If-None-Match): concurrent commits could overwrite \
             each other, so shoplake will not write here. AWS S3, MinIO and LocalStack enforce them.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions, PutOptions,
        PutResult,
    };

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
    async fn stores_without_conditional_writes_are_refused() {
        let location = Location::parse("s3://lake/t").unwrap();
        let prefix = StorePath::from("t");
        check_conditional_writes(&InMemory::new(), &prefix, &location).await.expect("InMemory enforces them");
        let err = check_conditional_writes(&Unconditional::default(), &prefix, &location).await.unwrap_err();
        assert!(err.message.contains("does not enforce conditional writes"), "{err}");
    }
}
