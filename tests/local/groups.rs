//! Grouped rows (issue #28, item 4): Shopify's Products export has one row
//! per variant and the product's own fields only on the group's first row.
//! `group_by` names the group's column and `fill_down` columns take its
//! first row's value; a key spanning the group is a derived column. The
//! case beside each: a row with its own value keeps it, a group whose first
//! row lacks a required value is rejected row by row, a group split by
//! another group's rows still fills from its first row.

use crate::lake::Lake;

const D1: &str = "2026-07-01";

const PRODUCTS_TOML: &str = r#"
name = "products_daily"
description = "Shopify's Products export: a row per variant (a test's definition)."
key = ["variant_key", "day"]
partition_by = "day"
source_pattern = "products/{date}.csv"
records = "quoted"
group_by = "handle"

[[columns]]
name = "handle"
header = "Handle"
kind = "text"
nullable = false

[[columns]]
name = "day"
kind = "file_date"
in_export = false

[[columns]]
name = "title"
header = "Title"
kind = "text"
nullable = false
fill_down = true

[[columns]]
name = "body_html"
header = "Body (HTML)"
kind = "text"
fill_down = true

[[columns]]
name = "variant_sku"
header = "Variant SKU"
kind = "text"
strip_prefix = "'"

[[columns]]
name = "variant_key"
kind = "derived"
type = "string"
"#;

const PRODUCTS_SQL: &str = "SELECT *, handle || '/' || COALESCE(variant_sku, '') AS variant_key FROM export";

fn lake() -> Lake {
    let lake = Lake::new();
    lake.define("products_daily", PRODUCTS_TOML, Some(PRODUCTS_SQL), None);
    lake
}

fn write(lake: &Lake, text: &str) {
    let path = lake.raw().join(format!("products/{D1}.csv"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn rows(lake: &Lake) -> Vec<(String, String, String)> {
    lake.query("products_daily", "SELECT variant_key, title, body_html FROM products_daily ORDER BY variant_key", None)
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("<null>").to_string();
            (text("variant_key"), text("title"), text("body_html"))
        })
        .collect()
}

#[test]
fn a_groups_later_rows_take_its_first_rows_fields() {
    let lake = lake();
    write(
        &lake,
        "Handle,Title,Body (HTML),Variant SKU\n\
         mug,Mug,\"<p>A mug.\n<b>Big</b></p>\",'M-1\n\
         mug,,,'M-2\n\
         hat,Hat,<p>Hat</p>,'H-1\n\
         mug,,,'M-3\n\
         hat,Cap,,'H-2\n\
         box,,,'B-1\n",
    );
    let (code, report) = lake.ingest("products_daily", D1, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        rows(&lake),
        [
            ("hat/H-1".into(), "Hat".into(), "<p>Hat</p>".into()),
            ("hat/H-2".into(), "Cap".into(), "<p>Hat</p>".into()),
            ("mug/M-1".into(), "Mug".into(), "<p>A mug.\n<b>Big</b></p>".into()),
            ("mug/M-2".into(), "Mug".into(), "<p>A mug.\n<b>Big</b></p>".into()),
            ("mug/M-3".into(), "Mug".into(), "<p>A mug.\n<b>Big</b></p>".into()),
        ],
        "a row with its own title keeps it; mug's third variant, after hat's, still fills from mug's first row"
    );
    // box's first row has no title, which is required: rejected, with its line.
    assert_eq!((report["rows_valid"].as_u64(), report["rows_rejected"].as_u64()), (Some(5), Some(1)), "{report}");
    let rejected = lake.query("products_daily", "SELECT line, raw, reason FROM products_daily_rejects", None);
    assert_eq!(
        (rejected[0]["line"].as_i64(), rejected[0]["raw"].as_str()),
        (Some(8), Some("box,,,'B-1")),
        "{rejected:?}"
    );
    assert!(rejected[0]["reason"].as_str().unwrap().contains("title is empty"), "{rejected:?}");
    // An identical re-run changes nothing.
    let (code, again) = lake.ingest("products_daily", D1, &["--max-reject-ratio", "1"]);
    assert_eq!((code, again["status"].as_str()), (0, Some("unchanged")), "{again}");
}

#[test]
fn validate_refuses_a_fill_down_without_a_group_and_a_group_that_is_not_read() {
    for (what, from, to, expected) in [
        ("no group", "group_by = \"handle\"\n", "", "fill_down needs the table's group_by"),
        (
            "an unknown group",
            "group_by = \"handle\"",
            "group_by = \"hndl\"",
            "`hndl` is not a column read from the export",
        ),
        (
            "the group filled",
            "name = \"handle\"\nheader = \"Handle\"",
            "name = \"handle\"\nheader = \"Handle\"\nfill_down = true",
            "names the group",
        ),
        ("a derived key of another type", "type = \"string\"", "type = \"bigint\"", "must be a text column"),
    ] {
        let lake = Lake::new();
        lake.define("products_daily", &PRODUCTS_TOML.replace(from, to), Some(PRODUCTS_SQL), None);
        let out = lake.run(&["validate"]);
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{what}: {said}");
        assert!(said.contains(expected), "{what}: {said}");
    }
    assert_eq!(lake().run(&["validate"]).status.code(), Some(0), "the definition as written is valid");
}

/// A group longer than a batch (the sort hands the fill batches of 8,192
/// rows): its first row's values reach every later row, across batches,
/// and the group after it starts afresh.
#[test]
fn a_group_longer_than_a_batch_is_filled_across_batches() {
    let lake = lake();
    let mut text = String::from("Handle,Title,Body (HTML),Variant SKU\n");
    text.push_str("big,Big,<p>Big</p>,'B-0\n");
    for i in 1..20_000 {
        text.push_str(&format!("big,,,'B-{i}\n"));
        if i == 10_000 {
            // Another group in the middle of it, without a title of its own.
            text.push_str("zed,,,'Z-1\n");
        }
    }
    text.push_str("cap,Cap,,'C-1\ncap,,,'C-2\n");
    write(&lake, &text);
    let (code, report) = lake.ingest("products_daily", D1, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!((report["rows_valid"].as_u64(), report["rows_rejected"].as_u64()), (Some(20_002), Some(1)), "{report}");
    let titles = lake.query(
        "products_daily",
        "SELECT title, count(*) AS n, count(body_html) AS bodies FROM products_daily GROUP BY title ORDER BY title",
        None,
    );
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert_eq!(
        (titles[0]["title"].as_str(), titles[0]["n"].as_i64(), titles[0]["bodies"].as_i64()),
        (Some("Big"), Some(20_000), Some(20_000))
    );
    assert_eq!(
        (titles[1]["title"].as_str(), titles[1]["n"].as_i64(), titles[1]["bodies"].as_i64()),
        (Some("Cap"), Some(2), Some(0))
    );
}
