//! A JSON Lines export's line, as the values of the table's columns: each
//! found by its JSON pointer (a column's `header` in a JSONL definition),
//! as the text its kind's parser reads (a string as is, a number or a
//! boolean as JSON writes it, an array or object as JSON text, null or an
//! absent path empty). Lines of another object type than the table's are
//! told apart; a line that is not a JSON object is refused.
//!
//! One pass over the line: only the top-level keys a column (or the type
//! test) needs are kept, strings borrowed from the line when they hold no
//! escape; every other value is skipped without being built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::definition::{format, TableDefinition};

/// Where each column the reader produces is found in a line.
pub struct JsonLayout {
    /// By column: where its value is, or the file's date.
    sources: Vec<JsonSource>,
    /// The top-level keys kept, each once.
    keys: Vec<String>,
    object_type: Option<String>,
}

enum JsonSource {
    /// The value at `keys[key]`, then at `rest` inside it (a nested pointer).
    Pointer {
        pointer: String,
        key: usize,
        rest: Option<String>,
    },
    FileDate,
}

/// What one line holds for the table.
pub enum JsonLine<'a> {
    /// An object of the table's: the kept keys' values, by key.
    Object(Vec<Option<Found<'a>>>),
    /// An object of another type than the table's.
    OtherType,
}

/// A kept value: a scalar as its text, an array or object built whole.
#[derive(Debug)]
pub enum Found<'a> {
    Text(Cow<'a, str>),
    Null,
    Nested(Value),
}

const TYPENAME: &str = "__typename";
const ID: &str = "id";

impl JsonLayout {
    pub fn of(def: &TableDefinition) -> JsonLayout {
        let mut keys: Vec<String> = Vec::new();
        let mut key_of = |name: String| match keys.iter().position(|k| *k == name) {
            Some(at) => at,
            None => {
                keys.push(name);
                keys.len() - 1
            }
        };
        let sources = super::read_columns(def)
            .map(|column| match column.is_from_export() {
                false => JsonSource::FileDate,
                true => {
                    let pointer = column.header.clone();
                    let (first, rest) = split_pointer(&pointer);
                    JsonSource::Pointer { key: key_of(first), rest: rest.map(str::to_string), pointer }
                }
            })
            .collect();
        if def.object_type.is_some() {
            key_of(TYPENAME.to_string());
            key_of(ID.to_string());
        }
        JsonLayout { sources, keys, object_type: def.object_type.clone() }
    }

