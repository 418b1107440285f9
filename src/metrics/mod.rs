//! The run's metrics in the Prometheus text format, the batch-job way: a
//! file for node_exporter's textfile collector (`--metrics-file`, written
//! to a temporary file and renamed, so the collector never reads half a
//! file) and a push to a Pushgateway (`--pushgateway`, grouped by job and
//! table). Every series is labelled by table only (its name and its URI:
//! `table_name`, `table`); with `--all-tables` each table has its own file
//! (the table's name before the file's extension) and push. The loaded date is a
//! value (`shoplake_export_date_timestamp_seconds`), not a label, so a
//! back-fill of years does not create a series per day. An erasure's
//! series are [`erasure`]'s.
//!
//! `shoplake_last_success_timestamp_seconds` only moves on success: the
//! file keeps the previous value after a failed run, and the push is a
//! push-add (POST) without it, so the Pushgateway keeps the last success
//! too. An alert on its age catches a job that stopped succeeding, whatever
//! the reason. A Pushgateway that cannot be reached is a warning, never a
//! failed load.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;

pub mod erasure;

use crate::check::CheckResult;
use crate::report::{RunReport, Status};

/// What one run (one ingest, or a whole backfill) did, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// The table's definition name.
    pub table_name: String,
    /// The table's URI.
    pub table: String,
    pub exit_code: u8,
    pub rows: [(&'static str, u64); 7],
    pub changes: [(&'static str, u64); 4],
    pub duration: Duration,
    pub table_version: Option<i64>,
    /// The last date loaded.
    pub export_date: Option<NaiveDate>,
    pub checks: Vec<CheckResult>,
    pub finished: SystemTime,
    /// A dry run changes nothing, so it is not a success to alert on.
    pub dry_run: bool,
}

impl RunMetrics {
    /// The metrics of the runs behind `reports` (several for a backfill), ending with `exit_code`.
    pub fn of(table_name: &str, table: &str, reports: &[RunReport], exit_code: u8, duration: Duration) -> RunMetrics {
        let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
        RunMetrics {
            table_name: table_name.to_string(),
            table: table.to_string(),
            exit_code,
            rows: [
                ("read", sum(|r| r.rows_read)),
                ("valid", sum(|r| r.rows_valid)),
                ("filtered", sum(|r| r.rows_filtered)),
                ("rejected", sum(|r| r.rows_rejected)),
                ("duplicate", sum(|r| r.rows_duplicate)),
                ("suppressed", sum(|r| r.rows_suppressed)),
                ("other_type", sum(|r| r.rows_other_type)),
            ],
            changes: [
                ("inserted", sum(|r| r.rows_inserted)),
                ("updated", sum(|r| r.rows_updated)),
                ("deleted", sum(|r| r.rows_deleted)),
                ("unchanged", sum(|r| r.rows_unchanged)),
            ],
            duration,
            table_version: reports.iter().filter_map(|r| r.table_version).max(),
            export_date: reports
                .iter()
                .filter(|r| matches!(r.status, Status::Committed | Status::Unchanged))
                .filter_map(|r| r.date.parse().ok())
                .max(),
            checks: reports.iter().flat_map(|r| r.checks.iter().cloned()).collect(),
            finished: SystemTime::now(),
            dry_run: reports.iter().any(|r| r.status == Status::DryRun),
        }
    }

    /// The labels every series of this table carries.
    fn labels(&self) -> String {
        format!("table_name=\"{}\",table=\"{}\"", escape(&self.table_name), escape(&self.table))
    }

    fn succeeded(&self) -> bool {
        self.exit_code == 0 && !self.dry_run
    }

    /// The text exposition; `last_success` is the time to report as the
    /// last success (the file keeps the previous one after a failure).
    pub fn render(&self, last_success: Option<f64>) -> String {
        let table = self.labels();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {}", number(*value));
            }
        };
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        gauge(
            "shoplake_rows",
            "Lines of the export by bucket (read = valid + filtered + rejected + duplicate).",
            &self.rows.map(|(bucket, n)| (format!("{table},bucket=\"{bucket}\""), n as f64)),
        );
        gauge(
            "shoplake_rows_changed",
            "Rows of the table the run inserted, updated, deleted or left unchanged.",
            &self.changes.map(|(change, n)| (format!("{table},change=\"{change}\""), n as f64)),
        );
        gauge(
            "shoplake_run_duration_seconds",
            "How long the run took.",
            &[(table.clone(), self.duration.as_secs_f64())],
        );
        if let Some(version) = self.table_version {
            gauge("shoplake_table_version", "The table's version after the run.", &[(table.clone(), version as f64)]);
        }
        gauge(
            "shoplake_run_exit_code",
            "The run's exit code (0 success, 3 no export yet, 4 data refused, 5 retry, ...).",
            &[(table.clone(), f64::from(self.exit_code))],
        );
        gauge(
            "shoplake_run_success",
            "1 if the run succeeded.",
            &[(table.clone(), if self.succeeded() { 1.0 } else { 0.0 })],
        );
        gauge(
            "shoplake_run_dry",
            "1 if the run was a dry run (nothing written).",
            &[(table.clone(), if self.dry_run { 1.0 } else { 0.0 })],
        );
        if let Some(date) = self.export_date {
            let midnight = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp() as f64;
            gauge(
                "shoplake_export_date_timestamp_seconds",
                "The export date loaded last (midnight UTC).",
                &[(table.clone(), midnight)],
            );
        }
        gauge(
            "shoplake_last_run_timestamp_seconds",
            "When the run finished.",
            &[(table.clone(), seconds(self.finished))],
        );
        let success = if self.succeeded() { Some(seconds(self.finished)) } else { last_success };
        if let Some(at) = success {
            gauge("shoplake_last_success_timestamp_seconds", "When a run last succeeded.", &[(table.clone(), at)]);
        }
        if !self.checks.is_empty() {
            let samples: Vec<(String, f64)> = self
                .checks
                .iter()
                .map(|c| {
                    let severity = match c.severity {
                        crate::check::Severity::Warn => "warn",
                        crate::check::Severity::Fail => "fail",
                    };
                    (
                        format!("{table},check=\"{}\",severity=\"{severity}\"", escape(&c.name)),
                        if c.passed { 0.0 } else { 1.0 },
                    )
                })
                .collect();
            gauge("shoplake_check_failed", "1 if the data-quality check failed on the run's data.", &samples);
        }
        out
    }

    /// Writes the metrics for the textfile collector: to a temporary file
    /// in the same directory, then renamed over `path`.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let previous = std::fs::read_to_string(path).ok().and_then(|text| last_success_in(&text, &self.labels()));
        write_atomically(path, &self.render(previous))
    }

    /// Push-adds the metrics to a Pushgateway, grouped by job and table.
    /// Failures are returned for the caller to log; they never fail a load.
    pub async fn push(&self, gateway: &str) -> Result<(), String> {
        // Without a success, last_success is left out: the gateway keeps its value.
        push_add(gateway, "shoplake", &self.table, self.render(None)).await
    }
}

