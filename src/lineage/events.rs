//! OpenLineage run events as JSON, with the spec's names: the core
//! `RunEvent` (2-0-2) and the facets shoplake fills in, each with its
//! `_producer` and `_schemaURL` (the versions openlineage-python 1.54
//! generates). Datasets are named by OpenLineage's naming spec: a local
//! file is namespace `file` with its absolute path, an S3 object namespace
//! `s3://bucket` with its key.

use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::Run;
use crate::definition::{type_name, TableDefinition};
use crate::error::Error;
use crate::report::{RunReport, Status};
use crate::storage::Location;
use crate::target::TableTarget;

/// Who produced the events: this program, at its version.
pub const PRODUCER: &str = concat!("https://github.com/shoplake/shoplake/tree/v", env!("CARGO_PKG_VERSION"));
const SPEC: &str = "https://openlineage.io/spec";
/// shoplake's own run facet: the run report's counts.
pub const REPORT_FACET: &str = "shoplake_runReport";
pub const REPORT_FACET_SCHEMA: &str = "https://raw.githubusercontent.com/shoplake/shoplake/main/lineage/schemas/ShoplakeRunReportRunFacet.json#/$defs/ShoplakeRunReportRunFacet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub namespace: String,
    pub name: String,
}

/// What a run is, known when it starts.
#[derive(Debug, Clone)]
pub enum RunStart {
    /// One table and date.
    Load { target: TableTarget, date: NaiveDate, source: Location },
    /// A range of dates of one table.
    Backfill { target: TableTarget, from: NaiveDate, to: NaiveDate },
    /// An erasure from one table (`shoplake erase`).
    Erase { target: TableTarget },
}

/// Table column → the export columns it is made from.
pub use crate::transform::ColumnSources;

/// What a run's end knows.
pub struct RunEnd<'a> {
    /// A load's report.
    pub report: Option<&'a RunReport>,
    /// A back-fill's reports, one per date.
    pub reports: &'a [RunReport],
    pub error: Option<&'a Error>,
    pub column_sources: &'a ColumnSources,
    /// An erasure's report (`crate::audit::erase::Erased` as JSON, without the purge's file lists).
    pub erasure: Option<&'a Value>,
}

pub struct RunEvent<'r, 'e> {
    pub kind: EventType,
    pub run: &'r Run,
    pub end: Option<RunEnd<'e>>,
}

impl RunEvent<'_, '_> {
    pub fn to_json(&self) -> Value {
        let run = self.run;
        let mut run_facets = Map::new();
        let (target, nominal) = match &run.start {
            RunStart::Load { target, date, .. } => (target, Some((*date, *date))),
            RunStart::Backfill { target, from, to } => (target, Some((*from, *to))),
            RunStart::Erase { target } => (target, None),
        };
        if let Some((from, to)) = nominal {
            run_facets.insert("nominalTime".into(), nominal_time(from, to));
        }
        if let Some(parent) = &run.parent {
            run_facets.insert("parent".into(), parent_facet(parent));
        }
        let end = self.end.as_ref();
        if let Some(error) = end.and_then(|e| e.error) {
            run_facets.insert(
                "errorMessage".into(),
                facet(
                    "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    json!({ "message": error.to_string(), "programmingLanguage": "RUST" }),
                ),
            );
        }
        if let Some(end) = end {
            run_facets.insert(REPORT_FACET.into(), report_facet(end));
        }
        let (inputs, outputs) = match &run.start {
            RunStart::Load { source, .. } => {
                let source = found_source(source, end.and_then(|e| e.report));
                (
                    vec![input(&source, target, end.and_then(|e| e.report))],
                    vec![output(target, self.kind, end, Some(&source))],
                )
            }
            RunStart::Backfill { .. } => (Vec::new(), vec![output(target, self.kind, None, None)]),
            RunStart::Erase { .. } => {
                let mut table = output(target, self.kind, None, None);
                let version = end.and_then(|e| e.erasure).and_then(|e| e["table_version"].as_i64());
                if let (Some(version), Some(facets)) = (version, table["facets"].as_object_mut()) {
                    facets.insert("version".into(), version_facet(version));
                }
                (Vec::new(), vec![table])
            }
        };
        json!({
            "eventType": self.kind.name(),
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "producer": PRODUCER,
            "schemaURL": format!("{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"),
            "run": { "runId": run.id, "facets": run_facets },
            "job": {
                "namespace": run.job.namespace,
                "name": run.job.name,
                "facets": { "jobType": facet(
                    "2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                    json!({ "processingType": "BATCH", "integration": "SHOPLAKE", "jobType": "JOB" }),
                ) },
            },
            "inputs": inputs,
            "outputs": outputs,
        })
    }
}

