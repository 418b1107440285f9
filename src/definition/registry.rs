//! Where a table is registered (Glue, Unity Catalog): a definition's
//! `[catalog]` block, the command line's settings over it, and the one
//! resolution of both. The registration itself is `crate::metastore`'s.

use serde::Deserialize;

/// Where a table is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metastore {
    /// An AWS Glue database (created if absent).
    Glue { database: String },
    /// A Unity Catalog server's `catalog.schema` (each created if absent
    /// and allowed); its token from `UNITY_CATALOG_TOKEN`.
    Unity { url: String, catalog: String, schema: String },
}

/// The catalog Unity Catalog's open-source server starts with.
pub const DEFAULT_UNITY_SCHEMA: &str = "unity.default";

impl std::fmt::Display for Metastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metastore::Glue { database } => write!(f, "glue:{database}"),
            Metastore::Unity { catalog, schema, .. } => write!(f, "unity:{catalog}.{schema}"),
        }
    }
}

/// `[catalog]` in `table.toml`: where this table is registered unless the
/// command line says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogBlock {
    #[serde(rename = "type")]
    kind: CatalogKind,
    /// Glue: the database.
    database: Option<String>,
    /// Unity Catalog: the server's URL.
    url: Option<String>,
    /// Unity Catalog: `catalog.schema`.
    schema: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    Glue,
    Unity,
    /// No registration (on the command line: whatever the definitions say).
    None,
}

impl CatalogKind {
    pub fn name(self) -> &'static str {
        match self {
            CatalogKind::Glue => "glue",
            CatalogKind::Unity => "unity",
            CatalogKind::None => "none",
        }
    }
}

/// The command line's catalog settings (`--catalog`, `--glue-database`,
/// `--unity-url`, `--unity-schema`); each given one overrides a
/// definition's `[catalog]`.
#[derive(Debug, Clone, Default)]
pub struct CatalogSettings {
    pub kind: Option<CatalogKind>,
    pub database: Option<String>,
    pub url: Option<String>,
    pub schema: Option<String>,
}

impl CatalogBlock {
    /// The block as a metastore, or its problems, each with its key path.
    pub(crate) fn resolve(&self) -> std::result::Result<Option<Metastore>, Vec<(String, String)>> {
        let settings = CatalogSettings {
            kind: Some(self.kind),
            database: self.database.clone(),
            url: self.url.clone(),
            schema: self.schema.clone(),
        };
        let stray = match self.kind {
            CatalogKind::Glue => [("url", &self.url), ("schema", &self.schema)].to_vec(),
            CatalogKind::Unity => [("database", &self.database)].to_vec(),
            CatalogKind::None => [("database", &self.database), ("url", &self.url), ("schema", &self.schema)].to_vec(),
        };
        let mut problems: Vec<(String, String)> = stray
            .into_iter()
            .filter(|(_, value)| value.is_some())
            .map(|(key, _)| (format!("catalog.{key}"), format!("does not go with type = \"{}\"", self.kind.name())))
            .collect();
        match settings.metastore(None) {
            Ok(metastore) if problems.is_empty() => Ok(metastore),
            Ok(_) => Err(problems),
            Err((key, message)) => {
                problems.push((format!("catalog.{key}"), message));
                Err(problems)
            }
        }
    }
}

