//! One snapshot's tables from typed inputs: the per-customer base, every
//! scoring stage, the summaries and the invariants checked before publish.

use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::rfm::{self, RfmCuts};
use crate::{churn, concentration, engagement, follow_up, lost_deals, measures, migration};
use crate::{pyramid, tiers};

/// The customer × day pre-aggregate of transactions ([`measures::daily`]).
#[derive(Clone)]
pub enum Daily {
    /// Built once and held (the fast plan), with its customer keys
    /// ([`measures::customer_keys`]).
    Memory { daily: DataFrame, keys: DataFrame },
    /// Built once per customer range and spilled to Parquet (the lean plan:
    /// memory for one part at a time).
    Parts(Arc<Parts>),
    /// The fast plan's, let go after its last reader ([`compute_once`]);
    /// reading it again is a bug.
    Released,
}

impl Daily {
    /// The fast plan's pre-aggregate of `txns`, built and held.
    pub fn in_memory(txns: LazyFrame, has_margin: bool, has_quantity: bool) -> Result<Daily> {
        // The keys from their own scan (of one column): deriving them from
        // a held pre-aggregate would hold it twice for a moment.
        let keys = measures::customer_keys(txns.clone()).run()?;
        let daily = measures::daily(txns, keys.clone().lazy(), has_margin, has_quantity).run()?;
        Ok(Daily::Memory { daily, keys })
    }

    /// The fast plan's pre-aggregate from one already keyed by customer_id
    /// ([`measures::daily_by_id`]; the store's), built and held.
    pub fn from_by_id(by_id: LazyFrame) -> Result<Daily> {
        let keys = measures::customer_keys(by_id.clone()).run()?;
        let daily = measures::keyed(by_id, keys.clone().lazy()).run()?;
        Ok(Daily::Memory { daily, keys })
    }
}

/// The lean plan's customer parts: contiguous customer_id ranges
/// ([`measures::id_range`]), each with its pre-aggregate and customer keys
/// in work files.
/// Per-customer frames of a snapshot are spilled there too.
pub struct Parts {
    /// Lower bounds of parts 1.. (part 0 starts below every id).
    bounds: Vec<String>,
    dir: crate::ingest::WorkDir,
}

impl Parts {
    /// Cuts the customers into `parts` ranges by the ids of the customers
    /// table and spills each range's pre-aggregate: `by_id` gives the
    /// pre-aggregate keyed by customer_id ([`measures::daily_by_id`]) of
    /// the customers a filter selects (one filtered scan per part, of the
    /// typed transactions or of the store's pre-aggregates).
    pub fn build(
        by_id: &dyn Fn(Expr) -> Result<LazyFrame>,
        customer_ids: &StringChunked,
        parts: u32,
        dir: crate::ingest::WorkDir,
    ) -> Result<Parts> {
        let p = Parts {
            bounds: measures::range_bounds(customer_ids, parts),
            dir,
        };
        for i in 0..p.count() {
            // The part's pre-aggregate is held while its keys are taken
            // from it.
            let by_id = by_id(p.filter(i))?.run()?;
            let mut keys = measures::customer_keys(by_id.clone().lazy()).run()?;
            let mut daily = measures::keyed(by_id.lazy(), keys.clone().lazy()).run()?;
            crate::io::write_spill(&mut keys, &p.keys_path(i))?;
            crate::io::write_spill(&mut daily, &p.daily_path(i))?;
            drop((keys, daily));
            crate::memory::release_free();
        }
        Ok(p)
    }

    /// How many parts (fewer than asked when there are fewer customers).
    pub fn count(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The customers of part `i`.
    pub fn filter(&self, i: usize) -> Expr {
        let lo = i.checked_sub(1).map(|j| self.bounds[j].as_str());
        measures::id_range(lo, self.bounds.get(i).map(String::as_str))
    }

    fn daily_path(&self, i: usize) -> std::path::PathBuf {
        self.work_file(&format!("daily-{i}"))
    }

    fn keys_path(&self, i: usize) -> std::path::PathBuf {
        self.work_file(&format!("keys-{i}"))
    }

    /// The work file `<name>.parquet`.
    fn work_file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.parquet"))
    }

    fn daily(&self, i: usize) -> Result<LazyFrame> {
        crate::io::scan_parquet(&self.daily_path(i))
    }

    fn keys(&self, i: usize) -> Result<LazyFrame> {
        crate::io::scan_parquet(&self.keys_path(i))
    }
}

/// The typed inputs, as lazy frames (from memory or from `_ingest/`).
#[derive(Clone)]
pub struct Frames {
    pub daily: Daily,
    pub customers: LazyFrame,
    /// Empty (with the canonical schema) when there is no interactions input.
    pub interactions: LazyFrame,
    pub has_margin: bool,
    pub has_quantity: bool,
    /// Customer attribute columns configured in the customers input.
    pub attributes: Vec<String>,
    /// Per-customer measures computed elsewhere (the Spark backend) for one
    /// date; scorings at that date use them instead of `daily`.
    pub measures_at: Option<(NaiveDate, DataFrame)>,
    /// Hand freed memory back to the system between steps (the lean plan,
    /// a single run: see [`Frames::release_free`]).
    pub frugal: bool,
}

/// Per-customer measures as of `date` ([`measures::measures_from_daily`]),
/// or those provided for that date.
/// Without `gaps` the median gap is left null (pyramid-only tierings).
pub fn measures_as_of(f: &Frames, date: NaiveDate, cfg: &Config, gaps: bool) -> Result<LazyFrame> {
    if let Some((_, m)) = f.measures_at.as_ref().filter(|(d, _)| *d == date) {
        return Ok(m.clone().lazy());
    }
    f.per_customer(|d, keys| measures_query(f, d, keys, date, cfg, gaps))
}

