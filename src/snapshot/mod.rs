//! One snapshot's tables from typed inputs: the per-customer base, every
//! scoring stage, the summaries and the invariants checked before publish.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::scoring::rfm::{self, RfmCuts};
use crate::scoring::schemes::{scheme, tier_schemes, tier_summary};
use crate::scoring::{measures, pyramid, sorted};
use crate::snapshot::aux::migration_date;
use crate::summaries::{churn, concentration, follow_up, lost_deals, migration};

mod aux;
mod base;
mod cache;
mod frames;
mod full;
mod invariants;

pub use aux::{AuxKey, AuxTierings, as_tiering, aux_needed, aux_tierings, tiers_as_of};
pub use base::{
    BASE_COLUMNS, CENTS_COLUMNS, FOLLOW_UP_COLUMNS, RANKED_COLUMNS, base, rank, score,
    scores_as_of, sorted_by_id,
};
pub use cache::{TIERINGS, TieringCache};
pub use frames::{Daily, Frames, Given, PartRows, Parts, both, measures_as_of};
pub use full::{Full, Spilled};
pub use invariants::check_invariants;

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

/// The summaries a snapshot computes: those whose tables are published
/// (`--tables`), so a backfill asking for a few tables does no work for the
/// rest. `rfm_segments`, `pyramid` and `tier_summary` are always computed:
/// the invariants and the manifest read them, and they cost little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Any `concentration_<dimension>` (the report years' auxiliary
    /// tierings and buyers with them).
    pub concentration: bool,
    pub churn: bool,
    pub follow_up: bool,
    /// `tier_migration` (the earlier date's auxiliary tiering with it).
    pub migration: bool,
    pub lost_deals: bool,
}

impl Wanted {
    /// Every summary (no `--tables`).
    pub const ALL: Wanted = Wanted {
        concentration: true,
        churn: true,
        follow_up: true,
        migration: true,
        lost_deals: true,
    };

    /// What `--tables` (None: every table) needs computed.
    pub fn of(tables: Option<&std::collections::BTreeSet<String>>) -> Wanted {
        let Some(t) = tables else {
            return Wanted::ALL;
        };
        Wanted {
            concentration: t.iter().any(|n| n.starts_with("concentration_")),
            churn: t.contains("churn_summary"),
            follow_up: t.contains("follow_up"),
            migration: t.contains("tier_migration"),
            lost_deals: t.contains("lost_deal_reasons"),
        }
    }
}

/// The summary tables every snapshot has, in publishing order (the
/// `concentration_<dimension>` tables follow them).
const SUMMARY_TABLES: [&str; 7] = [
    "rfm_segments",
    "pyramid",
    "tier_summary",
    "churn_summary",
    "follow_up",
    "tier_migration",
    "lost_deal_reasons",
];

impl Scored {
    /// Every table but `customer_scores` with its published name, in
    /// publishing order.
    pub fn tables(&mut self) -> Vec<(String, &mut DataFrame)> {
        let frames = [
            &mut self.rfm_segments,
            &mut self.pyramid,
            &mut self.tier_summary,
            &mut self.churn_summary,
            &mut self.follow_up,
            &mut self.tier_migration,
            &mut self.lost_deal_reasons,
        ];
        let mut v: Vec<(String, &mut DataFrame)> = SUMMARY_TABLES
            .iter()
            .map(|n| n.to_string())
            .zip(frames)
            .collect();
        for (dim, df) in self.concentration.iter_mut() {
            v.push((format!("concentration_{dim}"), df));
        }
        v
    }
}

/// Every table a snapshot of `cfg` publishes, in publishing order (the
/// names `--tables` accepts).
pub fn table_names(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = ["customer_scores"]
        .iter()
        .chain(SUMMARY_TABLES.iter())
        .map(|s| s.to_string())
        .collect();
    v.extend(
        cfg.concentration
            .dimensions
            .iter()
            .map(|d| format!("concentration_{d}")),
    );
    v.push("rejects".into());
    v
}

