//! The Parquet files of a load: the schema they are written in, and the
//! writers of data files and of change-data files (`_change_data/`, the
//! rows a commit changed, which Delta's change data feed reads instead of
//! inferring changes from whole files added and removed).
//!
//! Files are written in the table's schema *after* the load: the table's
//! columns in its order, then the definition's columns it does not have yet
//! (added by the load's own commit), with statistics for the columns the
//! definition says (`delta.dataSkippingStatsColumns`, which the same commit
//! sets if it changed).
//! delta-rs's `RecordBatchWriter` takes the table's schema as it is and,
//! on a partitioned table, drops columns it does not know: a new date
//! loaded right after a column was declared lost the column's values.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use delta_kernel::expressions::Scalar;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::{Add, AddCDCFile};
use deltalake::DeltaTable;
use indexmap::IndexMap;
use object_store::prefix::PrefixStore;

use super::writer_properties;
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// The column of a change-data file saying what happened to the row.
pub const CHANGE_TYPE: &str = "_change_type";
/// Where a table's change-data files live, relative to its root.
const CHANGE_DATA_DIR: &str = "_change_data";
/// Delta's default number of leading columns with statistics.
const DEFAULT_STATS_COLUMNS: u64 = 32;

/// How one table's files are written.
#[derive(Clone)]
pub struct FileLayout {
    /// The columns of a file, partition column included (it goes to the path).
    pub schema: SchemaRef,
    pub partition_by: String,
    /// The same columns as Parquet holds them: under column mapping, by
    /// physical name with field ids ([`crate::features::mapping`]).
    file_schema: SchemaRef,
    file_partition: String,
    store: deltalake::logstore::ObjectStoreRef,
    properties: deltalake::parquet::file::properties::WriterProperties,
    num_indexed_cols: DataSkippingNumIndexedCols,
    stats_columns: Option<Vec<String>>,
    /// The table records row changes (`delta.enableChangeDataFeed`).
    pub change_data_feed: bool,
}

