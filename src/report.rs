//! Stage 6, report: what a run did, as one JSON object for schedulers or a
//! few aligned lines for people. The fields are PRODUCT.md's run report.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A new table version holds the day's rows.
    Committed,
    /// The table already held exactly the day's rows: nothing was written.
    Unchanged,
    /// The run failed; the table is as it was (the error is on stderr).
    Failed,
    /// Backfill only: no export for the date and `--skip-missing` was given.
    Skipped,
    /// `--dry-run`: everything but the commit; the counts say what a load would do.
    DryRun,
    /// Backfill only: interrupted (SIGINT/SIGTERM) before the date was started.
    NotStarted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The table's name (its definition).
    pub table_name: String,
    pub date: String,
    pub source: String,
    pub table: String,
    pub status: Status,
    pub table_version: Option<i64>,
    /// Records read after the header.
    pub rows_read: u64,
    /// Physical lines read after the header: more than the records when
    /// quoted fields span lines (`records = "quoted"`).
    pub lines_read: u64,
    pub rows_filtered: u64,
    pub rows_rejected: u64,
    pub rows_duplicate: u64,
    /// Rows (and rejected lines) holding a value erased from the table
    /// (`shoplake erase`): kept out of the table and its rejects.
    pub rows_suppressed: u64,
    /// JSONL lines of another object type than the table's (`object_type`):
    /// another table's lines in a shared Bulk Operations file.
    pub rows_other_type: u64,
    pub rows_valid: u64,
    pub rows_inserted: u64,
    pub rows_updated: u64,
    pub rows_deleted: u64,
    pub rows_unchanged: u64,
    pub files_added: u64,
    pub files_removed: u64,
    pub duration_ms: u64,
    pub run_id: String,
    /// The data-quality checks of `checks.toml`, as run on the day's rows.
    pub checks: Vec<crate::check::CheckResult>,
    /// Export columns not loaded (`unknown_columns = "ignore"`).
    pub ignored_columns: Vec<String>,
    /// Declared columns the export lacked, loaded as null (`missing_columns = "null"`).
    pub missing_columns: Vec<String>,
    /// Columns this load added to the table (schema evolution).
    pub added_columns: Vec<String>,
    /// The export's header as read (for lineage; not in the JSON report).
    #[serde(skip)]
    pub header: Vec<String>,
    /// Bytes of the data files the load's commit added (for lineage).
    #[serde(skip)]
    pub bytes_added: u64,
}

impl RunReport {
    /// A report of a run on `target` that has not done anything yet.
    pub fn for_target(target: &crate::target::TableTarget, date: String, source: String, run_id: String) -> Self {
        RunReport {
            table_name: target.name().to_string(),
            ..RunReport::new(date, source, target.table.to_string(), run_id)
        }
    }

