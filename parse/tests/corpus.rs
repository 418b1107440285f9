//! Replays the fuzz targets' kept inputs on stable: the seeds
//! (`fuzz/seeds/<target>/`) and every input that ever broke a property
//! (`fuzz/regressions/<target>/`), through the same properties the fuzzer
//! checks, so a fixed crash stays fixed without nightly.

use std::path::Path;

use shoplake_parse::properties;

fn replay(target: &str, property: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for kept in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kept).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            let data = std::fs::read(&path).expect("a corpus file");
            if std::panic::catch_unwind(|| property(&data)).is_err() {
                panic!("{target}: {} breaks its property", path.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "{target} has no kept inputs under {}", fuzz.display());
}

#[test]
fn split_records() {
    replay("split_records", properties::split_records);
}

#[test]
fn split_quoted_records() {
    replay("split_quoted_records", properties::split_quoted_records);
}

#[test]
fn split_fields() {
    replay("split_fields", properties::split_fields);
}

#[test]
fn parse_values() {
    replay("parse_values", properties::parse_values);
}

#[test]
fn parse_arguments() {
    replay("parse_arguments", properties::parse_arguments);
}

#[test]
fn match_header() {
    replay("match_header", properties::match_header);
}
