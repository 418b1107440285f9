//! Finds the table definitions and runs the one pipeline every command
//! shares: discover the folders (sorted) → parse each file → resolve the
//! definition and plan its SQL against the declared columns → check its
//! checks. Problems are collected, never stopped at, each with its file,
//! key path and line where the parser gives one (`shoplake validate` lists
//! them all). A table whose definition has problems cannot be loaded or
//! audited; the others can.
//!
//! Where definitions come from: `--tables DIR` (env `SHOPLAKE_TABLES`),
//! else `./tables` when it exists, else the ones built into the binary
//! (every folder of the repository's `tables/` when it was built).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::definition::file::TableFile;
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};

/// The definitions of the repository's `tables/` at build time.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/built_in_tables.rs"));
}

const TABLE_FILE: &str = "table.toml";
const TRANSFORM_FILE: &str = "transform.sql";
const CHECKS_FILE: &str = "checks.toml";

/// Where the definitions are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionsDir {
    /// A folder of `<name>/table.toml`.
    Folder(PathBuf),
    /// The definitions built into the binary.
    BuiltIn,
}

impl DefinitionsDir {
    /// `--tables DIR` if given, else `./tables` when present, else the built-in ones.
    pub fn resolve(flag: Option<&Path>) -> DefinitionsDir {
        match flag {
            Some(dir) => DefinitionsDir::Folder(dir.to_path_buf()),
            None if Path::new("tables").join(".").is_dir() => DefinitionsDir::Folder(PathBuf::from("tables")),
            None => DefinitionsDir::BuiltIn,
        }
    }
}

impl fmt::Display for DefinitionsDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefinitionsDir::Folder(dir) => write!(f, "{}", dir.display()),
            DefinitionsDir::BuiltIn => f.write_str("the built-in definitions"),
        }
    }
}

/// Something wrong with a definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// The key path inside the file (`columns[3].kind`), where known.
    pub key: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every definition found, valid or not.
#[derive(Debug)]
pub struct Catalog {
    pub dir: DefinitionsDir,
    tables: Vec<&'static TableDefinition>,
    /// Table name → what is wrong with its definition.
    invalid: BTreeMap<String, Vec<Problem>>,
}

impl Catalog {
    /// Loads the definitions of `dir` through the whole pipeline. Only a
    /// folder that cannot be listed is an error here; a broken definition
    /// is one when its table is asked for ([`Catalog::get`]).
    pub async fn load(dir: DefinitionsDir) -> Result<&'static Catalog> {
        let sources = match &dir {
            DefinitionsDir::Folder(folder) => discover(folder)?,
            DefinitionsDir::BuiltIn => embedded::TABLES
                .iter()
                .map(|(name, table, transform, checks)| Sources {
                    name: name.to_string(),
                    origin: format!("built-in:{name}"),
                    table: Some(table.to_string()),
                    transform: transform.map(str::to_string),
                    checks: checks.map(str::to_string),
                })
                .collect(),
        };
        let mut catalog = Catalog { dir, tables: Vec::new(), invalid: BTreeMap::new() };
        for source in sources {
            let name = source.name.clone();
            match source.into_definition().await {
                Ok(def) => catalog.tables.push(Box::leak(Box::new(def))),
                Err(problems) => {
                    catalog.invalid.insert(name, problems);
                }
            }
        }
        Ok(Box::leak(Box::new(catalog)))
    }

    /// The built-in definitions (loaded once per process).
    pub fn built_in() -> &'static Catalog {
        static BUILT_IN: OnceLock<&'static Catalog> = OnceLock::new();
        BUILT_IN.get_or_init(|| {
            // Planning SQL is async; this may be called from inside a runtime.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
                runtime.block_on(Catalog::load(DefinitionsDir::BuiltIn)).expect("built-in definitions are listed")
            })
            .join()
            .expect("loading the built-in definitions")
        })
    }

    /// The valid definitions, by name.
    pub fn tables(&self) -> &[&'static TableDefinition] {
        &self.tables
    }

    /// Every problem, by table name.
    pub fn problems(&self) -> &BTreeMap<String, Vec<Problem>> {
        &self.invalid
    }

    /// Every table name, valid or not, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> =
            self.tables.iter().map(|t| t.name.as_str()).chain(self.invalid.keys().map(String::as_str)).collect();
        names.sort_unstable();
        names
    }

    /// The definition of `name`: a definition with problems is refused with
    /// them (exit 2), an unknown name lists the known ones.
    pub fn get(&self, name: &str) -> Result<&'static TableDefinition> {
        if let Some(def) = self.tables.iter().find(|t| t.name == name) {
            return Ok(def);
        }
        if let Some(problems) = self.invalid.get(name) {
            let listed: Vec<String> = problems.iter().map(Problem::to_string).collect();
            return Err(Error::usage(
                Stage::Definition,
                name,
                format!("the definition does not validate (shoplake validate): {}", listed.join("; ")),
            ));
        }
        let known = self.names();
        Err(Error::usage(
            Stage::Definition,
            name,
            format!(
                "no table definition of that name in {}; known: {}",
                self.dir,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        ))
    }
}

