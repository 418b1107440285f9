//! Every table is a declared definition (issue #15): the guarantees of a
//! load hold for each built-in table and for one a test declares at run
//! time (no rebuild), `shoplake validate` catches each mistake a definition
//! can hold, and several tables load side by side.

use crate::exported::Export;
use crate::lake::Lake;

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";

/// A definition no build knows: written by the test, in a folder per date,
/// with header texts that are not its column names (one holding a comma).
pub const ORDERS_TOML: &str = r#"
name = "orders_daily"
description = "Orders placed per day (declared by a test at run time)."
key = ["order_id", "order_date"]
partition_by = "order_date"
source_pattern = "orders/{date}/orders.csv"

[properties]
"delta.enableChangeDataFeed" = "true"

[[columns]]
name = "order_id"
header = "Order ID"
kind = "text"
nullable = false
sample = { format = "uuid", stable = true }

[[columns]]
name = "order_date"
kind = "file_date"

[[columns]]
name = "amount"
header = "Amount, EUR"
kind = "decimal"
precision = 10
scale = 2
sample = { min = 1, max = 500 }

[[columns]]
name = "items"
kind = "count"
sample = { min = 1, max = 9 }

[[columns]]
name = "placed_at"
header = "Placed at (Paris)"
kind = "timestamp"
time_zone = "Europe/Paris"

[[columns]]
name = "tags"
kind = "text_list"

[[columns]]
name = "amount_per_item"
kind = "derived"
type = "decimal(10,2)"
"#;

pub const ORDERS_SQL: &str =
    "SELECT *, CAST(amount / CAST(items AS DECIMAL(10, 0)) AS DECIMAL(10, 2)) AS amount_per_item FROM export";

pub const ORDERS_CHECKS: &str = r#"
[[checks]]
name = "amount_not_negative"
kind = "sql"
severity = "fail"
sql = "SELECT order_id FROM day WHERE amount < 0"
"#;

/// A lake with the repository's definitions and `orders_daily`.
pub fn lake_with_orders() -> Lake {
    let lake = Lake::new();
    lake.define("orders_daily", ORDERS_TOML, Some(ORDERS_SQL), Some(ORDERS_CHECKS));
    lake
}

