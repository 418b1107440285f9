//! Registration of a table and its rejects table where readers look for
//! them: the AWS Glue Data Catalog (Athena, Trino, EMR, Glue jobs) or Unity
//! Catalog (Databricks). Each entry is derived from the table's Delta log
//! (location, columns in the catalog's types) and written only when it
//! differs from what the catalog holds: a load that changes nothing changes
//! nothing there, and the run after a failed registration repairs it.
//!
//! Registration follows a commit; it never undoes one. A load whose data
//! committed but whose registration failed ends with [`Kind::Unregistered`]
//! (exit 6, retried), or exit 2 when the catalog refused the request (a
//! missing permission: do not retry).

pub mod glue;
mod types;
pub mod unity;

use deltalake::kernel::StructField;

pub use crate::definition::registry::{CatalogKind, CatalogSettings, Metastore};
use crate::error::{Error, Kind, Result, Stage};
use crate::storage::{Location, Storage};
use crate::target::TableTarget;

/// One table as a catalog should know it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub location: Location,
    pub description: String,
    pub columns: Vec<StructField>,
    pub partition_columns: Vec<String>,
}

/// What registering one table did, or (for `diff`) would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    /// What differed.
    Updated(Vec<String>),
    Unchanged,
    /// No Delta table there yet: nothing to register.
    NotLoaded,
}

/// One line of `catalog sync` or `catalog diff`.
#[derive(Debug, Clone)]
pub struct Registered {
    /// `glue:db.table` or `unity:catalog.schema.table`.
    pub entry: String,
    pub action: Action,
}

/// Registers `target`'s table and rejects table in `metastore`, or (with
/// `dry_run`) says what that would change. Each table's log is read once.
pub async fn register(
    storage: &Storage,
    metastore: &Metastore,
    target: &TableTarget,
    dry_run: bool,
) -> Result<Vec<Registered>> {
    let entries = entries(storage, target).await?;
    match metastore {
        Metastore::Glue { database } => {
            let glue = glue::Glue::connect(storage, database).await?;
            glue.register(entries, dry_run).await
        }
        Metastore::Unity { url, catalog, schema } => {
            let unity = unity::Unity::connect(url, catalog, schema)?;
            unity.register(entries, dry_run).await
        }
    }
}

/// The entries of the table and its rejects table, from their logs (`None`
/// for one not created yet).
async fn entries(storage: &Storage, target: &TableTarget) -> Result<Vec<(String, Option<Entry>)>> {
    let def = target.def;
    let rejects_name = format!("{}{}", def.name, crate::target::REJECTS_SUFFIX);
    let rejects_description = format!("Lines of {}'s exports that shoplake rejected, with why.", def.name);
    let mut entries = Vec::with_capacity(2);
    for (name, location, description) in [
        (def.name.clone(), &target.table, def.description.clone()),
        (rejects_name, &target.rejects, rejects_description),
    ] {
        let Some(table) = storage.open_table(location).await? else {
            entries.push((name, None));
            continue;
        };
        let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Catalog, location, e))?;
        let columns = snapshot.schema().fields().cloned().collect();
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let entry = Entry { name: name.clone(), location: location.clone(), description, columns, partition_columns };
        entries.push((name, Some(entry)));
    }
    Ok(entries)
}

/// A registration error after a committed load: the data stays; the exit
/// says the catalog is behind (6, retried) unless the catalog refused the
/// request outright (2, a permission or setting to fix), and how to repair.
pub fn after_commit(error: Error, table: &str) -> Error {
    let kind = if error.kind == Kind::Usage { Kind::Usage } else { Kind::Unregistered };
    let message = format!(
        "the load committed, but the catalog was not updated: {} (the next run, or `shoplake catalog sync \
         --table-name {table}`, registers it)",
        error.message
    );
    Error::new(Stage::Catalog, kind, error.subject, message)
}

/// `columns: +note string, discount_code string -> bigint`, in the wanted order.
fn column_changes(theirs: &[(String, String)], ours: &[(String, String)]) -> String {
    let mut changes = Vec::new();
    for (name, kind) in ours {
        match theirs.iter().find(|(n, _)| n == name) {
            None => changes.push(format!("+{name} {kind}")),
            Some((_, old)) if old != kind => changes.push(format!("{name} {old} -> {kind}")),
            Some(_) => {}
        }
    }
    changes.extend(theirs.iter().filter(|(n, _)| !ours.iter().any(|(o, _)| o == n)).map(|(n, _)| format!("-{n}")));
    if changes.is_empty() {
        changes.push("order".into());
    }
    format!("columns: {}", changes.join(", "))
}
