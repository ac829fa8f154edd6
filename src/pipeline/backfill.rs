//! `tiering backfill`: the snapshot dates of a range, and one ingest
//! feeding every date's snapshot.

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use polars::prelude::*;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ingest::{Ingested, TableReport};
use crate::memory;
use crate::pipeline::{
    How, RunOutcome, RunSettings, Timings, ingest_dir, load, refuse_existing, release_inputs,
    write_ingested,
};
use crate::publish::{Lock, Snapshot};
use crate::snapshot::{self, Scored};

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
    let (mut ing, source) = load(s, Some(last), &|_| dates.clone())?;
    write_ingested(&ing, &s.out)?;
    // The fast plan scores two snapshots at a time (see below).
    let plan = super::plan(&ing, s, dates.len().min(2))?;
    let _kept = crate::alloc::Keeping::up_to(memory::kept_for_reuse(&plan));
    let f = super::frames(&ing, s, &plan, &ingest_dir(&s.out), &source)?;
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
        store: source.store().map(|v| &v.summary),
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
        transaction_rows_read_locally: ing.transaction_rows_read_locally,
        typed_from: Default::default(),
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
            source.settle()?;
            let snap = Snapshot::begin(&s.out, d, s.overwrite)?;
            let path = super::publish(s, &mut copy(d), &mut scored, snap, timings, &how)?;
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
        .flat_map(|d| snapshot::aux_needed(*d, &s.config, f.wanted))
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
        source.settle()?;
        let results: Vec<Result<RunOutcome>> = pair
            .par_iter()
            .zip(fulls)
            .map(|(d, full)| {
                let t = Instant::now();
                let mut timings = base.clone();
                timings.0.push(("score".into(), scoring.as_millis() as u64));
                let from = snapshot::from_daily(&f, *d, &s.config)?;
                let mut scored =
                    snapshot::compute_with(&f, *d, &s.config, full, &aux, from, None, None)?;
                timings.lap("summaries", t);
                let snap = Snapshot::begin(&s.out, *d, s.overwrite)?;
                let path = super::publish(s, &mut copy(*d), &mut scored, snap, timings, &how)?;
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
