//! The definitions loader on mangled input (issue #26): each table folder
//! of `tables/` with its `table.toml` and `checks.toml` mutated at random
//! (lines dropped, repeated, swapped, cut; values replaced by tokens of the
//! wrong type or none; unknown keys added) goes through the whole pipeline
//! `validate` and every command share. It never panics; a definition is
//! either valid, and loads the same twice, or refused with problems that
//! each name one of its own files and say something. Property-tested here
//! on stable, through the real loader: `cargo fuzz` would build DataFusion
//! with nightly and sanitizers (docs/fuzzing.md).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use shoplake::catalog::{Catalog, DefinitionsDir};

/// Values put in place of a key's value: other types, empty, broken.
const TOKENS: &[&str] = &[
    "\"\"",
    "1",
    "-1",
    "true",
    "[",
    "\"decimal\"",
    "\"timestamp\"",
    "\"text\"",
    "{}",
    "[]",
    "\"x\"",
    "99999999999999999999",
    "\"{date}.csv\"",
    "\"id\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Repeat(usize),
    Swap(usize, usize),
    Replace(usize, usize),
    Unknown(usize),
    Cut(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Repeat),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Mutation::Replace(a, t)),
        any::<usize>().prop_map(Mutation::Unknown),
        any::<usize>().prop_map(Mutation::Cut),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *m {
            Mutation::Drop(i) => {
                lines.remove(i % n);
            }
            Mutation::Repeat(i) => lines.insert(i % n, lines[i % n].clone()),
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Replace(i, token) => {
                if let Some((key, _)) = lines[i % n].split_once('=') {
                    lines[i % n] = format!("{key}= {}", TOKENS[token]);
                }
            }
            Mutation::Unknown(i) => lines.insert(i % n, "surprise_key = 1".to_string()),
            Mutation::Cut(i) => {
                let line = &lines[i % n];
                let at =
                    line.char_indices().map(|(at, _)| at).nth(i % (line.chars().count() + 1)).unwrap_or(line.len());
                lines[i % n] = line[..at].to_string();
            }
        }
    }
    lines.join("\n") + "\n"
}

fn table_folders() -> Vec<PathBuf> {
    let tables = Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
    let mut folders: Vec<PathBuf> =
        std::fs::read_dir(&tables).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    assert!(folders.len() >= 2, "the built-in tables are in {}", tables.display());
    folders
}

/// Loads the folder holding only `table` (one of `tables/`), with its
/// table.toml and checks.toml mutated.
fn load_mutated(table: &Path, table_toml: &[Mutation], checks_toml: &[Mutation]) -> (PathBuf, &'static Catalog) {
    let dir = tempfile::tempdir().unwrap().keep();
    let name = table.file_name().unwrap();
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for file in std::fs::read_dir(table).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = match path.file_name().unwrap().to_str().unwrap() {
            "table.toml" => mutate(&text, table_toml),
            "checks.toml" => mutate(&text, checks_toml),
            _ => text,
        };
        std::fs::write(folder.join(path.file_name().unwrap()), text).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let catalog = runtime.block_on(Catalog::load(DefinitionsDir::Folder(dir.clone()))).expect("the folder lists");
    (dir, catalog)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_mangled_definition_is_valid_or_refused_naming_its_own_file(
        which in any::<usize>(),
        table_toml in proptest::collection::vec(mutation(), 0..4),
        checks_toml in proptest::collection::vec(mutation(), 0..3),
    ) {
        let folders = table_folders();
        let table = &folders[which % folders.len()];
        let name = table.file_name().unwrap().to_str().unwrap().to_string();
        let (dir, catalog) = load_mutated(table, &table_toml, &checks_toml);
        match catalog.problems().get(&name) {
            Some(problems) => {
                prop_assert!(!problems.is_empty());
                prop_assert!(catalog.tables().iter().all(|t| t.name != name), "refused and loaded at once");
                for problem in problems {
                    let own = ["table.toml", "checks.toml", "transform.sql"].iter().any(|f| problem.file.ends_with(f));
                    prop_assert!(own && problem.file.contains(&name), "{problem} names its own file");
                    prop_assert!(!problem.message.trim().is_empty(), "{problem} says something");
                }
            }
            None => {
                // Valid: the same files load the same definition again.
                let def = catalog.get(&name).expect("a valid table is found by its name");
                let (again_dir, again) = load_mutated(table, &table_toml, &checks_toml);
                let twice = again.get(&name).expect("valid again");
                prop_assert_eq!(format!("{:?}", def.columns), format!("{:?}", twice.columns));
                prop_assert_eq!(&def.key, &twice.key);
                std::fs::remove_dir_all(again_dir).ok();
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }
}

/// The case beside the mangled ones: no mutation at all is valid (so the
/// property above is not passing on folders that never load).
#[test]
fn each_table_folder_unmangled_is_valid() {
    for table in table_folders() {
        let name = table.file_name().unwrap().to_str().unwrap().to_string();
        let (dir, catalog) = load_mutated(&table, &[], &[]);
        assert!(catalog.problems().get(&name).is_none(), "{name}: {:?}", catalog.problems());
        assert!(catalog.get(&name).is_ok());
        std::fs::remove_dir_all(dir).ok();
    }
}
