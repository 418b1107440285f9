//! What a load counts and reports: every line in exactly one bucket, the
//! reject ratio, the commit info it records, and the report of a run that
//! committed, changed nothing, or repeated the last load.

use chrono::NaiveDate;
use serde_json::json;

use crate::definition::TableDefinition;
use crate::erasure::Suppression;
use crate::error::{Error, Result, Stage};
use crate::read::{ReadSummary, Reject};
use crate::report::{RunReport, Status};
use crate::{source, validate, write};

/// The day's counts into the report, every line in exactly one bucket (or
/// the load fails); then the reject ratio. Returns the day's rejected
/// lines, by line: a rejected line holding an erased value is not one of
/// them (it is counted suppressed, and its text never reaches the rejects
/// table); a PII column's field in a rejected line is replaced (`crate::pii`).
pub(super) fn account(
    report: &mut RunReport,
    summary: &ReadSummary,
    validated: &validate::Outcome,
    max_reject_ratio: f64,
    suppression: Option<&Suppression>,
    pii: Option<&crate::pii::PiiRules>,
) -> Result<Vec<Reject>> {
    let uri = report.source.clone();
    let line_rejects = summary.line_rejects.len() as u64;
    let mut all_rejects: Vec<Reject> = summary.line_rejects.clone();
    all_rejects.extend(validated.value_rejects.iter().cloned());
    let rejects_read = all_rejects.len() as u64;
    if let Some(suppression) = suppression {
        all_rejects.retain(|reject| !suppression.in_raw_line(&reject.raw));
    }
    if let Some(pii) = pii {
        for reject in &mut all_rejects {
            reject.raw = pii.raw_line(&reject.raw, &summary.header);
        }
    }
    report.rows_read = summary.rows_read;
    report.lines_read = summary.lines_read;
    report.rows_other_type = summary.other_type;
    report.rows_filtered = summary.rows_read - line_rejects - summary.other_type - validated.rows_transformed;
    report.rows_rejected = all_rejects.len() as u64;
    report.rows_duplicate = validated.rows_duplicate;
    report.rows_suppressed = validated.rows_suppressed + (rejects_read - report.rows_rejected);
    report.rows_valid = validated.rows_valid;
    report.ignored_columns = summary.ignored_columns.clone();
    report.header = summary.header.clone();
    report.missing_columns = summary.missing_columns.clone();
    let accounted = report.rows_filtered
        + report.rows_rejected
        + report.rows_duplicate
        + report.rows_suppressed
        + report.rows_other_type
        + report.rows_valid;
    if accounted != report.rows_read {
        return Err(Error::internal(
            Stage::Validate,
            &uri,
            format!("{} lines read but {accounted} accounted for", report.rows_read),
        ));
    }
    all_rejects.sort();
    tracing::info!(
        rows_read = report.rows_read,
        lines_read = report.lines_read,
        rows_valid = report.rows_valid,
        rows_filtered = report.rows_filtered,
        blank_lines = summary.blank_lines,
        rows_rejected = report.rows_rejected,
        rows_duplicate = report.rows_duplicate,
        rows_suppressed = report.rows_suppressed,
        rows_other_type = report.rows_other_type,
        "export validated"
    );
    check_reject_ratio(&uri, report.rows_read, &all_rejects, max_reject_ratio)?;
    Ok(all_rejects)
}

