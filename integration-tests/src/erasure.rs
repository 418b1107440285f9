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

/// `erase --purge` on a bucket with versioning on (issue #27, item 3): a
/// file of an older version holding the shop, deleted beforehand as a
/// vacuum would (so only a noncurrent version holds it), is found by
/// verify with its version id; after the purge no version of any object
/// holds the shop (verify exit 0, and the bucket's version listing has no
/// version of a purged file), the table reads and re-loads, and a purged
/// file put back by hand makes verify fail.
pub async fn a_purge_leaves_no_object_version_holding_the_shop(backend: Backend) {
    use object_store::ObjectStoreExt;
    let case = Case::new(backend, "purge").await;
    let table = format!("s3://lake-versioned/{}/shopify_configuration", case.prefix);
    let run = |args: &[&str]| {
        let mut command = case.command(args);
        command.env("SHOPLAKE_TABLE", &table).env("SHOPLAKE_ERASURE_KEY", KEY);
        command.output().unwrap()
    };
    case.generate(DAYS[0], DAYS[1], 300, &[]);
    for day in DAYS {
        let out = run(&["ingest", "--date", day]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let verify = |value: &str| {
        let out = run(&["erase", "--verify", "--key", value, "--format", "json"]);
        let evidence: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (out.status.code(), evidence)
    };
    let location = shoplake::storage::Location::parse(&table).unwrap();
    let (store, root) = case.storage.object_store(&location).await.unwrap();
    let def = shoplake::catalog::built_in("shopify_configuration");
    let before = shoplake::testing::snapshot(&case.storage, def, &location, None).await.unwrap();
    let id = before.rows[DAYS[0]].keys().find(|id| before.rows[DAYS[1]].contains_key(*id)).unwrap().clone();
    // Change data and a rejected line holding it: the first day re-exported
    // without the shop (its row deleted, as change data), the second with a
    // broken line of the shop beside its row (rejected, raw text kept).
    let source = shoplake::storage::Location::parse(&case.source()).unwrap();
    let (raw, raw_root) = case.storage.object_store(&source).await.unwrap();
    let export_of = |day: &str| object_store::path::Path::from(format!("{raw_root}/{day}.csv"));
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
    let day0 = text(&raw.get(&export_of(DAYS[0])).await.unwrap().bytes().await.unwrap());
    let day0: String = day0.lines().filter(|l| !l.starts_with(&format!("{id},"))).map(|l| format!("{l}\n")).collect();
    raw.put(&export_of(DAYS[0]), day0.into_bytes().into()).await.unwrap();
    let day1 = text(&raw.get(&export_of(DAYS[1])).await.unwrap().bytes().await.unwrap());
    raw.put(&export_of(DAYS[1]), format!("{day1}{id},a broken line\n").into_bytes().into()).await.unwrap();
    for day in DAYS {
        let out = run(&["ingest", "--date", day, "--max-reject-ratio", "1"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // Erase without purging: the older versions' files hold it. One of them
    // is deleted by hand (as a vacuum would): a noncurrent version holds it.
    let out = run(&["erase", "--key", &id, "--reason", "shop/redact", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((erased["rows_erased"].as_u64(), erased["rejects_erased"].as_u64()), (Some(1), Some(1)), "{erased}");
    let (code, evidence) = verify(&id);
    assert_eq!(code, Some(4));
    let kinds: Vec<&str> =
        evidence[0]["holding"].as_array().unwrap().iter().filter_map(|h| h["kind"].as_str()).collect();
    assert!(kinds.contains(&"change data"), "the re-load's delete is change data holding it: {kinds:?}");
    assert!(!evidence[1]["holding"].as_array().unwrap().is_empty(), "the rejects table's older files hold it");
    let held = evidence[0]["holding"].as_array().unwrap().iter().find(|h| h["kind"] == "data").unwrap().clone();
    let path = object_store::path::Path::from(format!("{root}/{}", held["path"].as_str().unwrap()));
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    store.delete(&path).await.unwrap();
    let (code, evidence) = verify(&id);
    assert_eq!(code, Some(4));
    let noncurrent = evidence[0]["holding"].as_array().unwrap().iter().find(|h| h["path"] == held["path"]).cloned();
    assert!(noncurrent.is_some_and(|h| h["version_id"].is_string()), "the noncurrent version is named: {evidence:?}");
    assert!(evidence[0]["noncurrent_checked"].as_u64() > Some(0));

    // The purge: nothing holds it, in any version of any object.
    let out = run(&["erase", "--key", &id, "--reason", "shop/redact", "--purge", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(erased["note"].as_str().is_some_and(|n| n.contains("already erased")), "{erased}");
    assert!(erased["purged"][0]["object_versions_deleted"].as_u64() > Some(0), "{erased}");
    let (code, evidence) = verify(&id);
    assert_eq!(code, Some(0), "{evidence:?}");
    let versions = case.storage.object_versions(&location).await.unwrap().expect("S3");
    let listed = versions.list(&format!("{root}/")).await.unwrap();
    assert!(!listed.iter().any(|v| v.key.ends_with(held["path"].as_str().unwrap())), "no version of {held} is left");
    // The table reads and re-loads; the shop stays out.
    let after = shoplake::testing::snapshot(&case.storage, def, &location, None).await.unwrap();
    assert!(after.rows.values().all(|rows| !rows.contains_key(&id)));
    assert_eq!(
        after.rows.values().map(|r| r.len()).sum::<usize>(),
        before.rows.values().map(|r| r.len()).sum::<usize>() - 2
    );
    let out = run(&["ingest", "--date", DAYS[1], "--format", "json", "--max-reject-ratio", "1"]);
    let (code, report) = report_of(out);
    assert_eq!((code, report["rows_suppressed"].as_u64()), (0, Some(2)), "its row and its broken line: {report}");

    // The raw exports on S3: written again without the shop; a re-run stays a no-op.
    let out = run(&["erase", "--key", &id, "--reason", "shop/redact", "--exports", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(erased["exports"].as_array().map(Vec::len), Some(1), "only the second day's holds it: {erased}");
    for day in DAYS {
        let export = text(&raw.get(&export_of(day)).await.unwrap().bytes().await.unwrap());
        assert!(!export.lines().any(|l| l.starts_with(&format!("{id},"))), "{day} still holds {id}");
    }
    let version = shoplake::testing::snapshot(&case.storage, def, &location, None).await.unwrap().version;
    let (code, report) = report_of(run(&["ingest", "--date", DAYS[1], "--format", "json", "--max-reject-ratio", "1"]));
    assert_eq!((code, report["status"].as_str()), (0, Some("unchanged")), "{report}");
    assert_eq!(shoplake::testing::snapshot(&case.storage, def, &location, None).await.unwrap().version, version);

    // A purged file put back by hand: verify fails.
    store.put(&path, bytes.into()).await.unwrap();
    assert_eq!(verify(&id).0, Some(4));
}

/// Declared PII on S3 (issue #27, item 6), as `tests/local/pii.rs` does
/// locally: a hashed, a masked and a dropped column never reach the table
/// or the rejects table as read; the hash is the keyed one.
pub async fn declared_pii_never_reaches_s3_as_read(backend: Backend) {
    const TOML: &str = r#"
name = "customers_daily"
key = ["customer_id", "day"]
partition_by = "day"
source_pattern = "customers/{date}.csv"

[[columns]]
name = "customer_id"
kind = "text"
nullable = false

[[columns]]
name = "day"
kind = "file_date"
in_export = false

[[columns]]
name = "email"
kind = "text"
pii = "hash"

[[columns]]
name = "phone"
kind = "text"
pii = "mask"

[[columns]]
name = "full_name"
kind = "text"
pii = "drop"

[[columns]]
name = "orders"
kind = "count"
"#;
    use object_store::ObjectStoreExt;
    const PII_KEY: &str = "integration-pii-key-0123456789";
    let case = Case::new(backend, "pii").await;
    let tables = case.local.path().join("tables");
    std::fs::create_dir_all(tables.join("customers_daily")).unwrap();
    std::fs::write(tables.join("customers_daily/table.toml"), TOML).unwrap();
    let source = shoplake::storage::Location::parse(&case.source()).unwrap();
    let (raw, raw_root) = case.storage.object_store(&source).await.unwrap();
    let export = "customer_id,email,phone,full_name,orders\n\
                  c1,ann@example.com,+1 555 0100,Ann Lee,3\n\
                  c2,bob@example.com,+1 555 0199,Bob Roe,x\n";
    let path = object_store::path::Path::from(format!("{raw_root}/customers/{}.csv", DAYS[0]));
    raw.put(&path, export.as_bytes().to_vec().into()).await.unwrap();
    let run = |args: &[&str]| {
        let mut command = case.command(args);
        command
            .env_remove("SHOPLAKE_TABLE")
            .env("SHOPLAKE_TABLES", &tables)
            .env("SHOPLAKE_LAKE", format!("s3://lake/{}", case.prefix))
            .env("SHOPLAKE_PII_KEY", PII_KEY);
        command.output().unwrap()
    };
    let out = run(&["ingest", "--table-name", "customers_daily", "--date", DAYS[0], "--max-reject-ratio", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let query = |sql: &str| {
        let out = run(&["query", "--table-name", "customers_daily", "--format", "json", "--sql", sql]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<serde_json::Value>>()
    };
    let key = shoplake::erasure::ErasureKey::new(PII_KEY.as_bytes()).unwrap();
    let row = &query("SELECT email, phone, full_name FROM customers_daily")[0];
    assert_eq!(row["email"], key.hash("ann@example.com").as_str(), "{row}");
    assert_eq!(row["phone"], "*******0100");
    assert!(row["full_name"].is_null());
    let rejected = &query("SELECT raw FROM customers_daily_rejects")[0];
    assert_eq!(rejected["raw"], format!("c2,{},*******0199,,x", key.hash("bob@example.com")).as_str());
    for value in ["ann@example.com", "bob@example.com", "Ann Lee", "Bob Roe", "+1 555 0100"] {
        let out = run(&["erase", "--verify", "--table-name", "customers_daily", "--key", value]);
        assert_eq!(out.status.code(), Some(0), "{value} is on S3 as read: {}", String::from_utf8_lossy(&out.stdout));
    }
}