fn measures_query(
    f: &Frames,
    d: LazyFrame,
    keys: LazyFrame,
    date: NaiveDate,
    cfg: &Config,
    gaps: bool,
) -> LazyFrame {
    measures::measures_with_gaps(
        d,
        keys,
        date,
        &cfg.measures,
        f.has_margin,
        f.has_quantity,
        gaps,
    )
}

impl Frames {
    /// `q` over the customer × day pre-aggregate and its customer keys
    /// ([`measures::customer_keys`]). `q` must keep customers apart (group
    /// by customer, or filter rows): on the lean plan it runs once per part
    /// and the results are stacked, which is then exact.
    pub fn per_customer(&self, q: impl Fn(LazyFrame, LazyFrame) -> LazyFrame) -> Result<LazyFrame> {
        self.per_part(|d, keys, _| q(d, keys))
    }

    /// As [`Frames::per_customer`], with the part's customer filter (`None`
    /// on the fast plan) for the other inputs `q` joins.
    pub fn per_part(
        &self,
        q: impl Fn(LazyFrame, LazyFrame, Option<Expr>) -> LazyFrame,
    ) -> Result<LazyFrame> {
        match &self.daily {
            Daily::Memory { daily, keys } => Ok(q(daily.clone().lazy(), keys.clone().lazy(), None)),
            Daily::Released => Err(Error::Invariant(
                "the pre-aggregate was read after it was released".into(),
            )),
            Daily::Parts(p) => {
                let mut done = Vec::new();
                for i in 0..p.count() {
                    done.push(q(p.daily(i)?, p.keys(i)?, Some(p.filter(i))).run()?.lazy());
                }
                Ok(concat(done, UnionArgs::default())?)
            }
        }
    }

    /// `df` as a query: in memory on the fast plan; on the lean plan
    /// spilled to a work file `name` (unique among those kept) and scanned.
    pub fn keep(&self, mut df: DataFrame, name: &str) -> Result<LazyFrame> {
        match &self.daily {
            Daily::Memory { .. } | Daily::Released => Ok(df.lazy()),
            Daily::Parts(p) => {
                let path = p.work_file(name);
                crate::io::write_spill(&mut df, &path)?;
                crate::io::scan_parquet(&path)
            }
        }
    }

    /// `lf` computed once: collected on the fast plan; on the lean plan
    /// streamed into a work file `name` (unique among those kept) and
    /// scanned, never whole in memory.
    pub fn materialize(&self, lf: LazyFrame, name: &str) -> Result<LazyFrame> {
        match &self.daily {
            Daily::Memory { .. } | Daily::Released => Ok(lf.run()?.lazy()),
            Daily::Parts(p) => {
                let path = p.work_file(name);
                crate::io::sink_parquet(lf, &path, true)?;
                crate::io::scan_parquet(&path)
            }
        }
    }

