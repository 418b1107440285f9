//! Erasing a shop (issue #27, items 1 and 2): `shoplake erase` removes
//! every row holding the value from every date and every rejected line
//! holding it, records the erasure by the value's keyed hash, and no later
//! load, re-load or back-fill brings it back (counted `suppressed`).

use std::process::Output;

use crate::common::*;

pub(crate) const D1: &str = "2026-05-01";
pub(crate) const D2: &str = "2026-05-02";
pub(crate) const KEY: &str = "0123456789abcdef-test-key";

pub(crate) fn shop(id: &str, count: &str, date: &str) -> String {
    line(id, "APP", "True", count, "[0]", "shopify_", date)
}

/// Shops s1..s5 and s30 on both dates; on D2, s3's line and s30's are
/// rejected (a count that is not one). s30 holds "s3" inside its values
/// but never as a whole field: it is not erased with s3.
pub(crate) fn exports(ws: &Workspace) {
    for date in [D1, D2] {
        let mut lines: Vec<String> = ["s1", "s2", "s4", "s5"].iter().map(|id| shop(id, "1", date)).collect();
        let bad = if date == D2 { "x" } else { "2" };
        lines.push(shop("s3", bad, date));
        lines.push(shop("s30", bad, date));
        ws.write_export(date, export(&lines));
    }
}

pub(crate) fn shoplake(ws: &Workspace, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = ws.command(args);
    if let Some(key) = key {
        command.env("SHOPLAKE_ERASURE_KEY", key);
    }
    command.output().expect("run shoplake")
}

