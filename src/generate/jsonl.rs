//! A generated Bulk Operations result: one JSON object a line for every
//! table sharing the file. A table whose columns include `/__parentId` is a
//! child of the file's other table (a product's variants): each row gets one
//! to three children, written after their parent but not next to it (a few
//! parents later), as Shopify writes them. Values are JSON as the API gives
//! them: counts and floats as numbers, flags as booleans, lists as arrays,
//! everything else (money included) as strings, an empty field as null.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{fields, member_identity, GenerateConfig, GeneratedFile, Row, Sink, SplitMix64, CHUNK};
use crate::definition::{format, Column, Kind, TableDefinition};
use crate::error::Result;
use crate::storage::Storage;

/// The pointer of a child's parent id, as Bulk Operations name it.
const PARENT: &str = "/__parentId";

/// How many parents a child is written after its own.
const CHILD_LAG: usize = 2;

pub(super) async fn write_day(
    storage: &Storage,
    config: &GenerateConfig,
    family: &[&TableDefinition],
    rows: &[Row],
    date: NaiveDate,
    rng: &mut SplitMix64,
) -> Result<GeneratedFile> {
    let location = config.out.join(&family[0].source_file(date));
    let is_child = |def: &&&TableDefinition| def.export_columns().any(|c| c.header == PARENT);
    let parent = family.iter().find(|d| !is_child(d));
    let children: Vec<&&TableDefinition> = family.iter().filter(is_child).collect();
    let mut sink = Sink::create(storage, &location).await?;
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut pending: std::collections::VecDeque<Vec<Value>> = std::collections::VecDeque::new();
    for row in rows {
        let mut parent_id = None;
        if let Some(parent) = parent {
            let object = object(parent, row, date);
            parent_id = object.pointer("/id").cloned();
            emit(&mut chunk, &object, config.dirty, rng, &mut lines);
        }
        let mut own = Vec::new();
        for (t, child) in children.iter().enumerate() {
            for k in 0..1 + row.identity % 3 {
                let member =
                    Row { identity: member_identity(row.identity, 16 * (t as u64 + 1) + k), revision: row.revision };
                let mut object = object(child, &member, date);
                if let (Some(id), Some(slot)) = (&parent_id, object.pointer_mut(PARENT)) {
                    *slot = id.clone();
                }
                own.push(object);
            }
        }
        pending.push_back(own);
        if pending.len() > CHILD_LAG {
            for object in pending.pop_front().expect("pending") {
                emit(&mut chunk, &object, config.dirty, rng, &mut lines);
            }
        }
        if chunk.len() >= CHUNK {
            bytes += chunk.len() as u64;
            sink.write(&chunk, &location).await?;
            chunk.clear();
        }
    }
    for object in pending.into_iter().flatten() {
        emit(&mut chunk, &object, config.dirty, rng, &mut lines);
    }
    bytes += chunk.len() as u64;
    sink.write(&chunk, &location).await?;
    sink.finish(&location).await?;
    Ok(GeneratedFile { location, lines, bytes })
}

/// Writes `object`'s line; with `--dirty`, now and then a broken line before
/// it: the line cut short (not JSON), or an object of a type no table takes.
fn emit(out: &mut Vec<u8>, object: &Value, dirty: bool, rng: &mut SplitMix64, lines: &mut u64) {
    let line = object.to_string();
    if dirty && rng.chance(0.004) {
        match rng.below(2) {
            0 => out.extend_from_slice(&line.as_bytes()[..line.len() / 2]),
            _ => out.extend_from_slice(br#"{"id":"gid://shopify/Collection/1","title":"Summer"}"#),
        }
        out.push(b'\n');
        *lines += 1;
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    *lines += 1;
}

/// `row`'s object for `def`: each column's generated text as JSON, at its pointer.
fn object(def: &TableDefinition, row: &Row, date: NaiveDate) -> Value {
    let columns: Vec<&Column> = def.export_columns().collect();
    let texts = fields::line(&columns, row, date);
    let mut object = Value::Object(Map::new());
    for (column, text) in columns.iter().zip(texts) {
        let text = String::from_utf8(text).expect("generated text is UTF-8");
        put(&mut object, &column.header, json_value(column, text));
    }
    object
}

/// A value as the GraphQL Admin API writes it.
fn json_value(column: &Column, text: String) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    let parsed = match column.kind {
        Kind::Count | Kind::Float => serde_json::from_str::<serde_json::Number>(&text).ok().map(Value::Number),
        Kind::Flag => column.conventions.flag(&text).ok().flatten().map(Value::Bool),
        Kind::CountList | Kind::TextList => serde_json::from_str::<Value>(&text).ok(),
        _ => None,
    };
    parsed.unwrap_or(Value::String(text))
}

/// Sets `value` at `pointer` (`/a/b`), making the objects on the way.
fn put(object: &mut Value, pointer: &str, value: Value) {
    let mut at = object;
    let mut segments = pointer[1..].split('/').map(format::pointer_key).peekable();
    while let Some(segment) = segments.next() {
        let map = match at {
            Value::Object(map) => map,
            _ => return,
        };
        if segments.peek().is_none() {
            map.insert(segment, value);
            return;
        }
        at = map.entry(segment).or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_at_their_pointer_making_objects_on_the_way() {
        let mut object = Value::Object(Map::new());
        put(&mut object, "/id", Value::from("1"));
        put(&mut object, "/featuredImage/url", Value::from("u"));
        put(&mut object, "/featuredImage/alt", Value::Null);
        put(&mut object, "/a~1b", Value::from(2));
        assert_eq!(object.to_string(), r#"{"a/b":2,"featuredImage":{"alt":null,"url":"u"},"id":"1"}"#);
    }
}
