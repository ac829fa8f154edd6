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
use crate::memory;
use crate::publish::{self, Lock, Snapshot};
use crate::rfm::RfmCuts;
use crate::snapshot::{self, Frames, Scored};
use crate::store;

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
    /// Draw progress on the terminal.
    pub progress: bool,
    /// `--memory-limit` in bytes (see [`crate::memory`]).
    pub memory_limit: Option<u64>,
    /// Where the per-customer measures of the snapshot date are computed.
    pub engine: Engine,
    /// Start the typed store (`<out>/_store/`) over from the inputs.
    pub rebuild_store: bool,
}

/// `--engine`: polars (embedded, the default) or a Spark Connect server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Polars,
    Spark {
        remote: String,
    },
}

/// The Spark backend computes the snapshot date's per-customer measures
/// (the plan's `core` table) from the typed Parquet; scoring starts from
/// them. The paths must be ones the Spark server can read.
#[cfg(feature = "spark")]
fn spark_measures(
    mut f: Frames,
    s: &RunSettings,
    remote: &str,
    as_of: NaiveDate,
) -> Result<Frames> {
    use crate::plan::{CORE_COLUMNS, CustomerPlan, Sources};
    let dir = ingest_dir(&s.out);
    let dir = dir.canonicalize().map_err(Error::io(&dir))?;
    let src = Sources {
        transactions: dir.join("transactions.parquet").display().to_string(),
        customers: dir.join("customers.parquet").display().to_string(),
    };
    let plan = CustomerPlan::new(&s.config, as_of, f.has_margin, f.has_quantity);
    let (core_sql, _) = plan.spark_sql(&src)?;
    let t = Instant::now();
    let spark = crate::spark::Spark::connect(remote)?;
    let core = spark.query(&core_sql, CORE_COLUMNS)?;
    tracing::info!(
        ms = t.elapsed().as_millis() as u64,
        rows = core.height(),
        remote,
        "spark computed the measures"
    );
    f.measures_at = Some((as_of, crate::plan::measures_from_core(&core)?));
    Ok(f)
}

#[cfg(not(feature = "spark"))]
fn spark_measures(_: Frames, _: &RunSettings, _: &str, _: NaiveDate) -> Result<Frames> {
    Err(Error::Usage(
        "--engine spark: this build has no Spark backend (build with --features spark)".into(),
    ))
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

    fn last(&self) -> u64 {
        self.0.last().map(|x| x.1).unwrap_or(0)
    }
}

/// The manifest written beside the tables.
#[derive(Serialize)]
struct Manifest<'a> {
    tool: &'static str,
    version: &'static str,
    /// The commit the binary was built from (empty when unknown).
    git_revision: &'static str,
    /// Set for snapshots published by `tiering backfill`.
    #[serde(skip_serializing_if = "Option::is_none")]
    backfill: Option<&'a BackfillInfo>,
    as_of: NaiveDate,
    config: &'a Config,
    inputs: &'a BTreeMap<String, TableReport>,
    /// What the run did to the typed store (absent on the Spark engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'a store::Summary>,
    unknown_customers: usize,
    rfm: &'a RfmCuts,
    pyramid: PyramidApplied,
    migration_compared_to: NaiveDate,
    /// The execution plan and the estimates it was chosen from.
    memory: &'a memory::Plan,
    engine: &'a Engine,
    /// Every invariant checked before publishing (a failed one publishes nothing).
    invariants: &'a [snapshot::Invariant],
    outputs: &'a [io::TableInfo],
    timings_ms: BTreeMap<String, u64>,
    /// Peak resident memory, including input files mapped while reading.
    peak_rss_bytes: Option<u64>,
    /// Peak anonymous memory (sampled every 20 ms): what --memory-limit bounds.
    peak_anon_bytes: u64,
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

/// Where ingest writes the typed inputs.
pub fn ingest_dir(out: &Path) -> PathBuf {
    out.join("_ingest")
}

