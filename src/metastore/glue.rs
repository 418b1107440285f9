//! AWS Glue: a table's entry in the one shape Athena, Trino and Spark all
//! read as Delta (FACTS.md): an external table with `table_type` DELTA and
//! `spark.sql.sources.provider` delta, its `s3://` location also as the
//! SerDe's `path`, its columns in Hive types, no partition keys (the
//! readers take partitions from the log). Parameters others set on the
//! entry are kept when it is updated.

use serde_json::{json, Value};

use super::{types, Action, Entry, Registered};
use crate::error::{Error, Kind, Result, Stage};
use crate::storage::aws_json::{AwsFault, AwsJsonService, CallError};
use crate::storage::Storage;

/// The parameters that make an entry a Delta table for its readers.
const DELTA_PARAMETERS: [(&str, &str); 3] =
    [("table_type", "DELTA"), ("spark.sql.sources.provider", "delta"), ("EXTERNAL", "TRUE")];

/// The IAM actions registration needs (deploy/aws/policies/loader.json).
pub const ACTIONS: &str = "glue:GetDatabase, glue:CreateDatabase, glue:GetTable, glue:CreateTable, glue:UpdateTable";

/// A Glue database, reached with the S3 settings' region and credentials.
pub struct Glue {
    service: AwsJsonService,
    database: String,
}

impl Glue {
    pub async fn connect(storage: &Storage, database: &str) -> Result<Glue> {
        let service = storage.aws_json_service("glue", "AWSGlue").await?;
        Ok(Glue { service, database: database.to_string() })
    }

    /// Registers each entry (creating the database first if needed), or
    /// with `dry_run` only compares.
    pub async fn register(&self, entries: Vec<(String, Option<Entry>)>, dry_run: bool) -> Result<Vec<Registered>> {
        let mut database_checked = false;
        let mut done = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            let label = format!("glue:{}.{name}", self.database);
            let Some(entry) = entry else {
                done.push(Registered { entry: label, action: Action::NotLoaded });
                continue;
            };
            if !dry_run && !database_checked {
                self.ensure_database().await?;
                database_checked = true;
            }
            let wanted = table_input(&entry);
            let action = match self.table(&name).await? {
                None if dry_run => Action::Created,
                None => {
                    let input = json!({"DatabaseName": self.database, "TableInput": wanted});
                    match self.call("CreateTable", &input).await {
                        Ok(_) => Action::Created,
                        // Another run registered it first: compare with what it wrote.
                        Err(fault) if fault.code == "AlreadyExistsException" => {
                            let existing = self.table(&name).await?.unwrap_or_default();
                            self.update(&name, &existing, wanted, dry_run).await?
                        }
                        Err(fault) => return Err(self.refused("CreateTable", &name, fault)),
                    }
                }
                Some(existing) => self.update(&name, &existing, wanted, dry_run).await?,
            };
            done.push(Registered { entry: label, action });
        }
        Ok(done)
    }

    /// Updates `existing` to `wanted` if they differ (keeping parameters
    /// others set).
    async fn update(&self, name: &str, existing: &Value, mut wanted: Value, dry_run: bool) -> Result<Action> {
        let differences = differences(existing, &wanted);
        if differences.is_empty() {
            return Ok(Action::Unchanged);
        }
        if !dry_run {
            if let (Some(theirs), Some(ours)) =
                (existing["Parameters"].as_object(), wanted["Parameters"].as_object_mut())
            {
                for (key, value) in theirs {
                    ours.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            let input = json!({"DatabaseName": self.database, "TableInput": wanted});
            self.call("UpdateTable", &input).await.map_err(|fault| self.refused("UpdateTable", name, fault))?;
        }
        Ok(Action::Updated(differences))
    }

    async fn ensure_database(&self) -> Result<()> {
        match self.call("GetDatabase", &json!({"Name": self.database})).await {
            Ok(_) => return Ok(()),
            Err(fault) if fault.code == "EntityNotFoundException" => {}
            Err(fault) => return Err(self.refused("GetDatabase", "", fault)),
        }
        let input = json!({"DatabaseInput": {"Name": self.database, "Description": "Delta tables loaded by shoplake"}});
        match self.call("CreateDatabase", &input).await {
            Ok(_) => Ok(()),
            Err(fault) if fault.code == "AlreadyExistsException" => Ok(()),
            Err(fault) => Err(self.refused("CreateDatabase", "", fault)),
        }
    }

    /// The registered table, if any.
    async fn table(&self, name: &str) -> Result<Option<Value>> {
        match self.call("GetTable", &json!({"DatabaseName": self.database, "Name": name})).await {
            Ok(mut output) => Ok(Some(output["Table"].take())),
            Err(fault) if fault.code == "EntityNotFoundException" => Ok(None),
            Err(fault) => Err(self.refused("GetTable", name, fault)),
        }
    }

    /// One call; an unreachable endpoint is an error here, a refusal is the caller's to read.
    async fn call(&self, operation: &str, input: &Value) -> std::result::Result<Value, AwsFault> {
        match self.service.call(operation, input).await {
            Ok(output) => Ok(output),
            Err(CallError::Refused(fault)) => Err(fault),
            Err(CallError::Unreachable(why)) => Err(AwsFault { status: 0, code: "Unreachable".into(), message: why }),
        }
    }

    /// The error of a refused or unanswered call about table `name` (empty: the database).
    fn refused(&self, operation: &str, name: &str, fault: AwsFault) -> Error {
        let subject = match name {
            "" => format!("glue:{}", self.database),
            name => format!("glue:{}.{name}", self.database),
        };
        let endpoint = self.service.endpoint();
        let (kind, mut message) = match fault.status {
            0 => (Kind::Unavailable, format!("{operation} at {endpoint}: no answer: {}", fault.message)),
            _ => (fault.kind(), format!("{operation} at {endpoint}: {fault}")),
        };
        if fault.code == "AccessDeniedException" {
            message.push_str(&format!(" (registration needs {ACTIONS} on the database and its tables)"));
        }
        Error::new(Stage::Catalog, kind, subject, message)
    }
}

/// The `TableInput` of `entry`.
pub fn table_input(entry: &Entry) -> Value {
    let location = entry.location.to_string();
    let columns: Vec<Value> =
        entry.columns.iter().map(|f| json!({"Name": f.name(), "Type": types::hive_type(f.data_type())})).collect();
    let parameters: serde_json::Map<String, Value> =
        DELTA_PARAMETERS.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    json!({
        "Name": entry.name,
        "Description": entry.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [],
        "StorageDescriptor": {
            "Columns": columns,
            "Location": location,
            "InputFormat": "org.apache.hadoop.mapred.SequenceFileInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveSequenceFileOutputFormat",
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                "Parameters": {"path": location, "serialization.format": "1"}
            }
        }
    })
}