pub(crate) fn ingest(ws: &Workspace, date: &str) -> serde_json::Value {
    // Two of six lines rejected on D2: past the default reject ratio.
    let out = shoplake(ws, Some(KEY), &["ingest", "--date", date, "--format", "json", "--max-reject-ratio", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a report")
}

pub(crate) fn ids(ws: &Workspace, date: &str) -> Vec<String> {
    ws.snapshot().rows.get(date).map(|rows| rows.keys().cloned().collect()).unwrap_or_default()
}

pub(crate) fn rejected_ids(ws: &Workspace) -> Vec<String> {
    let mut ids: Vec<String> = rejects_of(&ws.rejects_table())
        .into_iter()
        .map(|(_, raw, _)| raw.split(',').next().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn an_erased_key_leaves_every_date_and_its_rejects_and_does_not_come_back() {
    let ws = Workspace::new();
    exports(&ws);
    ingest(&ws, D1);
    ingest(&ws, D2);
    assert_eq!(ids(&ws, D1), ["s1", "s2", "s3", "s30", "s4", "s5"]);
    assert_eq!(rejected_ids(&ws), ["s3", "s30"]);
    let before = ws.snapshot().version.unwrap();

    // A dry run counts, writes nothing, and needs no key.
    let dry =
        shoplake(&ws, None, &["erase", "--key", "s3", "--reason", "shop/redact", "--dry-run", "--format", "json"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let counted = &json_lines(&dry.stdout)[0];
    assert_eq!((counted["rows_erased"].as_u64(), counted["rejects_erased"].as_u64()), (Some(1), Some(1)));
    assert_eq!(ws.snapshot().version, Some(before));
    // Without the key, nothing is erased (exit 2).
    let keyless = shoplake(&ws, None, &["erase", "--key", "s3", "--reason", "shop/redact"]);
    assert_eq!(keyless.status.code(), Some(2), "{}", String::from_utf8_lossy(&keyless.stderr));
    assert_eq!(ws.snapshot().version, Some(before));

    let out = shoplake(&ws, Some(KEY), &["erase", "--key", "s3", "--reason", "shop/redact", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased = &json_lines(&out.stdout)[0];
    assert_eq!((erased["rows_erased"].as_u64(), erased["rejects_erased"].as_u64()), (Some(1), Some(1)));
    assert_eq!(ws.snapshot().version, Some(before + 1), "one version on the table");
    assert_eq!(ids(&ws, D1), ["s1", "s2", "s30", "s4", "s5"]);
    assert_eq!(ids(&ws, D2), ["s1", "s2", "s4", "s5"]);
    assert_eq!(rejected_ids(&ws), ["s30"], "s3's rejected line goes, s30's stays");
    // The commit says which erasure and the keyed hash, never the value.
    let log = std::fs::read_to_string(ws.table().join(format!("_delta_log/{:020}.json", before + 1))).unwrap();
    assert!(
        log.contains(erased["erasure_id"].as_str().unwrap()) && log.contains(erased["value_hash"].as_str().unwrap())
    );
    assert!(!log.contains("\"s3\"") && !log.contains("s3,"), "the value is not in the commit: {log}");
    assert!(ws.history().iter().any(|v| v["operation"] == "DELETE"));

    // Re-loads of both dates: s3 is kept out, counted suppressed, every line in one bucket.
    for (date, rejected) in [(D1, 0), (D2, 1)] {
        let report = ingest(&ws, date);
        assert_eq!(report["rows_suppressed"], 1, "{date}: {report}");
        assert_eq!(report["rows_rejected"], rejected, "{date}: {report}");
        let buckets: u64 = ["rows_filtered", "rows_rejected", "rows_duplicate", "rows_suppressed", "rows_valid"]
            .iter()
            .map(|b| report[b].as_u64().unwrap())
            .sum();
        assert_eq!(buckets, report["rows_read"].as_u64().unwrap());
    }
    let backfill = shoplake(&ws, Some(KEY), &["backfill", "--from", D1, "--to", D2, "--max-reject-ratio", "1"]);
    assert!(backfill.status.success(), "{}", String::from_utf8_lossy(&backfill.stderr));
    assert!(!ids(&ws, D1).contains(&"s3".to_string()) && !ids(&ws, D2).contains(&"s3".to_string()));
    assert_eq!(rejected_ids(&ws), ["s30"]);

    // A load without the key cannot keep s3 out: refused (exit 2), nothing written.
    let version = ws.snapshot().version;
    let keyless = shoplake(&ws, None, &["ingest", "--date", D1, "--max-reject-ratio", "1"]);
    assert_eq!(keyless.status.code(), Some(2), "{}", String::from_utf8_lossy(&keyless.stderr));
    assert_eq!(ws.snapshot().version, version);
    // Restoring a version before the erasure would bring s3 back: refused;
    // the version after it restores.
    let back = shoplake(&ws, Some(KEY), &["restore", "--version", &before.to_string()]);
    assert_eq!(back.status.code(), Some(2), "{}", String::from_utf8_lossy(&back.stderr));
    assert!(String::from_utf8_lossy(&back.stderr).contains(erased["erasure_id"].as_str().unwrap()));
    let after = shoplake(&ws, Some(KEY), &["restore", "--version", &(before + 1).to_string()]);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    assert!(!ids(&ws, D1).contains(&"s3".to_string()));
}

#[test]
fn an_erasable_column_is_erased_by_value_and_other_columns_are_refused() {
    let ws = Workspace::new();
    exports(&ws);
    ingest(&ws, D1);
    // A column not marked erasable: refused, naming the erasable ones.
    let refused = shoplake(&ws, Some(KEY), &["erase", "--where", "application_id=APP", "--reason", "test"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("erasable: shop_domain"));
    let out = shoplake(&ws, Some(KEY), &["erase", "--where", "shop_domain=s2.myshopify.com", "--reason", "test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ids(&ws, D1), ["s1", "s3", "s30", "s4", "s5"]);
    // A shop erased before it is ever loaded stays out of its first load.
    let out = shoplake(&ws, Some(KEY), &["erase", "--key", "s5", "--reason", "test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = ingest(&ws, D2);
    assert_eq!(report["rows_suppressed"], 2, "s2 by its domain, s5 by its key: {report}");
    assert_eq!(ids(&ws, D2), ["s1", "s4"]);
}

/// `erase --verify` reads every object of the table and its rejects table:
/// a value never loaded is absent (exit 0); a loaded one is named where it
/// is (exit 4); after the erasure no file of the current version holds it,
/// and the older versions' objects that still do are named.
#[test]
fn verify_names_every_object_still_holding_a_value() {
    let ws = Workspace::new();
    exports(&ws);
    ingest(&ws, D1);
    ingest(&ws, D2);
    let verify = |id: &str| {
        let out = shoplake(&ws, None, &["erase", "--verify", "--key", id, "--format", "json"]);
        let evidence = json_lines(&out.stdout);
        assert_eq!(evidence.len(), 2, "the table and its rejects table: {}", String::from_utf8_lossy(&out.stderr));
        (out.status.code(), evidence)
    };
    let (code, absent) = verify("s999");
    assert_eq!(code, Some(0));
    assert!(absent.iter().all(|e| e["result"] == "absent" && e["objects_checked"].as_u64() > Some(0)));

    let (code, present) = verify("s3");
    assert_eq!(code, Some(4), "{present:?}");
    let kinds = |e: &serde_json::Value| -> Vec<String> {
        e["holding"].as_array().unwrap().iter().map(|h| h["kind"].as_str().unwrap().to_string()).collect()
    };
    assert!(kinds(&present[0]).contains(&"data".to_string()), "the table's data files: {present:?}");
    assert!(kinds(&present[1]).contains(&"data".to_string()), "the rejects table's: {present:?}");

    let out = shoplake(&ws, Some(KEY), &["erase", "--key", "s3", "--reason", "test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, after) = verify("s3");
    assert_eq!(code, Some(4), "older versions still hold it until purged: {after:?}");
    let current: Vec<String> = ws.snapshot().files.values().flatten().cloned().collect();
    for held in after[0]["holding"].as_array().unwrap() {
        let path = held["path"].as_str().unwrap();
        assert!(!current.iter().any(|file| file.ends_with(path)), "{path} is a current file holding s3");
    }
}

/// A table that never held a row, created under an earlier definition,
/// takes its definition before an erasure writes it, as a load would: the
/// erasure is recorded and keeps the key out of the next load. (It exited 1,
/// "the table's column loyalty_tier is not the definition's": found by the
/// property test.)
#[test]
fn an_erasure_on_a_table_that_never_held_a_row_takes_its_definition_first() {
    let lake = crate::lake::Lake::new();
    let name = "shopify_configuration";
    let toml = lake.tables().join(name).join("table.toml");
    let original = std::fs::read_to_string(&toml).unwrap();
    lake.generate(name, D1, D1, 40, &[]);
    // A shop with an application (a line transform.sql keeps).
    let export = std::fs::read_to_string(lake.export(name, D1)).unwrap();
    let erased = export
        .lines()
        .skip(1)
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && !fields[2].is_empty())
        .map(|fields| fields[0].to_string())
        .unwrap();
    // Under a definition with one more column, an export of the header alone: the table is made, no row.
    crate::evolution::add_loyalty_tier(&lake);
    lake.generate(name, D1, D1, 40, &[]);
    let header = std::fs::read_to_string(lake.export(name, D1)).unwrap().lines().next().unwrap().to_string();
    std::fs::write(lake.export(name, D1), header + "\n").unwrap();
    assert_eq!(lake.ingest(name, D1, &[]).0, 0);
    // The definition goes back to its columns; the shop is erased before any load.
    std::fs::write(&toml, &original).unwrap();
    let out = lake.run(&["erase", "--key", &erased, "--reason", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    lake.generate(name, D1, D1, 40, &[]);
    let (code, report) = lake.ingest(name, D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_suppressed"], 1, "the erasure keeps the shop out: {report}");
    let sql = format!("SELECT count(*) AS n FROM {name} WHERE id = '{erased}'");
    assert_eq!(lake.count(name, &sql), 0);
}
