//! `manifest.json`: what a snapshot was computed from and how (inputs,
//! store, cuts applied, plan, invariants, outputs, timings, memory).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::ingest::TableReport;
use crate::io;
use crate::memory;
use crate::pipeline::Engine;
use crate::pipeline::backfill::BackfillInfo;
use crate::scoring::rfm::RfmCuts;
use crate::snapshot::{self};
use crate::store;

/// The manifest written beside the tables.
#[derive(Serialize)]
pub(super) struct Manifest<'a> {
    pub(super) tool: &'static str,
    pub(super) version: &'static str,
    /// The commit the binary was built from (empty when unknown).
    pub(super) git_revision: &'static str,
    /// Set for snapshots published by `tiering backfill`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) backfill: Option<&'a BackfillInfo>,
    pub(super) as_of: NaiveDate,
    pub(super) config: &'a Config,
    pub(super) inputs: &'a BTreeMap<String, TableReport>,
    /// What the run did to the typed store (absent on the Spark engine
    /// unless `[spark] store = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) store: Option<&'a store::Summary>,
    pub(super) unknown_customers: usize,
    pub(super) rfm: &'a RfmCuts,
    pub(super) pyramid: PyramidApplied,
    pub(super) migration_compared_to: NaiveDate,
    /// The execution plan and the estimates it was chosen from.
    pub(super) memory: &'a memory::Plan,
    pub(super) engine: &'a Engine,
    /// Transaction rows this process read, from the input files or the
    /// store (0 on the Spark engine: Spark read them; with `[spark] store =
    /// true`, the rows the store read: `store.rows_read`).
    pub(super) transaction_rows_read_locally: usize,
    /// Every invariant checked before publishing (a failed one publishes nothing).
    pub(super) invariants: &'a [snapshot::Invariant],
    pub(super) outputs: &'a [io::TableInfo],
    pub(super) timings_ms: BTreeMap<String, u64>,
    /// Peak resident memory, including input files mapped while reading.
    pub(super) peak_rss_bytes: Option<u64>,
    /// Peak anonymous memory (sampled every 20 ms): what --memory-limit bounds.
    pub(super) peak_anon_bytes: u64,
}

#[derive(Serialize)]
pub(super) struct PyramidApplied {
    mode: String,
    cuts_percent: Vec<f64>,
    labels: Vec<String>,
    /// Contribution range per tier as it came out (the effective cut values).
    tiers: Vec<TierRange>,
}

#[derive(Serialize)]
pub(super) struct TierRange {
    tier: String,
    customers: i64,
    min_contribution: Option<f64>,
    max_contribution: Option<f64>,
}

pub(super) fn pyramid_applied(cfg: &Config, summary: &DataFrame) -> Result<PyramidApplied> {
    let tiers = summary.column("pyramid_tier")?.str()?;
    let n = summary.column("customers")?.i64()?;
    let lo = summary.column("min_contribution")?.f64()?;
    let hi = summary.column("max_contribution")?.f64()?;
    let mut out = Vec::new();
    for i in 0..summary.height() {
        out.push(TierRange {
            tier: tiers.get(i).unwrap_or_default().to_string(),
            customers: n.get(i).unwrap_or(0),
            min_contribution: lo.get(i),
            max_contribution: hi.get(i),
        });
    }
    Ok(PyramidApplied {
        mode: format!("{:?}", cfg.pyramid.mode),
        cuts_percent: cfg.pyramid.cuts().to_vec(),
        labels: cfg.pyramid.labels(),
        tiers: out,
    })
}