/// How a registered table differs from the wanted input, one line each
/// (what readers use only: type, parameters, location, columns, description).
pub fn differences(existing: &Value, wanted: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let text = |value: &Value, pointer: &str| value.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
    for (what, pointer) in [
        ("table type", "/TableType"),
        ("location", "/StorageDescriptor/Location"),
        ("SerDe path", "/StorageDescriptor/SerdeInfo/Parameters/path"),
        ("description", "/Description"),
    ] {
        let (theirs, ours) = (text(existing, pointer), text(wanted, pointer));
        if theirs != ours {
            found.push(format!("{what}: {theirs:?} -> {ours:?}"));
        }
    }
    for (key, value) in DELTA_PARAMETERS {
        let theirs = existing["Parameters"][key].as_str().unwrap_or("");
        if theirs != value {
            found.push(format!("parameter {key}: {theirs:?} -> {value:?}"));
        }
    }
    if existing["PartitionKeys"].as_array().is_some_and(|keys| !keys.is_empty()) {
        found.push("partition keys: removed (readers take partitions from the Delta log)".into());
    }
    let columns = |value: &Value| -> Vec<(String, String)> {
        let listed = value.pointer("/StorageDescriptor/Columns").and_then(Value::as_array);
        listed.into_iter().flatten().map(|c| (text(c, "/Name"), text(c, "/Type"))).collect()
    };
    let (theirs, ours) = (columns(existing), columns(wanted));
    if theirs != ours {
        found.push(super::column_changes(&theirs, &ours));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Location;
    use deltalake::kernel::{DataType, StructField};

    fn entry(columns: &[(&str, DataType)]) -> Entry {
        Entry {
            name: "orders".into(),
            location: Location::parse("s3://lake/shop/orders").unwrap(),
            description: "Orders".into(),
            columns: columns.iter().map(|(n, t)| StructField::nullable(*n, t.clone())).collect(),
            partition_columns: vec!["export_date".into()],
        }
    }

    #[test]
    fn the_shape_every_reader_reads() {
        let input = table_input(&entry(&[("id", DataType::LONG), ("export_date", DataType::DATE)]));
        assert_eq!(input["TableType"], "EXTERNAL_TABLE");
        assert_eq!(input["Parameters"]["spark.sql.sources.provider"], "delta");
        assert_eq!(input["Parameters"]["table_type"], "DELTA");
        assert_eq!(input["StorageDescriptor"]["Location"], "s3://lake/shop/orders");
        assert_eq!(input["StorageDescriptor"]["SerdeInfo"]["Parameters"]["path"], "s3://lake/shop/orders");
        assert_eq!(input["StorageDescriptor"]["Columns"][0], json!({"Name": "id", "Type": "bigint"}));
        assert_eq!(input["PartitionKeys"], json!([]), "no partition keys: the log has them");
        assert!(differences(&input, &input).is_empty(), "an entry equals itself");
    }

    #[test]
    fn differences_name_what_changed() {
        let old = table_input(&entry(&[("id", DataType::LONG)]));
        let new = table_input(&entry(&[("id", DataType::LONG), ("note", DataType::STRING)]));
        assert_eq!(differences(&old, &new), ["columns: +note string"]);
        let mut moved = old.clone();
        moved["StorageDescriptor"]["Location"] = json!("s3://lake/old/orders");
        moved["Parameters"]["classification"] = json!("parquet");
        let found = differences(&moved, &old);
        assert_eq!(
            found,
            [r#"location: "s3://lake/old/orders" -> "s3://lake/shop/orders""#],
            "others' parameters are theirs"
        );
        let retyped = table_input(&entry(&[("id", DataType::STRING)]));
        assert_eq!(differences(&old, &retyped), ["columns: id bigint -> string"]);
    }
}
