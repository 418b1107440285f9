//! Property test: for random small exports and random sequences of loads
//! and re-loads of several dates, the table ends equal to the last load of
//! each date, as computed by an independent model written here; each load
//! reports the inserts, updates and deletes the model expects, an export
//! that would empty a loaded date is refused, and loading the same file
//! again adds no version.

use std::collections::BTreeMap;

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
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..6,
        prop::bool::weighted(0.85),
        prop::option::of(any::<bool>()),
        prop::option::of(0i64..5),
        prop::option::of(prop::collection::vec(0i64..9, 0..3)),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(id, has_application, flag, count, pins, default_prefix)| Row {
            id,
            has_application,
            flag,
            count,
            pins,
            default_prefix,
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

fn render(date: &str, rows: &[Row]) -> String {
    let mut text = format!("{}\n", crate::common::HEADER);
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
            "k{id},k{id}.myshopify.com,{app},{flag},False,{count},{pins},True,False,True,False,3,True,True,False,False,True,False,{prefix},False,direct,{date}\n",
            id = r.id,
            app = if r.has_application { "APP" } else { "" },
            flag = flag_text(r.flag, n as u8),
        ));
    }
    text
}

/// The model: what the table must hold for a date after loading `rows`.
fn expected_day(date: &str, rows: &[Row]) -> BTreeMap<String, Vec<String>> {
    let mut day = BTreeMap::new();
    for r in rows.iter().filter(|r| r.has_application) {
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
        values.sort();
        // Later lines replace earlier ones with the same id.
        day.insert(format!("k{}", r.id), values);
    }
    day
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_table_equals_the_last_load_of_each_date(loads in loads()) {
        let ws = crate::common::Workspace::new();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let storage = Storage::new();
        let mut model: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (date_index, rows) in &loads {
            let date = DATES[*date_index];
            ws.write_export(date, render(date, rows));
            let def = shoplake::definition::built_in("shopify_configuration");
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
            let day = expected_day(date, rows);
            let (report, result) = runtime.block_on(ingest::run(&storage, &config, "property"));
            let accounted = report.rows_filtered + report.rows_rejected + report.rows_duplicate + report.rows_valid;
            prop_assert_eq!(accounted, report.rows_read);
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
        prop_assert_eq!(snapshot.rows, model);
    }
}
