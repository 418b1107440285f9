//! JSON Lines sources (issue #28, item 5): a Bulk Operations result read
//! by two tables, each taking the lines of its object type, values found by
//! JSON pointer. The case beside each: a child line before its parent and
//! one after it; a line that is not JSON in the middle and as the last
//! line; a JSON value that is not an object; an object naming no type; an
//! object of a type neither table takes; a pointer to an absent key and to
//! a null; a declared column with a header instead of a path.

use crate::lake::Lake;

const D1: &str = "2026-07-01";

const PRODUCTS_TOML: &str = r#"
name = "bulk_items"
description = "Products of a Bulk Operations result (a test's definition)."
key = ["id", "day"]
partition_by = "day"
format = "jsonl"
object_type = "Product"
source_pattern = "bulk/{date}.jsonl"

[[columns]]
name = "id"
kind = "text"
nullable = false
strip_prefix = "gid://shopify/Product/"

[[columns]]
name = "day"
kind = "file_date"
in_export = false

[[columns]]
name = "title"
kind = "text"
nullable = false

[[columns]]
name = "inventory"
path = "/totalInventory"
kind = "count"

[[columns]]
name = "image_url"
path = "/featuredImage/url"
kind = "text"

[[columns]]
name = "tags"
kind = "text_list"

[[columns]]
name = "created_at"
path = "/createdAt"
kind = "timestamp"
"#;

const VARIANTS_TOML: &str = r#"
name = "bulk_item_variants"
description = "Variants of the same Bulk Operations result (a test's definition)."
key = ["id", "day"]
partition_by = "day"
format = "jsonl"
object_type = "ProductVariant"
source_pattern = "bulk/{date}.jsonl"

[[columns]]
name = "id"
kind = "text"
nullable = false
strip_prefix = "gid://shopify/ProductVariant/"

[[columns]]
name = "day"
kind = "file_date"
in_export = false

[[columns]]
name = "product_id"
path = "/__parentId"
kind = "text"
nullable = false
strip_prefix = "gid://shopify/Product/"

[[columns]]
name = "sku"
kind = "text"
erasable = true

[[columns]]
name = "price"
kind = "decimal"
precision = 10
scale = 2

[[columns]]
name = "taxable"
kind = "flag"
"#;

/// The result as Shopify writes it, with every case beside (line numbers in comments).
const RESULT: &str = concat!(
    // 1: a variant before its product (line 3).
    r#"{"id":"gid://shopify/ProductVariant/11","sku":"MUG-S","price":"9.50","taxable":true,"__parentId":"gid://shopify/Product/1"}"#,
    "\n",
    // 2: not JSON, in the middle.
    r#"{"id":"gid://shopify/Product/9","title":"Broken"#,
    "\n",
    // 3: the product, nested and list values, an absent key (tags) left null.
    r#"{"id":"gid://shopify/Product/1","title":"Mug","totalInventory":12,"featuredImage":{"url":"https://cdn/mug.jpg"},"createdAt":"2026-06-30T10:00:00Z"}"#,
    "\n",
    // 4: a blank line.
    "   \n",
    // 5: its second variant, after it.
    r#"{"id":"gid://shopify/ProductVariant/12","sku":"MUG-L","price":"11.00","taxable":false,"__parentId":"gid://shopify/Product/1"}"#,
    "\n",
    // 6: a type neither table takes.
    r#"{"id":"gid://shopify/Collection/5","title":"Summer"}"#,
    "\n",
    // 7: an object naming no type.
    r#"{"title":"who am I"}"#,
    "\n",
    // 8: a JSON value that is not an object.
    "[1,2]\n",
    // 9: a product by __typename, a null image, tags as an array.
    r#"{"__typename":"Product","id":"gid://shopify/Product/2","title":"Hat","featuredImage":null,"tags":["wool","winter"],"totalInventory":0}"#,
    "\n",
    // 10: a product whose count is not one (rejected by its value, in its table only).
    r#"{"id":"gid://shopify/Product/3","title":"Box","totalInventory":"many"}"#,
    "\n",
    // 11: not JSON, as the last line (no line end).
    r#"{"id":"gid://shopify/ProductVariant/13","sku":"#,
);

