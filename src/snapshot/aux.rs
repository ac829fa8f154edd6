//! Auxiliary tierings: customers tiered at earlier dates (report years of
//! concentration, the migration date), computed once per date and scheme.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;

use crate::config::Config;
use crate::error::Result;
use crate::scoring::schemes::{PYRAMID, scheme};
use crate::scoring::sorted::{self, Measured};
use crate::scoring::{measures, pyramid};
use crate::snapshot::base::scores_as_of;
use crate::snapshot::frames::{Daily, Frames, held_measures, measures_query};
use crate::snapshot::full::Full;
use crate::snapshot::{Wanted, aux_name};
use crate::summaries::{concentration, migration};

/// Customers tiered by one scheme at one date, for concentration years and
/// migration. The pyramid needs only the measures, so it skips the rest of
/// the scoring; threshold and scorecard schemes take the full scoring.
pub fn tiers_as_of(
    f: &Frames,
    date: NaiveDate,
    cfg: &Config,
    scheme_name: &str,
) -> Result<DataFrame> {
    tiered_from(f, date, cfg, scheme_name, None)
}

/// [`tiers_as_of`], the pyramid from `measured` ([`Measured::Tiering`]'s
/// columns as of `date`) when given.
fn tiered_from(
    f: &Frames,
    date: NaiveDate,
    cfg: &Config,
    scheme_name: &str,
    measured: Option<DataFrame>,
) -> Result<DataFrame> {
    let keep = tiering_columns(cfg, scheme_name)?;
    if scheme_name != PYRAMID {
        return Ok(scores_as_of(f, date, cfg)?
            .lazy()?
            .select(named(&keep))
            .run()?);
    }
    // Only what the pyramid and the tiering read (the tier comes from the
    // pyramid), part by part on the lean plan; the projection lets polars
    // skip every other measure (the median gap's sort above all). Only the
    // customers with a row by `date`: the others have no tier and no
    // revenue, which neither reader tells from absence, and leaving them
    // out makes the tiering independent of the customers file (kept across
    // nights when only that file changed, see `TieringCache`).
    let mut narrow = vec!["in_scope".to_string(), "contribution_cents".to_string()];
    narrow.extend(keep.iter().filter(|c| *c != "pyramid_tier").cloned());
    let given = match (measured, f.given.measures.get(&date)) {
        (Some(m), _) => Some(m),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => held_measures(f, date, cfg, Measured::Tiering).transpose()?,
    };
    let held = given.is_some();
    let b = match given {
        Some(m) => narrow_base(m.lazy(), &narrow),
        None => f.per_part_sorted(|d, keys, _| {
            narrow_base(measures_query(f, d, keys, date, cfg, false), &narrow)
        })?,
    };
    let tiered = pyramid::assign(b, &cfg.pyramid)?.select(named(&keep));
    // Held: on the in-memory engine, which keeps the rows' order in one
    // chunk (the streaming one hands back its morsels).
    Ok(match held {
        true => tiered.run_whole()?,
        false => tiered.run()?,
    })
}

/// The `narrow` columns of the customer base made from measures `m` alone
/// (`in_scope` from `first_purchase`, [`measures::base_fills`]).
fn narrow_base(m: LazyFrame, narrow: &[String]) -> LazyFrame {
    let fills: Vec<Expr> = measures::base_fills("")
        .into_iter()
        .filter(|(name, _)| narrow.iter().any(|c| c == name))
        .map(|(_, e)| e)
        .collect();
    m.with_columns(fills).select(named(narrow))
}

/// What concentration (tier) and migration (tier, revenue) read from a
/// tiering at an earlier date: keeping only these keeps the auxiliary
/// tierings small. Concentration's dimensions are customer columns, the
/// same at every date: it takes them from the as-of date's scoring (each
/// was three text columns of a row per customer, ~70 MB at 10^6).
pub(super) fn tiering_columns(cfg: &Config, scheme_name: &str) -> Result<Vec<String>> {
    Ok(vec![
        "customer_id".to_string(),
        "revenue_cents".to_string(),
        scheme(cfg, scheme_name)?.column,
    ])
}

/// Columns by name, in order.
pub(super) fn named(names: &[String]) -> Vec<Expr> {
    names.iter().map(|n| col(n.as_str())).collect()
}

/// A snapshot's full scoring as the tiering other snapshots of a backfill
/// read ([`tiers_as_of`]'s columns), so the full frame can be dropped.
pub fn as_tiering(full: &Full, cfg: &Config, scheme_name: &str) -> Result<DataFrame> {
    let keep = tiering_columns(cfg, scheme_name)?;
    crate::order::flag_sorted_ids(full.lazy()?.select(named(&keep)).run()?)
}

/// An auxiliary tiering: (date, scheme name).
pub type AuxKey = (NaiveDate, String);

