//! The end-to-end scenarios, run against each backend by `tests/*.rs`.
//! Each reads the S3 table back and compares contents, not just exit codes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Backend, Case};

const WEEK: [&str; 7] =
    ["2019-04-01", "2019-04-02", "2019-04-03", "2019-04-04", "2019-04-05", "2019-04-06", "2019-04-07"];

/// A week of generated exports on S3, ingested day by day: every partition
/// equals what the same files give locally; a re-run adds nothing.
pub async fn week_lands_and_a_rerun_changes_nothing(backend: Backend) {
    let case = Case::new(backend, "week").await;
    case.generate(WEEK[0], WEEK[6], 400, &["--dirty"]);
    for (n, day) in WEEK.iter().enumerate() {
        let (code, report) = case.ingest(day);
        assert_eq!(code, 0, "{report}");
        assert_eq!(report["status"], "committed");
        assert_eq!(report["table_version"], n as i64 + 1);
        assert_eq!(case.local_ingest(day).0, 0);
    }
    let loaded = case.snapshot().await;
    assert_eq!(loaded.rows.len(), 7);
    assert_eq!(loaded.rows, case.local_snapshot().await.rows, "S3 and local tables hold the same rows");

    let (code, report) = case.ingest(WEEK[3]);
    assert_eq!(code, 0);
    assert_eq!(report["status"], "unchanged");
    assert_eq!(report["table_version"], 7);
    assert_eq!(case.snapshot().await, loaded, "no new version, no file added or removed");
}

/// A corrected re-export converges; the table at an earlier version still
/// reads as it was, through the library and through `shoplake query --as-of`.
pub async fn corrected_export_converges_and_time_travel_works(backend: Backend) {
    let case = Case::new(backend, "correct").await;
    case.generate(WEEK[0], WEEK[1], 300, &[]);
    for day in &WEEK[..2] {
        assert_eq!(case.ingest(day).0, 0);
        assert_eq!(case.local_ingest(day).0, 0);
    }
    let version_2 = case.snapshot().await;

    let original = String::from_utf8(case.get_export(WEEK[0]).await).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let has_application = |line: &str| line.split(',').nth(2).is_some_and(|f| !f.is_empty());
    let shops: Vec<usize> = (1..lines.len()).filter(|&i| has_application(lines[i])).take(3).collect();
    let (gone, changed, template) = (shops[0], shops[1], shops[2]);
    let mut corrected: Vec<String> =
        lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(i, line)| {
                if i == changed {
                    line.replacen(".myshopify.com", "-renamed.myshopify.com", 1)
                } else {
                    line.to_string()
                }
            })
            .collect();
    corrected.push(format!("00000000{}", &lines[template][8..]));
    let corrected = corrected.join("\n") + "\n";
    case.put_export(WEEK[0], corrected.into_bytes()).await;
    let (code, report) = case.ingest(WEEK[0]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rows_deleted"], 1, "{report}");
    assert_eq!(report["rows_inserted"], 1, "{report}");
    assert_eq!(report["rows_updated"], 1, "{report}");
    assert_eq!(report["table_version"], 3);
    assert_eq!(case.local_ingest(WEEK[0]).0, 0);
    let version_3 = case.snapshot().await;
    assert_eq!(version_3.rows, case.local_snapshot().await.rows);
    assert_eq!(version_3.files[WEEK[1]], version_2.files[WEEK[1]], "the other day's files are untouched");

    assert_eq!(case.snapshot_at(Some(2)).await.rows, version_2.rows, "time travel to version 2");
    let sql = format!("SELECT count(*) AS n FROM shopify_configuration WHERE export_date = '{}'", WEEK[0]);
    let out = case.shoplake(&["query", "--as-of", "2", "--format", "json", "--sql", &sql]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["n"], version_2.rows[WEEK[0]].len() as i64);
}

