//! customer-tiering: turns transaction and interaction extracts into
//! customer grades (RFM, contribution pyramid, churn) published as Parquet
//! and CSV snapshots. `main.rs` only parses arguments and calls [`cli::execute`].

#[cfg(target_os = "linux")]
pub mod alloc;
pub mod cli;
pub mod config;
pub mod contract;
pub mod daily;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod inspect;
pub mod io;
pub mod memory;
pub mod order;
pub mod pipeline;
pub mod plan;
pub mod pool;
pub mod progress;
pub mod publish;
pub mod report;
pub mod scoring;
pub mod snapshot;
#[cfg(feature = "spark")]
pub mod spark;
pub mod store;
pub mod summaries;
#[cfg(test)]
mod testing;
pub mod units;

pub use error::{Error, Result};