    /// The pointers read, in column order (the export's "header" for lineage).
    pub fn pointers(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                JsonSource::Pointer { pointer, .. } => Some(pointer.clone()),
                JsonSource::FileDate => None,
            })
            .collect()
    }

    /// Reads one line: its values, or why it is refused.
    pub fn read<'a>(&self, line: &'a [u8]) -> Result<JsonLine<'a>, String> {
        let line = line.strip_prefix(super::UTF8_BOM).unwrap_or(line);
        let text = std::str::from_utf8(line)
            .map_err(|e| format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))?;
        if text.trim_start().as_bytes().first() != Some(&b'{') {
            // Say what it is, when it is JSON at all.
            return Err(match serde_json::from_str::<Value>(text) {
                Ok(value) => format!("not a JSON object but {}", kind_of(&value)),
                Err(e) => format!("not valid JSON: {e}"),
            });
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let found = KeptKeys(&self.keys).deserialize(&mut de).and_then(|found| de.end().map(|()| found));
        let found = found.map_err(|e| format!("not valid JSON: {e}"))?;
        if let Some(wanted) = &self.object_type {
            let text = |name: &str| match self.keys.iter().position(|k| k == name).and_then(|i| found[i].as_ref()) {
                Some(Found::Text(text)) => Some(text.as_ref()),
                _ => None,
            };
            match format::object_type(text(TYPENAME), text(ID)) {
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
        Ok(JsonLine::Object(found))
    }

    /// The text of column `column`'s value among `found` (empty when
    /// absent or null); `None` for the file's date.
    pub fn text<'v>(&self, found: &'v [Option<Found<'_>>], column: usize) -> Option<Cow<'v, str>> {
        let JsonSource::Pointer { key, rest, .. } = &self.sources[column] else { return None };
        Some(match (&found[*key], rest) {
            (None | Some(Found::Null), _) => Cow::Borrowed(""),
            (Some(Found::Text(text)), None) => Cow::Borrowed(text.as_ref()),
            // A pointer through a scalar finds nothing.
            (Some(Found::Text(_)), Some(_)) => Cow::Borrowed(""),
            (Some(Found::Nested(value)), None) => Cow::Owned(value.to_string()),
            (Some(Found::Nested(value)), Some(rest)) => text_of(value.pointer(rest)),
        })
    }
}

/// `/a/b/c` as the key `a` (unescaped) and the pointer `/b/c` inside it.
fn split_pointer(pointer: &str) -> (String, Option<&str>) {
    let body = pointer.strip_prefix('/').unwrap_or(pointer);
    let (first, rest) = match body.find('/') {
        Some(at) => (&body[..at], Some(&body[at..])),
        None => (body, None),
    };
    (format::pointer_key(first), rest)
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

/// Deserializes an object, keeping the values of `keys` (by position).
struct KeptKeys<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for KeptKeys<'_> {
    type Value = Vec<Option<Found<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeptKeys<'_> {
    type Value = Vec<Option<Found<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Vec<Option<Found<'de>>> = (0..self.0.len()).map(|_| None).collect();
        while let Some(at) = map.next_key_seed(KeyIndex(self.0))? {
            match at {
                // A repeated key: the last one counts, as serde_json's own maps do.
                Some(at) => found[at] = Some(map.next_value_seed(FoundSeed)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A key, as its position among the kept keys.
struct KeyIndex<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|k| k == key))
    }
}

/// A kept value: scalars as text (strings borrowed when they can be).
struct FoundSeed;

impl<'de> DeserializeSeed<'de> for FoundSeed {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FoundSeed {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Borrowed(if v { "true" } else { "false" })))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v.to_string())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Found::Text(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As serde_json writes it back (the shortest text that reads as the same number).
        Ok(Found::Text(Cow::Owned(Value::from(v).to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Found::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Found::Nested(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            object.insert(key, value);
        }
        Ok(Found::Nested(Value::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(pointers: &[&str], object_type: Option<&str>) -> JsonLayout {
        let mut keys: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        for pointer in pointers {
            let (first, rest) = split_pointer(pointer);
            let key = keys.iter().position(|k| *k == first).unwrap_or_else(|| {
                keys.push(first);
                keys.len() - 1
            });
            sources.push(JsonSource::Pointer { pointer: pointer.to_string(), key, rest: rest.map(str::to_string) });
        }
        if object_type.is_some() {
            for k in [TYPENAME, ID] {
                if !keys.iter().any(|have| have == k) {
                    keys.push(k.to_string());
                }
            }
        }
        JsonLayout { sources, keys, object_type: object_type.map(str::to_string) }
    }

    fn values(line: &str, layout: &JsonLayout) -> Vec<String> {
        match layout.read(line.as_bytes()).unwrap() {
            JsonLine::Object(found) => {
                (0..layout.sources.len()).map(|i| layout.text(&found, i).unwrap().into_owned()).collect()
            }
            JsonLine::OtherType => panic!("other type"),
        }
    }

    #[test]
    fn values_are_found_by_pointer_as_their_kind_reads_them() {
        let l = layout(&["/id", "/n", "/ok", "/tags", "/image/url", "/absent", "/none", "/x", "/esc", "/a~1b"], None);
        let line = r#"{"id":"gid://shopify/Product/1","n":3,"ok":false,"tags":["a","b"],"image":{"url":"u"},"none":null,"x":29.5,"esc":"a\"b\u00e9","a/b":"slash","skipped":{"deep":[1,{"k":"v"}]}}"#;
        assert_eq!(
            values(line, &l),
            ["gid://shopify/Product/1", "3", "false", r#"["a","b"]"#, "u", "", "", "29.5", "a\"bé", "slash"]
        );
        // A pointer through a scalar or a null finds nothing.
        let l = layout(&["/image/url"], None);
        assert_eq!(values(r#"{"image":"flat"}"#, &l), [""]);
        assert_eq!(values(r#"{"image":null}"#, &l), [""]);
    }

    #[test]
    fn a_line_of_another_type_is_told_apart_and_one_without_a_type_refused() {
        let l = layout(&["/id"], Some("Product"));
        assert!(matches!(l.read(br#"{"id":"gid://shopify/ProductVariant/2"}"#), Ok(JsonLine::OtherType)));
        assert!(matches!(l.read(br#"{"id":"gid://shopify/Product/2"}"#), Ok(JsonLine::Object(_))));
        assert!(matches!(l.read(br#"{"__typename":"Product","id":"7"}"#), Ok(JsonLine::Object(_))));
        let untyped = l.read(br#"{"id":"2"}"#).err().unwrap();
        assert!(untyped.contains("names no type"), "{untyped}");
        // Without an object type, every object is the table's.
        assert!(matches!(layout(&["/id"], None).read(br#"{"id":"2"}"#), Ok(JsonLine::Object(_))));
    }

    #[test]
    fn what_is_not_a_json_object_is_refused_with_why() {
        let l = layout(&["/id"], None);
        assert!(l.read(br#"{"id":"1""#).err().unwrap().starts_with("not valid JSON: EOF while parsing"));
        assert!(l.read(br#"{"id":"1"} x"#).err().unwrap().starts_with("not valid JSON: trailing characters"));
        assert!(l.read(br#"{"other":[1,}"#).err().unwrap().starts_with("not valid JSON"), "a skipped value is checked");
        assert_eq!(l.read(b"[1]").err().unwrap(), "not a JSON object but an array");
        assert_eq!(l.read(b"  \"x\"").err().unwrap(), "not a JSON object but a string");
        assert!(l.read(b"[1").err().unwrap().starts_with("not valid JSON"));
        assert_eq!(l.read(b"{\"id\":\"caf\xE9\"}").err().unwrap(), "not valid UTF-8 (byte 11 of the line)");
        assert!(matches!(l.read(b"\xEF\xBB\xBF{\"id\":\"1\"}"), Ok(JsonLine::Object(_))), "a BOM is not data");
    }
}
