//! What one run scores from: the customer × day pre-aggregate (held, or in
//! customer_id parts on disk for the lean plan), customers and interactions,
//! and the per-customer measures as of any date.

use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::scoring::{held, measures, sorted};

/// The customer × day pre-aggregate of transactions ([`crate::daily::daily`]).
#[derive(Clone)]
pub enum Daily {
    /// Built once and held (the fast plan), in (cid, day) order
    /// ([`sorted::sort_daily`]: each date's measures are then one scan),
    /// with its customer keys ([`crate::daily::customer_keys`]).
    Memory { daily: held::Held, keys: DataFrame },
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
        let keys = crate::daily::customer_keys(txns.clone()).run()?;
        let daily =
            crate::daily::daily(txns, keys.clone().lazy(), has_margin, has_quantity).run()?;
        let daily = held::Held::Whole(sorted::sort_daily(daily)?);
        Ok(Daily::Memory { daily, keys })
    }

    /// The fast plan's pre-aggregate from the store's per-file ones
    /// ([`crate::daily::merge_sorted`]), or `None` when they cannot be
    /// merged (then [`Daily::from_by_id`]).
    pub fn from_sorted_files(files: Vec<LazyFrame>) -> Result<Option<Daily>> {
        let files = files
            .into_iter()
            .map(|f| f.run())
            .collect::<PolarsResult<Vec<_>>>()?;
        Daily::from_sorted_frames(files)
    }

    /// [`Daily::from_sorted_files`] of the store's files read without
    /// their ids, each with its id runs: held stacked as read
    /// ([`crate::daily::stack_keyed`]), not merged.
    pub fn from_keyed_files(files: Vec<(LazyFrame, LazyFrame)>) -> Result<Option<Daily>> {
        let t = std::time::Instant::now();
        let files = files
            .into_iter()
            .map(|(d, k)| Ok((d.run()?, k.run()?)))
            .collect::<PolarsResult<Vec<_>>>()?;
        let read_ms = t.elapsed().as_millis() as u64;
        let stacked = crate::daily::stack_keyed(files)?;
        let daily = stacked
            .map(|(s, keys)| {
                Ok::<_, Error>(Daily::Memory {
                    daily: held::Held::stacked(s)?,
                    keys,
                })
            })
            .transpose()?;
        tracing::debug!(
            read_ms,
            ms = t.elapsed().as_millis() as u64,
            stacked = daily.is_some(),
            "stored pre-aggregates read and numbered by their id runs"
        );
        Ok(daily)
    }

    /// [`Daily::from_sorted_files`] of frames already read.
    pub fn from_sorted_frames(files: Vec<DataFrame>) -> Result<Option<Daily>> {
        Ok(
            crate::daily::merge_sorted(files)?.map(|(daily, keys)| Daily::Memory {
                daily: held::Held::Whole(daily),
                keys,
            }),
        )
    }

    /// The fast plan's pre-aggregate from one already keyed by customer_id
    /// ([`crate::daily::daily_by_id`]; the store's), built and held.
    pub fn from_by_id(by_id: LazyFrame) -> Result<Daily> {
        let (daily, keys) = keyed_sorted(by_id)?;
        Ok(Daily::Memory {
            daily: held::Held::Whole(daily),
            keys,
        })
    }
}

/// A pre-aggregate keyed by customer_id ([`crate::daily::daily_by_id`])
/// keyed on `cid` instead, in (cid, day) order, and its keys.
fn keyed_sorted(by_id: LazyFrame) -> Result<(DataFrame, DataFrame)> {
    let keys = crate::daily::customer_keys(by_id.clone()).run()?;
    let daily = crate::daily::keyed(by_id, keys.clone().lazy()).run()?;
    Ok((sorted::sort_daily(daily)?, keys))
}

/// A part's pre-aggregate as [`Parts::build`] is given it.
pub enum PartRows {
    /// Keyed by customer_id ([`crate::daily::daily_by_id`]), in any order.
    ById(DataFrame),
    /// The store's files' pre-aggregates of the part, each sorted by
    /// customer_id and day, no day in two of them: merged as they are
    /// ([`crate::daily::merge_sorted`]), with no hashing or sorting of ids.
    SortedFiles(Vec<DataFrame>),
}