    /// Removes the work file `name` of [`Frames::keep`] or
    /// [`Frames::materialize`] once nothing reads it (a long backfill on
    /// the lean plan would otherwise keep every snapshot's).
    pub fn discard(&self, name: &str) -> Result<()> {
        if let Daily::Parts(p) = &self.daily {
            let path = p.work_file(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
        Ok(())
    }

    /// Returns the memory the allocator holds free to the system when
    /// frugal: it lowers the peak a later step would otherwise add on top
    /// of, but the pages are faulted back in when used again (a backfill,
    /// which is timed rather than held to a memory target, skips it: it
    /// cost its 8 snapshots ~3 s of system time).
    pub fn release_free(&self) {
        if self.frugal {
            crate::memory::release_free();
        }
    }

    fn customers_in(&self, part: Option<Expr>) -> LazyFrame {
        filtered(self.customers.clone(), part)
    }
}

fn filtered(lf: LazyFrame, part: Option<Expr>) -> LazyFrame {
    match part {
        Some(p) => lf.filter(p),
        None => lf,
    }
}

/// `a` and `b` together: in parallel, or one after the other on the lean plan.
pub fn both<A: Send, B: Send>(
    lean: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if lean { (a(), b()) } else { rayon::join(a, b) }
}

/// Published columns of `customer_scores` that every run has, in order.
/// The engagement columns ([`engagement::COUNT_COLUMNS`], `DATE_COLUMNS`,
/// `days_since_contact`), attributes and scheme columns follow them.
pub const BASE_COLUMNS: &[&str] = &[
    "customer_id",
    "region",
    "industry",
    "name",
    "segment",
    "sales_rep",
    "in_scope",
    "first_purchase",
    "last_purchase",
    "recency_days",
    "frequency",
    "monetary",
    "revenue",
    "tenure_days",
    "units_bought",
    "r_score",
    "f_score",
    "m_score",
    "rfm_code",
    "rfm_segment",
    "contribution",
    "contribution_rank",
    "cum_contribution_share",
    "pyramid_tier",
    "contribution_nonpositive",
    "median_gap_days",
    "sleeping_after_days",
    "lost_after_days",
    "churn_status",
    "window_spend",
    "window_spend_prior",
    "declining",
];

/// Integer-cent columns kept beside `customer_scores` for exact summaries.
pub const CENTS_COLUMNS: &[&str] = &[
    "monetary_cents",
    "revenue_cents",
    "contribution_cents",
    "window_spend_cents",
    "window_spend_prior_cents",
];

/// Follow-up columns, after the tier scheme columns.
pub const FOLLOW_UP_COLUMNS: &[&str] = &[
    "call_every_days",
    "visit_every_days",
    "overdue_contact",
    "days_overdue",
    "contact_overdue",
];

fn money(cents: &str) -> Expr {
    measures::cents_to_units(col(cents)).alias(cents.trim_end_matches("_cents"))
}

/// The per-customer base as of `as_of`: measures, customer attributes and
/// engagement, one row per customer.
pub fn base(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<LazyFrame> {
    let m = measures_as_of(f, as_of, cfg, true)?;
    Ok(base_in(f, m, None, as_of, cfg))
}

/// The base of the customers in `part` (all with `None`) from their measures.
fn base_in(
    f: &Frames,
    m: LazyFrame,
    part: Option<Expr>,
    as_of: NaiveDate,
    cfg: &Config,
) -> LazyFrame {
    let b = measures::customer_base(m, f.customers_in(part.clone()), &cfg.ingest.unknown_label);
    let e = engagement::customer_engagement(
        filtered(f.interactions.clone(), part),
        as_of,
        cfg.measures.window_days,
        &cfg.measures.converted_outcomes,
    );
    engagement::join_engagement(b, e)
}

/// The columns scored over the whole in-scope population rather than row
/// by row: the RFM scores, the segment (a rule may compare a score with its
/// population mean, as the Chinese eight classes do) and the contribution
/// pyramid.
pub const RANKED_COLUMNS: &[&str] = &[
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "contribution_rank",
    "cum_contribution_share",
    "pyramid_tier",
    "contribution_nonpositive",
];

/// What [`rank`] reads from the base.
const RANK_INPUTS: &[&str] = &[
    "customer_id",
    "in_scope",
    "recency_days",
    "frequency",
    "monetary_cents",
    "contribution_cents",
];

/// Adds [`RANKED_COLUMNS`] to a base of the whole population.
pub fn rank(base: LazyFrame, cfg: &Config) -> Result<LazyFrame> {
    let rules = rfm::rules(&cfg.rfm);
    let scored = base
        .with_columns(rfm::score_exprs(&cfg.rfm))
        .with_column(rfm::segment_expr(&rules).alias("rfm_segment"));
    pyramid::assign(scored, &cfg.pyramid)
}

/// Every scoring stage on the base; keeps the cent columns; rows in no
/// particular order (see [`sorted_by_id`]).
pub fn score(
    base: LazyFrame,
    as_of: NaiveDate,
    cfg: &Config,
    attributes: &[String],
) -> Result<LazyFrame> {
    finish(rank(base, cfg)?, as_of, cfg, attributes)
}

/// The row-by-row scoring stages on a ranked base (any subset of the
/// customers: nothing here looks across rows); rows in no particular order.
fn finish(
    ranked: LazyFrame,
    as_of: NaiveDate,
    cfg: &Config,
    attributes: &[String],
) -> Result<LazyFrame> {
    let mut lf = ranked
        .with_columns([
            rfm::rfm_code(cfg.rfm.bins).alias("rfm_code"),
            churn::sleeping_after(&cfg.churn).alias("sleeping_after_days"),
            churn::lost_after(&cfg.churn).alias("lost_after_days"),
            churn::declining(cfg.churn.declining_drop).alias("declining"),
        ])
        .with_column(churn::status().alias("churn_status"))
        .with_columns([
            money("monetary_cents"),
            money("contribution_cents"),
            money("revenue_cents"),
            money("window_spend_cents"),
            money("window_spend_prior_cents"),
        ]);
    let available: Vec<String> = lf
        .collect_schema()?
        .iter_names()
        .filter(|n| !n.starts_with("__") && !n.ends_with("_cents"))
        .map(|n| n.to_string())
        .collect();
    let mut select: Vec<Expr> = BASE_COLUMNS
        .iter()
        .chain(engagement::COUNT_COLUMNS)
        .chain(engagement::DATE_COLUMNS)
        .chain(&["days_since_contact"])
        .map(|c| col(*c))
        .collect();
    select.extend(attributes.iter().map(|a| col(a.as_str())));
    for t in &cfg.threshold_tiers {
        let exprs = tiers::threshold_exprs(t, &available)?;
        lf = lf.with_columns(exprs);
        select.push(col(format!("{}_value", t.name)));
        select.push(col(format!("{}_tier", t.name)));
    }
    for s in &cfg.scorecards {
        let (dims, totals) = tiers::scorecard_exprs(s, &available)?;
        lf = lf.with_columns(dims).with_columns(totals);
        for d in tiers::dimensions(s) {
            select.push(col(tiers::dimension_column(s, &d)));
        }
        select.push(col(format!("{}_points", s.name)));
        select.push(col(format!("{}_tier", s.name)));
    }
    let follow = scheme(cfg, &cfg.follow_up.tier)?;
    lf = lf
        .with_columns(follow_up::cadence_exprs(&cfg.follow_up, &follow))
        .with_columns(follow_up::overdue_exprs(as_of));
    select.extend(FOLLOW_UP_COLUMNS.iter().map(|c| col(*c)));
    select.extend(CENTS_COLUMNS.iter().map(|c| col(*c)));
    Ok(lf.select(select))
}

/// A scoring's rows in customer_id order (ids are unique), reordered eight
/// columns at a time: polars' sort gathers every column into a new frame
/// while the old one is held, which at 10^6 customers was the run's memory
/// peak (~500 MB over the rest); this takes as long (~0.4 s). `frugal`
/// returns the replaced columns' memory as it goes
/// ([`Frames::release_free`]).
pub fn sorted_by_id(mut df: DataFrame, frugal: bool) -> Result<DataFrame> {
    use rayon::prelude::*;
    let order = df.column("customer_id")?.arg_sort(SortOptions::default());
    // SAFETY: a permutation keeps every column's name, type and length.
    let columns = unsafe { df.columns_mut_retain_schema() };
    for group in columns.chunks_mut(8) {
        group.par_iter_mut().try_for_each(|c| -> Result<()> {
            // One chunk first: gathering across chunks looks up each row's
            // chunk.
            *c = c.rechunk().take(&order)?;
            Ok(())
        })?;
        if frugal {
            crate::memory::release_free();
        }
    }
    Ok(df)
}

/// Every scored customer as of `as_of`, with the cent columns.
pub fn scores_as_of(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<Full> {
    match &f.daily {
        Daily::Parts(p) if f.measures_at.is_none() => scores_by_part(f, p, as_of, cfg),
        _ => Ok(Full::Memory(sorted_by_id(
            score(base(f, as_of, cfg)?, as_of, cfg, &f.attributes)?.run()?,
            f.frugal,
        )?)),
    }
}

/// The lean plan's scoring: each part's base is built and spilled, the
/// RFM scores and the pyramid are ranked over the whole population from
/// a narrow frame, then each part is finished and spilled in customer_id
/// order. Only one part's frames (and the narrow ranking) are in memory.
fn scores_by_part(f: &Frames, p: &Parts, as_of: NaiveDate, cfg: &Config) -> Result<Full> {
    let dir = p.dir.path().join(format!("scores-{as_of}"));
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let mut spilled = Spilled {
        dir,
        parts: p.count(),
        rows: 0,
        non_ascii: false,
        hide: Vec::new(),
    };
    let mut narrow = Vec::new();
    for i in 0..p.count() {
        let m = measures_query(f, p.daily(i)?, p.keys(i)?, as_of, cfg, true);
        let mut b = base_in(f, m, Some(p.filter(i)), as_of, cfg).run()?;
        narrow.push(b.select(RANK_INPUTS.iter().copied())?.lazy());
        crate::io::write_spill(&mut b, &spilled.path("base", i))?;
        crate::memory::release_free();
    }
    let mut keep = vec![col("customer_id")];
    keep.extend(RANKED_COLUMNS.iter().map(|c| col(*c)));
    let ranked = rank(concat(narrow, UnionArgs::default())?, cfg)?
        .select(keep)
        .run()?;
    for i in 0..p.count() {
        let base = spilled.path("base", i);
        let ranks = ranked.clone().lazy().filter(p.filter(i));
        let b = crate::io::scan_parquet(&base)?.join(
            ranks,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        );
        let mut full = sorted_by_id(finish(b, as_of, cfg, &f.attributes)?.run()?, f.frugal)?;
        spilled.rows += full.height();
        spilled.non_ascii |= crate::io::has_non_ascii_text(&full);
        crate::io::write_spill(&mut full, &spilled.path("scores", i))?;
        std::fs::remove_file(&base).map_err(Error::io(&base))?;
        crate::memory::release_free();
    }
    Ok(Full::Spilled(spilled))
}

/// A snapshot's full scoring (one row per customer, customer_id order):
/// in memory on the fast plan, spilled part by part on the lean plan.
pub enum Full {
    Memory(DataFrame),
    Spilled(Spilled),
}

/// Parquet work files `scores-<i>.parquet`, one per part, in customer_id
/// order; removed when dropped.
pub struct Spilled {
    dir: std::path::PathBuf,
    parts: usize,
    rows: usize,
    /// Any non-ASCII text (the CSV's BOM default).
    non_ascii: bool,
    /// Columns left out when published.
    hide: Vec<&'static str>,
}

impl Spilled {
    fn path(&self, what: &str, i: usize) -> std::path::PathBuf {
        self.dir.join(format!("{what}-{i}.parquet"))
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Full {
    pub fn height(&self) -> usize {
        match self {
            Full::Memory(df) => df.height(),
            Full::Spilled(s) => s.rows,
        }
    }

    /// Every row, as a query (a scan of the parts when spilled).
    pub fn lazy(&self) -> Result<LazyFrame> {
        match self {
            Full::Memory(df) => Ok(df.clone().lazy()),
            Full::Spilled(s) => {
                let parts = (0..s.parts)
                    .map(|i| crate::io::scan_parquet(&s.path("scores", i)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(concat(parts, UnionArgs::default())?)
            }
        }
    }

    /// The published `customer_scores`: without the cent columns.
    fn published(self) -> Result<Full> {
        Ok(match self {
            Full::Memory(df) => Full::Memory(df.drop_many(CENTS_COLUMNS.iter().copied())),
            Full::Spilled(mut s) => {
                s.hide = CENTS_COLUMNS.to_vec();
                Full::Spilled(s)
            }
        })
    }

    /// Writes the table (see [`crate::io::write_table`]), part after part
    /// when spilled.
    pub fn write_table(
        &mut self,
        dir: &std::path::Path,
        name: &str,
        bom: Option<bool>,
    ) -> Result<crate::io::TableInfo> {
        let s = match self {
            Full::Memory(df) => return crate::io::write_table(df, dir, name, bom),
            Full::Spilled(s) => s,
        };
        let bom = bom.unwrap_or(s.non_ascii);
        let mut w: Option<crate::io::TableWriter> = None;
        for i in 0..s.parts {
            let df = crate::io::scan_parquet(&s.path("scores", i))?
                .run()?
                .drop_many(s.hide.iter().copied());
            let w = match &mut w {
                Some(w) => w,
                None => w.insert(crate::io::TableWriter::create(
                    dir,
                    name,
                    &df.schema().clone(),
                    bom,
                )?),
            };
            w.push(df)?;
        }
        match w {
            Some(w) => w.finish(),
            None => Err(Error::Invariant(format!("{name}: no parts"))),
        }
    }
}

/// A tier scheme: its column in `customer_scores` and its labels, best first.
#[derive(Debug, Clone)]
pub struct TierScheme {
    pub name: String,
    pub column: String,
    pub labels: Vec<String>,
}

/// Every tier scheme of the configuration, pyramid first.
pub fn tier_schemes(cfg: &Config) -> Vec<TierScheme> {
    let mut v = vec![TierScheme {
        name: "pyramid".into(),
        column: "pyramid_tier".into(),
        labels: cfg.pyramid.labels(),
    }];
    for t in &cfg.threshold_tiers {
        v.push(TierScheme {
            name: t.name.clone(),
            column: format!("{}_tier", t.name),
            labels: tiers::threshold_labels(t),
        });
    }
    for s in &cfg.scorecards {
        v.push(TierScheme {
            name: s.name.clone(),
            column: format!("{}_tier", s.name),
            labels: tiers::scorecard_labels(s),
        });
    }
    v
}

/// The scheme called `name` (validated in the configuration).
pub fn scheme(cfg: &Config, name: &str) -> Result<TierScheme> {
    tier_schemes(cfg)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::invalid("tier", format!("unknown tier scheme '{name}'")))
}

/// `tier_summary`: per scheme and tier (in label order), customers,
/// customer share, revenue and revenue share among customers with a tier.
pub fn tier_summary(full: LazyFrame, schemes: &[TierScheme]) -> Result<DataFrame> {
    let mut parts = Vec::new();
    for s in schemes {
        let order: Vec<u32> = (0..s.labels.len() as u32).collect();
        let all = df!("tier" => s.labels.clone(), "tier_order" => order)?.lazy();
        let agg = full
            .clone()
            .filter(col(s.column.as_str()).is_not_null())
            .group_by([col(s.column.as_str()).alias("tier")])
            .agg([
                len().cast(DataType::Int64).alias("customers"),
                col("revenue_cents").sum().alias("revenue_cents"),
            ]);
        parts.push(
            all.join(
                agg,
                [col("tier")],
                [col("tier")],
                JoinArgs::new(JoinType::Left),
            )
            .with_columns([
                col("customers").fill_null(lit(0i64)),
                col("revenue_cents").fill_null(lit(0i64)),
            ])
            .with_columns([
                lit(s.name.as_str()).alias("scheme"),
                rfm::share(col("customers").cast(DataType::Float64)).alias("customer_share"),
                rfm::share(col("revenue_cents").cast(DataType::Float64)).alias("revenue_share"),
                measures::cents_to_units(col("revenue_cents")).alias("revenue"),
            ])
            .sort(["tier_order"], Default::default())
            .select([
                col("scheme"),
                col("tier"),
                col("tier_order").cast(DataType::Int32),
                col("customers"),
                col("customer_share"),
                col("revenue"),
                col("revenue_share"),
            ]),
        );
    }
    Ok(concat(parts, UnionArgs::default())?.run()?)
}

/// Everything computed for one snapshot, ready to publish.
pub struct Scored {
    pub customer_scores: Full,
    pub rfm_segments: DataFrame,
    pub pyramid: DataFrame,
    pub tier_summary: DataFrame,
    /// (dimension, table) per concentration dimension.
    pub concentration: Vec<(String, DataFrame)>,
    pub churn_summary: DataFrame,
    pub follow_up: DataFrame,
    pub tier_migration: DataFrame,
    pub lost_deal_reasons: DataFrame,
    pub rfm_cuts: RfmCuts,
    pub unknown_customers: usize,
    /// The earlier date tier_migration compares with.
    pub migration_compared_to: NaiveDate,
    /// The invariants checked before publishing (all held).
    pub invariants: Vec<Invariant>,
}

/// One invariant as checked, for the manifest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Invariant {
    pub name: String,
    pub detail: String,
}

impl Scored {
    /// Every table but `customer_scores` with its published name, in
    /// publishing order.
    pub fn tables(&mut self) -> Vec<(String, &mut DataFrame)> {
        let mut v: Vec<(String, &mut DataFrame)> = vec![
            ("rfm_segments".into(), &mut self.rfm_segments),
            ("pyramid".into(), &mut self.pyramid),
            ("tier_summary".into(), &mut self.tier_summary),
            ("churn_summary".into(), &mut self.churn_summary),
            ("follow_up".into(), &mut self.follow_up),
            ("tier_migration".into(), &mut self.tier_migration),
            ("lost_deal_reasons".into(), &mut self.lost_deal_reasons),
        ];
        for (dim, df) in self.concentration.iter_mut() {
            v.push((format!("concentration_{dim}"), df));
        }
        v
    }
}

/// Customers tiered by one scheme at one date, for concentration years and
/// migration. The pyramid needs only the measures, so it skips the rest of
/// the scoring; threshold and scorecard schemes take the full scoring.
pub fn tiers_as_of(
    f: &Frames,
    date: NaiveDate,
    cfg: &Config,
    scheme_name: &str,
) -> Result<DataFrame> {
    let keep = tiering_columns(cfg, scheme_name)?;
    if scheme_name != "pyramid" {
        return Ok(scores_as_of(f, date, cfg)?
            .lazy()?
            .select(named(&keep))
            .run()?);
    }
    // Only what the pyramid and the tiering read (the tier comes from the
    // pyramid), part by part on the lean plan; the projection lets polars
    // skip every other measure (the median gap's sort above all).
    let mut narrow = vec!["in_scope".to_string(), "contribution_cents".to_string()];
    narrow.extend(keep.iter().filter(|c| *c != "pyramid_tier").cloned());
    let b = f.per_part(|d, keys, part| {
        let m = measures_query(f, d, keys, date, cfg, false);
        measures::customer_base(m, f.customers_in(part), &cfg.ingest.unknown_label)
            .select(named(&narrow))
    })?;
    Ok(pyramid::assign(b, &cfg.pyramid)?
        .select(named(&keep))
        .run()?)
}

/// What concentration (dimensions, tier) and migration (tier, revenue)
/// read from a tiering at an earlier date: keeping only these keeps the
/// auxiliary tierings small.
fn tiering_columns(cfg: &Config, scheme_name: &str) -> Result<Vec<String>> {
    let mut names = vec![
        "customer_id".to_string(),
        "revenue_cents".to_string(),
        scheme(cfg, scheme_name)?.column,
    ];
    for d in &cfg.concentration.dimensions {
        if !names.contains(d) {
            names.push(d.clone());
        }
    }
    Ok(names)
}

/// Columns by name, in order.
fn named(names: &[String]) -> Vec<Expr> {
    names.iter().map(|n| col(n.as_str())).collect()
}

/// A snapshot's full scoring as the tiering other snapshots of a backfill
/// read ([`tiers_as_of`]'s columns), so the full frame can be dropped.
pub fn as_tiering(full: &Full, cfg: &Config, scheme_name: &str) -> Result<DataFrame> {
    let keep = tiering_columns(cfg, scheme_name)?;
    Ok(full.lazy()?.select(named(&keep)).run()?)
}

/// An auxiliary tiering: (date, scheme name).
pub type AuxKey = (NaiveDate, String);

/// The auxiliary tierings a snapshot as of `as_of` needs: each concentration
/// year's end and the migration's earlier date (the as-of itself excluded:
/// the full scoring serves it).
pub fn aux_needed(as_of: NaiveDate, cfg: &Config) -> Vec<AuxKey> {
    let mut v: Vec<AuxKey> = concentration::report_years(as_of, &cfg.concentration)
        .iter()
        .map(|y| (y.tiered_at, cfg.concentration.tier.clone()))
        .collect();
    v.push((migration_date(as_of, cfg), cfg.migration.tier.clone()));
    v.retain(|(d, _)| *d != as_of);
    v.sort();
    v.dedup();
    v
}

fn migration_date(as_of: NaiveDate, cfg: &Config) -> NaiveDate {
    cfg.migration
        .compare_to
        .unwrap_or_else(|| migration::previous_quarter_end(as_of))
}

/// Auxiliary tierings by date and scheme: in memory, or (lean plan) scans
/// of work files.
pub type AuxTierings = std::collections::BTreeMap<AuxKey, LazyFrame>;

/// Computes auxiliary tierings, one after the other: polars already
/// spreads each over the cores, and at 10^7 transactions running tierings
/// side by side was no faster but held ~80 MB more at the peak.
pub fn aux_tierings(f: &Frames, keys: &[AuxKey], cfg: &Config) -> Result<AuxTierings> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let t = std::time::Instant::now();
            let df = tiers_as_of(f, k.0, cfg, &k.1)?;
            tracing::debug!(ms = t.elapsed().as_millis() as u64, date = %k.0, scheme = %k.1, "auxiliary tiering");
            let lf = f.keep(df, &aux_name(k, i))?;
            crate::memory::release_free();
            Ok((k.clone(), lf))
        })
        .collect()
}

/// Computes the snapshot's tables: the full scoring as of `as_of`, then
/// the auxiliary tierings (sequential for the reason above).
pub fn compute(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<Scored> {
    let keys = aux_needed(as_of, cfg);
    let t = std::time::Instant::now();
    let full = scores_as_of(f, as_of, cfg)?;
    crate::memory::release_free();
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "full scoring");
    let aux = aux_tierings(f, &keys, cfg)?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        aux = keys.len(),
        "scored"
    );
    let t = std::time::Instant::now();
    let out = from_daily(f, as_of, cfg).and_then(|d| compute_with(f, as_of, cfg, full, &aux, d));
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "summaries");
    drop(aux);
    for (i, k) in keys.iter().enumerate() {
        f.discard(&aux_name(k, i))?;
    }
    out
}

/// [`compute`] for a caller done with `f`'s pre-aggregate afterwards (a
/// single run; `f` must outlive the result, whose lean-plan scoring is in
/// its work files). On the fast plan the held pre-aggregate's readers come
/// first — the auxiliary tierings, the summaries' inputs ([`from_daily`])
/// and the snapshot's measures — and it is let go before the full scoring
/// and the summaries, where a run's memory peaks (~250 MB less at 10^7
/// transactions). The tables are the same as [`compute`]'s.
pub fn compute_once(f: &mut Frames, as_of: NaiveDate, cfg: &Config) -> Result<Scored> {
    f.frugal = true;
    if !matches!(f.daily, Daily::Memory { .. }) || f.measures_at.is_some() {
        return compute(f, as_of, cfg);
    }
    let t = std::time::Instant::now();
    let keys = aux_needed(as_of, cfg);
    let aux = aux_tierings(f, &keys, cfg)?;
    let from = from_daily(f, as_of, cfg)?;
    let m = measures_as_of(f, as_of, cfg, true)?.run()?;
    f.measures_at = Some((as_of, m));
    f.daily = Daily::Released;
    f.release_free();
    let full = scores_as_of(f, as_of, cfg)?;
    f.release_free();
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        aux = keys.len(),
        "scored"
    );
    let t = std::time::Instant::now();
    let out = compute_with(f, as_of, cfg, full, &aux, from);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "summaries");
    drop(aux);
    f.measures_at = None;
    f.release_free();
    out
}

