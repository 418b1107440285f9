//! The bad nights of issue #8 where S3 matters, against each backend:
//! rejects paired by record with parallel loads, overlapping runs of one
//! date, configuration errors (exit 2), slow and stalled downloads, an
//! export replaced mid-load, and the conditional-write probe. Requests are
//! watched and shaped by a proxy the test starts ([`crate::proxy`]).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use object_store::{ObjectStoreExt, PutPayload};
use shoplake::storage::Location;

use crate::proxy::Proxy;
use crate::{report_of, Backend, Case};

const D1: &str = "2019-06-01";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A bad line for `date`, with a reason naming `word`.
fn bad_line(id: &str, word: &str, date: &str) -> String {
    format!("{id},{id}.myshopify.com,APP,{word},False,1,[0],True,False,True,False,3,True,True,False,False,True,False,shopify_,False,direct,{date}")
}

fn good_lines(n: usize, flag: &str, date: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("s{i:05},s{i}.myshopify.com,APP,{flag},False,1,[0],True,False,True,False,3,True,True,False,False,True,False,shopify_,False,direct,{date}"))
        .collect()
}

const HEADER: &str = "id,shop_domain,application_id,autocomplete_enabled,user_created_at_least_one_qr,nbr_merchandised_queries,nbrs_pinned_items,showing_logo,has_changed_sort_orders,analytics_enabled,use_metafields,nbr_metafields,use_default_colors,show_products,instant_search_enabled,instant_search_enabled_on_collection,only_using_faceting_on_collection,use_merchandising_for_collection,index_prefix,indexing_paused,install_channel,export_date";

fn export(lines: &[String]) -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text.into_bytes()
}

