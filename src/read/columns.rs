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
        let mut outcome = Ok(());
        self.append_texts(std::iter::once(text), file_date, |_, reason| outcome = Err(reason));
        outcome
    }

    /// Appends each text's value, or a null where it breaks the column's
    /// rule, calling `broken` with the text's index and the reason: one loop
    /// per kind, so a value costs no call and no match on the kind.
    pub fn append_texts<'t>(
        &mut self,
        texts: impl Iterator<Item = &'t str>,
        file_date: &values::FileDate,
        mut broken: impl FnMut(usize, String),
    ) {
        let conventions = self.conventions;
        let rule = Rule { conventions, nullable: self.nullable };
        let broken = &mut broken;
        match &mut self.values {
            Values::Text(b) => rule.each(b, texts, broken, |b, text| {
                b.append_option(values::text(text));
                Ok(!text.is_empty())
            }),
            Values::Flag(b) => {
                rule.each(b, texts, broken, |b, text| put(conventions.flag(text), |v| b.append_option(v)))
            }
            Values::Count(b) => rule.each(b, texts, broken, |b, text| put(values::count(text), |v| b.append_option(v))),
            Values::CountList(b, items) => rule.each(b, texts, broken, |b, text| {
                values::count_list_into(text, items).inspect(|&present| {
                    if present {
                        b.values().append_slice(items);
                    }
                    b.append(present);
                })
            }),
            Values::Float(b) => rule.each(b, texts, broken, |b, text| put(values::float(text), |v| b.append_option(v))),
            Values::Decimal(b, p, s) => {
                let (precision, scale) = (*p, *s);
                rule.each(b, texts, broken, |b, text| {
                    put(values::decimal(text, precision, scale), |v| b.append_option(v))
                })
            }
            Values::Date(b) => rule.each(b, texts, broken, |b, text| {
                put(values::date_value(text), |v| b.append_option(v.map(super::days_since_epoch)))
            }),
            Values::FileDate(b) => rule.each(b, texts, broken, |b, text| {
                put(file_date.parse(text), |v| b.append_option(v.map(super::days_since_epoch)))
            }),
            Values::Timestamp(b, zone) => {
                let zone = *zone;
                rule.each(b, texts, broken, |b, text| put(conventions.timestamp(text, zone), |v| b.append_option(v)))
            }
            Values::TextList(b, items) => rule.each(b, texts, broken, |b, text| {
                values::text_list_into(text, items).inspect(|&present| {
                    if present {
                        for item in items.iter() {
                            b.values().append_value(item);
                        }
                    }
                    b.append(present);
                })
            }),
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

/// What a column asks of each of its values besides its kind's rule.
#[derive(Clone, Copy)]
struct Rule {
    conventions: &'static values::Conventions,
    nullable: bool,
}

impl Rule {
    /// Appends each text with `one` (`Ok(true)` when it held a value), and a
    /// null with [`Nullable::append_null`] where it breaks the rule.
    #[inline(always)]
    fn each<'t, B: Nullable>(
        self,
        builder: &mut B,
        texts: impl Iterator<Item = &'t str>,
        broken: &mut impl FnMut(usize, String),
        mut one: impl FnMut(&mut B, &str) -> std::result::Result<bool, String>,
    ) {
        for (index, text) in texts.enumerate() {
            match one(builder, self.conventions.prepare(text)) {
                Ok(true) => {}
                Ok(false) if self.nullable => {}
                Ok(false) => broken(index, "is empty".into()),
                Err(reason) => {
                    builder.append_null();
                    broken(index, reason);
                }
            }
        }
    }
}

/// Appends the parsed value, when there is one; whether there was.
#[inline(always)]
fn put<T>(parsed: values::Parsed<T>, append: impl FnOnce(Option<T>)) -> std::result::Result<bool, String> {
    parsed.map(|v| {
        let present = v.is_some();
        append(v);
        present
    })
}

/// A builder that can append a null (each Arrow builder can, by its own method).
trait Nullable {
    fn append_null(&mut self);
}

macro_rules! nullable {
    ($($builder:ty),*) => {
        $(impl Nullable for $builder {
            fn append_null(&mut self) {
                <$builder>::append_null(self)
            }
        })*
    };
}

nullable!(
    StringBuilder,
    BooleanBuilder,
    Int64Builder,
    ListBuilder<Int64Builder>,
    Float64Builder,
    Decimal128Builder,
    Date32Builder,
    TimestampMicrosecondBuilder,
    ListBuilder<StringBuilder>
);

fn item(data_type: DataType) -> Field {
    Field::new(LIST_ITEM, data_type, true)
}