/// Computes the snapshot's tables: the full scoring as of `as_of`, then
/// the auxiliary tierings (sequential for the reason above).
pub fn compute(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Result<Scored> {
    compute_alongside(f, as_of, cfg, None, None)
}

/// [`compute`], with `alongside` run beside the summaries (see
/// [`compute_with`]).
fn compute_alongside(
    f: &Frames,
    as_of: NaiveDate,
    cfg: &Config,
    alongside: Option<Alongside>,
    then: Option<Then>,
) -> Result<Scored> {
    let keys = aux_needed(as_of, cfg, f.wanted);
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
    let out = from_daily(f, as_of, cfg)
        .and_then(|d| compute_with(f, as_of, cfg, full, &aux, d, alongside, then));
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
pub fn compute_once(
    f: &mut Frames,
    as_of: NaiveDate,
    cfg: &Config,
    alongside: Option<Alongside>,
    then: Option<Then>,
) -> Result<Scored> {
    f.frugal = true;
    if !matches!(f.daily, Daily::Memory { .. }) || !f.given.measures.is_empty() {
        return compute_alongside(f, as_of, cfg, alongside, then);
    }
    let t = std::time::Instant::now();
    let keys = aux_needed(as_of, cfg, f.wanted);
    // Independent reads of the held pre-aggregate: side by side they keep
    // both cores busy (a cold 10^7 run: ~1.65 → ~1.38 s for the two and
    // the measures; no more memory).
    let held: &Frames = f;
    let (aux, from) = rayon::join(
        || aux_tierings(held, &keys, cfg),
        || from_daily(held, as_of, cfg),
    );
    let (aux, from) = (aux?, from?);
    // After them, not beside: beside, a uniform night's peak rose from
    // ~1.26 to ~1.46 GB in one run of five, for ~1.5% of its time.
    let m = measures_as_of(f, as_of, cfg, true)?.run()?;
    f.given.measures.insert(as_of, m);
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
    let out = compute_with(f, as_of, cfg, full, &aux, from, alongside, then);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "summaries");
    drop(aux);
    f.given.measures.remove(&as_of);
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
    if let Some((buyers, window_cents)) = f.given.summaries.get(&as_of) {
        return given_from_daily(f, as_of, buyers, *window_cents);
    }
    if let Daily::Memory { daily, keys } = &f.daily {
        // The held pre-aggregate is in (cid, day) order: scans, no group-by.
        // Each is one core's loop over every row, so they run side by side
        // (a night's were ~0.15 s in a row while the other core idled).
        use rayon::prelude::*;
        let years = report_years(f, as_of, cfg);
        let (buyers, seen) = rayon::join(
            || {
                years
                    .par_iter()
                    .map(|ry| {
                        let b = sorted::buyers_sorted(daily, keys, ry.start, ry.tiered_at)?;
                        Ok(crate::order::flag_sorted_ids(b)?.lazy())
                    })
                    .collect::<Result<Vec<_>>>()
            },
            || sorted::seen_and_window_cents(daily, keys, as_of, cfg.measures.window_days),
        );
        let (buyers, (seen, window_cents)) = (buyers?, seen?);
        let seen = DataFrame::new(seen.len(), vec![seen])?.lazy();
        return Ok(FromDaily {
            buyers,
            unknown_customers: not_in_customers(f, seen)?,
            window_cents,
        });
    }
    let mut buyers = Vec::new();
    for ry in report_years(f, as_of, cfg) {
        let b = f.per_customer(|d, keys| concentration::buyers(d, keys, &ry))?;
        buyers.push(match f.daily {
            Daily::Memory { .. } => b.run()?.lazy(),
            _ => b,
        });
    }
    let unknown_customers = not_in_customers(
        f,
        f.per_customer(|d, keys| {
            let cids = d
                .filter(measures::on_or_before(as_of))
                .select([col("cid")])
                .unique(None, UniqueKeepStrategy::Any);
            crate::daily::with_customer_id(cids, keys).select([col("customer_id")])
        })?,
    )?;
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

/// The concentration report years as of `as_of`; none when no
/// concentration table is wanted.
fn report_years(f: &Frames, as_of: NaiveDate, cfg: &Config) -> Vec<concentration::ReportYear> {
    if f.wanted.concentration {
        concentration::report_years(as_of, &cfg.concentration)
    } else {
        Vec::new()
    }
}

/// How many of the customer ids `ids` (each once) the customers table lacks.
fn not_in_customers(f: &Frames, ids: LazyFrame) -> Result<usize> {
    // Both in customer_id order (the fast plan's: keys and the checked
    // customers): one merge walk, where polars' anti join hashed 10^6
    // text ids (~0.1 s of a night's CPU).
    if let Daily::Memory { .. } = f.daily {
        let (ids, customers) = (
            ids.clone().run()?,
            f.customers.clone().select([col("customer_id")]).run()?,
        );
        let (ids, customers) = (
            crate::order::id_column(&ids)?,
            crate::order::id_column(&customers)?,
        );
        let mut missing = 0;
        if crate::order::merge_walk(&ids, &customers, |i, c| {
            missing += (i.is_some() && c.is_none()) as usize
        }) {
            return Ok(missing);
        }
    }
    Ok(ids
        .join(
            f.customers.clone().select([col("customer_id")]),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Anti),
        )
        .run()?
        .height())
}

/// [`FromDaily`] from frames computed elsewhere: the customers who bought
/// but are not in the customers table come from the given measures.
fn given_from_daily(
    f: &Frames,
    as_of: NaiveDate,
    buyers: &[DataFrame],
    window_cents: i64,
) -> Result<FromDaily> {
    let m = f
        .given
        .measures
        .get(&as_of)
        .ok_or_else(|| Error::Invariant(format!("no measures given for {as_of}")))?;
    let unknown_customers = not_in_customers(f, m.clone().lazy().select([col("customer_id")]))?;
    Ok(FromDaily {
        buyers: buyers.iter().map(|b| b.clone().lazy()).collect(),
        unknown_customers,
        window_cents,
    })
}

/// The work file name of an auxiliary tiering on the lean plan.
fn aux_name(k: &AuxKey, i: usize) -> String {
    format!("aux-{}-{i}", k.0)
}

/// Work on the published `customer_scores` (given whole, without the cent
/// columns) run beside the summaries: writing it then keeps the second
/// core busy while the summaries' many small queries leave it idle.
pub type Alongside<'a> = &'a mut (dyn FnMut(DataFrame) -> Result<()> + Send);

/// Work on the finished tables done while `alongside` may still run: a
/// run publishes the summaries then, rather than after `customer_scores`'
/// writer has finished.
pub type Then<'a> = &'a mut dyn FnMut(&mut Scored) -> Result<()>;

/// The snapshot's tables from its full scoring and the auxiliary tierings
/// (shared across the snapshots of a backfill). When the scoring is held
/// in memory, `alongside` gets the published `customer_scores` on its own
/// thread while the summaries are computed; its error, if any, is
/// returned once the summaries are done. `then` gets the tables as soon
/// as they are done, beside `alongside`.
#[allow(clippy::too_many_arguments)]
pub fn compute_with(
    f: &Frames,
    as_of: NaiveDate,
    cfg: &Config,
    full: Full,
    aux: &AuxTierings,
    from: FromDaily,
    alongside: Option<Alongside>,
    then: Option<Then>,
) -> Result<Scored> {
    let published = match (&full, alongside) {
        (Full::Memory(df), Some(work)) => Some((
            df.clone().drop_many(base::CENTS_COLUMNS.iter().copied()),
            work,
        )),
        _ => None,
    };
    std::thread::scope(|scope| {
        let work = published.map(|(df, work)| scope.spawn(move || work(df)));
        let scored = summaries(f, as_of, cfg, full, aux, from).and_then(|mut scored| {
            if let Some(then) = then {
                then(&mut scored)?;
            }
            Ok(scored)
        });
        match work.map(|w| w.join()) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => scored,
        }
    })
}

