//! Builds the reader's Arrow batches: one builder per column, by its kind,
//! appending each field's typed value (or a null and the reason the text
//! breaks its kind's rule, see [`super::values`]).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::values;
use crate::definition::{Column, Kind, TableDefinition, LIST_ITEM};
use crate::error::{Error, Result, Stage};

pub const BATCH_ROWS: usize = 32 * 1024;

/// Builds one batch of the export schema.
pub struct BatchBuilder {
    schema: SchemaRef,
    pub columns: Vec<ColumnBuilder>,
    pub lines: UInt64Builder,
    pub rejects: StringBuilder,
    pub raws: StringBuilder,
}

impl BatchBuilder {
    pub fn new(def: &'static TableDefinition, schema: SchemaRef) -> Self {
        BatchBuilder {
            schema,
            columns: super::read_columns(def).map(ColumnBuilder::new).collect(),
            lines: UInt64Builder::with_capacity(BATCH_ROWS),
            rejects: StringBuilder::new(),
            raws: StringBuilder::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        arrays.push(Arc::new(self.lines.finish()));
        arrays.push(Arc::new(self.rejects.finish()));
        arrays.push(Arc::new(self.raws.finish()));
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::internal(Stage::Read, "export batch", e))
    }
}

pub struct ColumnBuilder {
    pub name: &'static str,
    nullable: bool,
    conventions: &'static values::Conventions,
    values: Values,
}

enum Values {
    Text(StringBuilder),
    Flag(BooleanBuilder),
    Count(Int64Builder),
    /// The builder, and a buffer for one list's items.
    CountList(ListBuilder<Int64Builder>, Vec<i64>),
    Float(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    FileDate(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<chrono_tz::Tz>),
    TextList(ListBuilder<StringBuilder>, Vec<String>),
}

impl ColumnBuilder {
    fn new(column: &'static Column) -> Self {
        let values = match (column.kind, &column.data_type) {
            (Kind::Text, _) => Values::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
            (Kind::Flag, _) => Values::Flag(BooleanBuilder::with_capacity(BATCH_ROWS)),
            (Kind::Count, _) => Values::Count(Int64Builder::with_capacity(BATCH_ROWS)),
            (Kind::CountList, _) => Values::CountList(
                ListBuilder::new(Int64Builder::with_capacity(BATCH_ROWS)).with_field(item(DataType::Int64)),
                Vec::new(),
            ),
            (Kind::Float, _) => Values::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            (Kind::Decimal, DataType::Decimal128(p, s)) => Values::Decimal(
                Decimal128Builder::with_capacity(BATCH_ROWS)
                    .with_precision_and_scale(*p, *s)
                    .expect("checked when the definition was resolved"),
                *p,
                *s,
            ),
            (Kind::Date, _) => Values::Date(Date32Builder::with_capacity(BATCH_ROWS)),
            (Kind::FileDate, _) => Values::FileDate(Date32Builder::with_capacity(BATCH_ROWS)),
            (Kind::Timestamp, _) => Values::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS).with_timezone("UTC"),
                column.time_zone,
            ),
            (Kind::TextList, _) => {
                Values::TextList(ListBuilder::new(StringBuilder::new()).with_field(item(DataType::Utf8)), Vec::new())
            }
            (Kind::Decimal | Kind::Derived | Kind::RowHash, _) => unreachable!("not read from the export"),
        };
        // A fill_down column is empty on a group's later rows: filled (and
        // its not-null rule checked) after reading (`crate::transform`).
        let nullable = column.nullable || column.fill_down;
        ColumnBuilder { name: &column.name, nullable, conventions: &column.conventions, values }
    }

    /// Appends the field's value, or a null and the reason it breaks its rule.
    pub fn append(&mut self, text: &str, file_date: &values::FileDate) -> std::result::Result<(), String> {
        fn put<T>(parsed: values::Parsed<T>, mut append: impl FnMut(Option<T>)) -> std::result::Result<bool, String> {
            parsed.map(|v| {
                let present = v.is_some();
                append(v);
                present
            })
        }
        let conventions = self.conventions;
        let text = conventions.prepare(text);
        let outcome = match &mut self.values {
            Values::Text(b) => {
                b.append_option(values::text(text));
                Ok(!text.is_empty())
            }
            Values::Flag(b) => put(conventions.flag(text), |v| b.append_option(v)),
            Values::Count(b) => put(values::count(text), |v| b.append_option(v)),
            Values::CountList(b, items) => values::count_list_into(text, items).inspect(|&present| {
                if present {
                    b.values().append_slice(items);
                }
                b.append(present);
            }),
            Values::Float(b) => put(values::float(text), |v| b.append_option(v)),
            Values::Decimal(b, p, s) => put(values::decimal(text, *p, *s), |v| b.append_option(v)),
            Values::Date(b) => put(values::date_value(text), |v| b.append_option(v.map(super::days_since_epoch))),
            Values::FileDate(b) => put(file_date.parse(text), |v| b.append_option(v.map(super::days_since_epoch))),
            Values::Timestamp(b, zone) => put(conventions.timestamp(text, *zone), |v| b.append_option(v)),
            Values::TextList(b, items) => values::text_list_into(text, items).inspect(|&present| {
                if present {
                    for item in items.iter() {
                        b.values().append_value(item);
                    }
                }
                b.append(present);
            }),
        };
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) if self.nullable => Ok(()),
            Ok(false) => Err("is empty".into()),
            Err(reason) => {
                self.append_null();
                Err(reason)
            }
        }
    }

    /// The file's date, for a date column the export does not hold.
    pub fn append_date(&mut self, date: NaiveDate) {
        match &mut self.values {
            Values::FileDate(b) | Values::Date(b) => b.append_value(super::days_since_epoch(date)),
            _ => unreachable!("only date columns take the file's date"),
        }
    }

    pub fn append_null(&mut self) {
        match &mut self.values {
            Values::Text(b) => b.append_null(),
            Values::Flag(b) => b.append_null(),
            Values::Count(b) => b.append_null(),
            Values::CountList(b, _) => b.append_null(),
            Values::Float(b) => b.append_null(),
            Values::Decimal(b, ..) => b.append_null(),
            Values::Date(b) | Values::FileDate(b) => b.append_null(),
            Values::Timestamp(b, _) => b.append_null(),
            Values::TextList(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match &mut self.values {
            Values::Text(b) => Arc::new(b.finish()),
            Values::Flag(b) => Arc::new(b.finish()),
            Values::Count(b) => Arc::new(b.finish()),
            Values::CountList(b, _) => Arc::new(b.finish()),
            Values::Float(b) => Arc::new(b.finish()),
            Values::Decimal(b, ..) => Arc::new(b.finish()),
            Values::Date(b) | Values::FileDate(b) => Arc::new(b.finish()),
            Values::Timestamp(b, _) => Arc::new(b.finish()),
            Values::TextList(b, _) => Arc::new(b.finish()),
        }
    }
}

fn item(data_type: DataType) -> Field {
    Field::new(LIST_ITEM, data_type, true)
}
