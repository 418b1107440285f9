//! `shoplake backfill`: ingests a range of dates, several at a time if
//! asked. The table is created once up front, because concurrent writers
//! racing to create it would conflict; after that each date commits on its
//! own, and a conflict with another date's commit is retried.

use chrono::NaiveDate;
use futures::StreamExt;

use crate::definition::TableDefinition;
use crate::error::{Error, Kind, Result};
use crate::ingest::{self, IngestConfig};
use crate::report::{RunReport, Status};
use crate::storage::Storage;
use crate::write::table::{open_or_create, TableSpec};

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
pub async fn run(storage: &Storage, config: &BackfillConfig, run_id: &str) -> (Vec<RunReport>, Option<Error>) {
    let def = TableDefinition::shopify_configuration();
    let created = match TableSpec::of(def) {
        Ok(spec) => open_or_create(storage, &config.ingest.table, &spec).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(error) = created {
        return (Vec::new(), Some(error));
    }
    let results: Vec<(RunReport, Result<()>)> = futures::stream::iter(dates(config.from, config.to))
        .map(|date| {
            let day_config = IngestConfig { date, ..config.ingest.clone() };
            async move {
                let (mut report, result) = ingest::run(storage, &day_config, run_id).await;
                match result {
                    Err(e) if e.kind == Kind::SourceMissing && config.skip_missing => {
                        tracing::info!(date = %date, "no export, skipped");
                        report.status = Status::Skipped;
                        (report, Ok(()))
                    }
                    Err(e) => {
                        tracing::error!(date = %date, "{e}");
                        (report, Err(e))
                    }
                    ok => (report, ok),
                }
            }
        })
        .buffered(config.parallel.max(1))
        .collect()
        .await;
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