/// Writes the typed customers and interactions beside the transactions
/// ingest streamed to `<out>/_ingest/` (each file atomically).
pub fn write_ingested(ing: &Ingested, out: &Path) -> Result<PathBuf> {
    let dir = ingest_dir(out);
    let mut tables: Vec<(&str, &DataFrame)> = vec![("customers", &ing.customers)];
    if let Some(i) = ing.interactions.as_ref() {
        tables.push(("interactions", i));
    }
    for (name, df) in tables {
        let path = dir.join(format!("{name}.parquet"));
        // The writer may rechunk, so it gets its own (cheap, shared) copy.
        let mut df = df.clone();
        publish::write_atomically(&path, |tmp| io::write_parquet(&mut df, tmp))?;
    }
    Ok(dir)
}

/// A run's or backfill's inputs as of `as_of`: through the typed store,
/// which ingests only the files it lacks; the Spark engine, which reads
/// `<out>/_ingest/transactions.parquet`, ingests every file there instead.
fn load(s: &RunSettings, as_of: Option<NaiveDate>) -> Result<(Ingested, Option<store::View>)> {
    if matches!(s.engine, Engine::Spark { .. }) {
        let ing = ingest::ingest(&s.config, as_of, &ingest_dir(&s.out))?;
        return Ok((ing, None));
    }
    let view = store::sync(&s.config, &s.out, s.rebuild_store)?;
    std::fs::create_dir_all(ingest_dir(&s.out)).map_err(Error::io(ingest_dir(&s.out)))?;
    let ing = view.ingested(&s.config, as_of)?;
    Ok((ing, Some(view)))
}

/// Ingest only: validate inputs and write typed Parquet under `<out>/_ingest/`.
pub fn run_ingest(s: &RunSettings) -> Result<(Ingested, PathBuf)> {
    let _lock = Lock::acquire(&s.out)?;
    let ing = ingest::ingest(&s.config, s.as_of, &ingest_dir(&s.out))?;
    let dir = write_ingested(&ing, &s.out)?;
    Ok((ing, dir))
}

/// The frames every scoring reads. The daily pre-aggregate is built from
/// the typed transactions Parquet once, so every scoring date (and every
/// backfill snapshot) reuses it.
/// On the lean plan the parts' work files go to a work directory under
/// `work` (removed with the frames).
/// With the `store`, the pre-aggregate comes from its per-file
/// pre-aggregates rather than from the typed rows.
fn frames(
    ing: &Ingested,
    cfg: &Config,
    plan: &memory::Plan,
    work: &Path,
    store: Option<&store::View>,
) -> Result<Frames> {
    let has_margin = ing.transactions.has("margin_cents");
    let has_quantity = ing.transactions.has("quantity");
    let daily = if plan.lean() {
        let by_id = |part: Expr| -> Result<LazyFrame> {
            match store {
                Some(v) => v.daily_by_id(Some(part)),
                None => Ok(crate::measures::daily_by_id(
                    ing.transactions.scan()?.filter(part),
                    has_margin,
                    has_quantity,
                )),
            }
        };
        let parts = snapshot::Parts::build(
            &by_id,
            ing.customers.column("customer_id")?.str()?,
            plan.parts,
            ingest::WorkDir::create_tagged(work, "parts")?,
        )?;
        snapshot::Daily::Parts(std::sync::Arc::new(parts))
    } else {
        let d = match store {
            Some(v) => snapshot::Daily::from_by_id(v.daily_by_id(None)?)?,
            None => snapshot::Daily::in_memory(ing.transactions.scan()?, has_margin, has_quantity)?,
        };
        memory::release_free();
        d
    };
    let mut f = Frames {
        daily,
        customers: ing.customers.clone().lazy(),
        interactions: match &ing.interactions {
            Some(i) => i.clone().lazy(),
            None => engagement::empty_interactions(),
        },
        has_margin,
        has_quantity,
        attributes: cfg.inputs.customers.attributes.clone(),
        measures_at: None,
        frugal: plan.lean(),
    };
    if plan.lean() {
        // Read from work files from here on; see `release_inputs`.
        f.customers = f.keep(ing.customers.clone(), "customers")?;
        if let Some(i) = &ing.interactions {
            f.interactions = f.keep(i.clone(), "interactions")?;
        }
    }
    Ok(f)
}

/// On the lean plan the frames read customers and interactions from work
/// files: the in-memory copies are dropped (10^7 customers' attributes
/// take hundreds of MB). Nothing after scoring reads them.
fn release_inputs(ing: &mut Ingested, plan: &memory::Plan) {
    if plan.lean() {
        ing.customers = DataFrame::empty();
        ing.interactions = None;
        memory::release_free();
    }
}

