//! Purging an erased value (issue #27, item 3): `erase --purge` deletes the
//! files of older versions holding it (data and change data, in the table
//! and its rejects table) and only them, expires the log files whose
//! statistics hold it, and records which versions can no longer be read:
//! `history` says so, `query --as-of` and `changes` refuse them (exit 2).
//! `erase --verify` then finds nothing, and finds a purged file put back.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::erase::{exports, ids, ingest, rejected_ids, shop, shoplake, D1, D2, KEY};

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            match entry.file_type().unwrap().is_dir() {
                true => pending.push(entry.path()),
                false => found.push(entry.path().strip_prefix(dir).unwrap().to_path_buf()),
            }
        }
    }
    found.sort();
    found
}

fn verify(ws: &Workspace, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut all = vec!["erase", "--verify", "--format", "json"];
    all.extend_from_slice(args);
    let out = shoplake(ws, None, &all);
    (out.status.code(), json_lines(&out.stdout))
}

/// s3 loaded on D1, rejected on D2, then changed on D1 (a re-load with
/// change data): after `erase --key s3 --purge`, nothing holds s3, the
/// versions that read a purged file are named and refused, the others
/// (and every file not holding s3) stay, and no load brings s3 back.
#[test]
fn a_purge_leaves_nothing_of_the_value_and_names_the_versions_it_took() {
    let ws = Workspace::new();
    // A version before s3 was ever loaded: it must stay readable.
    ws.write_export(D1, export(&[shop("s1", "1", D1)]));
    ingest(&ws, D1);
    let untouched = ws.snapshot().version.unwrap();
    exports(&ws);
    ingest(&ws, D1);
    ingest(&ws, D2);
    let mut lines: Vec<String> = ["s1", "s2", "s4", "s5"].iter().map(|id| shop(id, "1", D1)).collect();
    lines.extend([shop("s3", "7", D1), shop("s30", "2", D1)]);
    ws.write_export(D1, export(&lines));
    ingest(&ws, D1);
    let before = ws.snapshot().version.unwrap();
    let (code, _) = verify(&ws, &["--key", "s3"]);
    assert_eq!(code, Some(4), "s3 is there before");
    let kept = ws.table().with_extension("kept");
    copy_dir(&ws.table(), &kept);

    // A reason holding the value would keep it in the log: refused, nothing written.
    let leaky = shoplake(&ws, Some(KEY), &["erase", "--key", "s3", "--reason", "shop/redact s3", "--purge"]);
    assert_eq!(leaky.status.code(), Some(2), "{}", String::from_utf8_lossy(&leaky.stderr));
    assert_eq!(ws.snapshot().version, Some(before));
    let metrics = ws.dir.path().join("erase.prom");
    let metrics_file = metrics.to_str().unwrap();
    let args = ["erase", "--key", "s3", "--reason", "shop/redact", "--purge", "--format", "json"];
    let out = shoplake(&ws, Some(KEY), &[&args[..], &["--metrics-file", metrics_file]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased = &json_lines(&out.stdout)[0];
    // Its metrics: a series per table, never per value.
    let metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("shoplake_erase_rows{") && l.ends_with(" 1")), "{metrics}");
    assert!(metrics.contains("shoplake_erase_last_success_timestamp_seconds{") && !metrics.contains("\"s3\""));
    let erasure = erased["erasure_id"].as_str().unwrap().to_string();
    let (table, rejects) = (&erased["purged"][0], &erased["purged"][1]);
    assert!(!table["files_deleted"].as_array().unwrap().is_empty(), "{erased}");
    assert!(!rejects["files_deleted"].as_array().unwrap().is_empty(), "the rejected line's file: {erased}");
    assert!(table["files_deleted"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("_change_data")));
    assert!(
        table["still_holding"].as_array().unwrap().is_empty()
            && rejects["still_holding"].as_array().unwrap().is_empty()
    );

    // Nothing holds s3; s30 (which holds "s3" in no whole field) and s1 are untouched.
    let (code, evidence) = verify(&ws, &["--key", "s3"]);
    assert_eq!(code, Some(0), "{evidence:?}");
    assert!(evidence.iter().all(|e| e["result"] == "absent"));
    assert_eq!(ids(&ws, D1), ["s1", "s2", "s30", "s4", "s5"]);
    assert_eq!(rejected_ids(&ws), ["s30"]);
    // Only files holding s3 went: every other file of every version is still there.
    let deleted: Vec<String> =
        table["files_deleted"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().into()).collect();
    for file in files_under(&kept).iter().filter(|f| !f.starts_with("_delta_log")) {
        let path = file.to_string_lossy().to_string();
        assert_eq!(ws.table().join(file).exists(), !deleted.contains(&path), "{path}");
    }

    // The versions that read a purged file are named and refused; the one before s3 reads.
    let purged: Vec<i64> = ws
        .history()
        .iter()
        .filter(|v| v["purged"].as_str().is_some_and(|p| p.starts_with("unreadable") && p.contains(&erasure)))
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert!(purged.contains(&before) && !purged.contains(&untouched), "{purged:?}");
    let refused = shoplake(&ws, None, &["query", "--as-of", &before.to_string(), "--sql", "SELECT 1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&erasure));
    let restore = shoplake(&ws, Some(KEY), &["restore", "--version", &before.to_string()]);
    assert_eq!(restore.status.code(), Some(2), "a purged version is not restored");
    assert!(String::from_utf8_lossy(&restore.stderr).contains(&erasure));
    let old = ws.query("SELECT id FROM shopify_configuration", Some(&untouched.to_string()));
    assert_eq!(old.len(), 1, "the version before s3 still reads: {old:?}");
    let changes = shoplake(&ws, None, &["changes", "--from-version", &before.to_string()]);
    assert_eq!(changes.status.code(), Some(2), "{}", String::from_utf8_lossy(&changes.stderr));
    // The purge's own version changed no row: its changes are none (a range without a data file reads).
    let record = table["version"].as_i64().unwrap().to_string();
    let none =
        shoplake(&ws, None, &["changes", "--from-version", &record, "--to-version", &record, "--format", "json"]);
    assert!(none.status.success(), "{}", String::from_utf8_lossy(&none.stderr));
    assert!(json_lines(&none.stdout).is_empty());

    // Re-loads and a back-fill keep s3 out, counted suppressed.
    assert_eq!(ingest(&ws, D1)["rows_suppressed"], 1);
    let backfill = shoplake(&ws, Some(KEY), &["backfill", "--from", D1, "--to", D2, "--max-reject-ratio", "1"]);
    assert!(backfill.status.success(), "{}", String::from_utf8_lossy(&backfill.stderr));
    assert_eq!(verify(&ws, &["--key", "s3"]).0, Some(0));

    // A purged file put back by hand: verify finds it (the check can fail).
    let planted = deleted.iter().find(|f| !f.contains("_change_data")).unwrap();
    std::fs::copy(kept.join(planted), ws.table().join(planted)).unwrap();
    let (code, evidence) = verify(&ws, &["--key", "s3"]);
    assert_eq!(code, Some(4));
    assert!(evidence[0]["holding"].as_array().unwrap().iter().any(|h| h["path"] == planted.as_str()), "{evidence:?}");
    // Purging again takes it, and records nothing new for the erasure.
    let again = shoplake(&ws, Some(KEY), &["erase", "--key", "s3", "--reason", "retry", "--purge", "--format", "json"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(json_lines(&again.stdout)[0]["erasure_id"], erasure.as_str(), "the same erasure");
    assert_eq!(verify(&ws, &["--key", "s3"]).0, Some(0));
}

/// The key's statistics: s1 is the smallest id of its files, so the log's
/// statistics hold it; the purge writes a checkpoint and expires the log
/// up to the newest file holding it. By the erasable domain, the log never
/// holds the value (no statistics on erasable columns): no log expires.
#[test]
fn a_key_in_the_statistics_expires_the_log_and_a_domain_never_is_there() {
    let ws = Workspace::new();
    exports(&ws);
    ingest(&ws, D1);
    ingest(&ws, D2);
    let out = shoplake(
        &ws,
        Some(KEY),
        &["erase", "--where", "shop_domain=s2.myshopify.com", "--reason", "r", "--purge", "--format", "json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased = &json_lines(&out.stdout)[0];
    assert!(erased["purged"][0]["log_expired_through"].is_null(), "{erased}");
    assert_eq!(verify(&ws, &["--where", "shop_domain=s2.myshopify.com"]).0, Some(0));
    let first_commit = ws.table().join(format!("_delta_log/{:020}.json", 0));
    assert!(first_commit.exists(), "the log is whole");

    let (code, evidence) = verify(&ws, &["--key", "s1"]);
    assert_eq!(code, Some(4));
    assert!(evidence[0]["holding"].as_array().unwrap().iter().any(|h| h["kind"] == "commit"), "{evidence:?}");
    let out = shoplake(&ws, Some(KEY), &["erase", "--key", "s1", "--reason", "r", "--purge", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased = &json_lines(&out.stdout)[0];
    let through = erased["purged"][0]["log_expired_through"].as_i64().expect("the log expired");
    assert!(!first_commit.exists());
    assert_eq!(verify(&ws, &["--key", "s1"]).0, Some(0));
    // The table reads, loads and keeps its history from the checkpoint on.
    assert_eq!(ids(&ws, D1), ["s3", "s30", "s4", "s5"]);
    assert_eq!(ingest(&ws, D1)["rows_suppressed"], 2);
    assert!(ws.history().iter().all(|v| v["version"].as_i64().unwrap() > through));
    let refused = shoplake(&ws, None, &["query", "--as-of", "1", "--sql", "SELECT 1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let changes = shoplake(&ws, None, &["changes", "--from-version", "1"]);
    assert_eq!(changes.status.code(), Some(2), "{}", String::from_utf8_lossy(&changes.stderr));
    // The erasure's own version, after the erasure but before the checkpoint the log now starts
    // from, cannot be read either: restoring it is refused (exit 2), naming the erasure.
    let erased_at = erased["table_version"].as_i64().unwrap().to_string();
    let restore = shoplake(&ws, Some(KEY), &["restore", "--version", &erased_at]);
    assert_eq!(restore.status.code(), Some(2), "{}", String::from_utf8_lossy(&restore.stderr));
    assert!(String::from_utf8_lossy(&restore.stderr).contains(erased["erasure_id"].as_str().unwrap()));
}

fn copy_dir(from: &Path, to: &Path) {
    for file in files_under(from) {
        std::fs::create_dir_all(to.join(&file).parent().unwrap()).unwrap();
        std::fs::copy(from.join(&file), to.join(&file)).unwrap();
    }
}
