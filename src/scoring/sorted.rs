//! The measures of [`super::measures::measures_with_gaps`] computed in one
//! pass over a pre-aggregate held in (cid, day) order.
//!
//! polars' group-by hashes every row again for each date a run scores (the
//! snapshot, each auxiliary tiering, each date of a backfill): 3–4 s per
//! date at 10^7 pre-aggregate rows (`cargo bench --bench hot`). Sorted
//! once, each customer's rows are a contiguous run in day order, so a date
//! is one linear scan: the rows on or before it are a prefix of each run,
//! and the purchase days arrive in order for the median gap. Same columns,
//! types and values as the polars query (a test compares them on random
//! frames); rows come out in cid order, which is customer_id order.

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;

use crate::config::{FrequencyMode, MeasuresConfig, MonetaryMode};
use crate::scoring::held::{Held, Rows, Scratch, Source};
use crate::scoring::measures;
use crate::units::epoch_days;

/// `daily` ([`crate::daily::daily`]'s columns) in (cid, day) order, ties
/// by row: the order [`measures_sorted`] needs.
pub fn sort_daily(daily: DataFrame) -> crate::error::Result<DataFrame> {
    let cid = daily.column("cid")?.idx()?;
    let day = daily.column("ts")?.cast(&DataType::Int32)?;
    let day = day.i32()?;
    let mut keys: Vec<(u64, IdxSize)> = cid
        .iter()
        .zip(day.iter())
        .enumerate()
        .map(|(row, (c, d))| {
            // Days shifted to be non-negative, so the key orders by day
            // within a customer for any date.
            let d = (d.unwrap_or(i32::MIN) as i64 + (1i64 << 31)) as u64;
            (((c.unwrap_or(0) as u64) << 32) | d, row as IdxSize)
        })
        .collect();
    // The store's files arrive each in order (see `daily::keyed`): left
    // as is when one run, merged when a few (the standard stable sort
    // merges existing runs), sorted in parallel otherwise.
    let descents = keys.windows(2).filter(|w| w[1] < w[0]).count();
    match descents {
        0 => return Ok(daily),
        1..64 => keys.sort(),
        _ => keys.par_sort_unstable(),
    }
    let order = IdxCa::from_vec("order".into(), keys.into_iter().map(|k| k.1).collect());
    crate::order::permuted(daily, &order, false)
}

/// Per-customer sums of one date, in the order of the output columns.
#[derive(Default)]
struct Acc {
    first_p: Option<i32>,
    last_p: Option<i32>,
    first_any: i32,
    last_any: i32,
    frequency: i64,
    revenue: i64,
    spend: i64,
    prior: i64,
    contribution: i64,
    units: f64,
}

/// What [`measures_sorted`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measured {
    /// Every measure, the median gaps too when `gaps`.
    All { gaps: bool },
    /// Only what an earlier date's pyramid tiering reads: customer_id,
    /// first_purchase, revenue_cents and contribution_cents. A date's scan
    /// is bound by its per-row sums (HISTORY, forty-sixth run), and these
    /// are three of ten.
    Tiering,
}

/// The columns of [`Measured::Tiering`].
const TIERING: [&str; 4] = [
    "customer_id",
    "first_purchase",
    "revenue_cents",
    "contribution_cents",
];

/// The date's settings for [`Scan::customer`].
struct Scan<'a> {
    now: i32,
    cfg: &'a MeasuresConfig,
    what: Measured,
}

/// One stretch of whole customers: their cids, sums and median gaps.
type Stretch = (Vec<IdxSize>, Vec<Acc>, Vec<Option<f64>>);

