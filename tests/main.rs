//! One integration-test binary (each extra one re-links polars): modules
//! run the real `tiering` binary on generated data and check values.

mod common;
mod e2e;
mod fuzz;
mod hostile;
mod inputs;
mod limits;
mod publish;
mod report;
mod spark;
mod store;
mod tiers;
mod yoy;