impl FileLayout {
    /// The layout of `table`'s files once `def`'s columns are all in it.
    pub fn of(table: &DeltaTable, def: &TableDefinition, location: &Location) -> Result<FileLayout> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
        let declared = def.arrow_schema();
        let table_columns: Vec<String> = snapshot.schema().fields().map(|f| f.name().clone()).collect();
        let mut fields: Vec<Arc<Field>> = Vec::with_capacity(declared.fields().len());
        for name in &table_columns {
            let field = declared.field_with_name(name).map_err(|_| {
                Error::internal(Stage::Write, location, format!("the table's column {name} is not the definition's"))
            })?;
            fields.push(Arc::new(field.clone()));
        }
        fields.extend(declared.fields().iter().filter(|f| !table_columns.contains(f.name())).cloned());
        let properties = snapshot.table_config();
        let change_data_feed = properties.enable_change_data_feed.unwrap_or(false);
        // Under column mapping, the physical names (the columns this load
        // adds get theirs from the same plan as the commit's metadata).
        let mapping = crate::features::mapping::ColumnMapping::of(table, location)?;
        let added: Vec<String> = match mapping.is_on() {
            true => crate::schema::plan(def, Some(table), location)?.added.into_iter().map(|a| a.name).collect(),
            false => Vec::new(),
        };
        let added: Vec<&str> = added.iter().map(String::as_str).collect();
        let physical = |name: &str| mapping.physical(name, &added);
        let file_fields: Vec<Field> = fields
            .iter()
            .map(|f| {
                let (name, id) = physical(f.name());
                let field = Field::new(name, f.data_type().clone(), f.is_nullable());
                match id {
                    Some(id) => field.with_metadata(
                        [(crate::features::mapping::PARQUET_FIELD_ID.to_string(), id.to_string())].into(),
                    ),
                    None => field,
                }
            })
            .collect();
        // deltalake parses each name as SQL: a physical name (`col-<uuid>`)
        // is quoted.
        let stats_columns = crate::table::spec::stats_columns(def)
            .split(',')
            .map(|c| match mapping.is_on() {
                true => format!("`{}`", physical(c).0),
                false => c.to_string(),
            })
            .collect();
        Ok(FileLayout {
            schema: Arc::new(Schema::new(fields)),
            partition_by: def.partition_by.clone(),
            file_schema: Arc::new(Schema::new(file_fields)),
            file_partition: physical(&def.partition_by).0,
            store: table.object_store(),
            properties: writer_properties(def),
            num_indexed_cols: properties
                .data_skipping_num_indexed_cols
                .unwrap_or(DataSkippingNumIndexedCols::NumColumns(DEFAULT_STATS_COLUMNS)),
            stats_columns: Some(stats_columns),
            change_data_feed,
        })
    }

    fn config(&self, schema: SchemaRef) -> WriterConfig {
        WriterConfig::new(
            schema,
            vec![self.file_partition.clone()],
            Some(self.properties.clone()),
            None,
            None,
            self.num_indexed_cols,
            self.stats_columns.clone(),
        )
    }

    /// A writer of data files: each `close` gives the files it wrote. It
    /// takes batches as [`FileLayout::to_file`] makes them.
    pub fn data_writer(&self) -> DeltaWriter {
        DeltaWriter::new(self.store.clone(), self.config(self.file_schema.clone()))
    }

    /// Writes `batch` (in the file's columns: [`FileLayout::to_file`] or
    /// [`FileLayout::as_changes`]) with `writer`. A load writes one date:
    /// when every row holds the same date, the batch goes to that date's
    /// file as it is, instead of through deltalake's split by partition
    /// value, which sorts and copies every column of every batch (6% of a
    /// first load's CPU in a profile, docs/performance.md). The file's
    /// partition value is the one the split would give (the same function
    /// reads it from the first row).
    pub async fn write(&self, writer: &mut DeltaWriter, batch: &RecordBatch, location: &Location) -> Result<()> {
        let written = match one_date(batch, &self.file_partition) {
            Some(values) => writer.write_partition(batch.clone(), &values).await,
            None => writer.write(batch).await,
        };
        written.map_err(|e| Error::delta(Stage::Write, location, e))
    }

    /// A data file's rows in the file's order (as written, batch after
    /// batch), in the file's own columns ([`FileLayout::read_from_file`]
    /// names them as the table does). Read straight from the store, not
    /// through a scan that may split the file and interleave its parts.
    pub async fn read_back(&self, add: &Add, location: &Location) -> Result<deltalake::datafile::BatchStream> {
        use deltalake::datafile::DataFileReader;
        let path = object_store::path::Path::from_url_path(&add.path)
            .map_err(|e| Error::internal(Stage::Write, location, e))?;
        deltalake::datafile::reader::ParquetFileReader::new(self.store.clone())
            .read_file(path)
            .await
            .map_err(|e| Error::delta(Stage::Write, location, e))
    }

    /// The schema of a change-data file: the table's, then `_change_type`.
    pub fn change_schema(&self) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = self.file_schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(CHANGE_TYPE, DataType::Utf8, false)));
        Arc::new(Schema::new(fields))
    }

    /// A writer of change-data files, under the table's `_change_data/`.
    pub fn change_writer(&self) -> DeltaWriter {
        let store = Arc::new(PrefixStore::new(self.store.clone(), CHANGE_DATA_DIR));
        DeltaWriter::new(store, self.config(self.change_schema()))
    }

    /// `batch` (any column order; columns the table has that it lacks read
    /// as null) in the table's columns.
    pub fn conform(&self, batch: &RecordBatch, location: &Location) -> Result<RecordBatch> {
        conform_to(&self.schema, batch, location)
    }

    /// `batch` as a data file holds it (physical names under column mapping).
    pub fn to_file(&self, batch: &RecordBatch, location: &Location) -> Result<RecordBatch> {
        let rows = self.conform(batch, location)?;
        if self.file_schema.fields() == self.schema.fields() {
            return Ok(rows);
        }
        RecordBatch::try_new(self.file_schema.clone(), rows.columns().to_vec())
            .map_err(|e| Error::internal(Stage::Write, location, e))
    }

    /// Rows read straight from a data file this layout wrote, by the
    /// table's column names again.
    pub fn read_from_file(&self, batch: &RecordBatch, location: &Location) -> Result<RecordBatch> {
        if self.file_schema.fields() == self.schema.fields() {
            return Ok(batch.clone());
        }
        let logical = |physical: &str| {
            self.file_schema.fields().iter().position(|f| f.name() == physical).map(|at| self.schema.field(at).clone())
        };
        let fields: Vec<Field> =
            batch.schema().fields().iter().map(|f| logical(f.name()).unwrap_or_else(|| f.as_ref().clone())).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())
            .map_err(|e| Error::internal(Stage::Write, location, e))
    }

    /// `batch` as change rows, each of the type `types` gives.
    pub fn as_changes(&self, batch: &RecordBatch, types: StringArray, location: &Location) -> Result<RecordBatch> {
        let rows = self.conform(batch, location)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(types));
        RecordBatch::try_new(self.change_schema(), columns).map_err(|e| Error::internal(Stage::Write, location, e))
    }
}

