//! Value conventions declared per column (issue #28, item 3), on an export
//! shaped like Shopify's customers export: header texts, IDs as GIDs, ZIP
//! codes behind an apostrophe, `yes`/`no` and `TRUE`/`FALSE` flags,
//! timestamps with an offset, `N/A` for missing. Beside each: a value
//! without the prefix is read as it is, a spelling not declared and a
//! timestamp without its offset are rejected; `generate` writes what the
//! conventions read; `validate` refuses options on the wrong kind.

use crate::lake::Lake;

const DATE: &str = "2026-05-01";

const CUSTOMERS_TOML: &str = r#"
name = "customers"
key = ["customer_id", "export_date"]
partition_by = "export_date"
unknown_columns = "ignore"

[[columns]]
name = "customer_id"
header = "Customer ID"
kind = "text"
nullable = false
strip_prefix = "gid://shopify/Customer/"
sample = { format = "uuid", stable = true }

[[columns]]
name = "zip"
header = "Default Address Zip"
kind = "text"
strip_prefix = "'"

[[columns]]
name = "accepts_marketing"
header = "Accepts Email Marketing"
kind = "flag"
true_values = ["yes"]
false_values = ["no"]

[[columns]]
name = "tax_exempt"
header = "Tax Exempt"
kind = "flag"
true_values = ["TRUE"]
false_values = ["FALSE"]

[[columns]]
name = "created_at"
header = "Created At"
kind = "timestamp"
timestamp_format = "%Y-%m-%d %H:%M:%S %z"

[[columns]]
name = "total_spent"
header = "Total Spent"
kind = "decimal"
precision = 12
scale = 2
null_values = ["N/A"]

[[columns]]
name = "export_date"
kind = "file_date"
in_export = false
"#;

const EXPORT: &str = "\
Customer ID,First Name,Default Address Zip,Accepts Email Marketing,Tax Exempt,Created At,Total Spent
gid://shopify/Customer/101,Ann,'75008,yes,FALSE,2026-05-01 10:00:00 +0200,12.50
gid://shopify/Customer/102,Bob,'02134,no,TRUE,2026-05-01 23:30:00 -0400,N/A
103,Cy,75008,Yes,false,2026-05-02 08:00:00 +0000,0.00
gid://shopify/Customer/104,Di,'1,maybe,FALSE,2026-05-01 10:00:00 +0200,1.00
gid://shopify/Customer/105,Ed,'1,no,FALSE,2026-05-01 10:00:00,1.00
";

fn lake() -> Lake {
    let lake = Lake::new();
    lake.define("customers", CUSTOMERS_TOML, None, None);
    lake
}

fn epoch(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

#[test]
fn each_column_is_read_by_its_declared_conventions() {
    let lake = lake();
    std::fs::create_dir_all(lake.raw()).unwrap();
    std::fs::write(lake.raw().join(format!("{DATE}.csv")), EXPORT).unwrap();
    let (code, report) = lake.ingest("customers", DATE, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!((report["rows_valid"].as_u64(), report["rows_rejected"].as_u64()), (Some(3), Some(2)), "{report}");
    assert_eq!(report["ignored_columns"], serde_json::json!(["First Name"]), "{report}");
    let sql = "SELECT customer_id, zip, accepts_marketing, tax_exempt, \
               CAST(extract(epoch FROM created_at) AS BIGINT) AS created, CAST(total_spent AS VARCHAR) AS spent \
               FROM customers ORDER BY customer_id";
    let rows = lake.query("customers", sql, None);
    let got: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!([
                r["customer_id"],
                r["zip"],
                r["accepts_marketing"],
                r["tax_exempt"],
                r["created"],
                r["spent"]
            ])
        })
        .collect();
    assert_eq!(
        got,
        [
            serde_json::json!(["101", "75008", true, false, epoch("2026-05-01T08:00:00Z"), "12.50"]),
            serde_json::json!(["102", "02134", false, true, epoch("2026-05-02T03:30:00Z"), null]),
            // Without the prefix a value is read as it is; spellings in any case.
            serde_json::json!(["103", "75008", true, false, epoch("2026-05-02T08:00:00Z"), "0.00"]),
        ]
    );
    let rejects = lake.query("customers", "SELECT line, reason FROM customers_rejects ORDER BY line", None);
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["line"], 5);
    assert!(rejects[0]["reason"].as_str().unwrap().contains("'maybe' is not a boolean (yes or no)"), "{rejects:?}");
    assert_eq!(rejects[1]["line"], 6);
    assert!(rejects[1]["reason"].as_str().unwrap().contains("is not a timestamp written %Y-%m-%d %H:%M:%S %z"));
}

#[test]
fn generate_writes_what_the_conventions_read() {
    let lake = lake();
    lake.generate("customers", DATE, DATE, 300, &[]);
    let text = std::fs::read_to_string(lake.export("customers", DATE)).unwrap();
    let first = text.lines().nth(1).unwrap();
    assert!(first.starts_with("gid://shopify/Customer/"), "{first}");
    assert!(first.contains(",yes,") || first.contains(",no,"), "{first}");
    let (code, report) = lake.ingest("customers", DATE, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_rejected"], 0, "{report}");
    assert_eq!(report["rows_valid"], report["rows_read"], "{report}");
    let prefixed = lake.count("customers", "SELECT count(*) FROM customers WHERE customer_id LIKE 'gid:%'");
    assert_eq!(prefixed, 0, "the prefix is stripped");
}

#[test]
fn validate_refuses_conventions_on_the_wrong_kind_or_that_cannot_read_back() {
    for (change, needle) in [
        (
            (
                "kind = \"text\"\nstrip_prefix = \"'\"",
                "kind = \"text\"\nstrip_prefix = \"'\"\ntrue_values = [\"y\"]\nfalse_values = [\"n\"]",
            ),
            "spellings are for flag columns",
        ),
        (
            ("true_values = [\"yes\"]", "true_values = [\"yes\"]\nnull_values = [\"\"]"),
            "the empty field is always missing",
        ),
        (("false_values = [\"no\"]", "false_values = [\"YES\"]"), "\"yes\" is in true_values too"),
        (("false_values = [\"no\"]", "false_values = []"), "declare both true_values and false_values"),
        (("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S"), "does not read back an instant it writes"),
        (("%Y-%m-%d %H:%M:%S %z\"", "%Y-%m-%d %H:%M:%S %z\"\ntime_zone = \"Europe/Paris\""), "carries its offset"),
        (("in_export = false", "in_export = false\nstrip_prefix = \"x\""), "is for a column read from the export"),
    ] {
        let lake = Lake::new();
        lake.define("customers", &CUSTOMERS_TOML.replacen(change.0, change.1, 1), None, None);
        let out = lake.run(&["validate"]);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{needle}: {said}");
        assert!(said.contains(needle), "`{needle}` not in: {said}");
    }
    let lake = lake();
    assert_eq!(lake.run(&["validate"]).status.code(), Some(0), "the base case is valid");
}
