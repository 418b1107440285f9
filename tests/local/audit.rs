//! Tests of the audit commands on a scripted history: load day 1, load
//! day 2, re-load a corrected day 1, restore. The expected state of every
//! version is written down here and compared with `query --as-of`.

use crate::common::{export, line, Workspace};
use serde_json::Value;

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";

/// One row as the audit query returns it: (date, id, flag, count).
type Row = (String, String, bool, i64);

fn row(date: &str, id: &str, flag: bool, count: i64) -> Row {
    (date.to_string(), id.to_string(), flag, count)
}

const STATE_SQL: &str =
    "SELECT CAST(export_date AS VARCHAR) AS d, id, autocomplete_enabled AS f, nbr_merchandised_queries AS n \
                         FROM shopify_configuration ORDER BY d, id";

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn state(ws: &Workspace, as_of: Option<&str>) -> Vec<Row> {
    let mut args = vec!["query", "--format", "json", "--sql", STATE_SQL];
    if let Some(v) = as_of {
        args.extend_from_slice(&["--as-of", v]);
    }
    let out = ws.shoplake(&args);
    assert!(out.status.success(), "query --as-of {as_of:?}: {}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out.stdout)
        .iter()
        .map(|r| {
            (
                r["d"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
                r["f"].as_bool().unwrap(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Builds the scripted history and returns the expected state per version.
fn scripted_history(ws: &Workspace) -> Vec<Vec<Row>> {
    ws.write_export(
        D1,
        export(&[
            line("a", "APP", "True", "1", "[0]", "shopify_", D1),
            line("b", "APP", "False", "2", "[0]", "x_", D1),
        ]),
    );
    ws.write_export(D2, export(&[line("a", "APP", "True", "5", "[0]", "shopify_", D2)]));
    assert_eq!(ws.ingest(D1, &[]).0, 0); // version 1
    assert_eq!(ws.ingest(D2, &[]).0, 0); // version 2
                                         // Corrected day 1: a changes, b is gone, c is new; one line is rejected.
    ws.write_export(
        D1,
        export(&[
            line("a", "APP", "False", "1", "[0]", "shopify_", D1),
            line("c", "APP", "True", "3", "[0]", "shopify_", D1),
            line("d", "APP", "maybe", "3", "[0]", "shopify_", D1),
        ]),
    );
    let (code, report) = ws.ingest(D1, &["--max-reject-ratio", "0.5"]); // version 3
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["table_version"], 3);
    let out = ws.shoplake(&["restore", "--version", "2"]); // version 4
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let v1 = vec![row(D1, "a", true, 1), row(D1, "b", false, 2)];
    let mut v2 = v1.clone();
    v2.push(row(D2, "a", true, 5));
    let v3 = vec![row(D1, "a", false, 1), row(D1, "c", true, 3), row(D2, "a", true, 5)];
    vec![vec![], v1, v2.clone(), v3, v2]
}

#[test]
fn every_version_reads_as_it_was_by_version_and_by_time() {
    let ws = Workspace::new();
    let expected = scripted_history(&ws);
    for (version, rows) in expected.iter().enumerate() {
        assert_eq!(&state(&ws, Some(&version.to_string())), rows, "version {version}");
    }
    assert_eq!(&state(&ws, None), &expected[4], "latest");

    // By time: each version's commit timestamp reads as that version.
    let out = ws.shoplake(&["history", "--format", "json"]);
    assert!(out.status.success());
    let history = json_lines(&out.stdout);
    assert_eq!(history.len(), 5);
    assert_eq!(history[0]["operation"], "RESTORE");
    assert_eq!(history[0]["restored_version"], 2);
    assert_eq!(history[1]["export_date"], D1);
    assert_eq!(history[1]["rows_updated"], 1);
    assert_eq!(history[1]["rows_inserted"], 1);
    assert_eq!(history[1]["rows_deleted"], 1);
    assert_eq!(history[1]["rows_rejected"], 1);
    assert!(history[1]["source"].as_str().unwrap().ends_with("2019-04-01.csv"));
    for entry in &history {
        let version = entry["version"].as_i64().unwrap() as usize;
        let at = entry["timestamp"].as_str().unwrap();
        assert_eq!(state(&ws, Some(at)), expected[version], "as of {at} (version {version})");
    }
    let out = ws.shoplake(&["query", "--as-of", "2000-01-01T00:00:00Z", "--sql", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2), "a time before the first version");
}

#[test]
fn restore_brings_the_rejects_table_along() {
    let ws = Workspace::new();
    scripted_history(&ws);
    let count = |as_of: &str| {
        let out = ws.shoplake(&[
            "query",
            "--as-of",
            as_of,
            "--format",
            "csv",
            "--sql",
            "SELECT count(*) AS n FROM shopify_configuration_rejects",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().to_string()
    };
    assert_eq!(count("2"), "0");
    assert_eq!(count("3"), "1", "the corrected day 1 had a rejected line");
    assert_eq!(count("4"), "0", "after restoring version 2 the rejects are as they were then");
}

#[test]
fn changes_list_exactly_the_changed_keys() {
    let ws = Workspace::new();
    scripted_history(&ws);
    let out = ws.shoplake(&["changes", "--from-version", "3", "--to-version", "3", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changes: Vec<(String, String)> = json_lines(&out.stdout)
        .iter()
        .map(|c| (c["change"].as_str().unwrap().to_string(), c["id"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> =
        [("update_preimage", "a"), ("update_postimage", "a"), ("delete", "b"), ("insert", "c")]
            .iter()
            .map(|(c, i)| (c.to_string(), i.to_string()))
            .collect();
    let mut sorted = changes.clone();
    sorted.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(sorted, expected);

    // CSV has no lists: they are written as in the export.
    let out = ws.shoplake(&["changes", "--from-version", "3", "--to-version", "3", "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 5, "a header and four changes:\n{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",[0],")), "{csv}");

    // The first load of a day shows as inserts.
    let out = ws.shoplake(&["changes", "--from-version", "1", "--to-version", "1", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inserted: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|c| c["change"] == "insert")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(inserted, vec!["a", "b"]);
}

#[test]
fn optimize_and_vacuum_keep_every_version_readable() {
    let ws = Workspace::new();
    let mut expected = scripted_history(&ws);
    // A load large enough for two parallel writers (a read batch is 32Ki
    // lines) leaves day 2 in two files.
    let added: Vec<String> = (0..40_000).map(|i| format!("z{i:05}")).collect();
    let mut lines = vec![line("a", "APP", "True", "5", "[0]", "shopify_", D2)];
    lines.extend(added.iter().map(|id| line(id, "APP", "True", "9", "[0]", "shopify_", D2)));
    ws.write_export(D2, export(&lines));
    assert_eq!(ws.ingest(D2, &[]).0, 0); // version 5
    let mut v5 = expected[4].clone();
    v5.extend(added.iter().map(|id| row(D2, id, true, 9)));
    v5.sort();
    expected.push(v5);
    let files_before = ws.snapshot().files[D2].len();
    assert!(files_before >= 2, "day 2 has {files_before} files");

    let out = ws.shoplake(&["maintain", "--optimize"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ws.snapshot().files[D2].len(), 1, "compacted");
    let out = ws.shoplake(&["maintain", "--vacuum", "--checkpoint"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (version, rows) in expected.iter().enumerate() {
        assert_eq!(&state(&ws, Some(&version.to_string())), rows, "version {version} after maintenance");
    }
    let out = ws.shoplake(&["maintain", "--vacuum", "--retention-hours", "24"]);
    assert_eq!(out.status.code(), Some(2), "a short retention needs --force");
}

#[test]
fn query_errors_are_one_clear_line_and_exit_2() {
    let ws = Workspace::new();
    scripted_history(&ws);
    for (args, needle) in [
        (vec!["query", "--sql", "SELEC nonsense"], "SQL"),
        (vec!["query", "--sql", "SELECT no_such_column FROM shopify_configuration"], "no_such_column"),
        (vec!["query", "--as-of", "99", "--sql", "SELECT 1"], "version 99 does not exist"),
        (vec!["query", "--as-of", "yesterday", "--sql", "SELECT 1"], "neither a version"),
        (vec!["query", "--sql", "DROP TABLE shopify_configuration"], "DDL"),
        (vec!["changes", "--from-version", "7"], "not a range"),
        (vec!["restore", "--version", "42"], "does not exist"),
    ] {
        let out = ws.shoplake(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line, got: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let empty = Workspace::new();
    let out = empty.shoplake(&["query", "--sql", "SELECT count(*) FROM shopify_configuration"]);
    assert_eq!(out.status.code(), Some(2), "no table yet");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not loaded yet"));
}
