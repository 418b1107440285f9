//! Erasure on S3 (issue #27, items 1 and 2): a shop erased from a table on
//! the S3 server leaves every date and its rejects, and a re-load of its
//! dates keeps it out, as on a local table (`tests/local/erase.rs`).

use crate::{report_of, Backend, Case};

const DAYS: [&str; 2] = ["2019-08-01", "2019-08-02"];
const KEY: &str = "integration-erasure-key-0123";

fn holds(snapshot: &shoplake::testing::TableSnapshot, id: &str) -> Vec<String> {
    snapshot.rows.iter().filter(|(_, rows)| rows.contains_key(id)).map(|(date, _)| date.clone()).collect()
}

pub async fn an_erased_shop_leaves_the_table_and_does_not_come_back(backend: Backend) {
    let case = Case::new(backend, "erase").await;
    case.generate(DAYS[0], DAYS[1], 300, &[]);
    for day in DAYS {
        assert_eq!(case.ingest(day).0, 0);
    }
    // A shop both days hold (generated shops are stable across days).
    let before = case.snapshot().await;
    let id = before.rows[DAYS[0]].keys().find(|id| before.rows[DAYS[1]].contains_key(*id)).unwrap().clone();
    assert_eq!(holds(&before, &id), DAYS, "{id} is on both days before");
    let rows_before: usize = before.rows.values().map(|rows| rows.len()).sum();

    let out = case
        .command(&["erase", "--key", &id, "--reason", "shop/redact", "--format", "json"])
        .env("SHOPLAKE_ERASURE_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(erased["rows_erased"], 2, "{erased}");
    let after = case.snapshot().await;
    assert!(holds(&after, &id).is_empty(), "{id} left every date");
    assert_eq!(after.rows.values().map(|rows| rows.len()).sum::<usize>(), rows_before - 2, "only its rows went");
    assert_eq!(after.version, before.version.map(|v| v + 1), "one version");

    // A re-load keeps it out; without the key the load is refused.
    let (code, report) = report_of(
        case.command(&["ingest", "--date", DAYS[0], "--format", "json"])
            .env("SHOPLAKE_ERASURE_KEY", KEY)
            .output()
            .unwrap(),
    );
    assert_eq!((code, report["rows_suppressed"].as_u64()), (0, Some(1)), "{report}");
    assert!(holds(&case.snapshot().await, &id).is_empty());
    let keyless = case.shoplake(&["ingest", "--date", DAYS[1]]);
    assert_eq!(keyless.status.code(), Some(2), "{}", String::from_utf8_lossy(&keyless.stderr));
}
