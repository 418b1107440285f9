//! End-to-end tests of the `shoplake` binary on local files: each runs the
//! real binary, then reads the table back and checks its contents.

use crate::common::{export, line, Workspace, HEADER};

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";

/// Three shops on `date`; the third has no application (filtered).
fn small_day(date: &str) -> String {
    export(&[
        line("a", "APP1", "True", "1", "[0]", "shopify_", date),
        line("b", "APP2", "False", "2", "\"[0, 4, 7]\"", "custom_", date),
        line("c", "", "True", "3", "[]", "shopify_", date),
    ])
}

fn value<'a>(row: &'a [String], column: &str) -> &'a str {
    let prefix = format!("{column}=");
    row.iter().find_map(|v| v.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no column {column}"))
}

#[test]
fn a_day_lands_with_every_rule_applied() {
    let ws = Workspace::new();
    ws.write_export(D1, small_day(D1));
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "committed");
    assert_eq!(report["rows_read"], 3);
    assert_eq!(report["rows_filtered"], 1);
    assert_eq!(report["rows_valid"], 2);
    assert_eq!(report["rows_inserted"], 2);

    let snap = ws.snapshot();
    let day = &snap.rows[D1];
    assert_eq!(day.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(value(&day["a"], "has_specific_prefix"), "false");
    assert_eq!(value(&day["b"], "has_specific_prefix"), "true");
    assert_eq!(value(&day["b"], "nbrs_pinned_items"), "[0, 4, 7]");
    assert_eq!(value(&day["a"], "autocomplete_enabled"), "true");
    assert_eq!(value(&day["b"], "nbr_merchandised_queries"), "2");
    assert_eq!(value(&day["a"], "export_date"), D1);
}

