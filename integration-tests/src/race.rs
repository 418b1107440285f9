//! Writers of one date racing (issue #23): two or three `shoplake ingest`
//! processes of the same date, started together behind a barrier, into a
//! new table, a table holding other dates, and a date that has rows; from
//! exports with the same keys and other values, or with disjoint keys; on
//! a local table and on each S3 backend.
//!
//! Every round checks what a scheduler is promised: each process exits 0
//! or 5 (conflicts exhausted), the date ends exactly equal to a clean load
//! of one export (the one whose writer committed last), no key twice, that
//! writer's report counts the rows the table holds, its rejects are the
//! ones paired with the table's latest version, and other dates are as
//! they were. Each round starts from a table of its own.
//!
//! The rounds cycle through the built-in definitions, the writer counts
//! and the key overlaps (`SHOPLAKE_RACE_ROUNDS`, default 20, for longer
//! campaigns by hand).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shoplake::definition::TableDefinition;
use shoplake::storage::{Location, Storage};
use shoplake::testing::TableSnapshot;

use crate::place::Place;
use crate::{shoplake_binary, Backend};

const DAY: &str = "2019-08-14";
/// After the raced date, so no volume check compares the two.
const OTHER_DAY: &str = "2019-08-15";
/// Rows of writer 0's export; each later writer's has [`MORE_ROWS`] more,
/// so its first rows are ready later (a read batch is 32Ki rows): a writer
/// that found no table then reaches for it only after a faster one has
/// created it and committed, whatever the backend's speed.
const ROWS: u64 = 2_000;
const MORE_ROWS: u64 = 20_000;

/// What the table holds when the writers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No table at all: the writers race to create it too.
    NewTable,
    /// A table holding another date only.
    OtherDates,
    /// A table whose date already has rows (from another export).
    DateHasRows,
}

/// The exports the writers of a round load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Every key of a smaller export is in the larger ones, each writer's
    /// with other values.
    Shared,
    /// Keys no two writers share.
    Disjoint,
}

/// An export: which generator arguments made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Export {
    seed: u64,
    revision: u64,
    rows: u64,
}

impl Export {
    /// Writer `i`'s export (0-based). The generator draws a seed's keys in
    /// one order, so with one seed a smaller export's keys are all in the
    /// larger ones.
    fn of_writer(keys: Keys, i: usize) -> Export {
        let rows = ROWS + MORE_ROWS * i as u64;
        match keys {
            Keys::Shared => Export { seed: 7, revision: 1 + i as u64, rows },
            Keys::Disjoint => Export { seed: 100 + i as u64, revision: 0, rows },
        }
    }

    /// What the date holds before a [`Start::DateHasRows`] round (and the
    /// other date's export).
    const BEFORE: Export = Export { seed: 7, revision: 0, rows: ROWS };

    fn dir(&self) -> String {
        format!("s{}-r{}-n{}", self.seed, self.revision, self.rows)
    }
}

/// Where the races run ([`Place`]): exports by export, a lake a round.
struct Lake {
    place: Place,
}

impl std::ops::Deref for Lake {
    type Target = Place;
    fn deref(&self) -> &Place {
        &self.place
    }
}

impl Lake {
    async fn new(backend: Option<Backend>) -> Lake {
        Lake { place: Place::new(backend, "race").await }
    }

    /// The root of the exports of `export` (each table's source pattern under it).
    fn source(&self, export: Export) -> String {
        format!("{}/{}", self.root("raw"), export.dir())
    }

    /// Round `round`'s lake (every table under it).
    fn lake(&self, round: usize) -> String {
        format!("{}/round-{round}", self.root("lake"))
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.ok(args)
    }

    fn generate(&self, def: &TableDefinition, export: Export) {
        generate(|args| self.run(args), &def.name, export, &self.source(export));
    }

    fn ingest(&self, def: &TableDefinition, export: Export, round: usize, date: &str) {
        let (source, lake) = (self.source(export), self.lake(round));
        self.run(&["ingest", "--table-name", &def.name, "--date", date, "--source", &source, "--lake", &lake]);
    }

    async fn snapshot(&self, def: &TableDefinition, round: usize) -> shoplake::error::Result<TableSnapshot> {
        let location = Location::parse(&format!("{}/{}", self.lake(round), def.name)).unwrap();
        shoplake::testing::snapshot(&self.storage(), def, &location, None).await
    }
}

