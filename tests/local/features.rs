//! Tables other engines made or upgraded (issue #24), for each built-in
//! definition: the table's own row rules (CHECK constraints, NOT NULL,
//! invariants, generated columns) refuse the rows that break them (exit 4,
//! nothing committed) and a conforming export then loads; an append-only
//! table takes new dates and refuses changes before writing; a table
//! feature shoplake does not honour is refused (exit 2) before the export
//! is read, by every command that writes, while reads go on; a table whose
//! statistics columns listed booleans or lists (which Delta Spark refuses
//! to administer) is repaired by its next load, even an identical re-run.
//!
//! The changes are committed as another engine's log entries
//! ([`crate::foreign`]); `make interop-test` makes them with Spark.

use serde_json::json;

use crate::exported::Export;
use crate::foreign;
use crate::lake::Lake;
use shoplake::definition::{Column, Kind, TableDefinition};

const D1: &str = "2019-04-01";
const D2: &str = "2019-04-02";
/// A date with no export: a command refused before reading one exits 2, not 3.
const NO_EXPORT: &str = "2019-04-09";

/// A lake with `name`'s exports of D1 and D2 and D1 loaded.
fn loaded(name: &str) -> Lake {
    let lake = Lake::new();
    lake.generate(name, D1, D2, 400, &[]);
    assert_eq!(lake.ingest(name, D1, &[]).0, 0);
    lake
}

/// The column a row is told by in the export: the key, or for a key
/// transform.sql derives, the first required text column of the record's
/// own (not its group's) that the export holds (a product variant's SKU).
fn identifying_column(def: &TableDefinition) -> String {
    let key = def.column(def.day_key()).unwrap();
    if key.is_from_export() {
        return key.name.clone();
    }
    let own = |c: &&Column| {
        c.is_from_export()
            && c.kind == Kind::Text
            && !c.nullable
            && !c.fill_down
            && def.group_by.as_ref() != Some(&c.name)
    };
    def.columns.iter().find(own).expect("a required column of the row's own").name.clone()
}

/// The identifying value of the export's last record of the table (a row
/// D2 added: not in D1), and the line it starts at.
fn last_key(lake: &Lake, name: &str, date: &str) -> (String, usize) {
    let export = Export::read(lake, name, date);
    let column = identifying_column(lake.definition(name));
    let at = (0..export.records.len()).rev().find(|&i| export.own(&export.records[i])).unwrap();
    (export.value(&export.records[at], &column).unwrap(), export.line_of(at))
}

