//! shoplake loads daily Shopify configuration exports into the Delta Lake
//! table `shopify_configuration`, idempotently, one Delta version per load.
//!
//! Data flows one way, one module per stage: [`source`] → [`read`] →
//! [`transform`] → [`validate`] → [`check`] → [`write`] → [`report`]
//! (and [`metrics`]), orchestrated by [`ingest`] (and [`backfill`] for
//! ranges). The table's columns, rules and checks come from [`definition`]
//! (`tables/shopify_configuration/`).

pub mod audit;
pub mod backfill;
pub mod check;
pub mod cli;
pub mod definition;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod metrics;
pub mod output;
pub mod read;
pub mod rejects;
pub mod report;
pub mod row_hash;
pub mod source;
pub mod storage;
pub mod testing;
pub mod transform;
pub mod validate;
pub mod write;

pub use error::{Error, Kind, Result, Stage};
