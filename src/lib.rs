//! customer-tiering: turns transaction and interaction extracts into
//! customer grades (RFM, contribution pyramid, churn) published as Parquet
//! and CSV snapshots. `main.rs` only parses arguments and calls [`cli::execute`].

pub mod churn;
pub mod cli;
pub mod concentration;
pub mod config;
pub mod engagement;
pub mod error;
pub mod follow_up;
pub mod generate;
pub mod ingest;
pub mod inspect;
pub mod io;
pub mod lost_deals;
pub mod measures;
pub mod memory;
pub mod migration;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod pyramid;
pub mod report;
pub mod rfm;
pub mod snapshot;
#[cfg(feature = "spark")]
pub mod spark;
pub mod store;
pub mod tiers;

pub use error::{Error, Result};
