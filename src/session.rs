//! The DataFusion sessions of a process: every query shoplake plans
//! (transform.sql, the SQL checks, the partition scans, `query`, `changes`)
//! runs on one runtime whose memory pool is `--memory-limit`, so operators
//! that hold rows (sorts, aggregations, joins) spill to disk past it
//! instead of growing the process. What shoplake holds itself is not in
//! the pool: its key indexes take a share of the same limit and spill past
//! it ([`crate::spill`]); docs/performance.md says what else a load holds.

use std::sync::{Arc, OnceLock};

use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

/// The pool's size when `--memory-limit` is not given.
pub const DEFAULT_MEMORY_LIMIT: &str = "1GiB";

static RUNTIME: OnceLock<Arc<RuntimeEnv>> = OnceLock::new();
static LIMIT: OnceLock<usize> = OnceLock::new();

/// Sets the process's memory limit, once, before the first session.
pub fn set_memory_limit(bytes: usize) -> Result<(), String> {
    LIMIT.set(bytes).map_err(|_| "the memory limit is set once, before any query".to_string())?;
    RUNTIME.set(build(bytes)?).map_err(|_| "the memory limit is set once, before any query".to_string())
}

/// The process's memory limit (`--memory-limit`, else the default).
pub fn memory_limit() -> usize {
    *LIMIT.get_or_init(|| shoplake_parse::arguments::size(DEFAULT_MEMORY_LIMIT).expect("a valid default"))
}

fn build(bytes: usize) -> Result<Arc<RuntimeEnv>, String> {
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
        // Spill files go to the OS's temporary directory (TMPDIR).
        .with_disk_manager_builder(DiskManagerBuilder::default())
        .build_arc()
        .map_err(|e| e.to_string())
}

/// The process's runtime: `--memory-limit`'s, else the default's.
fn runtime() -> Arc<RuntimeEnv> {
    RUNTIME.get_or_init(|| build(memory_limit()).expect("a runtime")).clone()
}

/// A session on the process's runtime.
pub fn context() -> SessionContext {
    SessionContext::new_with_config_rt(SessionConfig::new(), runtime())
}

/// The process's memory pool: DataFusion's operators and shoplake's key
/// indexes claim their memory from it.
pub fn memory_pool() -> Arc<dyn MemoryPool> {
    runtime().memory_pool.clone()
}
