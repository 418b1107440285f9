//! What one ingest is asked to do: the date, where its export and its table
//! are, and the guards it applies.

use chrono::NaiveDate;

use crate::storage::Location;
use crate::target::TableTarget;
use crate::write;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub date: NaiveDate,
    /// The root the definition's source pattern is under.
    pub source: Location,
    pub target: TableTarget,
    /// Highest share of rejected lines a load accepts (0.01 = 1%).
    pub max_reject_ratio: f64,
    /// What the load may delete (empty export, shrink).
    pub guards: write::Guards,
    /// Everything up to the commit, nothing written (`--dry-run`).
    pub dry_run: bool,
}
