//! Declared schema evolution (issue #16): a column added to a definition
//! evolves the table without rewriting data, identical re-runs stay no-ops
//! across the change, header policies do what they say (and the case beside
//! each), and changes that cannot be made in place are refused before
//! anything is read.

use crate::lake::Lake;

const T: &str = "shopify_configuration";
const DATES: [&str; 5] = ["2019-04-01", "2019-04-02", "2019-04-03", "2019-04-04", "2019-04-05"];

/// The definition gains a nullable text column (appended, as a team would
/// add a setting), and old exports that lack it load it as null.
pub(crate) fn add_loyalty_tier(lake: &Lake) {
    lake.edit(T, |t| {
        t.replace("partition_by = \"export_date\"", "partition_by = \"export_date\"\nmissing_columns = \"null\"")
            .replace(
                "# Nullable: engines that cannot compute it",
                "[[columns]]\nname = \"loyalty_tier\"\nkind = \"text\"\n\
                 sample = { values = [\"gold\", \"silver\"], empty = 0.3 }\n\n# Nullable: engines that cannot compute it",
            )
    });
}

/// Keys of `date`'s export whose last line has a value in `column` (lines
/// without an application are filtered by transform.sql; a later line of a
/// key supersedes it; a small CSV split that honours quotes, as
/// the generator's exports have no embedded newlines).
fn export_values(lake: &Lake, date: &str, column: &str) -> i64 {
    let text = std::fs::read_to_string(lake.export(T, date)).unwrap();
    let split = |line: &str| -> Vec<String> {
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        fields
    };
    let mut lines = text.lines();
    let header = split(lines.next().unwrap());
    let at = header.iter().position(|h| h == column).expect("the column is in the header");
    let id = header.iter().position(|h| h == "id").expect("the key is in the header");
    let application = header.iter().position(|h| h == "application_id").expect("a customer's application");
    let last: std::collections::HashMap<String, bool> = lines
        .filter(|l| !l.is_empty())
        .filter(|l| !split(l)[application].trim().is_empty())
        .map(|l| {
            let fields = split(l);
            (fields[id].clone(), !fields[at].is_empty())
        })
        .collect();
    last.values().filter(|valued| **valued).count() as i64
}

fn schema_of(lake: &Lake, as_of: Option<&str>) -> Vec<String> {
    let rows = lake.query(T, "SELECT * FROM shopify_configuration LIMIT 1", as_of);
    let mut columns: Vec<String> = rows[0].as_object().unwrap().keys().cloned().collect();
    columns.sort();
    columns
}