/// The plan for this run's data and `--memory-limit`.
fn plan(ing: &Ingested, s: &RunSettings, snapshots: usize) -> Result<memory::Plan> {
    let (rows, customers) = (ing.transactions.rows, ing.customers.height());
    let p = match s.memory_limit {
        Some(limit) => memory::choose(rows, customers, snapshots, Some(limit))?,
        None => memory::choose_unlimited(rows, customers, snapshots, memory::default_limit()),
    };
    if p.lean() && s.memory_limit.is_none() {
        tracing::warn!(
            available_mib = p.limit_bytes.unwrap_or(0) >> 20,
            fast_mib = p.fast_estimate_bytes >> 20,
            "the fast plan would not fit in the memory available: lean plan"
        );
    }
    tracing::info!(
        plan = p.plan,
        parts = p.parts,
        estimate_mib = p.estimate_bytes >> 20,
        fast_mib = p.fast_estimate_bytes >> 20,
        "execution plan"
    );
    Ok(p)
}

fn outcome(ing: &Ingested, scored: &Scored, as_of: NaiveDate, snapshot: PathBuf) -> RunOutcome {
    RunOutcome {
        snapshot,
        as_of,
        customers: scored.customer_scores.height(),
        transactions: ing.transactions.rows,
        rejected: ing.report.values().map(TableReport::rejected_total).sum(),
    }
}