/// The load's commit info: what it read and counted, the export's identity
/// and the load's fingerprint (an identical re-run compares both).
pub(super) fn commit_info(
    def: &TableDefinition,
    run_id: &str,
    report: &RunReport,
    file: &source::SourceFile,
    digest: Option<u128>,
    load_fingerprint: &str,
) -> serde_json::Value {
    json!({
        "run_id": run_id,
        "export_date": report.date,
        "source": report.source,
        "rows_read": report.rows_read,
        "lines_read": report.lines_read,
        "rows_filtered": report.rows_filtered,
        "rows_rejected": report.rows_rejected,
        "rows_duplicate": report.rows_duplicate,
        "rows_suppressed": report.rows_suppressed,
        "rows_other_type": report.rows_other_type,
        "rows_valid": report.rows_valid,
        "checks": report.checks,
        "header_policy": { "unknown_columns": def.unknown_columns, "missing_columns": def.missing_columns },
        "ignored_columns": report.ignored_columns,
        "null_columns": report.missing_columns,
        "source_fingerprint": write::identical::source_fingerprint(file, digest),
        "load_fingerprint": load_fingerprint,
        "shoplake_version": env!("CARGO_PKG_VERSION"),
        "shoplake_commit": env!("SHOPLAKE_GIT_COMMIT"),
    })
}

/// What the load did, into the report and the log.
pub(super) fn loaded(report: &mut RunReport, outcome: &write::LoadOutcome, dry_run: bool, date: NaiveDate) {
    report.status = match (dry_run, outcome.committed) {
        (true, _) => Status::DryRun,
        (false, true) => Status::Committed,
        (false, false) => Status::Unchanged,
    };
    // A dry run against a table that does not exist yet has no version.
    report.table_version = (outcome.table_version >= 0).then_some(outcome.table_version);
    report.rows_inserted = outcome.inserted;
    report.rows_updated = outcome.updated;
    report.rows_deleted = outcome.deleted;
    report.rows_unchanged = outcome.unchanged;
    report.files_added = outcome.files_added;
    report.files_removed = outcome.files_removed;
    report.added_columns = outcome.added_columns.clone();
    report.bytes_added = outcome.bytes_added;
    if outcome.deleted > 0 {
        tracing::warn!(date = %date, deleted = outcome.deleted, of = outcome.rows_before, "rows deleted: the export no longer has them");
    }
    tracing::info!(
        version = outcome.table_version,
        committed = outcome.committed,
        rejects_version = outcome.rejects_version,
        "table loaded"
    );
}

/// The report of a run that repeats `last`: what that load reported,
/// nothing changed.
pub(super) fn repeated(report: &mut RunReport, last: &write::provenance::LastLoad, version: i64, dry_run: bool) {
    let count = |key: &str| last.info.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    report.status = if dry_run { Status::DryRun } else { Status::Unchanged };
    report.table_version = Some(version);
    report.rows_read = count("rows_read");
    // Loads before lines were counted apart had one record a line.
    report.lines_read = last.info.get("lines_read").and_then(serde_json::Value::as_u64).unwrap_or(report.rows_read);
    report.rows_filtered = count("rows_filtered");
    report.rows_rejected = count("rows_rejected");
    report.rows_duplicate = count("rows_duplicate");
    report.rows_suppressed = count("rows_suppressed");
    report.rows_other_type = count("rows_other_type");
    report.rows_valid = count("rows_valid");
    report.rows_unchanged = report.rows_valid;
    report.checks = last.info.get("checks").and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let names = |key: &str| -> Vec<String> {
        last.info.get(key).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    };
    report.ignored_columns = names("ignored_columns");
    report.missing_columns = names("null_columns");
}

fn check_reject_ratio(uri: &str, rows_read: u64, rejects: &[Reject], max_ratio: f64) -> Result<()> {
    if rows_read == 0 || rejects.is_empty() {
        return Ok(());
    }
    let ratio = rejects.len() as f64 / rows_read as f64;
    if ratio <= max_ratio {
        return Ok(());
    }
    let examples: Vec<String> = rejects.iter().take(3).map(|r| format!("line {}: {}", r.line, r.reason)).collect();
    Err(Error::rejected(
        Stage::Validate,
        uri,
        format!(
            "{} of {rows_read} lines rejected ({:.2}%), more than --max-reject-ratio {max_ratio} allows; first: {}",
            rejects.len(),
            ratio * 100.0,
            examples.join(" | ")
        ),
    ))
}
