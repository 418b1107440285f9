//! `shoplake backfill`: ingests a range of dates, several at a time if
//! asked. The table and its rejects table are created once up front,
//! because concurrent writers racing to create them would conflict; after
//! that each date commits on its own, and a conflict with another date's
//! commit is retried.
//!
//! On a terminal a progress bar shows dates done, rows and the time left;
//! otherwise each finished date is a log line. Once interrupted (SIGINT,
//! SIGTERM), no new date starts: the running ones finish (each commit is
//! atomic, so a second signal that kills the process loses no committed
//! date) and the dates not started are reported as such.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures::StreamExt;

use crate::error::{Error, Kind, Result};
use crate::ingest::{self, IngestConfig};
use crate::lineage::events::{RunEnd, RunStart};
use crate::lineage::{Lineage, ParentRun};
use crate::report::{RunReport, Status};
use crate::schema::open::open_or_create;
use crate::storage::Storage;
use crate::table::spec::TableSpec;

#[derive(Debug, Clone)]
pub struct BackfillConfig {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub parallel: usize,
    pub skip_missing: bool,
    /// Options shared by every date (its `date` is replaced).
    pub ingest: IngestConfig,
}

pub fn dates(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

/// One report per date, in date order, and the first failure in date order.
/// Once `stop` is set, no new date starts.
pub async fn run(
    storage: &Storage,
    config: &BackfillConfig,
    run_id: &str,
    stop: &AtomicBool,
    lineage: &Lineage,
) -> (Vec<RunReport>, Option<Error>) {
    let target = &config.ingest.target;
    // The back-fill is a lineage run of its own, the parent of each date's.
    let start = RunStart::Backfill { target: target.clone(), from: config.from, to: config.to };
    let traced = lineage.start(&format!("{}.backfill", target.name()), lineage.parent(), start).await;
    let parent = Some(traced.as_parent());
    let (reports, error) = run_dates(storage, config, run_id, stop, lineage, parent).await;
    if stop.load(Ordering::SeqCst) {
        lineage.abort(&traced).await;
    } else {
        let none = Default::default();
        lineage
            .finish(
                &traced,
                RunEnd { report: None, reports: &reports, error: error.as_ref(), column_sources: &none, erasure: None },
            )
            .await;
    }
    (reports, error)
}

async fn run_dates(
    storage: &Storage,
    config: &BackfillConfig,
    run_id: &str,
    stop: &AtomicBool,
    lineage: &Lineage,
    parent: Option<ParentRun>,
) -> (Vec<RunReport>, Option<Error>) {
    let target = &config.ingest.target;
    if !config.ingest.dry_run {
        let created = async {
            open_or_create(storage, &target.table, &TableSpec::of(target.def)?).await?;
            crate::rejects::open_for_writing(storage, &target.rejects, target.def).await?;
            Ok::<_, Error>(())
        };
        if let Err(error) = created.await {
            return (Vec::new(), Some(error));
        }
    }
    let days = dates(config.from, config.to);
    let progress = Progress::new(days.len() as u64);
    let results: Vec<(RunReport, Result<()>)> = futures::stream::iter(days)
        .map(|date| {
            let day_config = IngestConfig { date, ..config.ingest.clone() };
            let (progress, parent) = (&progress, parent.clone());
            async move {
                if stop.load(Ordering::SeqCst) {
                    let mut report = RunReport::for_target(
                        &day_config.target,
                        date.to_string(),
                        day_config.source.join(&day_config.target.def.source_file(date)).to_string(),
                        run_id.to_string(),
                    );
                    report.status = Status::NotStarted;
                    return (report, Ok(()));
                }
                let (mut report, result) = ingest::traced(storage, &day_config, run_id, lineage, parent).await;
                let result = match result {
                    Err(e) if e.kind == Kind::SourceMissing && config.skip_missing => {
                        report.status = Status::Skipped;
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(date = %date, "{e}");
                        Err(e)
                    }
                    ok => ok,
                };
                progress.finished(&report);
                (report, result)
            }
        })
        .buffered(config.parallel.max(1))
        .collect()
        .await;
    progress.done();
    let mut first_error = None;
    let mut reports = Vec::with_capacity(results.len());
    for (report, result) in results {
        if let (Err(e), None) = (result, &first_error) {
            first_error = Some(e);
        }
        reports.push(report);
    }
    (reports, first_error)
}

/// Dates done and rows read: a bar on a terminal, a log line per date otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: AtomicU64,
    rows: AtomicU64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} dates, {msg} (about {eta} left)",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar, total, done: AtomicU64::new(0), rows: AtomicU64::new(0) }
    }

    fn finished(&self, report: &RunReport) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let rows = self.rows.fetch_add(report.rows_read, Ordering::SeqCst) + report.rows_read;
        let status =
            serde_json::to_value(report.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{rows} rows read, {} {status}", report.date));
            }
            None => {
                tracing::info!(date = %report.date, %status, rows_read = report.rows_read, "date {done}/{} done", self.total)
            }
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A table of the dates of a backfill, one line each, for people.
pub fn summary(reports: &[RunReport]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10}  {:<11}  {:>7}  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7}",
        "date", "status", "version", "read", "valid", "rejected", "inserted", "updated", "deleted", "seconds"
    );
    for r in reports {
        let status =
            serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let version = r.table_version.map_or_else(|| "-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{:<10}  {:<11}  {:>7}  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7.1}",
            r.date,
            status,
            version,
            r.rows_read,
            r.rows_valid,
            r.rows_rejected,
            r.rows_inserted,
            r.rows_updated,
            r.rows_deleted,
            r.duration_ms as f64 / 1000.0
        );
    }
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    let _ = writeln!(
        out,
        "{} dates: {} committed, {} unchanged, {} failed, {} skipped, {} dry run, {} not started",
        reports.len(),
        count(Status::Committed),
        count(Status::Unchanged),
        count(Status::Failed),
        count(Status::Skipped),
        count(Status::DryRun),
        count(Status::NotStarted)
    );
    out
}

/// Sets `stop` on the first SIGINT or SIGTERM, and remembers which (for
/// the exit code, 128 + signal); a second one ends the process at once.
pub fn stop_on_signals(lineage: Lineage) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicU64::new(0));
    let (flag, which) = (stop.clone(), signal.clone());
    tokio::spawn(async move {
        use tokio::signal::unix::{signal as listen, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (listen(SignalKind::interrupt()), listen(SignalKind::terminate()))
        else {
            return;
        };
        loop {
            let number = tokio::select! {
                _ = interrupt.recv() => 2,
                _ = terminate.recv() => 15,
            };
            if flag.swap(true, Ordering::SeqCst) {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "shoplake: interrupted again; stopping now (committed dates stay committed)"
                );
                lineage.abort_active().await;
                std::process::exit(128 + number);
            }
            which.store(number as u64, Ordering::SeqCst);
            tracing::warn!(
                "interrupted: no new date starts; the running ones finish (interrupt again to stop at once)"
            );
        }
    });
    (stop, signal)
}
