//! A field's text read as its column's kind: the parsers themselves live in
//! `shoplake_parse::values` (fuzzed on their own); this adds the column
//! lookup (and the column's declared conventions) that `generate` uses to
//! prove its values read back.

pub use shoplake_parse::values::*;

use chrono::NaiveDate;

/// Whether `text` reads as `column`'s kind, on the file of `date`.
pub fn check(column: &crate::definition::Column, text: &str, date: NaiveDate) -> Result<(), String> {
    use crate::definition::Kind;
    let mut items = Vec::new();
    let mut texts = Vec::new();
    let conventions = &column.conventions;
    let text = conventions.prepare(text);
    match (column.kind, &column.data_type) {
        (Kind::Text, _) => Ok(()),
        (Kind::Flag, _) => conventions.flag(text).map(drop),
        (Kind::Count, _) => count(text).map(drop),
        (Kind::CountList, _) => count_list_into(text, &mut items).map(drop),
        (Kind::Float, _) => float(text).map(drop),
        (Kind::Decimal, datafusion::arrow::datatypes::DataType::Decimal128(p, s)) => decimal(text, *p, *s).map(drop),
        (Kind::Date, _) => date_value(text).map(drop),
        (Kind::FileDate, _) => file_date(text, date).map(drop),
        (Kind::Timestamp, _) => conventions.timestamp(text, column.time_zone).map(drop),
        (Kind::TextList, _) => text_list_into(text, &mut texts).map(drop),
        _ => Err(format!("column {} is not read from the export", column.name)),
    }
}