/// `tiering plan --emit spark-sql`: the customer-level plan as Spark SQL
/// over `<out>/_ingest/` (written by `tiering ingest` or a run), as of the
/// given date or the latest transaction there.
pub fn emit_plan(s: &RunSettings) -> Result<String> {
    use crate::plan::{CustomerPlan, Sources};
    let dir = ingest_dir(&s.out);
    let path = dir.join("transactions.parquet");
    if !path.exists() {
        return Err(Error::Usage(format!(
            "{}: no typed transactions; run `tiering ingest` with the same --out first",
            path.display()
        )));
    }
    let dir = dir.canonicalize().map_err(Error::io(&dir))?;
    let typed = ingest::typed_file(dir.join("transactions.parquet"))?;
    let as_of = match s.as_of {
        Some(d) => d,
        None => ingest::latest_date(typed.scan()?)?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no transactions; pass --as-of",
                typed.paths[0].display()
            ))
        })?,
    };
    let plan = CustomerPlan::new(
        &s.config,
        as_of,
        typed.has("margin_cents"),
        typed.has("quantity"),
    );
    let src = Sources {
        transactions: typed.paths[0].display().to_string(),
        customers: dir.join("customers.parquet").display().to_string(),
    };
    let (core, buyers) = plan.spark_sql(&src)?;
    Ok(format!(
        "-- tiering {} customer-level plan as of {as_of} (Spark SQL).\n\n-- core: one row per customer (measures, RFM scores, pyramid).\n{core};\n\n-- buyers: per report year, customers who bought and their net amount.\n{buyers};\n",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Validate only: read and check everything, compute, publish nothing.
pub fn run_validate(s: &RunSettings) -> Result<RunOutcome> {
    // Nothing is published: the typed transactions go to a scratch
    // directory removed afterwards.
    let scratch = ingest::WorkDir::create(&std::env::temp_dir())?;
    let mut ing = ingest::ingest(&s.config, s.as_of, scratch.path())?;
    let plan = plan(&ing, s, 1)?;
    let f = frames(&ing, &s.config, &plan, scratch.path(), None)?;
    release_inputs(&mut ing, &plan);
    let scored = snapshot::compute(&f, ing.as_of, &s.config)?;
    Ok(outcome(&ing, &scored, ing.as_of, PathBuf::new()))
}

/// Fails fast, before any work, when a snapshot exists and may not be replaced.
fn refuse_existing(s: &RunSettings, dates: &[NaiveDate]) -> Result<()> {
    for d in dates {
        let target = s.out.join(publish::snapshot_dir_name(*d));
        if target.exists() && !s.overwrite {
            return Err(Error::SnapshotExists { path: target });
        }
    }
    Ok(())
}

/// How a snapshot was made, for its manifest.
struct How<'a> {
    backfill: Option<&'a BackfillInfo>,
    store: Option<&'a store::Summary>,
    plan: &'a memory::Plan,
    sampler: &'a memory::Sampler,
}

/// Writes one snapshot's tables, manifest and `_SUCCESS`, then renames it
/// into place.
fn publish(
    s: &RunSettings,
    ing: &mut Ingested,
    scored: &mut Scored,
    as_of: NaiveDate,
    mut timings: Timings,
    how: &How,
) -> Result<PathBuf> {
    let (backfill, plan, sampler) = (how.backfill, how.plan, how.sampler);
    let t = Instant::now();
    let mut snap = Snapshot::begin(&s.out, as_of, s.overwrite)?;
    let bom = s.config.publish.csv_bom;
    snap.write_with("customer_scores", |dir| {
        scored
            .customer_scores
            .write_table(dir, "customer_scores", bom)
    })?;
    for (name, df) in scored.tables() {
        snap.write(&name, df, bom)?;
    }
    let mut rejects = ing.rejects.clone();
    snap.write("rejects", &mut rejects, bom)?;
    timings.lap("publish", t);
    let mut config = s.config.clone();
    config.as_of = Some(as_of);
    let manifest = Manifest {
        tool: "tiering",
        version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("TIERING_GIT_REV"),
        as_of,
        backfill,
        config: &config,
        inputs: &ing.report,
        store: how.store,
        unknown_customers: scored.unknown_customers,
        rfm: &scored.rfm_cuts,
        pyramid: pyramid_applied(&s.config, &scored.pyramid)?,
        migration_compared_to: scored.migration_compared_to,
        memory: plan,
        engine: &s.engine,
        invariants: &scored.invariants,
        outputs: snap.tables(),
        timings_ms: timings.0.iter().cloned().collect(),
        peak_rss_bytes: memory::peak_rss_bytes(),
        peak_anon_bytes: sampler.peak_bytes(),
    };
    let value = serde_json::to_value(&manifest)?;
    let json = serde_json::to_string_pretty(&value)?;
    let mut tables: BTreeMap<String, DataFrame> = scored
        .tables()
        .into_iter()
        .map(|(n, df)| (n, df.clone()))
        .collect();
    tables.insert("rejects".into(), rejects);
    let html = crate::report::render(&crate::report::ReportInput {
        manifest: &value,
        tables,
    })?;
    snap.write_file("report.html", html.as_bytes())?;
    snap.commit(&json)
}

/// The whole pipeline for one snapshot.
pub fn run(s: &RunSettings) -> Result<RunOutcome> {
    let sampler = memory::Sampler::start();
    let mut timings = Timings::default();
    let t = Instant::now();
    let _lock = Lock::acquire(&s.out)?;
    refuse_existing(s, &s.as_of.into_iter().collect::<Vec<_>>())?;
    let progress = crate::progress::Stages::new(s.progress);
    progress.stage("ingest");
    let (mut ing, store) = load(s, s.as_of)?;
    let t = timings.lap("ingest", t);
    tracing::info!(
        stage = "ingest",
        ms = timings.last(),
        rows = ing.transactions.rows,
        "ingested"
    );
    publish::failpoint("after_ingest");
    progress.stage("score");
    // The typed Parquet is written while scoring starts from the same
    // frames in memory (no second read of what was just written).
    let plan = plan(&ing, s, 1)?;
    let (written, f) = snapshot::both(
        plan.lean(),
        || write_ingested(&ing, &s.out),
        || frames(&ing, &s.config, &plan, &ingest_dir(&s.out), store.as_ref()),
    );
    written?;
    let mut f = f?;
    release_inputs(&mut ing, &plan);
    if let Engine::Spark { remote } = &s.engine {
        f = spark_measures(f, s, remote, ing.as_of)?;
    }
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "typed Parquet written, daily built"
    );
    let mut scored = snapshot::compute_once(&mut f, ing.as_of, &s.config)?;
    timings.lap("score", t);
    tracing::info!(
        stage = "score",
        ms = timings.last(),
        customers = scored.customer_scores.height(),
        "scored"
    );
    publish::failpoint("after_score");

    progress.stage("publish");
    let as_of = ing.as_of;
    let how = How {
        backfill: None,
        store: store.as_ref().map(|v| &v.summary),
        plan: &plan,
        sampler: &sampler,
    };
    let path = publish(s, &mut ing, &mut scored, as_of, timings, &how)?;
    progress.finish();
    tracing::info!(stage = "publish", snapshot = %path.display(), "published");
    Ok(outcome(&ing, &scored, as_of, path))
}

