//! SIGKILL at random moments (issue #26): a first load, a re-load, a
//! back-fill, `maintain --optimize`, `--vacuum` and `restore`, each killed
//! with SIGKILL a random time into its run, on a local table and on each S3
//! backend. After each kill every date must be exactly its content before
//! or after the command (never a mix, never a key twice), and running the
//! command again must converge to the content after.
//!
//! `SHOPLAKE_KILL_TRIALS` trials per command (default 5 in `make
//! integration-test`; campaigns of 20 and more by hand), each from a lake
//! of its own, with the kill's delay drawn from a seeded generator (the
//! seed is printed with any failure, so a trial can be replayed).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use shoplake::definition::TableDefinition;
use shoplake::storage::Location;
use shoplake::testing::TableSnapshot;

use crate::place::Place;
use crate::{shoplake_binary, Backend};

const D1: &str = "2019-09-01";
const D2: &str = "2019-09-02";
const D3: &str = "2019-09-03";
/// Rows a date: more than a read batch (32Ki rows), so a load writes
/// several files and takes long enough to be killed in the middle.
const ROWS: &str = "40000";

/// The command killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    FirstLoad,
    Reload,
    Backfill,
    Optimize,
    Vacuum,
    Restore,
}

/// One trial's lake and the exports it loads.
struct Trial<'p> {
    place: &'p Place,
    def: &'static TableDefinition,
    lake: String,
    /// The exports before (revision 0) and after (revision 1) a correction.
    before: String,
    after: String,
}

impl Trial<'_> {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.place
            .configured(shoplake_binary())
            .args(args)
            .args(["--table-name", &self.def.name])
            .output()
            .expect("run shoplake")
    }

    fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(out.status.success(), "shoplake {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn load(&self, source: &str, date: &str) {
        self.ok(&["ingest", "--date", date, "--source", source, "--lake", &self.lake, "--max-delete-ratio", "1"]);
    }

    /// The command under test, with the arguments that make it do work.
    fn args(&self, killed: Killed) -> Vec<String> {
        let lake = ["--lake".to_string(), self.lake.clone()];
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut args = match killed {
            Killed::FirstLoad => strings(&["ingest", "--date", D1, "--source", &self.before]),
            Killed::Reload => strings(&["ingest", "--date", D1, "--source", &self.after, "--max-delete-ratio", "1"]),
            Killed::Backfill => strings(&["backfill", "--from", D1, "--to", D3, "--source", &self.before]),
            Killed::Optimize => strings(&["maintain", "--optimize"]),
            Killed::Vacuum => strings(&["maintain", "--vacuum", "--retention-hours", "0", "--force"]),
            Killed::Restore => strings(&["restore", "--version", "1"]),
        };
        args.extend(lake);
        args
    }

    async fn snapshot(&self) -> shoplake::error::Result<TableSnapshot> {
        let location = Location::parse(&format!("{}/{}", self.lake, self.def.name)).unwrap();
        shoplake::testing::snapshot(&self.place.storage(), self.def, &location, None).await
    }
}

