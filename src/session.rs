//! The DataFusion sessions of a process: every query shoplake plans
//! (transform.sql, the SQL checks, the partition scans, `query`, `changes`)
//! runs on one runtime whose memory pool is `--memory-limit`, so operators
//! that hold rows (sorts, aggregations, joins) spill to disk past it
//! instead of growing the process. What shoplake holds itself (the key
//! index of a day, the changed rows of a re-load) is not in the pool:
//! docs/performance.md says how large it is.

use std::sync::{Arc, OnceLock};

use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

/// The pool's size when `--memory-limit` is not given.
pub const DEFAULT_MEMORY_LIMIT: &str = "1GiB";

static RUNTIME: OnceLock<Arc<RuntimeEnv>> = OnceLock::new();

/// Sets the process's memory limit, once, before the first session.
pub fn set_memory_limit(bytes: usize) -> Result<(), String> {
    let runtime = build(bytes)?;
    RUNTIME.set(runtime).map_err(|_| "the memory limit is set once, before any query".to_string())
}

fn build(bytes: usize) -> Result<Arc<RuntimeEnv>, String> {
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
        // Spill files go to the OS's temporary directory (TMPDIR).
        .with_disk_manager_builder(DiskManagerBuilder::default())
        .build_arc()
        .map_err(|e| e.to_string())
}

/// A session on the process's runtime.
pub fn context() -> SessionContext {
    let runtime = RUNTIME
        .get_or_init(|| build(parse_size(DEFAULT_MEMORY_LIMIT).expect("a valid default")).expect("a runtime"))
        .clone();
    SessionContext::new_with_config_rt(SessionConfig::new(), runtime)
}

/// Bytes from a size such as `512MiB`, `2GiB`, `1.5G` or `1000000`
/// (binary units, K/M/G/T with or without `iB`; a bare number is bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("not a size: {text:?} (say 512MiB, 2GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (say 512MiB, 2GiB)")),
    };
    let bytes = number * scale;
    if bytes < 64.0 * 1024.0 * 1024.0 {
        return Err(format!("{text} is less than 64MiB, too little to run a load in"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_in_binary_units_and_small_ones_are_refused() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("134217728"), Ok(128 << 20));
        assert!(parse_size("63MiB").is_err(), "just below the floor");
        assert_eq!(parse_size("64MiB"), Ok(64 << 20), "the floor itself");
        assert!(parse_size("1 GB of memory").is_err());
        assert!(parse_size("lots").is_err());
    }
}
