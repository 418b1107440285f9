//! An identical re-run that does not parse (issue #17): it is taken only
//! when the export, the definition and the settings are the last load's and
//! nothing touched the date since; each way it must not be taken ends as
//! the full diff would.

use crate::lake::Lake;

const T: &str = "shopify_configuration";
const D1: &str = "2019-04-01";
/// The log line of a run that found nothing to do without parsing.
const SHORTCUT: &str = "as the last load left them";

/// `ingest` with info logs: the report, and whether the export was parsed.
fn ingest(lake: &Lake, extra: &[&str]) -> (serde_json::Value, bool) {
    let mut args = vec!["ingest", "--date", D1, "--format", "json"];
    args.extend_from_slice(extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoplake"))
        .args(&args)
        .env("SHOPLAKE_TABLES", lake.tables())
        .env("SHOPLAKE_SOURCE", lake.raw())
        .env("SHOPLAKE_LAKE", lake.lake())
        .env_remove("SHOPLAKE_TABLE")
        .env_remove("SHOPLAKE_TABLE_NAME")
        .env("RUST_LOG", "shoplake=info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), !stderr.contains(SHORTCUT))
}

fn loaded() -> Lake {
    let lake = Lake::new();
    lake.generate(T, D1, D1, 2000, &["--dirty"]);
    let (first, parsed) = ingest(&lake, &[]);
    assert!(parsed && first["status"] == "committed", "{first}");
    lake
}

/// The table as another engine changes it (deltalake, as Python or Spark would).
fn other_engine(lake: &Lake, change: impl AsyncFnOnce(deltalake::DeltaTable) -> deltalake::DeltaTable) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = url::Url::from_directory_path(lake.table(T)).unwrap();
        let table = deltalake::DeltaTableBuilder::from_url(url).unwrap().load().await.unwrap();
        change(table).await;
    });
}

#[test]
fn an_identical_rerun_is_recognised_without_parsing_and_reports_the_load() {
    let lake = loaded();
    let v = lake.version(T);
    let (again, parsed) = ingest(&lake, &[]);
    assert!(!parsed, "not parsed");
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["table_version"], v);
    let (first_valid, again_valid) =
        (lake.count(T, "SELECT count(*) FROM shopify_configuration"), &again["rows_valid"]);
    assert_eq!(again_valid, first_valid, "the counts of the load it repeats");
    assert!(again["rows_rejected"].as_u64().unwrap() > 0);
    // Same bytes, new modification time: still the same export.
    let path = lake.export(T, D1);
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    assert!(!ingest(&lake, &[]).1);
    // Another date loaded since does not touch this one.
    lake.generate(T, "2019-04-02", "2019-04-02", 500, &[]);
    lake.ingest(T, "2019-04-02", &[]);
    assert!(!ingest(&lake, &[]).1);
}

#[test]
fn an_export_replaced_by_one_of_the_same_size_is_diffed() {
    let lake = loaded();
    let path = lake.export(T, D1);
    let text = std::fs::read_to_string(&path).unwrap();
    // One shop's install channel, swapped for another of the same length.
    let changed = text.replacen(",direct,2019-04-01", ",DIRECT,2019-04-01", 1);
    assert_eq!(changed.len(), text.len());
    std::fs::write(&path, changed).unwrap();
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed);
    assert_eq!((report["status"].as_str(), report["rows_updated"].as_u64()), (Some("committed"), Some(1)), "{report}");
}

/// Data files of the date on disk (referenced or not).
fn files_on_disk(lake: &Lake) -> Vec<String> {
    let dir = lake.table(T).join(format!("export_date={D1}"));
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A full diff writes the day's rows as it compares them: when nothing
/// changed, the files it wrote are deleted again; when rows changed, they
/// become the date's files (the old ones stay for time travel).
#[test]
fn a_full_diff_that_changes_nothing_leaves_no_file_behind() {
    let lake = loaded();
    let before = files_on_disk(&lake);
    let path = lake.export(T, D1);
    let text = std::fs::read_to_string(&path).unwrap();
    // The same lines and a blank one at the end: other bytes, the same rows.
    let padded = format!("{text}\n");
    assert_ne!(padded, text);
    std::fs::write(&path, &padded).unwrap();
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed, "other bytes are parsed");
    assert_eq!(report["status"], "unchanged", "{report}");
    assert_eq!(files_on_disk(&lake), before, "the files written while comparing are gone");

    // Beside it: one changed line, and the files written become the date's.
    std::fs::write(&path, padded.replacen(",direct,2019-04-01", ",DIRECT,2019-04-01", 1)).unwrap();
    let (report, _) = ingest(&lake, &[]);
    assert_eq!((report["status"].as_str(), report["rows_updated"].as_u64()), (Some("committed"), Some(1)), "{report}");
    let after = files_on_disk(&lake);
    let referenced = &lake.snapshot(T).files[D1];
    assert!(before.iter().all(|f| after.contains(f)), "the old files stay for time travel");
    assert_eq!(after.len(), before.len() + referenced.len(), "nothing but the old files and the date's new ones");
}

