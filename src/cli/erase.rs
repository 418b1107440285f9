//! `shoplake erase`: erase a value from tables (`crate::audit::erase`),
//! purge it from their past (`crate::audit::purge`), or verify where it
//! still is (`crate::audit::verify`). Each table's erasure is one
//! OpenLineage run (job `<table>.erase`, its report facet naming the value
//! only by its keyed hash) and, with `--metrics-file`/`--pushgateway`, its
//! own metrics.

use std::process::ExitCode;

use super::args::{EraseArgs, ReportFormat};
use super::resolve;
use crate::audit::erase::{self, By, EraseConfig, Erased};
use crate::error::{Error, Result, Stage};
use crate::lineage::events::{RunEnd, RunStart};
use crate::lineage::Lineage;
use crate::storage::Storage;
use crate::target::TableTarget;

/// One line (or JSON object) per table; exit 4 when a purge left the value somewhere.
pub(super) async fn command(args: EraseArgs, storage: &Storage) -> Result<ExitCode> {
    let catalog = resolve::catalog(&args.table.definitions).await?;
    let targets = match args.all_tables {
        true => resolve::all_targets(catalog, &args.table)?.into_iter().collect::<Result<Vec<_>>>()?,
        false => vec![resolve::target(catalog, &args.table)?],
    };
    let by = match (&args.key, &args.where_) {
        (Some(key), _) => By::Key(key.clone()),
        (None, Some(clause)) => match clause.split_once('=') {
            Some((column, value)) if !column.trim().is_empty() => {
                By::Column { column: column.trim().to_string(), value: value.to_string() }
            }
            _ => return Err(Error::usage(Stage::CommandLine, "--where", format!("{clause:?} is not COLUMN=VALUE"))),
        },
        (None, None) => unreachable!("clap requires --key or --where"),
    };
    if args.verify {
        return verify_erasure(storage, &targets, &by, args.format).await;
    }
    let reason = args.reason.clone().unwrap_or_default();
    let exports = match args.exports && !args.dry_run {
        true => Some(crate::storage::Location::parse(&args.source)?),
        false => None,
    };
    let lineage = Lineage::new(resolve::lineage_config(&args.lineage));
    let mut still_holding = 0;
    for target in targets {
        let config = EraseConfig {
            targets: vec![target.clone()],
            by: by.clone(),
            reason: reason.clone(),
            dry_run: args.dry_run,
            purge: args.purge,
            exports: exports.clone(),
        };
        // A dry run changes nothing: no run to tell of.
        let run = match args.dry_run {
            true => None,
            false => {
                let job = format!("{}.erase", target.def.name);
                Some(lineage.start(&job, lineage.parent(), RunStart::Erase { target: target.clone() }).await)
            }
        };
        let result = erase::run(storage, &config).await.map(|mut erased| erased.remove(0));
        if let Some(run) = &run {
            told(&lineage, run, &args, &target, &by, &result).await;
        }
        let erased = result?;
        print(&erased, args.format);
        still_holding += erased.purged.iter().map(|p| p.still_holding.len()).sum::<usize>();
    }
    if still_holding > 0 {
        return Err(Error::rejected(
            Stage::Write,
            "erase --purge",
            format!("{still_holding} objects still hold the value after the purge (`erase --verify` names them)"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The erasure's end, as a lineage event and as metrics.
async fn told(
    lineage: &Lineage,
    run: &crate::lineage::Run,
    args: &EraseArgs,
    target: &TableTarget,
    by: &By,
    result: &Result<Erased>,
) {
    let column = match by {
        By::Key(_) => target.def.day_key().to_string(),
        By::Column { column, .. } => column.clone(),
    };
    let summary = match result {
        Ok(erased) => erased.summary(),
        Err(error) => erase::failed_summary(&target.def.name, &target.table.to_string(), &column, error),
    };
    let end = RunEnd {
        report: None,
        reports: &[],
        error: result.as_ref().err(),
        column_sources: &Default::default(),
        erasure: Some(&summary),
    };
    lineage.finish(run, end).await;
    if args.metrics_file.is_none() && args.pushgateway.is_none() {
        return;
    }
    let count = |key: &str| summary[key].as_u64().unwrap_or(0);
    let metrics = crate::metrics::erasure::ErasureMetrics {
        table_name: target.def.name.clone(),
        table: target.table.to_string(),
        exit_code: summary["exit_code"].as_u64().unwrap_or(1) as u8,
        rows_erased: count("rows_erased"),
        rejects_erased: count("rejects_erased"),
        files_purged: count("files_purged"),
        finished: std::time::SystemTime::now(),
    };
    let per_table = args.all_tables.then_some(target.def.name.as_str());
    crate::metrics::publish(&metrics, args.metrics_file.as_deref(), args.pushgateway.as_deref(), per_table).await;
}

fn print(erased: &Erased, format: ReportFormat) {
    match format {
        ReportFormat::Json => say!("{}", serde_json::to_string(erased).expect("serializes")),
        ReportFormat::Text => {
            let what = if erased.dry_run { "would erase" } else { "erased" };
            say!(
                "{}: {what} {} rows over {} dates and {} rejected lines ({}){}",
                erased.table_name,
                erased.rows_erased,
                erased.dates.len(),
                erased.rejects_erased,
                erased.column,
                match (&erased.erasure_id, erased.table_version) {
                    (Some(id), Some(version)) => format!("; erasure {id} recorded at version {version}"),
                    _ => String::new(),
                }
            );
            for date in &erased.dates {
                say!("  {}  {} rows in {} files", date.date, date.rows, date.files);
            }
            if let Some(note) = &erased.note {
                say!("  {note}");
            }
            for purged in &erased.purged {
                say!(
                    "  purged {}: {} files deleted{}{}{}",
                    purged.table,
                    purged.files_deleted.len(),
                    match purged.object_versions_deleted {
                        0 => String::new(),
                        n => format!(", {n} S3 object versions"),
                    },
                    match purged.versions_unreadable.is_empty() {
                        true => String::new(),
                        false => format!("; versions {} can no longer be read", purged.versions_unreadable),
                    },
                    match purged.log_expired_through {
                        Some(v) => format!("; log expired through version {v}"),
                        None => String::new(),
                    },
                );
            }
            for export in &erased.exports {
                say!("  export {} written again without {} records", export.export, export.records_removed);
            }
        }
    }
}

/// `shoplake erase --verify`: the evidence, table by table; exit 4 when
/// any object still holds the value.
async fn verify_erasure(
    storage: &Storage,
    targets: &[crate::target::TableTarget],
    by: &By,
    format: ReportFormat,
) -> Result<ExitCode> {
    let value = match by {
        By::Key(value) | By::Column { value, .. } => value.as_str(),
    };
    let value_hash = crate::erasure::ErasureKey::from_env().ok().map(|key| key.hash(value));
    let mut held = 0;
    for target in targets {
        for location in [&target.table, &target.rejects] {
            let evidence = crate::audit::verify::verify(storage, location, value).await?;
            held += evidence.holding.len();
            match format {
                ReportFormat::Json => {
                    let mut report = serde_json::to_value(&evidence).expect("serializes");
                    report["table_name"] = target.def.name.clone().into();
                    report["value_hash"] = value_hash.clone().into();
                    report["result"] = if evidence.holding.is_empty() { "absent" } else { "present" }.into();
                    say!("{report}");
                }
                ReportFormat::Text => {
                    say!(
                        "{}: {} objects read, {} holding the value",
                        evidence.table,
                        evidence.objects_checked,
                        evidence.holding.len()
                    );
                    for object in &evidence.holding {
                        say!("  {}  {}", object.kind, object.path);
                    }
                }
            }
        }
    }
    if held > 0 {
        return Err(Error::rejected(
            Stage::Query,
            "erase --verify",
            format!("{held} objects still hold the value (older versions keep it until purged, `erase --purge`: docs/privacy.md)"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