/// Four processes load eight dates into one new table at the same time:
/// every date lands once, no commit is lost.
pub async fn concurrent_backfill_commits_every_date(backend: Backend) {
    let case = Case::new(backend, "concurrent").await;
    let days = [
        "2019-05-01",
        "2019-05-02",
        "2019-05-03",
        "2019-05-04",
        "2019-05-05",
        "2019-05-06",
        "2019-05-07",
        "2019-05-08",
    ];
    case.generate(days[0], days[7], 200, &[]);
    let children: Vec<_> = days
        .chunks(2)
        .map(|pair| {
            case.command(&["backfill", "--from", pair[0], "--to", pair[1], "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn backfill")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for day in days {
        assert_eq!(case.local_ingest(day).0, 0);
    }
    let snapshot = case.snapshot().await;
    assert_eq!(snapshot.rows.len(), 8, "all eight dates are present");
    assert_eq!(snapshot.rows, case.local_snapshot().await.rows, "no row lost or duplicated");
    assert_eq!(snapshot.version, Some(8), "one version to create the table, one per date");
}

/// A bad file on S3 is refused (exit 4) and changes nothing; a missing one exits 3.
pub async fn bad_and_missing_files(backend: Backend) {
    let case = Case::new(backend, "bad").await;
    case.generate(WEEK[0], WEEK[0], 100, &[]);
    assert_eq!(case.ingest(WEEK[0]).0, 0);
    let before = case.snapshot().await;

    let original = String::from_utf8(case.get_export(WEEK[0]).await).unwrap();
    let broken = original.replacen("application_id", "app_id", 1);
    case.put_export(WEEK[0], broken.into_bytes()).await;
    let (code, report) = case.ingest(WEEK[0]);
    assert_eq!(code, 4, "{report}");
    assert_eq!(report["status"], "failed");
    assert_eq!(case.snapshot().await, before, "a refused load changes nothing");

    let (code, _) = case.ingest("2020-01-01");
    assert_eq!(code, 3);
    assert_eq!(case.snapshot().await, before);
}

/// A writer killed with SIGKILL in the middle of a load leaves the table
/// readable at its previous version, and a re-run converges.
pub async fn killed_writer_leaves_the_table_intact(backend: Backend) {
    let case = Case::new(backend, "kill").await;
    case.generate(WEEK[0], WEEK[1], 120_000, &[]);
    assert_eq!(case.ingest(WEEK[0]).0, 0);
    let before = case.snapshot().await;

    // Through a proxy serving about 6 MB/s, so the ~24 MB export takes
    // seconds to read (and the day's files to write, as the rows come).
    let proxy = crate::proxy::Proxy::start(&case.service.endpoint).await;
    proxy.throttle(6_000_000);
    let mut child = case
        .command(&["ingest", "--date", WEEK[1]])
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("RUST_LOG", "shoplake=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ingest");
    // Kill while the day's files are being written: a new date's rows are
    // written as they are read, so a second after the export starts to be
    // read (a kill timed from the end of the reading, a few milliseconds
    // before the commit, missed the load now and then).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("reading export") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("the load starts reading");
    std::thread::sleep(Duration::from_secs(1));
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the load was killed before it ended");

    let after_kill = case.snapshot().await;
    eprintln!("killed: table at version {:?}, was {:?}", after_kill.version, before.version);
    if after_kill.version == before.version {
        assert_eq!(after_kill, before, "the table is readable at its previous version");
    } else {
        // The commit landed just before the kill: then the day is complete.
        assert_eq!(after_kill.version, before.version.map(|v| v + 1));
    }
    let (code, report) = case.ingest(WEEK[1]);
    assert_eq!(code, 0, "{report}");
    for day in &WEEK[..2] {
        assert_eq!(case.local_ingest(day).0, 0);
    }
    assert_eq!(case.snapshot().await.rows, case.local_snapshot().await.rows, "a re-run converges");
}

/// An unreachable endpoint fails with exit 5, in bounded time, naming the endpoint.
pub async fn unreachable_storage_exits_5(backend: Backend) {
    let case = Case::new(backend, "unreachable").await;
    let started = Instant::now();
    let out =
        case.command(&["ingest", "--date", WEEK[0]]).env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(elapsed < Duration::from_secs(90), "gave up after {elapsed:?}");
    assert!(stderr.contains("127.0.0.1:9"), "the message names the endpoint: {stderr}");
}

/// The secret key appears in no log line, report or commit info.
pub async fn secrets_never_leak(backend: Backend) {
    let case = Case::new(backend, "secrets").await;
    case.generate(WEEK[0], WEEK[0], 50, &[]);
    let secret = case.service.secret_key.clone();
    let out =
        case.command(&["ingest", "--date", WEEK[0], "--format", "json"]).env("RUST_LOG", "trace").output().unwrap();
    assert!(out.status.success());
    let history = case.shoplake(&["history", "--format", "json"]);
    assert!(history.status.success());
    let mut everything = out.stdout.clone();
    everything.extend_from_slice(&out.stderr);
    everything.extend_from_slice(&history.stdout);
    everything.extend_from_slice(&history.stderr);
    let (store, path) = case
        .storage
        .object_store(&shoplake::storage::Location::parse(&format!("{}/_delta_log", case.table())).unwrap())
        .await
        .unwrap();
    let log_files: Vec<object_store::ObjectMeta> = futures_lite_collect(store.list(Some(&path))).await;
    assert!(!log_files.is_empty());
    for meta in log_files {
        use object_store::ObjectStoreExt;
        everything.extend_from_slice(&store.get(&meta.location).await.unwrap().bytes().await.unwrap());
    }
    let text = String::from_utf8_lossy(&everything);
    assert!(!secret.is_empty() && !text.contains(&secret), "the secret key leaked");
    assert!(text.contains("shoplake"), "the captured output is not empty");
}

async fn futures_lite_collect<T>(mut stream: futures::stream::BoxStream<'static, object_store::Result<T>>) -> Vec<T> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item.unwrap());
    }
    out
}

/// Defines the SIGKILL tests (issue #26) for a backend (`None`: a local table).
#[macro_export]
macro_rules! kill_tests {
    ($backend:expr) => {
        $crate::kill_tests!(@each $backend;
            a_first_load_killed_at_random => FirstLoad,
            a_reload_killed_at_random => Reload,
            a_backfill_killed_at_random => Backfill,
            an_optimize_killed_at_random => Optimize,
            a_vacuum_killed_at_random => Vacuum,
            a_restore_killed_at_random => Restore
        );
    };
    (@each $backend:expr; $($name:ident => $killed:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::chaos::killed_at_random_moments($backend, $crate::chaos::Killed::$killed).await;
            }
        )*
    };
}

/// Defines the racing writers' tests (issue #23) for a backend (`None`: a local table).
#[macro_export]
macro_rules! race_tests {
    ($backend:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn writers_of_one_date_race_into_a_new_table() {
            $crate::race::writers_of_one_date_agree($backend, $crate::race::Start::NewTable).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn writers_of_one_date_race_into_a_table_with_other_dates() {
            $crate::race::writers_of_one_date_agree($backend, $crate::race::Start::OtherDates).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn writers_of_one_date_race_over_its_rows() {
            $crate::race::writers_of_one_date_agree($backend, $crate::race::Start::DateHasRows).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn overlapping_backfills_agree() {
            $crate::overlap::overlapping_backfills_agree($backend).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_load_races_optimize_and_restore() {
            $crate::overlap::a_load_races_optimize_and_restore($backend).await;
        }
    };
}

/// Defines one test per scenario for a backend.
#[macro_export]
macro_rules! scenario_tests {
    ($backend:expr) => {
        $crate::scenario_tests!(@each $backend; scenarios;
            week_lands_and_a_rerun_changes_nothing,
            corrected_export_converges_and_time_travel_works,
            concurrent_backfill_commits_every_date,
            bad_and_missing_files,
            killed_writer_leaves_the_table_intact,
            unreachable_storage_exits_5,
            secrets_never_leak
        );
        $crate::scenario_tests!(@each $backend; hardening;
            rejects_are_paired_by_record_with_parallel_loads,
            overlapping_runs_of_one_date_agree,
            configuration_errors_exit_2,
            slow_downloads_finish_and_stalled_ones_fail,
            an_export_replaced_mid_load_is_refused,
            the_write_probe_leaves_nothing_and_needs_no_delete
        );
        $crate::scenario_tests!(@each $backend; tables;
            every_table_lands_reloads_backfills_and_audits,
            a_column_added_evolves_the_table,
            an_identical_rerun_downloads_nothing,
            every_command_keeps_its_request_budget
        );
        $crate::scenario_tests!(@each $backend; erasure;
            an_erased_shop_leaves_the_table_and_does_not_come_back,
            a_purge_leaves_no_object_version_holding_the_shop,
            declared_pii_never_reaches_s3_as_read
        );
        $crate::race_tests!(Some($backend));
        $crate::kill_tests!(Some($backend));
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_writer_that_found_no_table_starts_over() {
            $crate::race::a_writer_that_found_no_table_starts_over($backend).await;
        }
    };
    (@each $backend:expr; $module:ident; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::$module::$name($backend).await;
            }
        )*
    };
}