fn lake() -> Lake {
    let lake = Lake::new();
    lake.define("bulk_items", PRODUCTS_TOML, None, None);
    lake.define("bulk_item_variants", VARIANTS_TOML, None, None);
    let path = lake.raw().join(format!("bulk/{D1}.jsonl"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, RESULT).unwrap();
    lake
}

fn counts(report: &serde_json::Value) -> [u64; 6] {
    ["rows_read", "rows_valid", "rows_filtered", "rows_rejected", "rows_other_type", "rows_duplicate"]
        .map(|k| report[k].as_u64().unwrap_or_else(|| panic!("{k}: {report}")))
}

#[test]
fn one_bulk_result_feeds_a_table_per_object_type_every_line_in_one_bucket() {
    let lake = lake();
    let ratio = ["--max-reject-ratio", "1"];
    let (code, products) = lake.ingest("bulk_items", D1, &ratio);
    assert_eq!(code, 0, "{products}");
    // 11 lines: 3 products (one rejected by value), 2 variants and a
    // collection of other types, a blank line, 5 that are no typed object.
    assert_eq!(counts(&products), [11, 2, 1, 5, 3, 0], "{products}");
    let rows = lake.query("bulk_items", "SELECT * FROM bulk_items ORDER BY id", None);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0]["id"].as_str(), rows[0]["title"].as_str()), (Some("1"), Some("Mug")));
    assert_eq!(rows[0]["inventory"], 12, "a JSON number as a count");
    assert_eq!(rows[0]["image_url"], "https://cdn/mug.jpg", "a nested pointer");
    assert!(rows[0]["tags"].is_null(), "an absent key is null: {:?}", rows[0]);
    assert_eq!(rows[0]["created_at"], "2026-06-30T10:00:00Z");
    assert_eq!(rows[1]["id"], "2", "typed by __typename");
    assert!(rows[1]["image_url"].is_null(), "a pointer through a null is null");
    assert_eq!(rows[1]["tags"], serde_json::json!(["wool", "winter"]));
    assert_eq!(rows[1]["inventory"], 0);

    let rejects = lake.query("bulk_items", "SELECT line, raw, reason FROM bulk_items_rejects ORDER BY line", None);
    let lines: Vec<i64> = rejects.iter().map(|r| r["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [2, 7, 8, 10, 11], "{rejects:?}");
    assert!(rejects[0]["reason"].as_str().unwrap().starts_with("not valid JSON"), "{rejects:?}");
    assert_eq!(rejects[0]["raw"], r#"{"id":"gid://shopify/Product/9","title":"Broken"#, "its text as read");
    assert!(rejects[1]["reason"].as_str().unwrap().contains("names no type"), "{rejects:?}");
    assert_eq!(rejects[2]["reason"], "not a JSON object but an array");
    assert!(rejects[3]["reason"].as_str().unwrap().contains("inventory: 'many' is not an integer"), "{rejects:?}");
    assert!(rejects[4]["reason"].as_str().unwrap().starts_with("not valid JSON: EOF"), "{rejects:?}");

    // The variants from the same file: the one before its product too.
    let (code, variants) = lake.ingest("bulk_item_variants", D1, &ratio);
    assert_eq!(code, 0, "{variants}");
    assert_eq!(counts(&variants), [11, 2, 1, 4, 4, 0], "{variants}");
    let rows = lake.query(
        "bulk_item_variants",
        "SELECT id, product_id, sku, CAST(price AS VARCHAR) AS price, taxable FROM bulk_item_variants ORDER BY id",
        None,
    );
    let read: Vec<(String, String, String, String, bool)> = rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (text("id"), text("product_id"), text("sku"), text("price"), r["taxable"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        read,
        [
            ("11".into(), "1".into(), "MUG-S".into(), "9.50".into(), true),
            ("12".into(), "1".into(), "MUG-L".into(), "11.00".into(), false),
        ]
    );

    // An identical re-run of each: no version.
    for name in ["bulk_items", "bulk_item_variants"] {
        let version = lake.version(name);
        let (code, again) = lake.ingest(name, D1, &ratio);
        assert_eq!((code, again["status"].as_str()), (0, Some("unchanged")), "{again}");
        assert_eq!(counts(&again), if name == "bulk_items" { [11, 2, 1, 5, 3, 0] } else { [11, 2, 1, 4, 4, 0] });
        assert_eq!(lake.version(name), version);
    }
}

#[test]
fn a_jsonl_export_is_erased_by_pointer_and_its_other_lines_kept_byte_for_byte() {
    let lake = lake();
    let ratio = ["--max-reject-ratio", "1"];
    assert_eq!(lake.ingest("bulk_item_variants", D1, &ratio).0, 0);
    lake.ok(&["erase", "--table-name", "bulk_item_variants", "--where", "sku=MUG-L", "--reason", "t", "--exports"]);
    let export = std::fs::read_to_string(lake.raw().join(format!("bulk/{D1}.jsonl"))).unwrap();
    assert!(!export.contains("MUG-L"), "{export}");
    let expected: String = RESULT.split_inclusive('\n').filter(|l| !l.contains("MUG-L")).collect();
    assert_eq!(export, expected, "every other line as it was");
    let skus = lake.query("bulk_item_variants", "SELECT sku FROM bulk_item_variants", None);
    assert_eq!(skus.len(), 1);
    assert_eq!(skus[0]["sku"], "MUG-S");
}

#[test]
fn validate_names_what_belongs_to_one_format_only() {
    for (what, from, to, expected) in [
        (
            "a header in a JSONL table",
            "name = \"title\"\n",
            "name = \"title\"\nheader = \"Title\"\n",
            "columns[2].header: a JSONL export has no header",
        ),
        (
            "a path that is no pointer",
            "path = \"/totalInventory\"",
            "path = \"totalInventory\"",
            "is not a JSON pointer",
        ),
        (
            "quoted records",
            "format = \"jsonl\"",
            "format = \"jsonl\"\nrecords = \"quoted\"",
            "records = \"quoted\" is for CSV",
        ),
        ("a path in a CSV table", "format = \"jsonl\"\nobject_type = \"Product\"", "", "path is a JSON pointer"),
        ("an object type in a CSV table", "format = \"jsonl\"", "", "object_type picks lines of a JSONL export"),
        (
            "a header policy",
            "format = \"jsonl\"",
            "format = \"jsonl\"\nunknown_columns = \"ignore\"",
            "about a CSV header",
        ),
    ] {
        let lake = Lake::new();
        let toml = PRODUCTS_TOML.replace(from, to);
        assert_ne!(toml, PRODUCTS_TOML, "{what}: the case is made");
        lake.define("bulk_items", &toml, None, None);
        let out = lake.run(&["validate"]);
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{what}: {said}");
        assert!(said.contains(expected), "{what}: {said}");
    }
    assert_eq!(lake().run(&["validate"]).status.code(), Some(0), "the definitions as written are valid");
}

/// A random line of a Bulk Operations result, as the model sees it.
#[derive(Debug, Clone)]
enum Line {
    Product {
        id: u8,
        title: Option<String>,
        inventory: Option<i64>,
    },
    Variant {
        id: u8,
        parent: u8,
    },
    /// A line cut short: not JSON.
    Cut(u8),
    Blank,
}

fn line() -> impl proptest::strategy::Strategy<Value = Line> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u8..6, proptest::option::weighted(0.85, "[a-z \"\\\\é]{0,5}"), proptest::option::of(-3i64..50))
            .prop_map(|(id, title, inventory)| Line::Product { id, title, inventory }),
        2 => (0u8..9, 0u8..6).prop_map(|(id, parent)| Line::Variant { id, parent }),
        1 => (0u8..6).prop_map(Line::Cut),
        1 => Just(Line::Blank),
    ]
}

