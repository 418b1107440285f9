//! The end-to-end tests on local files, as one test binary: each test runs
//! the real `shoplake` binary (or the library, for the property and
//! adoption tests) and reads the tables back. One binary because each links
//! all of deltalake and DataFusion: six separate ones cost about a minute
//! of linking each on the 2-core build machine.
//!
//! Run one group with a filter: `cargo test --test local hardening::`.

mod adoption;
mod audit;
mod cli;
mod common;
mod conventions;
mod erase;
mod evolution;
mod exported;
mod exports;
mod features;
mod foreign;
mod framing;
mod groups;
mod hardening;
mod jsonl;
mod lake;
mod loader;
mod memory;
mod operations;
mod pii;
mod property;
mod purge;
mod registration;
mod rerun;
mod tables;