/// The change-data files a writer wrote, as the commit's `cdc` actions
/// (paths relative to the table; not a data change of their own).
pub fn change_files(adds: Vec<Add>) -> Vec<AddCDCFile> {
    adds.into_iter()
        .map(|add| AddCDCFile {
            path: format!("{CHANGE_DATA_DIR}/{}", add.path),
            size: add.size,
            partition_values: add.partition_values,
            data_change: false,
            tags: add.tags,
        })
        .collect()
}

/// The partition values of `batch` when every row holds the same non-null
/// date in `partition`, as deltalake's split by partition value gives them.
fn one_date(batch: &RecordBatch, partition: &str) -> Option<IndexMap<String, Scalar>> {
    let column = batch.column_by_name(partition)?;
    let dates = column.as_primitive_opt::<Date32Type>()?;
    let first = *dates.values().first()?;
    if dates.null_count() > 0 || dates.values().iter().any(|&day| day != first) {
        return None;
    }
    let value = Scalar::from_array(column.as_ref(), 0)?;
    Some(IndexMap::from([(partition.to_string(), value)]))
}

fn conform_to(schema: &SchemaRef, batch: &RecordBatch, location: &Location) -> Result<RecordBatch> {
    let fail = |e: datafusion::arrow::error::ArrowError| Error::internal(Stage::Write, location, e);
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => cast(column, field.data_type()).map_err(fail),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Date32Array;
    use object_store::memory::InMemory;

    fn batch(days: Vec<Option<i32>>) -> RecordBatch {
        let ids = StringArray::from_iter_values((0..days.len()).map(|i| format!("s{i}")));
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("export_date", DataType::Date32, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(Date32Array::from(days))]).unwrap()
    }

    async fn written(batch: &RecordBatch, direct: bool) -> Vec<Add> {
        let config = WriterConfig::new(
            batch.schema(),
            vec!["export_date".into()],
            None,
            None,
            None,
            DataSkippingNumIndexedCols::NumColumns(DEFAULT_STATS_COLUMNS),
            None,
        );
        let mut writer = DeltaWriter::new(Arc::new(InMemory::new()), config);
        match direct.then(|| one_date(batch, "export_date")).flatten() {
            Some(values) => writer.write_partition(batch.clone(), &values).await.unwrap(),
            None => writer.write(batch).await.unwrap(),
        }
        writer.close().await.unwrap()
    }

    #[tokio::test]
    async fn a_one_date_batch_is_written_where_the_split_would_write_it() {
        let day = batch(vec![Some(17_987); 3]);
        let (split, direct) = (written(&day, false).await, written(&day, true).await);
        assert_eq!((split.len(), direct.len()), (1, 1));
        assert_eq!(split[0].partition_values, direct[0].partition_values);
        assert_eq!(
            split[0].partition_values.get("export_date"),
            Some(&Some("2019-04-01".to_string())),
            "{:?}",
            split[0].partition_values
        );
        let folder = |add: &Add| add.path.rsplit_once('/').map(|(dir, _)| dir.to_string());
        assert_eq!(folder(&split[0]), Some("export_date=2019-04-01".into()));
        assert_eq!(folder(&split[0]), folder(&direct[0]));
        assert_eq!(split[0].stats, direct[0].stats, "the same statistics");
    }

    #[test]
    fn only_a_batch_of_one_non_null_date_skips_the_split() {
        assert!(one_date(&batch(vec![Some(1), Some(1)]), "export_date").is_some());
        assert!(one_date(&batch(vec![Some(1), Some(2)]), "export_date").is_none(), "two dates");
        assert!(one_date(&batch(vec![Some(1), None]), "export_date").is_none(), "a null date");
        assert!(one_date(&batch(vec![]), "export_date").is_none(), "no row");
        assert!(one_date(&batch(vec![Some(1)]), "id").is_none(), "not a date column");
    }
}
