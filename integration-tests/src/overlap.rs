//! Commands racing each other on one table (issue #26): two back-fills of
//! overlapping ranges started together, and a re-load of a date started
//! together with `maintain --optimize` and a `restore`. Every process exits
//! 0 or 5; no key is ever held twice; each date ends as one of the contents
//! the commands could leave, and running the loads again converges.
//! `SHOPLAKE_RACE_ROUNDS` rounds (default 5 here), each on a lake of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use shoplake::storage::Location;

use crate::place::Place;
use crate::{shoplake_binary, Backend};

const DATES: [&str; 6] = ["2019-10-01", "2019-10-02", "2019-10-03", "2019-10-04", "2019-10-05", "2019-10-06"];

type Dates = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Commands started together on `place`: each a shell waiting on its
/// stdin, then becoming shoplake; all released at once. Their (exit code,
/// stderr).
fn together(place: &Place, commands: &[Vec<String>]) -> Vec<(Option<i32>, String)> {
    let mut children: Vec<_> = commands
        .iter()
        .map(|args| {
            let mut shell = place.configured("sh");
            shell.arg("-c").arg(r#"read -r _ && exec "$0" "$@""#).arg(shoplake_binary()).args(args);
            shell.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
            shell.spawn().expect("spawn")
        })
        .collect();
    for child in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

/// Each date's rows of the table under `lake`.
async fn rows(place: &Place, lake: &str) -> Result<Dates, String> {
    let def = shoplake::catalog::built_in("shopify_configuration");
    let location = Location::parse(&format!("{lake}/{}", def.name)).unwrap();
    shoplake::testing::snapshot(&place.storage(), def, &location, None).await.map(|s| s.rows).map_err(|e| e.to_string())
}

fn rounds() -> usize {
    std::env::var("SHOPLAKE_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Every process exited 0 or 5.
fn exits_ok(context: &str, exits: &[(Option<i32>, String)]) -> Result<(), String> {
    match exits.iter().find(|(code, _)| !matches!(code, Some(0) | Some(5))) {
        Some((code, stderr)) => Err(format!("{context}: a command exited {code:?}: {stderr}")),
        None => Ok(()),
    }
}

/// Two back-fills of overlapping ranges (the first four dates and the last
/// four) at once: every date ends loaded once, equal to its export loaded
/// alone.
pub async fn overlapping_backfills_agree(backend: Option<Backend>) {
    let place = Place::new(backend, "overlap").await;
    let raw = place.root("raw");
    place.ok(&["generate", "--from", DATES[0], "--to", DATES[5], "--rows", "3000", "--dirty", "--out", &raw]);
    let reference = format!("{}/reference", place.root("lake"));
    place.ok(&["backfill", "--from", DATES[0], "--to", DATES[5], "--source", &raw, "--lake", &reference]);
    let expected = rows(&place, &reference).await.unwrap();
    let mut broken = Vec::new();
    for round in 0..rounds() {
        let lake = format!("{}/round-{round}", place.root("lake"));
        let backfill = |from: &str, to: &str| {
            strings(&["backfill", "--from", from, "--to", to, "--parallel", "2", "--source", &raw, "--lake", &lake])
        };
        let exits = together(&place, &[backfill(DATES[0], DATES[3]), backfill(DATES[2], DATES[5])]);
        let context = format!("round {round}");
        let result = exits_ok(&context, &exits).and(match rows(&place, &lake).await {
            Ok(rows) if rows == expected => Ok(()),
            Ok(rows) => Err(format!("{context}: {} dates, not the {} of the exports", rows.len(), expected.len())),
            Err(e) => Err(format!("{context}: {e}")),
        });
        if let Err(problem) = result {
            broken.push(problem);
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// A re-load of a date, `maintain --optimize` and `restore` to the version
/// before another date was loaded, started together: no key twice, the
/// re-loaded date is its export before or after, the other date is there
/// or restored away; the re-load run again leaves its export.
pub async fn a_load_races_optimize_and_restore(backend: Option<Backend>) {
    let place = Place::new(backend, "overlap").await;
    let (before, after) = (format!("{}/before", place.root("raw")), format!("{}/after", place.root("raw")));
    for (out, revision) in [(&before, "0"), (&after, "1")] {
        // More than a read batch: the date is several files (OPTIMIZE has work).
        place.ok(&[
            "generate",
            "--from",
            DATES[0],
            "--to",
            DATES[1],
            "--rows",
            "40000",
            "--revision",
            revision,
            "--out",
            out,
        ]);
    }
    // The date re-loaded from the corrected export, loaded alone.
    let reference = format!("{}/reference", place.root("lake"));
    place.ok(&["ingest", "--date", DATES[0], "--source", &after, "--lake", &reference]);
    let corrected = rows(&place, &reference).await.unwrap().remove(DATES[0]).unwrap();
    let mut broken = Vec::new();
    for round in 0..rounds() {
        let lake = format!("{}/round-{round}", place.root("lake"));
        let load = |source: &str, date: &str| {
            strings(&["ingest", "--date", date, "--source", source, "--lake", &lake, "--max-delete-ratio", "1"])
        };
        let run = |args: Vec<String>| place.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        run(load(&before, DATES[0])); // version 1
        let at_1 = rows(&place, &lake).await.unwrap();
        run(load(&before, DATES[1])); // version 2
        let at_2 = rows(&place, &lake).await.unwrap();
        let exits = together(
            &place,
            &[
                load(&after, DATES[0]),
                strings(&["maintain", "--optimize", "--lake", &lake]),
                strings(&["restore", "--version", "1", "--lake", &lake]),
            ],
        );
        let context = format!("round {round}");
        let mut result = exits_ok(&context, &exits);
        match rows(&place, &lake).await {
            Err(e) => result = result.and(Err(format!("{context}: {e}"))),
            Ok(rows) => {
                let d1 = rows.get(DATES[0]);
                let d1_ok = d1 == at_1.get(DATES[0]) || d1 == Some(&corrected);
                let d2_ok = !rows.contains_key(DATES[1]) || rows.get(DATES[1]) == at_2.get(DATES[1]);
                if !(d1_ok && d2_ok) {
                    result = result.and(Err(format!(
                        "{context}: {} holds {} rows, {} holds {}: not what the commands could leave",
                        DATES[0],
                        d1.map_or(0, |r| r.len()),
                        DATES[1],
                        rows.get(DATES[1]).map_or(0, |r| r.len())
                    )));
                }
            }
        }
        // The re-load again leaves the date equal to its export.
        run(load(&after, DATES[0]));
        match rows(&place, &lake).await {
            Ok(rows) if rows.get(DATES[0]) == Some(&corrected) => {}
            _ => result = result.and(Err(format!("{context}: the re-load again did not converge"))),
        }
        if let Err(problem) = result {
            broken.push(problem);
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
