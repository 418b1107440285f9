//! The Arrow type of each column kind, and the type names a definition may
//! write for derived columns (Delta's / Spark's names: `string`, `long`,
//! `decimal(12,2)`, `array<string>`, ...).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

use super::{Kind, LIST_ITEM};

/// Timestamps are stored as UTC instants in microseconds (Delta's
/// `timestamp`), typed as Delta's Arrow mapping gives them.
pub fn timestamp_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn long_list_type() -> DataType {
    DataType::List(Arc::new(Field::new(LIST_ITEM, DataType::Int64, true)))
}

pub fn text_list_type() -> DataType {
    DataType::List(Arc::new(Field::new(LIST_ITEM, DataType::Utf8, true)))
}

/// The type a kind implies; `decimal` needs its precision and scale, and
/// `derived` its declared type.
pub fn of_kind(kind: Kind, decimal: Option<(u8, i8)>) -> Option<DataType> {
    Some(match kind {
        Kind::Text => DataType::Utf8,
        Kind::Flag => DataType::Boolean,
        Kind::Count => DataType::Int64,
        Kind::CountList => long_list_type(),
        Kind::Float => DataType::Float64,
        Kind::Decimal => {
            let (precision, scale) = decimal?;
            DataType::Decimal128(precision, scale)
        }
        Kind::Date | Kind::FileDate => DataType::Date32,
        Kind::Timestamp => timestamp_utc(),
        Kind::TextList => text_list_type(),
        Kind::RowHash => DataType::Binary,
        Kind::Derived => return None,
    })
}

/// Parses a type name of a derived column.
pub fn parse(name: &str) -> Result<DataType, String> {
    let compact: String = name.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    Ok(match compact.as_str() {
        "string" => DataType::Utf8,
        "boolean" => DataType::Boolean,
        "long" | "bigint" => DataType::Int64,
        "double" => DataType::Float64,
        "date" => DataType::Date32,
        "timestamp" => timestamp_utc(),
        "array<long>" | "array<bigint>" => long_list_type(),
        "array<string>" => text_list_type(),
        "binary" => DataType::Binary,
        other => match other.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
            Some(args) => {
                let (p, s) = args.split_once(',').ok_or_else(|| format!("`{name}`: write decimal(precision,scale)"))?;
                let (precision, scale) = (p.parse::<u8>(), s.parse::<i8>());
                match (precision, scale) {
                    (Ok(p), Ok(s)) => {
                        check_decimal(p, s)?;
                        DataType::Decimal128(p, s)
                    }
                    _ => return Err(format!("`{name}`: precision and scale are small whole numbers")),
                }
            }
            None => {
                return Err(format!(
                    "unknown type `{name}` (string, boolean, long, double, decimal(p,s), date, timestamp, \
                     array<long>, array<string>)"
                ))
            }
        },
    })
}

/// Delta's decimals: precision 1 to 38, scale 0 to precision.
pub fn check_decimal(precision: u8, scale: i8) -> Result<(), String> {
    if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
        return Err(format!("decimal({precision},{scale}): precision must be 1-38 and scale 0-precision"));
    }
    Ok(())
}

/// A type's name as definitions write it, for messages.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int64 => "long".into(),
        DataType::Float64 => "double".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Binary | DataType::BinaryView => "binary".into(),
        DataType::List(item) | DataType::LargeList(item) => format!("array<{}>", type_name(item.data_type())),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for name in [
            "string",
            "boolean",
            "long",
            "double",
            "date",
            "timestamp",
            "decimal(12,2)",
            "array<long>",
            "array<string>",
            "binary",
        ] {
            assert_eq!(type_name(&parse(name).unwrap()), name);
        }
        assert_eq!(parse("Decimal(10, 0)").unwrap(), DataType::Decimal128(10, 0));
        for bad in ["int", "decimal(40,2)", "decimal(4,5)", "decimal(4)", "array<double>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
