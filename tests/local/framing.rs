//! Record framing per table (issue #28, item 1): with `records = "quoted"`
//! a quoted field may span lines (a product's HTML description), within
//! `max_record_lines`; a quote still open past the bound, or at the end of
//! the file, rejects its own line alone and reading goes on at the next
//! line. Beside it: the same export under `records = "lines"` (the
//! default), where every line is a record.

use crate::lake::Lake;

const DATE: &str = "2019-04-01";

fn products_toml(records: &str) -> String {
    format!(
        r#"
name = "products"
key = ["handle", "export_date"]
partition_by = "export_date"
{records}

[[columns]]
name = "handle"
kind = "text"
nullable = false

[[columns]]
name = "title"
kind = "text"

[[columns]]
name = "body_html"
kind = "text"

[[columns]]
name = "vendor"
kind = "text"

[[columns]]
name = "export_date"
kind = "file_date"
"#
    )
}

/// The export, line by line (LF ends, but the CRLF inside the shirt's
/// description): its line numbers are the file's, the header being line 1.
const EXPORT: &[&str] = &[
    "handle,title,body_html,vendor,export_date",
    "shirt,Shirt,\"<p>Soft</p>\r",                      // 2: a record of two lines
    "<p>Cotton, \"\"organic\"\"</p>\",Acme,2019-04-01", // 3
    "mug,Mug,plain,Acme,2019-04-01",                    // 4
    "bad\"quote,Stray,x,Acme,2019-04-01",               // 5: a stray quote, never closed within 3 lines
    "n1,One,x,Acme,2019-04-01",                         // 6
    "n2,Two,x,Acme,2019-04-01",                         // 7
    "n3,Three,x,Acme,2019-04-01",                       // 8
    "lamp,Lamp,\"a",                                    // 9: three lines, at the bound, a blank one inside
    "",                                                 // 10
    "b\",Acme,2019-04-01",                              // 11
    "desk,Desk,\"a",                                    // 12: four lines, past the bound
    "b",                                                // 13
    "c",                                                // 14
    "d\",Acme,2019-04-01",                              // 15: open again, and the file ends
];

fn lake(records: &str) -> Lake {
    let lake = Lake::new();
    lake.define("products", &products_toml(records), None, None);
    let export = lake.raw().join(format!("{DATE}.csv"));
    std::fs::create_dir_all(export.parent().unwrap()).unwrap();
    std::fs::write(&export, EXPORT.join("\n") + "\n").unwrap();
    lake
}

fn rejected_lines(lake: &Lake) -> Vec<i64> {
    let rows = lake.query("products", "SELECT line FROM products_rejects ORDER BY line", None);
    rows.iter().map(|r| r["line"].as_i64().unwrap()).collect()
}

