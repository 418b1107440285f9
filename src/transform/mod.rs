//! Stage 3, transform: runs the table's `transform.sql` in DataFusion over
//! the reader's batches, as a stream, so the export is never held twice.
//! The same SQL is planned when the definition is loaded ([`plan_check`]),
//! so an unknown column or a wrong type is found by `shoplake validate`,
//! not at 03:00.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::{self, BatchReceiver, LINE, RAW, REJECT};

mod fill;

/// Each column of the table, and the export columns its value comes from
/// (column-level lineage).
pub type ColumnSources = std::collections::BTreeMap<String, Vec<String>>;

/// The name under which the transform SQL sees the export.
pub const EXPORT_TABLE: &str = "export";

/// Plans `transform.sql` over the export batches; rows flow when the
/// returned stream is polled.
pub async fn run(def: &TableDefinition, batches: BatchReceiver, source_uri: &str) -> Result<SendableRecordBatchStream> {
    let schema = read::export_schema(def);
    let ctx = crate::session::context();
    let batches =
        futures::stream::unfold(batches, |mut rx| async move { rx.recv().await.map(|batch| (Ok(batch), rx)) }).boxed();
    let table = OneShot::table(schema, batches).map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
    register_export(&ctx, def, Arc::new(table))
        .await
        .map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
    let frame = ctx
        .sql(&def.transform_sql)
        .await
        .map_err(|e| Error::internal(Stage::Transform, format!("tables/{}/transform.sql", def.name), e))?;
    frame.execute_stream().await.map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))
}

/// Plans `transform.sql` over an empty export of the declared columns and
/// checks what it hands on ([`check_output`]).
pub async fn plan_check(def: &TableDefinition) -> std::result::Result<(), String> {
    let ctx = crate::session::context();
    let empty = MemTable::try_new(read::export_schema(def), vec![vec![]]).map_err(|e| e.to_string())?;
    register_export(&ctx, def, Arc::new(empty)).await.map_err(|e| crate::error::flatten(&e))?;
    let frame = ctx.sql(&def.transform_sql).await.map_err(|e| crate::error::flatten(&e))?;
    check_output(def, frame.schema().as_arrow())
}

/// The export as read, when `export` is the view filling its `fill_down` columns.
const EXPORT_READ: &str = "export_as_read";

/// Registers `table` (the export's batches) as `export`: as read, or, with
/// a `group_by`, sorted by group and line and filled ([`fill`]).
async fn register_export(
    ctx: &datafusion::prelude::SessionContext,
    def: &TableDefinition,
    table: Arc<dyn datafusion::catalog::TableProvider>,
) -> datafusion::error::Result<()> {
    let schema = table.schema();
    let (Some(group), Some(plan)) = (def.group_by.as_ref(), fill::Fill::of(def, &schema)) else {
        ctx.register_table(EXPORT_TABLE, table)?;
        return Ok(());
    };
    ctx.register_table(EXPORT_READ, table)?;
    let sorted = ctx.sql(&format!("SELECT * FROM {EXPORT_READ} ORDER BY \"{group}\", \"{LINE}\"")).await?;
    ctx.register_table(EXPORT_TABLE, Arc::new(OneShot::table(schema, fill::filled(sorted, plan))?))?;
    Ok(())
}

/// Each table column and the export columns it is made from, read off the
/// planned `transform.sql` (for column-level lineage): a column passed on
/// is its own source, a derived one the columns its expression reads, the
/// fingerprint every value column's sources.
pub async fn column_sources(def: &TableDefinition) -> std::result::Result<ColumnSources, String> {
    use datafusion::logical_expr::{Expr, LogicalPlan};
    let ctx = crate::session::context();
    let empty = MemTable::try_new(read::export_schema(def), vec![vec![]]).map_err(|e| e.to_string())?;
    register_export(&ctx, def, Arc::new(empty)).await.map_err(|e| crate::error::flatten(&e))?;
    let plan = ctx.sql(&def.transform_sql).await.map_err(|e| crate::error::flatten(&e))?.into_unoptimized_plan();
    let mut node = &plan;
    let projection = loop {
        match node {
            LogicalPlan::Projection(projection) => break projection,
            other => match other.inputs().first() {
                Some(input) => node = input,
                None => return Err("the transform has no projection".into()),
            },
        }
    };
    let from_export: Vec<&str> = def.export_columns().map(|c| c.name.as_str()).collect();
    let mut sources = ColumnSources::new();
    for expr in &projection.expr {
        let name = match expr {
            Expr::Alias(alias) => alias.name.clone(),
            Expr::Column(column) => column.name.clone(),
            other => other.schema_name().to_string(),
        };
        let Some(column) = def.column(&name) else { continue };
        let mut read: Vec<String> = expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .filter(|c| from_export.contains(&c.as_str()))
            .collect();
        read.sort();
        read.dedup();
        sources.insert(column.name.clone(), read);
    }
    let mut hashed: Vec<String> =
        def.hashed_columns().flat_map(|c| sources.get(&c.name).cloned().unwrap_or_default()).collect();
    hashed.sort();
    hashed.dedup();
    sources.insert(def.row_hash_column().to_string(), hashed);
    Ok(sources)
}

/// What the transform must hand on: every table column but the
/// fingerprint, with its declared type, and the bookkeeping columns.
pub fn check_output(def: &TableDefinition, output: &Schema) -> std::result::Result<(), String> {
    let row_hash = def.row_hash_column();
    let mut problems = Vec::new();
    for column in def.columns.iter().filter(|c| c.name != row_hash) {
        match output.field_with_name(&column.name) {
            Err(_) => problems.push(format!("produces no column {}", column.name)),
            Ok(field) if !same_type(field.data_type(), &column.data_type) => problems.push(format!(
                "column {} is {}, the definition declares {}",
                column.name,
                crate::definition::type_name(field.data_type()),
                crate::definition::type_name(&column.data_type)
            )),
            Ok(_) => {}
        }
    }
    for (name, data_type) in [(LINE, DataType::UInt64), (REJECT, DataType::Utf8), (RAW, DataType::Utf8)] {
        if output.field_with_name(name).map(|f| f.data_type().clone()).ok() != Some(data_type) {
            problems.push(format!("must pass through column {name} (SELECT *, or name it)"));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("; ")),
    }
}

/// Types equal up to the item field's name and nullability of lists.
fn same_type(found: &DataType, declared: &DataType) -> bool {
    match (found, declared) {
        (DataType::List(a), DataType::List(b)) => a.data_type() == b.data_type(),
        (a, b) => a == b,
    }
}

/// A stream read once (the export's batches, or the filled export), as a
/// DataFusion partition.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<BoxStream<'static, datafusion::error::Result<RecordBatch>>>>,
}

impl OneShot {
    /// A table of the one partition `stream`.
    fn table(
        schema: SchemaRef,
        stream: BoxStream<'static, datafusion::error::Result<RecordBatch>>,
    ) -> datafusion::error::Result<StreamingTable> {
        let partition = OneShot { schema: schema.clone(), stream: Mutex::new(Some(stream)) };
        StreamingTable::try_new(schema, vec![Arc::new(partition)])
    }
}

impl fmt::Debug for OneShot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneShot")
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let stream = self.stream.lock().expect("one-shot partition lock").take().unwrap_or_else(|| {
            futures::stream::once(async { Err(DataFusionError::Internal("the export can be read only once".into())) })
                .boxed()
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