/// The lean plan's customer parts: contiguous customer_id ranges
/// ([`crate::daily::id_range`]), each with its pre-aggregate and customer keys
/// in work files.
/// Per-customer frames of a snapshot are spilled there too.
pub struct Parts {
    /// Lower bounds of parts 1.. (part 0 starts below every id).
    bounds: Vec<String>,
    pub(super) dir: crate::io::WorkDir,
}

impl Parts {
    /// Cuts the customers into `parts` ranges by the ids of the customers
    /// table and spills each range's pre-aggregate in (cid, day) order,
    /// so that each scoring of a part is one scan of it
    /// ([`part_measures`]): `by_id` gives the pre-aggregate of the
    /// customers a filter selects (one filtered scan per part, of the typed
    /// transactions or of the store's pre-aggregates).
    pub fn build(
        by_id: &dyn Fn(Expr) -> Result<PartRows>,
        customer_ids: &StringChunked,
        parts: u32,
        dir: crate::io::WorkDir,
    ) -> Result<Parts> {
        let p = Parts {
            bounds: crate::daily::range_bounds(customer_ids, parts),
            dir,
        };
        // Each part's files are written while the next part is read.
        let mut spill = crate::io::SpillBehind::start();
        for i in 0..p.count() {
            // The part's pre-aggregate is held while its keys are taken
            // from it.
            let (daily, keys) = match by_id(p.filter(i))? {
                PartRows::SortedFiles(files) => {
                    // Frames share their buffers: the copy kept for the
                    // fallback costs nothing.
                    match crate::daily::merge_sorted(files.clone())? {
                        Some(merged) => merged,
                        None => {
                            let files = files.into_iter().map(|f| f.lazy()).collect::<Vec<_>>();
                            keyed_sorted(concat(files, UnionArgs::default())?)?
                        }
                    }
                }
                PartRows::ById(df) => keyed_sorted(df.lazy())?,
            };
            spill.write(keys, p.keys_path(i))?;
            spill.write(daily, p.daily_path(i))?;
        }
        spill.finish()?;
        Ok(p)
    }

    /// How many parts (fewer than asked when there are fewer customers).
    pub fn count(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The customers of part `i`.
    pub fn filter(&self, i: usize) -> Expr {
        let lo = i.checked_sub(1).map(|j| self.bounds[j].as_str());
        crate::daily::id_range(lo, self.bounds.get(i).map(String::as_str))
    }

    pub(super) fn daily_path(&self, i: usize) -> std::path::PathBuf {
        self.work_file(&format!("daily-{i}"))
    }

    pub(super) fn keys_path(&self, i: usize) -> std::path::PathBuf {
        self.work_file(&format!("keys-{i}"))
    }

    /// The work file `<name>.parquet`.
    pub(super) fn work_file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.parquet"))
    }

    pub(super) fn daily(&self, i: usize) -> Result<LazyFrame> {
        crate::io::scan_parquet(&self.daily_path(i))
    }