#[test]
fn another_writer_a_restore_or_an_optimize_since_the_load_take_the_full_diff() {
    // Another engine updates a row: the re-run puts it back.
    let lake = loaded();
    other_engine(&lake, async |table| {
        use datafusion::prelude::{col, lit};
        let (table, _) = table
            .update()
            .with_predicate(col("nbr_metafields").gt(lit(-1i64)))
            .with_update("shop_domain", lit("changed"))
            .await
            .unwrap();
        table
    });
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed);
    assert!(report["rows_updated"].as_u64().unwrap() > 1000, "{report}");
    assert_eq!(lake.count(T, "SELECT count(*) FROM shopify_configuration WHERE shop_domain = 'changed'"), 0);

    // An optimize rewrote the date's files (into small ones, so it has
    // something to do): diffed, and nothing changes.
    other_engine(&lake, async |table| {
        use deltalake::operations::optimize::OptimizeType;
        let (table, metrics) = table
            .optimize()
            .with_type(OptimizeType::ZOrder(vec!["id".into()]))
            .with_target_size(std::num::NonZeroU64::new(64 * 1024).unwrap())
            .await
            .unwrap();
        assert!(metrics.num_files_added > 1, "{metrics:?}");
        table
    });
    let v = lake.version(T);
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed);
    assert_eq!((report["status"].as_str(), lake.version(T)), (Some("unchanged"), v));
    assert!(ingest(&lake, &[]).1, "nothing was committed: the optimize is still the date's last touch");

    // A restore to the first load, then the corrected export again: diffed, corrected again.
    let first = 1;
    lake.ok(&["restore", "--version", &first.to_string()]);
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed);
    assert_eq!(report["status"], "unchanged", "the first load's content is this export's: {report}");
}

#[test]
fn a_changed_definition_or_setting_takes_the_full_diff() {
    let lake = loaded();
    let (report, parsed) = ingest(&lake, &["--max-reject-ratio", "0.5"]);
    assert!(parsed, "a setting that can change the outcome");
    assert_eq!(report["status"], "unchanged");
    let (_, parsed) = ingest(&lake, &["--max-reject-ratio", "0.5"]);
    assert!(parsed, "the last load recorded the default setting (the re-run committed nothing)");
    lake.edit(T, |t| t.replace("description = \"", "description = \"Edited. "));
    assert!(ingest(&lake, &[]).1, "the definition's files changed");
}

#[test]
fn rejects_changed_since_the_load_take_the_full_diff() {
    let lake = loaded();
    let rejects = || lake.count(T, "SELECT count(*) FROM shopify_configuration_rejects");
    let before = rejects();
    assert!(before > 0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = url::Url::from_directory_path(lake.dir.path().join("lake/shopify_configuration_rejects")).unwrap();
        let table = deltalake::DeltaTableBuilder::from_url(url).unwrap().load().await.unwrap();
        table.delete().await.unwrap();
    });
    let v = lake.version(T);
    let (report, parsed) = ingest(&lake, &[]);
    assert!(parsed, "the rejects table changed since the load");
    // As the full diff ends: the rows and the recorded rejects version are
    // this load's, so nothing is committed, and the table's version still
    // pairs with the rejects as they were.
    assert_eq!((report["status"].as_str(), lake.version(T)), (Some("unchanged"), v), "{report}");
    assert_eq!(rejects(), before);
}

/// Beside it: the rejects table moved on for another date only (a later
/// load wrote its rejects): the date's rejects are as the load left them,
/// and the re-run still takes the shortcut (the rejects log is read then;
/// when the recorded version is still the latest, two HEADs say so).
#[test]
fn rejects_of_another_date_since_the_load_keep_the_shortcut() {
    let lake = loaded();
    let log = lake.dir.path().join("lake/shopify_configuration_rejects/_delta_log");
    let rejects_version = || {
        let commits = std::fs::read_dir(&log).unwrap().filter_map(|e| e.ok());
        commits.filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count()
    };
    let before = rejects_version();
    let (again, parsed) = ingest(&lake, &[]);
    assert!(!parsed && again["status"] == "unchanged", "the recorded version is the latest: {again}");
    lake.generate(T, "2019-04-02", "2019-04-02", 2000, &["--dirty"]);
    assert_eq!(lake.ingest(T, "2019-04-02", &[]).0, 0);
    assert!(rejects_version() > before, "the later date wrote its rejects");
    let (again, parsed) = ingest(&lake, &[]);
    assert!(!parsed, "only another date's rejects changed: {again}");
    assert_eq!(again["status"], "unchanged");
}
