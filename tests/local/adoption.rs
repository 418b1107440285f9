//! Taking over a table shoplake did not create (issue #10): the legacy
//! pipeline's table has every column but the row fingerprint, and rows
//! written by another engine have no fingerprint. Built here with deltalake
//! directly, so it runs without Spark; `make interop-test` does the same
//! with Spark itself.

use crate::common::{export, line, Workspace};
use chrono::NaiveDate;
use deltalake::protocol::SaveMode;

const D1: &str = "2019-04-01";

fn shops(flag: &str) -> String {
    export(&(0..3).map(|i| line(&format!("s{i}"), "APP", flag, "1", "[0]", "shopify_", D1)).collect::<Vec<_>>())
}

/// A table like the legacy pipeline's: the definition's columns but the
/// fingerprint, holding `csv` for D1.
fn legacy_table(ws: &Workspace, csv: String) {
    let def = shoplake::catalog::built_in("shopify_configuration");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let date: NaiveDate = D1.parse().unwrap();
        let (rx, reader) =
            shoplake::read::start(def, date, "legacy.csv".into(), Box::new(std::io::Cursor::new(csv.into_bytes())));
        let stream = shoplake::transform::run(def, rx, "legacy.csv").await.unwrap();
        let (validated, _) =
            shoplake::validate::collect(def, &shoplake::row_hash::ValueHasher::new(def), stream, "legacy.csv")
                .await
                .unwrap();
        reader.await.unwrap().unwrap();
        let row_hash = def.row_hash_column();
        let batches: Vec<_> = validated
            .into_iter()
            .map(|b| {
                let keep: Vec<usize> =
                    (0..b.num_columns()).filter(|i| b.schema().field(*i).name() != row_hash).collect();
                b.project(&keep).unwrap()
            })
            .collect();
        let fields: Vec<_> =
            shoplake::table::spec::delta_fields(def).unwrap().into_iter().filter(|f| f.name() != row_hash).collect();
        std::fs::create_dir_all(ws.table()).unwrap();
        let url = url::Url::from_directory_path(ws.table()).unwrap();
        let table = deltalake::DeltaTableBuilder::from_url(url)
            .unwrap()
            .build()
            .unwrap()
            .create()
            .with_columns(fields)
            .with_partition_columns(["export_date"])
            .await
            .unwrap();
        table.write(batches).with_save_mode(SaveMode::Append).await.unwrap();
    });
}

#[test]
fn a_table_without_fingerprints_is_taken_over_and_converges() {
    let ws = Workspace::new();
    legacy_table(&ws, shops("True"));
    let before = ws.snapshot();
    assert_eq!(before.rows[D1].len(), 3);

    // One shop changed in the export: every row is rewritten once (no
    // fingerprint to compare with), then the table equals the export.
    let corrected = shops("True").replacen("s1,s1.myshopify.com,APP,True", "s1,s1.myshopify.com,APP,False", 1);
    ws.write_export(D1, &corrected);
    let (code, report) = ws.ingest(D1, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_updated"], 3, "rows without a fingerprint count as changed: {report}");
    let after = ws.snapshot();
    let flag = |id: &str| after.rows[D1][id].iter().find(|v| v.starts_with("autocomplete_enabled=")).unwrap().clone();
    assert_eq!(flag("s1"), "autocomplete_enabled=false");
    assert_eq!(flag("s0"), "autocomplete_enabled=true");
    let operations: Vec<String> = ws.history().iter().map(|e| e["operation"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        operations,
        vec!["MERGE", "SET TBLPROPERTIES", "ADD COLUMN", "WRITE", "CREATE TABLE"],
        "taken over (the column, then the definition's properties), then loaded"
    );

    let (code, again) = ws.ingest(D1, &[]);
    assert_eq!(code, 0);
    assert_eq!(again["status"], "unchanged", "now fingerprinted, an identical re-run is a no-op: {again}");
}

#[test]
fn a_table_with_other_columns_is_refused_not_changed() {
    let ws = Workspace::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        std::fs::create_dir_all(ws.table()).unwrap();
        let url = url::Url::from_directory_path(ws.table()).unwrap();
        deltalake::DeltaTableBuilder::from_url(url)
            .unwrap()
            .build()
            .unwrap()
            .create()
            .with_columns([deltalake::kernel::StructField::new("id", deltalake::kernel::DataType::STRING, true)])
            .await
            .unwrap();
    });
    ws.write_export(D1, shops("True"));
    let out = ws.shoplake(&["ingest", "--date", D1]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot follow its definition") && stderr.contains("a partition change"), "{stderr}");
    assert_eq!(ws.history().len(), 1, "nothing was committed");
}
