//! Declared PII (issue #27, item 6): `pii = "hash" | "mask" | "drop"` on a
//! column of table.toml; its values never reach the table or the rejects
//! table as read. Hashing is keyed (`SHOPLAKE_PII_KEY`): the same key gives
//! the same value across loads, another key another value. `validate`
//! refuses pii on a key column, a column not text, an erasable one.

use shoplake::erasure::ErasureKey;

use crate::lake::Lake;

const D1: &str = "2026-06-01";
const D2: &str = "2026-06-02";
const KEY: &str = "pii-test-key-0123456789";

const CUSTOMERS_TOML: &str = r#"
name = "customers_daily"
description = "Customers per day, with their personal data declared (a test's definition)."
key = ["customer_id", "day"]
partition_by = "day"
source_pattern = "customers/{date}.csv"

[[columns]]
name = "customer_id"
kind = "text"
nullable = false

[[columns]]
name = "day"
kind = "file_date"
in_export = false

[[columns]]
name = "email"
header = "Email"
kind = "text"
pii = "hash"

[[columns]]
name = "phone"
kind = "text"
pii = "mask"

[[columns]]
name = "full_name"
header = "Name"
kind = "text"
pii = "drop"

[[columns]]
name = "orders"
kind = "count"
"#;

const HEADER: &str = "customer_id,Email,phone,Name,orders";

fn lake() -> Lake {
    let lake = Lake::new();
    lake.define("customers_daily", CUSTOMERS_TOML, None, None);
    lake
}

fn write_export(lake: &Lake, date: &str, lines: &[&str]) {
    let path = lake.raw().join(format!("customers/{date}.csv"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{HEADER}\n{}\n", lines.join("\n"))).unwrap();
}

fn ingest(lake: &Lake, date: &str, pii_key: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoplake"))
        .args(["ingest", "--table-name", "customers_daily", "--date", date, "--format", "json"])
        .args(["--max-reject-ratio", "1"])
        .env("SHOPLAKE_TABLES", lake.tables())
        .env("SHOPLAKE_SOURCE", lake.raw())
        .env("SHOPLAKE_LAKE", lake.lake())
        .env("SHOPLAKE_PII_KEY", pii_key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rows(lake: &Lake, date: &str) -> Vec<serde_json::Value> {
    let sql = format!(
        "SELECT customer_id, email, phone, full_name FROM customers_daily WHERE day = DATE '{date}' ORDER BY customer_id"
    );
    lake.query("customers_daily", &sql, None)
}

#[test]
fn pii_columns_are_hashed_masked_or_dropped_in_the_table_and_in_rejected_lines() {
    let lake = lake();
    let lines = [
        "c1,ann@example.com,+1 555 0100,Ann Lee,3",
        "c2,bob@example.com,+1 555 0199,\"Bob, Jr.\",x", // rejected: orders is not a count
        "c3,ann@example.com,,,1",
        "c4,\"unclosed@example.com,+1 555 0142,Cy,2", // rejected: does not split
    ];
    write_export(&lake, D1, &lines);
    // Without the key a hashed column cannot be written: refused (exit 2), nothing written.
    let keyless = lake.run(&["ingest", "--table-name", "customers_daily", "--date", D1]);
    assert_eq!(keyless.status.code(), Some(2), "{}", String::from_utf8_lossy(&keyless.stderr));
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("SHOPLAKE_PII_KEY"));
    assert!(!lake.table("customers_daily").join("_delta_log").exists());

    let report = ingest(&lake, D1, KEY);
    assert_eq!((report["rows_valid"].as_u64(), report["rows_rejected"].as_u64()), (Some(2), Some(2)), "{report}");
    let key = ErasureKey::new(KEY.as_bytes()).unwrap();
    let table = rows(&lake, D1);
    assert_eq!(table[0]["email"], key.hash("ann@example.com").as_str());
    assert_eq!(table[1]["email"], table[0]["email"], "one person, one value: counts and joins still work");
    assert_eq!(table[0]["phone"], "*******0100");
    assert!(table[1]["phone"].is_null(), "an empty value stays empty");
    assert!(table.iter().all(|row| row["full_name"].is_null()), "dropped: {table:?}");

    // The rejects table: the split line keeps its other fields, the other is withheld.
    let rejected = lake.query("customers_daily", "SELECT line, raw FROM customers_daily_rejects ORDER BY line", None);
    let raws: Vec<&str> = rejected.iter().map(|r| r["raw"].as_str().unwrap()).collect();
    assert_eq!(raws[0], format!("c2,{},*******0199,,x", key.hash("bob@example.com")));
    assert!(raws[1].starts_with("<withheld"), "{raws:?}");
    // Nothing anywhere under the table or its rejects holds a value as read.
    for value in ["ann@example.com", "bob@example.com", "Ann Lee", "+1 555 0100", "unclosed@example.com", "Cy"] {
        let out = lake.run(&["erase", "--verify", "--table-name", "customers_daily", "--key", value]);
        assert_eq!(out.status.code(), Some(0), "{value}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // The check can fail: a value kept as read (a customer id) is found.
    let out = lake.run(&["erase", "--verify", "--table-name", "customers_daily", "--key", "c2"]);
    assert_eq!(out.status.code(), Some(4), "c2's rejected line keeps its id");

    // The same key on another day: the same value. Another key: another value.
    write_export(&lake, D2, &["c1,ann@example.com,+1 555 0100,Ann Lee,4"]);
    ingest(&lake, D2, KEY);
    assert_eq!(rows(&lake, D2)[0]["email"], table[0]["email"]);
    ingest(&lake, D2, "another-pii-key-9876543210");
    let other = ErasureKey::new(b"another-pii-key-9876543210").unwrap().hash("ann@example.com");
    assert_eq!(rows(&lake, D2)[0]["email"], other.as_str(), "a re-run with another key is not a repeat");
}

#[test]
fn validate_refuses_pii_where_it_cannot_hold() {
    for (what, change, expected) in [
        (
            "a key column",
            ("name = \"customer_id\"\nkind = \"text\"", "name = \"customer_id\"\nkind = \"text\"\npii = \"hash\""),
            "a key or partition column cannot be pii",
        ),
        (
            "a count",
            ("name = \"orders\"\nkind = \"count\"", "name = \"orders\"\nkind = \"count\"\npii = \"mask\""),
            "only a text column can be pii",
        ),
        ("an erasable column", ("pii = \"mask\"", "pii = \"mask\"\nerasable = true"), "a pii column is not erasable"),
        ("a required column dropped", ("pii = \"drop\"", "pii = \"drop\"\nnullable = false"), "must be nullable"),
        ("an unknown rule", ("pii = \"mask\"", "pii = \"blur\""), "unknown variant `blur`"),
    ] {
        let lake = Lake::new();
        lake.define("customers_daily", &CUSTOMERS_TOML.replace(change.0, change.1), None, None);
        let out = lake.run(&["validate"]);
        assert_eq!(out.status.code(), Some(2), "{what}");
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(expected) && said.contains("customers_daily"), "{what}: {said}");
    }
    // Beside them: the definition as written is valid.
    assert_eq!(lake().run(&["validate"]).status.code(), Some(0));
}
