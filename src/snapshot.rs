//! One snapshot's tables from typed inputs: the per-customer base, every
//! scoring stage, the summaries and the invariants checked before publish.

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
    /// Built once and held (the fast plan).
    Memory(Box<LazyFrame>),
    /// Built part by part from the typed transactions whenever needed, each
    /// part a share of the customers (the lean plan: memory for one part).
    Parts {
        transactions: crate::ingest::TypedFile,
        parts: u32,
    },
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
    /// The lean plan (`--memory-limit`): `daily` is a query over the typed
    /// Parquet rather than a frame in memory, and scorings run one at a time.
    pub lean: bool,
    /// Per-customer measures computed elsewhere (the Spark backend) for one
    /// date; scorings at that date use them instead of `daily`.
    pub measures_at: Option<(NaiveDate, DataFrame)>,
}

/// Per-customer measures as of `date` ([`measures::measures_from_daily`]),
/// or those provided for that date.
/// Without `gaps` the median gap is left null (pyramid-only tierings).
pub fn measures_as_of(f: &Frames, date: NaiveDate, cfg: &Config, gaps: bool) -> Result<LazyFrame> {
    if let Some((_, m)) = f.measures_at.as_ref().filter(|(d, _)| *d == date) {
        return Ok(m.clone().lazy());
    }
    f.per_customer(|d| {
        measures::measures_with_gaps(d, date, &cfg.measures, f.has_margin, f.has_quantity, gaps)
    })
}

