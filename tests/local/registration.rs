//! Catalog registration as far as local files go: what is refused before a
//! load, what a load whose catalog cannot be reached does (commits, exits
//! 6), and a definition's `[catalog]` block. Registration in a real Glue
//! (moto) read by Trino is the catalog tier's (`make catalog-test`).

use crate::lake::Lake;

const D1: &str = "2026-03-01";
/// Nothing listens here: a connection is refused at once.
const UNREACHABLE: &str = "http://127.0.0.1:9";

fn rows(lake: &Lake) -> i64 {
    lake.count("shopify_configuration", "SELECT count(*) AS n FROM shopify_configuration")
}

#[test]
fn glue_is_refused_for_a_local_table_before_anything_is_written() {
    let lake = Lake::new();
    lake.generate("shopify_configuration", D1, D1, 40, &[]);
    for (case, args, needle) in [
        ("a local lake", &["--catalog", "glue", "--glue-database", "shop"][..], "Glue registers tables on S3 only"),
        ("no database", &["--catalog", "glue"][..], "--glue-database"),
        ("a database Athena cannot name", &["--catalog", "glue", "--glue-database", "Shop-Lake"][..], "lowercase"),
        ("unity without a URL", &["--catalog", "unity"][..], "--unity-url"),
    ] {
        let mut command = vec!["ingest", "--date", D1];
        command.extend_from_slice(args);
        let out = lake.run(&command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert!(stderr.contains(needle), "{case}: `{needle}` not in {stderr}");
        assert!(!lake.table("shopify_configuration").exists(), "{case}: refused before the table is made");
    }
    // Beside them: no catalog at all loads as ever.
    assert_eq!(lake.ingest("shopify_configuration", D1, &[]).0, 0);
}

#[test]
fn a_load_whose_catalog_cannot_be_reached_commits_and_exits_6() {
    let lake = Lake::new();
    lake.generate("shopify_configuration", D1, D1, 40, &[]);
    let unity = ["--catalog", "unity", "--unity-url", UNREACHABLE];
    let out = lake.run(&[&["ingest", "--date", D1, "--format", "json"][..], &unity].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("the load committed, but the catalog was not updated"), "{stderr}");
    assert!(
        stderr.contains("shoplake catalog sync --table-name shopify_configuration"),
        "says how to repair: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "committed");
    let loaded = report["rows_valid"].as_i64().unwrap();
    assert!(loaded > 0);
    assert_eq!(rows(&lake), loaded, "the data stays: registration never undoes a commit");

    // The case beside it: a dry run registers nothing, so it cannot fail on the catalog.
    let out = lake.run(&[&["ingest", "--date", D1, "--dry-run"][..], &unity].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // `catalog sync` itself fails as an unavailable service does (5): nothing of the table changed.
    let version = lake.version("shopify_configuration");
    let out = lake.run(&[&["catalog", "sync"][..], &unity].concat());
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lake.version("shopify_configuration"), version);
    // No catalog named anywhere: sync says what to give it.
    let out = lake.run(&["catalog", "diff"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--catalog glue|unity"));
}

#[test]
fn a_definitions_catalog_block_applies_unless_the_command_line_says_none() {
    let lake = Lake::new();
    lake.generate("shopify_configuration", D1, D1, 40, &[]);
    lake.edit("shopify_configuration", |toml| {
        let first_table = toml.find("\n[").expect("a table after the top-level keys");
        let block = format!("\n[catalog]\ntype = \"unity\"\nurl = \"{UNREACHABLE}\"\nschema = \"main.shop\"\n");
        format!("{}{block}{}", &toml[..first_table], &toml[first_table..])
    });
    assert_eq!(lake.run(&["validate"]).status.code(), Some(0), "{}", lake.ok(&["validate"]));
    assert_eq!(lake.ingest("shopify_configuration", D1, &[]).0, 6, "the block's catalog is tried");
    assert_eq!(lake.ingest("shopify_configuration", D1, &["--catalog", "none"]).0, 0, "--catalog none: not tried");

    // A block missing its URL, or with a key of another catalog, is named by its key path.
    lake.edit("shopify_configuration", |toml| {
        toml.replace(&format!("url = \"{UNREACHABLE}\"\n"), "database = \"x\"\n")
    });
    let out = lake.run(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("catalog.database: does not go with type = \"unity\""), "{stdout}");
    assert!(stdout.contains("catalog.url"), "{stdout}");
}