/// What a snapshot's summaries read from the pre-aggregate: the buyers of
/// each concentration report year, the customers who bought but are not
/// in the customers table, and the window's net amount (for the
/// reconciliation invariant, straight from the pre-aggregate, independent
/// of the per-customer path). Collected on the fast plan, so the
/// pre-aggregate can be let go ([`compute_once`]).
pub struct FromDaily {
    buyers: Vec<LazyFrame>,
    unknown_customers: usize,
    window_cents: i64,
}

/// [`FromDaily`] as of `as_of`.
pub fn from_daily(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<FromDaily> {
    let mut buyers = Vec::new();
    for ry in concentration::report_years(as_of, &cfg.concentration) {
        let b = f.per_customer(|d, keys| concentration::buyers(d, keys, &ry))?;
        buyers.push(match f.daily {
            Daily::Memory { .. } => b.run()?.lazy(),
            _ => b,
        });
    }
    let unknown_customers = f
        .per_customer(|d, keys| {
            let cids = d
                .filter(measures::on_or_before(as_of))
                .select([col("cid")])
                .unique(None, UniqueKeepStrategy::Any);
            measures::with_customer_id(cids, keys).select([col("customer_id")])
        })?
        .join(
            f.customers.clone().select([col("customer_id")]),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Anti),
        )
        .run()?
        .height();
    let window_cents: i64 = f
        .per_customer(|d, _| {
            d.filter(
                measures::on_or_before(as_of)
                    .and(measures::in_window(as_of, cfg.measures.window_days)),
            )
            .select([col("net_cents").sum()])
        })?
        .select([col("net_cents").sum()])
        .run()?
        .column("net_cents")?
        .i64()?
        .get(0)
        .unwrap_or(0);
    Ok(FromDaily {
        buyers,
        unknown_customers,
        window_cents,
    })
}