impl Scan<'_> {
    /// The customers of `src`'s stretch `lo..hi`.
    fn stretch(&self, src: &Source, lo: usize, hi: usize) -> PolarsResult<Stretch> {
        let (mut who_all, mut accs, mut medians) = (Vec::new(), Vec::new(), Vec::new());
        let mut gaps: Vec<i64> = Vec::new();
        let mut scratch = Scratch::default();
        let narrow = self.what == Measured::Tiering;
        src.each(lo, hi, &mut scratch, |who, rows| {
            let customer = match narrow {
                true => self.customer::<true>(rows, &mut gaps),
                false => self.customer::<false>(rows, &mut gaps),
            };
            if let Some((a, m)) = customer {
                who_all.push(who);
                accs.push(a);
                medians.push(m);
            }
        })?;
        Ok((who_all, accs, medians))
    }

    /// One customer's sums and median gap as of the date, from its rows in
    /// day order (one or more slices); `None` without a row on or before
    /// the date. `NARROW`: only [`Measured::Tiering`]'s sums.
    fn customer<const NARROW: bool>(
        &self,
        rows: &[Rows],
        gaps: &mut Vec<i64>,
    ) -> Option<(Acc, Option<f64>)> {
        let now = self.now;
        let window = self.cfg.window_days;
        let span = window.unwrap_or(365) as i32;
        // Purchase gaps are collected only for a median.
        let want_gaps = self.what == (Measured::All { gaps: true });
        let first = *rows.first()?.day.first()?;
        if first > now {
            return None;
        }
        let mut a = Acc {
            first_any: first,
            ..Default::default()
        };
        let mut previous: Option<i32> = None;
        gaps.clear();
        for r in rows {
            // Days ascend: the rows on or before the date are a prefix.
            let cut = r.day.partition_point(|&d| d <= now);
            for (i, &d) in r.day.iter().enumerate().take(cut) {
                let bought = r.purchases[i] > 0;
                if NARROW {
                    if bought {
                        a.first_p.get_or_insert(d);
                    }
                    if window.is_none_or(|w| d > now - w as i32) {
                        a.revenue += r.net[i];
                        if let Some(m) = r.margin.get(i) {
                            a.contribution += m;
                        }
                    }
                    continue;
                }
                if bought {
                    a.first_p.get_or_insert(d);
                    a.last_p = Some(d);
                    if let Some(p) = previous
                        && want_gaps
                    {
                        gaps.push((d - p) as i64);
                    }
                    previous = Some(d);
                }
                if window.is_none_or(|w| d > now - w as i32) {
                    a.frequency += match self.cfg.frequency {
                        FrequencyMode::Orders => r.purchases[i],
                        FrequencyMode::Days => bought as i64,
                    };
                    a.revenue += r.net[i];
                    if let Some(m) = r.margin.get(i) {
                        a.contribution += m;
                    }
                }
                if d > now - span {
                    a.spend += r.net[i];
                }
                if d > now - 365 - span && d <= now - 365 {
                    a.prior += r.net[i];
                }
                if let Some(u) = r.units.get(i) {
                    a.units += u;
                }
            }
            if cut > 0 {
                a.last_any = r.day[cut - 1];
            }
            if cut < r.day.len() {
                break;
            }
        }
        let median = (!gaps.is_empty()).then(|| measures::median(gaps));
        Some((a, median))
    }
}

/// The customer_id of each of `cids`, from `keys` (in any order).
fn ids_of(keys: &DataFrame, cids: &[IdxSize]) -> PolarsResult<Column> {
    let key_cid = keys.column("cid")?.idx()?;
    let mut row_of = vec![IdxSize::MAX; key_cid.len()];
    for (row, c) in key_cid.iter().enumerate() {
        if let Some(c) = c {
            if c as usize >= row_of.len() {
                row_of.resize(c as usize + 1, IdxSize::MAX);
            }
            row_of[c as usize] = row as IdxSize;
        }
    }
    let rows: Vec<IdxSize> = cids
        .iter()
        .map(|&c| row_of.get(c as usize).copied().unwrap_or(IdxSize::MAX))
        .collect();
    if rows.contains(&IdxSize::MAX) {
        polars_bail!(ComputeError: "a pre-aggregate cid has no customer key");
    }
    Ok(keys
        .column("customer_id")?
        .take(&IdxCa::from_vec("rows".into(), rows))?
        .with_name("customer_id".into()))
}

