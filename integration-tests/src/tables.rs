//! Every table on S3 (issues #15, #16, #17): the built-in tables and one a
//! test declares at run time load, re-load, back-fill, audit and restore on
//! each backend exactly as they do locally; a column added to a definition
//! evolves the S3 table; an identical re-run downloads nothing and opens
//! the table once.

use std::path::{Path, PathBuf};
use std::process::Command;

use shoplake::catalog::{Catalog, DefinitionsDir};
use shoplake::storage::Location;

use crate::proxy::Proxy;
use crate::{report_of, shoplake_binary, Backend, Case};

const DAYS: [&str; 3] = ["2019-07-01", "2019-07-02", "2019-07-03"];

/// A definition no build knows, in a folder per date, written the way
/// Shopify's admin exports are: multi-line quoted descriptions, header
/// texts, IDs behind a prefix, `yes`/`no` flags.
const ORDERS_TOML: &str = r#"
name = "orders_daily"
key = ["order_id", "order_date"]
partition_by = "order_date"
source_pattern = "orders/{date}/orders.csv"
records = "quoted"
max_record_lines = 5
[properties]
"delta.enableChangeDataFeed" = "true"
[[columns]]
name = "order_id"
header = "Order ID"
kind = "text"
strip_prefix = "gid://shopify/Order/"
sample = { format = "uuid", stable = true }
[[columns]]
name = "note"
header = "Note (HTML)"
kind = "text"
sample = { format = "html" }
[[columns]]
name = "gift"
header = "Gift"
kind = "flag"
true_values = ["yes"]
false_values = ["no"]
[[columns]]
name = "order_date"
kind = "file_date"
[[columns]]
name = "amount"
kind = "decimal"
precision = 10
scale = 2
[[columns]]
name = "placed_at"
kind = "timestamp"
time_zone = "Europe/Paris"
[[columns]]
name = "tags"
kind = "text_list"
"#;