/// A facet: its fields, `_producer` and `_schemaURL`.
fn facet(schema: &str, fields: Value) -> Value {
    let mut object = fields.as_object().cloned().unwrap_or_default();
    object.insert("_producer".into(), PRODUCER.into());
    object.insert("_schemaURL".into(), format!("{SPEC}/facets/{schema}").into());
    Value::Object(object)
}

/// The dataset at a location, named by OpenLineage's naming spec.
pub fn dataset_name(location: &Location) -> (String, String) {
    match location {
        Location::S3 { bucket, prefix } => (format!("s3://{bucket}"), prefix.clone()),
        Location::Local(path) => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            ("file".to_string(), absolute.display().to_string())
        }
    }
}

fn nominal_time(from: NaiveDate, to: NaiveDate) -> Value {
    let midnight = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    facet(
        "1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
        json!({ "nominalStartTime": midnight(from), "nominalEndTime": midnight(to.succ_opt().unwrap_or(to)) }),
    )
}

fn parent_facet(parent: &super::ParentRun) -> Value {
    let mut fields = json!({
        "run": { "runId": parent.run_id },
        "job": { "namespace": parent.namespace, "name": parent.job },
    });
    if let Some(root) = &parent.root {
        fields["root"] = json!({
            "run": { "runId": root.run_id },
            "job": { "namespace": root.namespace, "name": root.job },
        });
    }
    facet("1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet", fields)
}

/// The export, with its header as read and the data-quality checks run on
/// its rows (an input facet in the spec), once read.
fn input(source: &Location, target: &TableTarget, report: Option<&RunReport>) -> Value {
    let (namespace, name) = dataset_name(source);
    let mut dataset = json!({ "namespace": namespace, "name": name });
    if let Some(report) = report.filter(|r| !r.header.is_empty()) {
        let fields: Vec<Value> = report.header.iter().map(|h| json!({ "name": h })).collect();
        dataset["facets"] = json!({ "schema": schema_facet(fields) });
    }
    if let Some(report) = report.filter(|r| !r.checks.is_empty()) {
        dataset["inputFacets"] = json!({ "dataQualityAssertions": assertions(target.def, report) });
    }
    dataset
}

/// The file the load found (a `.gz` beside the plain name, say), else the one expected.
fn found_source(expected: &Location, report: Option<&RunReport>) -> Location {
    report.and_then(|r| Location::parse(&r.source).ok()).unwrap_or_else(|| expected.clone())
}

fn schema_facet(fields: Vec<Value>) -> Value {
    facet("1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet", json!({ "fields": fields }))
}