/// A small seeded generator (xorshift), so a failing trial can be replayed.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn trials() -> usize {
    std::env::var("SHOPLAKE_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Each date's rows (by key).
type Dates = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Kills `killed` at random moments, `trials()` times.
pub async fn killed_at_random_moments(backend: Option<Backend>, killed: Killed) {
    let place = Place::new(backend, "kill").await;
    let def = shoplake::catalog::built_in("shopify_configuration");
    let (before, after) = (format!("{}/before", place.root("raw")), format!("{}/after", place.root("raw")));
    for (source, revision) in [(&before, "0"), (&after, "1")] {
        let out = place
            .configured(shoplake_binary())
            .args(["generate", "--from", D1, "--to", D3, "--rows", ROWS, "--revision", revision, "--out", source])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let seed = std::env::var("SHOPLAKE_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1234_abcd);
    let mut draw = Draw(seed ^ killed as u64);
    // How long the command runs here when nothing kills it: the kills are
    // drawn over that time.
    let calibration = Trial {
        place: &place,
        def,
        lake: format!("{}/calibration", place.root("lake")),
        before: before.clone(),
        after: after.clone(),
    };
    prepare(&calibration, killed).await;
    let started = std::time::Instant::now();
    calibration.ok(&calibration.args(killed).iter().map(String::as_str).collect::<Vec<_>>());
    let mut window = (started.elapsed().as_millis() as u64).max(50);
    let mut broken = Vec::new();
    let mut killed_mid_run = 0;
    for trial in 0..trials() {
        let lake = format!("{}/trial-{trial}", place.root("lake"));
        let t = Trial { place: &place, def, lake, before: before.clone(), after: after.clone() };
        let (old, new) = prepare(&t, killed).await;
        let delay = Duration::from_millis(draw.below(window));
        let args = t.args(killed);
        let mut child = t
            .place
            .configured(shoplake_binary())
            .args(&args)
            .args(["--table-name", &def.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn shoplake");
        std::thread::sleep(delay);
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        killed_mid_run += still_running as usize;
        if !still_running {
            // The command finished before this delay: it runs faster than the
            // calibration run did (a busier machine then, warmer caches now),
            // so the next kills are drawn below it. Without this, every kill
            // could come after the command, as all five of a restore's did in
            // a .ci/run on 2026-12-06.
            window = (delay.as_millis() as u64).max(20);
        }
        let context = format!("{killed:?}, trial {trial} (seed {seed:#x}, killed after {delay:?})");
        if let Err(problem) = check_killed(&t, &old, &new).await {
            broken.push(format!("{context}: after the kill, {problem}"));
            continue;
        }
        // The command again converges.
        let out = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if !out.status.success() {
            broken.push(format!("{context}: the re-run failed: {}", String::from_utf8_lossy(&out.stderr)));
            continue;
        }
        match t.snapshot().await {
            Ok(after) if after.rows == new => {}
            Ok(after) => {
                broken.push(format!("{context}: the re-run left {} dates, not the expected", after.rows.len()))
            }
            Err(e) => broken.push(format!("{context}: after the re-run: {e}")),
        }
    }
    eprintln!("{killed:?}: {killed_mid_run} of {} kills came while the command ran ({window} ms)", trials());
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(killed_mid_run > 0, "{killed:?}: no kill came while the command ran: the window is too short");
}

/// Makes the state the command starts from; returns each date's rows
/// before and after the command.
async fn prepare(t: &Trial<'_>, killed: Killed) -> (Dates, Dates) {
    let rows = |s: TableSnapshot| s.rows;
    match killed {
        Killed::FirstLoad => {
            let mut new = Dates::new();
            t.load(&t.before, D1);
            new.extend(rows(t.snapshot().await.unwrap()));
            // Measured on a table of its own, then the trial's table starts empty.
            clear(t).await;
            (Dates::new(), new)
        }
        Killed::Backfill => {
            for date in [D1, D2, D3] {
                t.load(&t.before, date);
            }
            let new = rows(t.snapshot().await.unwrap());
            clear(t).await;
            (Dates::new(), new)
        }
        Killed::Reload => {
            t.load(&t.after, D1);
            let new = rows(t.snapshot().await.unwrap());
            clear(t).await;
            t.load(&t.before, D1);
            (rows(t.snapshot().await.unwrap()), new)
        }
        Killed::Optimize | Killed::Vacuum => {
            // D1 re-loaded (files removed, for vacuum); D2 in several files (for optimize).
            t.load(&t.before, D1);
            t.load(&t.after, D1);
            t.load(&t.before, D2);
            let now = rows(t.snapshot().await.unwrap());
            (now.clone(), now)
        }
        Killed::Restore => {
            t.load(&t.before, D1); // version 1
            let then = rows(t.snapshot().await.unwrap());
            t.load(&t.after, D1);
            (rows(t.snapshot().await.unwrap()), then)
        }
    }
}

/// Removes the trial's lake (its table and its rejects table).
async fn clear(t: &Trial<'_>) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let location = Location::parse(&t.lake).unwrap();
    match &location {
        Location::Local(path) => std::fs::remove_dir_all(path).unwrap(),
        Location::S3 { .. } => {
            let (store, prefix) = t.place.storage().object_store(&location).await.unwrap();
            let paths: Vec<_> = store.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await.unwrap();
            for path in paths {
                store.delete(&path).await.unwrap();
            }
        }
    }
}

/// After a kill: the table reads (no key twice), and each date is its
/// content before or after, whole.
async fn check_killed(t: &Trial<'_>, old: &Dates, new: &Dates) -> Result<(), String> {
    let now = match t.snapshot().await {
        Ok(snapshot) => snapshot.rows,
        Err(e) => return Err(format!("the table does not read: {e}")),
    };
    let dates: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).chain(now.keys()).collect();
    for date in dates {
        let held = now.get(date);
        if held != old.get(date) && held != new.get(date) {
            return Err(format!(
                "{date} holds {} rows, neither its {} before nor its {} after",
                held.map_or(0, |r| r.len()),
                old.get(date).map_or(0, |r| r.len()),
                new.get(date).map_or(0, |r| r.len())
            ));
        }
    }
    Ok(())
}
