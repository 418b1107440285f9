//! What a table's Delta protocol asks of a writer, and whether shoplake
//! gives it (issue #24). A table another engine made or upgraded (Spark,
//! Databricks, Python deltalake) may carry any table feature; for each,
//! shoplake either honours it in every command that writes, or refuses
//! the command (exit 2) before it reads an export or writes a file, naming
//! the feature and what the user can do. Read-only commands do not ask.
//!
//! Handled: `appendOnly` (a load that would rewrite data is refused;
//! new dates and unchanged re-loads commit), `invariants`,
//! `checkConstraints` and `generatedColumns` (every row is checked against
//! them before a commit: [`rules`]), `changeDataFeed` (change-data files),
//! `deletionVectors` (files are read through them and rewritten whole,
//! live rows counted), `timestampNtz`, `v2Checkpoint` (a classic
//! checkpoint is what the protocol allows beside v2 ones) and
//! `columnMapping` (files, partition values and statistics under the
//! physical names, new columns with their own: [`mapping`]; deltalake
//! cannot compact such a table, so `maintain --optimize` is refused).
//! Everything else, known to Delta or not, is refused.

pub mod mapping;
pub mod rules;

use std::collections::BTreeSet;

use deltalake::DeltaTable;
use serde_json::Value;

use crate::error::{Error, Result, Stage};
use crate::storage::Location;

/// Writer features shoplake honours (or that ask nothing of its writes).
const HANDLED: [&str; 9] = [
    "appendOnly",
    "invariants",
    "checkConstraints",
    "generatedColumns",
    "changeDataFeed",
    "deletionVectors",
    "timestampNtz",
    "v2Checkpoint",
    "columnMapping",
];

/// The command that is about to write, for what it must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `ingest`, `backfill`: rows in, files rewritten.
    Load,
    /// `schema apply`: metadata only.
    Schema,
    /// `restore`: files of an older version back, the current ones removed.
    Restore,
    /// `maintain --checkpoint` / `--vacuum`.
    Maintain,
    /// `maintain --optimize` (files rewritten, no data change).
    Optimize,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Load => "loading",
            Command::Schema => "schema apply",
            Command::Restore => "restore",
            Command::Maintain => "maintain",
            Command::Optimize => "maintain --optimize",
        }
    }
}

/// A table's protocol, as its log states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub reader_version: i64,
    pub writer_version: i64,
    /// The features the table supports: listed (reader version 3, writer
    /// version 7) or implied by a legacy version.
    pub reader_features: BTreeSet<String>,
    pub writer_features: BTreeSet<String>,
}

impl Protocol {
    /// The protocol of `table` as loaded.
    pub fn of(table: &DeltaTable, location: &Location) -> Result<Protocol> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
        let json = serde_json::to_value(snapshot.protocol())
            .map_err(|e| Error::internal(Stage::Write, location, format!("the protocol does not serialize: {e}")))?;
        Ok(Protocol::from_json(&json))
    }

    /// From a `protocol` action.
    pub fn from_json(json: &Value) -> Protocol {
        let version = |key: &str| json.get(key).and_then(Value::as_i64).unwrap_or(1);
        let names = |key: &str| -> BTreeSet<String> {
            json.get(key)
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let (reader_version, writer_version) = (version("minReaderVersion"), version("minWriterVersion"));
        let mut reader_features = names("readerFeatures");
        let mut writer_features = names("writerFeatures");
        if reader_version == 2 {
            reader_features.insert("columnMapping".to_string());
        }
        if writer_version < 7 {
            // What each legacy writer version implies (the protocol's table).
            let implied: &[(i64, &str)] = &[
                (2, "appendOnly"),
                (2, "invariants"),
                (3, "checkConstraints"),
                (4, "changeDataFeed"),
                (4, "generatedColumns"),
                (5, "columnMapping"),
                (6, "identityColumns"),
            ];
            writer_features
                .extend(implied.iter().filter(|(v, _)| writer_version >= *v).map(|(_, name)| name.to_string()));
        }
        Protocol { reader_version, writer_version, reader_features, writer_features }
    }

    /// One line for people: versions and features.
    pub fn describe(&self) -> String {
        let features: BTreeSet<&String> = self.reader_features.iter().chain(&self.writer_features).collect();
        let list = if features.is_empty() {
            "no table features".to_string()
        } else {
            features.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
        };
        format!("reader {}, writer {}: {list}", self.reader_version, self.writer_version)
    }
}

/// What a table that may be written asks of the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writable {
    /// `delta.appendOnly` on a protocol that supports it: no commit may
    /// remove or change its rows.
    pub append_only: bool,
}