/// What PRODUCT.md promises of a load, checked on table `name` (any
/// definition: its export edited record by record, `crate::exported`).
fn guarantees(lake: &Lake, name: &str) {
    let def = lake.definition(name);
    let key = def.day_key().to_string();
    let key_in_export = def.column(&key).unwrap().is_from_export();
    lake.generate(name, D1, D2, 1500, &["--dirty"]);
    let original = Export::read(lake, name, D1);

    // A first load: every record in one bucket, the rows and the rejects paired.
    let (code, first) = lake.ingest(name, D1, &[]);
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["status"], "committed");
    assert_eq!(first["table_name"], name);
    let buckets = |report: &serde_json::Value| -> u64 {
        ["rows_filtered", "rows_rejected", "rows_duplicate", "rows_suppressed", "rows_other_type", "rows_valid"]
            .iter()
            .map(|b| report[b].as_u64().unwrap())
            .sum()
    };
    assert_eq!(buckets(&first), first["rows_read"].as_u64().unwrap(), "{first}");
    assert_eq!(first["rows_read"].as_u64().unwrap(), original.records.len() as u64, "a record a row read");
    let other_type = original.records.iter().filter(|r| original.of_another_type(r)).count() as u64;
    assert_eq!(first["rows_other_type"].as_u64().unwrap(), other_type, "another table's lines: {first}");
    assert!(first["rows_rejected"].as_u64().unwrap() > 0, "--dirty makes rejects: {first}");
    let rows =
        |date: &str| lake.count(name, &format!("SELECT count(*) FROM {name} WHERE {} = '{date}'", def.partition_by));
    assert_eq!(rows(D1), first["rows_valid"].as_i64().unwrap());
    let rejects = lake.count(name, &format!("SELECT count(*) FROM {name}_rejects WHERE export_date = '{D1}'"));
    assert_eq!(rejects, first["rows_rejected"].as_i64().unwrap(), "the rejects go with the version");
    let v1 = lake.version(name);

    // The same file again: nothing changes, no version.
    let (code, again) = lake.ingest(name, D1, &[]);
    assert_eq!((code, again["status"].as_str()), (0, Some("unchanged")), "{again}");
    assert_eq!(again["files_added"], 0);
    assert_eq!(lake.version(name), v1);

    // A dry run writes nothing.
    let (code, dry) = lake.ingest(name, D2, &["--dry-run"]);
    assert_eq!((code, dry["status"].as_str()), (0, Some("dry_run")), "{dry}");
    assert_eq!(lake.version(name), v1);
    let (code, second) = lake.ingest(name, D2, &[]);
    assert_eq!((code, second["status"].as_str()), (0, Some("committed")), "{second}");
    let d2_files = lake.snapshot(name).files[D2].clone();

    // A corrected re-export without five keys: exactly five deletes, other
    // dates' files untouched. (A key transform.sql derives is not in a
    // record to remove it by: tests/local/groups.rs re-exports grouped rows.)
    if key_in_export {
        let gone: Vec<String> = lake
            .query(
                name,
                &format!("SELECT {key} FROM {name} WHERE {} = '{D1}' ORDER BY {key} LIMIT 5", def.partition_by),
                None,
            )
            .iter()
            .map(|r| r[&key].as_str().unwrap().to_string())
            .collect();
        let mut corrected_export = Export::read(lake, name, D1);
        let kept: Vec<Vec<u8>> = corrected_export
            .records
            .iter()
            .filter(|r| !(corrected_export.own(r) && corrected_export.key(r).is_some_and(|k| gone.contains(&k))))
            .cloned()
            .collect();
        corrected_export.records = kept;
        corrected_export.write();
        let (code, corrected) = lake.ingest(name, D1, &[]);
        assert_eq!(code, 0, "{corrected}");
        assert_eq!(
            (&corrected["rows_inserted"], &corrected["rows_updated"], &corrected["rows_deleted"]),
            (&0.into(), &0.into(), &5.into()),
            "{corrected}"
        );
        assert_eq!(lake.snapshot(name).files[D2], d2_files, "another date's files are not rewritten");
    }

    // Guards: an export without rows would empty the date (exit 4, nothing
    // written): a CSV header alone, an empty JSONL file.
    let mut empty_export = Export::read(lake, name, D1);
    empty_export.records.clear();
    empty_export.write();
    let before = lake.version(name);
    let (code, empty) = lake.ingest(name, D1, &[]);
    assert_eq!(code, 4, "{empty}");
    assert_eq!(lake.version(name), before);

    // A header the definition does not know: exit 4, named, nothing written.
    if let Some(header) = &original.header {
        let mut odd = Export::read(lake, name, D1);
        odd.header = Some([header.as_slice(), b",surprise"].concat());
        odd.records = original.records.iter().map(|r| [r.as_slice(), b",x"].concat()).collect();
        odd.write();
        let out = lake.run(&["ingest", "--table-name", name, "--date", D1]);
        assert_eq!(out.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected columns: surprise"));
        assert_eq!(lake.version(name), before);
    }

    // No export for a date: exit 3 (retry later).
    assert_eq!(lake.run(&["ingest", "--table-name", name, "--date", "2019-05-01"]).status.code(), Some(3));

    // Audits: history names the loads, restore gives back the first version's rows.
    let loaded: Vec<String> =
        lake.history(name).iter().filter_map(|h| h["export_date"].as_str().map(str::to_string)).collect();
    assert!(loaded.contains(&D1.to_string()) && loaded.contains(&D2.to_string()), "{loaded:?}");
    let v1_text = v1.to_string();
    let changes = lake.ok(&[
        "changes",
        "--table-name",
        name,
        "--from-version",
        &v1_text,
        "--to-version",
        &v1_text,
        "--format",
        "json",
    ]);
    assert_eq!(crate::common::json_lines(changes.as_bytes()).len() as i64, first["rows_valid"].as_i64().unwrap());
    lake.ok(&["restore", "--table-name", name, "--version", &v1.to_string()]);
    assert_eq!(rows(D1), first["rows_valid"].as_i64().unwrap());
    assert_eq!(rows(D2), 0, "version {v1} did not have the second date");

    // Erasure (issue #27): a key leaves the table, and a re-load of the
    // date (the export as first generated) keeps it out, counted suppressed.
    // The raw exports too, when their records hold the key; a derived key's
    // --exports is refused (exit 2) before anything is erased.
    original.write();
    let erased = lake.query(name, &format!("SELECT {key} FROM {name} ORDER BY {key} LIMIT 1"), None)[0][&key]
        .as_str()
        .unwrap()
        .to_string();
    let holding = |k: &str| lake.count(name, &format!("SELECT count(*) FROM {name} WHERE {key} = '{k}'"));
    assert!(holding(&erased) > 0);
    let erase = ["erase", "--table-name", name, "--key", &erased, "--reason", "guarantees", "--purge"];
    if !key_in_export {
        let refused = lake.run(&[&erase[..], &["--exports"]].concat());
        assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(&format!("{key} is derived by {name}'s transform.sql: erase the table")), "{said}");
        assert!(holding(&erased) > 0, "nothing erased by a refused erasure");
    }
    lake.ok(&[&erase[..], if key_in_export { &["--exports"][..] } else { &[][..] }].concat());
    assert_eq!(holding(&erased), 0, "{erased} is erased from {name}");
    assert_eq!(rows(D1), first["rows_valid"].as_i64().unwrap() - 1);
    // Purged from every version and object, and from the raw export (read through its conventions).
    let verify = lake.run(&["erase", "--verify", "--table-name", name, "--key", &erased]);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
    if key_in_export {
        let export = Export::read(lake, name, D1);
        let keys: Vec<String> = export.records.iter().filter(|r| export.own(r)).filter_map(|r| export.key(r)).collect();
        assert!(!keys.contains(&erased), "{erased} left {name}'s export");
        assert!(keys.len() > 2, "the other keys are untouched");
    }
    lake.generate(name, D1, D2, 1500, &["--dirty"]);
    let (code, reloaded) = lake.ingest(name, D1, &[]);
    assert_eq!(code, 0, "{reloaded}");
    assert!(reloaded["rows_suppressed"].as_u64() >= Some(1), "{reloaded}");
    assert_eq!(buckets(&reloaded), reloaded["rows_read"].as_u64().unwrap(), "{reloaded}");
    assert_eq!(holding(&erased), 0, "a re-load does not bring {erased} back");
}

