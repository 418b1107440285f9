//! Stage 5, check: the data-quality checks declared beside the table
//! (`tables/<name>/checks.toml`, the way dbt declares tests beside a
//! model), run on the day's valid rows before anything is written. A failed
//! check of severity `fail` refuses the load (exit 4, nothing written); one
//! of severity `warn` is reported and logged. Results go to the run report,
//! the metrics and the commit info.
//!
//! Kinds: `volume` (the day's valid rows against the previous loaded
//! date's), `null_ratio` (of a column), `accepted_values` (of a column) and
//! `sql` (a query over the day's rows, table `day`, that must return no row).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};

pub use crate::definition::checks::{Check, ChecksFile, Severity};
use crate::definition::TableDefinition;
use crate::error::{Error, Result, Stage};

impl Check {
    /// A check must name the table's columns, and its SQL must plan
    /// against the day's rows (the definition pipeline runs this).
    pub async fn validate(&self, def: &TableDefinition) -> std::result::Result<(), String> {
        let has = |column: &str| def.column(column).is_some();
        match self {
            Check::NullRatio { max_ratio, .. } if !(0.0..=1.0).contains(max_ratio) => {
                Err(format!("check {}: max_ratio must be between 0 and 1", self.name()))
            }
            Check::NullRatio { column, .. } | Check::AcceptedValues { column, .. } if !has(column) => {
                Err(format!("check {}: {column} is not a column of the table", self.name()))
            }
            Check::Volume { max_change_percent, .. } if *max_change_percent < 0.0 => {
                Err(format!("check {}: max_change_percent must not be negative", self.name()))
            }
            Check::Sql { sql, .. } => {
                let ctx = day_context(def.arrow_schema(), Vec::new()).map_err(|e| e.to_string())?;
                ctx.sql(sql)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("check {}: the SQL does not plan: {}", self.name(), crate::error::flatten(&e)))
            }
            _ => Ok(()),
        }
    }
}

/// A session where the day's rows are the table `day`.
fn day_context(schema: SchemaRef, rows: Vec<RecordBatch>) -> datafusion::error::Result<SessionContext> {
    let ctx = crate::session::context();
    ctx.register_table("day", Arc::new(MemTable::try_new(schema, vec![rows])?))?;
    Ok(ctx)
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: String,
    pub severity: Severity,
    pub passed: bool,
    /// What was measured, for people.
    pub detail: String,
}

/// The rows a previous date holds, for the volume check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousDay {
    pub date: NaiveDate,
    pub rows: u64,
}

/// The latest date before `date` that has rows in `table`, from the log's
/// file statistics (no data file is read).
pub fn previous_day(
    table: &DeltaTable,
    location: &crate::storage::Location,
    partition_by: &str,
    date: NaiveDate,
) -> Result<Option<PreviousDay>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(Stage::Validate, table.table_url(), e))?;
    let key = crate::features::mapping::ColumnMapping::of(table, location)?.partition_key(partition_by);
    let mut latest: Option<PreviousDay> = None;
    for file in snapshot.log_data().iter() {
        let Some(day) =
            file.partition_values_map().get(&key).cloned().flatten().and_then(|d| d.parse::<NaiveDate>().ok())
        else {
            continue;
        };
        if day >= date || latest.is_some_and(|l| l.date > day) {
            continue;
        }
        // Rows another engine deleted with a deletion vector are not counted.
        let rows = crate::features::live_rows(&file).unwrap_or(0);
        match &mut latest {
            Some(l) if l.date == day => l.rows += rows,
            _ => latest = Some(PreviousDay { date: day, rows }),
        }
    }
    Ok(latest.filter(|l| l.rows > 0))
}

/// The checks' measures, gathered batch by batch as the day's valid rows go
/// by (each row once, including a row a later line with the same key
/// supersedes: what the export holds). SQL checks run as queries over a
/// streaming table `day`, started with the first batch, so aggregates work
/// too and no row is held for them.
pub struct Accumulator<'d> {
    def: &'d TableDefinition,
    rows: u64,
    measures: Vec<Measure>,
    source: String,
}

