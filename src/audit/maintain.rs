//! `shoplake maintain`: compaction, checkpoints and vacuum for the table and
//! its rejects table, with a vacuum retention that keeps time travel working
//! for audits (30 days by default; under 7 days only with `--force`).
//!
//! Vacuum runs in two passes. Files that a commit removed are deleted once
//! removed for longer than the retention: shoplake enforces its own floor
//! (7 days, lowered by `--force`), not the table's
//! `delta.deletedFileRetentionDuration`, so retentions between 7 and 30
//! days work. Files no commit ever referenced (left by a killed load) are
//! deleted only once older than [`LONGEST_LOAD_HOURS`], whatever `--force`
//! says: younger ones may belong to a load still running.

use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// Vacuum retention below this destroys audit history; it needs `--force`.
pub const MIN_RETENTION_HOURS: u64 = 7 * 24;
pub const DEFAULT_RETENTION_HOURS: u64 = 30 * 24;
/// No load runs this long: files no commit references are kept this long
/// (a running load's new files are unreferenced until it commits).
pub const LONGEST_LOAD_HOURS: u64 = 24;

#[derive(Debug, Clone)]
pub struct MaintainConfig {
    pub tables: Vec<Location>,
    pub optimize: bool,
    pub vacuum: bool,
    pub retention_hours: u64,
    pub force: bool,
    /// Vacuum only lists the files it would delete.
    pub dry_run: bool,
    pub checkpoint: bool,
}

/// Runs the chosen tasks on every table that exists; returns one line per task.
pub async fn run(storage: &Storage, config: &MaintainConfig) -> Result<Vec<String>> {
    if !(config.optimize || config.vacuum || config.checkpoint) {
        return Err(Error::usage(
            Stage::Maintain,
            "maintain",
            "nothing to do: pass --optimize, --vacuum and/or --checkpoint",
        ));
    }
    if config.vacuum && config.retention_hours < MIN_RETENTION_HOURS && !config.force {
        return Err(Error::usage(
            Stage::Maintain,
            "--retention-hours",
            format!(
                "{} hours would delete files that time travel within the last 7 days needs; pass --force if that is really wanted",
                config.retention_hours
            ),
        ));
    }
    if config.dry_run && (config.optimize || config.checkpoint || !config.vacuum) {
        return Err(Error::usage(
            Stage::Maintain,
            "--dry-run",
            "lists what --vacuum would delete; use it with --vacuum alone",
        ));
    }
    // Every table is opened, and refused (exit 2) if it has a table feature
    // maintain cannot honour, before anything is written to any of them.
    let mut opened = Vec::new();
    for location in &config.tables {
        let Some(table) = storage.open_table(location).await? else { continue };
        if !config.dry_run {
            let command = match config.optimize {
                true => crate::features::Command::Optimize,
                false => crate::features::Command::Maintain,
            };
            crate::features::check_writable(&table, location, command)?;
        }
        opened.push((location, table));
    }
    let mut done = Vec::new();
    for (location, mut table) in opened {
        let delta_error = |e| Error::delta(Stage::Maintain, location, e);
        // Whoever may not write is refused (exit 2) before anything is
        // written: the probe re-puts the oldest commit conditionally.
        if !config.dry_run {
            storage.check_commits_are_safe(location).await?;
        }
        if config.optimize {
            let (optimized, metrics) = table.optimize().with_type(OptimizeType::Compact).await.map_err(delta_error)?;
            done.push(format!(
                "{location}: optimize compacted {} files into {} (version {})",
                metrics.num_files_removed,
                metrics.num_files_added,
                optimized.version().unwrap_or(0)
            ));
            table = optimized;
        }
        if config.checkpoint {
            deltalake::checkpoints::create_checkpoint(&table, None).await.map_err(delta_error)?;
            done.push(format!("{location}: checkpoint written at version {}", table.version().unwrap_or(0)));
        }
        if config.vacuum && !config.dry_run {
            check_delete_allowed(storage, location, &table, config).await?;
        }
        if config.vacuum {
            let hours = |h: u64| chrono::Duration::hours(h as i64);
            let removed = table
                .clone()
                .vacuum()
                .with_mode(VacuumMode::Lite)
                .with_retention_period(hours(config.retention_hours))
                .with_enforce_retention_duration(false)
                .with_dry_run(config.dry_run)
                .await
                .map_err(delta_error)?;
            table = removed.0;
            let orphans = table
                .clone()
                .vacuum()
                .with_mode(VacuumMode::Full)
                .with_retention_period(hours(config.retention_hours.max(LONGEST_LOAD_HOURS)))
                .with_enforce_retention_duration(false)
                .with_dry_run(config.dry_run)
                .await
                .map_err(delta_error)?;
            table = orphans.0;
            let mut files: Vec<String> = removed.1.files_deleted.into_iter().chain(orphans.1.files_deleted).collect();
            files.sort();
            files.dedup();
            if config.dry_run {
                done.push(format!(
                    "{location}: vacuum would delete {} files (removed more than {} hours ago, or never committed and older than {} hours):",
                    files.len(),
                    config.retention_hours,
                    config.retention_hours.max(LONGEST_LOAD_HOURS)
                ));
                done.extend(files.iter().map(|f| format!("  {f}")));
            } else {
                done.push(format!(
                    "{location}: vacuum deleted {} files (removed more than {} hours ago, or never committed and older than {} hours)",
                    files.len(),
                    config.retention_hours,
                    config.retention_hours.max(LONGEST_LOAD_HOURS)
                ));
            }
        }
        let _ = table;
    }
    Ok(done)
}

/// delta-rs commits `VACUUM START` before it deletes anything: a role that
/// may not delete (the loader's) would leave that commit behind. So the
/// first file vacuum would delete is deleted here first: refused, the run
/// stops (exit 2) with the log untouched; allowed, vacuum goes on (deleting
/// it again is a no-op).
async fn check_delete_allowed(
    storage: &Storage,
    location: &Location,
    table: &deltalake::DeltaTable,
    config: &MaintainConfig,
) -> Result<()> {
    if !matches!(location, Location::S3 { .. }) {
        return Ok(());
    }
    let hours = chrono::Duration::hours(config.retention_hours as i64);
    let (_, listed) = table
        .clone()
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .with_retention_period(hours)
        .with_enforce_retention_duration(false)
        .with_dry_run(true)
        .await
        .map_err(|e| Error::delta(Stage::Maintain, location, e))?;
    let Some(first) = listed.files_deleted.first() else { return Ok(()) };
    let (store, prefix) = storage.object_store(location).await?;
    let path = object_store::path::Path::from(format!("{prefix}/{}", first.trim_start_matches('/')));
    match object_store::ObjectStoreExt::delete(store.as_ref(), &path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::object_store(Stage::Maintain, location.join(first), e)),
    }
}
