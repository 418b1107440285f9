//! The bad nights (issue #8), on local files, through the real binary: each
//! test checks the table's contents afterwards, and the case just beside
//! the guard it tests.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{export, line, rejects_of, Workspace, HEADER};

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";

fn shops(date: &str, n: usize, flag: &str) -> Vec<String> {
    (0..n).map(|i| line(&format!("s{i:05}"), "APP", flag, "1", "[0]", "shopify_", date)).collect()
}

fn value<'a>(row: &'a [String], column: &str) -> &'a str {
    let prefix = format!("{column}=");
    row.iter().find_map(|v| v.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no column {column}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_reexport_that_changes_every_row_is_loaded_and_an_empty_one_is_refused() {
    let ws = Workspace::new();
    ws.write_export(D1, export(&shops(D1, 300, "True")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);

    ws.write_export(D1, export(&shops(D1, 300, "False")));
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "updates are not deletions: {report}");
    assert_eq!(
        (report["rows_inserted"].as_u64(), report["rows_updated"].as_u64(), report["rows_deleted"].as_u64()),
        (Some(0), Some(300), Some(0))
    );
    let loaded = ws.snapshot();
    assert!(loaded.rows[D1].values().all(|row| value(row, "autocomplete_enabled") == "false"));

    // Just beside it: an export without rows over the same date.
    ws.write_export(D1, format!("{HEADER}\n"));
    let out = ws.shoplake(&["ingest", "--date", D1]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("would delete 300 rows"), "{}", stderr(&out));
    assert_eq!(ws.snapshot(), loaded, "nothing written");
}

#[test]
fn an_open_quote_breaks_only_its_own_line_in_the_middle_or_at_the_end() {
    for bad in [50usize, 199] {
        let ws = Workspace::new();
        let mut lines = shops(D1, 200, "True");
        lines[bad] = line(&format!("s{bad:05}"), "APP", "True", "1", "\"[0, 4", "shopify_", D1);
        ws.write_export(D1, export(&lines));
        let (code, report) = ws.ingest(D1, &[]);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["rows_read"], 200, "line {bad}: {report}");
        assert_eq!(report["rows_rejected"], 1, "line {bad}: {report}");
        assert_eq!(report["rows_valid"], 199, "line {bad}: {report}");
        let day = &ws.snapshot().rows[D1];
        assert_eq!(day.len(), 199, "every other shop is loaded (bad line {bad})");
        assert!(day.contains_key(&format!("s{:05}", 199 - usize::from(bad == 199))), "the lines after it are read");
        let rejects = rejects_of(&ws.rejects_table());
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].0, bad as i64 + 2, "numbered by its line (the header is line 1)");
        assert!(rejects[0].2.contains("unterminated quote"), "{:?}", rejects[0]);
    }
}

#[test]
fn blank_lines_are_filtered_and_counted() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 4, "True");
    lines.insert(2, String::new());
    lines.insert(3, "   \t".to_string());
    let mut text = export(&lines);
    text.push_str("\r\n"); // a trailing empty line, CRLF
    ws.write_export(D1, text);
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_read"], 7);
    assert_eq!(report["rows_filtered"], 3);
    assert_eq!(report["rows_rejected"], 0);
    assert_eq!(report["rows_valid"], 4);
}

