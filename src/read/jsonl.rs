//! A JSON Lines export's line, as the values of the table's columns: each
//! found by its JSON pointer (a column's `header` in a JSONL definition),
//! as the text its kind's parser reads (a string as is, a number or a
//! boolean as JSON writes it, an array or object as JSON text, null or an
//! absent path empty). Lines of another object type than the table's are
//! told apart; a line that is not a JSON object is refused.

use std::borrow::Cow;

use serde_json::Value;

use crate::definition::{format, TableDefinition};

/// Where each column the reader produces is found in a line.
pub struct JsonLayout {
    /// By column: a JSON pointer, or the file's date.
    sources: Vec<JsonSource>,
    object_type: Option<String>,
}

enum JsonSource {
    Pointer(String),
    FileDate,
}

/// What one line holds for the table.
pub enum JsonLine {
    /// An object of the table's: its columns' texts are [`JsonLayout::text`].
    Object(Value),
    /// An object of another type than the table's.
    OtherType,
}

impl JsonLayout {
    pub fn of(def: &TableDefinition) -> JsonLayout {
        let sources = super::read_columns(def)
            .map(|column| match column.is_from_export() {
                true => JsonSource::Pointer(column.header.clone()),
                false => JsonSource::FileDate,
            })
            .collect();
        JsonLayout { sources, object_type: def.object_type.clone() }
    }

    /// The pointers read, in column order (the export's "header" for lineage).
    pub fn pointers(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                JsonSource::Pointer(p) => Some(p.clone()),
                JsonSource::FileDate => None,
            })
            .collect()
    }

    /// Reads one line: its values, or why it is refused.
    pub fn read(&self, line: &[u8]) -> Result<JsonLine, String> {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let value: Value = serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(object) = value else {
            return Err(format!("not a JSON object but {}", kind_of(&value)));
        };
        if let Some(wanted) = &self.object_type {
            match format::object_type(&object) {
                None => {
                    return Err(format!(
                        "the object names no type (no __typename, no gid:// id), so whether it is a {wanted} \
                         cannot be told"
                    ))
                }
                Some(found) if found != wanted => return Ok(JsonLine::OtherType),
                Some(_) => {}
            }
        }
        Ok(JsonLine::Object(Value::Object(object)))
    }

    /// The text of column `column`'s value in `object` (empty when absent
    /// or null); `None` for the file's date.
    pub fn text<'a>(&self, object: &'a Value, column: usize) -> Option<Cow<'a, str>> {
        match &self.sources[column] {
            JsonSource::FileDate => None,
            JsonSource::Pointer(pointer) => Some(text_of(object.pointer(pointer))),
        }
    }
}

/// A JSON value as the text a column's kind parses.
fn text_of(value: Option<&Value>) -> Cow<'_, str> {
    match value {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Bool(true)) => Cow::Borrowed("true"),
        Some(Value::Bool(false)) => Cow::Borrowed("false"),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        Some(other) => Cow::Owned(other.to_string()),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(pointers: &[&str], object_type: Option<&str>) -> JsonLayout {
        JsonLayout {
            sources: pointers.iter().map(|p| JsonSource::Pointer(p.to_string())).collect(),
            object_type: object_type.map(str::to_string),
        }
    }

    fn values(line: &str, layout: &JsonLayout) -> Vec<String> {
        match layout.read(line.as_bytes()).unwrap() {
            JsonLine::Object(object) => {
                (0..layout.sources.len()).map(|i| layout.text(&object, i).unwrap().into_owned()).collect()
            }
            JsonLine::OtherType => panic!("other type"),
        }
    }

    #[test]
    fn values_are_found_by_pointer_as_their_kind_reads_them() {
        let l = layout(&["/id", "/n", "/ok", "/tags", "/image/url", "/absent", "/none"], None);
        let line =
            r#"{"id":"gid://shopify/Product/1","n":3,"ok":false,"tags":["a","b"],"image":{"url":"u"},"none":null}"#;
        assert_eq!(values(line, &l), ["gid://shopify/Product/1", "3", "false", r#"["a","b"]"#, "u", "", ""]);
    }

    #[test]
    fn a_line_of_another_type_is_told_apart_and_one_without_a_type_refused() {
        let l = layout(&["/id"], Some("Product"));
        assert!(matches!(l.read(br#"{"id":"gid://shopify/ProductVariant/2"}"#), Ok(JsonLine::OtherType)));
        assert!(matches!(l.read(br#"{"id":"gid://shopify/Product/2"}"#), Ok(JsonLine::Object(_))));
        let untyped = l.read(br#"{"id":"2"}"#).err().unwrap();
        assert!(untyped.contains("names no type"), "{untyped}");
        // Without an object type, every object is the table's.
        assert!(matches!(layout(&["/id"], None).read(br#"{"id":"2"}"#), Ok(JsonLine::Object(_))));
    }

    #[test]
    fn what_is_not_a_json_object_is_refused_with_why() {
        let l = layout(&["/id"], None);
        assert!(l.read(br#"{"id":"1""#).err().unwrap().starts_with("not valid JSON: EOF while parsing"));
        assert_eq!(l.read(b"[1]").err().unwrap(), "not a JSON object but an array");
        assert!(l.read(b"{\"id\":\"caf\xE9\"}").err().unwrap().starts_with("not valid JSON"));
    }
}