impl CatalogSettings {
    /// The metastore of a table whose definition says `declared`: the
    /// command line's where it says something, else the definition's.
    /// An error names the missing setting (its key) and why.
    pub fn metastore(&self, declared: Option<&Metastore>) -> std::result::Result<Option<Metastore>, (String, String)> {
        let kind = match (self.kind, declared) {
            (Some(kind), _) => kind,
            (None, Some(Metastore::Glue { .. })) => CatalogKind::Glue,
            (None, Some(Metastore::Unity { .. })) => CatalogKind::Unity,
            (None, None) => return Ok(None),
        };
        match kind {
            CatalogKind::None => Ok(None),
            CatalogKind::Glue => {
                let declared = match declared {
                    Some(Metastore::Glue { database }) => Some(database.clone()),
                    _ => None,
                };
                let database = self.database.clone().or(declared).ok_or_else(|| {
                    ("database".to_string(), "Glue registration needs a database (--glue-database)".to_string())
                })?;
                check_glue_name(&database).map_err(|e| ("database".to_string(), e))?;
                Ok(Some(Metastore::Glue { database }))
            }
            CatalogKind::Unity => {
                let (declared_url, declared_schema) = match declared {
                    Some(Metastore::Unity { url, catalog, schema }) => {
                        (Some(url.clone()), Some(format!("{catalog}.{schema}")))
                    }
                    _ => (None, None),
                };
                let url = self.url.clone().or(declared_url).ok_or_else(|| {
                    ("url".to_string(), "Unity Catalog registration needs its server's URL (--unity-url)".to_string())
                })?;
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(("url".into(), format!("{url:?} is not an http:// or https:// URL")));
                }
                let full = self.schema.clone().or(declared_schema).unwrap_or_else(|| DEFAULT_UNITY_SCHEMA.into());
                let Some((catalog, schema)) = full.split_once('.').filter(|(c, s)| !c.is_empty() && !s.contains('.'))
                else {
                    return Err(("schema".into(), format!("{full:?} is not catalog.schema")));
                };
                Ok(Some(Metastore::Unity {
                    url: url.trim_end_matches('/').to_string(),
                    catalog: catalog.into(),
                    schema: schema.into(),
                }))
            }
        }
    }
}

/// Glue's names: lowercase letters, digits and underscores (Athena reads no other).
fn check_glue_name(name: &str) -> std::result::Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if fine {
        Ok(())
    } else {
        Err(format!("{name:?}: Glue names are lowercase letters, digits and underscores"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> std::result::Result<Option<Metastore>, Vec<(String, String)>> {
        toml::from_str::<CatalogBlock>(text).expect("parses").resolve()
    }

    #[test]
    fn a_catalog_block_resolves_or_names_its_key() {
        assert_eq!(
            block("type = \"glue\"\ndatabase = \"shop\"").unwrap(),
            Some(Metastore::Glue { database: "shop".into() })
        );
        assert_eq!(block("type = \"glue\"").unwrap_err()[0].0, "catalog.database");
        assert_eq!(block("type = \"glue\"\ndatabase = \"Shop-Lake\"").unwrap_err()[0].0, "catalog.database");
        assert_eq!(block("type = \"glue\"\ndatabase = \"s\"\nurl = \"http://x\"").unwrap_err()[0].0, "catalog.url");
        assert_eq!(
            block("type = \"unity\"\nurl = \"http://uc:8080/\"").unwrap(),
            Some(Metastore::Unity { url: "http://uc:8080".into(), catalog: "unity".into(), schema: "default".into() })
        );
        assert_eq!(
            block("type = \"unity\"\nurl = \"http://u\"\nschema = \"a.b.c\"").unwrap_err()[0].0,
            "catalog.schema"
        );
        assert!(toml::from_str::<CatalogBlock>("type = \"glue\"\ndatabse = \"x\"").is_err(), "a typo fails loudly");
    }

    #[test]
    fn the_command_line_overrides_a_definition() {
        let declared = Metastore::Glue { database: "declared".into() };
        let none = CatalogSettings::default();
        assert_eq!(none.metastore(Some(&declared)).unwrap(), Some(declared.clone()));
        assert_eq!(none.metastore(None).unwrap(), None);
        let database = CatalogSettings { database: Some("given".into()), ..Default::default() };
        assert_eq!(database.metastore(Some(&declared)).unwrap(), Some(Metastore::Glue { database: "given".into() }));
        let off = CatalogSettings { kind: Some(CatalogKind::None), ..Default::default() };
        assert_eq!(off.metastore(Some(&declared)).unwrap(), None);
        let glue = CatalogSettings { kind: Some(CatalogKind::Glue), ..Default::default() };
        assert_eq!(glue.metastore(None).unwrap_err().0, "database", "Glue without a database");
    }
}