/// Refuses (exit 2, nothing read or written) a `command` on `table` when
/// the table has a feature shoplake does not honour for it.
pub fn check_writable(table: &DeltaTable, location: &Location, command: Command) -> Result<Writable> {
    let protocol = Protocol::of(table, location)?;
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Write, location, e))?;
    let configuration = snapshot.metadata().configuration();
    let property = |key: &str| configuration.get(key).map(|v| v.to_ascii_lowercase());
    let mut refused: Vec<String> = protocol
        .writer_features
        .iter()
        .chain(&protocol.reader_features)
        .filter(|name| !HANDLED.contains(&name.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|name| format!("{name} ({})", hint(name)))
        .collect();
    let mapping = property(crate::features::mapping::MODE).unwrap_or_default();
    let mapped = protocol.writer_features.contains("columnMapping") && (mapping == "name" || mapping == "id");
    if mapped && command == Command::Optimize {
        refused.push(format!(
            "columnMapping in {mapping} mode (deltalake 1.x cannot compact a table with column mapping; \
             loads, schema apply, restore, vacuum and checkpoints work, and Spark's OPTIMIZE does)"
        ));
    }
    let append_only =
        protocol.writer_features.contains("appendOnly") && property("delta.appendOnly").as_deref() == Some("true");
    if append_only && command == Command::Restore {
        refused.push(
            "appendOnly with delta.appendOnly = true (a restore removes the rows added since; \
             `ALTER TABLE <table> SET TBLPROPERTIES ('delta.appendOnly' = 'false')` allows it)"
                .to_string(),
        );
    }
    if refused.is_empty() {
        return Ok(Writable { append_only });
    }
    Err(Error::usage(
        Stage::Write,
        location,
        format!(
            "{} refused: the table ({}) has table features shoplake does not honour: {}. Nothing was read or written.",
            command.name(),
            protocol.describe(),
            refused.join("; ")
        ),
    ))
}

/// What a refused feature is, and what the user can do.
fn hint(name: &str) -> String {
    let what = match name {
        "rowTracking" => "row ids and commit versions deltalake cannot assign",
        "domainMetadata" => "metadata domains deltalake 1.x cannot write beside",
        "clustering" => "liquid clustering, which deltalake 1.x cannot keep",
        "typeWidening" | "typeWidening-preview" => "widened column types deltalake 1.x cannot write",
        "identityColumns" => "identity columns, whose values deltalake 1.x cannot generate",
        "inCommitTimestamp" | "inCommitTimestamp-preview" => "in-commit timestamps deltalake 1.x cannot write",
        "vacuumProtocolCheck" => "a protocol check deltalake 1.x does not make",
        "icebergCompatV1" | "icebergCompatV2" | "icebergCompatV3" => {
            "UniForm (Iceberg metadata) deltalake 1.x cannot keep"
        }
        "allowColumnDefaults" => "column defaults deltalake 1.x cannot apply",
        "catalogManaged" | "catalogOwned-preview" => "commits through a catalog, not the log",
        "checkpointProtection" => "checkpoints and log cleanup deltalake 1.x does not protect",
        "variantType" | "variantType-preview" | "variantShredding" | "variantShredding-preview" => {
            "variant columns no definition declares"
        }
        _ => "a feature shoplake does not know",
    };
    format!("{what}; `ALTER TABLE <table> DROP FEATURE {name}` removes it where the Delta version allows, or load into a new table")
}

/// The rows a data file still holds: its records less those its deletion
/// vector removes (`None` when the file has no statistics).
pub fn live_rows(file: &deltalake::kernel::LogicalFileView) -> Option<u64> {
    let removed = file.deletion_vector_descriptor().map_or(0, |dv| dv.cardinality.max(0) as u64);
    file.num_records().map(|n| (n as u64).saturating_sub(removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn legacy_versions_imply_their_features() {
        let p = Protocol::from_json(&json!({"minReaderVersion": 2, "minWriterVersion": 5}));
        assert!(p.reader_features.contains("columnMapping"));
        for f in ["appendOnly", "invariants", "checkConstraints", "changeDataFeed", "generatedColumns", "columnMapping"]
        {
            assert!(p.writer_features.contains(f), "{f}");
        }
        assert!(!p.writer_features.contains("identityColumns"));
        let p = Protocol::from_json(&json!({"minReaderVersion": 1, "minWriterVersion": 6}));
        assert!(p.writer_features.contains("identityColumns"));
        let p = Protocol::from_json(&json!({"minReaderVersion": 1, "minWriterVersion": 2}));
        assert_eq!(p.writer_features, BTreeSet::from(["appendOnly".to_string(), "invariants".to_string()]));
    }

    #[test]
    fn table_features_are_read_as_listed() {
        let p = Protocol::from_json(&json!({
            "minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors", "rowTracking"]
        }));
        assert_eq!(p.writer_features, BTreeSet::from(["deletionVectors".to_string(), "rowTracking".to_string()]));
        assert!(p.describe().contains("rowTracking"), "{}", p.describe());
    }
}