/// Metrics a run writes to a file and pushes to a Pushgateway.
pub trait Exposition {
    fn write_file(&self, path: &Path) -> std::io::Result<()>;
    fn push(&self, gateway: &str) -> impl std::future::Future<Output = Result<(), String>>;
}

impl Exposition for RunMetrics {
    fn write_file(&self, path: &Path) -> std::io::Result<()> {
        RunMetrics::write_file(self, path)
    }
    async fn push(&self, gateway: &str) -> Result<(), String> {
        RunMetrics::push(self, gateway).await
    }
}

/// Writes `metrics` to `file` (with `table_name` before its extension
/// when one file per table) and pushes them to `gateway`; a failure of
/// either is a warning, never a failed run.
pub async fn publish(metrics: &impl Exposition, file: Option<&Path>, gateway: Option<&str>, per_table: Option<&str>) {
    if let Some(path) = file {
        let path = match per_table {
            Some(table_name) => per_table_path(path, table_name),
            None => path.to_path_buf(),
        };
        if let Err(e) = metrics.write_file(&path) {
            tracing::warn!(path = %path.display(), "could not write the metrics file: {e}");
        }
    }
    if let Some(gateway) = gateway {
        if let Err(e) = metrics.push(gateway).await {
            let gateway = redact(gateway);
            tracing::warn!(%gateway, "could not push the metrics to the Pushgateway: {}", redact(&e));
        }
    }
}