#[test]
fn a_load_that_would_delete_too_much_is_refused_with_the_numbers() {
    let ws = Workspace::new();
    ws.write_export(D1, export(&shops(D1, 1000, "True")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let loaded = ws.snapshot();

    // 150 of 1000 gone (15% > 10%, and more than 100): refused.
    ws.write_export(D1, export(&shops(D1, 850, "True")));
    let out = ws.shoplake(&["ingest", "--date", D1]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("would delete 150 of 1000 rows"), "{}", stderr(&out));
    assert_eq!(ws.snapshot(), loaded, "nothing written");

    // Allowed explicitly: loaded, and the history says how many of how many.
    let (code, report) = ws.ingest(D1, &["--max-delete-ratio", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_deleted"], 150);
    let latest = &ws.history()[0];
    assert_eq!((latest["rows_deleted"].as_i64(), latest["rows_before"].as_i64()), (Some(150), Some(850 + 150)));

    // Just beside the guard: exactly 100 deleted (the floor) is loaded, however large the share...
    ws.write_export(D1, export(&shops(D1, 750, "True")));
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_deleted"], 100);
    // ...and so is more than 100 under 10%.
    ws.write_export(D2, export(&shops(D2, 2000, "True")));
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    ws.write_export(D2, export(&shops(D2, 1899, "True")));
    let (code, report) = ws.ingest(D2, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_deleted"], 101);
}

/// For every version, the rejects `query --as-of` shows are, date by date,
/// those of the last load of that date up to that version.
fn assert_rejects_follow_each_version(ws: &Workspace) {
    let history = ws.history();
    let latest = history[0]["version"].as_i64().unwrap();
    for version in 1..=latest {
        let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
        for entry in history.iter().rev().filter(|e| e["version"].as_i64().unwrap() <= version) {
            if let (Some(date), Some(rejected)) = (entry["export_date"].as_str(), entry["rows_rejected"].as_i64()) {
                expected.insert(date.to_string(), rejected);
            }
        }
        expected.retain(|_, n| *n > 0);
        let mut shown: std::collections::BTreeMap<String, i64> = Default::default();
        for (date, _, _) in ws.paired_rejects(Some(&version.to_string())) {
            *shown.entry(date).or_default() += 1;
        }
        assert_eq!(shown, expected, "rejects as of version {version}");
    }
}

#[test]
fn rejects_are_paired_with_table_versions_by_record_even_with_interleaved_loads() {
    let ws = Workspace::new();
    let raw = ws.raw();
    ws.generate(D1, "2019-04-06", 400, &["--dirty"]);
    let out = ws.shoplake(&["backfill", "--from", D1, "--to", "2019-04-06", "--parallel", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Re-exports of three dates with one more bad line each, loaded in parallel again.
    for date in [D2, "2019-04-03", "2019-04-05"] {
        let path = raw.join(format!("{date}.csv"));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("x-{date},x.myshopify.com,APP,maybe,False,1,[0],True,False,True,False,3,True,True,False,False,True,False,shopify_,False,direct,{date}\n"));
        std::fs::write(&path, text).unwrap();
    }
    let out = ws.shoplake(&["backfill", "--from", D2, "--to", "2019-04-05", "--parallel", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_rejects_follow_each_version(&ws);

    // The latest pairing equals what loading the same files one by one gives.
    let reference = Workspace::new();
    std::fs::create_dir_all(reference.raw()).unwrap();
    for entry in std::fs::read_dir(&raw).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), reference.raw().join(entry.file_name())).unwrap();
    }
    for day in 1..=6 {
        assert_eq!(reference.ingest(&format!("2019-04-0{day}"), &[]).0, 0);
    }
    assert_eq!(ws.paired_rejects(None), reference.paired_rejects(None));

    // The rejects table keeps its log as long as the table.
    let first_commit =
        std::fs::read_to_string(ws.rejects_table().join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(first_commit.contains("\"delta.logRetentionDuration\":\"interval 3650 days\""), "{first_commit}");
}

#[test]
fn only_rejects_changing_still_records_which_rejects_go_with_the_table() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 300, "True");
    lines.push(line("bad1", "APP", "maybe", "1", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let before = ws.snapshot();

    // Same valid rows, another bad line: the rows stay, the rejects change.
    *lines.last_mut().unwrap() = line("bad2", "APP", "perhaps", "1", "[0]", "shopify_", D1);
    ws.write_export(D1, export(&lines));
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "committed", "a commit without data records the new rejects: {report}");
    assert_eq!(
        (report["rows_inserted"].as_u64(), report["rows_updated"].as_u64(), report["rows_deleted"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(ws.snapshot().rows, before.rows);
    assert_eq!(ws.snapshot().files, before.files, "no data file added or removed");
    let latest = report["table_version"].as_i64().unwrap().to_string();
    assert!(ws.paired_rejects(Some(&latest))[0].2.contains("'perhaps'"));
    let previous = (report["table_version"].as_i64().unwrap() - 1).to_string();
    assert!(ws.paired_rejects(Some(&previous))[0].2.contains("'maybe'"));

    // Beside it: the same file again changes nothing at all.
    let (code, again) = ws.ingest(D1, &[]);
    assert_eq!(code, 0);
    assert_eq!(again["status"], "unchanged", "{again}");
    assert_eq!(again["table_version"], report["table_version"]);
}

#[test]
fn errors_reading_the_rejects_are_errors_in_restore_and_query() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 100, "True");
    lines.push(line("bad", "APP", "maybe", "1", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    ws.write_export(D2, export(&shops(D2, 10, "True")));
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    ws.write_export(D1, export(&shops(D1, 100, "False")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let before = ws.snapshot();
    let rejects_log = ws.rejects_table().join("_delta_log");
    let listing = |dir: &Path| {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let rejects_before = listing(&rejects_log);
    // A damaged commit of the rejects table.
    std::fs::write(rejects_log.join("00000000000000000001.json"), "{ not json").unwrap();

    let out = ws.shoplake(&["restore", "--version", "1"]);
    assert_ne!(out.status.code(), Some(0), "restore must fail, not empty the rejects: {}", stderr(&out));
    assert!(stderr(&out).contains("rejects"), "{}", stderr(&out));
    assert_eq!(ws.snapshot(), before, "the table is as it was");
    assert_eq!(listing(&rejects_log), rejects_before, "no rejects commit either");

    let out = ws.shoplake(&["query", "--as-of", "1", "--sql", "SELECT count(*) FROM shopify_configuration_rejects"]);
    assert_ne!(out.status.code(), Some(0), "an unreadable rejects table is an error, not an empty one");
}

/// Two processes load the same date from different files at the same time.
#[test]
fn overlapping_runs_of_one_date_end_with_the_table_and_its_rejects_from_one_file() {
    let ws = Workspace::new();
    let sources = [ws.dir.path().join("raw-a"), ws.dir.path().join("raw-b")];
    for (source, (flag, bad)) in sources.iter().zip([("True", "maybe"), ("False", "perhaps")]) {
        std::fs::create_dir_all(source).unwrap();
        let mut lines = shops(D1, 20_000, flag);
        lines.push(line("bad", "APP", bad, "1", "[0]", "shopify_", D1));
        std::fs::write(source.join(format!("{D1}.csv")), export(&lines)).unwrap();
    }
    for round in 0..4 {
        let children: Vec<_> = (0..2)
            .map(|i| {
                let source = &sources[(i + round) % 2];
                Command::new(env!("CARGO_BIN_EXE_shoplake"))
                    .args(["ingest", "--date", D1, "--format", "json", "--source", source.to_str().unwrap()])
                    .env("SHOPLAKE_TABLE", ws.table())
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", stderr(&out));
        }
        let day = &ws.snapshot().rows[D1];
        let flags: std::collections::BTreeSet<&str> = day.values().map(|r| value(r, "autocomplete_enabled")).collect();
        assert_eq!(flags.len(), 1, "round {round}: rows from both files: {flags:?}");
        let expected_reject = if flags.contains("true") { "'maybe'" } else { "'perhaps'" };
        let paired = ws.paired_rejects(None);
        assert_eq!(paired.len(), 1, "round {round}: {paired:?}");
        assert!(paired[0].2.contains(expected_reject), "round {round}: rejects of the other file: {paired:?}");
        let raw = rejects_of(&ws.rejects_table());
        assert!(
            raw.len() == 1 && raw[0].2.contains(expected_reject),
            "round {round}: the rejects table itself: {raw:?}"
        );
        let source = ws.history()[0]["source"].as_str().unwrap().to_string();
        let winner = if flags.contains("true") { "raw-a" } else { "raw-b" };
        assert!(source.contains(winner), "round {round}: the last commit names {source}");
    }
}

#[test]
fn a_rejects_table_on_unreachable_storage_exits_5_and_leaves_the_table_alone() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 50, "True");
    lines.push(line("bad", "APP", "maybe", "1", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    let out = Command::new(env!("CARGO_BIN_EXE_shoplake"))
        .args([
            "ingest",
            "--date",
            D1,
            "--max-reject-ratio",
            "0.5",
            "--rejects-table",
            "s3://lake/shopify_configuration_rejects",
        ])
        .env("SHOPLAKE_SOURCE", ws.raw())
        .env("SHOPLAKE_TABLE", ws.table())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("SHOPLAKE_S3_RETRY_TIMEOUT", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(!ws.table().exists(), "the table was not even created");
}

#[test]
fn missing_credentials_are_a_configuration_error() {
    let ws = Workspace::new();
    let home = ws.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shoplake"))
        .args(["ingest", "--date", D1, "--source", "s3://raw/exports"])
        .env_clear()
        .env("HOME", &home)
        .env("SHOPLAKE_TABLE", ws.table())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no AWS credentials"), "{}", stderr(&out));
}

fn data_files(table: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![table.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn vacuum_retentions_work_as_documented_and_really_delete() {
    let ws = Workspace::new();
    // Three versions of D1 and one of D2: the re-loads remove files.
    ws.write_export(D1, export(&shops(D1, 200, "True")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    ws.write_export(D2, export(&shops(D2, 50, "True")));
    assert_eq!(ws.ingest(D2, &[]).0, 0);
    ws.write_export(D1, export(&shops(D1, 200, "False")));
    assert_eq!(ws.ingest(D1, &[]).0, 0);
    let latest = ws.snapshot();
    let states: Vec<_> = (1..=3)
        .map(|v| {
            ws.query(
                "SELECT count(*) AS n, sum(CAST(autocomplete_enabled AS INT)) AS t FROM shopify_configuration",
                Some(&v.to_string()),
            )
        })
        .collect();
    let files = data_files(&ws.table());
    assert!(files.len() > latest.files.values().map(Vec::len).sum::<usize>(), "some files were removed by the re-load");
    // A file no commit references, as a killed load leaves: young, so kept whatever --force says.
    let orphan = ws.table().join(format!("export_date={D2}")).join("part-orphan-of-a-killed-load.parquet");
    std::fs::copy(&files[0], &orphan).unwrap();

    let maintain = |args: &[&str]| {
        let mut all = vec!["maintain", "--vacuum"];
        all.extend_from_slice(args);
        ws.shoplake(&all)
    };
    // 10 days: between the 7-day floor and the table's 30-day property.
    let out = maintain(&["--retention-hours", "240"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("vacuum deleted 0 files"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Under 7 days needs --force; with it, a day keeps everything removed within the day.
    assert_eq!(maintain(&["--retention-hours", "24"]).status.code(), Some(2));
    let out = maintain(&["--retention-hours", "24", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (v, state) in states.iter().enumerate() {
        let version = (v + 1).to_string();
        assert_eq!(
            &ws.query(
                "SELECT count(*) AS n, sum(CAST(autocomplete_enabled AS INT)) AS t FROM shopify_configuration",
                Some(&version)
            ),
            state,
            "version {version} within the retention"
        );
    }
    // A dry run lists what retention 0 would delete, and deletes nothing.
    let out = maintain(&["--retention-hours", "0", "--force", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().ends_with(".parquet") && l.contains("export_date="))
        .count();
    assert!(listed > 0, "{}", String::from_utf8_lossy(&out.stdout));
    let mut with_orphan = files.clone();
    with_orphan.push(orphan.clone());
    with_orphan.sort();
    assert_eq!(data_files(&ws.table()), with_orphan, "a dry run deletes nothing");
    // Retention 0: the removed files really go; the latest version reads as before.
    let out = maintain(&["--retention-hours", "0", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let left = data_files(&ws.table());
    assert!(left.len() < with_orphan.len(), "files were deleted: {} -> {}", with_orphan.len(), left.len());
    assert!(orphan.exists(), "an unreferenced file younger than the longest load is kept");
    let mut after = ws.snapshot();
    assert_eq!(after.rows, latest.rows);
    after.version = latest.version;
    assert_eq!(after.files, latest.files);
}

#[test]
fn a_table_given_with_or_without_a_trailing_slash_is_one_table() {
    let ws = Workspace::new();
    let mut lines = shops(D1, 20, "True");
    lines.push(line("bad", "APP", "maybe", "1", "[0]", "shopify_", D1));
    ws.write_export(D1, export(&lines));
    let table = ws.table();
    let with_slash = format!("{}/", table.display());
    let (code, first) = ws.ingest(D1, &["--table", &with_slash, "--max-reject-ratio", "0.5"]);
    assert_eq!(code, 0, "{first}");
    let (code, second) = ws.ingest(D1, &["--table", table.to_str().unwrap(), "--max-reject-ratio", "0.5"]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(second["status"], "unchanged", "the same table: {second}");
    assert_eq!(first["table"], second["table"]);
    assert!(!table.join("_rejects").exists(), "no rejects table inside the table");
    assert_eq!(rejects_of(&ws.rejects_table()).len(), 1);
}
