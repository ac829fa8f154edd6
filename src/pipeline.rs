//! One run: ingest → typed Parquet → per-customer base → scores → summaries
//! → invariants → atomic publish with a manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use crate::config::Config;
use crate::engagement;
use crate::error::{Error, Result};
use crate::ingest::{self, Ingested, TableReport};
use crate::io;
use crate::publish::{self, Lock, Snapshot};
use crate::rfm::RfmCuts;
use crate::snapshot::{self, Frames, Scored};

/// A validated run: the configuration as applied plus command-line choices.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub config: Config,
    /// Snapshot date; None → the latest valid transaction date.
    pub as_of: Option<NaiveDate>,
    /// Output root.
    pub out: PathBuf,
    /// Replace an existing snapshot for the same date.
    pub overwrite: bool,
}

/// What a finished run reports back.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub snapshot: PathBuf,
    pub as_of: NaiveDate,
    pub customers: usize,
    pub transactions: usize,
    pub rejected: usize,
}

/// Stage timings in milliseconds, in execution order.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings(pub Vec<(String, u64)>);

impl Timings {
    fn lap(&mut self, stage: &str, since: Instant) -> Instant {
        self.0
            .push((stage.to_string(), since.elapsed().as_millis() as u64));
        Instant::now()
    }
}

/// The manifest written beside the tables.
#[derive(Serialize)]
struct Manifest<'a> {
    tool: &'static str,
    version: &'static str,
    as_of: NaiveDate,
    config: &'a Config,
    inputs: &'a BTreeMap<String, TableReport>,
    unknown_customers: usize,
    rfm: &'a RfmCuts,
    pyramid: PyramidApplied,
    outputs: &'a [io::TableInfo],
    timings_ms: BTreeMap<String, u64>,
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct PyramidApplied {
    mode: String,
    cuts_percent: Vec<f64>,
    labels: Vec<String>,
    /// Contribution range per tier as it came out (the effective cut values).
    tiers: Vec<TierRange>,
}

#[derive(Serialize)]
struct TierRange {
    tier: String,
    customers: i64,
    min_contribution: Option<f64>,
    max_contribution: Option<f64>,
}

fn pyramid_applied(cfg: &Config, summary: &DataFrame) -> Result<PyramidApplied> {
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

/// Peak resident memory of this process so far (Linux), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Writes the typed inputs under `<out>/_ingest/` (each file atomically).
pub fn write_ingested(ing: &mut Ingested, out: &Path) -> Result<PathBuf> {
    let dir = out.join("_ingest");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut tables: Vec<(&str, &mut DataFrame)> = vec![
        ("transactions", &mut ing.transactions),
        ("customers", &mut ing.customers),
    ];
    if let Some(i) = ing.interactions.as_mut() {
        tables.push(("interactions", i));
    }
    for (name, df) in tables {
        let path = dir.join(format!("{name}.parquet"));
        publish::write_atomically(&path, |tmp| io::write_parquet(df, tmp))?;
    }
    Ok(dir)
}

/// Ingest only: validate inputs and write typed Parquet under `<out>/_ingest/`.
pub fn run_ingest(s: &RunSettings) -> Result<(Ingested, PathBuf)> {
    let _lock = Lock::acquire(&s.out)?;
    let mut ing = ingest::ingest(&s.config, s.as_of)?;
    let dir = write_ingested(&mut ing, &s.out)?;
    Ok((ing, dir))
}

/// Validate only: read and check everything, compute, publish nothing.
pub fn run_validate(s: &RunSettings) -> Result<RunOutcome> {
    let ing = ingest::ingest(&s.config, s.as_of)?;
    let frames = Frames {
        transactions: ing.transactions.clone().lazy(),
        customers: ing.customers.clone().lazy(),
        interactions: match &ing.interactions {
            Some(i) => i.clone().lazy(),
            None => engagement::empty_interactions(),
        },
        ..frame_flags(&ing, &s.config)
    };
    let scored = snapshot::compute(&frames, ing.as_of, &s.config)?;
    Ok(outcome(&ing, &scored, PathBuf::new()))
}

/// Which optional inputs the typed frames carry.
fn frame_flags(ing: &Ingested, cfg: &Config) -> Frames {
    Frames {
        transactions: LazyFrame::default(),
        customers: LazyFrame::default(),
        interactions: LazyFrame::default(),
        has_margin: ing.transactions.column("margin_cents").is_ok(),
        has_quantity: ing.transactions.column("quantity").is_ok(),
        attributes: cfg.inputs.customers.attributes.clone(),
    }
}

fn outcome(ing: &Ingested, scored: &Scored, snapshot: PathBuf) -> RunOutcome {
    RunOutcome {
        snapshot,
        as_of: ing.as_of,
        customers: scored.customer_scores.height(),
        transactions: ing.transactions.height(),
        rejected: ing.report.values().map(TableReport::rejected_total).sum(),
    }
}

/// The whole pipeline for one snapshot.
pub fn run(s: &RunSettings) -> Result<RunOutcome> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let _lock = Lock::acquire(&s.out)?;
    if let Some(d) = s.as_of {
        // Fail fast, before any work, when the snapshot exists.
        let target = s.out.join(publish::snapshot_dir_name(d));
        if target.exists() && !s.overwrite {
            return Err(Error::SnapshotExists { path: target });
        }
    }
    let mut ing = ingest::ingest(&s.config, s.as_of)?;
    let t = timings.lap("ingest", t);
    let dir = write_ingested(&mut ing, &s.out)?;
    let t = timings.lap("write_ingest", t);

    let frames = Frames {
        transactions: io::scan_parquet(&dir.join("transactions.parquet"))?,
        customers: io::scan_parquet(&dir.join("customers.parquet"))?,
        interactions: if ing.interactions.is_some() {
            io::scan_parquet(&dir.join("interactions.parquet"))?
        } else {
            engagement::empty_interactions()
        },
        ..frame_flags(&ing, &s.config)
    };
    let mut scored = snapshot::compute(&frames, ing.as_of, &s.config)?;
    let t = timings.lap("score", t);

    let mut snap = Snapshot::begin(&s.out, ing.as_of, s.overwrite)?;
    let bom = s.config.publish.csv_bom;
    for (name, df) in scored.tables() {
        snap.write(&name, df, bom)?;
    }
    snap.write("rejects", &mut ing.rejects, bom)?;
    let t = timings.lap("publish", t);
    let _ = t;

    let manifest = Manifest {
        tool: "tiering",
        version: env!("CARGO_PKG_VERSION"),
        as_of: ing.as_of,
        config: &s.config,
        inputs: &ing.report,
        unknown_customers: scored.unknown_customers,
        rfm: &scored.rfm_cuts,
        pyramid: pyramid_applied(&s.config, &scored.pyramid)?,
        outputs: snap.tables(),
        timings_ms: timings.0.iter().cloned().collect(),
        peak_rss_bytes: peak_rss_bytes(),
    };
    let json = serde_json::to_string_pretty(&manifest)?;
    let path = snap.commit(&json)?;
    Ok(outcome(&ing, &scored, path))
}