/// Writes `text` to a temporary file beside `path`, then renames it over
/// `path`: the textfile collector never reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Push-adds `body` to a Pushgateway, grouped by `job` and table.
async fn push_add(gateway: &str, job: &str, table: &str, body: String) -> Result<(), String> {
    let url =
        format!("{}/metrics/job/{job}/table@base64/{}", gateway.trim_end_matches('/'), base64_url(table.as_bytes()));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(&url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| crate::error::flatten(&e))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {}", text.trim()));
    }
    Ok(())
}

/// The metrics file of one table of an `--all-tables` run: the table's
/// name before the file's extension (`shoplake.prom` → `shoplake.<name>.prom`).
pub fn per_table_path(path: &Path, table_name: &str) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{table_name}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{table_name}"),
    };
    path.with_file_name(name)
}

/// A URL (or a message quoting one) with any `user:password@` taken out,
/// for logs: a Pushgateway URL may carry basic-auth credentials.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme) = rest.find("://") {
        let (before, after) = rest.split_at(scheme + 3);
        out.push_str(before);
        let authority_end = after.find(['/', ' ', '"', '\'', ')']).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &after[at + 1..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The last-success value of the table with these labels in a metrics file, if any.
fn last_success_in(text: &str, labels: &str) -> Option<f64> {
    let prefix = format!("shoplake_last_success_timestamp_seconds{{{labels}}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// A label value, escaped as the text format wants.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Base64url without padding, as the Pushgateway's `@base64` label encoding wants.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status) -> RunReport {
        let mut r = RunReport::new("2019-04-01".into(), "s".into(), "t".into(), "run".into());
        r.status = status;
        r.rows_read = 10;
        r.rows_valid = 8;
        r.rows_filtered = 1;
        r.rows_rejected = 1;
        r.rows_inserted = 8;
        r.table_version = Some(3);
        r
    }

    #[test]
    fn renders_the_text_format_and_keeps_the_last_success_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoplake.prom");
        let ok = RunMetrics::of("t", "./lake/\"t\"", &[report(Status::Committed)], 0, Duration::from_millis(1500));
        ok.write_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("shoplake_rows{table_name=\"t\",table=\"./lake/\\\"t\\\"\",bucket=\"read\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("shoplake_run_duration_seconds{table_name=\"t\",table=\"./lake/\\\"t\\\"\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains(
                "shoplake_export_date_timestamp_seconds{table_name=\"t\",table=\"./lake/\\\"t\\\"\"} 1554076800"
            ),
            "{text}"
        );
        let success = last_success_in(&text, &ok.labels()).expect("a success is recorded");

        std::thread::sleep(Duration::from_millis(20));
        let failed = RunMetrics::of("t", "./lake/\"t\"", &[report(Status::Failed)], 3, Duration::from_millis(10));
        failed.write_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("shoplake_run_exit_code{table_name=\"t\",table=\"./lake/\\\"t\\\"\"} 3"), "{text}");
        assert!(text.contains("shoplake_run_success{table_name=\"t\",table=\"./lake/\\\"t\\\"\"} 0"), "{text}");
        assert_eq!(last_success_in(&text, &ok.labels()), Some(success), "the previous success is kept");
        assert!(
            !failed.render(None).contains("shoplake_last_success_timestamp_seconds"),
            "a failed push leaves it out"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(redact("http://user:pw@gw:9091/x"), "http://***@gw:9091/x");
        assert_eq!(
            redact("error sending request for url (http://u:p@h:1/metrics): refused"),
            "error sending request for url (http://***@h:1/metrics): refused"
        );
        assert_eq!(redact("http://gw:9091"), "http://gw:9091");
    }

    #[test]
    fn base64_url_matches_the_pushgateway_encoding() {
        assert_eq!(base64_url(b"s3://lake/t"), "czM6Ly9sYWtlL3Q");
        assert_eq!(base64_url(b"a"), "YQ");
        assert_eq!(base64_url(b"ab?"), "YWI_");
    }
}
