//! Unity Catalog (the open-source server's REST API, `/api/2.1/unity-catalog`,
//! which Databricks serves too): each table an EXTERNAL table of format
//! DELTA at its storage location, its columns as Spark names them. The
//! catalog and schema are created when absent (if the token may). The API
//! has no update of a table's columns: a changed entry is deleted and
//! created again, which for an external table touches no data.

use serde_json::{json, Value};

use super::{types, Action, Entry, Registered};
use crate::error::{Error, Kind, Result, Stage};
use crate::storage::Location;

/// The environment variable holding the bearer token, if the server wants one.
pub const TOKEN_VARIABLE: &str = "UNITY_CATALOG_TOKEN";

pub struct Unity {
    client: reqwest::Client,
    /// `<url>/api/2.1/unity-catalog`.
    api: String,
    token: Option<String>,
    catalog: String,
    schema: String,
}

/// A response that is not a success: its status and `error_code`.
struct Refusal {
    status: u16,
    code: String,
    message: String,
}

impl Unity {
    pub fn connect(url: &str, catalog: &str, schema: &str) -> Result<Unity> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("shoplake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::internal(Stage::Catalog, url, e))?;
        Ok(Unity {
            client,
            api: format!("{url}/api/2.1/unity-catalog"),
            token: std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()),
            catalog: catalog.into(),
            schema: schema.into(),
        })
    }

    pub async fn register(&self, entries: Vec<(String, Option<Entry>)>, dry_run: bool) -> Result<Vec<Registered>> {
        let mut schema_checked = false;
        let mut done = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            let full_name = format!("{}.{}.{name}", self.catalog, self.schema);
            let label = format!("unity:{full_name}");
            let Some(entry) = entry else {
                done.push(Registered { entry: label, action: Action::NotLoaded });
                continue;
            };
            if !dry_run && !schema_checked {
                self.ensure_schema().await?;
                schema_checked = true;
            }
            let wanted = self.table_request(&entry)?;
            let action = match self.get(&format!("tables/{full_name}")).await? {
                None if dry_run => Action::Created,
                None => {
                    self.send(reqwest::Method::POST, "tables", Some(&wanted))
                        .await
                        .map_err(|r| self.refused(&full_name, r))?;
                    Action::Created
                }
                Some(existing) => {
                    let differences = differences(&existing, &wanted);
                    if differences.is_empty() {
                        Action::Unchanged
                    } else {
                        if !dry_run {
                            let path = format!("tables/{full_name}");
                            self.send(reqwest::Method::DELETE, &path, None)
                                .await
                                .map_err(|r| self.refused(&full_name, r))?;
                            self.send(reqwest::Method::POST, "tables", Some(&wanted))
                                .await
                                .map_err(|r| self.refused(&full_name, r))?;
                        }
                        Action::Updated(differences)
                    }
                }
            };
            done.push(Registered { entry: label, action });
        }
        Ok(done)
    }

    /// The `POST /tables` body of `entry`.
    fn table_request(&self, entry: &Entry) -> Result<Value> {
        let storage_location = match &entry.location {
            Location::S3 { .. } => entry.location.to_string(),
            Location::Local(path) => {
                let absolute = std::path::absolute(path)
                    .map_err(|e| Error::usage(Stage::Catalog, &entry.location, format!("not a usable path: {e}")))?;
                url::Url::from_directory_path(&absolute)
                    .map_err(|()| Error::usage(Stage::Catalog, &entry.location, "not a usable path"))?
                    .as_str()
                    .trim_end_matches('/')
                    .to_string()
            }
        };
        let columns: Vec<Value> = entry
            .columns
            .iter()
            .enumerate()
            .map(|(position, field)| {
                let mut column = json!({
                    "name": field.name(),
                    "type_text": types::unity_type_text(field.data_type()),
                    "type_name": types::unity_type_name(field.data_type()),
                    "type_json": serde_json::to_string(field).expect("a Delta field serializes"),
                    "position": position,
                    "nullable": field.is_nullable(),
                });
                if let deltalake::kernel::DataType::Primitive(deltalake::kernel::PrimitiveType::Decimal(d)) =
                    field.data_type()
                {
                    column["type_precision"] = json!(d.precision());
                    column["type_scale"] = json!(d.scale());
                }
                if let Some(index) = entry.partition_columns.iter().position(|p| p == field.name()) {
                    column["partition_index"] = json!(index);
                }
                column
            })
            .collect();
        Ok(json!({
            "name": entry.name,
            "catalog_name": self.catalog,
            "schema_name": self.schema,
            "table_type": "EXTERNAL",
            "data_source_format": "DELTA",
            "columns": columns,
            "storage_location": storage_location,
            "comment": entry.description,
        }))
    }

    async fn ensure_schema(&self) -> Result<()> {
        if self.get(&format!("catalogs/{}", self.catalog)).await?.is_none() {
            let body = json!({"name": self.catalog, "comment": "Delta tables loaded by shoplake"});
            self.create("catalogs", &body, &self.catalog).await?;
        }
        let full_name = format!("{}.{}", self.catalog, self.schema);
        if self.get(&format!("schemas/{full_name}")).await?.is_none() {
            let body = json!({"name": self.schema, "catalog_name": self.catalog});
            self.create("schemas", &body, &full_name).await?;
        }
        Ok(())
    }

    /// Creates a catalog or schema; one another run created first is fine.
    async fn create(&self, path: &str, body: &Value, name: &str) -> Result<()> {
        match self.send(reqwest::Method::POST, path, Some(body)).await {
            Ok(_) => Ok(()),
            Err(refusal) if refusal.code == "ALREADY_EXISTS" || refusal.status == 409 => Ok(()),
            Err(refusal) => Err(self.refused(name, refusal)),
        }
    }

    async fn get(&self, path: &str) -> Result<Option<Value>> {
        match self.send(reqwest::Method::GET, path, None).await {
            Ok(value) => Ok(Some(value)),
            Err(refusal) if refusal.status == 404 || refusal.code == "NOT_FOUND" => Ok(None),
            Err(refusal) => Err(self.refused(path, refusal)),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> std::result::Result<Value, Refusal> {
        let mut request = self.client.request(method, format!("{}/{path}", self.api));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| Refusal {
            status: 0,
            code: "UNREACHABLE".into(),
            message: crate::error::flatten(&e),
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let message = field("message").unwrap_or_else(|| text.chars().take(300).collect());
        Err(Refusal { status, code: field("error_code").unwrap_or_default(), message })
    }

    fn refused(&self, name: &str, refusal: Refusal) -> Error {
        let kind = match refusal.status {
            0 | 429 | 500.. => Kind::Unavailable,
            _ => Kind::Usage,
        };
        let mut message = format!("{} at {}: {} {}", refusal.code, self.api, refusal.status, refusal.message);
        if matches!(refusal.status, 401 | 403) {
            message.push_str(&format!(" (a token that may create tables in the schema, in {TOKEN_VARIABLE})"));
        }
        Error::new(Stage::Catalog, kind, format!("unity:{name}"), message)
    }
}

/// How a registered table differs from the wanted request.
fn differences(existing: &Value, wanted: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for key in ["table_type", "data_source_format", "storage_location", "comment"] {
        let text = |value: &Value| value[key].as_str().unwrap_or("").trim_end_matches('/').to_string();
        if text(existing) != text(wanted) {
            found.push(format!("{key}: {:?} -> {:?}", text(existing), text(wanted)));
        }
    }
    let columns = |value: &Value| -> Vec<(String, String)> {
        let listed = value["columns"].as_array().cloned().unwrap_or_default();
        listed
            .iter()
            .map(|c| {
                let nullable = if c["nullable"].as_bool() == Some(false) { " not null" } else { "" };
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    format!("{}{nullable}", c["type_text"].as_str().unwrap_or("")),
                )
            })
            .collect()
    };
    let (theirs, ours) = (columns(existing), columns(wanted));
    if theirs != ours {
        found.push(super::column_changes(&theirs, &ours));
    }
    found
}