    pub fn new(date: String, source: String, table: String, run_id: String) -> Self {
        RunReport {
            table_name: String::new(),
            date,
            source,
            table,
            status: Status::Failed,
            table_version: None,
            rows_read: 0,
            lines_read: 0,
            rows_filtered: 0,
            rows_rejected: 0,
            rows_duplicate: 0,
            rows_suppressed: 0,
            rows_other_type: 0,
            rows_valid: 0,
            rows_inserted: 0,
            rows_updated: 0,
            rows_deleted: 0,
            rows_unchanged: 0,
            files_added: 0,
            files_removed: 0,
            duration_ms: 0,
            run_id,
            checks: Vec::new(),
            ignored_columns: Vec::new(),
            missing_columns: Vec::new(),
            added_columns: Vec::new(),
            header: Vec::new(),
            bytes_added: 0,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let version = self.table_version.map_or_else(|| "-".to_string(), |v| v.to_string());
        let verdict = match self.status {
            Status::Committed => format!("committed version {version}"),
            Status::Unchanged => format!("unchanged (table stays at version {version})"),
            Status::Failed => "FAILED, table unchanged".to_string(),
            Status::Skipped => "skipped: no export".to_string(),
            Status::DryRun => format!("dry run: nothing written (table at version {version})"),
            Status::NotStarted => "not started: interrupted".to_string(),
        };
        let _ = writeln!(out, "{}  {}  {verdict}", self.table_name, self.date);
        let _ = writeln!(out, "  source   {}", self.source);
        let _ = writeln!(out, "  table    {}", self.table);
        if self.status == Status::Failed && self.rows_read == 0 {
            let _ = writeln!(out, "  run      {} in {} ms", self.run_id, self.duration_ms);
            return out;
        }
        let _ = writeln!(
            out,
            "  rows     {} read = {} valid + {} filtered + {} rejected + {} duplicate{}{}",
            self.rows_read,
            self.rows_valid,
            self.rows_filtered,
            self.rows_rejected,
            self.rows_duplicate,
            match self.rows_suppressed {
                0 => String::new(),
                n => format!(" + {n} suppressed (erased)"),
            },
            match self.rows_other_type {
                0 => String::new(),
                n => format!(" + {n} other type"),
            }
        );
        if self.lines_read != self.rows_read {
            let _ = writeln!(out, "  lines    {} (quoted fields span lines)", self.lines_read);
        }
        // A failed run changed nothing: no zeros that read like a result.
        if self.status != Status::Failed {
            let _ = writeln!(
                out,
                "  changes  {} inserted, {} updated, {} deleted, {} unchanged",
                self.rows_inserted, self.rows_updated, self.rows_deleted, self.rows_unchanged
            );
        }
        if !matches!(self.status, Status::DryRun | Status::Failed) {
            let _ = writeln!(out, "  files    {} added, {} removed", self.files_added, self.files_removed);
        }
        for (what, columns) in
            [("ignored", &self.ignored_columns), ("as null", &self.missing_columns), ("added", &self.added_columns)]
        {
            if !columns.is_empty() {
                let _ = writeln!(out, "  columns  {what}: {}", columns.join(", "));
            }
        }
        for check in &self.checks {
            let verdict = match (check.passed, check.severity) {
                (true, _) => "ok  ",
                (false, crate::check::Severity::Warn) => "WARN",
                (false, crate::check::Severity::Fail) => "FAIL",
            };
            let _ = writeln!(out, "  check    {verdict} {}: {}", check.name, check.detail);
        }
        let _ = writeln!(out, "  run      {} in {} ms", self.run_id, self.duration_ms);
        out
    }
}

/// Where a run's time went, stage by stage, and the process's peak memory:
/// the debug log of every load (`RUST_LOG=shoplake=debug`).
#[derive(Debug)]
pub struct StageTimes {
    started: std::time::Instant,
    last: std::time::Instant,
    stages: Vec<(&'static str, u128)>,
}

impl StageTimes {
    pub fn start() -> StageTimes {
        let now = std::time::Instant::now();
        StageTimes { started: now, last: now, stages: Vec::new() }
    }

    /// The stage that ends now.
    pub fn done(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.stages.push((stage, (now - self.last).as_millis()));
        self.last = now;
    }

    /// Logs the stages (at debug) with the peak resident memory so far.
    pub fn log(&self, date: &str) {
        let stages: Vec<String> = self.stages.iter().map(|(name, ms)| format!("{name} {ms} ms")).collect();
        tracing::debug!(
            date,
            total_ms = self.started.elapsed().as_millis() as u64,
            peak_rss_mb = peak_rss_bytes().map(|b| b / (1 << 20)),
            stages = %stages.join(", "),
            "where the time went"
        );
    }
}

/// The process's peak resident set size (Linux: VmHWM), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_fields_and_the_checks() {
        let report = RunReport::new("2019-04-01".into(), "s".into(), "t".into(), "r".into());
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut expected = vec![
            "date",
            "source",
            "table",
            "status",
            "table_version",
            "rows_read",
            "lines_read",
            "rows_filtered",
            "rows_rejected",
            "rows_duplicate",
            "rows_suppressed",
            "rows_other_type",
            "rows_valid",
            "rows_inserted",
            "rows_updated",
            "rows_deleted",
            "rows_unchanged",
            "files_added",
            "files_removed",
            "duration_ms",
            "run_id",
            // Beyond PRODUCT.md's list: the data-quality checks (issue #9), the
            // table's name (#15) and what the load did about the header (#16).
            "checks",
            "table_name",
            "ignored_columns",
            "missing_columns",
            "added_columns",
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }
}
