//! Property test: for random small exports and random sequences of loads
//! and re-loads of several dates, the table ends equal to the last load of
//! each date, as computed by an independent model written here; each load
//! reports the inserts, updates and deletes the model expects, an export
//! that would empty a loaded date is refused, and loading the same file
//! again adds no version. At a random point of the sequence (or never) the
//! definition gains a nullable column (`loyalty_tier`, issue #16): the loads
//! after it carry the column, rows loaded before read null, and a row
//! whose new value is null is unchanged. At another random point (or
//! never) a shop is erased (issue #27): it leaves every date, and every
//! later load keeps it out, counted suppressed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use shoplake::ingest::{self, IngestConfig};
use shoplake::report::Status;
use shoplake::storage::{Location, Storage};
use shoplake::target::TableTarget;
use shoplake::write::Guards;

const DATES: [&str; 3] = ["2019-04-01", "2019-04-02", "2019-04-03"];

#[derive(Debug, Clone)]
struct Row {
    id: u8,
    has_application: bool,
    flag: Option<bool>,
    count: Option<i64>,
    pins: Option<Vec<i64>>,
    default_prefix: Option<bool>,
    /// `loyalty_tier` once the definition has it: gold, silver or empty.
    tier: Option<bool>,
}

/// shopify_configuration with `loyalty_tier` added (tests/local/evolution.rs).
fn with_loyalty_tier() -> &'static shoplake::definition::TableDefinition {
    static EVOLVED: OnceLock<&'static shoplake::definition::TableDefinition> = OnceLock::new();
    EVOLVED.get_or_init(|| {
        let lake = crate::lake::Lake::new();
        crate::evolution::add_loyalty_tier(&lake);
        lake.definition("shopify_configuration")
    })
}

fn tier_text(tier: Option<bool>) -> &'static str {
    match tier {
        None => "",
        Some(true) => "gold",
        Some(false) => "silver",
    }
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..6,
        prop::bool::weighted(0.85),
        prop::option::of(any::<bool>()),
        prop::option::of(0i64..5),
        prop::option::of(prop::collection::vec(0i64..9, 0..3)),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(id, has_application, flag, count, pins, default_prefix, tier)| Row {
            id,
            has_application,
            flag,
            count,
            pins,
            default_prefix,
            tier,
        })
}

/// A load: which date, and the export's rows.
fn loads() -> impl Strategy<Value = Vec<(usize, Vec<Row>)>> {
    prop::collection::vec((0..DATES.len(), prop::collection::vec(row(), 0..8)), 1..7)
}

fn flag_text(v: Option<bool>, style: u8) -> String {
    match (v, style % 3) {
        (None, _) => String::new(),
        (Some(b), 0) => if b { "True" } else { "False" }.to_string(),
        (Some(b), 1) => b.to_string(),
        (Some(b), _) => if b { "1" } else { "0" }.to_string(),
    }
}

fn render(date: &str, rows: &[Row], with_tier: bool) -> String {
    let tier_header = if with_tier { ",loyalty_tier" } else { "" };
    let mut text = format!("{}{tier_header}\n", crate::common::HEADER);
    for (n, r) in rows.iter().enumerate() {
        let pins = match &r.pins {
            None => String::new(),
            Some(p) => format!("\"[{}]\"", p.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let prefix = match r.default_prefix {
            None => "",
            Some(true) => "shopify_",
            Some(false) => "mine_",
        };
        let count = r.count.map(|c| if n % 2 == 0 { c.to_string() } else { format!("{c}.0") }).unwrap_or_default();
        text.push_str(&format!(
            "k{id},k{id}.myshopify.com,{app},{flag},False,{count},{pins},True,False,True,False,3,True,True,False,False,True,False,{prefix},False,direct,{date}{tier}\n",
            id = r.id,
            app = if r.has_application { "APP" } else { "" },
            flag = flag_text(r.flag, n as u8),
            tier = if with_tier { format!(",{}", tier_text(r.tier)) } else { String::new() },
        ));
    }
    text
}

/// The erasure key of this test process (loads of a table with erasures need it).
fn erasure_key() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| std::env::set_var(shoplake::erasure::KEY_VARIABLE, "property-test-erasure-key"));
}

