//! The data-quality checks a definition declares (`tables/<name>/checks.toml`,
//! the way dbt declares tests beside a model): their kinds and severities,
//! as the file states them. The check stage runs them ([`crate::check`]).

use serde::{Deserialize, Serialize};

/// How a failed check is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported and logged; the load goes on.
    Warn,
    /// The load is refused (exit 4), nothing is written.
    Fail,
}

/// One check as declared in `checks.toml`; unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The day's valid rows may differ from the previous loaded date's by
    /// at most `max_change_percent`, once that date has `min_rows`.
    Volume { name: String, severity: Severity, max_change_percent: f64, min_rows: u64 },
    /// At most `max_ratio` of the day's rows may have no `column`.
    NullRatio { name: String, severity: Severity, column: String, max_ratio: f64 },
    /// `column` holds only these values (or nothing).
    AcceptedValues { name: String, severity: Severity, column: String, values: Vec<String> },
    /// A query over the day's rows (table `day`) that must return no row.
    Sql { name: String, severity: Severity, sql: String },
}

/// The file format of `checks.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksFile {
    #[serde(default)]
    pub checks: Vec<Check>,
}

impl Check {
    pub fn name(&self) -> &str {
        match self {
            Check::Volume { name, .. }
            | Check::NullRatio { name, .. }
            | Check::AcceptedValues { name, .. }
            | Check::Sql { name, .. } => name,
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Check::Volume { severity, .. }
            | Check::NullRatio { severity, .. }
            | Check::AcceptedValues { severity, .. }
            | Check::Sql { severity, .. } => *severity,
        }
    }

    /// The column a check is about, if one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Check::NullRatio { column, .. } | Check::AcceptedValues { column, .. } => Some(column),
            Check::Volume { .. } | Check::Sql { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Check::Volume { .. } => "volume",
            Check::NullRatio { .. } => "null_ratio",
            Check::AcceptedValues { .. } => "accepted_values",
            Check::Sql { .. } => "sql",
        }
    }
}