/// One test per built-in definition, and one declared at run time.
macro_rules! guarantees_hold_for {
    ($($table:ident),* $(,)?) => {
        mod the_guarantees_hold_for {
            $(
                #[test]
                fn $table() {
                    super::guarantees(&crate::lake::Lake::new(), stringify!($table));
                }
            )*
        }
    };
}

guarantees_hold_for!(
    shopify_configuration,
    shopify_usage_daily,
    shopify_products,
    shopify_customers,
    shopify_bulk_products,
    shopify_bulk_variants,
);

#[test]
fn the_guarantees_hold_for_a_table_declared_at_run_time() {
    let lake = lake_with_orders();
    assert!(lake.ok(&["tables"]).contains("orders/{date}/orders.csv"), "listed with its source pattern");
    guarantees(&lake, "orders_daily");
    let order = &lake.query("orders_daily", "SELECT * FROM orders_daily ORDER BY order_id LIMIT 1", None)[0];
    assert!(order["placed_at"].as_str().unwrap().ends_with('Z'), "stored as UTC: {order}");
    assert!(order["amount"].is_string() || order["amount"].is_number(), "{order}");
}

/// A column is found in the export by its header text (`header`), never
/// by its name when the two differ: the export that writes the name
/// instead is refused, both named, and the table is left as it was.
#[test]
fn a_column_is_read_by_its_header_text_and_not_by_its_name() {
    let lake = lake_with_orders();
    lake.generate("orders_daily", D1, D1, 20, &[]);
    let export = lake.export("orders_daily", D1);
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.starts_with("Order ID,order_date,\"Amount, EUR\""), "generate writes the header texts: {text}");
    std::fs::write(&export, text.replacen("Order ID", "order_id", 1)).unwrap();
    let out = lake.run(&["ingest", "--table-name", "orders_daily", "--date", D1]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("missing columns: Order ID (column order_id)"), "{stderr}");
    assert!(stderr.contains("unexpected columns: order_id"), "{stderr}");
    assert!(!lake.table("orders_daily").exists(), "nothing written");
    std::fs::write(&export, text).unwrap();
    let (code, report) = lake.ingest("orders_daily", D1, &[]);
    assert_eq!(code, 0, "{report}");
    let rows = lake.query("orders_daily", "SELECT count(*) AS n, count(amount) AS amounts FROM orders_daily", None);
    assert_eq!(
        (rows[0]["n"].clone(), rows[0]["amounts"].clone()),
        (report["rows_valid"].clone(), report["rows_valid"].clone())
    );
}

