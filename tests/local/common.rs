//! Helpers shared by the local end-to-end tests: run the real binary, write fixture
//! exports, and read a table back as plain values.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HEADER: &str = "id,shop_domain,application_id,autocomplete_enabled,user_created_at_least_one_qr,nbr_merchandised_queries,nbrs_pinned_items,showing_logo,has_changed_sort_orders,analytics_enabled,use_metafields,nbr_metafields,use_default_colors,show_products,instant_search_enabled,instant_search_enabled_on_collection,only_using_faceting_on_collection,use_merchandising_for_collection,index_prefix,indexing_paused,install_channel,export_date";

/// A scratch directory holding `raw/` (exports) and `lake/` (tables).
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn raw(&self) -> PathBuf {
        self.dir.path().join("raw")
    }

    pub fn table(&self) -> PathBuf {
        self.dir.path().join("lake").join("shopify_configuration")
    }

    pub fn rejects_table(&self) -> PathBuf {
        self.dir.path().join("lake").join("shopify_configuration_rejects")
    }

    /// Writes `<raw>/<date>.csv` with exactly these bytes.
    pub fn write_export(&self, date: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        std::fs::create_dir_all(self.raw()).unwrap();
        let path = self.raw().join(format!("{date}.csv"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Runs `shoplake <args>` with this workspace's source and table.
    pub fn shoplake(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run shoplake")
    }

    /// `shoplake <args>` with this workspace's source and table, to run
    /// once the caller has set more of its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoplake"));
        command
            .args(args)
            .env("SHOPLAKE_SOURCE", self.raw())
            .env("SHOPLAKE_TABLE", self.table())
            .env_remove("SHOPLAKE_REJECTS_TABLE")
            .env_remove("SHOPLAKE_ERASURE_KEY")
            .env("RUST_LOG", "warn");
        command
    }

    /// `shoplake ingest --date D --format json`, returning the exit code and report.
    pub fn ingest(&self, date: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["ingest", "--date", date, "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.shoplake(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("no JSON report ({e}); stdout: {stdout}; stderr: {}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), report)
    }

    pub fn snapshot(&self) -> TableSnapshot {
        snapshot(&self.table())
    }

    /// `shoplake generate` of `rows` shops a day into this workspace's exports.
    pub fn generate(&self, from: &str, to: &str, rows: u64, extra: &[&str]) {
        let (rows, raw) = (rows.to_string(), self.raw());
        let mut args = vec!["generate", "--from", from, "--to", to, "--rows", &rows, "--out", raw.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.shoplake(&args);
        assert!(out.status.success(), "generate: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `shoplake query --format json` (optionally `--as-of`): one JSON object per row.
    pub fn query(&self, sql: &str, as_of: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["query", "--format", "json", "--sql", sql];
        if let Some(v) = as_of {
            args.extend_from_slice(&["--as-of", v]);
        }
        let out = self.shoplake(&args);
        assert!(out.status.success(), "query {sql} as of {as_of:?}: {}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    }

    /// `shoplake history --format json`, newest first.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let out = self.shoplake(&["history", "--format", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    }

    /// The rejects `shoplake query` pairs with a version (latest by default):
    /// (date, line, reason), sorted.
    pub fn paired_rejects(&self, as_of: Option<&str>) -> Vec<(String, i64, String)> {
        let sql = "SELECT CAST(export_date AS VARCHAR) AS d, line, reason FROM shopify_configuration_rejects ORDER BY d, line";
        self.query(sql, as_of)
            .iter()
            .map(|r| {
                (
                    r["d"].as_str().unwrap().to_string(),
                    r["line"].as_i64().unwrap(),
                    r["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (line, raw, reason) of a rejects table's latest version, by line.
pub fn rejects_of(rejects_table: &Path) -> Vec<(i64, String, String)> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = url::Url::from_directory_path(rejects_table).unwrap();
        let table = deltalake::DeltaTableBuilder::from_url(url).unwrap().load().await.unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("r", table.table_provider().await.unwrap()).unwrap();
        let batches = ctx.sql("SELECT line, raw, reason FROM r ORDER BY line").await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        let text = |a: &datafusion::arrow::array::ArrayRef| {
            datafusion::arrow::compute::cast(a, &datafusion::arrow::datatypes::DataType::Utf8).unwrap()
        };
        for b in batches {
            let (raw, reason) = (text(b.column(1)), text(b.column(2)));
            for i in 0..b.num_rows() {
                out.push((
                    b.column(0).as_primitive::<Int64Type>().value(i),
                    raw.as_string::<i32>().value(i).to_string(),
                    reason.as_string::<i32>().value(i).to_string(),
                ));
            }
        }
        out
    })
}

/// An export: the header, then `lines`.
pub fn export(lines: &[String]) -> String {
    let mut text = format!("{HEADER}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// A line of the export with the given fields (in header order).
pub fn line(id: &str, app: &str, flag: &str, count: &str, pins: &str, prefix: &str, date: &str) -> String {
    format!(
        "{id},{id}.myshopify.com,{app},{flag},False,{count},{pins},True,False,True,False,3,True,True,False,False,True,False,{prefix},False,shopify_app_store,{date}"
    )
}

pub use shoplake::testing::TableSnapshot;

/// A `shopify_configuration` table's rows and files.
pub fn snapshot(table: &Path) -> TableSnapshot {
    snapshot_of(shoplake::catalog::built_in("shopify_configuration"), table)
}

/// A table's rows and files, read by its definition.
pub fn snapshot_of(def: &shoplake::definition::TableDefinition, table: &Path) -> TableSnapshot {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let storage = shoplake::storage::Storage::new();
    let location = shoplake::storage::Location::Local(table.to_path_buf());
    runtime.block_on(shoplake::testing::snapshot(&storage, def, &location, None)).unwrap()
}