/// The export without the table's last record.
fn drop_last_line(lake: &Lake, name: &str, date: &str) {
    let mut export = Export::read(lake, name, date);
    let at = (0..export.records.len()).rev().find(|&i| export.own(&export.records[i])).unwrap();
    export.records.remove(at);
    export.write();
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Loads D2 expecting exit 4 for `rule`, naming the line; nothing committed.
fn refused_for(lake: &Lake, name: &str, rule: &str, line: Option<usize>) {
    let before = lake.version(name);
    let out = lake.run(&["ingest", "--table-name", name, "--date", D2]);
    assert_eq!(out.status.code(), Some(4), "{rule}: {}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains(rule), "{message}");
    if let Some(line) = line {
        assert!(message.contains(&format!("(line {line})")), "line {line}: {message}");
    }
    assert_eq!(lake.version(name), before, "nothing committed");
    assert!(!lake.snapshot(name).rows.contains_key(D2), "D2 holds no row");
}

fn check_constraints_refuse_the_rows_that_break_them(name: &str) {
    let lake = loaded(name);
    let table = lake.table(name);
    let key = identifying_column(lake.definition(name));
    let (id, line) = last_key(&lake, name, D2);
    foreign::set_properties(&table, &[("delta.constraints.not_that_shop", &format!("{key} <> '{id}'"))]);
    refused_for(&lake, name, "CHECK constraint not_that_shop", Some(line));

    // A conforming re-export loads, and the constraint still holds for it.
    drop_last_line(&lake, name, D2);
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!(code, 0, "{report}");
    let held = lake.snapshot(name).rows[D2].clone();
    assert_eq!(held.len() as u64, report["rows_valid"].as_u64().unwrap());
    let def = lake.definition(name);
    let holding = format!("SELECT count(*) FROM {name} WHERE {key} = '{id}' AND {} = '{D2}'", def.partition_by);
    assert_eq!(lake.count(name, &holding), 0, "{id} is not loaded");
}

/// NOT NULL as Spark adds it (`CHECK (c IS NOT NULL)`), and a constraint
/// that is null (not true) for a row: both break on the empty values.
fn a_not_null_rule_and_a_null_result_break_the_constraint(name: &str) {
    let lake = loaded(name);
    let def = lake.definition(name);
    let column = def
        .columns
        .iter()
        .find(|c| c.nullable && c.is_from_export() && c.kind != Kind::Text && c.name != def.partition_by)
        .expect("a nullable column the generator leaves empty now and then");
    let export = Export::read(&lake, name, D2);
    let empty =
        export.records.iter().filter(|r| export.own(r) && export.value(r, &column.name).as_deref() == Some("")).count();
    assert!(empty > 0, "the export has empty {}", column.name);
    let table = lake.table(name);
    foreign::set_properties(&table, &[("delta.constraints.known", &format!("{} IS NOT NULL", column.name))]);
    refused_for(&lake, name, "CHECK constraint known", None);
    foreign::set_properties(&table, &[("delta.constraints.known", &format!("{0} = {0}", column.name))]);
    refused_for(&lake, name, "CHECK constraint known", None);
    // The case beside: true for every row (nulls included) loads.
    foreign::set_properties(&table, &[("delta.constraints.known", &format!("{0} IS NULL OR {0} = {0}", column.name))]);
    assert_eq!(lake.ingest(name, D2, &[]).0, 0);
}

fn invariants_and_generated_columns_are_kept(name: &str) {
    let lake = loaded(name);
    let table = lake.table(name);
    let key = identifying_column(lake.definition(name));
    let (id, line) = last_key(&lake, name, D2);
    let invariant = json!({"expression": {"expression": format!("{key} <> '{id}'")}}).to_string();
    foreign::set_column_metadata(&table, &key, "delta.invariants", json!(invariant));
    refused_for(&lake, name, &format!("invariant of {key}"), Some(line));
    foreign::set_column_metadata(
        &table,
        &key,
        "delta.invariants",
        json!(json!({"expression": {"expression": "true"}}).to_string()),
    );

    // A generated column must hold what its expression gives.
    foreign::set_column_metadata(&table, &key, "delta.generationExpression", json!(format!("{key} || '-'")));
    refused_for(&lake, name, &format!("generated column {key}"), None);
    foreign::set_column_metadata(&table, &key, "delta.generationExpression", json!(format!("trim({key})")));
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!(code, 0, "{report}");
}

fn an_append_only_table_takes_new_dates_and_refuses_changes(name: &str) {
    let lake = loaded(name);
    let table = lake.table(name);
    foreign::set_properties(&table, &[("delta.appendOnly", "true")]);
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!((code, report["status"].as_str()), (0, Some("committed")), "a new date is appended: {report}");
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!((code, report["status"].as_str()), (0, Some("unchanged")), "an identical re-run: {report}");

    let (version, files) = (lake.version(name), foreign::data_files(&table));
    drop_last_line(&lake, name, D2);
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["ingest", "--table-name", name, "--date", D2];
        args.extend_from_slice(extra);
        let out = lake.run(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("append-only"), "{}", stderr(&out));
    }
    assert_eq!(lake.version(name), version, "nothing committed");
    assert_eq!(foreign::data_files(&table), files, "no file written");
    let out = lake.run(&["restore", "--table-name", name, "--version", "1"]);
    assert_eq!(out.status.code(), Some(2), "a restore removes rows: {}", stderr(&out));
    assert_eq!(lake.version(name), version);
    // Rearranging is not changing: compaction is allowed.
    lake.ok(&["maintain", "--table-name", name, "--optimize"]);
}

/// Features shoplake does not honour: (name, reader and writer?).
const REFUSED: [(&str, bool); 11] = [
    ("rowTracking", false),
    ("domainMetadata", false),
    ("clustering", false),
    ("typeWidening", true),
    ("identityColumns", false),
    ("inCommitTimestamp", false),
    ("vacuumProtocolCheck", true),
    ("icebergCompatV2", false),
    ("allowColumnDefaults", false),
    ("checkpointProtection", false),
    ("aFeatureFromTheFuture", false),
];

fn features_shoplake_cannot_honour_are_refused_before_any_work(name: &str) {
    for (feature, reader) in REFUSED {
        let lake = loaded(name);
        let table = lake.table(name);
        let (writer, both): (&[&str], &[&str]) = if reader { (&[], &[feature]) } else { (&[feature], &[]) };
        foreign::add_features(&table, writer, both);
        let version = lake.version(name);
        let commands: [&[&str]; 4] = [
            &["ingest", "--table-name", name, "--date", NO_EXPORT],
            &["schema", "apply", "--table-name", name],
            &["restore", "--table-name", name, "--version", "0"],
            &["maintain", "--table-name", name, "--optimize"],
        ];
        for args in commands {
            let out = lake.run(args);
            assert_eq!(out.status.code(), Some(2), "{feature}, {args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(feature), "{feature}, {args:?}: {}", stderr(&out));
        }
        assert_eq!(lake.version(name), version, "{feature}: nothing committed");
        if !reader {
            // Reads do not ask: a writer feature leaves them working.
            let held = lake.snapshot(name).rows[D1].len() as i64;
            assert_eq!(lake.count(name, &format!("SELECT count(*) AS n FROM {name}")), held, "{feature}");
        }
    }
}

/// The case beside: features shoplake honours let every command work.
fn features_shoplake_honours_let_every_command_work(name: &str) {
    let lake = loaded(name);
    let table = lake.table(name);
    foreign::add_features(
        &table,
        &["appendOnly", "changeDataFeed"],
        &["deletionVectors", "timestampNtz", "v2Checkpoint", "columnMapping"],
    );
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(lake.snapshot(name).rows[D2].len() as u64, report["rows_valid"].as_u64().unwrap());
    lake.ok(&["schema", "apply", "--table-name", name]);
    lake.ok(&["maintain", "--table-name", name, "--optimize", "--checkpoint"]);
    let tables = lake.ok(&["tables"]);
    assert!(tables.contains("reader 3, writer 7") && tables.contains("deletionVectors"), "{tables}");

    let held: usize = lake.snapshot(name).rows.values().map(|r| r.len()).sum();
    assert_eq!(lake.count(name, &format!("SELECT count(*) AS n FROM {name}")) as usize, held, "reads go on");
}

/// Tables created before shoplake listed only the columns Delta skips on
/// had booleans and lists in `delta.dataSkippingStatsColumns`: an
/// identical re-run still changes nothing, `schema apply` sets the
/// definition's list in a metadata-only commit, and so does the next load
/// that commits, in its own commit.
fn stats_columns_of_an_older_table_are_repaired_by_its_next_load(name: &str) {
    let lake = loaded(name);
    let def = lake.definition(name);
    let table = lake.table(name);
    let property =
        |table: &std::path::Path| foreign::latest(table).1["configuration"]["delta.dataSkippingStatsColumns"].clone();
    let wanted = property(&table);
    let all: Vec<&str> = def
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| *c != def.partition_by && *c != def.row_hash_column())
        .collect();
    assert_ne!(json!(all.join(",")), wanted, "the definition has columns Delta does not skip on");
    let older = || foreign::set_properties(&table, &[("delta.dataSkippingStatsColumns", &all.join(","))]);
    older();
    let before = lake.version(name);
    let (code, report) = lake.ingest(name, D1, &[]);
    assert_eq!((code, report["status"].as_str()), (0, Some("unchanged")), "{report}");
    assert_eq!(lake.version(name), before, "an identical re-run changes nothing");

    lake.ok(&["schema", "apply", "--table-name", name]);
    assert_eq!(lake.version(name), before + 1);
    assert_eq!(property(&table), wanted, "schema apply repairs it");
    let commit = std::fs::read_to_string(table.join("_delta_log").join(format!("{:020}.json", before + 1))).unwrap();
    assert!(!commit.contains("\"add\""), "a metadata-only commit: {commit}");

    older();
    let (code, report) = lake.ingest(name, D2, &[]);
    assert_eq!((code, report["status"].as_str()), (0, Some("committed")), "{report}");
    assert_eq!(property(&table), wanted, "the next load that commits repairs it");
}

/// Column mapping in `name` mode, as Spark leaves a table after a column
/// was dropped and added again: that column's values live under a new
/// physical name (and id). A load of a new date, a re-load and a column the
/// definition adds must write under the physical names, or they would read
/// back as nulls; the table ends equal to the same exports loaded into a
/// table without column mapping.
fn column_mapping_is_written_under_physical_names(name: &str) {
    let lake = loaded(name);
    let reference = loaded(name);
    let table = lake.table(name);
    let def = lake.definition(name);
    foreign::add_features(&table, &[], &["columnMapping"]);
    foreign::map_columns(&table, "name");
    // The last value column, "dropped and added again": a new physical name
    // and id, so the date already loaded reads it as null.
    let column = def
        .columns
        .iter()
        .rev()
        .find(|c| c.nullable && c.is_from_export() && c.name != def.partition_by)
        .unwrap()
        .name
        .clone();
    foreign::alter(&table, "ADD COLUMN", |metadata, _| {
        let mut schema: serde_json::Value = serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
        let fields = schema["fields"].as_array_mut().unwrap();
        let at = fields.iter().position(|f| f["name"] == column.as_str()).unwrap();
        let mut field = fields.remove(at);
        let configuration = &mut metadata["configuration"];
        let id = configuration["delta.columnMapping.maxColumnId"].as_str().unwrap().parse::<u64>().unwrap() + 1;
        configuration["delta.columnMapping.maxColumnId"] = json!(id.to_string());
        field["metadata"]["delta.columnMapping.physicalName"] = json!("col-3b1f0c55-0000-4000-8000-000000000001");
        field["metadata"]["delta.columnMapping.id"] = json!(id);
        fields.push(field);
        metadata["schemaString"] = json!(schema.to_string());
    });
    let nulls = lake.count(name, &format!("SELECT count(*) AS n FROM {name} WHERE {column} IS NOT NULL"));
    assert_eq!(nulls, 0, "the re-added column reads null in the date loaded before");

    for date in [D2, D1] {
        let out = lake.run(&["ingest", "--table-name", name, "--date", date]);
        assert_eq!(out.status.code(), Some(0), "{date}: {}", stderr(&out));
        assert_eq!(reference.ingest(name, date, &[]).0, 0);
    }
    assert_eq!(lake.snapshot(name).rows, reference.snapshot(name).rows, "as loaded without column mapping");
    // Statistics are keyed by physical names too (readers skip files by them).
    let (version, _, _) = foreign::latest(&table);
    let log = std::fs::read_to_string(table.join("_delta_log").join(format!("{version:020}.json"))).unwrap();
    for line in log.lines().filter(|l| l.contains("\"add\"")) {
        let add: serde_json::Value = serde_json::from_str(line).unwrap();
        let stats: serde_json::Value = serde_json::from_str(add["add"]["stats"].as_str().unwrap()).unwrap();
        let keys: Vec<&String> = stats["nullCount"].as_object().unwrap().keys().collect();
        assert!(!keys.contains(&&column), "statistics under the display name {column}: {keys:?}");
        let skippable =
            def.column(&column).is_some_and(|c| !matches!(c.kind, Kind::Flag | Kind::CountList | Kind::TextList));
        if skippable {
            assert!(keys.iter().any(|k| k.starts_with("col-3b1f0c55")), "statistics under the physical name: {keys:?}");
        }
    }
    let (_, metadata, _) = foreign::latest(&table);
    assert_eq!(metadata["configuration"]["delta.columnMapping.mode"], "name");
    // The identical re-run shortcut and the diff read through the mapping.
    let (code, report) = lake.ingest(name, D1, &[]);
    assert_eq!((code, report["status"].as_str()), (0, Some("unchanged")), "{report}");

    // A column the definition adds gets a physical name and id of its own.
    for l in [&lake, &reference] {
        l.edit(name, |t| {
            t.replacen(
                "[[columns]]",
                "missing_columns = \"null\"\n\n[[columns]]\nname = \"added_later\"\nkind = \"text\"\n\n[[columns]]",
                1,
            )
        });
        l.generate(name, "2019-04-03", "2019-04-03", 400, &[]);
        assert_eq!(l.ingest(name, "2019-04-03", &[]).0, 0);
    }
    let (_, metadata, _) = foreign::latest(&table);
    let schema: serde_json::Value = serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
    let added = schema["fields"].as_array().unwrap().iter().find(|f| f["name"] == "added_later").unwrap();
    let physical = added["metadata"]["delta.columnMapping.physicalName"].as_str().unwrap();
    assert!(physical.starts_with("col-"), "{added}");
    let max: usize = metadata["configuration"]["delta.columnMapping.maxColumnId"].as_str().unwrap().parse().unwrap();
    assert_eq!(added["metadata"]["delta.columnMapping.id"], json!(max));
    assert_eq!(lake.snapshot(name).rows, reference.snapshot(name).rows, "the added column's values too");
    assert!(lake.count(name, &format!("SELECT count(*) AS n FROM {name} WHERE added_later IS NOT NULL")) > 0);
    // deltalake cannot compact such a table: refused before any work.
    let out = lake.run(&["maintain", "--table-name", name, "--optimize"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    lake.ok(&["maintain", "--table-name", name, "--checkpoint"]);
}

/// One test per built-in definition, in a module named after the check:
/// `features::<check>::<table>`.
macro_rules! for_each_built_in_table {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[test]
            fn shopify_configuration() {
                super::$check("shopify_configuration");
            }
            #[test]
            fn shopify_usage_daily() {
                super::$check("shopify_usage_daily");
            }
            #[test]
            fn shopify_products() {
                super::$check("shopify_products");
            }
            #[test]
            fn shopify_customers() {
                super::$check("shopify_customers");
            }
            #[test]
            fn shopify_bulk_products() {
                super::$check("shopify_bulk_products");
            }
            #[test]
            fn shopify_bulk_variants() {
                super::$check("shopify_bulk_variants");
            }
        }
    )*};
}

for_each_built_in_table!(
    check_constraints_refuse_the_rows_that_break_them,
    a_not_null_rule_and_a_null_result_break_the_constraint,
    invariants_and_generated_columns_are_kept,
    an_append_only_table_takes_new_dates_and_refuses_changes,
    features_shoplake_cannot_honour_are_refused_before_any_work,
    features_shoplake_honours_let_every_command_work,
    stats_columns_of_an_older_table_are_repaired_by_its_next_load,
    column_mapping_is_written_under_physical_names,
);
