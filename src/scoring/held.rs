//! A held pre-aggregate as the one-pass scans of [`super::sorted`] read
//! it: one frame in (cid, day) order, or the store's per-file
//! pre-aggregates stacked as read, each customer's rows found by its id
//! runs. A night's history is then scanned where it lies instead of being
//! copied into merged order (a uniform 10^7 night: ~480 -> ~230 ms before
//! the scoring, ~90,000 fewer page faults).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use polars::prelude::*;

use crate::daily::Stacked;

/// A held pre-aggregate: one frame in (cid, day) order
/// ([`super::sorted::sort_daily`]), or the store's files stacked as read
/// ([`Stacked`]), whose scans read each customer's rows where they lie. [`Held::frame`] gives one frame
/// to the readers that need it (polars queries), merged once.
#[derive(Clone)]
pub enum Held {
    Whole(DataFrame),
    Stacked(Arc<StackedHeld>),
}

/// [`Held::Stacked`]'s files and their merge, made on first request.
pub struct StackedHeld {
    stacked: Stacked,
    merged: OnceLock<DataFrame>,
    /// Pieces of rows on which every column is one slice: the columns'
    /// chunk bounds together.
    bounds: Vec<usize>,
    /// Each customer's rows: `ranges[at[c]..at[c + 1]]` for cid `c`, as
    /// `(piece, lo, hi)`, file after file.
    at: Vec<usize>,
    ranges: Vec<(u32, u32, u32)>,
}

impl Held {
    /// `s` held stacked; merged at once when a column it scans has a null
    /// (the scans read values, and a merged frame's nulls become zeros).
    pub fn stacked(s: Stacked) -> PolarsResult<Held> {
        if s.rows.columns().iter().any(|c| c.null_count() > 0) {
            return Ok(Held::Whole(s.merged()?));
        }
        let bounds = chunk_bounds(&s.rows);
        let (at, ranges) = customer_ranges(&s, &bounds);
        Ok(Held::Stacked(Arc::new(StackedHeld {
            stacked: s,
            merged: OnceLock::new(),
            bounds,
            at,
            ranges,
        })))
    }

    /// The pre-aggregate as one frame in (cid, day) order, with `cid`.
    pub fn frame(&self) -> PolarsResult<DataFrame> {
        match self {
            Held::Whole(df) => Ok(df.clone()),
            Held::Stacked(s) => {
                if let Some(df) = s.merged.get() {
                    return Ok(df.clone());
                }
                let df = s.stacked.merged()?;
                Ok(s.merged.get_or_init(|| df).clone())
            }
        }
    }
}

/// One customer's rows in day order: the columns a scan reads (`margin`
/// and `units` empty when not read).
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) day: &'a [i32],
    pub(super) purchases: &'a [i64],
    pub(super) net: &'a [i64],
    pub(super) margin: &'a [i64],
    pub(super) units: &'a [f64],
}

/// Columns over one stretch of rows, each one slice.
pub(super) struct Cols<'a> {
    day: Cow<'a, [i32]>,
    purchases: Cow<'a, [i64]>,
    net: Cow<'a, [i64]>,
    margin: Cow<'a, [i64]>,
    units: Cow<'a, [f64]>,
}

impl Cols<'_> {
    fn rows(&self, lo: usize, hi: usize) -> Rows<'_> {
        Rows {
            day: &self.day[lo..hi],
            purchases: &self.purchases[lo..hi],
            net: &self.net[lo..hi],
            margin: if self.margin.is_empty() {
                &[]
            } else {
                &self.margin[lo..hi]
            },
            units: if self.units.is_empty() {
                &[]
            } else {
                &self.units[lo..hi]
            },
        }
    }

    fn all(&self) -> Rows<'_> {
        self.rows(0, self.day.len())
    }
}