/// The repository's definitions, and `orders_daily`, in a folder of their own.
fn definitions(dir: &Path) -> PathBuf {
    let tables = dir.join("tables");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tables");
    for entry in std::fs::read_dir(repo).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        let to = tables.join(entry.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(entry.path()).unwrap().filter_map(|e| e.ok()) {
            std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(tables.join("orders_daily")).unwrap();
    std::fs::write(tables.join("orders_daily/table.toml"), ORDERS_TOML).unwrap();
    tables
}

/// Runs shoplake with run-time definitions, on S3 (`s3: true`) or on the local reference.
fn run(case: &Case, tables: &Path, s3: bool, args: &[&str]) -> std::process::Output {
    let mut command = if s3 { case.command(args) } else { Command::new(shoplake_binary()) };
    if !s3 {
        command.args(args).env("RUST_LOG", "warn");
    }
    let (source, lake) = if s3 {
        (case.source(), format!("s3://lake/{}", case.prefix))
    } else {
        (case.local_source().display().to_string(), case.local.path().join("lake").display().to_string())
    };
    command
        .env_remove("SHOPLAKE_TABLE")
        .env("SHOPLAKE_TABLES", tables)
        .env("SHOPLAKE_SOURCE", source)
        .env("SHOPLAKE_LAKE", lake)
        .output()
        .expect("run shoplake")
}

fn ok(case: &Case, tables: &Path, s3: bool, args: &[&str]) -> String {
    let out = run(case, tables, s3, args);
    assert!(out.status.success(), "shoplake {args:?} (s3: {s3}): {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A table's rows, read by its definition, on S3 or locally.
async fn rows(case: &Case, tables: &Path, name: &str, s3: bool) -> shoplake::testing::TableSnapshot {
    let catalog = Catalog::load(DefinitionsDir::Folder(tables.to_path_buf())).await.unwrap();
    let def = catalog.get(name).unwrap();
    let (storage, location) = if s3 {
        (case.service.storage(), Location::parse(&format!("s3://lake/{}/{name}", case.prefix)).unwrap())
    } else {
        (shoplake::storage::Storage::new(), Location::Local(case.local.path().join("lake").join(name)))
    };
    shoplake::testing::snapshot(&storage, def, &location, None).await.expect("read the table")
}

/// Each table lands by back-fill on S3 as locally, re-loads as a no-op,
/// reads back through query, history and changes, and restores.
pub async fn every_table_lands_reloads_backfills_and_audits(backend: Backend) {
    let case = Case::new(backend, "tables").await;
    let tables = definitions(case.local.path());
    let names = [
        "shopify_configuration",
        "shopify_usage_daily",
        "shopify_products",
        "shopify_customers",
        "shopify_bulk_products",
        "shopify_bulk_variants",
        "orders_daily",
    ];
    for name in names {
        for s3 in [true, false] {
            let rows = "300";
            ok(
                &case,
                &tables,
                s3,
                &["generate", "--table-name", name, "--from", DAYS[0], "--to", DAYS[2], "--rows", rows, "--dirty"],
            );
            ok(
                &case,
                &tables,
                s3,
                &["backfill", "--table-name", name, "--from", DAYS[0], "--to", DAYS[2], "--parallel", "2"],
            );
        }
        let loaded = rows(&case, &tables, name, true).await;
        assert_eq!(loaded.rows.len(), 3, "{name}: three dates");
        assert_eq!(
            loaded.rows,
            rows(&case, &tables, name, false).await.rows,
            "{name}: S3 holds what the same files give locally"
        );

        let (code, again) = report_of(run(
            &case,
            &tables,
            true,
            &["ingest", "--table-name", name, "--date", DAYS[1], "--format", "json"],
        ));
        assert_eq!((code, again["status"].as_str()), (0, Some("unchanged")), "{name}: {again}");

        let count = ok(
            &case,
            &tables,
            true,
            &["query", "--table-name", name, "--format", "csv", "--sql", &format!("SELECT count(*) AS n FROM {name}")],
        );
        let expected: usize = loaded.rows.values().map(|day| day.len()).sum();
        assert_eq!(count.lines().nth(1), Some(expected.to_string().as_str()), "{name}");
        let history = ok(&case, &tables, true, &["history", "--table-name", name, "--format", "json"]);
        assert!(history.lines().count() >= 4, "{name}: create + three loads");
        let changes =
            ok(&case, &tables, true, &["changes", "--table-name", name, "--from-version", "1", "--format", "json"]);
        assert_eq!(changes.lines().count(), expected, "{name}: every row inserted once");
        ok(&case, &tables, true, &["restore", "--table-name", name, "--version", "1"]);
        assert_eq!(rows(&case, &tables, name, true).await.rows.len(), 1, "{name}: restored to the first date alone");
    }
}

/// Dates 1-3, a column added to the definition, dates 4-5 with it: the S3
/// table gains it without rewriting files; the old export re-loads as a
/// no-op; every version still reads.
pub async fn a_column_added_evolves_the_table(backend: Backend) {
    let case = Case::new(backend, "evolve").await;
    let tables = definitions(case.local.path());
    let t = ["--table-name", "shopify_configuration"];
    let days = ["2019-08-01", "2019-08-02", "2019-08-03", "2019-08-04", "2019-08-05"];
    ok(&case, &tables, true, &[&["generate"], &t[..], &["--from", days[0], "--to", days[2], "--rows", "200"]].concat());
    ok(&case, &tables, true, &[&["backfill"], &t[..], &["--from", days[0], "--to", days[2]]].concat());
    let before = rows(&case, &tables, "shopify_configuration", true).await;
    let toml = tables.join("shopify_configuration/table.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("partition_by = \"export_date\"", "partition_by = \"export_date\"\nmissing_columns = \"null\"")
        + "\n[[columns]]\nname = \"loyalty_tier\"\nkind = \"text\"\nsample = { values = [\"gold\"], empty = 0.5 }\n";
    std::fs::write(&toml, text).unwrap();
    ok(&case, &tables, true, &[&["generate"], &t[..], &["--from", days[3], "--to", days[4], "--rows", "200"]].concat());
    let (code, fourth) = report_of(run(&case, &tables, true, &["ingest", "--date", days[3], "--format", "json"]));
    assert_eq!(code, 0, "{fourth}");
    assert_eq!(fourth["added_columns"], serde_json::json!(["loyalty_tier"]));
    let after = rows(&case, &tables, "shopify_configuration", true).await;
    for day in &days[..3] {
        assert_eq!(after.files[*day], before.files[*day], "{day}: no file rewritten");
    }
    // The load that added the column wrote its values.
    let valued = after.rows[days[3]].values().filter(|row| row.iter().any(|v| v == "loyalty_tier=gold")).count();
    assert!(valued > 0, "{} has no loyalty_tier", days[3]);
    let (code, rerun) = report_of(run(&case, &tables, true, &["ingest", "--date", days[1], "--format", "json"]));
    assert_eq!((code, rerun["status"].as_str()), (0, Some("unchanged")), "the old export: {rerun}");
    let version = fourth["table_version"].as_i64().unwrap();
    for v in 0..=version {
        let v = v.to_string();
        ok(&case, &tables, true, &["query", "--as-of", &v, "--sql", "SELECT count(*) FROM shopify_configuration"]);
    }
}

/// An identical re-run on S3 reads the log but never the export, lists the
/// table's log once (one open of the table per command) and the rejects
/// table's not at all.
pub async fn an_identical_rerun_downloads_nothing(backend: Backend) {
    let case = Case::new(backend, "rerun").await;
    case.generate(DAYS[0], DAYS[0], 500, &["--dirty"]);
    assert_eq!(case.ingest(DAYS[0]).0, 0);
    let proxy = Proxy::start(&case.service.endpoint).await;
    let out = case
        .command(&["ingest", "--date", DAYS[0], "--format", "json"])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .output()
        .unwrap();
    let (code, report) = report_of(out);
    assert_eq!((code, report["status"].as_str()), (0, Some("unchanged")), "{report}");
    let requests = proxy.requests();
    let export = format!("{}/{}.csv", case.prefix, DAYS[0]);
    assert!(
        !requests.iter().any(|r| r.method == "GET" && r.path.ends_with(&export)),
        "the export was downloaded: {requests:#?}"
    );
    assert!(requests.iter().all(|r| r.method == "GET" || r.method == "HEAD"), "a re-run writes nothing: {requests:#?}");
    let log_listings = requests
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.contains("list-type=2") && r.path.contains("shopify_configuration%2F_delta_log")
        })
        .count();
    assert_eq!(log_listings, 1, "the table's log is listed once: {requests:#?}");
    // The rejects table is not opened: two HEADs say its recorded version is still its latest.
    let rejects_listings =
        requests.iter().filter(|r| r.path.contains("list-type=2") && r.path.contains("_rejects%2F_delta_log")).count();
    assert_eq!(rejects_listings, 0, "the rejects table's log is not listed: {requests:#?}");
    assert_commits_read_once("identical re-run", &requests);
    assert!(requests.len() <= 20, "{} requests: {requests:#?}", requests.len());
}

/// Issue #30's request budgets, counted through the proxy (requests are
/// deterministic, times are not): a first load (the table and its rejects
/// table created, both committed), a new day and a corrected re-load list
/// each log once (the command keeps the listing and its own commits,
/// `shoplake::storage::log_cache`); `history` and a query of one table list
/// one log once; no command downloads a commit file twice. The S3 table
/// ends as the same loads leave the local one.
pub async fn every_command_keeps_its_request_budget(backend: Backend) {
    let case = Case::new(backend, "budget").await;
    case.generate(DAYS[0], DAYS[1], 500, &["--dirty"]);
    let proxy = Proxy::start(&case.service.endpoint).await;
    let run = |args: &[&str]| {
        proxy.clear();
        let out = case.command(args).env("AWS_ENDPOINT_URL", &proxy.endpoint).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), proxy.requests())
    };
    let local = |args: &[&str]| assert!(case.local_shoplake(args).status.success(), "local {args:?}");
    let loads: [(&str, &[&str], u64); 3] = [
        ("first load", &["--date", DAYS[0]], 2),
        ("a new day", &["--date", DAYS[1]], 2),
        ("corrected re-load", &["--date", DAYS[0], "--max-delete-ratio", "1"], 2),
    ];
    for (i, (what, args, budget)) in loads.into_iter().enumerate() {
        if i == 2 {
            // A shorter export of the same seed: rows go, the rest stay.
            case.generate(DAYS[0], DAYS[0], 450, &["--dirty"]);
        }
        let ingest = [&["ingest", "--format", "json"][..], args].concat();
        let (stdout, requests) = run(&ingest);
        local(&ingest);
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["status"], "committed", "{what}: {report}");
        if i == 0 {
            assert!(
                report["rows_rejected"].as_u64().unwrap() > 0,
                "{what}: the rejects table is written too: {report}"
            );
        }
        let listings = log_listings(&requests);
        assert!(listings.values().all(|n| *n == 1), "{what}: each log listed once: {listings:?}");
        assert!(listings.len() as u64 <= budget, "{what}: {listings:?}");
        assert_commits_read_once(what, &requests);
    }
    assert_eq!(case.snapshot().await.rows, case.local_snapshot().await.rows, "the S3 table is the local one");
    let count = "SELECT count(*) FROM shopify_configuration";
    for args in [&["history"][..], &["query", "--sql", count][..]] {
        let (_, requests) = run(args);
        let listings = log_listings(&requests);
        assert_eq!(listings.values().sum::<usize>(), 1, "{args:?}: one listing of one log: {listings:?}");
        assert_commits_read_once(&format!("{args:?}"), &requests);
    }
}

/// Listings of a Delta log, by the log's prefix.
fn log_listings(requests: &[crate::proxy::Seen]) -> std::collections::BTreeMap<String, usize> {
    let mut listings = std::collections::BTreeMap::new();
    for request in requests.iter().filter(|r| r.method == "GET" && r.path.contains("list-type=2")) {
        let prefix = request.path.split(['?', '&']).find_map(|p| p.strip_prefix("prefix=")).unwrap_or_default();
        if prefix.contains("_delta_log") {
            *listings.entry(prefix.to_string()).or_default() += 1;
        }
    }
    listings
}

fn assert_commits_read_once(what: &str, requests: &[crate::proxy::Seen]) {
    let mut reads = std::collections::BTreeMap::<&str, usize>::new();
    for request in requests.iter().filter(|r| r.method == "GET" && r.path.contains("/_delta_log/")) {
        if request.path.ends_with(".json") {
            *reads.entry(request.path.as_str()).or_default() += 1;
        }
    }
    assert!(reads.values().all(|n| *n == 1), "{what}: a commit file downloaded twice: {reads:?}");
}