/// [`crate::summaries::concentration::buyers`] of a [`sort_daily`] frame:
/// the customers with a purchase between `start` and `end` (both
/// included), with `__bought` and their net amount `year_cents`; rows in
/// cid order.
pub fn buyers_sorted(
    daily: &Held,
    keys: &DataFrame,
    start: NaiveDate,
    end: NaiveDate,
) -> PolarsResult<DataFrame> {
    let src = Source::of(daily, false, false)?;
    let (lo, hi) = (epoch_days(start), epoch_days(end));
    let (mut who, mut cents) = (Vec::new(), Vec::new());
    src.each(0, src.end(), &mut Scratch::default(), |c, rows| {
        let (mut bought, mut net) = (0i64, 0i64);
        for r in rows {
            let (from, to) = (
                r.day.partition_point(|&d| d < lo),
                r.day.partition_point(|&d| d <= hi),
            );
            bought += r.purchases[from..to].iter().sum::<i64>();
            net += r.net[from..to].iter().sum::<i64>();
        }
        if bought > 0 {
            who.push(c);
            cents.push(net);
        }
    })?;
    let n = who.len();
    DataFrame::new(
        n,
        vec![
            ids_of(keys, &who)?,
            BooleanChunked::full("__bought".into(), true, n).into_column(),
            Int64Chunked::from_vec("year_cents".into(), cents).into_column(),
        ],
    )
}

/// The customers (customer_id) of a [`sort_daily`] frame with a row on or
/// before `as_of`, and the net amount of the rows on or before `as_of`
/// inside the measures window (summed row by row, apart from the
/// per-customer measures, for the reconciliation invariant).
pub fn seen_and_window_cents(
    daily: &Held,
    keys: &DataFrame,
    as_of: NaiveDate,
    window_days: Option<u32>,
) -> PolarsResult<(Column, i64)> {
    let src = Source::of(daily, false, false)?;
    let now = epoch_days(as_of);
    let window = |d: i32| d <= now && window_days.is_none_or(|w| d > now - w as i32);
    let cents = src
        .pieces()
        .iter()
        .flat_map(|r| r.day.iter().zip(r.net))
        .filter(|(d, _)| window(**d))
        .map(|(_, n)| n)
        .sum();
    let mut seen: Vec<IdxSize> = Vec::new();
    src.each(0, src.end(), &mut Scratch::default(), |c, rows| {
        if rows[0].day[0] <= now {
            seen.push(c);
        }
    })?;
    Ok((ids_of(keys, &seen)?, cents))
}

/// [`Measured::Tiering`]'s columns of one date, gathered by
/// [`tiering_measures_sorted`]: 24 bytes a customer, where an [`Acc`] and
/// its median take ~90.
struct Narrow {
    who: Vec<IdxSize>,
    first: Vec<i32>,
    revenue: Vec<i64>,
    contribution: Vec<i64>,
}

impl Narrow {
    fn with_capacity(n: usize) -> Narrow {
        Narrow {
            who: Vec::with_capacity(n),
            first: Vec::with_capacity(n),
            revenue: Vec::with_capacity(n),
            contribution: Vec::with_capacity(n),
        }
    }
}