#[test]
fn a_column_added_to_the_definition_evolves_the_table_in_place() {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[2], 300, &[]);
    for date in &DATES[..3] {
        assert_eq!(lake.ingest(T, date, &[]).0, 0);
    }
    let before = lake.snapshot(T);
    let old_export = std::fs::read(lake.export(T, DATES[1])).unwrap();
    let v_before = lake.version(T);
    let diff = lake.ok(&["schema", "diff"]);
    assert!(diff.contains("nothing to change"), "{diff}");

    add_loyalty_tier(&lake);
    let diff = lake.ok(&["schema", "diff"]);
    assert!(diff.contains("add column      loyalty_tier string"), "{diff}");
    assert_eq!(lake.version(T), v_before, "diff writes nothing");

    // Dates 4-5 come with the column: the first load adds it in its own
    // commit (one load, one version), beside its rows.
    lake.generate(T, DATES[3], DATES[4], 300, &[]);
    let (code, fourth) = lake.ingest(T, DATES[3], &[]);
    assert_eq!(code, 0, "{fourth}");
    assert_eq!(fourth["added_columns"], serde_json::json!(["loyalty_tier"]));
    assert_eq!(fourth["table_version"], v_before + 1, "one version: the column and the rows");
    let history = lake.history(T);
    assert_eq!(history[0]["export_date"], DATES[3]);
    assert!(history[0]["columns"].as_str().unwrap().contains("added loyalty_tier"), "{}", history[0]);
    // The load that added the column wrote its values (they were once
    // dropped, exit 0, because the files were written in the old schema).
    let fourth_values = lake.count(
        T,
        "SELECT count(*) FROM shopify_configuration WHERE export_date = '2019-04-04' AND loyalty_tier IS NOT NULL",
    );
    assert!(fourth_values > 0);
    assert_eq!(fourth_values, export_values(&lake, DATES[3], "loyalty_tier"), "every value of the export");
    // ...with statistics for it (the definition's stats columns, set by the same commit).
    let version = fourth["table_version"].as_i64().unwrap();
    let commit = std::fs::read_to_string(lake.table(T).join(format!("_delta_log/{version:020}.json"))).unwrap();
    let stats: Vec<serde_json::Value> = commit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|a| a["add"]["stats"].as_str().map(|s| serde_json::from_str(s).unwrap()))
        .collect();
    assert!(!stats.is_empty() && stats.iter().all(|s| s["nullCount"].get("loyalty_tier").is_some()), "{stats:?}");
    assert_eq!(lake.ingest(T, DATES[4], &[]).0, 0);

    // No data file was rewritten; rows loaded before read null.
    let after = lake.snapshot(T);
    for date in &DATES[..3] {
        assert_eq!(after.files[*date], before.files[*date], "{date}'s files are the ones written before");
    }
    let nulls = lake.count(
        T,
        "SELECT count(*) FROM shopify_configuration WHERE export_date < '2019-04-04' AND loyalty_tier IS NOT NULL",
    );
    assert_eq!(nulls, 0);
    assert!(lake.count(T, "SELECT count(*) FROM shopify_configuration WHERE loyalty_tier = 'gold'") > 0);

    // Re-loading date 2 from its old export (no such column) changes nothing.
    std::fs::write(lake.export(T, DATES[1]), &old_export).unwrap();
    let v = lake.version(T);
    let (code, rerun) = lake.ingest(T, DATES[1], &[]);
    assert_eq!((code, rerun["status"].as_str()), (0, Some("unchanged")), "{rerun}");
    assert_eq!(rerun["missing_columns"], serde_json::json!(["loyalty_tier"]));
    assert_eq!(lake.version(T), v, "no version");

    // From an export that has the column: exactly the rows with a value are updated.
    lake.generate(T, DATES[0], DATES[1], 300, &[]);
    let (code, refreshed) = lake.ingest(T, DATES[1], &[]);
    assert_eq!(code, 0, "{refreshed}");
    let with_value = lake.count(
        T,
        "SELECT count(*) FROM shopify_configuration WHERE export_date = '2019-04-02' AND loyalty_tier IS NOT NULL",
    );
    assert!(with_value > 0);
    assert_eq!(refreshed["rows_updated"], with_value, "{refreshed}");
    assert_eq!((&refreshed["rows_inserted"], &refreshed["rows_deleted"]), (&0.into(), &0.into()));

    // Every earlier version reads with its own schema.
    assert!(!schema_of(&lake, Some(&v_before.to_string())).contains(&"loyalty_tier".to_string()));
    assert!(schema_of(&lake, None).contains(&"loyalty_tier".to_string()));
    for version in 1..=lake.version(T) {
        lake.query(T, "SELECT count(*) FROM shopify_configuration", Some(&version.to_string()));
    }
    // `changes` spans the change.
    let changes = lake.ok(&["changes", "--from-version", &v_before.to_string(), "--format", "json"]);
    let changes = crate::common::json_lines(changes.as_bytes());
    assert!(changes.iter().any(|c| c["loyalty_tier"] == "gold"), "the new column's values are in the change feed");

    // Restoring a version before the change brings its schema back (Delta's
    // RESTORE); the next load that changes data adds the column again.
    lake.ok(&["restore", "--version", &v_before.to_string()]);
    assert!(!schema_of(&lake, None).contains(&"loyalty_tier".to_string()), "the schema as it was");
    assert!(lake.ok(&["schema", "diff"]).contains("add column      loyalty_tier"));
    let (code, reload) = lake.ingest(T, DATES[4], &[]);
    assert_eq!(code, 0, "{reload}");
    assert_eq!(reload["added_columns"], serde_json::json!(["loyalty_tier"]));
}

