//! A scratch lake for tests of any table definition: its own copy of the
//! repository's `tables/` (so a test can add or change definitions without
//! a rebuild, as a user would), exports under `raw/`, tables under `lake/`,
//! and the binary run with `--tables`, `--source` and `--lake` pointing
//! there.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shoplake::catalog::{Catalog, DefinitionsDir};
use shoplake::definition::TableDefinition;
use shoplake::testing::TableSnapshot;

pub struct Lake {
    pub dir: tempfile::TempDir,
}

impl Lake {
    /// A lake whose definitions are a copy of the repository's.
    pub fn new() -> Lake {
        let lake = Lake { dir: tempfile::tempdir().expect("temp dir") };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
        for entry in std::fs::read_dir(&repo).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            let to = lake.tables().join(entry.file_name());
            std::fs::create_dir_all(&to).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap().filter_map(|e| e.ok()) {
                std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
            }
        }
        lake
    }

    pub fn tables(&self) -> PathBuf {
        self.dir.path().join("tables")
    }

    pub fn raw(&self) -> PathBuf {
        self.dir.path().join("raw")
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub fn table(&self, name: &str) -> PathBuf {
        self.lake().join(name)
    }

    /// Writes a definition folder `tables/<name>/`.
    pub fn define(&self, name: &str, table_toml: &str, transform_sql: Option<&str>, checks_toml: Option<&str>) {
        let folder = self.tables().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("table.toml"), table_toml).unwrap();
        for (file, text) in [("transform.sql", transform_sql), ("checks.toml", checks_toml)] {
            match text {
                Some(text) => std::fs::write(folder.join(file), text).unwrap(),
                None => {
                    let _ = std::fs::remove_file(folder.join(file));
                }
            }
        }
    }

    /// Changes a definition's `table.toml`.
    pub fn edit(&self, name: &str, change: impl FnOnce(String) -> String) {
        let path = self.tables().join(name).join("table.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, change(text)).unwrap();
    }

    /// The definition as shoplake reads it now.
    pub fn definition(&self, name: &str) -> &'static TableDefinition {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let catalog = runtime.block_on(Catalog::load(DefinitionsDir::Folder(self.tables()))).unwrap();
        catalog.get(name).unwrap()
    }

    /// Runs `shoplake <args>` against this lake (with an erasure key: a
    /// table with erasures needs it to load).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shoplake"))
            .args(args)
            .env("SHOPLAKE_TABLES", self.tables())
            .env("SHOPLAKE_SOURCE", self.raw())
            .env("SHOPLAKE_LAKE", self.lake())
            .env_remove("SHOPLAKE_TABLE")
            .env_remove("SHOPLAKE_REJECTS_TABLE")
            .env_remove("SHOPLAKE_TABLE_NAME")
            .env("SHOPLAKE_ERASURE_KEY", "lake-test-erasure-key-0123")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run shoplake")
    }

    /// Runs and expects success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "shoplake {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ingest --table-name NAME --date D --format json`: exit code and report.
    pub fn ingest(&self, name: &str, date: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["ingest", "--table-name", name, "--date", date, "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("no JSON report ({e}); stdout: {stdout}; stderr: {}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), report)
    }

    /// `generate` of `rows` rows a day of table `name`.
    pub fn generate(&self, name: &str, from: &str, to: &str, rows: u64, extra: &[&str]) {
        let rows = rows.to_string();
        let mut args = vec!["generate", "--table-name", name, "--from", from, "--to", to, "--rows", &rows];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Where table `name`'s export of `date` is.
    pub fn export(&self, name: &str, date: &str) -> PathBuf {
        self.raw().join(self.definition(name).source_file(date.parse().unwrap()))
    }

    /// `query --format json` (optionally `--as-of`), one JSON object per row.
    pub fn query(&self, name: &str, sql: &str, as_of: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["query", "--table-name", name, "--format", "json", "--sql", sql];
        if let Some(v) = as_of {
            args.extend_from_slice(&["--as-of", v]);
        }
        crate::common::json_lines(self.ok(&args).as_bytes())
    }

    /// A count from `query`.
    pub fn count(&self, name: &str, sql: &str) -> i64 {
        self.query(name, sql, None)[0].as_object().unwrap().values().next().unwrap().as_i64().unwrap()
    }

    /// `history --format json`, newest first.
    pub fn history(&self, name: &str) -> Vec<serde_json::Value> {
        crate::common::json_lines(self.ok(&["history", "--table-name", name, "--format", "json"]).as_bytes())
    }

    pub fn version(&self, name: &str) -> i64 {
        self.history(name)[0]["version"].as_i64().unwrap()
    }

    /// The table's rows and files, read with its definition.
    pub fn snapshot(&self, name: &str) -> TableSnapshot {
        crate::common::snapshot_of(self.definition(name), &self.table(name))
    }
}