impl Frames {
    /// `q` over the customer × day pre-aggregate. `q` must keep customers
    /// apart (group by customer, or filter rows): on the lean plan it runs
    /// once per part and the results are stacked, which is then exact.
    pub fn per_customer(&self, q: impl Fn(LazyFrame) -> LazyFrame) -> Result<LazyFrame> {
        match &self.daily {
            Daily::Memory(d) => Ok(q(d.as_ref().clone())),
            Daily::Parts {
                transactions,
                parts,
            } => {
                let mut done = Vec::new();
                for i in 0..*parts {
                    let rows = transactions
                        .scan()?
                        .filter(measures::customer_part(*parts).eq(lit(i)));
                    let daily = measures::daily(rows, self.has_margin, self.has_quantity);
                    done.push(q(daily).run()?.lazy());
                }
                Ok(concat(done, UnionArgs::default())?)
            }
        }
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
    let b = measures::customer_base(m, f.customers.clone(), &cfg.ingest.unknown_label);
    let e = engagement::customer_engagement(
        f.interactions.clone(),
        as_of,
        cfg.measures.window_days,
        &cfg.measures.converted_outcomes,
    );
    Ok(engagement::join_engagement(b, e))
}

/// Every scoring stage on the base; keeps the cent columns; sorted by
/// customer_id.
pub fn score(
    base: LazyFrame,
    as_of: NaiveDate,
    cfg: &Config,
    attributes: &[String],
) -> Result<LazyFrame> {
    let rules = rfm::rules(&cfg.rfm);
    let scored = base
        .with_columns(rfm::score_exprs(&cfg.rfm))
        .with_columns([
            rfm::rfm_code(cfg.rfm.bins).alias("rfm_code"),
            rfm::segment_expr(&rules).alias("rfm_segment"),
            churn::sleeping_after(&cfg.churn).alias("sleeping_after_days"),
            churn::lost_after(&cfg.churn).alias("lost_after_days"),
            churn::declining(cfg.churn.declining_drop).alias("declining"),
        ])
        .with_column(churn::status().alias("churn_status"));
    let mut lf = pyramid::assign(scored, &cfg.pyramid)?.with_columns([
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
    Ok(lf
        .select(select)
        .sort(["customer_id"], SortMultipleOptions::default()))
}

/// Every scored customer as of `as_of`, with the cent columns.
pub fn scores_as_of(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<DataFrame> {
    Ok(score(base(f, as_of, cfg)?, as_of, cfg, &f.attributes)?.run()?)
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
pub fn tier_summary(full: &DataFrame, schemes: &[TierScheme]) -> Result<DataFrame> {
    let mut parts = Vec::new();
    for s in schemes {
        let order: Vec<u32> = (0..s.labels.len() as u32).collect();
        let all = df!("tier" => s.labels.clone(), "tier_order" => order)?.lazy();
        let agg = full
            .clone()
            .lazy()
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
    pub customer_scores: DataFrame,
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
    /// Every table with its published name, in publishing order.
    pub fn tables(&mut self) -> Vec<(String, &mut DataFrame)> {
        let mut v: Vec<(String, &mut DataFrame)> = vec![
            ("customer_scores".into(), &mut self.customer_scores),
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
        return Ok(scores_as_of(f, date, cfg)?.lazy().select(keep).run()?);
    }
    let m = measures_as_of(f, date, cfg, false)?;
    let b = measures::customer_base(m, f.customers.clone(), &cfg.ingest.unknown_label);
    // The projection lets polars skip every other measure (the median
    // gap's sort above all).
    Ok(pyramid::assign(b, &cfg.pyramid)?.select(keep).run()?)
}

/// What concentration (dimensions, tier) and migration (tier, revenue)
/// read from a tiering at an earlier date: keeping only these keeps the
/// auxiliary tierings small.
fn tiering_columns(cfg: &Config, scheme_name: &str) -> Result<Vec<Expr>> {
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
    Ok(names.iter().map(|n| col(n.as_str())).collect())
}

/// A snapshot's full scoring as the tiering other snapshots of a backfill
/// read ([`tiers_as_of`]'s columns), so the full frame can be dropped.
pub fn as_tiering(full: &DataFrame, cfg: &Config, scheme_name: &str) -> Result<DataFrame> {
    let keep = tiering_columns(cfg, scheme_name)?;
    Ok(full.clone().lazy().select(keep).run()?)
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

/// Computes auxiliary tierings, one after the other: polars already
/// spreads each over the cores, and at 10^7 transactions running tierings
/// side by side was no faster but held ~80 MB more at the peak.
pub fn aux_tierings(
    f: &Frames,
    keys: &[AuxKey],
    cfg: &Config,
) -> Result<std::collections::BTreeMap<AuxKey, DataFrame>> {
    keys.iter()
        .map(|k| {
            let df = tiers_as_of(f, k.0, cfg, &k.1)?;
            crate::memory::release_free();
            Ok((k.clone(), df))
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
    let aux = aux_tierings(f, &keys, cfg)?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        aux = keys.len(),
        "scored"
    );
    let t = std::time::Instant::now();
    let out = compute_with(f, as_of, cfg, full, &aux);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "summaries");
    out
}

/// The snapshot's tables from its full scoring and the auxiliary tierings
/// (shared across the snapshots of a backfill).
pub fn compute_with(
    f: &Frames,
    as_of: NaiveDate,
    cfg: &Config,
    full: DataFrame,
    aux: &std::collections::BTreeMap<AuxKey, DataFrame>,
) -> Result<Scored> {
    let years = concentration::report_years(as_of, &cfg.concentration);
    let compared_to = migration_date(as_of, cfg);
    // A missing tiering is a bug in aux_needed, never something to paper
    // over with an empty frame.
    let at = |d: NaiveDate, scheme: &str| -> Result<DataFrame> {
        if d == as_of {
            Ok(full.clone())
        } else {
            aux.get(&(d, scheme.to_string()))
                .cloned()
                .ok_or_else(|| Error::Invariant(format!("no {scheme} tiering computed for {d}")))
        }
    };
    let previous = at(compared_to, &cfg.migration.tier)?;

    let conc_scheme = scheme(cfg, &cfg.concentration.tier)?;
    let mut pops = Vec::new();
    for ry in &years {
        pops.push(concentration::population(
            &at(ry.tiered_at, &cfg.concentration.tier)?,
            f.per_customer(|d| concentration::buyers(d, ry))?,
            ry,
            &conc_scheme,
            &cfg.concentration.dimensions,
        ));
    }
    // Collected once: every dimension's table reads the same populations.
    let pops = concat(pops, UnionArgs::default())?.run()?.lazy();
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
    let churn_summary = churn::summary(
        &full,
        &cfg.churn.dimensions,
        &scheme(cfg, &cfg.churn.tier)?,
        &cfg.concentration.total_label,
    )?;
    let follow_up = follow_up::table(&full, &scheme(cfg, &cfg.follow_up.tier)?)?;
    let tier_migration = migration::table(
        &full,
        &previous,
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
    let unknown_customers = f
        .per_customer(|d| {
            d.filter(measures::on_or_before(as_of))
                .select([col("customer_id")])
                .unique(None, UniqueKeepStrategy::Any)
        })?
        .join(
            f.customers.clone().select([col("customer_id")]),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Anti),
        )
        .run()?
        .height();
    // The window's net amount straight from the pre-aggregate, independent
    // of the per-customer path, for the reconciliation invariant.
    let ingested_window_cents: i64 = f
        .per_customer(|d| {
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
    let rules = rfm::rules(&cfg.rfm);
    let rfm_segments = rfm::segment_summary(full.clone().lazy(), &rules)?;
    let pyramid = pyramid::summary(full.clone().lazy(), &cfg.pyramid)?;
    let tier_summary = tier_summary(&full, &tier_schemes(cfg))?;
    let rfm_cuts = rfm::applied_cuts(&full, &cfg.rfm, &rfm_segments)?;
    let invariants = check_invariants(
        &full,
        &rfm_segments,
        &pyramid,
        &tier_summary,
        ingested_window_cents,
    )?;
    let customer_scores = full.drop_many(CENTS_COLUMNS.iter().copied());
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
        unknown_customers,
        migration_compared_to: compared_to,
        invariants,
    })
}

/// Checks that hold for every correct snapshot; the first that fails
/// aborts the publish. Returns what was checked, for the manifest.
pub fn check_invariants(
    full: &DataFrame,
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
    let ids = full.column("customer_id")?.as_materialized_series();
    let distinct = ids.n_unique()?;
    check(
        "every customer once in customer_scores",
        distinct == full.height(),
        format!("{} rows, {distinct} distinct customer_id", full.height()),
    )?;
    let in_scope = full.column("in_scope")?.bool()?.sum().unwrap_or(0) as i64;
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
        let population = if scheme == "pyramid" {
            in_scope
        } else {
            full.height() as i64
        };
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
    let customer_cents: i64 = full.column("revenue_cents")?.i64()?.sum().unwrap_or(0);
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