/// [`measures_sorted`] with [`Measured::Tiering`] for each of `dates`, in
/// one scan: each customer's rows are found, checked and read once for all
/// the dates. The earlier tierings of a cold run each scanned every row
/// (~110–150 ms a date at 10^7 uniform rows), most of it per customer
/// rather than per date. Frames as `measures_sorted` gives them, in the
/// order of `dates`.
pub fn tiering_measures_sorted(
    daily: &Held,
    keys: &DataFrame,
    dates: &[NaiveDate],
    cfg: &MeasuresConfig,
    has_margin: bool,
) -> PolarsResult<Vec<DataFrame>> {
    let src = Source::of(daily, has_margin, false)?;
    let scans: Vec<Scan> = dates
        .iter()
        .map(|d| Scan {
            now: epoch_days(*d),
            cfg,
            what: Measured::Tiering,
        })
        .collect();
    let bounds = src.stretches((rayon::current_num_threads() * 4).max(1));
    // Sized ahead from the stretch's share of the rows, and concatenated
    // into vectors of the exact size: vectors grown by doubling left ~0.1 GB
    // more of freed buffers kept for reuse (10^7 uniform rows).
    let (all_rows, customers) = (src.end().max(1), keys.height());
    let stretches = bounds
        .par_windows(2)
        .map(|w| {
            let guess = customers * (w[1] - w[0]) / all_rows + 1024;
            let mut out: Vec<Narrow> = scans.iter().map(|_| Narrow::with_capacity(guess)).collect();
            let (mut gaps, mut scratch) = (Vec::new(), Scratch::default());
            src.each(w[0], w[1], &mut scratch, |who, rows| {
                for (scan, o) in scans.iter().zip(&mut out) {
                    if let Some((a, _)) = scan.customer::<true>(rows, &mut gaps) {
                        o.who.push(who);
                        o.first.push(a.first_p.unwrap_or(a.first_any));
                        o.revenue.push(a.revenue);
                        o.contribution.push(match has_margin {
                            true => a.contribution,
                            false => a.revenue,
                        });
                    }
                }
            })?;
            Ok(out)
        })
        .collect::<PolarsResult<Vec<Vec<Narrow>>>>()?;
    // By date, each date's stretches in order.
    let mut by_date: Vec<Vec<Narrow>> = scans.iter().map(|_| Vec::new()).collect();
    for stretch in stretches {
        for (k, n) in stretch.into_iter().enumerate() {
            by_date[k].push(n);
        }
    }
    by_date
        .into_par_iter()
        .map(|parts| {
            let height = parts.iter().map(|p| p.who.len()).sum();
            let mut n = Narrow::with_capacity(height);
            for p in parts {
                if let (Some(&last), Some(&next)) = (n.who.last(), p.who.first())
                    && next <= last
                {
                    polars_bail!(ComputeError: "the pre-aggregate is not in (cid, day) order");
                }
                n.who.extend(p.who);
                n.first.extend(p.first);
                n.revenue.extend(p.revenue);
                n.contribution.extend(p.contribution);
            }
            DataFrame::new(
                height,
                vec![
                    ids_of(keys, &n.who)?,
                    Int32Chunked::from_vec("first_purchase".into(), n.first)
                        .into_column()
                        .cast(&DataType::Date)?,
                    Int64Chunked::from_vec("revenue_cents".into(), n.revenue).into_column(),
                    Int64Chunked::from_vec("contribution_cents".into(), n.contribution)
                        .into_column(),
                ],
            )
        })
        .collect()
}