impl Case {
    fn query(&self, sql: &str, as_of: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["query", "--format", "json", "--sql", sql];
        if let Some(v) = as_of {
            args.extend_from_slice(&["--as-of", v]);
        }
        let out = self.shoplake(&args);
        assert!(out.status.success(), "query as of {as_of:?}: {}", stderr(&out));
        json_lines(&out.stdout)
    }

    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.shoplake(&["history", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        json_lines(&out.stdout)
    }

    async fn put(&self, uri: &str, bytes: Vec<u8>) {
        let (store, path) = self.storage.object_store(&Location::parse(uri).unwrap()).await.unwrap();
        store.put(&path, PutPayload::from(bytes)).await.expect("upload");
    }

    /// Every object under a prefix of the lake bucket.
    async fn objects_under(&self, uri: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let (store, path) = self.storage.object_store(&Location::parse(uri).unwrap()).await.unwrap();
        let mut names: Vec<String> =
            store.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        names.sort();
        names
    }
}

/// Rejects shown as of each version equal, date by date, those of the last
/// load of the date up to that version (whatever order commits landed in).
fn assert_rejects_follow_each_version(case: &Case) {
    let history = case.history();
    let latest = history[0]["version"].as_i64().unwrap();
    for version in 1..=latest {
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for entry in history.iter().rev().filter(|e| e["version"].as_i64().unwrap() <= version) {
            if let (Some(date), Some(rejected)) = (entry["export_date"].as_str(), entry["rows_rejected"].as_i64()) {
                expected.insert(date.to_string(), rejected);
            }
        }
        expected.retain(|_, n| *n > 0);
        let rows = case.query(
            "SELECT CAST(export_date AS VARCHAR) AS d, count(*) AS n FROM shopify_configuration_rejects GROUP BY 1 ORDER BY 1",
            Some(&version.to_string()),
        );
        let shown: BTreeMap<String, i64> =
            rows.iter().map(|r| (r["d"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap())).collect();
        assert_eq!(shown, expected, "rejects as of version {version}");
    }
}

/// Item 4: the rejects of each version follow it exactly, with loads of
/// several dates committing in any order (S3 timestamps have one-second
/// resolution, so no pairing by time could tell them apart).
pub async fn rejects_are_paired_by_record_with_parallel_loads(backend: Backend) {
    let case = Case::new(backend, "pairing").await;
    let days = ["2019-06-01", "2019-06-02", "2019-06-03", "2019-06-04", "2019-06-05", "2019-06-06"];
    case.generate(days[0], days[5], 300, &["--dirty"]);
    let out = case.shoplake(&["backfill", "--from", days[0], "--to", days[5], "--parallel", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for day in [days[1], days[2], days[4]] {
        let mut text = case.get_export(day).await;
        text.extend_from_slice(bad_line(&format!("x-{day}"), "maybe", day).as_bytes());
        text.push(b'\n');
        case.put_export(day, text).await;
    }
    // One bad line more than the generated ones: allowed, it is not what is tested.
    let out = case.shoplake(&[
        "backfill",
        "--from",
        days[1],
        "--to",
        days[4],
        "--parallel",
        "4",
        "--max-reject-ratio",
        "0.05",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_rejects_follow_each_version(&case);
}

/// Item 6: two runs of one date from different files at the same time end
/// with the table and its rejects from the same file.
pub async fn overlapping_runs_of_one_date_agree(backend: Backend) {
    let case = Case::new(backend, "overlap").await;
    let sources = [format!("{}-a", case.source()), format!("{}-b", case.source())];
    for (source, (flag, word)) in sources.iter().zip([("True", "maybe"), ("False", "perhaps")]) {
        let mut lines = good_lines(5_000, flag, D1);
        lines.push(bad_line("bad", word, D1));
        case.put(&format!("{source}/{D1}.csv"), export(&lines)).await;
    }
    for round in 0..3 {
        let children: Vec<_> = (0..2)
            .map(|i| {
                case.command(&["ingest", "--date", D1, "--source", &sources[(i + round) % 2]])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", stderr(&out));
        }
        let flags = case.query("SELECT DISTINCT autocomplete_enabled AS f FROM shopify_configuration", None);
        assert_eq!(flags.len(), 1, "round {round}: rows from both files: {flags:?}");
        let word = if flags[0]["f"] == true { "'maybe'" } else { "'perhaps'" };
        let rejects = case.query("SELECT reason FROM shopify_configuration_rejects", None);
        assert_eq!(rejects.len(), 1, "round {round}: {rejects:?}");
        assert!(rejects[0]["reason"].as_str().unwrap().contains(word), "round {round}: {rejects:?}");
    }
}

/// Item 7: what no retry can fix exits 2, and changes nothing.
pub async fn configuration_errors_exit_2(backend: Backend) {
    let case = Case::new(backend, "config").await;
    case.generate(D1, D1, 50, &[]);
    let missing = format!("no-such-bucket-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let code = |out: std::process::Output| (out.status.code(), stderr(&out));

    let (exit, message) = code(case.shoplake(&["ingest", "--date", D1, "--source", &format!("s3://{missing}/x")]));
    assert_eq!(exit, Some(2), "a source bucket that does not exist: {message}");
    assert!(message.contains("bucket does not exist"), "{message}");
    let (exit, message) = code(case.shoplake(&["ingest", "--date", D1, "--table", &format!("s3://{missing}/t")]));
    assert_eq!(exit, Some(2), "a table bucket that does not exist: {message}");
    let (exit, message) =
        code(case.shoplake(&["ingest", "--date", D1, "--rejects-table", &format!("s3://{missing}/r")]));
    assert_eq!(exit, Some(2), "a rejects bucket that does not exist: {message}");
    assert_eq!(case.snapshot().await.version, None, "no table was created");

    let out = case
        .command(&["ingest", "--date", D1])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no credentials: {}", stderr(&out));
    assert!(stderr(&out).contains("no AWS credentials"), "{}", stderr(&out));

    if backend == Backend::Minio {
        // LocalStack accepts any key; MinIO checks signatures.
        let out =
            case.command(&["ingest", "--date", D1]).env("AWS_SECRET_ACCESS_KEY", "not-the-secret").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "a wrong secret key: {}", stderr(&out));
        // The first request is a HEAD: S3 sends no error document with it, only the status.
        assert!(stderr(&out).contains("403"), "{}", stderr(&out));
        // MinIO serves one region and refuses signatures for another.
        let out = case.command(&["ingest", "--date", D1]).env("AWS_REGION", "eu-west-3").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "a wrong region: {}", stderr(&out));
    }
    assert_eq!(case.snapshot().await.version, None, "still no table");
    let (code, report) = case.ingest(D1);
    assert_eq!(code, 0, "and the right configuration loads: {report}");
}

/// Item 8: a download slower than any sane whole-request timeout works as
/// long as bytes keep coming; a stalled one fails with exit 5, in bounded time.
pub async fn slow_downloads_finish_and_stalled_ones_fail(backend: Backend) {
    use std::io::Write;
    let case = Case::new(backend, "slow").await;
    case.generate(D1, D1, 60_000, &[]);
    // The same export, gzipped (about 2 MB).
    let plain = case.get_export(D1).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gzipped = gz.finish().unwrap();
    let (store, path) =
        case.storage.object_store(&Location::parse(&format!("{}/{D1}.csv", case.source())).unwrap()).await.unwrap();
    store.delete(&path).await.unwrap();
    case.put(&format!("{}/{D1}.csv.gz", case.source()), gzipped.clone()).await;

    let proxy = Proxy::start(&case.service.endpoint).await;
    // ~5 s to download at this rate, with a 2-second idle timeout.
    proxy.throttle((gzipped.len() / 5) as u64);
    let started = Instant::now();
    let out = case
        .command(&["ingest", "--date", D1, "--format", "json"])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("SHOPLAKE_S3_IDLE_TIMEOUT", "2")
        .output()
        .unwrap();
    let took = started.elapsed();
    let (code, report) = report_of(out);
    assert_eq!(code, 0, "{report}");
    assert!(took > Duration::from_secs(4), "the download was really slow: {took:?}");
    assert_eq!(report["rows_read"], 60_000);
    assert!(report["source"].as_str().unwrap().ends_with(".csv.gz"));
    assert_eq!(case.local_ingest(D1).0, 0);
    assert_eq!(case.snapshot().await.rows, case.local_snapshot().await.rows);

    proxy.throttle(0);
    proxy.stall(true);
    let started = Instant::now();
    let out = case
        .command(&["ingest", "--date", "2019-06-02"])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("SHOPLAKE_S3_IDLE_TIMEOUT", "2")
        .env("SHOPLAKE_S3_RETRY_TIMEOUT", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(60), "gave up after {:?}", started.elapsed());
}

/// Item 9: an export replaced between being found and being read fails the
/// load (exit 5) rather than loading a mix; the next run loads the new file.
/// Both ways an export is read: one GET (a small export) and ranged GETs
/// side by side (an export of more than one part, issue #30 item 4), every
/// GET pinned to the object found; the held one is the first part.
pub async fn an_export_replaced_mid_load_is_refused(backend: Backend) {
    let case = Case::new(backend, "replaced").await;
    let part = shoplake::storage::ranged::PART_BYTES as usize;
    for (date, lines) in [(D1, 500), ("2019-06-02", 80_000)] {
        let first = export(&good_lines(lines, "True", date));
        let in_parts = first.len() > part;
        assert_eq!(in_parts, lines > 500, "{} bytes", first.len());
        case.put_export(date, first).await;
        let proxy = Proxy::start(&case.service.endpoint).await;
        proxy.hold("GET", &format!("/{date}.csv"));
        let child = case
            .command(&["ingest", "--date", date, "--format", "json"])
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(proxy.wait_held(Duration::from_secs(60)).await, "the export is read");
        let second = export(&good_lines(lines - 100, "False", date));
        case.put_export(date, second.clone()).await;
        proxy.release();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(stderr(&out).contains("replaced while it was being loaded"), "{}", stderr(&out));
        let gets: Vec<_> =
            proxy.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains(date)).collect();
        assert!(gets.iter().all(|r| r.if_match), "the export is read pinned to what was found: {gets:?}");
        match in_parts {
            true => assert!(gets.len() >= 2 && gets.iter().all(|r| r.range), "read in ranged parts: {gets:?}"),
            false => assert!(gets.len() == 1 && !gets[0].range, "read whole: {gets:?}"),
        }
        let rows = case.snapshot().await.rows;
        assert!(!rows.contains_key(date), "nothing of {date} was loaded: {:?}", rows.keys().collect::<Vec<_>>());

        proxy.clear();
        let out = case
            .command(&["ingest", "--date", date, "--format", "json"])
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .output()
            .unwrap();
        let (code, report) = report_of(out);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["rows_valid"], lines as u64 - 100, "the new export, whole");
        let parts = proxy.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains(date)).count();
        assert_eq!(parts, if in_parts { second.len().div_ceil(part) } else { 1 }, "one GET per part of the new export");
        assert_eq!(case.local_ingest(date).0, 0);
    }
    assert_eq!(case.snapshot().await.rows, case.local_snapshot().await.rows, "the S3 table is the local one");
}

/// Item 13: the conditional-write probe leaves no object, sends no DELETE,
/// and runs once per table and process (table and rejects table).
pub async fn the_write_probe_leaves_nothing_and_needs_no_delete(backend: Backend) {
    let case = Case::new(backend, "probe").await;
    let days = ["2019-06-01", "2019-06-02", "2019-06-03"];
    case.generate(days[0], days[2], 100, &["--dirty"]);
    let proxy = Proxy::start(&case.service.endpoint).await;
    let out = case
        .command(&["backfill", "--from", days[0], "--to", days[2]])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = proxy.requests();
    assert_eq!(proxy.unparsed(), 0, "every request was seen");
    assert!(
        requests.iter().all(|r| r.method != "DELETE"),
        "no DELETE: {:?}",
        requests.iter().filter(|r| r.method == "DELETE").collect::<Vec<_>>()
    );
    let table = format!("{}/shopify_configuration/_delta_log/00000000000000000000.json", case.prefix);
    let rejects = format!("{}/shopify_configuration_rejects/_delta_log/00000000000000000000.json", case.prefix);
    for log in [&table, &rejects] {
        let conditional: Vec<_> = requests
            .iter()
            .filter(|r| r.method == "PUT" && r.if_none_match && r.path.ends_with(log.as_str()))
            .collect();
        // One to create the table, one to probe the store: not one per date.
        assert_eq!(conditional.len(), 2, "{log}: {conditional:?}");
    }

    // A second process that writes probes again, once per table (an
    // identical re-run writes nothing, so it needs no probe: a new date).
    case.generate("2019-06-04", "2019-06-04", 100, &[]);
    proxy.clear();
    let out =
        case.command(&["ingest", "--date", "2019-06-04"]).env("AWS_ENDPOINT_URL", &proxy.endpoint).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for log in [&table, &rejects] {
        let probes = proxy
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.if_none_match && r.path.ends_with(log.as_str()))
            .count();
        assert_eq!(probes, 1, "{log}");
    }
    for prefix in [case.table(), format!("{}_rejects", case.table())] {
        for object in case.objects_under(&prefix).await {
            let inside = object.split_once("shopify_configuration").unwrap().1;
            let inside = inside.trim_start_matches("_rejects").trim_start_matches('/');
            assert!(
                inside.starts_with("_delta_log/")
                    || inside.starts_with("export_date=")
                    || inside.starts_with("_change_data/"),
                "an object that is neither log nor data: {object}"
            );
        }
    }
}
