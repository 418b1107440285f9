//! shoplake loads daily exports into Delta Lake tables, idempotently, one
//! Delta version per load; each table is a definition read at run time
//! (`tables/<name>/`, [`definition`]), `shopify_configuration` the first.
//!
//! Data flows one way, one module per stage: [`source`] → [`read`] →
//! [`transform`] → [`validate`] → [`check`] → [`write`] → [`report`]
//! (and [`metrics`]), orchestrated by [`ingest`] (and [`backfill`] for
//! ranges). A table's columns, rules and checks come from its definition;
//! where it lives from [`target`].

pub mod audit;
pub mod backfill;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod definition;
pub mod erasure;
pub mod error;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod lineage;
pub mod metastore;
pub mod metrics;
pub mod output;
pub mod pii;
pub mod read;
pub mod rejects;
pub mod report;
pub mod row_hash;
pub mod schema;
pub mod session;
pub mod source;
pub mod spill;
pub mod storage;
pub mod table;
pub mod target;
pub mod testing;
pub mod transform;
pub mod validate;
pub mod write;

pub use error::{Error, Kind, Result, Stage};