#[test]
fn a_week_lands_one_version_per_day_and_a_rerun_changes_nothing() {
    let ws = Workspace::new();
    let raw = ws.raw();
    let out =
        ws.shoplake(&["generate", "--from", D1, "--to", "2019-04-07", "--rows", "300", "--out", raw.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut versions = Vec::new();
    for day in 1..=7 {
        let date = format!("2019-04-0{day}");
        let (code, report) = ws.ingest(&date, &[]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["status"], "committed");
        let valid = report["rows_valid"].as_u64().unwrap();
        assert!(valid > 250, "{report}");
        assert_eq!(ws.snapshot().rows[&date].len() as u64, valid);
        versions.push(report["table_version"].as_i64().unwrap());
    }
    // Version 0 creates the table; each day is exactly one more.
    assert_eq!(versions, (1..=7).collect::<Vec<i64>>());

    let before = ws.snapshot();
    let (code, report) = ws.ingest("2019-04-03", &[]);
    assert_eq!(code, 0);
    assert_eq!(report["status"], "unchanged");
    assert_eq!(report["table_version"], 7);
    for field in ["rows_inserted", "rows_updated", "rows_deleted", "files_added", "files_removed"] {
        assert_eq!(report[field], 0, "{field}");
    }
    assert_eq!(ws.snapshot(), before, "an identical re-run adds no version and no file");
}

#[test]
fn a_corrected_export_converges_and_leaves_other_days_alone() {
    let ws = Workspace::new();
    ws.write_export(D1, small_day(D1));
    ws.write_export(D2, small_day(D2));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    let before = ws.snapshot();

    // b changes, a disappears, d is new.
    ws.write_export(
        D1,
        export(&[
            line("b", "APP2", "True", "5", "[1]", "custom_", D1),
            line("d", "APP4", "False", "0", "[0]", "shopify_", D1),
        ]),
    );
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (report["rows_inserted"].as_u64(), report["rows_updated"].as_u64(), report["rows_deleted"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(report["rows_unchanged"], 0);
    assert_eq!(report["table_version"], 3);

    let after = ws.snapshot();
    let day = &after.rows[D1];
    assert_eq!(day.keys().collect::<Vec<_>>(), vec!["b", "d"]);
    assert_eq!(value(&day["b"], "autocomplete_enabled"), "true");
    assert_eq!(value(&day["b"], "nbr_merchandised_queries"), "5");
    assert_eq!(value(&day["b"], "nbrs_pinned_items"), "[1]");
    assert_eq!(after.rows[D2], before.rows[D2], "the other day's rows are untouched");
    assert_eq!(after.files[D2], before.files[D2], "the other day's files are not rewritten");

    // And loading the corrected file again is a no-op.
    let (_, report) = ws.ingest(D1, &[]);
    assert_eq!(report["status"], "unchanged");
    assert_eq!(ws.snapshot(), after);
}

#[test]
fn one_row_changed_among_many_rewrites_only_that_day() {
    let ws = Workspace::new();
    let raw = ws.raw();
    let out = ws.shoplake(&["generate", "--from", D1, "--to", D2, "--rows", "2000", "--out", raw.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    let before = ws.snapshot();
    let path = raw.join(format!("{D1}.csv"));
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replacen(",shopify_app_store,", ",direct,", 1);
    assert_ne!(text, changed);
    std::fs::write(&path, changed).unwrap();
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["rows_updated"], 1, "{report}");
    assert_eq!(report["rows_inserted"], 0);
    assert_eq!(report["rows_deleted"], 0);
    let after = ws.snapshot();
    assert_eq!(after.files[D2], before.files[D2]);
    let differing: Vec<_> = after.rows[D1].iter().filter(|(id, row)| before.rows[D1][*id] != **row).collect();
    assert_eq!(differing.len(), 1);
}

#[test]
fn missing_file_exits_3_and_creates_nothing() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.raw()).unwrap();
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 3);
    assert_eq!(report["status"], "failed");
    assert_eq!(ws.snapshot().version, None, "no table is created for a missing file");
}

/// Loads D1, then runs a bad D1 export and checks the exit code and that the table did not move.
fn refused(bad_export: &str, extra: &[&str], expected_code: i32) -> String {
    let ws = Workspace::new();
    ws.write_export(D1, small_day(D1));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let before = ws.snapshot();
    ws.write_export(D1, bad_export);
    let mut args = vec!["ingest", "--date", D1];
    args.extend_from_slice(extra);
    let out = ws.shoplake(&args);
    assert_eq!(out.status.code(), Some(expected_code), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ws.snapshot(), before, "a refused load leaves the table exactly as it was");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_column_is_refused() {
    let header = HEADER.replace(",showing_logo", "");
    let body = line("a", "APP1", "True", "1", "[0]", "shopify_", D1).replacen(
        ",True,False,True,False,3",
        ",False,True,False,3",
        1,
    );
    let stderr = refused(&format!("{header}\n{body}\n"), &[], 4);
    assert!(stderr.contains("missing columns: showing_logo"), "{stderr}");
}

#[test]
fn unexpected_column_is_refused() {
    let body = line("a", "APP1", "True", "1", "[0]", "shopify_", D1);
    let stderr = refused(&format!("{HEADER},surprise\n{body},x\n"), &[], 4);
    assert!(stderr.contains("unexpected columns: surprise"), "{stderr}");
}

#[test]
fn header_only_over_a_loaded_day_is_refused_unless_allowed() {
    let stderr = refused(&format!("{HEADER}\n"), &[], 4);
    assert!(stderr.contains("would delete 2 rows"), "{stderr}");

    let ws = Workspace::new();
    ws.write_export(D1, small_day(D1));
    ws.write_export(D2, small_day(D2));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    ws.write_export(D1, format!("{HEADER}\n"));
    let (code, report) = ws.ingest(D1, &["--allow-empty"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_deleted"], 2);
    let snap = ws.snapshot();
    assert!(!snap.rows.contains_key(D1));
    assert_eq!(snap.rows[D2].len(), 2);
}

#[test]
fn too_many_rejects_are_refused() {
    let bad = export(&[
        line("a", "APP1", "yes", "1", "[0]", "shopify_", D1),
        line("b", "APP2", "True", "1", "[0]", "shopify_", D1),
    ]);
    let stderr = refused(&bad, &[], 4);
    assert!(stderr.contains("1 of 2 lines rejected"), "{stderr}");
    assert!(stderr.contains("line 2: autocomplete_enabled: 'yes' is not a boolean"), "{stderr}");
}

#[test]
fn bad_lines_are_rejected_counted_and_kept() {
    let ws = Workspace::new();
    let good = |id: &str| line(id, "APP", "True", "1", "[0]", "shopify_", D1);
    let lines = vec![
        good("ok1"),                                                  // line 2
        "short,line".to_string(),                                     // 3: field count
        line("b1", "APP", "maybe", "1", "[0]", "shopify_", D1),       // 4: boolean
        line("b2", "APP", "True", "1.5", "[0]", "shopify_", D1),      // 5: integer
        line("b3", "APP", "True", "1", "\"[0, x]\"", "shopify_", D1), // 6: list
        line("b4", "APP", "True", "1", "[0]", "shopify_", D2),        // 7: wrong date
        line("", "APP", "True", "1", "[0]", "shopify_", D1),          // 8: empty id
        line("f1", "   ", "maybe", "1", "[0]", "shopify_", D1),       // 9: filtered first
        good("dup"),                                                  // 10: duplicate, dropped
        line("dup", "APP", "False", "17.0", "[0]", "shopify_", D1),   // 11: kept (last)
    ];
    let mut bytes = export(&lines).into_bytes();
    // line 12: not UTF-8 (a Latin-1 byte in the domain); line 13: cut inside a quoted list.
    let mut latin1 = line("u1", "APP", "True", "1", "[0]", "shopify_", D1).into_bytes();
    let at = latin1.windows(3).position(|w| w == b".my").unwrap();
    latin1[at - 1] = 0xE9;
    bytes.extend_from_slice(&latin1);
    bytes.push(b'\n');
    bytes.extend_from_slice(b"t1,t1.myshopify.com,APP,True,False,1,\"[0, 4");
    ws.write_export(D1, &bytes);

    let (code, report) = ws.ingest(D1, &["--max-reject-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_read"], 12);
    assert_eq!(report["rows_filtered"], 1);
    assert_eq!(report["rows_duplicate"], 1);
    assert_eq!(report["rows_valid"], 2);
    assert_eq!(report["rows_rejected"], 8);

    let day = &ws.snapshot().rows[D1];
    assert_eq!(day.keys().collect::<Vec<_>>(), vec!["dup", "ok1"]);
    assert_eq!(value(&day["dup"], "autocomplete_enabled"), "false", "the last line of a key wins");
    assert_eq!(value(&day["dup"], "nbr_merchandised_queries"), "17");

    let rejects = rejects_of(&ws);
    let lines: Vec<i64> = rejects.iter().map(|r| r.0).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 12, 13]);
    let reason = |n: i64| rejects.iter().find(|r| r.0 == n).unwrap().2.clone();
    assert_eq!(reason(3), "expected 22 fields, found 2");
    assert!(reason(4).contains("'maybe' is not a boolean"));
    assert!(reason(5).contains("'1.5' is not an integer"));
    assert!(reason(6).contains("is not a list of integers"));
    assert!(reason(7).contains("is not the file's date"));
    assert!(reason(8).contains("id: is empty"));
    assert!(reason(12).contains("not valid UTF-8"));
    assert!(reason(13).contains("field 7 has an unterminated quote"), "{}", reason(13));
    assert_eq!(rejects.iter().find(|r| r.0 == 3).unwrap().1, "short,line", "raw text is kept");
}

#[test]
fn bom_crlf_and_quoted_commas_are_read() {
    let ws = Workspace::new();
    let text = small_day(D1).replace('\n', "\r\n");
    ws.write_export(D1, format!("\u{feff}{text}"));
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_rejected"], 0);
    let day = &ws.snapshot().rows[D1];
    assert_eq!(value(&day["b"], "nbrs_pinned_items"), "[0, 4, 7]");
    assert_eq!(value(&day["b"], "install_channel"), "shopify_app_store", "no CR left on the last field");
}

#[test]
fn gzipped_exports_are_read_the_same_way() {
    use std::io::Write;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.raw()).unwrap();
    let file = std::fs::File::create(ws.raw().join(format!("{D1}.csv.gz"))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(small_day(D1).as_bytes()).unwrap();
    gz.finish().unwrap();
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(report["source"].as_str().unwrap().ends_with(".csv.gz"));
    assert_eq!(ws.snapshot().rows[D1].len(), 2);
}

#[test]
fn a_rejects_table_that_cannot_be_written_leaves_the_table_as_it_was() {
    let ws = Workspace::new();
    let mut lines = vec![line("bad", "APP", "nope", "1", "[0]", "shopify_", D1)];
    lines.extend((0..200).map(|i| line(&format!("s{i}"), "APP", "True", "1", "[0]", "shopify_", D1)));
    ws.write_export(D1, export(&lines));
    // The rejects table cannot be written: a file sits where it should go.
    std::fs::create_dir_all(ws.rejects_table().parent().unwrap()).unwrap();
    std::fs::write(ws.rejects_table(), "in the way").unwrap();
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 2, "a path that cannot be a table is a configuration error: {report}");
    assert_eq!(report["status"], "failed");
    assert_eq!(ws.snapshot().version, None, "the rejects are written first: no table was even created");

    std::fs::remove_file(ws.rejects_table()).unwrap();
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "committed");
    assert_eq!(ws.snapshot().rows[D1].len(), 200);
    assert_eq!(rejects_of(&ws).len(), 1);
}

#[test]
fn bad_command_lines_exit_2() {
    let ws = Workspace::new();
    assert_eq!(ws.shoplake(&["ingest"]).status.code(), Some(2));
    assert_eq!(ws.shoplake(&["ingest", "--date", "2019-13-01"]).status.code(), Some(2));
    assert_eq!(ws.shoplake(&["ingest", "--date", D1, "--max-reject-ratio", "2"]).status.code(), Some(2));
    assert_eq!(ws.shoplake(&["backfill", "--from", D2, "--to", D1]).status.code(), Some(2));
    assert_eq!(ws.shoplake(&["ingest", "--date", D1, "--table", "gs://x/y"]).status.code(), Some(2));
}

#[test]
fn backfill_loads_a_range_in_parallel() {
    let ws = Workspace::new();
    let raw = ws.raw();
    let out =
        ws.shoplake(&["generate", "--from", D1, "--to", "2019-04-06", "--rows", "200", "--out", raw.to_str().unwrap()]);
    assert!(out.status.success());
    std::fs::remove_file(raw.join("2019-04-04.csv")).unwrap();
    let out = ws.shoplake(&["backfill", "--from", D1, "--to", "2019-04-06", "--parallel", "3", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "a missing day fails the backfill");
    let out = ws.shoplake(&[
        "backfill",
        "--from",
        D1,
        "--to",
        "2019-04-06",
        "--parallel",
        "3",
        "--skip-missing",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> =
        summary["dates"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["unchanged", "unchanged", "unchanged", "skipped", "unchanged", "unchanged"]);
    let snap = ws.snapshot();
    assert_eq!(snap.rows.len(), 5);
    assert_eq!(snap.version, Some(5), "one version for the table, one per loaded day");
}

fn rejects_of(ws: &Workspace) -> Vec<(i64, String, String)> {
    crate::common::rejects_of(&ws.rejects_table())
}