fn generate(run: impl Fn(&[&str]) -> std::process::Output, table: &str, export: Export, out: &str) {
    let (seed, revision, rows) = (export.seed.to_string(), export.revision.to_string(), export.rows.to_string());
    let rows_of_export = ["--rows", &rows, "--seed", &seed, "--revision", &revision, "--dirty", "--out", out];
    // The raced date's export, and the other date's, from the same rows.
    for day in [DAY, OTHER_DAY] {
        let mut args = vec!["generate", "--table-name", table, "--from", day, "--to", day];
        args.extend_from_slice(&rows_of_export);
        run(&args);
    }
}

/// What a clean load of one export into a new local table gives for the
/// date: its rows and its rejects.
#[derive(Debug, Clone)]
struct Reference {
    rows: BTreeMap<String, Vec<String>>,
    rejects: Vec<serde_json::Value>,
}

/// Clean loads of each export, once per test.
struct References {
    dir: tempfile::TempDir,
    loaded: BTreeMap<(String, Export), Reference>,
}

impl References {
    fn new() -> References {
        References { dir: tempfile::tempdir().expect("temp dir"), loaded: BTreeMap::new() }
    }

    async fn of(&mut self, def: &TableDefinition, export: Export) -> Reference {
        let key = (def.name.clone(), export);
        if let Some(found) = self.loaded.get(&key) {
            return found.clone();
        }
        let root = self.dir.path().join(format!("{}-{}", def.name, export.dir()));
        let (raw, lake) = (root.join("raw").display().to_string(), root.join("lake").display().to_string());
        let run = |args: &[&str]| {
            let out = Command::new(shoplake_binary()).args(args).env("RUST_LOG", "warn").output().unwrap();
            assert!(out.status.success(), "reference {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out
        };
        generate(run, &def.name, export, &raw);
        run(&["ingest", "--table-name", &def.name, "--date", DAY, "--source", &raw, "--lake", &lake]);
        let location = Location::Local(root.join("lake").join(&def.name));
        let snapshot = shoplake::testing::snapshot(&Storage::new(), def, &location, None).await.unwrap();
        let rejects = paired_rejects(run, def, &lake);
        let reference = Reference { rows: snapshot.rows.get(DAY).cloned().unwrap_or_default(), rejects };
        assert!(!reference.rows.is_empty(), "the reference of {export:?} has rows");
        self.loaded.insert(key, reference.clone());
        reference
    }
}

/// The date's rejects as `shoplake query` pairs them with the latest
/// version of the table under `lake`, run by `run`.
fn paired_rejects(
    run: impl Fn(&[&str]) -> std::process::Output,
    def: &TableDefinition,
    lake: &str,
) -> Vec<serde_json::Value> {
    let sql = format!(
        "SELECT line, raw, reason FROM {}_rejects WHERE CAST({} AS VARCHAR) = '{DAY}' ORDER BY line",
        def.name,
        shoplake::rejects::PARTITION
    );
    json_lines(&run(&["query", "--table-name", &def.name, "--lake", lake, "--format", "json", "--sql", &sql]).stdout)
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn rounds() -> usize {
    std::env::var("SHOPLAKE_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// The shape of round `round`: how many writers, and how their keys overlap.
fn shape(round: usize) -> (usize, Keys) {
    match round % 4 {
        0 => (2, Keys::Shared),
        1 => (3, Keys::Disjoint),
        2 => (3, Keys::Shared),
        _ => (2, Keys::Disjoint),
    }
}

/// One racing writer: a shell that waits on its stdin, then becomes
/// `shoplake ingest` (the barrier: every writer is spawned and waiting
/// before any starts).
struct Writer {
    child: Child,
    export: Export,
}

/// The outcome of one writer.
struct Finished {
    export: Export,
    code: Option<i32>,
    report: Option<serde_json::Value>,
    stderr: String,
}

/// How long writer `i` of round `round` waits after the barrier opens: `i`
/// steps of 0 to 80 ms, each step in four rounds in a row. The rounds sweep
/// the orders in which one writer's steps fall between another's: a writer
/// that finds no table, then reaches for it after another created it and
/// committed (issue #23) is caught by a start 0 to 10 ms later on MinIO or
/// a local disk, more rarely on LocalStack ([`a_writer_that_found_no_table_starts_over`]
/// pins that order on S3).
fn delay(round: usize, i: usize) -> f64 {
    const STEPS_MS: [f64; 5] = [0.0, 10.0, 20.0, 40.0, 80.0];
    i as f64 * STEPS_MS[(round / 4) % STEPS_MS.len()] / 1000.0
}

fn start_writers(lake: &Lake, def: &TableDefinition, round: usize, exports: &[Export]) -> Vec<Writer> {
    exports
        .iter()
        .enumerate()
        .map(|(i, &export)| {
            // The shell, not shoplake, is the program; shoplake is its `$0`.
            let mut shell = lake.configured("sh");
            shell.arg("-c").arg(format!(r#"read -r _ && sleep {:.3} && exec "$0" "$@""#, delay(round, i)));
            shell.arg(shoplake_binary());
            Writer::spawn(shell, lake, def, round, export)
        })
        .collect()
}

fn release_and_wait(mut writers: Vec<Writer>) -> Vec<Finished> {
    // Every writer is spawned; open the barrier for all at once.
    for writer in &mut writers {
        let stdin = writer.child.stdin.as_mut().expect("a piped stdin");
        stdin.write_all(b"go\n").expect("release a writer");
    }
    writers.into_iter().map(Writer::finish).collect()
}

impl Writer {
    /// Spawns `command` (shoplake, or what runs it) with an ingest of the date.
    fn spawn(mut command: Command, lake: &Lake, def: &TableDefinition, round: usize, export: Export) -> Writer {
        let (source, lake_root) = (lake.source(export), lake.lake(round));
        // What each writer did is shown when a round fails.
        command
            .env("RUST_LOG", "info")
            .args(["ingest", "--table-name", &def.name, "--date", DAY, "--format", "json"])
            .args(["--source", &source, "--lake", &lake_root, "--max-delete-ratio", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Writer { child: command.spawn().expect("spawn a writer"), export }
    }

    /// Waits for the writer to end.
    fn finish(self) -> Finished {
        let out = self.child.wait_with_output().expect("a writer's output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        Finished {
            export: self.export,
            code: out.status.code(),
            report: serde_json::from_str(stdout.trim()).ok(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Races `rounds()` rounds of writers of one date from `start`; fails
/// after the last round, with every round that broke a promise.
pub async fn writers_of_one_date_agree(backend: Option<Backend>, start: Start) {
    let lake = Lake::new(backend).await;
    let mut references = References::new();
    let tables = shoplake::catalog::Catalog::built_in().tables().to_vec();
    let mut generated = std::collections::BTreeSet::new();
    let mut broken = Vec::new();
    for round in 0..rounds() {
        let def: &TableDefinition = tables[round % tables.len()];
        let (writers, keys) = shape(round);
        let exports: Vec<Export> = (0..writers).map(|i| Export::of_writer(keys, i)).collect();
        for &export in exports.iter().chain([&Export::BEFORE]) {
            if generated.insert((def.name.clone(), export)) {
                lake.generate(def, export);
            }
        }
        let before = match start {
            Start::NewTable => None,
            Start::OtherDates => {
                lake.ingest(def, Export::BEFORE, round, OTHER_DAY);
                Some(lake.snapshot(def, round).await.expect("the table before the race"))
            }
            Start::DateHasRows => {
                lake.ingest(def, Export::BEFORE, round, OTHER_DAY);
                lake.ingest(def, Export::BEFORE, round, DAY);
                Some(lake.snapshot(def, round).await.expect("the table before the race"))
            }
        };
        let finished = release_and_wait(start_writers(&lake, def, round, &exports));
        let context = format!("round {round} ({writers} writers, {keys:?} keys, {}, {start:?})", def.name);
        if let Err(problem) = check_round(&lake, &mut references, def, round, before.as_ref(), &finished).await {
            let logs: Vec<String> =
                finished.iter().map(|f| format!("[{:?} exit {:?}]\n{}", f.export, f.code, f.stderr)).collect();
            eprintln!("{context}: {problem}\n{}", logs.join("\n"));
            broken.push(format!("{context}: {problem}"));
        }
    }
    assert!(broken.is_empty(), "{} of {} rounds broke a promise:\n{}", broken.len(), rounds(), broken.join("\n"));
}

/// What a round broke, if anything.
async fn check_round(
    lake: &Lake,
    references: &mut References,
    def: &TableDefinition,
    round: usize,
    before: Option<&TableSnapshot>,
    finished: &[Finished],
) -> Result<(), String> {
    if let Some(writer) = finished.iter().find(|f| !matches!(f.code, Some(0) | Some(5))) {
        return Err(format!("a writer ({:?}) exited {:?}, not 0 or 5", writer.export, writer.code));
    }
    // The writer whose commit came last made the date what it is.
    let (winner, version) = finished
        .iter()
        .filter(|f| f.code == Some(0))
        .filter_map(|f| Some((f, f.report.as_ref()?["table_version"].as_i64()?)))
        .max_by_key(|(_, version)| *version)
        .ok_or("no writer succeeded")?;
    // Reading fails on a key held twice.
    let after = lake.snapshot(def, round).await.map_err(|e| e.to_string())?;
    let expected = references.of(def, winner.export).await;
    let held = after.rows.get(DAY).cloned().unwrap_or_default();
    if held != expected.rows {
        let foreign = held.keys().filter(|k| !expected.rows.contains_key(*k)).count();
        let differing = held.iter().filter(|(k, v)| expected.rows.get(*k).is_some_and(|e| e != *v)).count();
        return Err(format!(
            "the date holds {} rows, not the {} of the last committed export {:?}: {foreign} keys not in it, \
             {differing} rows with other values",
            held.len(),
            expected.rows.len(),
            winner.export
        ));
    }
    if after.version != Some(version) {
        return Err(format!("the table is at version {:?}, the last commit was {version}", after.version));
    }
    let report = winner.report.as_ref().expect("a committed writer's report");
    let count = |name: &str| report[name].as_u64().unwrap_or(u64::MAX);
    let counted = count("rows_inserted") + count("rows_updated") + count("rows_unchanged");
    if count("rows_valid") != held.len() as u64 || counted != held.len() as u64 {
        return Err(format!("the winner's report does not count the {} rows the date holds: {report}", held.len()));
    }
    let rejects = paired_rejects(|args| lake.run(args), def, &lake.lake(round));
    if rejects != expected.rejects {
        return Err(format!(
            "the rejects paired with the latest version are not the winner's: {} rows, not {}",
            rejects.len(),
            expected.rejects.len()
        ));
    }
    if let Some(before) = before {
        if after.rows.get(OTHER_DAY) != before.rows.get(OTHER_DAY)
            || after.files.get(OTHER_DAY) != before.files.get(OTHER_DAY)
        {
            return Err("the other date changed".to_string());
        }
    }
    Ok(())
}

/// The order of the new-table race pinned, on S3: writer B finds no table,
/// then is held (by a proxy) before it reads its export; writer A creates
/// the table and loads the date; then B goes on, and reaches for the table
/// A made. B must not commit its rows beside A's (the duplicate of issue
/// #23, every time before the fix): it starts over, and loads the date over
/// A's rows. Each built-in table, from an export with A's keys and one with
/// others.
pub async fn a_writer_that_found_no_table_starts_over(backend: Backend) {
    let lake = Lake::new(Some(backend)).await;
    let endpoint = lake.place.service.as_ref().expect("an S3 backend").endpoint.clone();
    let mut references = References::new();
    let tables = shoplake::catalog::Catalog::built_in().tables().to_vec();
    let mut broken = Vec::new();
    for (round, (def, keys)) in tables.iter().flat_map(|def| [(*def, Keys::Shared), (*def, Keys::Disjoint)]).enumerate()
    {
        let (first, held) = (Export::of_writer(keys, 0), Export { rows: ROWS, ..Export::of_writer(keys, 1) });
        lake.generate(def, first);
        lake.generate(def, held);
        let proxy = crate::proxy::Proxy::start(&endpoint).await;
        proxy.hold("GET", &format!("/{}/", held.dir()));
        let mut command = lake.configured(shoplake_binary());
        command.env("AWS_ENDPOINT_URL", &proxy.endpoint);
        let late = Writer::spawn(command, &lake, def, round, held);
        assert!(proxy.wait_held(Duration::from_secs(60)).await, "round {round}: the held writer never read its export");
        let early = Writer::spawn(lake.configured(shoplake_binary()), &lake, def, round, first).finish();
        assert_eq!(early.code, Some(0), "round {round}: the first writer: {}", early.stderr);
        proxy.release();
        let finished = [early, late.finish()];
        let context = format!("round {round} ({keys:?} keys, {}, one writer held)", def.name);
        if let Err(problem) = check_round(&lake, &mut references, def, round, None, &finished).await {
            eprintln!("{context}: {problem}\n{}", finished[1].stderr);
            broken.push(format!("{context}: {problem}"));
        } else if finished[1].report.as_ref().and_then(|r| r["table_version"].as_i64())
            <= finished[0].report.as_ref().and_then(|r| r["table_version"].as_i64())
        {
            broken.push(format!("{context}: the held writer did not commit last"));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