/// [`super::measures::measures_with_gaps`] of a [`sort_daily`] frame and
/// its `keys` ([`crate::daily::customer_keys`]). Stretches of whole
/// customers are scanned in parallel.
pub fn measures_sorted(
    daily: &Held,
    keys: &DataFrame,
    as_of: NaiveDate,
    cfg: &MeasuresConfig,
    has_margin: bool,
    has_quantity: bool,
    what: Measured,
) -> PolarsResult<DataFrame> {
    let narrow = what == Measured::Tiering;
    // The tiering reads no units.
    let src = Source::of(daily, has_margin, has_quantity && !narrow)?;
    let scan = Scan {
        now: epoch_days(as_of),
        cfg,
        what,
    };
    let now = scan.now;
    let bounds = src.stretches((rayon::current_num_threads() * 4).max(1));
    let stretches = bounds
        .par_windows(2)
        .map(|w| scan.stretch(&src, w[0], w[1]))
        .collect::<PolarsResult<Vec<Stretch>>>()?;
    let (mut out_cid, mut accs, mut medians) = (Vec::new(), Vec::new(), Vec::new());
    for (c, a, m) in stretches {
        if let (Some(&last), Some(&next)) = (out_cid.last(), c.first())
            && next <= last
        {
            polars_bail!(ComputeError: "the pre-aggregate is not in (cid, day) order");
        }
        out_cid.extend(c);
        accs.extend(a);
        medians.extend(m);
    }

    // Each column built on the pool: one after another they were ~0.1 s
    // of one core at 10^6 customers, the other core idle.
    let first: Vec<i32> = accs
        .iter()
        .map(|a| a.first_p.unwrap_or(a.first_any))
        .collect();
    let last: Vec<i32> = accs
        .iter()
        .map(|a| a.last_p.unwrap_or(a.last_any))
        .collect();
    let int32 = |name: &str, v: Vec<i32>| Int32Chunked::from_vec(name.into(), v).into_column();
    let int64 = |name: &'static str, pick: fn(&Acc) -> i64| {
        Int64Chunked::from_vec(name.into(), accs.iter().map(pick).collect()).into_column()
    };
    let date = |name: &str, v: &[i32]| -> PolarsResult<Column> {
        int32(name, v.to_vec()).cast(&DataType::Date)
    };
    let monetary = |a: &Acc| match cfg.monetary {
        MonetaryMode::Sum => a.revenue,
        // f64::round is half away from zero, as the query's round.
        MonetaryMode::Mean if a.frequency > 0 => {
            (a.revenue as f64 / a.frequency as f64).round() as i64
        }
        MonetaryMode::Mean => a.revenue,
    };
    let height = accs.len();
    type Build<'b> = Box<dyn Fn() -> PolarsResult<Column> + Send + Sync + 'b>;
    let builds: Vec<(&str, Build)> = vec![
        (
            "customer_id",
            Box::new(|| Ok(ids_of(keys, &out_cid)?.with_name("customer_id".into()))),
        ),
        (
            "first_purchase",
            Box::new(|| date("first_purchase", &first)),
        ),
        ("last_purchase", Box::new(|| date("last_purchase", &last))),
        (
            "recency_days",
            Box::new(|| {
                Ok(int32(
                    "recency_days",
                    last.iter().map(|d| now - d).collect(),
                ))
            }),
        ),
        (
            "frequency",
            Box::new(|| Ok(int64("frequency", |a| a.frequency))),
        ),
        (
            "revenue_cents",
            Box::new(|| Ok(int64("revenue_cents", |a| a.revenue))),
        ),
        (
            "monetary_cents",
            Box::new(|| {
                Ok(Int64Chunked::from_vec(
                    "monetary_cents".into(),
                    accs.iter().map(monetary).collect(),
                )
                .into_column())
            }),
        ),
        (
            "tenure_days",
            Box::new(|| {
                Ok(int32(
                    "tenure_days",
                    first.iter().map(|d| now - d).collect(),
                ))
            }),
        ),
        (
            "contribution_cents",
            Box::new(|| {
                Ok(match has_margin {
                    true => int64("contribution_cents", |a| a.contribution),
                    false => int64("contribution_cents", |a| a.revenue),
                })
            }),
        ),
        (
            "window_spend_cents",
            Box::new(|| Ok(int64("window_spend_cents", |a| a.spend))),
        ),
        (
            "window_spend_prior_cents",
            Box::new(|| Ok(int64("window_spend_prior_cents", |a| a.prior))),
        ),
        (
            "median_gap_days",
            Box::new(|| {
                Ok(Float64Chunked::from_iter_options(
                    "median_gap_days".into(),
                    medians.iter().copied(),
                )
                .into_column())
            }),
        ),
        (
            "units_bought",
            Box::new(|| {
                Ok(if has_quantity {
                    Float64Chunked::from_vec(
                        "units_bought".into(),
                        accs.iter().map(|a| a.units).collect(),
                    )
                    .into_column()
                } else {
                    Float64Chunked::full_null("units_bought".into(), height).into_column()
                })
            }),
        ),
    ];
    let columns = builds
        .par_iter()
        .filter(|(name, _)| !narrow || TIERING.contains(name))
        .map(|(_, b)| b())
        .collect::<PolarsResult<Vec<Column>>>()?;
    DataFrame::new(height, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Measured = Measured::All { gaps: true };
    use crate::io::Run;
    use crate::scoring::measures::{self, measures_with_gaps};
    use chrono::Datelike;

    /// A pre-aggregate of `customers` over two years with repeated and
    /// zero-purchase days, negative amounts and missing units.
    fn daily(customers: u32, rows: usize, seed: u64) -> (DataFrame, DataFrame) {
        let mut lcg = crate::testing::lcg(seed);
        let mut next = move |m: u64| lcg() as u64 % m;
        let start = epoch_days(NaiveDate::from_ymd_opt(2009, 6, 1).unwrap());
        let mut seen = std::collections::BTreeSet::new();
        let (mut cid, mut ts, mut p, mut net, mut margin, mut units) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..rows {
            let c = next(customers as u64) as IdxSize;
            let d = start + next(900) as i32;
            if !seen.insert((c, d)) {
                continue;
            }
            cid.push(c);
            ts.push(d);
            p.push(next(3) as i64);
            net.push(next(100_000) as i64 - 20_000);
            margin.push(next(9_000) as i64 - 1_000);
            units.push((next(4) != 0).then(|| next(7) as f64 * 0.5));
        }
        let daily = df!(
            "cid" => cid,
            "ts" => ts,
            "purchases" => p,
            "net_cents" => net,
            "margin_cents" => margin,
            "units" => units,
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Date))
        .collect()
        .unwrap();
        // Keys in an order other than cid's, as any frame may hold them.
        let keys = df!(
            "cid" => (0..customers).rev().collect::<Vec<IdxSize>>(),
            "customer_id" => (0..customers).rev().map(|c| format!("c{c:04}")).collect::<Vec<_>>(),
        )
        .unwrap();
        (daily, keys)
    }

    #[test]
    fn equals_the_group_by_query_on_random_frames() {
        let (daily, keys) = daily(300, 6_000, 11);
        let sorted = Held::Whole(sort_daily(daily.clone()).unwrap());
        let as_ofs = [
            NaiveDate::from_ymd_opt(2009, 5, 1).unwrap(),
            NaiveDate::from_ymd_opt(2010, 6, 30).unwrap(),
            NaiveDate::from_ymd_opt(2011, 12, 31).unwrap(),
        ];
        let mut compared = 0;
        for as_of in as_ofs {
            for window_days in [None, Some(90), Some(400)] {
                for frequency in [FrequencyMode::Orders, FrequencyMode::Days] {
                    for monetary in [MonetaryMode::Sum, MonetaryMode::Mean] {
                        for (margin, quantity, gaps) in [
                            (true, true, true),
                            (false, false, false),
                            (true, false, true),
                        ] {
                            let cfg = MeasuresConfig {
                                window_days,
                                frequency,
                                monetary,
                                ..Default::default()
                            };
                            let d = if margin {
                                daily.clone()
                            } else {
                                daily.drop("margin_cents").unwrap()
                            };
                            let want = measures_with_gaps(
                                d.lazy(),
                                keys.clone().lazy(),
                                as_of,
                                &cfg,
                                margin,
                                quantity,
                                gaps,
                            )
                            .sort(["customer_id"], Default::default())
                            .run()
                            .unwrap();
                            let scan = |what| {
                                measures_sorted(&sorted, &keys, as_of, &cfg, margin, quantity, what)
                                    .unwrap()
                            };
                            let got = scan(Measured::All { gaps });
                            assert_eq!(got.schema(), want.schema());
                            assert!(
                                got.equals_missing(&want),
                                "{as_of} {window_days:?} {frequency:?} {monetary:?} {margin} {quantity} {gaps}\n{got}\n{want}"
                            );
                            compared += got.height();
                            // The tiering's scan: the same rows and values.
                            let narrow = scan(Measured::Tiering);
                            assert!(narrow.equals_missing(&got.select(TIERING).unwrap()));
                        }
                    }
                }
            }
        }
        // Not vacuous: the early date sees no customer, the others most.
        assert!(compared > 300 * 2 * 3 * 2 * 2 * 3 / 2, "{compared}");
    }

    #[test]
    fn buyers_and_window_equal_the_group_by_queries() {
        use crate::summaries::concentration::{ReportYear, buyers};
        let (daily, keys) = daily(300, 6_000, 5);
        let sorted = Held::Whole(sort_daily(daily.clone()).unwrap());
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        for (start, end) in [
            (d(2010, 1, 1), d(2010, 12, 31)),
            (d(2011, 1, 1), d(2011, 3, 31)),
        ] {
            let ry = ReportYear {
                year: end.year(),
                start,
                end,
                tiered_at: end,
            };
            let want = buyers(daily.clone().lazy(), keys.clone().lazy(), &ry)
                .sort(["customer_id"], Default::default())
                .run()
                .unwrap();
            let got = buyers_sorted(&sorted, &keys, start, end).unwrap();
            assert!(want.height() > 50, "{}", want.height());
            assert!(got.equals_missing(&want), "{got}\n{want}");
        }
        for (as_of, window) in [(d(2010, 6, 30), Some(90)), (d(2011, 12, 31), None)] {
            let (seen, cents) = seen_and_window_cents(&sorted, &keys, as_of, window).unwrap();
            let cut = daily.clone().lazy().filter(measures::on_or_before(as_of));
            let want_cents = cut
                .clone()
                .filter(measures::in_window(as_of, window))
                .select([col("net_cents").sum()])
                .run()
                .unwrap();
            assert_eq!(
                Some(cents),
                want_cents
                    .column("net_cents")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .get(0)
            );
            let want_seen = cut
                .select([col("cid")])
                .unique(None, UniqueKeepStrategy::Any)
                .run()
                .unwrap();
            assert_eq!(seen.len(), want_seen.height());
        }
    }

    /// `daily`'s rows dealt into three store files (most into the first,
    /// as a history and two nights: at random, or by day after `by_day`'s
    /// two days), each with customer_id, sorted by it and the day, read
    /// back in several chunks, and given as the store keeps them: without
    /// customer_id or cid, with their id runs.
    fn store_files(
        daily: &DataFrame,
        keys: &DataFrame,
        seed: u64,
        by_day: Option<(i32, i32)>,
    ) -> Vec<(DataFrame, DataFrame)> {
        let mut next = crate::testing::lcg(seed);
        let days = daily
            .column("ts")
            .unwrap()
            .date()
            .unwrap()
            .physical()
            .clone();
        let file: Vec<u32> = days
            .into_no_null_iter()
            .map(|d| match (by_day, next() % 20) {
                (Some((a, b)), _) => (d >= a) as u32 + (d >= b) as u32,
                (None, 0) => 2,
                (None, 1..=3) => 1,
                (None, _) => 0,
            })
            .collect();
        let with_ids = daily
            .clone()
            .lazy()
            .with_column(Series::new("file".into(), file).lit())
            .join(
                keys.clone().lazy(),
                [col("cid")],
                [col("cid")],
                JoinArgs::new(JoinType::Left),
            )
            .run()
            .unwrap();
        (0..3u32)
            .map(|k| {
                let f = with_ids
                    .clone()
                    .lazy()
                    .filter(col("file").eq(lit(k)))
                    .sort(["customer_id", "ts"], Default::default())
                    .select([
                        col("customer_id"),
                        col("ts"),
                        col("purchases"),
                        col("net_cents"),
                        col("margin_cents"),
                        col("units"),
                    ])
                    .run()
                    .unwrap();
                let runs = crate::daily::id_runs(&f).unwrap().unwrap();
                // Row groups of 37 rows, so that runs cross chunk bounds.
                let mut chunked = f.slice(0, 0);
                for at in (0..f.height()).step_by(37) {
                    chunked.vstack_mut(&f.slice(at as i64, 37)).unwrap();
                }
                (chunked.drop("customer_id").unwrap(), runs)
            })
            .collect()
    }

    /// The store's files held stacked scan as their merge into one frame
    /// does, and as the whole pre-aggregate sorted does: customers in
    /// several files, runs cut by row groups. With a null the files are
    /// merged at once (the scans read values).
    #[test]
    fn many_dates_in_one_scan_equal_each_date_scanned_alone() {
        let (daily, keys) = daily(300, 6_000, 23);
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let whole = Held::Whole(sort_daily(daily.clone()).unwrap());
        let (stacked, stacked_keys) =
            crate::daily::stack_keyed(store_files(&daily, &keys, 3, None))
                .unwrap()
                .unwrap();
        let merged = Held::Whole(stacked.merged().unwrap());
        // Out of order, one before every row (no customer), one after all.
        let dates = [d(2010, 6, 30), d(2009, 5, 1), d(2012, 1, 1), d(2009, 8, 1)];
        for (held, keys) in [(&whole, &keys), (&merged, &stacked_keys)] {
            for window_days in [None, Some(90)] {
                let cfg = MeasuresConfig {
                    window_days,
                    ..Default::default()
                };
                for margin in [true, false] {
                    let got = tiering_measures_sorted(held, keys, &dates, &cfg, margin).unwrap();
                    assert_eq!(got.len(), dates.len());
                    for (as_of, got) in dates.iter().zip(&got) {
                        let want = measures_sorted(
                            held,
                            keys,
                            *as_of,
                            &cfg,
                            margin,
                            true,
                            Measured::Tiering,
                        )
                        .unwrap();
                        assert_eq!(got.height() == 0, *as_of == d(2009, 5, 1));
                        assert!(
                            got.equals_missing(&want),
                            "{as_of} {window_days:?} {margin}\n{got}\n{want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn stacked_files_scan_as_the_sorted_whole() {
        let (daily, keys) = daily(300, 6_000, 11);
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let no_nulls = daily
            .clone()
            .lazy()
            .with_column(col("units").fill_null(lit(1.5)))
            .run()
            .unwrap();
        let whole = Held::Whole(sort_daily(no_nulls.clone()).unwrap());
        let cfg = MeasuresConfig {
            window_days: Some(400),
            ..Default::default()
        };
        // Dealt at random (a customer's files interleave: gathered), and by
        // day (each file after the last: read where they lie).
        let start = epoch_days(d(2009, 6, 1));
        for by_day in [None, Some((start + 600, start + 800))] {
            let files = store_files(&no_nulls, &keys, 3, by_day);
            let (stacked, stacked_keys) = crate::daily::stack_keyed(files).unwrap().unwrap();
            // Customers in two files or more, runs cut by chunks.
            let mut files_of = vec![0; stacked.customers];
            for &(c, _) in stacked.runs.iter().flatten() {
                files_of[c as usize] += 1;
            }
            assert!(files_of.iter().filter(|&&n| n > 1).count() > 50);
            assert!(stacked.rows.column("ts").unwrap().n_chunks() > 10);
            let merged = Held::Whole(stacked.merged().unwrap());
            let held = Held::stacked(stacked).unwrap();
            assert!(matches!(held, Held::Stacked(_)));
            assert!(held.frame().unwrap().equals(&merged.frame().unwrap()));
            for as_of in [d(2009, 8, 1), d(2010, 12, 31), d(2012, 1, 1)] {
                let want = measures_sorted(&whole, &keys, as_of, &cfg, true, true, ALL).unwrap();
                for h in [&held, &merged] {
                    let got =
                        measures_sorted(h, &stacked_keys, as_of, &cfg, true, true, ALL).unwrap();
                    assert!(got.height() > 0);
                    assert!(got.equals_missing(&want), "{as_of}\n{got}\n{want}");
                }
                let (seen, cents) =
                    seen_and_window_cents(&held, &stacked_keys, as_of, Some(90)).unwrap();
                let (want_seen, want_cents) =
                    seen_and_window_cents(&whole, &keys, as_of, Some(90)).unwrap();
                assert!(seen.equals(&want_seen) && cents == want_cents, "{as_of}");
                let got = buyers_sorted(&held, &stacked_keys, d(2009, 1, 1), as_of).unwrap();
                let want = buyers_sorted(&whole, &keys, d(2009, 1, 1), as_of).unwrap();
                assert!(got.equals(&want), "{as_of}");
            }
        }
        // A null: held merged.
        let (stacked, _) = crate::daily::stack_keyed(store_files(&daily, &keys, 3, None))
            .unwrap()
            .unwrap();
        assert!(matches!(Held::stacked(stacked).unwrap(), Held::Whole(_)));
    }

    #[test]
    fn one_customer_by_hand() {
        // Days 100 (2 orders, 500), 150 (refund only, -200), 300 (1 order,
        // 700) as of day 310 with a 200-day window (days after 110):
        // frequency 1, revenue and spend 500 (the refund counts), nothing
        // a year earlier, purchases on 100 and 300 (gap 200), first 100,
        // last 300.
        let day =
            |n: i32| NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(n as u64);
        let daily = df!(
            "cid" => [0 as IdxSize, 0, 0],
            "ts" => [300i32, 100, 150],
            "purchases" => [1i64, 2, 0],
            "net_cents" => [700i64, 500, -200],
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Date))
        .collect()
        .unwrap();
        let keys = df!("cid" => [0 as IdxSize], "customer_id" => ["a"]).unwrap();
        let cfg = MeasuresConfig {
            window_days: Some(200),
            ..Default::default()
        };
        let out = measures_sorted(
            &Held::Whole(sort_daily(daily).unwrap()),
            &keys,
            day(310),
            &cfg,
            false,
            false,
            ALL,
        )
        .unwrap();
        let get = |c: &str| {
            out.column(c)
                .unwrap()
                .cast(&DataType::Float64)
                .unwrap()
                .f64()
                .unwrap()
                .get(0)
        };
        assert_eq!(get("frequency"), Some(1.0));
        assert_eq!(get("revenue_cents"), Some(500.0));
        assert_eq!(get("recency_days"), Some(10.0));
        assert_eq!(get("tenure_days"), Some(210.0));
        assert_eq!(get("median_gap_days"), Some(200.0));
        assert_eq!(get("window_spend_cents"), Some(500.0));
        assert_eq!(get("window_spend_prior_cents"), Some(0.0));
    }
}
