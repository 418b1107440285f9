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
        .get_or_init(|| {
            build(shoplake_parse::arguments::size(DEFAULT_MEMORY_LIMIT).expect("a valid default")).expect("a runtime")
        })
        .clone();
    SessionContext::new_with_config_rt(SessionConfig::new(), runtime)
}