enum Measure {
    Volume,
    Nulls(u64),
    Unexpected { count: u64, examples: Vec<String> },
    Sql(SqlCheck),
}

/// One SQL check's query, running over the batches sent to it.
struct SqlCheck {
    batches: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    found: tokio::task::JoinHandle<datafusion::error::Result<usize>>,
}

impl<'d> Accumulator<'d> {
    pub fn new(def: &'d TableDefinition, source: &str) -> Accumulator<'d> {
        let measures = def
            .checks
            .iter()
            .map(|check| match check {
                Check::Volume { .. } => Measure::Volume,
                Check::NullRatio { .. } => Measure::Nulls(0),
                Check::AcceptedValues { .. } => Measure::Unexpected { count: 0, examples: Vec::new() },
                Check::Sql { sql, .. } => Measure::Sql(SqlCheck::start(sql.clone(), def.arrow_schema())),
            })
            .collect();
        Accumulator { def, rows: 0, measures, source: source.to_string() }
    }

    /// Takes in one batch of the day's valid rows.
    pub async fn add(&mut self, rows: &RecordBatch) -> Result<()> {
        self.rows += rows.num_rows() as u64;
        for (check, measure) in self.def.checks.iter().zip(&mut self.measures) {
            match (check, measure) {
                (Check::NullRatio { column, .. }, Measure::Nulls(nulls)) => {
                    *nulls += rows.column_by_name(column).map_or(0, |c| c.null_count() as u64);
                }
                (Check::AcceptedValues { column, values, .. }, Measure::Unexpected { count, examples }) => {
                    let Some(array) = rows.column_by_name(column) else { continue };
                    let text =
                        cast(array, &DataType::Utf8).map_err(|e| Error::internal(Stage::Validate, &self.source, e))?;
                    for value in text.as_string::<i32>().iter().flatten() {
                        if !values.iter().any(|v| v == value) {
                            *count += 1;
                            if examples.len() < 3 && !examples.iter().any(|e| e == value) {
                                examples.push(value.to_string());
                            }
                        }
                    }
                }
                (_, Measure::Sql(sql)) => {
                    if let Some(sender) = &sql.batches {
                        // A query that ended early (it failed) has its error at the end.
                        let _ = sender.send(rows.clone()).await;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The results, once every row went by: `rows_valid` is the day's
    /// content (the volume check's count).
    pub async fn finish(self, rows_valid: u64, previous: Option<PreviousDay>) -> Result<Vec<CheckResult>> {
        let total = self.rows;
        let mut results = Vec::with_capacity(self.measures.len());
        for (check, measure) in self.def.checks.iter().zip(self.measures) {
            let (passed, detail) = match (check, measure) {
                (Check::Volume { max_change_percent, min_rows, .. }, _) => match previous {
                    Some(p) if p.rows >= *min_rows => {
                        let change = 100.0 * (rows_valid as f64 - p.rows as f64) / p.rows as f64;
                        (
                            change.abs() <= *max_change_percent,
                            format!("{rows_valid} rows against {} on {} ({change:+.1}%)", p.rows, p.date),
                        )
                    }
                    Some(p) => (
                        true,
                        format!("{rows_valid} rows; {} on {} is under {min_rows}, too few to compare", p.rows, p.date),
                    ),
                    None => (true, format!("{rows_valid} rows; no earlier date to compare with")),
                },
                (Check::NullRatio { column, max_ratio, .. }, Measure::Nulls(nulls)) => {
                    let ratio = if total == 0 { 0.0 } else { nulls as f64 / total as f64 };
                    (ratio <= *max_ratio, format!("{nulls} of {total} rows have no {column} ({:.2}%)", 100.0 * ratio))
                }
                (Check::AcceptedValues { column, values, .. }, Measure::Unexpected { count, examples }) => {
                    let detail = if count == 0 {
                        format!("every {column} is one of {} accepted values", values.len())
                    } else {
                        format!("{count} rows have another {column}, e.g. {}", examples.join(", "))
                    };
                    (count == 0, detail)
                }
                (Check::Sql { .. }, Measure::Sql(sql)) => {
                    let found = sql.finish().await.map_err(|e| {
                        Error::internal(Stage::Validate, &self.source, format!("check {}: {e}", check.name()))
                    })?;
                    let detail = match found {
                        0 => "the query returned no row".to_string(),
                        n => format!("the query returned {n} rows"),
                    };
                    (found == 0, detail)
                }
                _ => unreachable!("one measure per check, of its kind"),
            };
            if !passed {
                match check.severity() {
                    Severity::Warn => tracing::warn!(check = check.name(), %detail, "data-quality check failed (warn)"),
                    Severity::Fail => tracing::error!(check = check.name(), %detail, "data-quality check failed"),
                }
            }
            results.push(CheckResult {
                name: check.name().to_string(),
                kind: check.kind().to_string(),
                severity: check.severity(),
                passed,
                detail,
            });
        }
        Ok(results)
    }
}

impl SqlCheck {
    fn start(sql: String, schema: SchemaRef) -> SqlCheck {
        let (tx, rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let found = tokio::spawn(async move {
            let ctx = crate::session::context();
            let day = Arc::new(OneShot { schema: schema.clone(), batches: std::sync::Mutex::new(Some(rx)) });
            let table = datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![day])?;
            ctx.register_table("day", Arc::new(table))?;
            let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
            let mut found = 0;
            while let Some(batch) = futures::StreamExt::next(&mut stream).await {
                found += batch?.num_rows();
            }
            Ok(found)
        });
        SqlCheck { batches: Some(tx), found }
    }

    async fn finish(mut self) -> std::result::Result<usize, String> {
        self.batches.take();
        match self.found.await {
            Ok(found) => found.map_err(|e| crate::error::flatten(&e)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The day's rows as a one-shot DataFusion partition.
struct OneShot {
    schema: SchemaRef,
    batches: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<RecordBatch>>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("day")
    }
}

impl datafusion::physical_plan::streaming::PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _ctx: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        use futures::StreamExt as _;
        let receiver = self.batches.lock().expect("day partition").take();
        let stream = match receiver {
            Some(rx) => {
                futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) }).boxed()
            }
            None => futures::stream::empty().boxed(),
        };
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Runs every check on the day's valid rows held in memory (the table's schema).
pub async fn run(
    def: &TableDefinition,
    rows: &[RecordBatch],
    previous: Option<PreviousDay>,
    source: &str,
) -> Result<Vec<CheckResult>> {
    let mut accumulator = Accumulator::new(def, source);
    for batch in rows {
        accumulator.add(batch).await?;
    }
    let total = rows.iter().map(|b| b.num_rows() as u64).sum();
    accumulator.finish(total, previous).await
}

/// Refuses the load when a check of severity `fail` failed.
pub fn verdict(results: &[CheckResult], source: &str) -> Result<()> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed && r.severity == Severity::Fail)
        .map(|r| format!("{}: {}", r.name, r.detail))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::rejected(Stage::Validate, source, format!("data-quality check failed: {}", failed.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of `rows` shops read through the real stages, so the rows have the table's schema.
    async fn day(rows: usize, channel: Option<&str>, negative: bool) -> Vec<RecordBatch> {
        let def = crate::catalog::built_in("shopify_configuration");
        let header = def.export_columns().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
        let mut text = format!("{header}\n");
        for i in 0..rows {
            let channel = channel.unwrap_or("");
            let count = if negative && i == 0 { "-1" } else { "1" };
            text.push_str(&format!("s{i},s{i}.myshopify.com,APP,True,False,{count},[0],True,False,True,False,3,True,True,False,False,True,False,shopify_,False,{channel},2019-04-02\n"));
        }
        let date = NaiveDate::from_ymd_opt(2019, 4, 2).unwrap();
        let (rx, reader) =
            crate::read::start(def, date, "t.csv".into(), Box::new(std::io::Cursor::new(text.into_bytes())));
        let stream = crate::transform::run(def, rx, "t.csv").await.unwrap();
        let (rows, _) =
            crate::validate::collect(def, &crate::row_hash::ValueHasher::new(def), stream, "t.csv").await.unwrap();
        reader.await.unwrap().unwrap();
        rows
    }

    /// The table's definition with `checks` instead of its own.
    fn with(checks: Vec<Check>) -> TableDefinition {
        TableDefinition { checks, ..crate::catalog::built_in("shopify_configuration").clone() }
    }

    fn volume(severity: Severity) -> Check {
        Check::Volume { name: "volume".into(), severity, max_change_percent: 50.0, min_rows: 10 }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn each_kind_passes_and_fails_at_its_limit() {
        let previous = Some(PreviousDay { date: NaiveDate::from_ymd_opt(2019, 4, 1).unwrap(), rows: 20 });
        let rows = day(10, Some("direct"), false).await;
        let checks = vec![
            volume(Severity::Fail),
            Check::NullRatio {
                name: "nulls".into(),
                severity: Severity::Warn,
                column: "install_channel".into(),
                max_ratio: 0.0,
            },
            Check::AcceptedValues {
                name: "channels".into(),
                severity: Severity::Warn,
                column: "install_channel".into(),
                values: vec!["direct".into()],
            },
            Check::Sql {
                name: "negative".into(),
                severity: Severity::Fail,
                sql: "SELECT id FROM day WHERE nbr_merchandised_queries < 0".into(),
            },
        ];
        let results = run(&with(checks.clone()), &rows, previous, "t").await.unwrap();
        assert!(results.iter().all(|r| r.passed), "{results:?}");
        assert_eq!(results[0].detail, "10 rows against 20 on 2019-04-01 (-50.0%)", "exactly at the limit passes");
        verdict(&results, "t").unwrap();

        let rows = day(9, None, true).await;
        let results = run(&with(checks.clone()), &rows, previous, "t").await.unwrap();
        assert_eq!(
            results.iter().map(|r| r.passed).collect::<Vec<_>>(),
            vec![false, false, true, false],
            "{results:?}"
        );
        let err = verdict(&results, "t").unwrap_err();
        assert_eq!(err.kind, crate::Kind::DataRejected);
        assert!(err.message.contains("volume: 9 rows against 20") && err.message.contains("negative"), "{err}");
        assert!(!err.message.contains("nulls"), "a warning does not refuse the load: {err}");

        let rows = day(10, Some("partner"), false).await;
        let results = run(&with(checks.clone()), &rows, previous, "t").await.unwrap();
        assert!(!results[2].passed && results[2].detail.contains("e.g. partner"), "{results:?}");
        verdict(&results, "t").expect("only a warning");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn volume_needs_an_earlier_date_with_enough_rows() {
        let rows = day(3, Some("direct"), false).await;
        let results = run(&with(vec![volume(Severity::Fail)]), &rows, None, "t").await.unwrap();
        assert!(results[0].passed, "{results:?}");
        let few = PreviousDay { date: NaiveDate::from_ymd_opt(2019, 4, 1).unwrap(), rows: 9 };
        assert!(run(&with(vec![volume(Severity::Fail)]), &rows, Some(few), "t").await.unwrap()[0].passed);
        let warn =
            run(&with(vec![volume(Severity::Warn)]), &rows, Some(PreviousDay { rows: 100, ..few }), "t").await.unwrap();
        assert!(!warn[0].passed);
        verdict(&warn, "t").expect("a warning only");
    }

    #[test]
    fn a_typo_in_a_check_fails_loudly() {
        let bad = "[[checks]]\nname = \"v\"\nkind = \"volume\"\nseverity = \"fail\"\nmax_change_percent = 5\nmin_rows = 1\nmax_chnage = 3\n";
        assert!(toml::from_str::<ChecksFile>(bad).is_err());
        let bad = "[[checks]]\nname = \"v\"\nkind = \"volumes\"\nseverity = \"fail\"\n";
        assert!(toml::from_str::<ChecksFile>(bad).is_err());
        let bad = "[[checks]]\nname = \"v\"\nkind = \"sql\"\nseverity = \"fatal\"\nsql = \"SELECT 1\"\n";
        assert!(toml::from_str::<ChecksFile>(bad).is_err());
    }
}