/// `f`'s result, its time logged (`-vv`) as the summary `what`.
/// A summary computed and timed when `wanted` (`--tables`); left empty,
/// and never published, when not.
fn timed_if<T: Default>(wanted: bool, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !wanted {
        return Ok(T::default());
    }
    let t = std::time::Instant::now();
    let out = f();
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        summary = what,
        "summary"
    );
    out
}

/// [`compute_with`]'s tables.
fn summaries(
    f: &Frames,
    as_of: NaiveDate,
    cfg: &Config,
    full: Full,
    aux: &AuxTierings,
    from: FromDaily,
) -> Result<Scored> {
    let years = report_years(f, as_of, cfg);
    let compared_to = migration_date(as_of, cfg);
    let want = f.wanted;
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

    // The summaries one after the other: side by side on the fast plan
    // they finished ~0.1 s sooner at 10^6 customers but raised a nightly
    // run's peak by ~250 MB (uniform 10^7, benches/results/2026-12-03-3.*).
    // Those not wanted (`--tables`) are left empty and never published.
    let conc = timed_if(want.concentration, "concentration", || {
        let conc_scheme = scheme(cfg, &cfg.concentration.tier)?;
        let dims = &cfg.concentration.dimensions;
        // Every year's dimensions from the as-of date's scoring (they are
        // customer columns): coded once when it is held.
        let members = match &full {
            Full::Memory(df) => concentration::Members::of(df, dims)?,
            Full::Spilled(_) => None,
        };
        let mut pops = Vec::new();
        for (ry, buyers) in years.iter().zip(from.buyers) {
            pops.push(concentration::population(
                at(ry.tiered_at, &cfg.concentration.tier)?,
                buyers,
                full.lazy()?,
                members.as_ref(),
                ry,
                &conc_scheme,
                dims,
            )?);
        }
        drop(members);
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
        Ok(conc)
    })?;
    let churn_summary = timed_if(want.churn, "churn", || {
        churn::summary(
            full.lazy()?,
            &cfg.churn.dimensions,
            &scheme(cfg, &cfg.churn.tier)?,
            &cfg.concentration.total_label,
        )
    })?;
    let follow_up = timed_if(want.follow_up, "follow_up", || {
        let scheme = scheme(cfg, &cfg.follow_up.tier)?;
        match &full {
            Full::Memory(df) => follow_up::table_held(df, &scheme),
            Full::Spilled(_) => follow_up::table_of(full.lazy()?, &scheme),
        }
    })?;
    // The largest summary (a row per overdue customer): its sort's scratch
    // would otherwise stay with the process through publishing.
    f.release_free();
    let tier_migration = timed_if(want.migration, "migration", || {
        migration::table(
            full.lazy()?,
            at(compared_to, &cfg.migration.tier)?,
            &scheme(cfg, &cfg.migration.tier)?,
            compared_to,
        )
    })?;
    let lost_deal_reasons = if want.lost_deals {
        lost_deals::reasons(
            f.interactions.clone(),
            as_of,
            cfg.measures.window_days,
            &cfg.concentration.total_label,
        )?
        .run()?
    } else {
        DataFrame::empty()
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_the_summaries_computed() {
        let of = |names: &[&str]| {
            let set = names.iter().map(|n| n.to_string()).collect();
            Wanted::of(Some(&set))
        };
        assert_eq!(Wanted::of(None), Wanted::ALL);
        let none = Wanted {
            concentration: false,
            churn: false,
            follow_up: false,
            migration: false,
            lost_deals: false,
        };
        assert_eq!(of(&["customer_scores", "pyramid", "rejects"]), none);
        assert_eq!(
            of(&["concentration_industry", "tier_migration"]),
            Wanted {
                concentration: true,
                migration: true,
                ..none
            }
        );
        assert_eq!(
            of(&["churn_summary", "follow_up", "lost_deal_reasons"]),
            Wanted {
                churn: true,
                follow_up: true,
                lost_deals: true,
                ..none
            }
        );
    }
}
