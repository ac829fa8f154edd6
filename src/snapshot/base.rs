//! `customer_scores`: the per-customer base (measures, attributes,
//! engagement), ranked and scored by every tiering method, whole or by part.

use chrono::NaiveDate;
use polars::prelude::*;
use polars::series::IsSorted;

use crate::io::Run;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::scoring::rfm::{self};
use crate::scoring::schemes::scheme;
use crate::scoring::{engagement, measures, pyramid, tiers};
use crate::snapshot::frames::{Daily, Frames, Parts, filtered, measures_as_of, part_measures};
use crate::snapshot::full::{Full, Spilled};
use crate::summaries::{churn, follow_up};

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

pub(super) fn money(cents: &str) -> Expr {
    crate::units::cents_to_units(col(cents)).alias(cents.trim_end_matches("_cents"))
}

/// The per-customer base as of `as_of`: measures, customer attributes and
/// engagement, one row per customer.
pub fn base(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<LazyFrame> {
    let m = measures_as_of(f, as_of, cfg, true)?;
    match ordered_base(f, m.clone(), None, as_of, cfg)? {
        Some(b) => Ok(b),
        None => Ok(base_in(f, m, None, as_of, cfg)),
    }
}

/// [`base`] (of the customers in `part`, all with `None`) in customer_id
/// order, joined by merging sorted sides ([`crate::order::merge_on_id`]),
/// so that the scoring needs no sort afterwards ([`sorted_by_id`] finds
/// its rows in order). `None` when the measures or the customers are not
/// held in customer_id order.
fn ordered_base(
    f: &Frames,
    m: LazyFrame,
    part: Option<Expr>,
    as_of: NaiveDate,
    cfg: &Config,
) -> Result<Option<LazyFrame>> {
    let (m, customers) = (m.run()?, f.customers_in(part.clone()).run()?);
    let Some(joined) = crate::order::merge_on_id(&m, &customers, JoinType::Full)? else {
        return Ok(None);
    };
    drop((m, customers));
    // In-memory: one chunk per measure column. The streaming engine's ~10
    // morsels beside the customers' chunks made the scoring's first
    // `with_columns` join every column's chunks again, text ones included
    // (~0.1 s and ~0.2 GB of fresh memory in a 10^6-customer night).
    let b = measures::base_filled(joined.lazy(), &cfg.ingest.unknown_label).run_whole()?;
    let t = std::time::Instant::now();
    let interactions = filtered(f.interactions.clone(), part).run_whole()?;
    if let Some(b) = engagement::engagement_onto(
        &b,
        &interactions,
        as_of,
        cfg.measures.window_days,
        &cfg.measures.converted_outcomes,
    )? {
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "engagement");
        return Ok(Some(b.lazy()));
    }
    let e = engagement::customer_engagement(
        interactions.lazy(),
        as_of,
        cfg.measures.window_days,
        &cfg.measures.converted_outcomes,
    )
    .run()?;
    let e = crate::order::sort_by_id(e, None)?;
    Ok(crate::order::merge_on_id(&b, &e, JoinType::Left)?
        .map(|joined| engagement::engagement_filled(joined.lazy())))
}

/// The base of the customers in `part` (all with `None`) from their measures.
pub(super) fn base_in(
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
pub(super) const RANK_INPUTS: &[&str] = &[
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
pub(super) fn finish(
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

/// A scoring's rows in customer_id order (ids are unique): as they are
/// when already so (the merged base keeps that order), else moved a few
/// columns at a time ([`crate::order::permuted`]); `frugal` returns the
/// replaced columns' memory as it goes ([`Frames::release_free`]).
pub fn sorted_by_id(df: DataFrame, frugal: bool) -> Result<DataFrame> {
    let mut df = crate::order::flag_sorted_ids(df)?;
    if df.column("customer_id")?.is_sorted_flag() == IsSorted::Ascending {
        // One chunk per column, as the sort leaves them (a no-op after
        // `run_whole`): every reader after (the summaries, the CSV and
        // Parquet writers) would otherwise join them itself.
        df.rechunk_mut_par();
        return Ok(df);
    }
    let order = crate::order::by_id(&df, None)?;
    crate::order::flag_sorted_ids(crate::order::permuted(df, &order, frugal)?)
}

/// Every scored customer as of `as_of`, with the cent columns.
pub fn scores_as_of(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<Full> {
    match &f.daily {
        Daily::Parts(p) if !f.given.measures.contains_key(&as_of) => {
            scores_by_part(f, p, as_of, cfg)
        }
        _ => Ok(Full::Memory(sorted_by_id(
            score(base(f, as_of, cfg)?, as_of, cfg, &f.attributes)?.run_whole()?,
            f.frugal,
        )?)),
    }
}

/// The lean plan's scoring: each part's base is built and spilled, the
/// RFM scores and the pyramid are ranked over the whole population from
/// a narrow frame, then each part is finished and spilled in customer_id
/// order. At most two parts' frames (one being written while the next is
/// computed, [`crate::io::SpillBehind`]) and the narrow ranking are in
/// memory.
///
/// A part's base is built in customer_id order ([`part_measures`],
/// [`ordered_base`]) and the ranking (in that order too: the parts are,
/// and ranking keeps rows in place) is merged into it, so no part is
/// sorted after it is scored: sorting each finished part (56
/// columns) and hashing its joins was ~1/4 of a 10^7 lean scoring.
pub(super) fn scores_by_part(
    f: &Frames,
    p: &Parts,
    as_of: NaiveDate,
    cfg: &Config,
) -> Result<Full> {
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
    // Each part's base is written while the next is built (and the last
    // while the ranking runs).
    let mut bases = crate::io::SpillBehind::start();
    for i in 0..p.count() {
        let m = part_measures(f, p, i, as_of, cfg)?.lazy();
        let part = Some(p.filter(i));
        let b = match ordered_base(f, m.clone(), part.clone(), as_of, cfg)? {
            Some(b) => b,
            None => base_in(f, m, part, as_of, cfg),
        }
        .run()?;
        narrow.push(b.select(RANK_INPUTS.iter().copied())?.lazy());
        bases.write(b, spilled.path("base", i))?;
    }
    let mut keep = vec![col("customer_id")];
    keep.extend(RANKED_COLUMNS.iter().map(|c| col(*c)));
    let ranked = rank(concat(narrow, UnionArgs::default())?, cfg)?
        .select(keep)
        .run()?;
    // In customer_id order already (the parts are, and ranking keeps the
    // rows' order): checked, and sorted only if not.
    let ranked = crate::order::sorted_and_flagged(ranked)?;
    bases.finish()?;
    let mut scores = crate::io::SpillBehind::start();
    for i in 0..p.count() {
        let base = spilled.path("base", i);
        let ranks = ranked.clone().lazy().filter(p.filter(i));
        let b = {
            let (base, ranks) = (crate::io::scan_parquet(&base)?.run()?, ranks.run()?);
            match crate::order::merge_on_id(&base, &ranks, JoinType::Left)? {
                Some(b) => b.lazy(),
                None => base.lazy().join(
                    ranks.lazy(),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(JoinType::Left),
                ),
            }
        };
        let full = sorted_by_id(finish(b, as_of, cfg, &f.attributes)?.run()?, f.frugal)?;
        spilled.rows += full.height();
        spilled.non_ascii |= crate::io::has_non_ascii_text(&full);
        scores.write(full, spilled.path("scores", i))?;
        std::fs::remove_file(&base).map_err(Error::io(&base))?;
    }
    scores.finish()?;
    Ok(Full::Spilled(spilled))
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
