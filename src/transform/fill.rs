//! Grouped rows (`group_by`, `fill_down`): a group's later rows take the
//! values their `fill_down` columns lack from the group's first row (by
//! line). The export is sorted by group and line (DataFusion's sort,
//! spilling within `--memory-limit`), then filled in one pass over the
//! sorted batches: a group's first row is the first of its run, its values
//! carried to the next batch when the run goes on. A row still without a
//! value for a required (`nullable = false`) `fill_down` column is marked
//! rejected, naming it. Rows go on in group order; `_line` says where each
//! was (the reader's batches come in no particular order either).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::prelude::DataFrame;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::definition::TableDefinition;
use crate::read::REJECT;

/// The columns the fill reads and writes, by position in the export schema.
#[derive(Debug, Clone)]
pub struct Fill {
    group: usize,
    /// The `fill_down` columns.
    columns: Vec<usize>,
    /// The required ones among them, with their names (in declaration order).
    required: Vec<(usize, String)>,
    reject: usize,
}

impl Fill {
    /// The fill of `def` over batches of `schema`, or `None` without a group.
    pub fn of(def: &TableDefinition, schema: &SchemaRef) -> Option<Fill> {
        let group = schema.index_of(def.group_by.as_ref()?).ok()?;
        let at = |name: &str| schema.index_of(name).ok();
        let filled = || def.columns.iter().filter(|c| c.fill_down);
        Some(Fill {
            group,
            columns: filled().filter_map(|c| at(&c.name)).collect(),
            required: filled().filter(|c| !c.nullable).filter_map(|c| Some((at(&c.name)?, c.name.clone()))).collect(),
            reject: at(REJECT)?,
        })
    }
}

/// The sorted export, filled as it streams.
pub fn filled(sorted: DataFrame, fill: Fill) -> BoxStream<'static, datafusion::error::Result<RecordBatch>> {
    futures::stream::once(sorted.execute_stream())
        .try_flatten()
        .scan(Filler::new(fill), |filler, batch| {
            let filled = batch.and_then(|b| filler.fill(&b).map_err(DataFusionError::from));
            futures::future::ready(Some(filled))
        })
        .boxed()
}

/// The pass over the sorted batches: the group the last batch ended in,
/// and its first row's values.
struct Filler {
    fill: Fill,
    groups: Option<RowConverter>,
    current: Option<(OwnedRow, Vec<ScalarValue>)>,
}

impl Filler {
    fn new(fill: Fill) -> Self {
        Filler { fill, groups: None, current: None }
    }

    fn fill(&mut self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let group = batch.column(self.fill.group);
        let converter = match &mut self.groups {
            Some(converter) => converter,
            None => self.groups.insert(RowConverter::new(vec![SortField::new(group.data_type().clone())])?),
        };
        let keys = converter.convert_columns(std::slice::from_ref(group))?;
        // Each row's group's first row: in this batch, or (`None`) the run the
        // previous batch ended in.
        let mut first_of: Vec<Option<usize>> = Vec::with_capacity(batch.num_rows());
        let mut first: Option<usize> = None;
        for row in 0..batch.num_rows() {
            let same = match row {
                0 => self.current.as_ref().is_some_and(|(key, _)| key.row() == keys.row(0)),
                _ => keys.row(row - 1) == keys.row(row),
            };
            if !same {
                first = Some(row);
            }
            first_of.push(first);
        }
        let carried: Vec<ArrayRef> = match &self.current {
            Some((_, values)) => values
                .iter()
                .map(|v| v.to_array())
                .collect::<datafusion::error::Result<_>>()
                .map_err(|e| ArrowError::ComputeError(e.to_string()))?,
            None => Vec::new(),
        };
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (n, &c) in self.fill.columns.iter().enumerate() {
            let read = batch.column(c);
            if read.null_count() == 0 {
                continue;
            }
            let take: Vec<(usize, usize)> = (0..batch.num_rows())
                .map(|row| match (read.is_null(row), first_of[row]) {
                    (false, _) => (0, row),
                    (true, Some(first)) => (0, first),
                    (true, None) => (1, 0),
                })
                .collect();
            let sources: Vec<&dyn Array> = match carried.get(n) {
                Some(carried) => vec![read.as_ref(), carried.as_ref()],
                None => vec![read.as_ref()],
            };
            columns[c] = interleave(&sources, &take)?;
        }
        // The run the batch ends in goes on into the next one.
        if let (Some(last), Some(Some(first))) = (batch.num_rows().checked_sub(1), first_of.last()) {
            let values = self
                .fill
                .columns
                .iter()
                .map(|&c| ScalarValue::try_from_array(batch.column(c), *first))
                .collect::<datafusion::error::Result<Vec<_>>>()
                .map_err(|e| ArrowError::ComputeError(e.to_string()))?;
            self.current = Some((keys.row(last).owned(), values));
        }
        if !self.fill.required.is_empty() {
            let reject = columns[self.fill.reject].clone();
            let reject = reject.as_any().downcast_ref::<StringArray>().expect("_reject is text");
            let marked: StringArray = (0..batch.num_rows())
                .map(|row| match reject.is_null(row) {
                    false => Some(reject.value(row).to_string()),
                    true => self
                        .fill
                        .required
                        .iter()
                        .find(|(c, _)| columns[*c].is_null(row))
                        .map(|(_, name)| format!("{name} is empty, and so is its group's first row")),
                })
                .collect();
            columns[self.fill.reject] = Arc::new(marked);
        }
        RecordBatch::try_new(batch.schema(), columns)
    }
}