fn render(line: &Line) -> String {
    match line {
        Line::Product { id, title, inventory } => {
            let mut object = serde_json::json!({ "id": format!("gid://shopify/Product/{id}") });
            if let Some(title) = title {
                object["title"] = title.clone().into();
            }
            object["totalInventory"] = inventory.map_or(serde_json::Value::Null, Into::into);
            object.to_string()
        }
        Line::Variant { id, parent } => serde_json::json!({
            "id": format!("gid://shopify/ProductVariant/{id}"),
            "__parentId": format!("gid://shopify/Product/{parent}"),
        })
        .to_string(),
        Line::Cut(id) => format!("{{\"id\":\"gid://shopify/Product/{id}\",\"title\":\"cut"),
        Line::Blank => String::new(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Any mix of products, variants, cut lines and blank lines, in any
    /// order: the products table holds the last product line of each id
    /// (one with a title), and every line is in exactly one bucket.
    #[test]
    fn the_products_table_equals_the_model_of_any_bulk_result(lines in proptest::collection::vec(line(), 1..24)) {
        let lake = Lake::new();
        lake.define("bulk_items", PRODUCTS_TOML, None, None);
        let path = lake.raw().join(format!("bulk/{D1}.jsonl"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, lines.iter().map(render).collect::<Vec<_>>().join("\n") + "\n").unwrap();

        let mut model = std::collections::BTreeMap::new();
        let (mut valid_lines, mut rejected, mut other, mut blank) = (0u64, 0u64, 0u64, 0u64);
        for line in &lines {
            match line {
                // A title is required: absent or empty, the line is rejected.
                Line::Product { id, title: Some(title), inventory } if !title.is_empty() => {
                    valid_lines += 1;
                    model.insert(id.to_string(), (title.clone(), *inventory));
                }
                Line::Product { .. } | Line::Cut(_) => rejected += 1,
                Line::Variant { .. } => other += 1,
                Line::Blank => blank += 1,
            }
        }
        let (code, report) = lake.ingest("bulk_items", D1, &["--max-reject-ratio", "1", "--allow-empty"]);
        proptest::prop_assert_eq!(code, 0, "{}", report);
        let duplicate = valid_lines - model.len() as u64;
        proptest::prop_assert_eq!(
            counts(&report),
            [lines.len() as u64, model.len() as u64, blank, rejected, other, duplicate],
            "{}",
            report
        );
        if model.is_empty() {
            return Ok(());
        }
        let rows = lake.query("bulk_items", "SELECT id, title, inventory FROM bulk_items ORDER BY id", None);
        let got: std::collections::BTreeMap<String, (String, Option<i64>)> = rows
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_string(), (r["title"].as_str().unwrap().to_string(), r["inventory"].as_i64())))
            .collect();
        proptest::prop_assert_eq!(got, model);
    }
}
