//! `shoplake catalog sync|diff`, and the registration that follows a
//! commit (`ingest`, `backfill`, `schema apply`): the tables' entries in
//! Glue or Unity Catalog (crate::metastore).

use std::process::ExitCode;

use super::args::{CatalogCommand, ReportFormat};
use super::resolve;
use crate::error::{Error, Result, Stage};
use crate::metastore::{self, Action, Metastore};
use crate::storage::Storage;
use crate::target::TableTarget;

/// `catalog sync` (register) or `catalog diff` (compare, write nothing).
pub async fn command(command: CatalogCommand, storage: &Storage) -> Result<ExitCode> {
    let (args, dry_run) = match &command {
        CatalogCommand::Sync(args) => (args, false),
        CatalogCommand::Diff(args) => (args, true),
    };
    let catalog = resolve::catalog(&args.table.definitions).await?;
    let targets = if args.all_tables {
        resolve::all_targets(catalog, &args.table)?.into_iter().collect::<Result<Vec<_>>>()?
    } else {
        vec![resolve::target(catalog, &args.table)?]
    };
    let mut lines = Vec::new();
    for target in &targets {
        let metastore = resolve::metastore(&args.catalog, target)?.ok_or_else(|| {
            Error::usage(
                Stage::CommandLine,
                target.name(),
                "no catalog to register in: --catalog glue|unity (or SHOPLAKE_CATALOG), or a [catalog] block \
                 in its table.toml",
            )
        })?;
        for registered in metastore::register(storage, &metastore, target, dry_run).await? {
            lines.push((target.name().to_string(), registered));
        }
    }
    match args.format {
        ReportFormat::Text => {
            for (_, registered) in &lines {
                say!("{}: {}", registered.entry, describe(&registered.action, dry_run));
            }
        }
        ReportFormat::Json => {
            let entries: Vec<serde_json::Value> = lines
                .iter()
                .map(|(table, registered)| {
                    let (action, differences) = match &registered.action {
                        Action::Created => ("created", vec![]),
                        Action::Updated(differences) => ("updated", differences.clone()),
                        Action::Unchanged => ("unchanged", vec![]),
                        Action::NotLoaded => ("not_loaded", vec![]),
                    };
                    serde_json::json!({"table_name": table, "entry": registered.entry, "action": action,
                                       "differences": differences, "dry_run": dry_run})
                })
                .collect();
            say!("{}", serde_json::json!({ "entries": entries }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(action: &Action, dry_run: bool) -> String {
    match (action, dry_run) {
        (Action::Created, false) => "created".into(),
        (Action::Created, true) => "not registered (sync creates it)".into(),
        (Action::Updated(differences), false) => format!("updated ({})", differences.join("; ")),
        (Action::Updated(differences), true) => format!("differs ({})", differences.join("; ")),
        (Action::Unchanged, _) => "in sync".into(),
        (Action::NotLoaded, _) => "no table yet (nothing to register)".into(),
    }
}

/// After a commit: `target`'s entries made to match its log. A failure
/// keeps the data and says how the catalog is repaired.
pub async fn register_after_commit(storage: &Storage, metastore: &Metastore, target: &TableTarget) -> Result<()> {
    match metastore::register(storage, metastore, target, false).await {
        Ok(done) => {
            for registered in done.iter().filter(|r| !matches!(r.action, Action::Unchanged | Action::NotLoaded)) {
                tracing::info!(entry = %registered.entry, "catalog {}", describe(&registered.action, false));
            }
            Ok(())
        }
        Err(error) => Err(metastore::after_commit(error, target.name())),
    }
}