/// The model: what the table must hold for a date after loading `rows`
/// (a shop erased before is kept out).
fn expected_day(date: &str, rows: &[Row], with_tier: bool, erased: Option<u8>) -> BTreeMap<String, Vec<String>> {
    let mut day = BTreeMap::new();
    for r in rows.iter().filter(|r| r.has_application && Some(r.id) != erased) {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "<null>".to_string());
        let prefix = r.default_prefix.map(|d| if d { "shopify_" } else { "mine_" }.to_string());
        let mut values = vec![
            format!("id=k{}", r.id),
            format!("shop_domain=k{}.myshopify.com", r.id),
            "application_id=APP".to_string(),
            format!("autocomplete_enabled={}", opt(r.flag.map(|b| b.to_string()))),
            "user_created_at_least_one_qr=false".to_string(),
            format!("nbr_merchandised_queries={}", opt(r.count.map(|c| c.to_string()))),
            format!(
                "nbrs_pinned_items={}",
                opt(r
                    .pins
                    .as_ref()
                    .map(|p| format!("[{}]", p.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))))
            ),
            "showing_logo=true".to_string(),
            "has_changed_sort_orders=false".to_string(),
            "analytics_enabled=true".to_string(),
            "use_metafields=false".to_string(),
            "nbr_metafields=3".to_string(),
            "use_default_colors=true".to_string(),
            "show_products=true".to_string(),
            "instant_search_enabled=false".to_string(),
            "instant_search_enabled_on_collection=false".to_string(),
            "only_using_faceting_on_collection=true".to_string(),
            "use_merchandising_for_collection=false".to_string(),
            format!("index_prefix={}", opt(prefix.clone())),
            "indexing_paused=false".to_string(),
            "install_channel=direct".to_string(),
            format!("export_date={date}"),
            format!("has_specific_prefix={}", prefix.as_deref() != Some("shopify_")),
        ];
        if with_tier {
            values.push(format!("loyalty_tier={}", opt(r.tier.map(|t| tier_text(Some(t)).to_string()))));
        }
        values.sort();
        // Later lines replace earlier ones with the same id.
        day.insert(format!("k{}", r.id), values);
    }
    day
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_table_equals_the_last_load_of_each_date(
        loads in loads(),
        evolve_at in 0usize..9,
        erase_at in 0usize..9,
        erased_id in 0u8..6,
    ) {
        erasure_key();
        let ws = crate::common::Workspace::new();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = Storage::new();
        let mut model: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut evolution_committed = false;
        let mut erased = None;
        for (at, (date_index, rows)) in loads.iter().enumerate() {
            let date = DATES[*date_index];
            let evolved = at >= evolve_at;
            if at == erase_at {
                // Erase shop k<erased_id> before this load: it leaves every date.
                // The definition the table follows (it gains the column with a committed load).
                let def = if evolution_committed { with_loyalty_tier() } else { shoplake::catalog::built_in("shopify_configuration") };
                let target = TableTarget::resolve(def, &Location::Local(ws.dir.path().join("lake")), None, None).unwrap();
                let config = shoplake::audit::erase::EraseConfig {
                    targets: vec![target],
                    by: shoplake::audit::erase::By::Key(format!("k{erased_id}")),
                    reason: "property".into(),
                    dry_run: false,
                    // Half the erasures purge too: the loads after go on from the purged table.
                    purge: erased_id % 2 == 0,
                    exports: None,
                };
                let done = runtime.block_on(shoplake::audit::erase::run(&storage, &config));
                prop_assert!(done.is_ok(), "{:?}", done);
                let holding = model.values().filter(|day| day.contains_key(&format!("k{erased_id}"))).count();
                prop_assert_eq!(done.unwrap()[0].rows_erased, holding as u64);
                for day in model.values_mut() {
                    day.remove(&format!("k{erased_id}"));
                }
                model.retain(|_, day| !day.is_empty());
                erased = Some(erased_id);
            }
            if at == evolve_at {
                // Every row the table holds reads null in the new column.
                for row in model.values_mut().flat_map(|day| day.values_mut()) {
                    row.push("loyalty_tier=<null>".to_string());
                    row.sort();
                }
            }
            ws.write_export(date, render(date, rows, evolved));
            let def = if evolved { with_loyalty_tier() } else { shoplake::catalog::built_in("shopify_configuration") };
            let target = TableTarget::resolve(def, &Location::Local(ws.dir.path().join("lake")), None, None).unwrap();
            let config = IngestConfig {
                date: date.parse().unwrap(),
                source: Location::Local(ws.raw()),
                target,
                max_reject_ratio: 0.0,
                guards: Guards { allow_empty: false, max_delete_ratio: 0.1 },
                dry_run: false,
            };
            let before = model.get(date).cloned().unwrap_or_default();
            let day = expected_day(date, rows, evolved, erased);
            let suppressed = rows.iter().filter(|r| r.has_application && Some(r.id) == erased).count() as u64;
            let (report, result) = runtime.block_on(ingest::run(&storage, &config, "property"));
            let accounted = report.rows_filtered
                + report.rows_rejected
                + report.rows_duplicate
                + report.rows_suppressed
                + report.rows_valid;
            prop_assert_eq!(accounted, report.rows_read);
            prop_assert_eq!(report.rows_suppressed, suppressed);
            prop_assert_eq!(report.rows_read, rows.len() as u64);
            if day.is_empty() && !before.is_empty() {
                // Emptying a loaded date needs --allow-empty: refused, nothing written.
                let error = result.expect_err("an empty export over a loaded date is refused");
                prop_assert_eq!(error.kind, shoplake::Kind::DataRejected);
                continue;
            }
            prop_assert!(result.is_ok(), "{:?} {:?}", result, report);
            let inserted = day.keys().filter(|k| !before.contains_key(*k)).count() as u64;
            let deleted = before.keys().filter(|k| !day.contains_key(*k)).count() as u64;
            let updated = day.iter().filter(|(k, v)| before.get(*k).is_some_and(|old| old != *v)).count() as u64;
            let unchanged = day.iter().filter(|(k, v)| before.get(*k) == Some(*v)).count() as u64;
            prop_assert_eq!(
                (report.rows_inserted, report.rows_updated, report.rows_deleted, report.rows_unchanged),
                (inserted, updated, deleted, unchanged)
            );
            let changed = inserted + updated + deleted > 0;
            prop_assert_eq!(report.status, if changed { Status::Committed } else { Status::Unchanged });
            evolution_committed |= evolved && changed;

            // The same file again: nothing to do, no new version.
            let (again, result) = runtime.block_on(ingest::run(&storage, &config, "property-again"));
            prop_assert!(result.is_ok(), "{:?}", result);
            prop_assert_eq!(again.status, Status::Unchanged);
            prop_assert_eq!(again.table_version, report.table_version);
            prop_assert_eq!((again.rows_inserted, again.rows_updated, again.rows_deleted), (0, 0, 0));

            if day.is_empty() {
                model.remove(date);
            } else {
                model.insert(date.to_string(), day);
            }
        }
        let snapshot = ws.snapshot();
        let table_has_tier =
            snapshot.rows.values().flat_map(|day| day.values()).any(|row| row.iter().any(|v| v.starts_with("loyalty_tier=")));
        // A committed load under the evolved definition adds the column in its commit.
        prop_assert!(table_has_tier || !evolution_committed || snapshot.rows.is_empty());
        if !table_has_tier {
            // Never evolved (no load after the change committed): every tier the model has is null.
            for row in model.values_mut().flat_map(|day| day.values_mut()) {
                if let Some(at) = row.iter().position(|v| v.starts_with("loyalty_tier=")) {
                    prop_assert_eq!(row.remove(at), "loyalty_tier=<null>");
                }
            }
        }
        prop_assert_eq!(snapshot.rows, model);
    }
}
