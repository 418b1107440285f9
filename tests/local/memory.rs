//! The key indexes past their share of `--memory-limit` (issue #26): a day
//! too large for them at the smallest limit loads and re-loads on disk, and
//! ends exactly as the same loads in memory: rows, counts and change feed.

use std::process::Output;

use crate::common::*;

const D1: &str = "2026-05-01";
/// Past what a key index holds in memory at `--memory-limit 64MiB` (3/8
/// of it each: 458,752 keys), far under it at the default.
const ROWS: usize = 480_000;

fn shop(i: usize, count: &str) -> String {
    line(&format!("s{i:06}"), "APP", "True", count, "[0]", "shopify_", D1)
}

/// `shoplake <args>` in `ws` with the key indexes' log lines kept.
fn run(ws: &Workspace, limit: Option<&str>, args: &[&str]) -> Output {
    let limited: Vec<&str> = match limit {
        Some(limit) => ["--memory-limit", limit].into_iter().chain(args.iter().copied()).collect(),
        None => args.to_vec(),
    };
    ws.command(&limited).env("RUST_LOG", "warn,shoplake=info").output().expect("run shoplake")
}

fn ingest(ws: &Workspace, limit: Option<&str>) -> (serde_json::Value, String) {
    let out = run(ws, limit, &["ingest", "--date", D1, "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (serde_json::from_slice(&out.stdout).expect("a JSON report"), stderr)
}

/// The counts a load reports, without what differs between two runs.
fn counts(report: &serde_json::Value) -> Vec<(&'static str, serde_json::Value)> {
    [
        "rows_read",
        "rows_valid",
        "rows_duplicate",
        "rows_rejected",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
        "rows_unchanged",
    ]
    .into_iter()
    .map(|name| (name, report[name].clone()))
    .collect()
}

/// The change feed of the table's last version, sorted.
fn last_changes(ws: &Workspace) -> Vec<String> {
    let version = ws.snapshot().version.expect("a table").to_string();
    let out = run(ws, None, &["changes", "--from-version", &version, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut changes: Vec<String> = json_lines(&out.stdout)
        .into_iter()
        .map(|mut change| {
            // When it was committed differs between the two tables.
            change.as_object_mut().unwrap().retain(|name, _| !name.starts_with("_commit"));
            change.to_string()
        })
        .collect();
    changes.sort();
    changes
}

#[test]
fn a_day_past_the_key_indexes_share_of_memory_loads_on_disk_as_in_memory() {
    // The first export repeats keys: later in the same batch, far down the
    // file (in another batch), and a key three times.
    let mut first: Vec<String> = (0..ROWS).map(|i| shop(i, "1")).collect();
    first.insert(10, shop(3, "2"));
    first.push(shop(7, "2"));
    first.push(shop(200_000, "5"));
    first.push(shop(7, "3"));
    // The corrected re-export: 1% changed, 500 gone, 300 new, and again
    // keys repeated, one of them a key that changes and one that does not.
    let mut second: Vec<String> = (500..ROWS)
        .map(|i| if i % 100 == 0 { shop(i, "9") } else { shop(i, "1") })
        .chain((ROWS..ROWS + 300).map(|i| shop(i, "1")))
        .collect();
    second.push(shop(1_000, "4"));
    second.push(shop(1_001, "1"));
    second.insert(5, shop(ROWS - 1, "7"));

    let (memory, disk) = (Workspace::new(), Workspace::new());
    let mut reports = Vec::new();
    for (export_lines, loaded) in [(&first, "first load"), (&second, "re-load")] {
        for ws in [&memory, &disk] {
            ws.write_export(D1, export(export_lines));
        }
        let (in_memory, quiet) = ingest(&memory, None);
        let (on_disk, said) = ingest(&disk, Some("64MiB"));
        assert!(!quiet.contains("spilled to disk"), "{loaded}: the default limit holds the indexes: {quiet}");
        assert!(said.contains("the export's key index is past its share"), "{loaded}: {said}");
        if loaded == "re-load" {
            assert!(said.contains("the date's key index is past its share"), "{loaded}: {said}");
        }
        assert_eq!(counts(&on_disk), counts(&in_memory), "{loaded}: the same counts");
        let (on_disk_rows, in_memory_rows) = (disk.snapshot().rows, memory.snapshot().rows);
        let differ = on_disk_rows[D1].iter().filter(|(key, row)| in_memory_rows[D1].get(*key) != Some(row)).count();
        assert!(
            on_disk_rows == in_memory_rows,
            "{loaded}: the same rows ({} on disk, {} in memory, {differ} differ)",
            on_disk_rows[D1].len(),
            in_memory_rows[D1].len()
        );
        assert_eq!(last_changes(&disk), last_changes(&memory), "{loaded}: the same change feed");
        reports.push(on_disk);
    }
    // And the counts are the export's, not just the same twice.
    assert_eq!(
        (reports[0]["rows_duplicate"].as_u64(), reports[0]["rows_valid"].as_u64()),
        (Some(4), Some(ROWS as u64))
    );
    let reload: Vec<u64> = ["rows_duplicate", "rows_inserted", "rows_updated", "rows_deleted", "rows_unchanged"]
        .iter()
        .map(|name| reports[1][name].as_u64().unwrap())
        .collect();
    let updated = (500..ROWS).filter(|i| i % 100 == 0).count() as u64;
    assert_eq!(reload, [3, 300, updated, 500, (ROWS - 500) as u64 - updated]);
    let rows = &disk.snapshot().rows[D1];
    assert_eq!(rows.len(), ROWS - 500 + 300);
    let count =
        |key: &str| rows[key].iter().find_map(|v| v.strip_prefix("nbr_merchandised_queries=")).unwrap().to_string();
    assert_eq!((count("s001000"), count("s479999"), count("s200000")), ("4".into(), "1".into(), "9".into()));
}