/// The auxiliary tierings a snapshot as of `as_of` needs for the summaries
/// `wanted`: each concentration year's end and the migration's earlier
/// date (the as-of itself excluded: the full scoring serves it).
pub fn aux_needed(as_of: NaiveDate, cfg: &Config, wanted: Wanted) -> Vec<AuxKey> {
    let mut v: Vec<AuxKey> = Vec::new();
    if wanted.concentration {
        v.extend(
            concentration::report_years(as_of, &cfg.concentration)
                .iter()
                .map(|y| (y.tiered_at, cfg.concentration.tier.clone())),
        );
    }
    if wanted.migration {
        v.push((migration_date(as_of, cfg), cfg.migration.tier.clone()));
    }
    v.retain(|(d, _)| *d != as_of);
    v.sort();
    v.dedup();
    v
}

pub(super) fn migration_date(as_of: NaiveDate, cfg: &Config) -> NaiveDate {
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
    let mut measured = pyramids_measured(f, keys, cfg)?;
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let t = std::time::Instant::now();
            let kept = f.tierings.as_ref().map(|c| c.get(k)).transpose()?.flatten();
            let reused = kept.is_some();
            let df = match kept {
                // Flagged when sorted (a store written before tierings
                // were kept sorted holds them in any order).
                Some(df) => crate::order::flag_sorted_ids(df)?,
                None => {
                    // In customer_id order (kept so too): the summaries
                    // then join it with the full scoring by merging.
                    let m = measured.remove(k);
                    let df =
                        crate::order::sorted_and_flagged(tiered_from(f, k.0, cfg, &k.1, m)?)?;
                    f.tierings.as_ref().map(|c| c.put(k, &df)).transpose()?;
                    df
                }
            };
            // One chunk per column (a kept tiering is read in a chunk per
            // row group): the summaries merge it by customer_id, which
            // would otherwise join its ids' chunks once per reader.
            let mut df = df;
            df.rechunk_mut_par();
            tracing::debug!(ms = t.elapsed().as_millis() as u64, date = %k.0, scheme = %k.1, reused, "auxiliary tiering");
            let lf = f.keep(df, &aux_name(k, i))?;
            crate::memory::release_free();
            Ok((k.clone(), lf))
        })
        .collect()
}

/// The measures of the pyramid tierings among `keys` that must be
/// computed (not kept by an earlier run, no measures given), from one scan
/// of the fast plan's held pre-aggregate for all their dates
/// ([`sorted::tiering_measures_sorted`]); empty on other plans or for
/// fewer than two such dates, which [`tiers_as_of`] scans alone.
fn pyramids_measured(
    f: &Frames,
    keys: &[AuxKey],
    cfg: &Config,
) -> Result<std::collections::HashMap<AuxKey, DataFrame>> {
    let Daily::Memory { daily, keys: ids } = &f.daily else {
        return Ok(Default::default());
    };
    let todo: Vec<&AuxKey> = keys
        .iter()
        .filter(|k| {
            k.1 == PYRAMID
                && !f.given.measures.contains_key(&k.0)
                && !f.tierings.as_ref().is_some_and(|c| c.has(k))
        })
        .collect();
    if todo.len() < 2 {
        return Ok(Default::default());
    }
    let t = std::time::Instant::now();
    let dates: Vec<NaiveDate> = todo.iter().map(|k| k.0).collect();
    let frames = sorted::tiering_measures_sorted(daily, ids, &dates, &cfg.measures, f.has_margin)?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        dates = dates.len(),
        "measures of the earlier tierings"
    );
    todo.into_iter()
        .zip(frames)
        .map(|(k, m)| Ok((k.clone(), crate::order::flag_sorted_ids(m)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wanted_summaries_tierings_are_needed() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        // Defaults: two report years before the as-of's (tiered at their
        // ends, the running year at the as-of itself, which the full
        // scoring serves) and the previous quarter end for migration.
        let cfg = Config::default();
        let as_of = d(2010, 12, 31);
        let keys = |w: Wanted| -> Vec<NaiveDate> {
            aux_needed(as_of, &cfg, w)
                .into_iter()
                .map(|k| k.0)
                .collect()
        };
        let none = Wanted {
            concentration: false,
            churn: true,
            follow_up: true,
            migration: false,
            lost_deals: true,
        };
        assert_eq!(
            keys(Wanted::ALL),
            [d(2008, 12, 31), d(2009, 12, 31), d(2010, 9, 30)]
        );
        assert_eq!(
            keys(Wanted {
                concentration: true,
                ..none
            }),
            [d(2008, 12, 31), d(2009, 12, 31)]
        );
        assert_eq!(
            keys(Wanted {
                migration: true,
                ..none
            }),
            [d(2010, 9, 30)]
        );
        assert!(keys(none).is_empty());
    }
}