/// A load refused after the column was declared leaves the table without
/// it (the column comes with a load's rows, never alone); the next load
/// that succeeds adds it with its values.
#[test]
fn a_refused_load_does_not_add_the_column() {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[0], 400, &[]);
    assert_eq!(lake.ingest(T, DATES[0], &[]).0, 0);
    add_loyalty_tier(&lake);
    let (before, version) = (lake.snapshot(T), lake.version(T));
    // The same date from an export a third as long: the delete guard refuses it.
    lake.generate(T, DATES[0], DATES[0], 130, &["--seed", "7"]);
    let (code, refused) = lake.ingest(T, DATES[0], &[]);
    assert_eq!(code, 4, "{refused}");
    assert_eq!((lake.version(T), lake.snapshot(T)), (version, before), "nothing committed");
    assert!(!schema_of(&lake, None).contains(&"loyalty_tier".to_string()), "no column without rows");

    // Beside it: the export allowed to shrink the date loads, column and values in one version.
    let (code, loaded) = lake.ingest(T, DATES[0], &["--max-delete-ratio", "1"]);
    assert_eq!(code, 0, "{loaded}");
    assert_eq!(lake.version(T), version + 1);
    assert_eq!(loaded["added_columns"], serde_json::json!(["loyalty_tier"]));
    let valued = lake.count(T, "SELECT count(*) FROM shopify_configuration WHERE loyalty_tier IS NOT NULL");
    assert_eq!(valued, export_values(&lake, DATES[0], "loyalty_tier"));
}

#[test]
fn schema_apply_adds_the_column_and_properties_as_one_version() {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[0], 50, &[]);
    lake.ingest(T, DATES[0], &[]);
    let v = lake.version(T);
    add_loyalty_tier(&lake);
    lake.edit(T, |t| t.replace("\"delta.checkpointInterval\" = \"10\"", "\"delta.checkpointInterval\" = \"20\""));
    let applied = lake.ok(&["schema", "apply"]);
    assert!(
        applied.contains("add column      loyalty_tier") && applied.contains("delta.checkpointInterval: 10 -> 20"),
        "{applied}"
    );
    assert_eq!(lake.version(T), v + 1, "one version");
    assert!(lake.ok(&["schema", "diff"]).contains("nothing to change"));
    assert_eq!(lake.ok(&["schema", "apply"]).matches("nothing").count(), 1, "applying again changes nothing");
    assert_eq!(lake.version(T), v + 1);
    // The re-run after the apply is still a no-op (the old export lacks the column).
    let (code, rerun) = lake.ingest(T, DATES[0], &[]);
    assert_eq!((code, rerun["status"].as_str()), (0, Some("unchanged")), "{rerun}");
}

/// A change the table cannot follow in place: exit 2 with what differs,
/// before the export is read (there is none here), the table as it was.
fn refused(case: &str, change: impl FnOnce(String) -> String, expected: &str) {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[0], 30, &[]);
    assert_eq!(lake.ingest(T, DATES[0], &[]).0, 0);
    std::fs::remove_file(lake.export(T, DATES[0])).unwrap();
    let v = lake.version(T);
    lake.edit(T, change);
    let out = lake.run(&["ingest", "--date", DATES[0]]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
    assert!(stderr.contains(expected), "{case}: `{expected}` not in {stderr}");
    assert!(stderr.contains("back-fill"), "{case}: says how to migrate: {stderr}");
    assert_eq!(lake.version(T), v, "{case}");
    let diff = lake.ok(&["schema", "diff"]);
    assert!(diff.contains("REFUSED"), "{case}: {diff}");
    assert_eq!(lake.run(&["schema", "apply"]).status.code(), Some(2), "{case}");
}

#[test]
fn changes_that_cannot_be_made_in_place_are_refused_before_reading() {
    let column = |name: &str| format!("[[columns]]\nname = \"{name}\"\n");
    refused(
        "a type change",
        |t| {
            t.replacen(
                &(column("nbr_metafields") + "kind = \"count\""),
                &(column("nbr_metafields") + "kind = \"text\""),
                1,
            )
        },
        "a type change",
    );
    refused("a rename", |t| t.replacen(&column("showing_logo"), &column("logo_shown"), 1), "renamed to logo_shown?");
    refused(
        "a removed column",
        |t| t.replacen(&(column("showing_logo") + "kind = \"flag\"\n"), "", 1),
        "showing_logo that the definition no longer declares",
    );
    refused(
        "nullable to not null",
        |t| {
            t.replacen(
                &(column("install_channel") + "kind = \"text\"\n"),
                &(column("install_channel") + "kind = \"text\"\nnullable = false\n"),
                1,
            )
        },
        "a nullability change",
    );
    refused(
        "a new not-null column",
        |t| {
            t.replace(
                "# Nullable: engines",
                "[[columns]]\nname = \"plan\"\nkind = \"text\"\nnullable = false\n\n# Nullable: engines",
            )
        },
        "new column plan is not nullable",
    );
    refused(
        "a key change",
        |t| t.replace("key = [\"id\", \"export_date\"]", "key = [\"shop_domain\", \"export_date\"]"),
        "a key change",
    );
}

