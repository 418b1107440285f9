//! OpenLineage (spec 2-0-2) run events for every load, so a lineage server
//! (Marquez, DataHub, OpenMetadata) can answer "where did this table's rows
//! come from, and what ran before and after last night's load?".
//!
//! Each ingest of a table and date is a run: `START` before the export is
//! read, then `COMPLETE`, `FAIL` (with the error and the exit code) or
//! `ABORT` (a signal). A back-fill is a run of its own, the parent of each
//! date's run; a run started by Airflow has the Airflow task as parent
//! (`OPENLINEAGE_PARENT_ID`, from the OpenLineage provider's
//! `lineage_parent_id` macro). Events go to a file (one JSON a line) and/or
//! an HTTP endpoint (`POST <url>/api/v1/lineage`); a transport that fails is
//! a warning, never a failed load, and costs at most a bounded time
//! ([`transport`]).

pub mod events;
pub mod transport;

use std::path::PathBuf;

use chrono::NaiveDate;
use serde_json::Value;

use crate::error::Error;
use crate::report::RunReport;
use crate::target::TableTarget;
use events::{EventType, Job, RunEvent};

/// The job namespace when none is configured.
pub const DEFAULT_NAMESPACE: &str = "shoplake";

/// Where events go, from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct LineageConfig {
    pub url: Option<String>,
    pub file: Option<PathBuf>,
    pub namespace: String,
    /// Sent as a bearer token; never printed.
    pub api_key: Option<String>,
    /// The run that started this one (an Airflow task), if any.
    pub parent: Option<ParentRun>,
}

impl LineageConfig {
    pub fn enabled(&self) -> bool {
        self.url.is_some() || self.file.is_some()
    }
}

/// A run and its job, as OpenLineage names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRun {
    pub namespace: String,
    pub job: String,
    pub run_id: String,
    /// The root of the chain (the Airflow DAG run), if known.
    pub root: Option<Box<ParentRun>>,
}

impl ParentRun {
    /// `namespace/job/runId`, as the Airflow provider's `lineage_parent_id`
    /// macro writes it. The namespace may hold `/` (`airflow://prod`), the
    /// job (`dag.task`) and the run id do not: split at the last two.
    pub fn parse(text: &str) -> Option<ParentRun> {
        let (rest, run_id) = text.trim().rsplit_once('/')?;
        let (namespace, job) = rest.rsplit_once('/')?;
        (!namespace.is_empty() && !job.is_empty() && uuid::Uuid::parse_str(run_id).is_ok()).then(|| ParentRun {
            namespace: namespace.to_string(),
            job: job.to_string(),
            run_id: run_id.to_string(),
            root: None,
        })
    }

    /// From `OPENLINEAGE_PARENT_ID` (and `OPENLINEAGE_ROOT_PARENT_ID`);
    /// a malformed value is a warning, not a failed load.
    pub fn from_environment() -> Option<ParentRun> {
        let read = |name: &str| {
            let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
            let parsed = ParentRun::parse(&value);
            if parsed.is_none() {
                tracing::warn!(variable = name, "not a namespace/job/runId (a UUID): no parent run in the lineage");
            }
            parsed
        };
        let mut parent = read("OPENLINEAGE_PARENT_ID")?;
        // Without a root, the parent is the root (as openlineage-dbt does).
        parent.root = Some(Box::new(read("OPENLINEAGE_ROOT_PARENT_ID").unwrap_or_else(|| parent.clone())));
        Some(parent)
    }
}

/// Sends runs' events; cheap to clone, nothing happens when disabled.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    config: LineageConfig,
    sender: transport::Sender,
    /// Runs started and not ended: a signal ends them as ABORT.
    active: std::sync::Arc<std::sync::Mutex<Vec<Run>>>,
}

impl Lineage {
    pub fn new(config: LineageConfig) -> Lineage {
        let sender = transport::Sender::new(&config);
        Lineage { config, sender, active: Default::default() }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The parent of runs started now (the Airflow task, if any).
    pub fn parent(&self) -> Option<ParentRun> {
        self.config.parent.clone()
    }

    /// A run of `job`, started (its `START` sent) with `parent`.
    pub async fn start(&self, job: &str, parent: Option<ParentRun>, facets: events::RunStart) -> Run {
        let run = Run {
            id: uuid::Uuid::new_v4().to_string(),
            job: Job { namespace: self.config.namespace.clone(), name: job.to_string() },
            parent,
            start: facets,
        };
        if self.enabled() {
            self.sender.send(&run.event(EventType::Start, None)).await;
            self.active.lock().expect("active runs").push(run.clone());
        }
        run
    }

    /// Ends `run` as a report says (`COMPLETE`, or `FAIL` with the error).
    pub async fn finish(&self, run: &Run, end: events::RunEnd<'_>) {
        self.ended(run);
        if self.enabled() {
            let kind = if end.error.is_some() { EventType::Fail } else { EventType::Complete };
            self.sender.send(&run.event(kind, Some(end))).await;
        }
    }

    /// Ends `run` as interrupted by a signal.
    pub async fn abort(&self, run: &Run) {
        self.ended(run);
        if self.enabled() {
            self.sender.send(&run.event(EventType::Abort, None)).await;
        }
    }

    /// Ends every run still going as ABORT (the process is stopping on a signal).
    pub async fn abort_active(&self) {
        let runs: Vec<Run> = std::mem::take(&mut *self.active.lock().expect("active runs"));
        for run in runs.iter().rev() {
            self.abort(run).await;
        }
    }

    fn ended(&self, run: &Run) {
        self.active.lock().expect("active runs").retain(|r| r.id != run.id);
    }
}

/// One started run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub job: Job,
    pub parent: Option<ParentRun>,
    start: events::RunStart,
}

impl Run {
    /// This run as the parent of another (a back-fill's dates).
    pub fn as_parent(&self) -> ParentRun {
        ParentRun {
            namespace: self.job.namespace.clone(),
            job: self.job.name.clone(),
            run_id: self.id.clone(),
            root: self.parent.as_ref().map(|p| p.root.clone().unwrap_or_else(|| Box::new(p.clone()))),
        }
    }

    fn event(&self, kind: EventType, end: Option<events::RunEnd<'_>>) -> Value {
        RunEvent { kind, run: self, end }.to_json()
    }
}

/// What a load's start knows: the table, the date, and where the export is.
pub fn load_start(target: &TableTarget, date: NaiveDate, source: &crate::storage::Location) -> events::RunStart {
    events::RunStart::Load { target: target.clone(), date, source: source.join(&target.def.source_file(date)) }
}

/// What a load's end knows.
pub fn load_end<'a>(
    report: &'a RunReport,
    error: Option<&'a Error>,
    column_sources: &'a events::ColumnSources,
) -> events::RunEnd<'a> {
    events::RunEnd { report: Some(report), reports: &[], error, column_sources, erasure: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_ids_split_at_the_last_two_slashes() {
        let id = "01890a9c-0000-7000-8000-000000000001";
        let parent = ParentRun::parse(&format!("airflow://prod/ingestion_x.load/{id}")).unwrap();
        assert_eq!(
            (parent.namespace.as_str(), parent.job.as_str(), parent.run_id.as_str()),
            ("airflow://prod", "ingestion_x.load", id)
        );
        assert!(ParentRun::parse("default/job/not-a-uuid").is_none());
        assert!(ParentRun::parse(&format!("job/{id}")).is_none(), "three parts");
    }
}