/// The Delta table, with what the load did to it when it ended.
fn output(target: &TableTarget, kind: EventType, end: Option<&RunEnd<'_>>, source: Option<&Location>) -> Value {
    let def = target.def;
    let (namespace, name) = dataset_name(&target.table);
    let fields: Vec<Value> =
        def.columns.iter().map(|c| json!({ "name": c.name, "type": type_name(&c.data_type) })).collect();
    let mut facets = Map::new();
    facets.insert("schema".into(), schema_facet(fields));
    let mut dataset = json!({ "namespace": namespace, "name": name });
    if let (Some(end), EventType::Complete | EventType::Fail) = (end, kind) {
        if let Some(source) = source {
            facets.insert("columnLineage".into(), column_lineage(source, end.column_sources));
        }
        if let Some(report) = end.report {
            if let Some(version) = report.table_version {
                facets.insert("version".into(), version_facet(version));
            }
            if report.status == Status::Committed {
                dataset["outputFacets"] = json!({ "outputStatistics": facet(
                    "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
                    json!({
                        "rowCount": report.rows_inserted + report.rows_updated,
                        "size": report.bytes_added,
                        "fileCount": report.files_added,
                    }),
                ) });
            }
        }
    }
    dataset["facets"] = Value::Object(facets);
    dataset
}

fn version_facet(version: i64) -> Value {
    facet(
        "1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
        json!({ "datasetVersion": version.to_string() }),
    )
}

/// Each column from the export columns it is made from (a derived one from
/// the columns its SQL reads, the fingerprint from every value column).
fn column_lineage(source: &Location, sources: &ColumnSources) -> Value {
    let (namespace, name) = dataset_name(source);
    let fields: Map<String, Value> = sources
        .iter()
        .filter(|(_, from)| !from.is_empty())
        .map(|(column, from)| {
            let subtype = if from.len() == 1 && &from[0] == column { "IDENTITY" } else { "TRANSFORMATION" };
            let inputs: Vec<Value> = from
                .iter()
                .map(|field| {
                    json!({
                        "namespace": namespace,
                        "name": name,
                        "field": field,
                        "transformations": [{ "type": "DIRECT", "subtype": subtype }],
                    })
                })
                .collect();
            (column.clone(), json!({ "inputFields": inputs }))
        })
        .collect();
    facet("1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet", json!({ "fields": fields }))
}

fn assertions(def: &TableDefinition, report: &RunReport) -> Value {
    let list: Vec<Value> = report
        .checks
        .iter()
        .map(|result| {
            let mut assertion = json!({
                "assertion": result.kind,
                "success": result.passed,
                "name": result.name,
                "severity": match result.severity {
                    crate::check::Severity::Fail => "error",
                    crate::check::Severity::Warn => "warn",
                },
                "actual": result.detail,
            });
            if let Some(column) = def.checks.iter().find(|c| c.name() == result.name).and_then(|c| c.column()) {
                assertion["column"] = column.into();
            }
            assertion
        })
        .collect();
    facet(
        "1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet",
        json!({ "assertions": list }),
    )
}

/// The run report's counts (summed over a back-fill's dates) and exit code.
fn report_facet(end: &RunEnd<'_>) -> Value {
    let exit_code = end.error.map_or(0, |e| e.kind.exit_code());
    let mut fields = match (end.report, end.erasure) {
        (Some(report), _) => serde_json::to_value(report).expect("a report serializes"),
        (None, Some(erasure)) => erasure.clone(),
        (None, None) => {
            let sum = |f: fn(&RunReport) -> u64| end.reports.iter().map(f).sum::<u64>();
            json!({
                "dates": end.reports.len(),
                "rows_read": sum(|r| r.rows_read),
                "rows_valid": sum(|r| r.rows_valid),
                "rows_rejected": sum(|r| r.rows_rejected),
                "rows_inserted": sum(|r| r.rows_inserted),
                "rows_updated": sum(|r| r.rows_updated),
                "rows_deleted": sum(|r| r.rows_deleted),
            })
        }
    };
    if let Some(object) = fields.as_object_mut() {
        object.remove("checks");
        object.insert("exit_code".into(), exit_code.into());
    }
    let mut facet = fields;
    facet["_producer"] = PRODUCER.into();
    facet["_schemaURL"] = REPORT_FACET_SCHEMA.into();
    facet
}
