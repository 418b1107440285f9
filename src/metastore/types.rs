//! A Delta column's type as the catalogs write it: Hive's type text (Glue,
//! and Unity Catalog's `type_text`, which is Spark's catalog string: the
//! same text) and Unity Catalog's `type_name`.

use deltalake::kernel::{DataType, PrimitiveType};

/// Hive's (and Spark's catalog) text of `data_type`: `bigint`,
/// `decimal(10,2)`, `array<string>`, `struct<a:int,b:string>`.
pub fn hive_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Primitive(primitive) => match primitive {
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Integer => "int".into(),
            PrimitiveType::Short => "smallint".into(),
            PrimitiveType::Byte => "tinyint".into(),
            // Hive has one timestamp; Delta's without a zone reads as it.
            PrimitiveType::TimestampNtz => "timestamp".into(),
            // string, float, double, boolean, binary, date, timestamp, decimal(p,s): the same words.
            other => other.to_string(),
        },
        DataType::Array(array) => format!("array<{}>", hive_type(&array.element_type)),
        DataType::Map(map) => format!("map<{},{}>", hive_type(&map.key_type), hive_type(&map.value_type)),
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.fields().map(|f| format!("{}:{}", f.name(), hive_type(f.data_type()))).collect();
            format!("struct<{}>", fields.join(","))
        }
        // Hive has no variant: its Delta name, which a reader of the log understands.
        DataType::Variant(_) => "variant".into(),
    }
}

/// Unity Catalog's `type_name` of `data_type` (its ColumnTypeName enum).
pub fn unity_type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Primitive(primitive) => match primitive {
            PrimitiveType::String => "STRING",
            PrimitiveType::Long => "LONG",
            PrimitiveType::Integer => "INT",
            PrimitiveType::Short => "SHORT",
            PrimitiveType::Byte => "BYTE",
            PrimitiveType::Float => "FLOAT",
            PrimitiveType::Double => "DOUBLE",
            PrimitiveType::Boolean => "BOOLEAN",
            PrimitiveType::Binary => "BINARY",
            PrimitiveType::Date => "DATE",
            PrimitiveType::Timestamp => "TIMESTAMP",
            PrimitiveType::TimestampNtz => "TIMESTAMP_NTZ",
            PrimitiveType::Decimal(_) => "DECIMAL",
            _ => "USER_DEFINED_TYPE",
        },
        DataType::Array(_) => "ARRAY",
        DataType::Map(_) => "MAP",
        DataType::Struct(_) => "STRUCT",
        DataType::Variant(_) => "VARIANT",
    }
}

/// Unity Catalog's `type_text`: Spark's catalog string, except that Spark
/// names a timezone-less timestamp `timestamp_ntz`.
pub fn unity_type_text(data_type: &DataType) -> String {
    match data_type {
        DataType::Primitive(PrimitiveType::TimestampNtz) => "timestamp_ntz".into(),
        other => hive_type(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::kernel::{ArrayType, DecimalType, MapType, StructField, StructType};

    #[test]
    fn delta_types_in_hive_words() {
        let decimal = DataType::Primitive(PrimitiveType::Decimal(DecimalType::try_new(12, 2).unwrap()));
        let nested = DataType::Struct(Box::new(
            StructType::try_new([
                StructField::nullable("sku", DataType::STRING),
                StructField::nullable("price", decimal.clone()),
            ])
            .unwrap(),
        ));
        let cases = [
            (DataType::LONG, "bigint", "LONG"),
            (DataType::INTEGER, "int", "INT"),
            (DataType::SHORT, "smallint", "SHORT"),
            (DataType::BYTE, "tinyint", "BYTE"),
            (DataType::STRING, "string", "STRING"),
            (DataType::BOOLEAN, "boolean", "BOOLEAN"),
            (DataType::DATE, "date", "DATE"),
            (DataType::TIMESTAMP, "timestamp", "TIMESTAMP"),
            (DataType::TIMESTAMP_NTZ, "timestamp", "TIMESTAMP_NTZ"),
            (decimal, "decimal(12,2)", "DECIMAL"),
            (DataType::Array(Box::new(ArrayType::new(DataType::LONG, true))), "array<bigint>", "ARRAY"),
            (
                DataType::Map(Box::new(MapType::new(DataType::STRING, DataType::INTEGER, true))),
                "map<string,int>",
                "MAP",
            ),
            (nested, "struct<sku:string,price:decimal(12,2)>", "STRUCT"),
        ];
        for (data_type, hive, unity) in cases {
            assert_eq!((hive_type(&data_type).as_str(), unity_type_name(&data_type)), (hive, unity), "{data_type}");
        }
        assert_eq!(unity_type_text(&DataType::TIMESTAMP_NTZ), "timestamp_ntz", "Spark's own word");
    }
}
