//! `shoplake validate`, `shoplake tables` and `shoplake schema`: what the
//! definitions say and how a table differs from its own, for people (and,
//! with `--format json`, for the Airflow DAG file that makes a DAG per
//! table).

use std::fmt::Write as _;

use super::args::ReportFormat;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::schema::SchemaPlan;
use crate::storage::{Location, Storage};
use crate::target::TableTarget;

/// Every problem of every definition, one a line, then a summary.
pub fn validation(catalog: &Catalog) -> String {
    let mut out = String::new();
    for problems in catalog.problems().values() {
        for problem in problems {
            let _ = writeln!(out, "{problem}");
        }
    }
    let valid: Vec<&str> = catalog.tables().iter().map(|t| t.name.as_str()).collect();
    let invalid: Vec<&str> = catalog.problems().keys().map(String::as_str).collect();
    let _ = write!(out, "{}: {} valid", catalog.dir, valid.len());
    if !valid.is_empty() {
        let _ = write!(out, " ({})", valid.join(", "));
    }
    if !invalid.is_empty() {
        let problems: usize = catalog.problems().values().map(Vec::len).sum();
        let _ = write!(out, ", {} invalid ({}): {problems} problem(s)", invalid.len(), invalid.join(", "));
    }
    out.push('\n');
    out
}

/// The definitions: where each table's exports and table are, and (as text)
/// the protocol and table features of each table that exists. The JSON,
/// which the Airflow DAG file reads as it parses, touches no storage.
pub async fn listing(
    storage: &Storage,
    catalog: &Catalog,
    source: &str,
    lake: &str,
    format: ReportFormat,
) -> Result<String> {
    let (source, lake) = (Location::parse(source)?, Location::parse(lake)?);
    let mut rows = Vec::new();
    for def in catalog.tables() {
        let target = TableTarget::resolve(def, &lake, None, None)?;
        rows.push(serde_json::json!({
            "name": def.name,
            "description": def.description,
            "source_pattern": source.join(&def.source_pattern).to_string(),
            "format": def.format,
            "object_type": def.object_type,
            "table": target.table.to_string(),
            "rejects_table": target.rejects.to_string(),
            "partition_by": def.partition_by,
            "key": def.key,
            "definition": def.origin,
            "valid": true,
        }));
    }
    for (name, problems) in catalog.problems() {
        rows.push(serde_json::json!({
            "name": name,
            "valid": false,
            "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(match format {
        ReportFormat::Json => {
            format!("{}\n", serde_json::json!({ "definitions": catalog.dir.to_string(), "tables": rows }))
        }
        ReportFormat::Text => {
            let mut out = String::new();
            for row in &rows {
                let text = |key: &str| row[key].as_str().unwrap_or("").to_string();
                if row["valid"] == true {
                    let _ = writeln!(out, "{}  {}", text("name"), text("description"));
                    let shape = match (text("format").as_str(), row["object_type"].as_str()) {
                        ("jsonl", Some(object_type)) => format!(" (JSON Lines, the {object_type} lines)"),
                        ("jsonl", None) => " (JSON Lines)".to_string(),
                        _ => String::new(),
                    };
                    let _ = writeln!(out, "  source   {}{shape}", text("source_pattern"));
                    let _ = writeln!(out, "  table    {}", text("table"));
                    let _ = writeln!(out, "  rejects  {}", text("rejects_table"));
                    let _ = writeln!(out, "  defined  {}", text("definition"));
                    let _ = writeln!(out, "  protocol {}", protocol(storage, &text("table")).await);
                } else {
                    let _ = writeln!(out, "{}  INVALID (shoplake validate)", text("name"));
                }
            }
            out
        }
    })
}

/// The protocol of the table at `uri`, for people; what went wrong if it
/// cannot be read (the listing goes on).
async fn protocol(storage: &Storage, uri: &str) -> String {
    let location = match Location::parse(uri) {
        Ok(location) => location,
        Err(e) => return format!("unknown ({e})"),
    };
    match storage.open_table(&location).await {
        Ok(Some(table)) => match crate::features::Protocol::of(&table, &location) {
            Ok(protocol) => protocol.describe(),
            Err(e) => format!("unknown ({e})"),
        },
        Ok(None) => "no table yet".to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// `shoplake schema diff` (and `apply`, which commits the in-place part).
pub async fn schema(storage: &Storage, target: &TableTarget, apply: bool, format: ReportFormat) -> Result<String> {
    let (def, location) = (target.def, &target.table);
    let table = storage.open_table(location).await?;
    let version = table.as_ref().map(crate::storage::version_of);
    let plan = crate::schema::plan(def, table.as_ref(), location)?;
    let (plan, applied_version) = match (apply, table) {
        (true, Some(table)) if plan.refused.is_empty() && !plan.adopt => {
            crate::features::check_writable(&table, location, crate::features::Command::Schema)?;
            let info = serde_json::json!({
                "run_id": uuid::Uuid::new_v4().to_string(),
                "command": "schema apply",
                "shoplake_version": env!("CARGO_PKG_VERSION"),
            });
            let (table, applied) =
                crate::schema::apply::apply(table, def, location, info).await.map_err(Error::from)?;
            let new_version = crate::storage::version_of(&table);
            (applied, (Some(new_version) != version).then_some(new_version))
        }
        (true, _) => {
            plan.check(def, location)?;
            (plan, None)
        }
        (false, _) => (plan, None),
    };
    Ok(match format {
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::json!({
                "table_name": def.name,
                "table": location.to_string(),
                "version": version,
                "plan": plan,
                "applied_version": applied_version,
            })
        ),
        ReportFormat::Text => schema_text(target, version, &plan, apply, applied_version),
    })
}

fn schema_text(
    target: &TableTarget,
    version: Option<i64>,
    plan: &SchemaPlan,
    apply: bool,
    applied: Option<i64>,
) -> String {
    let mut out = String::new();
    let at = version.map_or_else(|| "no table yet".to_string(), |v| format!("version {v}"));
    let _ = writeln!(out, "{}  {} ({at})", target.name(), target.table);
    if plan.create {
        let _ = writeln!(out, "  create          the first load creates the table from the definition");
    }
    if plan.adopt {
        let _ = writeln!(
            out,
            "  take over       the table has no {} column: the next load adds it",
            target.def.row_hash_column()
        );
    }
    for added in &plan.added {
        let _ = writeln!(
            out,
            "  add column      {} {} (nullable; rows loaded before read null)",
            added.name, added.type_name
        );
    }
    for (name, change) in &plan.properties {
        let before = change.table.as_deref().unwrap_or("(unset)");
        let _ = writeln!(out, "  set property    {name}: {before} -> {}", change.definition);
    }
    for refused in &plan.refused {
        let _ = writeln!(out, "  REFUSED         {refused}");
    }
    let verdict = match (apply, applied, plan.refused.is_empty(), plan.has_changes()) {
        (_, _, false, _) => "loads are refused (exit 2) until the definition and the table agree",
        (true, Some(_), true, _) => "applied as one version; no data file was rewritten",
        (_, _, true, false) => "the table follows its definition: nothing to change",
        (false, _, true, true) => {
            "the next load that changes data applies this in its own commit; `shoplake schema apply` does it now"
        }
        (true, None, true, true) => "nothing applied",
    };
    let _ = writeln!(out, "  => {verdict}");
    if let Some(v) = applied {
        let _ = writeln!(out, "  => now at version {v}");
    }
    out
}