/// How often a backfill publishes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    Month,
    Quarter,
    Year,
    Days(u32),
}

impl std::str::FromStr for Every {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Every, String> {
        match s {
            "month" => Ok(Every::Month),
            "quarter" => Ok(Every::Quarter),
            "year" => Ok(Every::Year),
            _ => s
                .strip_suffix("-days")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .map(Every::Days)
                .ok_or_else(|| format!("'{s}': expected month, quarter, year or N-days")),
        }
    }
}

/// The snapshot dates of a backfill: the month, quarter or year ends in
/// [from, to], or from, from + N, … up to `to`.
pub fn backfill_dates(from: NaiveDate, to: NaiveDate, every: Every) -> Vec<NaiveDate> {
    use chrono::{Datelike, Months};
    let mut out = Vec::new();
    match every {
        Every::Days(n) => {
            let mut d = from;
            while d <= to {
                out.push(d);
                d += chrono::Duration::days(n as i64);
            }
        }
        _ => {
            let step = match every {
                Every::Month => 1,
                Every::Quarter => 3,
                _ => 12,
            };
            // Walk period ends from the first of the month of `from`.
            let mut first = NaiveDate::from_ymd_opt(from.year(), from.month(), 1).unwrap_or(from);
            while first <= to {
                let end = (first + Months::new(1)).pred_opt().unwrap_or(first);
                if end.month().is_multiple_of(step) && end >= from && end <= to {
                    out.push(end);
                }
                first = first + Months::new(1);
            }
        }
    }
    out
}

/// What the manifest of a backfill snapshot records about the backfill.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillInfo {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub every: Every,
    /// Inputs were ingested once, as of `to`.
    pub ingested_as_of: NaiveDate,
}