    pub(super) fn keys(&self, i: usize) -> Result<LazyFrame> {
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
    /// Per-customer frames computed elsewhere (the Spark engine), or held
    /// for one date ([`super::compute_once`]): scorings at those dates read
    /// them instead of `daily`.
    pub given: Given,
    /// Auxiliary tierings kept in the store between runs (runs on a store).
    pub tierings: Option<std::sync::Arc<super::TieringCache>>,
    /// Hand freed memory back to the system between steps (the lean plan,
    /// a single run: see [`Frames::release_free`]).
    pub frugal: bool,
    /// The summaries the snapshots compute (`--tables`).
    pub wanted: super::Wanted,
}

/// Per-customer frames computed elsewhere, by date.
#[derive(Clone, Default)]
pub struct Given {
    /// Measures in [`measures::measures_from_daily`]'s shape.
    pub measures: std::collections::BTreeMap<NaiveDate, DataFrame>,
    /// By snapshot date: each concentration report year's buyers
    /// ([`crate::summaries::concentration::buyers`]'s shape, report-year
    /// order) and the net amount inside the measures window.
    pub summaries: std::collections::BTreeMap<NaiveDate, (Vec<DataFrame>, i64)>,
}

/// Per-customer measures as of `date` ([`measures::measures_from_daily`]),
/// or those provided for that date.
/// Without `gaps` the median gap is left null (pyramid-only tierings).
pub fn measures_as_of(f: &Frames, date: NaiveDate, cfg: &Config, gaps: bool) -> Result<LazyFrame> {
    if let Some(m) = f.given.measures.get(&date) {
        return Ok(m.clone().lazy());
    }
    if let Some(m) = held_measures(f, date, cfg, sorted::Measured::All { gaps }) {
        return Ok(m?.lazy());
    }
    f.per_customer(|d, keys| measures_query(f, d, keys, date, cfg, gaps))
}

/// The measures as of `date` from the fast plan's held pre-aggregate, in
/// one scan ([`sorted::measures_sorted`]); `None` on other plans.
pub(super) fn held_measures(
    f: &Frames,
    date: NaiveDate,
    cfg: &Config,
    what: sorted::Measured,
) -> Option<Result<DataFrame>> {
    let Daily::Memory { daily, keys } = &f.daily else {
        return None;
    };
    let t = std::time::Instant::now();
    let m = sorted::measures_sorted(
        daily,
        keys,
        date,
        &cfg.measures,
        f.has_margin,
        f.has_quantity,
        what,
    );
    tracing::debug!(ms = t.elapsed().as_millis() as u64, %date, "measures");
    Some(
        m.map_err(Error::from)
            .and_then(crate::order::flag_sorted_ids),
    )
}

/// Part `i`'s measures as of `date` with the median gaps: one scan of its
/// pre-aggregate (spilled in (cid, day) order, [`Parts::build`]) by
/// [`sorted::measures_sorted`], in customer_id order, so that the part's
/// scoring merges rather than hashes and needs no sort afterwards.
pub(super) fn part_measures(
    f: &Frames,
    p: &Parts,
    i: usize,
    date: NaiveDate,
    cfg: &Config,
) -> Result<DataFrame> {
    let (daily, keys) = (p.daily(i)?.run()?, p.keys(i)?.run()?);
    let daily = held::Held::Whole(sorted::sort_daily(daily)?);
    let m = sorted::measures_sorted(
        &daily,
        &keys,
        date,
        &cfg.measures,
        f.has_margin,
        f.has_quantity,
        sorted::Measured::All { gaps: true },
    )?;
    crate::order::flag_sorted_ids(m)
}

pub(super) fn measures_query(
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
    /// ([`crate::daily::customer_keys`]). `q` must keep customers apart (group
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
        self.per_part_then(q, Ok)
    }

    /// [`Frames::per_part`], each part's result passed through `then`
    /// before the parts are stacked (the fast plan's whole result is not).
    fn per_part_then(
        &self,
        q: impl Fn(LazyFrame, LazyFrame, Option<Expr>) -> LazyFrame,
        then: impl Fn(DataFrame) -> Result<DataFrame>,
    ) -> Result<LazyFrame> {
        match &self.daily {
            Daily::Memory { daily, keys } => {
                Ok(q(daily.frame()?.lazy(), keys.clone().lazy(), None))
            }
            Daily::Released => Err(Error::Invariant(
                "the pre-aggregate was read after it was released".into(),
            )),
            Daily::Parts(p) => {
                let mut done = Vec::new();
                for i in 0..p.count() {
                    let part = q(p.daily(i)?, p.keys(i)?, Some(p.filter(i))).run()?;
                    done.push(then(part)?.lazy());
                }
                Ok(concat(done, UnionArgs::default())?)
            }
        }
    }

    /// [`Frames::per_part`] for `q` giving a row per customer: each part's
    /// rows put in customer_id order, so the parts stacked are too. An
    /// earlier tiering sorted whole afterwards took ~30% longer (10^8
    /// transactions: 14.0 s for three, against 11.3 s sorted by part).
    pub fn per_part_sorted(
        &self,
        q: impl Fn(LazyFrame, LazyFrame, Option<Expr>) -> LazyFrame,
    ) -> Result<LazyFrame> {
        self.per_part_then(q, crate::order::sorted_and_flagged)
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
                crate::io::sink_spill(lf, &path)?;
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

    pub(super) fn customers_in(&self, part: Option<Expr>) -> LazyFrame {
        filtered(self.customers.clone(), part)
    }
}

pub(super) fn filtered(lf: LazyFrame, part: Option<Expr>) -> LazyFrame {
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