/// The work file name of an auxiliary tiering on the lean plan.
fn aux_name(k: &AuxKey, i: usize) -> String {
    format!("aux-{}-{i}", k.0)
}

/// The snapshot's tables from its full scoring and the auxiliary tierings
/// (shared across the snapshots of a backfill).
pub fn compute_with(
    f: &Frames,
    as_of: NaiveDate,
    cfg: &Config,
    full: Full,
    aux: &AuxTierings,
    from: FromDaily,
) -> Result<Scored> {
    let years = concentration::report_years(as_of, &cfg.concentration);
    let compared_to = migration_date(as_of, cfg);
    // A missing tiering is a bug in aux_needed, never something to paper
    // over with an empty frame.
    let at = |d: NaiveDate, scheme: &str| -> Result<LazyFrame> {
        if d == as_of {
            full.lazy()
        } else {
            aux.get(&(d, scheme.to_string()))
                .cloned()
                .ok_or_else(|| Error::Invariant(format!("no {scheme} tiering computed for {d}")))
        }
    };
    let previous = at(compared_to, &cfg.migration.tier)?;

    let conc_scheme = scheme(cfg, &cfg.concentration.tier)?;
    let mut pops = Vec::new();
    for (ry, buyers) in years.iter().zip(from.buyers) {
        pops.push(concentration::population(
            at(ry.tiered_at, &cfg.concentration.tier)?,
            buyers,
            ry,
            &conc_scheme,
            &cfg.concentration.dimensions,
        ));
    }
    // Computed once: every dimension's table reads the same populations.
    let pops = f.materialize(
        concat(pops, UnionArgs::default())?,
        &format!("pops-{as_of}"),
    )?;
    let mut conc = Vec::new();
    for dim in &cfg.concentration.dimensions {
        let t = concentration::table(
            pops.clone(),
            &years,
            dim,
            &conc_scheme,
            &cfg.concentration,
            &cfg.ingest.unknown_label,
        )?;
        conc.push((dim.clone(), t));
    }
    drop(pops);
    f.discard(&format!("pops-{as_of}"))?;
    f.release_free();
    let churn_summary = churn::summary(
        full.lazy()?,
        &cfg.churn.dimensions,
        &scheme(cfg, &cfg.churn.tier)?,
        &cfg.concentration.total_label,
    )?;
    let follow_up = follow_up::table(full.lazy()?, &scheme(cfg, &cfg.follow_up.tier)?)?;
    // The largest summary (a row per overdue customer): its sort's scratch
    // would otherwise stay with the process through publishing.
    f.release_free();
    let tier_migration = migration::table(
        full.lazy()?,
        previous,
        &scheme(cfg, &cfg.migration.tier)?,
        compared_to,
    )?;
    let lost_deal_reasons = lost_deals::reasons(
        f.interactions.clone(),
        as_of,
        cfg.measures.window_days,
        &cfg.concentration.total_label,
    )?
    .run()?;
    let rules = rfm::rules(&cfg.rfm);
    let rfm_segments = rfm::segment_summary(full.lazy()?, &rules)?;
    let pyramid = pyramid::summary(full.lazy()?, &cfg.pyramid)?;
    let tier_summary = tier_summary(full.lazy()?, &tier_schemes(cfg))?;
    let rfm_cuts = rfm::applied_cuts(full.lazy()?, &cfg.rfm, &rfm_segments)?;
    let invariants = check_invariants(
        &full,
        &rfm_segments,
        &pyramid,
        &tier_summary,
        from.window_cents,
    )?;
    let customer_scores = full.published()?;
    Ok(Scored {
        customer_scores,
        rfm_segments,
        pyramid,
        tier_summary,
        concentration: conc,
        churn_summary,
        follow_up,
        tier_migration,
        lost_deal_reasons,
        rfm_cuts,
        unknown_customers: from.unknown_customers,
        migration_compared_to: compared_to,
        invariants,
    })
}