/// Publishes a snapshot for every date: one ingest (as of the last date),
/// one daily pre-aggregate, snapshots computed in parallel from it.
pub fn backfill(
    s: &RunSettings,
    from: NaiveDate,
    to: NaiveDate,
    every: Every,
) -> Result<Vec<RunOutcome>> {
    use rayon::prelude::*;
    let dates = backfill_dates(from, to, every);
    if dates.is_empty() {
        return Err(Error::Usage(format!(
            "no {every:?} end between {from} and {to}"
        )));
    }
    let last = *dates.last().unwrap_or(&to);
    let sampler = memory::Sampler::start();
    let _lock = Lock::acquire(&s.out)?;
    refuse_existing(s, &dates)?;
    let t = Instant::now();
    let (mut ing, store) = load(s, Some(last))?;
    write_ingested(&ing, &s.out)?;
    // The fast plan scores two snapshots at a time (see below).
    let plan = plan(&ing, s, dates.len().min(2))?;
    let f = frames(&ing, &s.config, &plan, &ingest_dir(&s.out), store.as_ref())?;
    release_inputs(&mut ing, &plan);
    let mut base = Timings::default();
    base.lap("ingest", t);
    let info = BackfillInfo {
        from,
        to,
        every,
        ingested_as_of: last,
    };
    let bar = crate::progress::bar(s.progress, dates.len() as u64, "snapshots");
    let how = How {
        backfill: Some(&info),
        store: store.as_ref().map(|v| &v.summary),
        plan: &plan,
        sampler: &sampler,
    };
    let copy = |d: NaiveDate| Ingested {
        transactions: ing.transactions.clone(),
        customers: DataFrame::empty(),
        interactions: None,
        rejects: ing.rejects.clone(),
        report: ing.report.clone(),
        as_of: d,
    };
    let outcome = |d: NaiveDate, path: PathBuf, scored: &Scored| RunOutcome {
        snapshot: path,
        as_of: d,
        customers: scored.customer_scores.height(),
        transactions: ing.transactions.rows,
        rejected: ing.report.values().map(TableReport::rejected_total).sum(),
    };
    if plan.lean() {
        // One snapshot at a time, each scored on its own: nothing is shared
        // across dates, so only one snapshot's frames are ever held.
        let mut done = Vec::new();
        for d in dates {
            let t = Instant::now();
            let mut timings = base.clone();
            let mut scored = snapshot::compute(&f, d, &s.config)?;
            timings.lap("score", t);
            let path = publish(s, &mut copy(d), &mut scored, d, timings, &how)?;
            bar.inc(1);
            tracing::info!(snapshot = %path.display(), "published");
            done.push(outcome(d, path, &scored));
        }
        bar.finish_and_clear();
        return Ok(done);
    }
    // Every auxiliary tiering (concentration year ends, migration dates)
    // once for the whole backfill; an auxiliary date that is also a
    // snapshot date takes that snapshot's scoring, narrowed to what the
    // later snapshots read. Snapshots go two at a time in date order (an
    // auxiliary date is never after its snapshot), so two full scorings
    // are held at once, not all of them.
    let t = Instant::now();
    let needed: Vec<snapshot::AuxKey> = dates
        .iter()
        .flat_map(|d| snapshot::aux_needed(*d, &s.config))
        .collect();
    let mut keys: Vec<snapshot::AuxKey> = needed
        .iter()
        .filter(|(d, _)| !dates.contains(d))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    let mut aux = snapshot::aux_tierings(&f, &keys, &s.config)?;
    base.lap("auxiliary", t);
    let mut done = Vec::new();
    for pair in dates.chunks(2) {
        let t = Instant::now();
        let fulls = pair
            .par_iter()
            .map(|d| snapshot::scores_as_of(&f, *d, &s.config))
            .collect::<Result<Vec<snapshot::Full>>>()?;
        for (d, full) in pair.iter().zip(&fulls) {
            for (kd, scheme) in needed.iter().filter(|(kd, _)| kd == d) {
                let narrowed = snapshot::as_tiering(full, &s.config, scheme)?;
                aux.insert((*kd, scheme.clone()), narrowed.lazy());
            }
        }
        let scoring = t.elapsed();
        let results: Vec<Result<RunOutcome>> = pair
            .par_iter()
            .zip(fulls)
            .map(|(d, full)| {
                let t = Instant::now();
                let mut timings = base.clone();
                timings.0.push(("score".into(), scoring.as_millis() as u64));
                let from = snapshot::from_daily(&f, *d, &s.config)?;
                let mut scored = snapshot::compute_with(&f, *d, &s.config, full, &aux, from)?;
                timings.lap("summaries", t);
                let path = publish(s, &mut copy(*d), &mut scored, *d, timings, &how)?;
                bar.inc(1);
                tracing::info!(snapshot = %path.display(), "published");
                Ok(outcome(*d, path, &scored))
            })
            .collect();
        for r in results {
            done.push(r?);
        }
    }
    bar.finish_and_clear();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn backfill_dates_per_period() {
        let q = backfill_dates(d(2009, 3, 31), d(2010, 12, 31), Every::Quarter);
        assert_eq!(q.len(), 8);
        assert_eq!((q[0], q[7]), (d(2009, 3, 31), d(2010, 12, 31)));
        assert_eq!(q[1], d(2009, 6, 30));
        let m = backfill_dates(d(2010, 1, 15), d(2010, 4, 30), Every::Month);
        assert_eq!(
            m,
            vec![
                d(2010, 1, 31),
                d(2010, 2, 28),
                d(2010, 3, 31),
                d(2010, 4, 30)
            ]
        );
        let y = backfill_dates(d(2008, 6, 1), d(2010, 12, 31), Every::Year);
        assert_eq!(y, vec![d(2008, 12, 31), d(2009, 12, 31), d(2010, 12, 31)]);
        let n = backfill_dates(d(2010, 1, 1), d(2010, 1, 20), Every::Days(7));
        assert_eq!(n, vec![d(2010, 1, 1), d(2010, 1, 8), d(2010, 1, 15)]);
        assert_eq!("10-days".parse::<Every>(), Ok(Every::Days(10)));
        assert!("weekly".parse::<Every>().is_err());
    }
}