#[test]
fn every_table_loads_at_once_and_one_failure_stops_no_other() {
    let lake = lake_with_orders();
    lake.ok(&["generate", "--all-tables", "--from", D1, "--to", D1, "--rows", "200"]);
    // The usage export is missing: exit 3 for it, the others load.
    std::fs::remove_file(lake.export("shopify_usage_daily", D1)).unwrap();
    let out = lake.run(&["ingest", "--all-tables", "--date", D1, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status: Vec<(String, String)> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table_name"].as_str().unwrap().to_string(), t["status"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = status
        .iter()
        .map(|(name, _)| (name.clone(), if name == "shopify_usage_daily" { "failed" } else { "committed" }.to_string()))
        .collect();
    assert_eq!(status, expected);
    assert_eq!(status.len(), 7, "the six built-in tables and orders_daily: {status:?}");
    // A broken definition beside them: exit 2 outranks 3, the valid ones still load (no change).
    lake.edit("orders_daily", |t| t.replace("kind = \"count\"", "kind = \"counter\""));
    let out = lake.run(&["ingest", "--all-tables", "--date", D1, "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["tables"][1]["status"], "unchanged", "{report}");
    // --table names one table: not with --all-tables.
    let out = lake.run(&["ingest", "--all-tables", "--date", D1, "--table", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn query_joins_the_tables_and_as_of_applies_to_the_one_named() {
    let lake = Lake::new();
    for name in ["shopify_configuration", "shopify_usage_daily"] {
        lake.generate(name, D1, D2, 100, &[]);
        lake.ingest(name, D1, &[]);
    }
    let sql = "SELECT count(*) AS n FROM shopify_configuration c JOIN shopify_usage_daily u \
               ON u.shop_id = c.id AND u.usage_date = c.export_date";
    let joined = lake.query("shopify_configuration", sql, None)[0]["n"].as_i64().unwrap();
    assert!(joined > 90, "the generated shops have usage rows: {joined}");
    lake.ingest("shopify_usage_daily", D2, &[]);
    let count = "SELECT count(*) AS n FROM shopify_usage_daily";
    let latest = lake.query("shopify_configuration", count, None)[0]["n"].as_i64().unwrap();
    let as_of = lake.query("shopify_configuration", count, Some("shopify_usage_daily=1"))[0]["n"].as_i64().unwrap();
    assert!(latest > as_of && as_of > 0, "{latest} {as_of}");
    let unknown = lake.run(&["query", "--sql", "SELECT 1", "--table-name", "shopify_config"]);
    assert_eq!(unknown.status.code(), Some(2));
    let known = "known: shopify_bulk_products, shopify_bulk_variants, shopify_configuration, shopify_customers, \
                 shopify_products, shopify_usage_daily";
    assert!(String::from_utf8_lossy(&unknown.stderr).contains(known), "{}", String::from_utf8_lossy(&unknown.stderr));
}

/// A newcomer loads only a new table: queries of it work; one that names a
/// table not loaded yet (or its rejects) says so, exit 2; one that names no
/// table at all runs. Beside it: once loaded, the same query works.
#[test]
fn a_query_leaves_out_the_tables_not_loaded_yet_and_names_them_when_asked() {
    let lake = Lake::new();
    lake.generate("shopify_usage_daily", D1, D1, 40, &[]);
    lake.ingest("shopify_usage_daily", D1, &[]);
    let count = "SELECT count(*) AS n FROM shopify_usage_daily";
    let rows = lake.query("shopify_configuration", count, None)[0]["n"].as_i64().unwrap();
    assert!(rows > 0, "the loaded table is queried: {rows}");
    assert_eq!(lake.query("shopify_configuration", "SELECT 1 AS one", None)[0]["one"], 1);
    // `*=` a time covers the loaded tables only.
    let now = chrono::Utc::now().to_rfc3339();
    let at = lake.run(&["query", "--format", "json", "--as-of", &format!("*={now}"), "--sql", count]);
    assert_eq!(at.status.code(), Some(0), "{}", String::from_utf8_lossy(&at.stderr));
    for sql in [
        "SELECT count(*) FROM shopify_configuration",
        "SELECT count(*) FROM shopify_configuration_rejects",
        "WITH c AS (SELECT id FROM shopify_configuration) SELECT count(*) FROM c JOIN shopify_usage_daily u ON u.shop_id = c.id",
    ] {
        let out = lake.run(&["query", "--sql", sql]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sql}: {stderr}");
        assert!(stderr.contains("shopify_configuration") && stderr.contains("is not loaded yet"), "{sql}: {stderr}");
    }
    // A table named with --as-of must exist.
    let out = lake.run(&["query", "--as-of", "shopify_configuration=0", "--sql", count]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    lake.generate("shopify_configuration", D1, D1, 40, &[]);
    let (_, report) = lake.ingest("shopify_configuration", D1, &[]);
    let rows = lake.query("shopify_configuration", "SELECT count(*) AS n FROM shopify_configuration", None);
    assert_eq!(rows[0]["n"], report["rows_valid"], "once loaded, the same query works: {report}");
}

/// A query opens the tables its SQL names, no other (on S3 each open lists
/// a log): a broken table it does not name cannot fail it; one it names does.
#[test]
fn a_query_opens_only_the_tables_it_names() {
    let lake = Lake::new();
    lake.generate("shopify_usage_daily", D1, D1, 40, &[]);
    let (_, report) = lake.ingest("shopify_usage_daily", D1, &[]);
    let log = lake.table("shopify_products").join("_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("00000000000000000000.json"), "not a commit\n").unwrap();
    let count = "SELECT count(*) AS n FROM shopify_usage_daily";
    assert_eq!(lake.query("shopify_usage_daily", count, None)[0]["n"], report["rows_valid"]);
    let rejects = "SELECT count(*) AS n FROM shopify_usage_daily_rejects";
    assert_eq!(lake.query("shopify_usage_daily", rejects, None)[0]["n"], report["rows_rejected"]);
    for sql in ["SELECT count(*) FROM shopify_products", "SELECT count(*) FROM shopify_products_rejects"] {
        let out = lake.run(&["query", "--sql", sql]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{sql}: the broken table is opened when named");
        assert!(stderr.contains("shopify_products"), "{sql}: {stderr}");
    }
}

#[test]
fn a_table_location_holding_other_files_is_refused_and_left_as_it_was() {
    let lake = Lake::new();
    lake.generate("shopify_configuration", D1, D1, 50, &[]);
    // A typo points --table at the exports folder.
    let raw = lake.raw();
    let before: Vec<_> = std::fs::read_dir(&raw).unwrap().map(|e| e.unwrap().file_name()).collect();
    let out = lake.run(&["ingest", "--date", D1, "--table", raw.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds files"));
    let after: Vec<_> = std::fs::read_dir(&raw).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "nothing created among the exports");
    // Beside it: an empty folder is fine.
    let empty = lake.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(lake.run(&["ingest", "--date", D1, "--table", empty.to_str().unwrap()]).status.code(), Some(0));
}

/// One mistake in a definition of its own: `validate` names the file (and
/// key or line) and exits 2; a load of that table is refused before its
/// export is read; the other tables still validate and load.
fn refused(case: &str, table: &str, transform: Option<&str>, checks: Option<&str>, expected: &[&str]) {
    let lake = Lake::new();
    lake.define("broken", table, transform, checks);
    let out = lake.run(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{case}: {stdout}");
    for needle in expected.iter().chain(&["broken/"]) {
        assert!(stdout.contains(needle), "{case}: `{needle}` not in:\n{stdout}");
    }
    let valid = "6 valid (shopify_bulk_products, shopify_bulk_variants, shopify_configuration, shopify_customers, \
                 shopify_products, shopify_usage_daily)";
    assert!(stdout.contains(valid), "{case}: {stdout}");
    let out = lake.run(&["ingest", "--table-name", "broken", "--date", D1]);
    assert_eq!(out.status.code(), Some(2), "{case}: refused before the (missing) export is looked for");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not validate"), "{case}");
}

const GOOD: &str = r#"
name = "broken"
key = ["id", "day"]
partition_by = "day"
[[columns]]
name = "id"
kind = "text"
[[columns]]
name = "day"
kind = "file_date"
[[columns]]
name = "amount"
kind = "count"
"#;

#[test]
fn validate_catches_each_mistake_with_its_file() {
    assert_eq!(Lake::new().run(&["validate"]).status.code(), Some(0), "the built-in definitions are valid");
    let lake = Lake::new();
    lake.define("broken", GOOD, None, None);
    assert_eq!(lake.run(&["validate"]).status.code(), Some(0), "the base of the cases is valid");

    refused(
        "a typo",
        &GOOD.replace("kind = \"count\"", "kind = \"count\"\nnulable = true"),
        None,
        None,
        &["table.toml:14", "unknown field `nulable`"],
    );
    refused("an unknown kind", &GOOD.replace("\"count\"", "\"counter\""), None, None, &["unknown variant `counter`"]);
    refused(
        "two columns with one header text",
        &GOOD.replace("name = \"amount\"", "name = \"amount\"\nheader = \"id\""),
        None,
        None,
        &["columns[2].header: header text \"id\" is column id's too"],
    );
    // Beside it: a column not read from the export may bear the name another's header text has.
    let lake = Lake::new();
    let beside = GOOD
        .replace("name = \"id\"", "name = \"id\"\nheader = \"day\"")
        .replace("name = \"day\"\nkind = \"file_date\"", "name = \"day\"\nkind = \"file_date\"\nin_export = false");
    lake.define("broken", &beside, None, None);
    let out = lake.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    refused(
        "a header text with spaces around it",
        &GOOD.replace("name = \"amount\"", "name = \"amount\"\nheader = \" Amount\""),
        None,
        None,
        &["columns[2].header", "trimmed"],
    );
    refused(
        "a header text on a column not in the export",
        &GOOD.replace("name = \"day\"", "name = \"day\"\nheader = \"Day\"\nin_export = false"),
        None,
        None,
        &["columns[1].header: a column not read from the export has no header text"],
    );
    refused(
        "a key naming a missing column",
        &GOOD.replace("[\"id\", \"day\"]", "[\"shop\", \"day\"]"),
        None,
        None,
        &["key[0]: shop is not a column"],
    );
    refused(
        "a key naming a nullable column",
        &GOOD.replacen("kind = \"text\"", "kind = \"text\"\nnullable = true", 1),
        None,
        None,
        &["columns[0].nullable: key column id cannot be nullable"],
    );
    refused(
        "a partition column that is not the file date",
        &GOOD
            .replace("partition_by = \"day\"", "partition_by = \"amount\"")
            .replace("[\"id\", \"day\"]", "[\"id\", \"amount\"]"),
        None,
        None,
        &["partition_by: the partition column amount must be the file date"],
    );
    refused(
        "SQL naming an unknown column",
        GOOD,
        Some("SELECT *, amont * 2 AS x FROM export"),
        None,
        &["transform.sql", "amont"],
    );
    refused(
        "SQL giving a derived column the wrong type",
        &(GOOD.to_string() + "[[columns]]\nname = \"half\"\nkind = \"derived\"\ntype = \"long\"\n"),
        Some("SELECT *, amount / 2.0 AS half FROM export"),
        None,
        &["transform.sql", "column half is double, the definition declares long"],
    );
    refused(
        "a check naming a missing column",
        GOOD,
        None,
        Some("[[checks]]\nname = \"c\"\nkind = \"null_ratio\"\nseverity = \"warn\"\ncolumn = \"amont\"\nmax_ratio = 0.1\n"),
        &["checks.toml: checks[0]", "amont is not a column"],
    );
    refused(
        "a SQL check that does not plan",
        GOOD,
        None,
        Some("[[checks]]\nname = \"c\"\nkind = \"sql\"\nseverity = \"fail\"\nsql = \"SELECT id FROM days\"\n"),
        &["checks.toml: checks[0]", "does not plan"],
    );
}
