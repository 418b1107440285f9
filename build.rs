//! Build script: puts the git commit into `shoplake --version`, so a binary
//! says what it was built from (a build outside a git checkout, the
//! container image's or a source tarball's, takes `SHOPLAKE_GIT_COMMIT`,
//! else says "unknown"), and embeds every table definition folder of
//! `tables/` as the binary's built-in definitions (used when neither
//! `--tables` nor `./tables` is there).

use std::path::Path;
use std::process::Command;

fn main() {
    embed_table_definitions();
    println!("cargo:rerun-if-env-changed=SHOPLAKE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("SHOPLAKE_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=SHOPLAKE_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}

/// Writes `$OUT_DIR/built_in_tables.rs`: (name, table.toml, transform.sql, checks.toml) per folder.
fn embed_table_definitions() {
    println!("cargo:rerun-if-changed=tables");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tables");
    let mut folders: Vec<_> = std::fs::read_dir(&root)
        .expect("tables/ is listed")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("table.toml").is_file())
        .collect();
    folders.sort();
    let include = |path: &Path| format!("include_str!({:?})", path.display().to_string());
    let optional = |path: &Path| if path.is_file() { format!("Some({})", include(path)) } else { "None".into() };
    let mut code = String::from("/// (name, table.toml, transform.sql, checks.toml) of each built-in definition.\n");
    code.push_str("pub const TABLES: &[(&str, &str, Option<&str>, Option<&str>)] = &[\n");
    for folder in folders {
        let name = folder.file_name().expect("a folder name").to_string_lossy().into_owned();
        code.push_str(&format!(
            "    ({name:?}, {}, {}, {}),\n",
            include(&folder.join("table.toml")),
            optional(&folder.join("transform.sql")),
            optional(&folder.join("checks.toml"))
        ));
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("built_in_tables.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
