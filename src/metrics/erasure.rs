//! An erasure's metrics (`shoplake erase --metrics-file/--pushgateway`),
//! the batch-job way as a load's: per table, what left it and what a purge
//! deleted, the exit code, and when an erasure last succeeded (pushed as
//! job `shoplake_erase`, so a load's push never replaces them). Never the
//! value, nor its hash: a label per erased value would be a series per
//! person.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{escape, number, push_add, write_atomically};

/// What one table's erasure did, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ErasureMetrics {
    pub table_name: String,
    pub table: String,
    pub exit_code: u8,
    pub rows_erased: u64,
    pub rejects_erased: u64,
    pub files_purged: u64,
    pub finished: SystemTime,
}

impl ErasureMetrics {
    /// The text exposition.
    pub fn render(&self) -> String {
        let labels = format!("table_name=\"{}\",table=\"{}\"", escape(&self.table_name), escape(&self.table));
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: f64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {}\n", number(value)));
        };
        gauge("shoplake_erase_rows", "Rows the last erasure removed from the table.", self.rows_erased as f64);
        gauge("shoplake_erase_rejects", "Rejected lines the last erasure removed.", self.rejects_erased as f64);
        gauge("shoplake_erase_files_purged", "Files the last erasure's purge deleted.", self.files_purged as f64);
        gauge(
            "shoplake_erase_exit_code",
            "The last erasure's exit code (0 success, 4 still held).",
            f64::from(self.exit_code),
        );
        if self.exit_code == 0 {
            let at = self.finished.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            gauge("shoplake_erase_last_success_timestamp_seconds", "When an erasure of the table last succeeded.", at);
        }
        out
    }
}

impl super::Exposition for ErasureMetrics {
    fn write_file(&self, path: &Path) -> std::io::Result<()> {
        write_atomically(path, &self.render())
    }

    async fn push(&self, gateway: &str) -> Result<(), String> {
        push_add(gateway, "shoplake_erase", &self.table, self.render()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_is_a_series_per_table_never_per_value() {
        let metrics = ErasureMetrics {
            table_name: "shopify_configuration".into(),
            table: "s3://lake/t".into(),
            exit_code: 0,
            rows_erased: 3,
            rejects_erased: 1,
            files_purged: 6,
            finished: UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        };
        let text = metrics.render();
        assert!(text.contains("shoplake_erase_rows{table_name=\"shopify_configuration\",table=\"s3://lake/t\"} 3\n"));
        assert!(text.contains("shoplake_erase_last_success_timestamp_seconds{"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 5);
        let failed = ErasureMetrics { exit_code: 4, ..metrics }.render();
        assert!(!failed.contains("last_success"));
    }
}