/// The files of one definition, as read.
struct Sources {
    name: String,
    /// The folder (or `built-in:<name>`), for messages.
    origin: String,
    table: Option<String>,
    transform: Option<String>,
    checks: Option<String>,
}

impl Sources {
    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.origin)
    }

    /// A hash of the definition's files, as text.
    fn fingerprint(&self) -> String {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for text in [Some(&self.name), self.table.as_ref(), self.transform.as_ref(), self.checks.as_ref()] {
            let text = text.map_or("", String::as_str);
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        format!("{:016x}", hasher.digest())
    }

    /// Parse → resolve → plan the SQL → the checks, collecting problems.
    async fn into_definition(self) -> std::result::Result<TableDefinition, Vec<Problem>> {
        let table_file = self.file(TABLE_FILE);
        let Some(text) = &self.table else {
            return Err(vec![problem(
                &table_file,
                None,
                None,
                format!("the folder {} has no {TABLE_FILE}", self.origin),
            )]);
        };
        let parsed: TableFile = toml::from_str(text).map_err(|e| vec![toml_problem(&table_file, text, &e)])?;
        let mut def = parsed.resolve(self.transform.clone(), self.origin.clone()).map_err(|problems| {
            problems
                .into_iter()
                .map(|(key, message)| problem(&table_file, Some(key), None, message))
                .collect::<Vec<_>>()
        })?;
        let mut problems = Vec::new();
        def.fingerprint = self.fingerprint();
        if def.name != self.name {
            problems.push(problem(
                &table_file,
                Some("name".into()),
                None,
                format!("`{}` is not the folder's name `{}`", def.name, self.name),
            ));
        }
        if let Err(message) = crate::transform::plan_check(&def).await {
            problems.push(problem(&self.file(TRANSFORM_FILE), None, None, message));
        }
        let checks_file = self.file(CHECKS_FILE);
        if let Some(text) = &self.checks {
            match toml::from_str::<crate::definition::checks::ChecksFile>(text) {
                Err(e) => problems.push(toml_problem(&checks_file, text, &e)),
                Ok(file) => {
                    for (i, check) in file.checks.iter().enumerate() {
                        if let Err(message) = check.validate(&def).await {
                            problems.push(problem(&checks_file, Some(format!("checks[{i}]")), None, message));
                        }
                    }
                    def.checks = file.checks;
                }
            }
        }
        if problems.is_empty() {
            Ok(def)
        } else {
            Err(problems)
        }
    }
}

fn problem(file: &str, key: Option<String>, line: Option<usize>, message: String) -> Problem {
    Problem { file: file.to_string(), key, line, message }
}

/// A TOML error at its line.
fn toml_problem(file: &str, text: &str, error: &toml::de::Error) -> Problem {
    let line = error.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    problem(file, None, line, error.message().trim().to_string())
}

/// The definition folders of `dir`, sorted by name; files beside them
/// (a README) are not definitions.
fn discover(dir: &Path) -> Result<Vec<Sources>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::usage(Stage::Definition, dir.display(), format!("cannot list the table definitions: {e}"))
    })?;
    let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    folders.sort();
    let read = |path: PathBuf| -> Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::usage(Stage::Definition, path.display(), format!("cannot be read: {e}"))),
        }
    };
    folders
        .into_iter()
        .filter(|folder| !folder.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .map(|folder| {
            Ok(Sources {
                name: folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                origin: folder.display().to_string(),
                table: read(folder.join(TABLE_FILE))?,
                transform: read(folder.join(TRANSFORM_FILE))?,
                checks: read(folder.join(CHECKS_FILE))?,
            })
        })
        .collect()
}

/// A definition built into the binary, by name (the tests' and the
/// generator's fallback); panics on an unknown name or an invalid
/// definition, which the unit tests of the built-in catalog rule out.
pub fn built_in(name: &str) -> &'static TableDefinition {
    Catalog::built_in().get(name).unwrap_or_else(|e| panic!("built-in definition {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_definitions_are_valid() {
        let catalog = Catalog::built_in();
        assert!(catalog.problems().is_empty(), "{:?}", catalog.problems());
        assert_eq!(
            catalog.names(),
            vec![
                "shopify_bulk_products",
                "shopify_bulk_variants",
                "shopify_configuration",
                "shopify_customers",
                "shopify_products",
                "shopify_usage_daily"
            ]
        );
    }

    #[tokio::test]
    async fn unknown_names_list_the_known_ones() {
        let err = Catalog::built_in().get("shopify_configuraton").unwrap_err();
        assert_eq!(err.kind, crate::Kind::Usage);
        assert!(
            err.message.contains("known: shopify_bulk_products, shopify_bulk_variants, shopify_configuration,"),
            "{err}"
        );
    }
}