#[test]
fn quoted_fields_span_lines_within_the_bound_and_a_stray_quote_costs_its_line_alone() {
    let lake = lake("records = \"quoted\"\nmax_record_lines = 3");
    let (code, report) = lake.ingest("products", DATE, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    // 11 records over 14 lines: each line in exactly one record, each record in one bucket.
    assert_eq!((report["rows_read"].as_u64(), report["lines_read"].as_u64()), (Some(11), Some(14)), "{report}");
    assert_eq!((report["rows_valid"].as_u64(), report["rows_rejected"].as_u64()), (Some(6), Some(5)), "{report}");
    let rows = lake.query("products", "SELECT handle, body_html FROM products ORDER BY handle", None);
    let handles: Vec<&str> = rows.iter().map(|r| r["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["lamp", "mug", "n1", "n2", "n3", "shirt"]);
    assert_eq!(rows[5]["body_html"], "<p>Soft</p>\r\n<p>Cotton, \"organic\"</p>", "kept as written");
    assert_eq!(rows[0]["body_html"], "a\n\nb", "a blank line inside a quoted field is data");
    // The stray quote (5) and the record past the bound (12) are rejected
    // by their first line alone; the lines after them are read again.
    assert_eq!(rejected_lines(&lake), [5, 12, 13, 14, 15]);
    let stray = lake.query("products", "SELECT raw, reason FROM products_rejects WHERE line = 5", None);
    assert_eq!(stray[0]["raw"], EXPORT[4], "its own line only");
    assert!(stray[0]["reason"].as_str().unwrap().contains("quote"), "{}", stray[0]);
    // A re-run is identical: no new version.
    let version = lake.version("products");
    let (code, again) = lake.ingest("products", DATE, &["--max-reject-ratio", "1"]);
    assert_eq!((code, again["status"].as_str()), (0, Some("unchanged")), "{again}");
    assert_eq!(lake.version("products"), version);
}

#[test]
fn the_same_export_framed_by_lines_rejects_every_line_of_a_multi_line_record() {
    let lake = lake("");
    let (code, report) = lake.ingest("products", DATE, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!((report["rows_read"].as_u64(), report["lines_read"].as_u64()), (Some(14), Some(14)), "{report}");
    let rows = lake.query("products", "SELECT handle FROM products ORDER BY handle", None);
    let handles: Vec<&str> = rows.iter().map(|r| r["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["mug", "n1", "n2", "n3"], "no record spans lines");
    assert_eq!(rejected_lines(&lake), [2, 3, 5, 9, 11, 12, 13, 14, 15], "line 10 is blank: filtered");
    assert_eq!(report["rows_filtered"].as_u64(), Some(1), "{report}");
}

#[test]
fn record_bounds_are_for_quoted_records_and_at_least_one() {
    for (records, key) in [
        ("max_record_lines = 3", "max_record_lines"),
        ("records = \"lines\"\nmax_record_bytes = 100", "max_record_bytes"),
        ("records = \"quoted\"\nmax_record_lines = 0", "max_record_lines"),
        ("records = \"csv\"", "expected `lines` or `quoted`"),
    ] {
        let lake = lake(records);
        let out = lake.run(&["validate"]);
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{records}: {said}");
        assert!(said.contains("products/table.toml") && said.contains(key), "{records}: {said}");
    }
    let ok = lake("records = \"quoted\"\nmax_record_lines = 1\nmax_record_bytes = 1");
    assert_eq!(ok.run(&["validate"]).status.code(), Some(0), "the smallest bounds are valid");
}

/// `generate` writes multi-line descriptions (`format = "html"`) for a
/// quoted table; they load whole, every record valid, more lines than
/// records; the same hint on a table framed by lines is refused.
#[test]
fn generated_multi_line_descriptions_load_whole() {
    let toml = products_toml("records = \"quoted\"")
        .replace(
            "name = \"body_html\"\nkind = \"text\"",
            "name = \"body_html\"\nkind = \"text\"\nsample = { format = \"html\" }",
        )
        .replace(
            "name = \"handle\"\nkind = \"text\"",
            "name = \"handle\"\nkind = \"text\"\nsample = { format = \"uuid\", stable = true }",
        );
    let lake = Lake::new();
    lake.define("products", &toml, None, None);
    lake.generate("products", DATE, DATE, 500, &[]);
    let (code, report) = lake.ingest("products", DATE, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!((report["rows_read"].as_u64(), report["rows_valid"].as_u64()), (Some(500), Some(500)), "{report}");
    assert!(report["lines_read"].as_u64().unwrap() > 600, "descriptions span lines: {report}");
    let spanning = lake.count("products", "SELECT count(*) FROM products WHERE body_html LIKE '%</p>\n<p>%'");
    assert!(spanning > 100, "{spanning} descriptions of several paragraphs, kept whole");

    let lines = Lake::new();
    lines.define("products", &toml.replace("records = \"quoted\"", ""), None, None);
    let out = lines.run(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("html spans lines: it needs records = \"quoted\""));
}

/// One RFC 4180 field.
fn csv_field(text: &str) -> String {
    let mut out = Vec::new();
    shoplake_parse::records::write_record(&mut out, &[text]);
    String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Random descriptions with line breaks (LF and CRLF), commas and
    /// quotes, written as RFC 4180, and at random a stray quote on the last
    /// line: the table holds every description exactly, the stray line is
    /// the one reject, and every line of the file is in one record.
    #[test]
    fn random_multi_line_fields_load_exactly(
        bodies in proptest::collection::vec("[a-z ,\"]{0,6}((\n|\r\n)[a-z ,\"]{0,6}){0,3}", 1..12),
        stray in proptest::bool::ANY,
        crlf in proptest::bool::ANY,
    ) {
        let lake = Lake::new();
        lake.define("products", &products_toml("records = \"quoted\""), None, None);
        let end = if crlf { "\r\n" } else { "\n" };
        let mut export = format!("handle,title,body_html,vendor,export_date{end}");
        for (i, body) in bodies.iter().enumerate() {
            export.push_str(&format!("h{i},T,{},V,{DATE}{end}", csv_field(body)));
        }
        if stray {
            export.push_str(&format!("bad\"quote,T,x,V,{DATE}{end}"));
        }
        std::fs::create_dir_all(lake.raw()).unwrap();
        std::fs::write(lake.raw().join(format!("{DATE}.csv")), &export).unwrap();
        let (code, report) = lake.ingest("products", DATE, &["--max-reject-ratio", "1"]);
        proptest::prop_assert_eq!(code, 0, "{}", report);
        let lines = export.matches('\n').count() as u64 - 1;
        proptest::prop_assert_eq!(report["lines_read"].as_u64(), Some(lines), "{}", report);
        proptest::prop_assert_eq!(report["rows_read"].as_u64(), Some(bodies.len() as u64 + u64::from(stray)));
        proptest::prop_assert_eq!(report["rows_rejected"].as_u64(), Some(u64::from(stray)), "{}", report);
        let rows = lake.query("products", "SELECT handle, body_html FROM products", None);
        let got: std::collections::BTreeMap<String, serde_json::Value> =
            rows.iter().map(|r| (r["handle"].as_str().unwrap().to_string(), r["body_html"].clone())).collect();
        let want: std::collections::BTreeMap<String, serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("h{i}"), if b.is_empty() { serde_json::Value::Null } else { b.as_str().into() }))
            .collect();
        proptest::prop_assert_eq!(got, want);
    }
}
