//! `shoplake maintain`: compaction, checkpoints and vacuum for the table and
//! its rejects table, with a vacuum retention that keeps time travel working
//! for audits (30 days by default; under 7 days only with `--force`).

use deltalake::operations::optimize::OptimizeType;

use crate::error::{Error, Result, Stage};
use crate::storage::{Location, Storage};

/// Vacuum retention below this destroys audit history; it needs `--force`.
pub const MIN_RETENTION_HOURS: u64 = 7 * 24;
pub const DEFAULT_RETENTION_HOURS: u64 = 30 * 24;

#[derive(Debug, Clone)]
pub struct MaintainConfig {
    pub tables: Vec<Location>,
    pub optimize: bool,
    pub vacuum: bool,
    pub retention_hours: u64,
    pub force: bool,
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
    let mut done = Vec::new();
    for location in &config.tables {
        let Some(mut table) = storage.open_table(location).await? else { continue };
        let delta_error = |e| Error::delta(Stage::Maintain, location, e);
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
        if config.vacuum {
            let (vacuumed, metrics) = table
                .vacuum()
                .with_retention_period(chrono::Duration::hours(config.retention_hours as i64))
                .with_enforce_retention_duration(!config.force)
                .await
                .map_err(delta_error)?;
            done.push(format!(
                "{location}: vacuum deleted {} unreferenced files older than {} hours",
                metrics.files_deleted.len(),
                config.retention_hours
            ));
            table = vacuumed;
        }
        let _ = table;
    }
    Ok(done)
}