/// What a scan reads of a [`Held`] pre-aggregate, customer by customer in
/// cid order.
pub(super) enum Source<'a> {
    /// One frame: its `cid` column and the columns.
    Whole {
        cid: Cow<'a, [IdxSize]>,
        cols: Cols<'a>,
    },
    /// Stacked files: pieces of rows on which every column is one slice
    /// (the columns' chunk bounds together), and each customer's ranges
    /// `(piece, lo, hi)`, `ranges[at[c]..at[c + 1]]` for cid `c`, file
    /// after file.
    Stacked {
        pieces: Vec<Cols<'a>>,
        at: &'a [usize],
        ranges: &'a [(u32, u32, u32)],
    },
}

/// A customer's rows gathered from several ranges, in day order.
#[derive(Default)]
pub(super) struct Scratch {
    rows: Vec<(i32, i64, i64, i64, f64)>,
    day: Vec<i32>,
    purchases: Vec<i64>,
    net: Vec<i64>,
    margin: Vec<i64>,
    units: Vec<f64>,
}

impl<'a> Source<'a> {
    /// The columns `held` is scanned for (margin and units only when asked).
    pub(super) fn of(held: &'a Held, margin: bool, units: bool) -> PolarsResult<Source<'a>> {
        match held {
            Held::Whole(df) => Ok(Source::Whole {
                cid: values(df.column("cid")?.idx()?, 0),
                cols: Cols {
                    day: values(df.column("ts")?.date()?.physical(), i32::MIN),
                    purchases: values(df.column("purchases")?.i64()?, 0),
                    net: values(df.column("net_cents")?.i64()?, 0),
                    margin: match margin {
                        true => values(df.column("margin_cents")?.i64()?, 0),
                        false => Cow::Owned(Vec::new()),
                    },
                    units: match units {
                        true => values(df.column("units")?.f64()?, 0.0),
                        false => Cow::Owned(Vec::new()),
                    },
                },
            }),
            Held::Stacked(s) => Source::stacked(s, margin, units),
        }
    }

    fn stacked(h: &'a StackedHeld, margin: bool, units: bool) -> PolarsResult<Source<'a>> {
        let (df, bounds) = (&h.stacked.rows, &h.bounds);
        let (day, purchases, net) = (
            slices(df.column("ts")?.date()?.physical(), bounds),
            slices(df.column("purchases")?.i64()?, bounds),
            slices(df.column("net_cents")?.i64()?, bounds),
        );
        let margin = margin
            .then(|| Ok::<_, PolarsError>(slices(df.column("margin_cents")?.i64()?, bounds)))
            .transpose()?;
        let units = units
            .then(|| Ok::<_, PolarsError>(slices(df.column("units")?.f64()?, bounds)))
            .transpose()?;
        let pieces = (0..bounds.len() - 1)
            .map(|p| Cols {
                day: Cow::Borrowed(day[p]),
                purchases: Cow::Borrowed(purchases[p]),
                net: Cow::Borrowed(net[p]),
                margin: Cow::Borrowed(margin.as_ref().map_or(&[][..], |m| m[p])),
                units: Cow::Borrowed(units.as_ref().map_or(&[][..], |u| u[p])),
            })
            .collect();
        Ok(Source::Stacked {
            pieces,
            at: &h.at,
            ranges: &h.ranges,
        })
    }

    /// The end of the one stretch of every customer.
    pub(super) fn end(&self) -> usize {
        match self {
            Source::Whole { cid, .. } => cid.len(),
            Source::Stacked { at, .. } => at.len() - 1,
        }
    }

    /// Every row, piece by piece (in no particular order).
    pub(super) fn pieces(&self) -> Vec<Rows<'_>> {
        match self {
            Source::Whole { cols, .. } => vec![cols.all()],
            Source::Stacked { pieces, .. } => pieces.iter().map(Cols::all).collect(),
        }
    }

    /// Bounds cutting the customers into about `n` stretches of about
    /// equal rows, for [`Source::each`].
    pub(super) fn stretches(&self, n: usize) -> Vec<usize> {
        let mut bounds = match self {
            Source::Whole { cid, .. } => {
                // Moved forward to the next customer's first row.
                let rows = cid.len();
                let mut bounds: Vec<usize> = (0..=n).map(|i| i * rows / n).collect();
                for b in bounds.iter_mut().take(n).skip(1) {
                    while *b < rows && *b > 0 && cid[*b] == cid[*b - 1] {
                        *b += 1;
                    }
                }
                bounds
            }
            Source::Stacked { at, ranges, .. } => {
                let customers = at.len() - 1;
                let rows: u64 = ranges.iter().map(|r| u64::from(r.2 - r.1)).sum();
                let mut bounds = vec![0];
                let mut seen = 0u64;
                for c in 0..customers {
                    if seen * n as u64 >= rows * bounds.len() as u64 {
                        bounds.push(c);
                    }
                    seen += ranges[at[c]..at[c + 1]]
                        .iter()
                        .map(|r| u64::from(r.2 - r.1))
                        .sum::<u64>();
                }
                bounds.push(customers);
                bounds
            }
        };
        bounds.dedup();
        bounds
    }

    /// `f(cid, rows)` for each customer of the stretch `lo..hi` (rows of
    /// a whole frame, customers of stacked files), in cid order, its rows
    /// in day order as one or more slices; an error when the rows are not
    /// in (cid, day) order.
    ///
    /// A stacked customer's ranges are given as they lie when each file's
    /// days come after the previous one's (a night's rows after its
    /// history: no copy), else gathered and sorted.
    pub(super) fn each(
        &self,
        lo: usize,
        hi: usize,
        scratch: &mut Scratch,
        mut f: impl FnMut(IdxSize, &[Rows]),
    ) -> PolarsResult<()> {
        match self {
            Source::Whole { cid, cols } => {
                let mut before: Option<IdxSize> = None;
                for (who, a, b) in runs(&cid[lo..hi]) {
                    let rows = cols.rows(lo + a, lo + b);
                    if before.is_some_and(|c| c > who) || rows.day.windows(2).any(|w| w[0] > w[1]) {
                        polars_bail!(ComputeError: "the pre-aggregate is not in (cid, day) order");
                    }
                    before = Some(who);
                    f(who, &[rows]);
                }
            }
            Source::Stacked { pieces, at, ranges } => {
                let mut segments: Vec<Rows> = Vec::new();
                for c in lo..hi {
                    segments.clear();
                    let mut in_order = true;
                    // Each range's days rise ([`crate::daily::stack_keyed`]
                    // checked them).
                    for &(p, a, b) in &ranges[at[c]..at[c + 1]] {
                        let rows = pieces[p as usize].rows(a as usize, b as usize);
                        // Ties as the merge puts them: the earlier file first.
                        in_order &= segments
                            .last()
                            .is_none_or(|l: &Rows| l.day.last() <= rows.day.first());
                        segments.push(rows);
                    }
                    match segments.len() {
                        0 => {}
                        _ if in_order => f(c as IdxSize, &segments),
                        _ => {
                            let ranges = &ranges[at[c]..at[c + 1]];
                            f(c as IdxSize, &[scratch.gather(pieces, ranges)])
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Scratch {
    /// The rows of `ranges` in day order, ties in range order (the order
    /// [`Stacked::merged`] puts them in).
    fn gather<'s>(&'s mut self, pieces: &[Cols], ranges: &[(u32, u32, u32)]) -> Rows<'s> {
        self.rows.clear();
        for &(p, a, b) in ranges {
            let r = pieces[p as usize].rows(a as usize, b as usize);
            for i in 0..r.day.len() {
                self.rows.push((
                    r.day[i],
                    r.purchases[i],
                    r.net[i],
                    r.margin.get(i).copied().unwrap_or(0),
                    r.units.get(i).copied().unwrap_or(0.0),
                ));
            }
        }
        // Stable: a day held by two files keeps their order.
        self.rows.sort_by_key(|r| r.0);
        let has = pieces.first().map_or((false, false), |c| {
            (!c.margin.is_empty(), !c.units.is_empty())
        });
        self.day.clear();
        self.purchases.clear();
        self.net.clear();
        self.margin.clear();
        self.units.clear();
        for &(d, p, n, m, u) in &self.rows {
            self.day.push(d);
            self.purchases.push(p);
            self.net.push(n);
            if has.0 {
                self.margin.push(m);
            }
            if has.1 {
                self.units.push(u);
            }
        }
        Rows {
            day: &self.day,
            purchases: &self.purchases,
            net: &self.net,
            margin: &self.margin,
            units: &self.units,
        }
    }
}

/// Every chunk bound of `df`'s columns, with 0 and its height, ascending.
fn chunk_bounds(df: &DataFrame) -> Vec<usize> {
    let mut bounds = vec![0, df.height()];
    for c in df.columns() {
        let mut at = 0;
        for n in c.as_materialized_series().chunk_lengths() {
            at += n;
            bounds.push(at);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    bounds
}

/// Each customer's rows of `s` as ranges within the pieces `bounds`:
/// `ranges[at[c]..at[c + 1]]` for cid `c`, file after file. Each run of
/// each file is cut at the pieces' bounds, counted, then placed under its
/// cid (the files' rows in stacked order, so the piece only moves on).
fn customer_ranges(s: &Stacked, bounds: &[usize]) -> (Vec<usize>, Vec<(u32, u32, u32)>) {
    fn each_range(s: &Stacked, bounds: &[usize], mut put: impl FnMut(IdxSize, u32, u32, u32)) {
        let mut piece = 0;
        for (k, runs) in s.runs.iter().enumerate() {
            let mut row = s.starts[k];
            for &(c, n) in runs {
                let end = row + n as usize;
                while row < end {
                    while bounds[piece + 1] <= row {
                        piece += 1;
                    }
                    let hi = end.min(bounds[piece + 1]);
                    let base = bounds[piece];
                    put(c, piece as u32, (row - base) as u32, (hi - base) as u32);
                    row = hi;
                }
            }
        }
    }
    let mut at = vec![0usize; s.customers + 1];
    each_range(s, bounds, |c, _, _, _| at[c as usize + 1] += 1);
    for c in 0..s.customers {
        at[c + 1] += at[c];
    }
    let mut next = at.clone();
    let mut ranges = vec![(0u32, 0u32, 0u32); at[s.customers]];
    each_range(s, bounds, |c, p, lo, hi| {
        ranges[next[c as usize]] = (p, lo, hi);
        next[c as usize] += 1;
    });
    (at, ranges)
}

/// `ca`'s values over each piece `bounds[p]..bounds[p + 1]`, each inside
/// one chunk.
fn slices<'a, T: PolarsNumericType>(
    ca: &'a ChunkedArray<T>,
    bounds: &[usize],
) -> Vec<&'a [T::Native]> {
    let mut out = Vec::with_capacity(bounds.len());
    let mut chunks = ca.downcast_iter();
    let (mut chunk, mut start): (&[T::Native], usize) = (&[], 0);
    for w in bounds.windows(2) {
        while w[0] >= start + chunk.len() && w[0] < w[1] {
            start += chunk.len();
            chunk = chunks.next().map_or(&[][..], |a| a.values().as_slice());
        }
        out.push(&chunk[(w[0] - start).min(chunk.len())..(w[1] - start).min(chunk.len())]);
    }
    out
}

/// A column's values as a slice, borrowed when one null-free chunk (as
/// the pre-aggregate's are); nulls become `fill` (the sums skip nulls, so
/// a zero adds the same).
fn values<T: PolarsNumericType>(ca: &ChunkedArray<T>, fill: T::Native) -> Cow<'_, [T::Native]> {
    match ca.cont_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(ca.iter().map(|v| v.unwrap_or(fill)).collect()),
    }
}

/// Each run of equal cids: `(cid, start, end)` (each customer's rows of
/// a [`super::sorted::sort_daily`] frame).
fn runs(cid: &[IdxSize]) -> impl Iterator<Item = (IdxSize, usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let who = *cid.get(start)?;
        let len = cid[start..].iter().take_while(|&&c| c == who).count();
        let run = (who, start, start + len);
        start += len;
        Some(run)
    })
}
