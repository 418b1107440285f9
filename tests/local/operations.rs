//! Operating shoplake (issue #9), through the real binary: dry runs, the
//! data-quality checks declared beside the table, the metrics file, and a
//! backfill interrupted by a real signal.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::common::{export, json_lines, line, Workspace};

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";

fn shops(date: &str, ids: std::ops::Range<usize>, flag: &str, channel: &str) -> Vec<String> {
    ids.map(|i| {
        line(&format!("s{i:05}"), "APP", flag, "1", "[0]", "shopify_", date).replace("shopify_app_store", channel)
    })
    .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn log_files(table: &std::path::Path) -> usize {
    std::fs::read_dir(table.join("_delta_log")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_dry_run_counts_a_key_given_twice_in_two_read_batches_as_the_load_does() {
    // Lines of one key far apart land in different read batches (32Ki
    // rows): the earlier row is already compared when the later one comes.
    let ws = Workspace::new();
    ws.write_export(D1, export(&shops(D1, 0..40_000, "True", "direct")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    // Shop 6 changed at the top, then given again unchanged at the end;
    // shop 20 unchanged at the top, then changed at the end.
    let mut lines = shops(D1, 0..6, "True", "direct");
    lines.extend(shops(D1, 6..7, "False", "direct"));
    lines.extend(shops(D1, 7..40_000, "True", "direct"));
    lines.extend(shops(D1, 20..21, "False", "direct"));
    lines.extend(shops(D1, 6..7, "True", "direct"));
    ws.write_export(D1, export(&lines));
    let (code, planned) = ws.ingest(D1, &["--dry-run"]);
    assert_eq!(code, 0, "{planned}");
    let (code, real) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{real}");
    for report in [&planned, &real] {
        let counts = ["rows_inserted", "rows_updated", "rows_unchanged", "rows_duplicate"].map(|c| report[c].as_u64());
        assert_eq!(counts, [Some(0), Some(1), Some(39_999), Some(2)], "{report}");
    }
    let rows = ws.query(
        "SELECT id, autocomplete_enabled FROM shopify_configuration WHERE id IN ('s00006', 's00020') ORDER BY id",
        None,
    );
    assert_eq!(rows[0]["autocomplete_enabled"], true, "{rows:?}");
    assert_eq!(rows[1]["autocomplete_enabled"], false, "{rows:?}");
}

#[test]
fn a_dry_run_reports_what_a_load_would_do_and_writes_nothing() {
    let ws = Workspace::new();
    // Nothing there yet: not even a table is created.
    ws.write_export(D1, export(&shops(D1, 0..300, "True", "direct")));
    let (code, report) = ws.ingest(D1, &["--dry-run"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "dry_run");
    assert_eq!(report["rows_inserted"], 300);
    assert_eq!(report["table_version"], serde_json::Value::Null);
    assert!(!ws.table().exists() && !ws.rejects_table().exists(), "nothing created");

    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let loaded = ws.snapshot();
    let rejects_logs = log_files(&ws.rejects_table());
    // A corrected re-export: 10 changed, 5 gone, 7 new, a bad line; and
    // two keys given twice, the later line winning: shop 20 changed by
    // it, shop 6's change undone by it (10 - 1 + 1 updated).
    let mut lines = shops(D1, 5..10 + 5, "False", "direct");
    lines.extend(shops(D1, 15..300, "True", "direct"));
    lines.extend(shops(D1, 300..307, "True", "direct"));
    lines.push(line("bad", "APP", "maybe", "1", "[0]", "shopify_", D1));
    lines.extend(shops(D1, 20..21, "False", "direct"));
    lines.extend(shops(D1, 6..7, "True", "direct"));
    ws.write_export(D1, export(&lines));
    let (code, planned) = ws.ingest(D1, &["--dry-run"]);
    assert_eq!(code, 0, "{planned}");
    assert_eq!(planned["status"], "dry_run");
    let counts = |r: &serde_json::Value| {
        (
            r["rows_inserted"].as_u64(),
            r["rows_updated"].as_u64(),
            r["rows_deleted"].as_u64(),
            r["rows_rejected"].as_u64(),
            r["rows_duplicate"].as_u64(),
        )
    };
    assert_eq!(counts(&planned), (Some(7), Some(10), Some(5), Some(1), Some(2)));
    assert_eq!(ws.snapshot(), loaded, "no version, no file");
    assert_eq!(log_files(&ws.rejects_table()), rejects_logs, "the rejects table did not move either");

    let (code, real) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(counts(&real), counts(&planned), "the load does what the dry run said");

    // A dry run meets the same guards as a load.
    ws.write_export(D1, export(&shops(D1, 0..100, "True", "direct")));
    let out = ws.shoplake(&["ingest", "--date", D1, "--dry-run"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("would delete"), "{}", stderr(&out));

    // backfill --dry-run too.
    ws.write_export(D2, export(&shops(D2, 0..300, "True", "direct")));
    let before = ws.snapshot();
    let out = ws.shoplake(&["backfill", "--from", D2, "--to", D2, "--dry-run", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["dates"][0]["status"], "dry_run");
    assert_eq!(summary["dates"][0]["rows_inserted"], 300);
    assert_eq!(ws.snapshot(), before);
}

#[test]
fn a_failing_volume_check_refuses_the_load_and_the_case_beside_it_loads() {
    let ws = Workspace::new();
    ws.write_export(D1, export(&shops(D1, 0..2000, "True", "direct")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let loaded = ws.snapshot();

    // A half-empty export of the next day: 900 against 2000 (-55%).
    ws.write_export(D2, export(&shops(D2, 0..900, "True", "direct")));
    let (code, report) = ws.ingest(D2, &[]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(ws.snapshot(), loaded, "nothing written");
    let volume =
        report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "volume_against_previous_day").unwrap();
    assert_eq!(volume["passed"], false, "{report}");
    assert_eq!(volume["detail"], "900 rows against 2000 on 2019-04-01 (-55.0%)");

    // 1100 against 2000 (-45%) is within the 50% declared.
    ws.write_export(D2, export(&shops(D2, 0..1100, "True", "direct")));
    let (code, report) = ws.ingest(D2, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(report["checks"].as_array().unwrap().iter().all(|c| c["passed"] == true), "{report}");
}

#[test]
fn a_failing_sql_check_refuses_and_a_warning_loads_and_is_recorded() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 0..50, "True", "direct");
    lines.push(line("neg", "APP", "True", "-3", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    let out = ws.shoplake(&["ingest", "--date", D1]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("counts_not_negative"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL counts_not_negative: the query returned 1 rows"));
    // The first rows create the table (as a back-fill creates it up front);
    // the refused load adds no row to it.
    let snapshot = ws.snapshot();
    assert!(snapshot.rows.is_empty() && snapshot.version <= Some(0), "nothing loaded: {snapshot:?}");

    // Unknown channels and missing domains only warn.
    let mut lines = shops(D1, 0..50, "True", "carrier_pigeon");
    lines[0] = lines[0].replace("s00000.myshopify.com", "");
    ws.write_export(D1, export(&lines));
    let out = ws.shoplake(&["ingest", "--date", D1]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WARN install_channel_known: 50 rows have another install_channel, e.g. carrier_pigeon"),
        "{text}"
    );
    assert!(text.contains("WARN shop_domain_present: 1 of 50 rows have no shop_domain (2.00%)"), "{text}");
    assert_eq!(ws.snapshot().rows[D1].len(), 50);
    let history = ws.history();
    assert_eq!(
        history[0]["checks"], "2 ok, 2 warn (shop_domain_present, install_channel_known)",
        "the commit info records the checks: {}",
        history[0]
    );
}

#[test]
fn the_metrics_file_says_what_the_run_did() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 0..40, "True", "direct");
    lines.push(line("bad", "APP", "maybe", "1", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    let path = ws.dir.path().join("textfile").join("shoplake.prom");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (code, _) = ws.ingest(D1, &["--metrics-file", path.to_str().unwrap(), "--max-reject-ratio", "0.5"]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let table = format!("shopify_configuration\",table=\"{}", ws.table().display());
    let table = table.as_str();
    for expected in [
        format!("shoplake_rows{{table_name=\"{table}\",bucket=\"read\"}} 41"),
        format!("shoplake_rows{{table_name=\"{table}\",bucket=\"rejected\"}} 1"),
        format!("shoplake_rows_changed{{table_name=\"{table}\",change=\"inserted\"}} 40"),
        format!("shoplake_run_exit_code{{table_name=\"{table}\"}} 0"),
        format!("shoplake_table_version{{table_name=\"{table}\"}} 1"),
        format!("shoplake_check_failed{{table_name=\"{table}\",check=\"counts_not_negative\",severity=\"fail\"}} 0"),
    ] {
        assert!(text.contains(&expected), "{expected} in:\n{text}");
    }
    let (code, _) = ws.ingest("2019-05-01", &["--metrics-file", path.to_str().unwrap()]);
    assert_eq!(code, 3);
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.contains(&format!("shoplake_run_exit_code{{table_name=\"{table}\"}} 3")), "{after}");
    let success =
        |t: &str| t.lines().find(|l| l.starts_with("shoplake_last_success_timestamp_seconds")).map(str::to_string);
    assert_eq!(success(&after), success(&text), "a failed run keeps the last success");
}

/// Backfill eight dates one at a time, interrupt it after the first date.
fn interrupted_backfill(signal: &str) -> (i32, Vec<serde_json::Value>, Workspace) {
    let ws = Workspace::new();
    ws.generate(D1, "2019-04-08", 40000, &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoplake"))
        .args(["backfill", "--from", D1, "--to", "2019-04-08", "--format", "json"])
        .env("SHOPLAKE_SOURCE", ws.raw())
        .env("SHOPLAKE_TABLE", ws.table())
        .env("RUST_LOG", "shoplake=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("date 1/8 done") {
            let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
            assert!(status.success());
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no summary ({e}); stderr: {seen}{}", stderr(&out)));
    (out.status.code().unwrap_or(-1), summary["dates"].as_array().unwrap().clone(), ws)
}

#[test]
fn an_interrupted_backfill_starts_no_new_date_and_keeps_every_committed_one() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let (exit, dates, ws) = interrupted_backfill(signal);
        assert_eq!(exit, code, "{signal}: {dates:?}");
        let committed: Vec<&str> =
            dates.iter().filter(|d| d["status"] == "committed").map(|d| d["date"].as_str().unwrap()).collect();
        let not_started = dates.iter().filter(|d| d["status"] == "not_started").count();
        assert!(!committed.is_empty() && not_started > 0, "{signal}: {dates:?}");
        assert_eq!(committed.len() + not_started, 8, "{signal}: every date is committed or not started: {dates:?}");
        let snapshot = ws.snapshot();
        assert_eq!(snapshot.rows.keys().map(String::as_str).collect::<Vec<_>>(), committed, "{signal}");
        for date in &dates {
            if date["status"] == "committed" {
                let loaded = snapshot.rows[date["date"].as_str().unwrap()].len() as u64;
                assert_eq!(loaded, date["rows_valid"].as_u64().unwrap(), "{signal}: a committed date is whole");
            }
        }
        assert_eq!(json_lines(&ws.shoplake(&["history", "--format", "json"]).stdout).len(), committed.len() + 1);
    }
}

/// `--memory-limit` bounds DataFusion's operators: a query whose aggregate
/// cannot spill (all of a day's ids in one string) fails within a small
/// limit (exit 2, saying what to raise), and runs within a larger one.
#[test]
fn the_memory_limit_bounds_queries_and_says_what_to_raise() {
    let ws = Workspace::new();
    ws.write_export(D1, export(&shops(D1, 0..250_000, "True", "shopify_app_store")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    // 250,000 ids of 6-7 characters, 200 times each: ~330 MB in one
    // accumulator, far past 64MiB.
    let all_ids = "SELECT length(string_agg(repeat(id, 200), ',')) AS n FROM shopify_configuration";
    let small = ws.shoplake(&["--memory-limit", "64MiB", "query", "--sql", all_ids]);
    assert_eq!(small.status.code(), Some(2), "{}", stderr(&small));
    assert!(stderr(&small).contains("raise --memory-limit"), "{}", stderr(&small));
    let large = ws.shoplake(&["--memory-limit", "2GiB", "query", "--sql", all_ids, "--format", "json"]);
    assert!(large.status.success(), "{}", stderr(&large));
    let ids_length: i64 = (0..250_000).map(|i: i64| format!("s{i:05}").len() as i64 * 200 + 1).sum::<i64>() - 1;
    assert_eq!(json_lines(&large.stdout)[0]["n"], ids_length);
    let refused = ws.shoplake(&["--memory-limit", "63MiB", "query", "--sql", "SELECT 1"]);
    assert_eq!(refused.status.code(), Some(2), "below the floor: {}", stderr(&refused));
}
