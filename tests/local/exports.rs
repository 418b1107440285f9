//! Erasing the raw exports (issue #27, item 5): `erase --exports` writes
//! every export of the table under the source again without the records
//! holding the value, loaded or not, gzipped or not; the other records stay
//! byte for byte; the next identical re-run of a rewritten date is still a
//! no-op (no version, no parse), and one whose export changed otherwise
//! parses.

use std::io::{Read, Write};

use crate::common::*;
use crate::erase::{exports, ids, shop, D1, D2, KEY};

const D3: &str = "2026-05-03";
/// The log line of a run that found nothing to do without parsing.
const SHORTCUT: &str = "as the last load left them";

/// `ingest` with info logs: the report, and whether the export was parsed.
fn ingest(ws: &Workspace, date: &str) -> (serde_json::Value, bool) {
    let out = ws
        .command(&["ingest", "--date", date, "--format", "json", "--max-reject-ratio", "1"])
        .env("SHOPLAKE_ERASURE_KEY", KEY)
        .env("RUST_LOG", "shoplake=info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), !stderr.contains(SHORTCUT))
}

fn gunzip(path: &std::path::Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_exports_lose_the_value_and_an_identical_rerun_stays_a_no_op() {
    let ws = Workspace::new();
    exports(&ws);
    // D3: gzipped, never loaded, s3 in it too.
    let d3 = export(&[shop("s3", "1", D3), shop("s4", "1", D3)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(d3.as_bytes()).unwrap();
    let d3_path = ws.raw().join(format!("{D3}.csv.gz"));
    std::fs::write(&d3_path, gz.finish().unwrap()).unwrap();
    for date in [D1, D2] {
        assert!(ingest(&ws, date).1);
    }
    let d1_before = std::fs::read_to_string(ws.raw().join(format!("{D1}.csv"))).unwrap();

    let out = ws
        .command(&["erase", "--key", "s3", "--reason", "shop/redact", "--purge", "--exports", "--format", "json"])
        .env("SHOPLAKE_ERASURE_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased = &json_lines(&out.stdout)[0];
    let rewritten: Vec<&str> =
        erased["exports"].as_array().unwrap().iter().map(|e| e["export"].as_str().unwrap()).collect();
    assert_eq!(rewritten.len(), 3, "every export holding s3, loaded or not: {erased}");
    assert!(erased["exports_recorded_version"].is_i64(), "{erased}");

    // The raw copies: no record of s3; every other record as it was (s30 holds "s3" in no field).
    let d1_after = std::fs::read_to_string(ws.raw().join(format!("{D1}.csv"))).unwrap();
    let without: Vec<&str> = d1_before.lines().filter(|l| !l.starts_with("s3,")).collect();
    assert_eq!(d1_after.lines().collect::<Vec<_>>(), without);
    assert!(d1_after.contains("s30,"));
    let d3_after = gunzip(&d3_path);
    assert!(!d3_after.contains("s3,") && d3_after.contains("s4,"), "{d3_after}");
    let verify = ws.command(&["erase", "--verify", "--key", "s3"]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));

    // The identical re-run of a rewritten date: no version, no parse.
    let version = ws.snapshot().version;
    for date in [D1, D2] {
        let (report, parsed) = ingest(&ws, date);
        assert!(!parsed, "{date}: parsed again: {report}");
        assert_eq!(report["status"], "unchanged", "{date}: {report}");
    }
    assert_eq!(ws.snapshot().version, version, "no version");
    // Beside it: an export changed afterwards is parsed and loaded.
    let mut lines: Vec<String> = ["s1", "s2", "s4"].iter().map(|id| shop(id, "1", D1)).collect();
    lines.push(shop("s5", "9", D1));
    ws.write_export(D1, export(&lines));
    let (report, parsed) = ingest(&ws, D1);
    assert!(parsed && report["status"] == "committed", "{report}");
    assert_eq!(ids(&ws, D1), ["s1", "s2", "s4", "s5"]);
    // And the never-loaded date loads without s3.
    let (report, _) = ingest(&ws, D3);
    assert_eq!((report["rows_valid"].as_u64(), report["rows_suppressed"].as_u64()), (Some(1), Some(0)), "{report}");
}