#[test]
fn header_policies_do_what_they_say_and_no_more() {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[0], 40, &[]);
    let path = lake.export(T, DATES[0]);
    let original = std::fs::read_to_string(&path).unwrap();
    let with_extra: String = original
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{l},{}\n", if i == 0 { "beta_flag" } else { "1" }))
        .collect();

    // An unknown column: refused by default (exit 4, named, nothing written) ...
    std::fs::write(&path, &with_extra).unwrap();
    let out = lake.run(&["ingest", "--date", DATES[0]]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected columns: beta_flag"));
    assert!(!lake.table(T).join("_delta_log").exists(), "nothing written");
    // ... ignored when the definition says so, and named in the report and the history.
    lake.edit(T, |t| {
        t.replace("partition_by = \"export_date\"", "partition_by = \"export_date\"\nunknown_columns = \"ignore\"")
    });
    let (code, report) = lake.ingest(T, DATES[0], &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ignored_columns"], serde_json::json!(["beta_flag"]));
    let columns = lake.history(T)[0]["columns"].as_str().unwrap().to_string();
    assert!(columns.contains("ignored beta_flag") && columns.contains("unknown_columns=ignore"), "{columns}");

    // A missing column: refused by default (exit 4) ...
    let drop = |text: &str, column: &str| -> String {
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == column).unwrap();
        text.lines()
            .map(|l| {
                // Generated lines quote their lists: split outside quotes.
                let mut fields = Vec::new();
                let (mut field, mut quoted) = (String::new(), false);
                for c in l.chars() {
                    match c {
                        '"' => {
                            quoted = !quoted;
                            field.push(c)
                        }
                        ',' if !quoted => fields.push(std::mem::take(&mut field)),
                        c => field.push(c),
                    }
                }
                fields.push(field);
                fields.remove(at);
                fields.join(",") + "\n"
            })
            .collect()
    };
    std::fs::write(&path, drop(&original, "install_channel")).unwrap();
    let out = lake.run(&["ingest", "--date", DATES[0]]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing columns: install_channel"));
    // ... loaded as null when the definition says so (nullable columns only).
    lake.edit(T, |t| {
        t.replace("unknown_columns = \"ignore\"", "unknown_columns = \"ignore\"\nmissing_columns = \"null\"")
    });
    let (code, report) = lake.ingest(T, DATES[0], &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["missing_columns"], serde_json::json!(["install_channel"]));
    assert_eq!(lake.count(T, "SELECT count(*) FROM shopify_configuration WHERE install_channel IS NOT NULL"), 0);
    // Beside it: a missing not-null column is still refused.
    std::fs::write(&path, drop(&original, "application_id")).unwrap();
    let out = lake.run(&["ingest", "--date", DATES[0]]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not nullable"));
}

#[test]
fn a_table_that_never_held_a_row_takes_a_changed_definition() {
    let lake = Lake::new();
    lake.generate(T, DATES[0], DATES[0], 200, &[]);
    // A definition being written: a text column declared as a count rejects
    // every line (a count cannot be erasable: that line goes too).
    lake.edit(T, |t| {
        t.replacen("name = \"shop_domain\"\nkind = \"text\"", "name = \"shop_domain\"\nkind = \"count\"", 1).replacen(
            "erasable = true\n",
            "",
            1,
        )
    });
    let out = lake.run(&["ingest", "--date", DATES[0]]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    // Corrected: the empty table follows (a type change, refused on a table with rows).
    lake.edit(T, |t| {
        t.replacen("name = \"shop_domain\"\nkind = \"count\"", "name = \"shop_domain\"\nkind = \"text\"", 1)
    });
    let (code, report) = lake.ingest(T, DATES[0], &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(lake.count(T, "SELECT count(*) FROM shopify_configuration"), report["rows_valid"].as_i64().unwrap());
}
