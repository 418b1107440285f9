//! Commits another engine makes to a shoplake table, written as the log
//! entries they are (a `metaData` action, a `protocol` action): Spark's
//! `ALTER TABLE ... ADD CONSTRAINT`, `SET TBLPROPERTIES`, a table feature
//! turned on. So the local tests see the tables other engines leave,
//! without Spark (`make interop-test` makes the same changes with Spark).
#![allow(dead_code)]

use std::path::Path;

use serde_json::{json, Value};

/// The table's latest version and its `metaData` and `protocol` actions,
/// as the log states them.
pub fn latest(table: &Path) -> (i64, Value, Value) {
    let log = table.join("_delta_log");
    let mut versions: Vec<i64> = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect();
    versions.sort();
    let (mut metadata, mut protocol) = (Value::Null, Value::Null);
    for version in &versions {
        let text = std::fs::read_to_string(log.join(format!("{version:020}.json"))).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(m) = action.get("metaData") {
                metadata = m.clone();
            }
            if let Some(p) = action.get("protocol") {
                protocol = p.clone();
            }
        }
    }
    (*versions.last().expect("a commit"), metadata, protocol)
}

/// Commits the table's metadata and protocol as `change` leaves them, in
/// the next version (the way an `ALTER TABLE` of another engine does).
pub fn alter(table: &Path, operation: &str, change: impl FnOnce(&mut Value, &mut Value)) {
    let (version, mut metadata, mut protocol) = latest(table);
    let (before_metadata, before_protocol) = (metadata.clone(), protocol.clone());
    change(&mut metadata, &mut protocol);
    let mut lines = vec![json!({"commitInfo": {"timestamp": 0, "operation": operation, "engineInfo": "a test"}})];
    if protocol != before_protocol {
        lines.push(json!({ "protocol": protocol }));
    }
    if metadata != before_metadata {
        lines.push(json!({ "metaData": metadata }));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(table.join("_delta_log").join(format!("{:020}.json", version + 1)), text).unwrap();
}

/// Sets table properties (`delta.constraints.<name>` adds a CHECK constraint).
pub fn set_properties(table: &Path, properties: &[(&str, &str)]) {
    alter(table, "SET TBLPROPERTIES", |metadata, _| {
        let configuration = metadata["configuration"].as_object_mut().expect("a configuration");
        for (key, value) in properties {
            configuration.insert(key.to_string(), json!(value));
        }
    });
}

/// Sets a metadata key of a column (`delta.invariants`, `delta.generationExpression`).
pub fn set_column_metadata(table: &Path, column: &str, key: &str, value: Value) {
    alter(table, "CHANGE COLUMN", |metadata, _| {
        let mut schema: Value = serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
        let field = schema["fields"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|f| f["name"] == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        field["metadata"][key] = value;
        metadata["schemaString"] = json!(schema.to_string());
    });
}

/// Turns column mapping on as Spark does for a table that has data: mode
/// `mode`, each column's physical name its name, ids in order.
pub fn map_columns(table: &Path, mode: &str) {
    alter(table, "SET TBLPROPERTIES", |metadata, _| {
        let mut schema: Value = serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
        let fields = schema["fields"].as_array_mut().unwrap();
        for (id, field) in fields.iter_mut().enumerate() {
            let name = field["name"].clone();
            field["metadata"]["delta.columnMapping.id"] = json!(id + 1);
            field["metadata"]["delta.columnMapping.physicalName"] = name;
        }
        let max = fields.len();
        metadata["schemaString"] = json!(schema.to_string());
        let configuration = metadata["configuration"].as_object_mut().unwrap();
        configuration.insert("delta.columnMapping.mode".into(), json!(mode));
        configuration.insert("delta.columnMapping.maxColumnId".into(), json!(max.to_string()));
    });
}

/// Moves the table to reader 3 / writer 7 with its features listed (those
/// its versions implied, kept), plus `writer` (writer-only) and `both`
/// (reader and writer) features.
pub fn add_features(table: &Path, writer: &[&str], both: &[&str]) {
    alter(table, "UPGRADE PROTOCOL", |_, protocol| {
        let implied = shoplake::features::Protocol::from_json(protocol);
        let mut writers: Vec<String> = implied.writer_features.into_iter().collect();
        let mut readers: Vec<String> = implied.reader_features.into_iter().collect();
        writers.extend(writer.iter().chain(both).map(|f| f.to_string()));
        readers.extend(both.iter().map(|f| f.to_string()));
        writers.sort();
        writers.dedup();
        readers.sort();
        readers.dedup();
        *protocol = json!({
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": readers,
            "writerFeatures": writers,
        });
    });
}

/// The data files under the table's directory (committed or not).
pub fn data_files(table: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("_delta_log") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(table, &mut files);
    files.sort();
    files
}
