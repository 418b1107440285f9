//! Stage 3, transform: runs the table's `transform.sql` in DataFusion over
//! the reader's batches, as a stream, so the export is never held twice.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};
use crate::read::{self, BatchReceiver};

/// The name under which the transform SQL sees the export.
pub const EXPORT_TABLE: &str = "export";

/// Plans `transform.sql` over the export batches; rows flow when the
/// returned stream is polled.
pub async fn run(def: &TableDefinition, batches: BatchReceiver, source_uri: &str) -> Result<SendableRecordBatchStream> {
    let schema = read::export_schema(def);
    let ctx = SessionContext::new();
    let export = ExportPartition { schema: schema.clone(), batches: Mutex::new(Some(batches)) };
    let table = StreamingTable::try_new(schema, vec![Arc::new(export)])
        .map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
    ctx.register_table(EXPORT_TABLE, Arc::new(table))
        .map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))?;
    let frame = ctx
        .sql(&def.transform_sql)
        .await
        .map_err(|e| Error::internal(Stage::Transform, format!("tables/{}/transform.sql", def.name), e))?;
    frame.execute_stream().await.map_err(|e| Error::datafusion(Stage::Transform, source_uri, e))
}

/// The export as a one-shot DataFusion partition.
struct ExportPartition {
    schema: SchemaRef,
    batches: Mutex<Option<BatchReceiver>>,
}

impl fmt::Debug for ExportPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExportPartition")
    }
}

impl PartitionStream for ExportPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = self.batches.lock().expect("export partition lock").take();
        let stream = match receiver {
            Some(receiver) => {
                futures::stream::unfold(receiver, |mut rx| async move { rx.recv().await.map(|batch| (Ok(batch), rx)) })
                    .boxed()
            }
            None => futures::stream::once(async {
                Err(DataFusionError::Internal("the export can be read only once".into()))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