/// Checks that hold for every correct snapshot; the first that fails
/// aborts the publish. Returns what was checked, for the manifest.
pub fn check_invariants(
    full: &Full,
    segments: &DataFrame,
    pyramid: &DataFrame,
    tier_summary: &DataFrame,
    ingested_window_cents: i64,
) -> Result<Vec<Invariant>> {
    let mut held = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| -> Result<()> {
        if ok {
            held.push(Invariant {
                name: name.to_string(),
                detail,
            });
            Ok(())
        } else {
            Err(Error::Invariant(format!("{name}: {detail}")))
        }
    };
    let totals = full
        .lazy()?
        .select([
            len().cast(DataType::Int64).alias("rows"),
            col("customer_id")
                .n_unique()
                .cast(DataType::Int64)
                .alias("distinct"),
            col("in_scope")
                .sum()
                .cast(DataType::Int64)
                .alias("in_scope"),
            col("revenue_cents").sum().alias("revenue_cents"),
        ])
        .run()?;
    let total = |c: &str| -> Result<i64> { Ok(totals.column(c)?.i64()?.get(0).unwrap_or(0)) };
    let (rows, distinct, in_scope) = (total("rows")?, total("distinct")?, total("in_scope")?);
    let customer_cents = total("revenue_cents")?;
    check(
        "every customer once in customer_scores",
        distinct == rows,
        format!("{rows} rows, {distinct} distinct customer_id"),
    )?;
    for (name, table) in [("rfm_segments", segments), ("pyramid", pyramid)] {
        let total: i64 = table.column("customers")?.i64()?.sum().unwrap_or(0);
        check(
            &format!("{name} counts the in-scope population"),
            total == in_scope,
            format!("{total} counted, {in_scope} in scope"),
        )?;
    }
    let per_scheme = tier_summary
        .clone()
        .lazy()
        .group_by([col("scheme")])
        .agg([
            col("customers").sum().alias("n"),
            col("customer_share").sum().alias("share"),
        ])
        .sort(["scheme"], Default::default())
        .run()?;
    let schemes = per_scheme.column("scheme")?.str()?.clone();
    let ns = per_scheme.column("n")?.i64()?.clone();
    let shares = per_scheme.column("share")?.f64()?.clone();
    for i in 0..per_scheme.height() {
        let scheme = schemes.get(i).unwrap_or_default();
        // The pyramid tiers the in-scope customers, other schemes everyone.
        let population = if scheme == "pyramid" { in_scope } else { rows };
        let n = ns.get(i).unwrap_or(0);
        check(
            &format!("{scheme} tier counts sum to the population"),
            n == population,
            format!("{n} tiered, population {population}"),
        )?;
        let share = shares.get(i);
        check(
            &format!("{scheme} customer shares sum to 1"),
            population == 0 || share.is_some_and(|x| (x - 1.0).abs() < 1e-9),
            format!("{share:?}"),
        )?;
    }
    check(
        "customer revenue reconciles with the ingested window total to the cent",
        customer_cents == ingested_window_cents,
        format!("{customer_cents} vs {ingested_window_cents} cents"),
    )?;
    let seg_rev: f64 = segments.column("revenue")?.f64()?.sum().unwrap_or(0.0);
    check(
        "rfm_segments revenue reconciles with customer revenue",
        (seg_rev * 100.0 - customer_cents as f64).abs() < 0.5,
        format!("{seg_rev:.2} vs {:.2}", customer_cents as f64 / 100.0),
    )?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_id_moves_whole_rows() {
        // Two chunks, nulls, a string and a number column: each row keeps
        // its values, rows come out in byte order of customer_id.
        let mut df = df!(
            "customer_id" => ["c3", "c10"],
            "tier" => [Some("A"), None],
            "cents" => [Some(300i64), Some(1000)],
        )
        .unwrap();
        df.vstack_mut_owned(
            df!(
                "customer_id" => ["c2", "c1"],
                "tier" => [Some("B"), Some("C")],
                "cents" => [None, Some(100i64)],
            )
            .unwrap(),
        )
        .unwrap();
        let out = sorted_by_id(df, true).unwrap();
        let want = df!(
            "customer_id" => ["c1", "c10", "c2", "c3"],
            "tier" => [Some("C"), None, Some("B"), Some("A")],
            "cents" => [Some(100i64), Some(1000), None, Some(300)],
        )
        .unwrap();
        assert!(out.equals_missing(&want), "{out}");
    }
}
