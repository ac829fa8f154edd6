//! The customer × day pre-aggregate of transactions: built per stored
//! file, merged where files share days, keyed on a dense customer number,
//! and cut into customer_id ranges for the lean plan.

use polars::prelude::*;
use rayon::prelude::*;

use crate::io::Run;

/// Every customer of `txns` once, with `cid`: a dense integer numbered in
/// customer_id order. The pre-aggregate and every per-customer query key
/// on `cid`, so groups, joins and sorts run on 32-bit integers rather than
/// on text; `customer_id` is joined back once per result.
pub fn customer_keys(txns: LazyFrame) -> LazyFrame {
    txns.select([col("customer_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .sort(["customer_id"], Default::default())
        .with_row_index("cid", None)
}

/// The customer × day pre-aggregate every measure is computed from:
/// `cid` (from `keys`, [`customer_keys`] of the same transactions), `ts`,
/// `purchases` (purchase orders that day), `net_cents`, and when present
/// `margin_cents` and `units` (quantity of purchases). Built once per run
/// (or backfill) so that scoring several dates never rescans transactions.
pub fn daily(txns: LazyFrame, keys: LazyFrame, has_margin: bool, has_quantity: bool) -> LazyFrame {
    keyed(daily_by_id(txns, has_margin, has_quantity), keys)
}

/// [`daily`] still keyed by `customer_id` (see [`keyed`]).
pub fn daily_by_id(txns: LazyFrame, has_margin: bool, has_quantity: bool) -> LazyFrame {
    // Conditions are masked columns and every aggregation a plain sum (see
    // `measures_with_gaps`).
    let mut masked = vec![is_purchase().cast(DataType::Int64).alias("__purchase")];
    let mut aggs = vec![
        col("__purchase").sum().alias("purchases"),
        col("amount_cents").sum().alias("net_cents"),
    ];
    if has_margin {
        aggs.push(col("margin_cents").sum().alias("margin_cents"));
    }
    if has_quantity {
        // Null, not zero, outside purchases: the sum then adds exactly the
        // same floats as before.
        masked.push(
            when(is_purchase())
                .then(col("quantity").cast(DataType::Float64))
                .otherwise(lit(NULL))
                .alias("__units"),
        );
        aggs.push(col("__units").sum().cast(DataType::Float64).alias("units"));
    }
    txns.with_columns(masked)
        .group_by([col("customer_id"), col("ts")])
        .agg(aggs)
}

/// [`daily_by_id`] of the typed rows `rows` (with customer_id, ts,
/// amount_cents and, when asked for, margin_cents and quantity), rows in
/// (customer_id, day) order: a sort of the rows ([`crate::order`]) then
/// sums over each run of equal keys. The store writes its pre-aggregates
/// so sorted anyway; sorting first makes the group-by a walk, with no hash
/// table of text keys (at 10^7 barely-aggregating rows that table was the
/// cold run's memory peak). Sums add a group's rows in row order. `None`
/// when customer_id or ts hold nulls (the caller then uses
/// [`daily_by_id`]).
///
/// `rows` is read twice, key columns then value columns (a Parquet scan
/// reads each column once either way), so the sort never holds the
/// amounts: at 10^7 rows of 10^4 customers, whose rows aggregate well,
/// the peak stays near polars' streaming group-by's.
pub fn daily_sorted(
    rows: LazyFrame,
    has_margin: bool,
    has_quantity: bool,
) -> crate::error::Result<Option<DataFrame>> {
    let mut keys = rows.clone().select([col("customer_id"), col("ts")]).run()?;
    if keys.column("customer_id")?.null_count() > 0 || keys.column("ts")?.null_count() > 0 {
        return Ok(None);
    }
    // One chunk per column: a gather across a reader's ~100 chunks looks up
    // each row's chunk first (several times slower).
    keys.rechunk_mut_par();
    let crate::order::Groups {
        order,
        starts,
        keys: packed,
    } = crate::order::groups_by_id(&keys, "ts")?;
    let groups = starts.len();
    let (ids, ts) = match packed {
        // From the sorted keys: each id gathered once, then repeated over
        // its days (a gather in order), and the days read off the keys.
        // Both gathered at random from the rows instead: 0.14-0.32 s more
        // CPU at 10^7 groups (`benches/hot.rs`, "store's pre-aggregate").
        Some(g) if keys.column("ts")?.dtype() == &DataType::Date => {
            let firsts: Vec<IdxSize> = (0..groups)
                .filter(|&i| i == 0 || g.id_number[i] != g.id_number[i - 1])
                .map(|i| order[starts[i] as usize])
                .collect();
            let once = keys
                .column("customer_id")?
                .take(&IdxCa::from_vec("firsts".into(), firsts))?;
            let ids = once.take(&IdxCa::from_vec("ids".into(), g.id_number))?;
            let ts = Int32Chunked::from_vec("ts".into(), g.then).into_date();
            (ids, ts.into_column())
        }
        _ => {
            let firsts = IdxCa::from_vec(
                "firsts".into(),
                starts.iter().map(|&s| order[s as usize]).collect(),
            );
            let (ids, ts) = rayon::join(
                || keys.column("customer_id")?.take(&firsts),
                || keys.column("ts")?.take(&firsts),
            );
            (ids?, ts?)
        }
    };
    drop(keys);
    let mut values = vec![col("amount_cents")];
    values.extend(has_margin.then(|| col("margin_cents")));
    values.extend(has_quantity.then(|| col("quantity")));
    let mut df = rows.select(values).run()?;
    if df.height() != order.len() {
        return Err(crate::error::Error::Invariant(format!(
            "the typed rows read {} then {} rows",
            order.len(),
            df.height()
        )));
    }
    df.rechunk_mut_par();
    let amount = df.column("amount_cents")?.i64()?.rechunk();
    let amount = amount.downcast_as_array();
    let margin = match has_margin {
        true => Some(df.column("margin_cents")?.i64()?.rechunk()),
        false => None,
    };
    let margin = margin.as_ref().map(|m| m.downcast_as_array());
    let quantity = match has_quantity {
        true => Some(df.column("quantity")?.cast(&DataType::Float64)?),
        false => None,
    };
    let quantity = quantity
        .as_ref()
        .map(|q| q.f64().map(|q| q.rechunk()))
        .transpose()?;
    let quantity = quantity.as_ref().map(|q| q.downcast_as_array());
    // Every sum of a group in one walk over its rows, groups split across
    // threads; a group's rows are added in row order. The walk reads the
    // value columns at random (10^7 rows: ~80 MB a column), so the values
    // of the row 32 places on are asked for ahead: waiting for memory was
    // most of it (10^7 Zipf rows: 0.7 -> 0.35 s).
    let group = |g: usize| -> ((i64, i64), (i64, f64)) {
        let a = starts[g] as usize;
        let b = starts.get(g + 1).map_or(order.len(), |&e| e as usize);
        let (mut purchases, mut net, mut margin_sum, mut units) = (0i64, 0i64, 0i64, 0.0f64);
        for (i, &r) in order[a..b].iter().enumerate() {
            if let Some(&ahead) = order.get(a + i + 32) {
                let ahead = ahead as usize;
                prefetch(amount.values().as_ptr().wrapping_add(ahead));
                if let Some(m) = margin {
                    prefetch(m.values().as_ptr().wrapping_add(ahead));
                }
                if let Some(q) = quantity {
                    prefetch(q.values().as_ptr().wrapping_add(ahead));
                }
            }
            let r = r as usize;
            let has_amount = amount.validity().is_none_or(|v| v.get_bit(r));
            let v = amount.value(r);
            net += if has_amount { v } else { 0 };
            let bought = has_amount && v > 0;
            purchases += bought as i64;
            if let Some(m) = margin
                && m.validity().is_none_or(|v| v.get_bit(r))
            {
                margin_sum += m.value(r);
            }
            if let Some(q) = quantity
                && bought
                && q.validity().is_none_or(|v| v.get_bit(r))
            {
                units += q.value(r);
            }
        }
        ((purchases, net), (margin_sum, units))
    };
    type Sums = ((Vec<i64>, Vec<i64>), (Vec<i64>, Vec<f64>));
    let sums: Sums = (0..groups)
        .into_par_iter()
        .with_min_len(1 << 14)
        .map(group)
        .unzip();
    let ((purchases, net), (margin, units)) = sums;
    let purchases = Int64Chunked::from_vec("purchases".into(), purchases).into_column();
    let net = Int64Chunked::from_vec("net_cents".into(), net).into_column();
    let margin =
        has_margin.then(|| Int64Chunked::from_vec("margin_cents".into(), margin).into_column());
    let units = has_quantity.then(|| Float64Chunked::from_vec("units".into(), units).into_column());
    let mut columns = vec![ids, ts, purchases, net];
    columns.extend(margin);
    columns.extend(units);
    Ok(Some(DataFrame::new(groups, columns)?))
}

/// Asks for the cache line holding `p` (a hint: no effect on results).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`daily_by_id`] frames of several sources stacked, summed per customer
/// and day (the same day's rows may come from several files).
pub fn merge_daily(by_id: LazyFrame, has_margin: bool, has_quantity: bool) -> LazyFrame {
    let mut aggs = vec![col("purchases").sum(), col("net_cents").sum()];
    if has_margin {
        aggs.push(col("margin_cents").sum());
    }
    if has_quantity {
        aggs.push(col("units").sum());
    }
    by_id.group_by([col("customer_id"), col("ts")]).agg(aggs)
}

/// A [`daily_by_id`] frame with `customer_id` replaced by its `cid` in
/// `keys`, rows in their order: the store's pre-aggregates are sorted by
/// customer_id and day, and `cid`s are numbered in customer_id order, so
/// each stays in (cid, day) order ([`crate::scoring::sorted::sort_daily`]
/// then only merges them).
pub fn keyed(daily_by_id: LazyFrame, keys: LazyFrame) -> LazyFrame {
    let mut args = JoinArgs::new(JoinType::Inner);
    args.maintain_order = MaintainOrderJoin::Left;
    daily_by_id
        .join(keys, [col("customer_id")], [col("customer_id")], args)
        .drop(cols(["customer_id"]))
}

/// The store's per-file pre-aggregates ([`daily_by_id`] frames, each
/// sorted by customer_id and day, no day in two files) as one keyed
/// pre-aggregate in (cid, day) order and its keys ([`customer_keys`]'s
/// columns): a merge of the sorted files that numbers the customers as it
/// goes, with no hashing of the ids (at 10^7 rows ~2 s less than keys,
/// join and sort). `None` when a file is not in that order (a store
/// written before it was kept so).
pub fn merge_sorted(files: Vec<DataFrame>) -> PolarsResult<Option<(DataFrame, DataFrame)>> {
    let Some(mut all) = files.first().map(|f| f.clear()) else {
        return Ok(None);
    };
    let mut starts = Vec::with_capacity(files.len());
    let count = files.len();
    // Moved in, so that the files' frames are gone once made contiguous.
    for f in files {
        starts.push(all.height());
        all.vstack_mut_owned(f)?;
    }
    if count == 1 {
        all.rechunk_mut_par();
    } else {
        // The merge reads the ids through their chunks and the days made
        // contiguous. The sums are gathered straight from the files' row
        // groups in merged order (`order::permuted`): one copy of them
        // rather than two. A contiguous copy of the ids took 70–480 ms of
        // a uniform 10^7 night (160 MB of fresh memory).
        let ts = all.column("ts")?.rechunk();
        all.with_column(ts)?;
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([all.height()])
        .collect();
    let Some((order, firsts, cid)) = merge_order(&all, &starts, &ends)? else {
        return Ok(None);
    };
    let customers = firsts.len();
    let keys = DataFrame::new(
        customers,
        vec![
            IdxCa::from_vec("cid".into(), (0..customers as IdxSize).collect()).into_column(),
            all.column("customer_id")?
                .take(&IdxCa::from_vec("firsts".into(), firsts))?,
        ],
    )?;
    drop(all.drop_in_place("customer_id")?);
    let mut daily = if count == 1 {
        all
    } else {
        crate::order::permuted(all, &IdxCa::from_vec("order".into(), order), false)
            .map_err(|e| polars_err!(ComputeError: "{e}"))?
    };
    daily.with_column(IdxCa::from_vec("cid".into(), cid).into_column())?;
    Ok(Some((daily, keys)))
}

/// Rows `starts[k]..ends[k]` of `all` are file k's: the rows in merged
/// (customer_id, day) order, each customer's first row and each merged
/// row's cid; `None` when a file is not strictly in that order.
///
/// Each file's order is checked on the pool, noting where a new customer
/// starts; the merge then takes each file's rows in runs, the end of a
/// run found by bisection against the other files' next row. A night's
/// small file cuts the history's run ~2 × its rows times, so the merge
/// compares text that often rather than twice a row (10^7 rows: ~0.16 s
/// of one core before).
#[allow(clippy::type_complexity)]
fn merge_order(
    all: &DataFrame,
    starts: &[usize],
    ends: &[usize],
) -> PolarsResult<Option<(Vec<IdxSize>, Vec<IdxSize>, Vec<IdxSize>)>> {
    use std::cmp::Ordering;
    let ids = ChunkedIds::new(all.column("customer_id")?.str()?);
    let day = all.column("ts")?.date()?.physical().cont_slice()?;
    let n = all.height();
    // new_id[r]: row r's customer differs from row r - 1's (same file).
    // Checked chunk by chunk on the pool; a file starts on a chunk (the
    // files were stacked), so a chunk's first row compares with the row
    // before it unless a file starts there.
    let mut new_id = vec![true; n];
    let mut flags = Vec::with_capacity(ids.arrays.len());
    let mut rest = &mut new_id[..];
    for a in &ids.arrays {
        let (head, tail) = rest.split_at_mut(a.len());
        flags.push(head);
        rest = tail;
    }
    let ordered = flags.into_par_iter().enumerate().all(|(c, flags)| {
        let (base, arr) = (ids.starts[c], ids.arrays[c]);
        flags.iter_mut().enumerate().all(|(j, new)| {
            let r = base + j;
            let previous = match j {
                0 if starts.contains(&r) => return true,
                0 => ids.value(r - 1),
                _ => arr.value(j - 1),
            };
            match previous.cmp(arr.value(j)) {
                Ordering::Less => true,
                Ordering::Equal => {
                    *new = false;
                    day[r - 1] < day[r]
                }
                Ordering::Greater => false,
            }
        })
    });
    if !ordered {
        return Ok(None);
    }
    let (mut order, mut firsts, mut cid) =
        (Vec::with_capacity(n), Vec::new(), Vec::with_capacity(n));
    let key = |r: usize| (ids.value(r), day[r]);
    let mut previous: Option<&str> = None;
    merge_runs(starts, ends, key, |r, end| {
        // The run's first row is compared with the row taken before it
        // (another file's, perhaps); the rest were noted by the check.
        for (row, &noted) in new_id.iter().enumerate().take(end).skip(r) {
            let new = if row == r {
                previous != Some(ids.value(row))
            } else {
                noted
            };
            if new {
                firsts.push(row as IdxSize);
            }
            order.push(row as IdxSize);
            cid.push(firsts.len() as IdxSize - 1);
        }
        previous = Some(ids.value(end - 1));
    });
    Ok(Some((order, firsts, cid)))
}

/// A text column's values by row through its chunks (no contiguous copy):
/// each non-empty chunk with the row it starts at.
struct ChunkedIds<'a> {
    starts: Vec<usize>,
    arrays: Vec<&'a <StringType as PolarsDataType>::Array>,
}

impl<'a> ChunkedIds<'a> {
    fn new(ca: &'a StringChunked) -> ChunkedIds<'a> {
        let (mut starts, mut arrays, mut at) = (Vec::new(), Vec::new(), 0);
        for a in ca.downcast_iter().filter(|a| a.len() > 0) {
            starts.push(at);
            arrays.push(a);
            at += a.len();
        }
        ChunkedIds { starts, arrays }
    }

    /// Row `r`'s id (a null reads as empty: the store's ids are never null).
    fn value(&self, r: usize) -> &'a str {
        let c = self.starts.partition_point(|&s| s <= r) - 1;
        self.arrays[c].value(r - self.starts[c])
    }
}

/// The customer ids of a pre-aggregate in (customer_id, day) order, once
/// each, with `rows`: how many of its rows are that customer's. The store
/// keeps it beside each segment's pre-aggregate so that a night merges
/// the files on integers ([`stack_keyed`]) without reading the history's
/// ids row by row (10^7 texts decoded and compared: most of a uniform
/// night's merge). `None` when an id is null or out of order.
pub fn id_runs(daily: &DataFrame) -> PolarsResult<Option<DataFrame>> {
    use std::cmp::Ordering;
    let ids = daily.column("customer_id")?.str()?.rechunk();
    if ids.null_count() > 0 {
        return Ok(None);
    }
    let a = ids.downcast_as_array();
    let (mut firsts, mut rows): (Vec<IdxSize>, Vec<u32>) = (Vec::new(), Vec::new());
    for i in 0..a.len() {
        let new = i == 0
            || match crate::order::cmp_at(a, i - 1, a, i) {
                Ordering::Less => true,
                Ordering::Equal => false,
                Ordering::Greater => return Ok(None),
            };
        match rows.last_mut() {
            Some(n) if !new => *n += 1,
            _ => {
                firsts.push(i as IdxSize);
                rows.push(1);
            }
        }
    }
    let ids = ids.take(&IdxCa::from_vec("firsts".into(), firsts))?;
    let n = rows.len();
    Ok(Some(DataFrame::new(
        n,
        vec![
            ids.into_column(),
            UInt32Chunked::from_vec("rows".into(), rows).into_column(),
        ],
    )?))
}

/// The store's per-file pre-aggregates, read without their customer_id
/// column, stacked as read (each file's chunks kept) and numbered: each
/// file's id runs ([`id_runs`]) with their customer's `cid`. The scans
/// read each customer's rows where they lie ([`crate::scoring::held`]),
/// so a night does not copy the history's rows into merged order (a
/// uniform 10^7 night: ~350 ms and ~360 MB of fresh memory);
/// [`Stacked::merged`] makes that copy for the readers that need one frame.
pub struct Stacked {
    /// The files' rows, one after another, as read.
    pub rows: DataFrame,
    /// Where each file's rows start in `rows`.
    pub starts: Vec<usize>,
    /// Each file's id runs in its row order: the customer's cid and its
    /// number of rows (at least one).
    pub runs: Vec<Vec<(IdxSize, u32)>>,
    /// How many customers: the cids are `0..customers`, in customer_id
    /// order.
    pub customers: usize,
}

/// The store's per-file pre-aggregates ([`merge_sorted`]'s files) given
/// without their customer_id column, each with its [`id_runs`]: stacked
/// and numbered ([`Stacked::merged`] makes `merge_sorted`'s frame of
/// them), and the keys. The id lists are merged (10^6 ids, not the 10^7
/// rows) and each file's runs get their customer's number. `None` when a
/// file's ids are not strictly increasing, its runs do not add up to its
/// rows, or its rows are out of (cid, day) order.
pub fn stack_keyed(
    files: Vec<(DataFrame, DataFrame)>,
) -> PolarsResult<Option<(Stacked, DataFrame)>> {
    let Some(mut all) = files.first().map(|f| f.0.clear()) else {
        return Ok(None);
    };
    let mut ids: Vec<StringChunked> = Vec::with_capacity(files.len());
    let mut runs: Vec<UInt32Chunked> = Vec::with_capacity(files.len());
    let mut starts = Vec::with_capacity(files.len());
    for (daily, keys) in files {
        let i = keys.column("customer_id")?.str()?.rechunk().into_owned();
        let r = keys.column("rows")?.u32()?.rechunk().into_owned();
        let rows: u64 = r.iter().map(|n| u64::from(n.unwrap_or(0))).sum();
        if r.null_count() > 0
            || !crate::order::strictly_increasing(&i)
            || rows != daily.height() as u64
        {
            return Ok(None);
        }
        ids.push(i);
        runs.push(r);
        starts.push(all.height());
        all.vstack_mut_owned(daily)?;
    }
    // Each customer's days rise within a file (read through the chunks,
    // file after file as stacked) beside the numbering: one core each.
    let ts = all.column("ts")?.date()?.physical().clone();
    let lengths = || runs.iter().flat_map(|r| r.into_no_null_iter());
    let (rise, numbered) = rayon::join(
        || ts.null_count() == 0 && runs_rise(&ts, lengths()),
        || -> PolarsResult<_> {
            let (numbers, firsts) = merge_id_lists(&ids);
            Ok((numbers, first_ids(&ids, &firsts)?))
        },
    );
    let (numbers, first_ids) = numbered?;
    if !rise {
        return Ok(None);
    }
    let runs: Vec<Vec<(IdxSize, u32)>> = numbers
        .iter()
        .zip(&runs)
        .map(|(numbers, runs)| {
            numbers
                .iter()
                .copied()
                .zip(runs.into_no_null_iter())
                .collect()
        })
        .collect();
    let customers = first_ids.len();
    let keys = DataFrame::new(
        customers,
        vec![
            IdxCa::from_vec("cid".into(), (0..customers as IdxSize).collect()).into_column(),
            first_ids.into_column(),
        ],
    )?;
    let stacked = Stacked {
        rows: all,
        starts,
        runs,
        customers,
    };
    Ok(Some((stacked, keys)))
}

/// Each customer's id from the first list holding it (`firsts` of
/// [`merge_id_lists`]).
fn first_ids(ids: &[StringChunked], firsts: &[(usize, IdxSize)]) -> PolarsResult<StringChunked> {
    let offsets: Vec<usize> = ids
        .iter()
        .scan(0, |at, i| {
            let o = *at;
            *at += i.len();
            Some(o)
        })
        .collect();
    let mut every = ids[0].clone();
    for i in &ids[1..] {
        every.append(i)?;
    }
    let at: Vec<IdxSize> = firsts
        .iter()
        .map(|&(k, i)| (offsets[k] + i as usize) as IdxSize)
        .collect();
    every.rechunk().take(&IdxCa::from_vec("at".into(), at))
}

/// Whether `day`'s values rise strictly within each run of the lengths
/// `runs` (which cover them, in order), read slice by slice through the
/// chunks.
fn runs_rise(day: &Int32Chunked, runs: impl Iterator<Item = u32>) -> bool {
    let mut chunks = day.downcast_iter().map(|a| a.values().as_slice());
    let mut chunk: &[i32] = &[];
    for r in runs {
        if r == 0 {
            return false;
        }
        let mut last: Option<i32> = None;
        let mut left = r as usize;
        while left > 0 {
            if chunk.is_empty() {
                match chunks.next() {
                    Some(c) => chunk = c,
                    None => return false,
                }
                continue;
            }
            let (part, rest) = chunk.split_at(left.min(chunk.len()));
            if last.is_some_and(|l| l >= part[0]) || part.windows(2).any(|w| w[0] >= w[1]) {
                return false;
            }
            last = part.last().copied();
            left -= part.len();
            chunk = rest;
        }
    }
    chunk.is_empty() && chunks.all(|c| c.is_empty())
}

impl Stacked {
    /// The rows in (cid, day) order with their `cid`: one frame, as
    /// [`merge_sorted`] makes it.
    pub fn merged(&self) -> PolarsResult<DataFrame> {
        let mut all = self.rows.clone();
        let starts = &self.starts;
        // Each row's cid, file after file as stacked.
        let mut cid: Vec<IdxSize> = Vec::with_capacity(all.height());
        for &(c, r) in self.runs.iter().flatten() {
            cid.extend(std::iter::repeat_n(c, r as usize));
        }
        if starts.len() == 1 {
            all.rechunk_mut_par();
            all.with_column(IdxCa::from_vec("cid".into(), cid).into_column())?;
            return Ok(all);
        }
        // The sums are gathered from their chunks in merged order
        // (`order::permuted`); only the days are read by row here.
        let ts = all.column("ts")?.rechunk();
        all.with_column(ts)?;
        let n = all.height();
        let day = all.column("ts")?.date()?.physical().cont_slice()?;
        // (cid, day) as one integer in the same order.
        let key = |r: usize| (u64::from(cid[r]) << 32) | u64::from((day[r] as u32) ^ (1 << 31));
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain([n]).collect();
        let mut order: Vec<IdxSize> = Vec::with_capacity(n);
        merge_runs(starts, &ends, key, |r, end| {
            order.extend((r..end).map(|r| r as IdxSize))
        });
        let merged: Vec<IdxSize> = order.iter().map(|&r| cid[r as usize]).collect();
        drop(cid);
        let mut daily = crate::order::permuted(all, &IdxCa::from_vec("order".into(), order), false)
            .map_err(|e| polars_err!(ComputeError: "{e}"))?;
        daily.with_column(IdxCa::from_vec("cid".into(), merged).into_column())?;
        Ok(daily)
    }
}

/// Merges strictly increasing id lists: each list's ids numbered in the
/// merged order (an id in several lists gets one number), and for each
/// number the (list, position) first holding it. A list's ids are taken
/// in runs, a run's end found by bisection against the other lists' next
/// id, so a night's few ids cut the history's list ~2 × their count
/// times and the rest is numbered without a comparison.
fn merge_id_lists(ids: &[StringChunked]) -> (Vec<Vec<IdxSize>>, Vec<(usize, IdxSize)>) {
    let arrays: Vec<_> = ids.iter().map(|i| i.downcast_as_array()).collect();
    // The lists as one row range each, back to back.
    let mut starts = Vec::with_capacity(arrays.len());
    let mut at = 0;
    for a in &arrays {
        starts.push(at);
        at += a.len();
    }
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([at]).collect();
    let list = |r: usize| starts.partition_point(|&s| s <= r) - 1;
    let id = |r: usize| {
        let k = list(r);
        arrays[k].value(r - starts[k])
    };
    let mut numbers: Vec<Vec<IdxSize>> = arrays.iter().map(|a| vec![0; a.len()]).collect();
    let mut firsts: Vec<(usize, IdxSize)> = Vec::new();
    let mut last: Option<&str> = None;
    merge_runs(&starts, &ends, id, |r, end| {
        let k = list(r);
        let (r, end) = (r - starts[k], end - starts[k]);
        // Only the run's first id can equal the one numbered before it
        // (another list's); the rest are each new.
        if last != Some(arrays[k].value(r)) {
            firsts.push((k, r as IdxSize));
        }
        numbers[k][r] = firsts.len() as IdxSize - 1;
        for (i, number) in numbers[k].iter_mut().enumerate().take(end).skip(r + 1) {
            firsts.push((k, i as IdxSize));
            *number = firsts.len() as IdxSize - 1;
        }
        last = Some(arrays[k].value(end - 1));
    });
    (numbers, firsts)
}

/// Walks the rows of files `starts[k]..ends[k]`, each in ascending `key`
/// order, in merged order: `run(r, end)` gets each run of one file's rows
/// that comes before the other files' next row (ties: the lower file
/// first), the run's end found by bisection, so a night's small file cuts
/// the history's rows ~2 × its rows times and the rest is not compared.
fn merge_runs<K: Ord>(
    starts: &[usize],
    ends: &[usize],
    key: impl Fn(usize) -> K,
    mut run: impl FnMut(usize, usize),
) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut heap: BinaryHeap<Reverse<(K, usize)>> = BinaryHeap::new();
    for (k, (&s, &e)) in starts.iter().zip(ends).enumerate() {
        if s < e {
            heap.push(Reverse((key(s), k)));
        }
    }
    let mut next = starts.to_vec();
    while let Some(Reverse((_, k))) = heap.pop() {
        let (r, e) = (next[k], ends[k]);
        let end = match heap.peek() {
            Some(Reverse(top)) => {
                let (mut lo, mut hi) = (r + 1, e);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if (key(mid), k) < *top {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
            None => e,
        };
        run(r, end);
        next[k] = end;
        if end < e {
            heap.push(Reverse((key(end), k)));
        }
    }
}

/// `per_cid` (keyed by `cid`) with each customer's `customer_id` from `keys`.
pub fn with_customer_id(per_cid: LazyFrame, keys: LazyFrame) -> LazyFrame {
    per_cid.join(
        keys,
        [col("cid")],
        [col("cid")],
        JoinArgs::new(JoinType::Inner),
    )
}

/// The customers of one part on the lean plan: ids from `lo` (included)
/// to `hi` (excluded), in byte order — the order customer_scores is sorted
/// in, so tables written part after part come out sorted. `None` leaves a
/// side open. Any split is exact, because every per-customer computation
/// sees all of a customer's rows in one part.
pub fn id_range(lo: Option<&str>, hi: Option<&str>) -> Expr {
    let id = col("customer_id");
    match (lo, hi) {
        (Some(lo), Some(hi)) => id.clone().gt_eq(lit(lo)).and(id.lt(lit(hi))),
        (Some(lo), None) => id.gt_eq(lit(lo)),
        (None, Some(hi)) => id.lt(lit(hi)),
        (None, None) => lit(true),
    }
}

/// The lower bounds of parts 1.. when `ids` (the known customers) are cut
/// into `parts` ranges of about equal size; fewer when there are fewer ids.
pub fn range_bounds(ids: &StringChunked, parts: u32) -> Vec<String> {
    cut(ids, parts, true)
}

/// The lower bounds of parts 1.. when the rows whose customer_ids `sample`
/// holds (a sample of rows, repeats kept) are cut into `parts` ranges of
/// about equal rows: a customer with many rows weighs as much.
pub fn row_bounds(sample: &StringChunked, parts: u32) -> Vec<String> {
    cut(sample, parts, false)
}

fn cut(ids: &StringChunked, parts: u32, distinct: bool) -> Vec<String> {
    let mut sorted: Vec<&str> = ids.iter().flatten().collect();
    sorted.sort_unstable();
    if distinct {
        sorted.dedup();
    }
    let n = sorted.len();
    let mut bounds: Vec<String> = (1..parts as usize)
        .map(|i| i * n / parts as usize)
        .filter(|&k| k > 0 && k < n)
        .map(|k| sorted[k].to_string())
        .collect();
    bounds.dedup();
    bounds
}

/// A purchase is a transaction with a positive amount.
pub fn is_purchase() -> Expr {
    col("amount_cents").gt(lit(0i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::from_epoch_days;

    #[test]
    fn sorted_files_merge_into_the_keyed_pre_aggregate_in_cid_day_order() {
        let day = |n: i32| from_epoch_days(n);
        // File 1 holds days 1-3, file 2 day 4; c3 only in file 2, c0 only
        // in file 1. Each file sorted by customer_id, day.
        let one = df!(
            "customer_id" => ["c0", "c1", "c1", "c2"],
            "ts" => [day(2), day(1), day(3), day(1)],
            "purchases" => [1i64, 1, 0, 2],
            "net_cents" => [5i64, 10, -3, 20],
        )
        .unwrap();
        let two = df!(
            "customer_id" => ["c1", "c3"],
            "ts" => [day(4), day(4)],
            "purchases" => [1i64, 1],
            "net_cents" => [7i64, 9],
        )
        .unwrap();
        let (daily, keys) = merge_sorted(vec![one.clone(), two.clone()])
            .unwrap()
            .unwrap();
        // By hand: cids 0..3 for c0..c3; rows (cid, day) in order.
        let want_keys = df!(
            "cid" => [0 as IdxSize, 1, 2, 3],
            "customer_id" => ["c0", "c1", "c2", "c3"],
        )
        .unwrap();
        assert!(keys.equals(&want_keys), "{keys}");
        let want = df!(
            "ts" => [day(2), day(1), day(3), day(4), day(1), day(4)],
            "purchases" => [1i64, 1, 0, 1, 2, 1],
            "net_cents" => [5i64, 10, -3, 7, 20, 9],
            "cid" => [0 as IdxSize, 1, 1, 1, 2, 3],
        )
        .unwrap();
        assert!(daily.equals(&want), "{daily}");
        // The same as keying the stacked files and sorting.
        let stacked = concat([one.clone().lazy(), two.lazy()], UnionArgs::default()).unwrap();
        let k = customer_keys(stacked.clone()).run().unwrap();
        let keyed =
            crate::scoring::sorted::sort_daily(keyed(stacked, k.clone().lazy()).run().unwrap())
                .unwrap();
        assert!(keyed.equals(&want) && k.equals(&want_keys), "{keyed}");
        // A file out of order is refused (the caller keys and sorts).
        let unsorted = one
            .take(&IdxCa::from_vec("o".into(), vec![1, 0, 2, 3]))
            .unwrap();
        assert!(merge_sorted(vec![unsorted]).unwrap().is_none());
    }

    /// Three random files (a day belongs to one file, as in the store):
    /// the merge equals keying the stacked files and sorting them, with
    /// runs long and short, and customers continuing across a file switch.
    /// Three random pre-aggregate files in (customer_id, day) order, a
    /// day belonging to one file, as in the store.
    fn random_files(seed: u64) -> Vec<DataFrame> {
        let mut next = crate::testing::lcg(seed);
        (0..3)
            .map(|k| {
                let rows = [3000, 40, 700][k];
                let mut pairs: Vec<(String, i32)> = (0..rows)
                    .map(|_| {
                        (
                            format!("c{:03}", next() % 300),
                            (next() % 50 * 3 + k) as i32,
                        )
                    })
                    .collect();
                pairs.sort();
                pairs.dedup();
                let net: Vec<i64> = (0..pairs.len()).map(|_| next() as i64 % 100).collect();
                df!(
                    "customer_id" => pairs.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
                    "ts" => pairs.iter().map(|p| from_epoch_days(p.1)).collect::<Vec<_>>(),
                    "purchases" => vec![1i64; pairs.len()],
                    "net_cents" => net,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn random_sorted_files_merge_as_stacked_and_sorted() {
        let files = random_files(5);
        let (daily, keys) = merge_sorted(files.clone()).unwrap().unwrap();
        // The same files in several chunks each (a file read back in row
        // groups) merge the same way.
        let chunked = |f: &DataFrame, cuts: &[usize]| {
            let mut out = f.slice(0, 0);
            let mut at = 0;
            for &c in cuts.iter().chain([&f.height()]) {
                out.vstack_mut(&f.slice(at as i64, c - at)).unwrap();
                at = c;
            }
            out
        };
        let in_chunks: Vec<DataFrame> = files.iter().map(|f| chunked(f, &[1, 17, 29])).collect();
        assert!(in_chunks[0].column("customer_id").unwrap().n_chunks() > 1);
        let (daily2, keys2) = merge_sorted(in_chunks.clone()).unwrap().unwrap();
        assert!(keys2.equals(&keys) && daily2.equals(&daily));
        // A file whose second chunk goes back in order is not merged.
        let mut back = in_chunks.clone();
        back[1] = chunked(
            &files[1].slice(1, 17).vstack(&files[1].slice(0, 1)).unwrap(),
            &[17],
        );
        assert!(merge_sorted(back).unwrap().is_none());
        let stacked = concat(
            files.into_iter().map(|f| f.lazy()).collect::<Vec<_>>(),
            UnionArgs::default(),
        )
        .unwrap();
        let k = customer_keys(stacked.clone()).run().unwrap();
        let want =
            crate::scoring::sorted::sort_daily(keyed(stacked, k.clone().lazy()).run().unwrap())
                .unwrap();
        assert!(keys.equals(&k), "{keys}");
        assert!(daily.equals(&want), "{daily}");
    }

    fn strs_of(df: &DataFrame) -> Vec<String> {
        let ids = df.column("customer_id").unwrap().str().unwrap();
        ids.iter().map(|v| v.unwrap().to_string()).collect()
    }

    #[test]
    fn id_runs_count_each_customers_rows() {
        let day = |n: i32| from_epoch_days(n);
        let daily = df!(
            "customer_id" => ["a", "a", "a", "b", "c", "c"],
            "ts" => [day(1), day(2), day(5), day(1), day(3), day(4)],
        )
        .unwrap();
        let runs = id_runs(&daily).unwrap().unwrap();
        let want = df!("customer_id" => ["a", "b", "c"], "rows" => [3u32, 1, 2]).unwrap();
        assert!(runs.equals(&want), "{runs}");
        let back = daily
            .take(&IdxCa::from_vec("o".into(), vec![3, 0, 1, 2, 4, 5]))
            .unwrap();
        assert!(id_runs(&back).unwrap().is_none());
    }

    /// [`stack_keyed`] then [`Stacked::merged`].
    fn merge_keyed(
        files: Vec<(DataFrame, DataFrame)>,
    ) -> PolarsResult<Option<(DataFrame, DataFrame)>> {
        match stack_keyed(files)? {
            Some((s, keys)) => Ok(Some((s.merged()?, keys))),
            None => Ok(None),
        }
    }

    /// The files read without their ids, each with its id runs, merge
    /// into what [`merge_sorted`] makes of them; whatever does not add up
    /// is refused.
    #[test]
    fn keyed_files_merge_as_the_files_with_their_ids_do() {
        for seed in [5, 6, 7] {
            let files = random_files(seed);
            let keyed = |files: &[DataFrame]| -> Vec<(DataFrame, DataFrame)> {
                files
                    .iter()
                    .map(|f| {
                        let runs = id_runs(f).unwrap().unwrap();
                        (f.drop("customer_id").unwrap(), runs)
                    })
                    .collect()
            };
            let (daily, keys) = merge_sorted(files.clone()).unwrap().unwrap();
            for subset in [&files[..], &files[1..2], &files[..2]] {
                let (d, k) = merge_keyed(keyed(subset)).unwrap().unwrap();
                let (want_d, want_k) = merge_sorted(subset.to_vec()).unwrap().unwrap();
                assert!(d.equals(&want_d) && k.equals(&want_k), "seed {seed}: {d}");
            }
            // Read back in row groups (several chunks a column).
            let chunked: Vec<(DataFrame, DataFrame)> = keyed(&files)
                .into_iter()
                .map(|(d, k)| {
                    let mut c = d.slice(0, 3);
                    c.vstack_mut(&d.slice(3, d.height())).unwrap();
                    (c, k)
                })
                .collect();
            let (d, k) = merge_keyed(chunked).unwrap().unwrap();
            assert!(d.equals(&daily) && k.equals(&keys));
            // Runs adding up to a row too many, ids out of order.
            let mut short = keyed(&files);
            let rows = short[1].1.column("rows").unwrap().u32().unwrap().clone();
            let fewer: Vec<u32> = rows
                .into_no_null_iter()
                .enumerate()
                .map(|(i, n)| n + (i == 0) as u32)
                .collect();
            short[1]
                .1
                .with_column(UInt32Chunked::from_vec("rows".into(), fewer).into_column())
                .unwrap();
            assert!(merge_keyed(short).unwrap().is_none());
            let mut swapped = keyed(&files);
            let n = swapped[0].1.height() as IdxSize;
            let order: Vec<IdxSize> = (0..n).rev().collect();
            swapped[0].1 = swapped[0]
                .1
                .take(&IdxCa::from_vec("o".into(), order))
                .unwrap();
            assert!(merge_keyed(swapped).unwrap().is_none());
            // A customer's second day made its first.
            let ids = strs_of(&files[2]);
            let i = (1..ids.len()).find(|&i| ids[i] == ids[i - 1]).unwrap();
            let mut repeated = keyed(&files);
            let ts = repeated[2].0.column("ts").unwrap().clone();
            let mut days = ts.slice(0, i);
            days.append(&ts.slice(i as i64 - 1, 1)).unwrap();
            days.append(&ts.slice(i as i64 + 1, ts.len())).unwrap();
            repeated[2].0.with_column(days).unwrap();
            assert!(merge_keyed(repeated).unwrap().is_none());
        }
    }

    #[test]
    fn the_sorted_pre_aggregate_equals_polars_group_by_then_sort() {
        // Random rows: ids of 1..20 bytes over a small alphabet (long
        // shared prefixes, trailing NULs), few days, refunds, nulls in
        // margin and quantity.
        let mut next = crate::testing::lcg(11u64);
        let n = 4000;
        let ids: Vec<String> = (0..n)
            .map(|_| {
                let len = 1 + next() % 20;
                (0..len).map(|_| ['x', 'y', '\0'][next() % 3]).collect()
            })
            .collect();
        let day: Vec<i32> = (0..n).map(|_| (next() % 4) as i32).collect();
        let amount: Vec<i64> = (0..n).map(|_| next() as i64 % 2000 - 500).collect();
        let margin: Vec<Option<i64>> = (0..n)
            .map(|_| (!next().is_multiple_of(5)).then(|| next() as i64 % 300))
            .collect();
        let quantity: Vec<Option<f64>> = (0..n)
            .map(|_| (!next().is_multiple_of(4)).then(|| (next() % 7) as f64 * 0.25))
            .collect();
        let mut ts = Int32Chunked::new("ts".into(), &day)
            .into_series()
            .cast(&DataType::Date)
            .unwrap();
        ts.rename("ts".into());
        let rows = DataFrame::new(
            n,
            vec![
                StringChunked::new("customer_id".into(), &ids).into_column(),
                ts.into_column(),
                Int64Chunked::new("amount_cents".into(), &amount).into_column(),
                Int64Chunked::new("margin_cents".into(), &margin).into_column(),
                Float64Chunked::new("quantity".into(), &quantity).into_column(),
            ],
        )
        .unwrap();
        for (m, q) in [(true, true), (false, false), (false, true)] {
            let got = daily_sorted(rows.clone().lazy(), m, q).unwrap().unwrap();
            let want = daily_by_id(rows.clone().lazy(), m, q).run().unwrap();
            let want = crate::order::sort_by_id(want, Some("ts")).unwrap();
            assert!(got.height() < n && got.height() > 100, "{}", got.height());
            assert!(got.equals_missing(&want), "{got}\n{want}");
        }
        // By hand: two rows of one customer's day, a refund and a purchase
        // of 3 units without a margin, are one row; null ids are refused.
        let d = from_epoch_days(5);
        let two = df!(
            "customer_id" => ["b", "a", "b"],
            "ts" => [d, d, d],
            "amount_cents" => [-100i64, 50, 400],
            "margin_cents" => [Some(7i64), Some(1), None],
            "quantity" => [Some(9.0f64), None, Some(3.0)],
        )
        .unwrap();
        let got = daily_sorted(two.lazy(), true, true).unwrap().unwrap();
        let want = df!(
            "customer_id" => ["a", "b"],
            "ts" => [d, d],
            "purchases" => [1i64, 1],
            "net_cents" => [50i64, 300],
            "margin_cents" => [1i64, 7],
            "units" => [0.0f64, 3.0],
        )
        .unwrap();
        assert!(got.equals(&want), "{got}");
        let null_id = df!(
            "customer_id" => [None::<&str>],
            "ts" => [d],
            "amount_cents" => [1i64],
        )
        .unwrap();
        assert!(
            daily_sorted(null_id.lazy(), false, false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn merged_dailies_sum_a_customers_day_held_by_two_files() {
        // File 1: a refund on day 10 for c1 (no purchase) and c2's day 11;
        // file 2: a purchase by c1 on day 10 (late row) and c1's day 12.
        let day = |n: i32| from_epoch_days(n);
        let one = df!(
            "customer_id" => ["c1", "c2"],
            "ts" => [day(10), day(11)],
            "purchases" => [0i64, 1],
            "net_cents" => [-500i64, 700],
            "units" => [0.0f64, 2.0],
        )
        .unwrap();
        let two = df!(
            "customer_id" => ["c1", "c1"],
            "ts" => [day(10), day(12)],
            "purchases" => [2i64, 1],
            "net_cents" => [3000i64, 100],
            "units" => [3.0f64, 1.0],
        )
        .unwrap();
        let both = concat([one.lazy(), two.lazy()], UnionArgs::default()).unwrap();
        let out = merge_daily(both, false, true)
            .sort(["customer_id", "ts"], Default::default())
            .collect()
            .unwrap();
        let col_i64 = |c: &str| -> Vec<i64> {
            out.column(c)
                .unwrap()
                .i64()
                .unwrap()
                .iter()
                .flatten()
                .collect()
        };
        // c1's day 10 is one row: one purchase day with 2 orders, net 25.00.
        assert_eq!(col_i64("purchases"), vec![2, 1, 1]);
        assert_eq!(col_i64("net_cents"), vec![2500, 100, 700]);
        let units: Vec<f64> = crate::testing::f64s(&out, "units");
        assert_eq!(units, vec![3.0, 1.0, 2.0]);
        let ids: Vec<&str> = out
            .column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, vec!["c1", "c1", "c2"]);
    }

    #[test]
    fn id_ranges_cut_the_sorted_ids_evenly_and_cover_every_id() {
        let ids = StringChunked::new(
            "customer_id".into(),
            ["c7", "c1", "c3", "c10", "c5", "c2", "c1", "c9"],
        );
        // Distinct and sorted (bytes): c1 c10 c2 c3 c5 c7 c9; thirds start at 7/3=2 and 14/3=4.
        let bounds = range_bounds(&ids, 3);
        assert_eq!(bounds, vec!["c2".to_string(), "c5".to_string()]);
        assert!(range_bounds(&ids, 1).is_empty());
        // More parts than ids: one part per id at most.
        assert_eq!(range_bounds(&ids, 50).len(), 6);
        // By rows: c1 twice of 8 rows (c1 c1 c10 c2 c3 c5 c7 c9); the
        // halves start at row 4: c3.
        assert_eq!(row_bounds(&ids, 2), vec!["c3".to_string()]);
        assert_eq!(range_bounds(&ids, 2), vec!["c3".to_string()]);
        let heavy = StringChunked::new("customer_id".into(), ["a", "b", "b", "b", "b", "c"]);
        // a b b b b c: thirds start at rows 2 and 4, both b: one cut.
        assert_eq!(row_bounds(&heavy, 3), vec!["b".to_string()]);
        // Distinct a b c: thirds start at b and c.
        assert_eq!(
            range_bounds(&heavy, 3),
            vec!["b".to_string(), "c".to_string()]
        );
        let probe = df!("customer_id" => ["a", "c1", "c10", "c2", "c4", "c5", "c9", "zz"]).unwrap();
        let part = |lo: Option<&str>, hi: Option<&str>| -> Vec<bool> {
            let out = probe
                .clone()
                .lazy()
                .select([id_range(lo, hi).alias("p")])
                .collect()
                .unwrap();
            out.column("p")
                .unwrap()
                .bool()
                .unwrap()
                .iter()
                .map(|x| x.unwrap())
                .collect()
        };
        let (f, t) = (false, true);
        assert_eq!(part(None, Some("c2")), [t, t, t, f, f, f, f, f]);
        assert_eq!(part(Some("c2"), Some("c5")), [f, f, f, t, t, f, f, f]);
        assert_eq!(part(Some("c5"), None), [f, f, f, f, f, t, t, t]);
        let all = probe.lazy().filter(id_range(None, None)).collect().unwrap();
        assert_eq!(all.height(), 8);
    }
}
