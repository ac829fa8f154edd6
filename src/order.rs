//! Rows in customer_id order, faster than polars' sort on a text column.
//!
//! polars compares text through its views, one random memory access per
//! comparison: sorting 10^7 pre-aggregate rows by customer_id took 12 s
//! (`cargo bench --bench hot`), most of a cold store's pre-aggregate time.
//! Here each row becomes a fixed-size key (the id's first 16 bytes as a
//! big-endian integer, its length, the tie-break, its row number), sorted
//! in place; only ids longer than 16 bytes that share those 16 bytes are
//! compared in full afterwards. When id, tie and row fit 128 bits (each
//! byte position of the ids taking only the bits its values need) they
//! are packed into one `u128`, or `u64`, instead ([`Packed`]): a quarter
//! of the bytes and one comparison a row.

use polars::prelude::*;
use polars::series::IsSorted;
use polars_arrow::bitmap::Bitmap;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A column's single chunk.
type Array<T> = <T as PolarsDataType>::Array;

/// Bytes of the id compared as one integer.
const PREFIX: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    prefix: u128,
    /// The id's length, capped at `PREFIX + 1` ("longer"): ids of up to
    /// `PREFIX` bytes with equal padded prefixes differ by trailing NULs,
    /// and the shorter comes first, as in byte order.
    len: u32,
    then: i32,
    row: IdxSize,
}

fn prefix(b: &[u8]) -> u128 {
    let mut a = [0u8; PREFIX];
    let n = b.len().min(PREFIX);
    a[..n].copy_from_slice(&b[..n]);
    u128::from_be_bytes(a)
}

/// The permutation putting `df`'s rows in byte order of `customer_id`
/// (nulls first, as the empty id), ties broken by the integer column
/// `then` (a Date, say) and then by row number: a total order, so the
/// result never depends on the input's chunking or threads.
pub fn by_id(df: &DataFrame, then: Option<&str>) -> Result<IdxCa> {
    let rows = match sorted(df, then)? {
        Sorted::Packed(p) => p.rows(),
        Sorted::Keys(keys, _) => keys.into_iter().map(|k| k.row).collect(),
    };
    Ok(IdxCa::from_vec("order".into(), rows))
}

/// [`by_id`]'s order (ties on `then` left in row order) and where each
/// run of rows with equal (customer_id, `then`) starts in it: a sort-based
/// group-by, which needs no hash table and leaves the groups sorted.
/// `customer_id` and `then` must hold no nulls (null would group with "").
pub fn groups_by_id(df: &DataFrame, then: &str) -> Result<Groups> {
    let (keys, ids) = match sorted(df, Some(then))? {
        Sorted::Packed(p) => {
            let starts = p.starts();
            let keys = p.group_keys(&starts);
            return Ok(Groups {
                order: p.rows(),
                starts,
                keys: Some(keys),
            });
        }
        Sorted::Keys(keys, ids) => (keys, ids),
    };
    let full = |r: IdxSize| ids.get(r as usize).unwrap_or("");
    let mut starts = Vec::with_capacity(keys.len() / 2);
    for (i, k) in keys.iter().enumerate() {
        let same = i > 0 && {
            let p = &keys[i - 1];
            // (prefix, len) is the whole id up to PREFIX bytes; longer ids
            // with equal prefixes are compared in full.
            (p.prefix, p.len, p.then) == (k.prefix, k.len, k.then)
                && (k.len as usize <= PREFIX || full(p.row) == full(k.row))
        };
        if !same {
            starts.push(i as IdxSize);
        }
    }
    Ok(Groups {
        order: keys.into_iter().map(|k| k.row).collect(),
        starts,
        keys: None,
    })
}

/// [`groups_by_id`]'s groups: the rows in order, where each group starts
/// in it, and, when the ids packed into integer keys, each group's keys
/// read off those.
pub struct Groups {
    pub order: Vec<IdxSize>,
    pub starts: Vec<IdxSize>,
    pub keys: Option<GroupKeys>,
}

/// Each group's `then` value and its id's number (0 for the first id,
/// one more at each new id): what a gather of the groups' first rows
/// would give, without reading the rows at random.
pub struct GroupKeys {
    pub then: Vec<i32>,
    pub id_number: Vec<IdxSize>,
}

/// The rows in [`by_id`]'s order, as one of two kinds of sorted keys.
enum Sorted {
    Packed(Packed),
    /// [`Key`]s, and the ids they were made from.
    Keys(Vec<Key>, StringChunked),
}

/// Keys packed into one integer each, sorted: the id, the tie less its
/// minimum and the row number, from the high bits down. Each byte
/// position of the ids takes only the bits its values need ([`packed`]),
/// so ids such as `C560532` (a constant letter, then digits) take 4 bits
/// a digit. When all of it fits 64 bits the keys are `u64`: at
/// 10^7 rows the sort takes about half of `u128`'s time, which in turn
/// took about half of [`Key`]'s (16 bytes and one comparison a row instead
/// of 32 bytes and four).
struct Packed {
    keys: PackedKeys,
    row_bits: u32,
    /// The tie's bits, above the row's, and the smallest tie.
    tie_bits: u32,
    tie_lo: i32,
}

enum PackedKeys {
    Narrow(Vec<u64>),
    Wide(Vec<u128>),
}

impl Packed {
    fn rows(&self) -> Vec<IdxSize> {
        fn rows<T: Copy + Into<u128> + Sync>(keys: &[T], row_bits: u32) -> Vec<IdxSize> {
            let mask = (1u128 << row_bits) - 1;
            keys.par_iter()
                .map(|&k| (k.into() & mask) as IdxSize)
                .collect()
        }
        match &self.keys {
            PackedKeys::Narrow(k) => rows(k, self.row_bits),
            PackedKeys::Wide(k) => rows(k, self.row_bits),
        }
    }

    /// The tie and the id's number of the keys at `starts` (see
    /// [`GroupKeys`]).
    fn group_keys(&self, starts: &[IdxSize]) -> GroupKeys {
        fn read<T: Copy + Into<u128>>(keys: &[T], starts: &[IdxSize], p: &Packed) -> GroupKeys {
            let mask = (1u128 << p.tie_bits) - 1;
            let mut then = Vec::with_capacity(starts.len());
            let mut id_number = Vec::with_capacity(starts.len());
            let (mut last, mut n) = (None, 0);
            for &s in starts {
                let k = keys[s as usize].into() >> p.row_bits;
                then.push((p.tie_lo as i64 + (k & mask) as i64) as i32);
                let id = k >> p.tie_bits;
                if last.is_some_and(|l| l != id) {
                    n += 1;
                }
                last = Some(id);
                id_number.push(n);
            }
            GroupKeys { then, id_number }
        }
        match &self.keys {
            PackedKeys::Narrow(k) => read(k, starts, self),
            PackedKeys::Wide(k) => read(k, starts, self),
        }
    }

    /// Where each run of keys equal above the row bits (id and tie) starts.
    fn starts(&self) -> Vec<IdxSize> {
        fn starts<T: Copy + Into<u128>>(keys: &[T], row_bits: u32) -> Vec<IdxSize> {
            let mut out = Vec::with_capacity(keys.len() / 2);
            for (i, &k) in keys.iter().enumerate() {
                if i == 0 || keys[i - 1].into() >> row_bits != k.into() >> row_bits {
                    out.push(i as IdxSize);
                }
            }
            out
        }
        match &self.keys {
            PackedKeys::Narrow(k) => starts(k, self.row_bits),
            PackedKeys::Wide(k) => starts(k, self.row_bits),
        }
    }
}

/// Bits that hold every value up to `max`.
fn bits_for(max: u128) -> u32 {
    128 - max.leading_zeros()
}

/// The smallest and largest byte at each of the first `longest` positions
/// of the ids, over the ids that reach that position.
fn byte_ranges(ids: &StringChunked, longest: usize) -> Vec<(u8, u8)> {
    let empty = || vec![(u8::MAX, u8::MIN); longest];
    ids.par_iter()
        .fold(empty, |mut r, id| {
            for ((lo, hi), &v) in r.iter_mut().zip(id.unwrap_or("").as_bytes()) {
                *lo = (*lo).min(v);
                *hi = (*hi).max(v);
            }
            r
        })
        .reduce(empty, |a, b| {
            a.into_iter()
                .zip(b)
                .map(|((l1, h1), (l2, h2))| (l1.min(l2), h1.max(h2)))
                .collect()
        })
}

/// [`Packed`] keys when they fit in 128 bits. At each position of the
/// ids, a byte takes its offset from the position's smallest byte, plus 1
/// where some id ends before the position, which then takes 0: below any
/// byte, as a prefix sorts before the ids it starts. So the keys order the
/// ids in byte order and equal ids only have equal keys (no length
/// needed). The tie is offset by its minimum so that it sorts unsigned.
fn packed(ids: &StringChunked, ties: &[i32]) -> Option<Packed> {
    let lens = ids.par_iter().map(|v| v.map_or(0, str::len));
    let (shortest, longest) = lens
        .fold(|| (usize::MAX, 0), |(s, l), n| (s.min(n), l.max(n)))
        .reduce(
            || (usize::MAX, 0),
            |(s1, l1), (s2, l2)| (s1.min(s2), l1.max(l2)),
        );
    let (lo, hi) = (ties.iter().min()?, ties.iter().max()?);
    // Long ids are left to [`Key`]: measuring their byte ranges costs a
    // pass over every byte, and they rarely fit.
    if longest > 64 {
        return None;
    }
    // (smallest byte, 1 when ids end before the position, bits).
    let digits: Vec<(u8, u8, u32)> = byte_ranges(ids, longest)
        .into_iter()
        .enumerate()
        .map(|(i, (l, h))| {
            let pad = (shortest <= i) as u8;
            (l, pad, bits_for((h - l) as u128 + pad as u128))
        })
        .collect();
    let id_bits: u32 = digits.iter().map(|d| d.2).sum();
    let tie_bits = bits_for((*hi as i64 - *lo as i64) as u128);
    let row_bits = bits_for(ties.len().saturating_sub(1) as u128).max(1);
    let total = id_bits + tie_bits + row_bits;
    if total > 128 {
        return None;
    }
    let key = |row: usize, id: Option<&str>, tie: i32| -> u128 {
        let b = id.unwrap_or("").as_bytes();
        let mut k = 0u128;
        for (i, &(l, pad, w)) in digits.iter().enumerate() {
            if w > 0 {
                let d = b.get(i).map_or(0, |&v| (v - l) as u128 + pad as u128);
                k = k << w | d;
            }
        }
        let tie = (tie as i64 - *lo as i64) as u128;
        (k << tie_bits | tie) << row_bits | row as u128
    };
    // One chunk (the caller's), so rows are read by index in parallel.
    let ids = ids.rechunk();
    let ids = ids.downcast_as_array();
    let id = |r: usize| ids.get(r);
    let rows = (0..ties.len()).into_par_iter().with_min_len(1 << 16);
    let keys = if total <= 64 {
        let mut keys: Vec<u64> = rows.map(|r| key(r, id(r), ties[r]) as u64).collect();
        keys.par_sort_unstable();
        PackedKeys::Narrow(keys)
    } else {
        let mut keys: Vec<u128> = rows.map(|r| key(r, id(r), ties[r])).collect();
        keys.par_sort_unstable();
        PackedKeys::Wide(keys)
    };
    Some(Packed {
        keys,
        row_bits,
        tie_bits,
        tie_lo: *lo,
    })
}

/// The rows' keys in [`by_id`]'s order.
fn sorted(df: &DataFrame, then: Option<&str>) -> Result<Sorted> {
    let ids = id_column(df)?;
    let ties: Vec<i32> = match then {
        Some(c) => {
            let t = df.column(c)?.cast(&DataType::Int32)?;
            t.i32()?.iter().map(|v| v.unwrap_or(i32::MIN)).collect()
        }
        None => vec![0; df.height()],
    };
    if df.height() > IdxSize::MAX as usize {
        return Err(Error::Invariant(format!(
            "{} rows: more than one sort can order",
            df.height()
        )));
    }
    if let Some(p) = packed(&ids, &ties) {
        return Ok(Sorted::Packed(p));
    }
    let mut keys: Vec<Key> = ids
        .iter()
        .zip(&ties)
        .enumerate()
        .map(|(row, (id, &then))| {
            let b = id.unwrap_or("").as_bytes();
            Key {
                prefix: prefix(b),
                len: b.len().min(PREFIX + 1) as u32,
                then,
                row: row as IdxSize,
            }
        })
        .collect();
    drop(ties);
    keys.par_sort_unstable();
    // Runs of long ids sharing their first PREFIX bytes: order them in full.
    let mut start = 0;
    while start < keys.len() {
        let k = keys[start];
        let mut end = start + 1;
        while end < keys.len() && keys[end].prefix == k.prefix && keys[end].len == k.len {
            end += 1;
        }
        if k.len as usize > PREFIX && end - start > 1 {
            let full = |r: IdxSize| ids.get(r as usize).unwrap_or("");
            keys[start..end].sort_unstable_by(|a, b| {
                full(a.row)
                    .cmp(full(b.row))
                    .then(a.then.cmp(&b.then))
                    .then(a.row.cmp(&b.row))
            });
        }
        start = end;
    }
    Ok(Sorted::Keys(keys, ids))
}

/// `df` with its `customer_id` column flagged as sorted when it is (byte
/// order, no nulls; checked in one pass, never assumed). polars reads the
/// flag: a join of two such frames on `customer_id` merges the sorted
/// sides instead of hashing the text. Frames without the column pass as
/// they are.
pub fn flag_sorted_ids(mut df: DataFrame) -> Result<DataFrame> {
    let Ok(c) = df.column("customer_id") else {
        return Ok(df);
    };
    if in_order(c.str()?) {
        let mut c = c.clone();
        c.set_sorted_flag(IsSorted::Ascending);
        df.with_column(c)?;
    }
    Ok(df)
}

/// Whether `ids` hold no null and are in byte order (one pass).
pub fn in_order(ids: &StringChunked) -> bool {
    ascending(ids, false)
}

/// Whether `ids` hold no null and each id is greater than the one before.
pub(crate) fn strictly_increasing(ids: &StringChunked) -> bool {
    ascending(ids, true)
}

/// [`in_order`], or [`strictly_increasing`] when `strict`: each chunk
/// checked by [`cmp_at`] in stretches on the pool, and where each chunk
/// meets the next. A night checks ~20 columns of 10^6 ids, some while
/// the other core is idle (the run's last check among them), and several
/// many-chunked, which were compared as `&str`s by memcmp, one at a time.
fn ascending(ids: &StringChunked, strict: bool) -> bool {
    use std::cmp::Ordering;
    if ids.null_count() > 0 {
        return false;
    }
    let least = if strict {
        Ordering::Less
    } else {
        Ordering::Equal
    };
    let arrays: Vec<_> = ids.downcast_iter().filter(|a| a.len() > 0).collect();
    let seams = arrays
        .windows(2)
        .all(|w| cmp_at(w[0], w[0].len() - 1, w[1], 0) <= least);
    const STRETCH: usize = 1 << 15;
    seams
        && arrays.iter().all(|a| {
            (1..a.len())
                .into_par_iter()
                .step_by(STRETCH)
                .all(|from| ascending_from(a, from..(from + STRETCH).min(a.len()), least))
        })
}

/// Whether each id in `rows` of `a` compares to the one before it at most
/// as `least`. Each id's [`inline_key`] is made once, not once per
/// comparison as [`cmp_at`] makes it: ~5% of a night's CPU went to these
/// checks.
fn ascending_from(
    a: &Array<StringType>,
    rows: std::ops::Range<usize>,
    least: std::cmp::Ordering,
) -> bool {
    let views = a.views();
    let mut before = inline_key(views[rows.start - 1]);
    rows.into_iter().all(|i| {
        let key = inline_key(views[i]);
        let order = match (before, key) {
            (Some(p), Some(q)) => p.cmp(&q),
            _ => cmp_at(a, i - 1, a, i),
        };
        before = key;
        order <= least
    })
}

/// `df` in customer_id order, flagged as [`flag_sorted_ids`] flags it:
/// sorted only when it is not already.
pub fn sorted_and_flagged(df: DataFrame) -> Result<DataFrame> {
    let df = flag_sorted_ids(df)?;
    match df.column("customer_id")?.is_sorted_flag() {
        IsSorted::Ascending => Ok(df),
        _ => flag_sorted_ids(sort_by_id(df, None)?),
    }
}

/// `df`'s rows in the order of [`by_id`].
pub fn sort_by_id(df: DataFrame, then: Option<&str>) -> Result<DataFrame> {
    let order = by_id(&df, then)?;
    permuted(df, &order, false)
}

/// `df`'s rows put in `order` (a permutation), two columns at a time: a
/// whole-frame gather would hold both frames at once (at 10^6 customers
/// ~500 MB over the rest of a run). Each column is made one chunk first: a
/// group-by's result comes in ~100 chunks, and gathering across them looks
/// up each row's chunk (10^7 rows: 1.3 s a column instead of 0.2 s).
/// `frugal` returns the replaced columns' memory as it goes, each time
/// about [`FRUGAL_BYTES`] of them have been replaced.
pub fn permuted(mut df: DataFrame, order: &IdxCa, frugal: bool) -> Result<DataFrame> {
    let runs = order
        .cont_slice()
        .ok()
        .and_then(|o| runs(o, o.len() / MIN_RUN));
    // SAFETY: a permutation keeps every column's name, type and length.
    let columns = unsafe { df.columns_mut_retain_schema() };
    let mut replaced = 0;
    // Two columns at a time: both cores busy, one copy of two columns
    // over the frame at most.
    for group in columns.chunks_mut(2) {
        // About 8 bytes a value (a column's own estimate would materialize
        // a constant column).
        replaced += group.iter().map(|c| c.len() * 8).sum::<usize>();
        group.par_iter_mut().try_for_each(|c| -> Result<()> {
            // Numbers are gathered from their chunks as they are (a lookup
            // of the chunk per row, no contiguous copy first); text is made
            // contiguous, as polars gathers text from several chunks
            // through a builder.
            let by_runs = runs.as_deref().and_then(|r| take_runs(c, r));
            *c = if let Some(taken) = by_runs {
                taken?
            } else if c.dtype().to_physical().is_primitive_numeric() {
                c.take(order)?
            } else {
                c.rechunk().take(order)?
            };
            Ok(())
        })?;
        if frugal && replaced >= FRUGAL_BYTES {
            crate::memory::release_free();
            replaced = 0;
        }
    }
    Ok(df)
}

/// Average rows a run of `order` must hold for [`permuted`] to copy runs
/// rather than gather rows.
const MIN_RUN: usize = 16;

/// `order` as runs of consecutive rows (first row, rows); `None` when it
/// breaks into more than `most` runs. A merge of a night's small file into
/// the stored history is ~2 runs per new customer: 10^7 rows in ~20,000.
fn runs(order: &[IdxSize], most: usize) -> Option<Vec<(IdxSize, IdxSize)>> {
    let mut runs = Vec::new();
    let mut rest = order;
    while let Some(&first) = rest.first() {
        if runs.len() == most {
            return None;
        }
        let len = rest
            .iter()
            .zip(first..)
            .take_while(|&(&r, want)| r == want)
            .count();
        runs.push((first, len as IdxSize));
        rest = &rest[len..];
    }
    Some(runs)
}

/// A numeric column without nulls taken run by run ([`runs`]): one copy
/// of each run from the chunk(s) holding it, where a gather looks up each
/// row's chunk (a merged pre-aggregate's columns are its files' row
/// groups: ~20% of a uniform 10^7 night's reading of the store went to
/// that lookup). `None` for other columns.
fn take_runs(c: &Column, runs: &[(IdxSize, IdxSize)]) -> Option<Result<Column>> {
    fn copy<T: PolarsNumericType>(
        ca: &ChunkedArray<T>,
        runs: &[(IdxSize, IdxSize)],
    ) -> ChunkedArray<T> {
        let chunks: Vec<&[T::Native]> = ca.downcast_iter().map(|a| a.values().as_slice()).collect();
        // Each chunk's first row.
        let firsts: Vec<usize> = chunks
            .iter()
            .scan(0, |at, c| {
                let first = *at;
                *at += c.len();
                Some(first)
            })
            .collect();
        let mut out = Vec::with_capacity(ca.len());
        for &(first, len) in runs {
            let (mut row, end) = (first as usize, (first + len) as usize);
            let mut k = firsts.partition_point(|&f| f <= row) - 1;
            while row < end {
                let chunk = chunks[k];
                let from = row - firsts[k];
                let n = (chunk.len() - from).min(end - row);
                out.extend_from_slice(&chunk[from..from + n]);
                row += n;
                k += 1;
            }
        }
        ChunkedArray::from_vec(ca.name().clone(), out)
    }
    if c.null_count() > 0 {
        return None;
    }
    let s = c.as_materialized_series();
    let physical = s.to_physical_repr();
    let taken: Series = match physical.dtype() {
        DataType::Int32 => copy(physical.i32().ok()?, runs).into_series(),
        DataType::Int64 => copy(physical.i64().ok()?, runs).into_series(),
        DataType::UInt32 => copy(physical.u32().ok()?, runs).into_series(),
        DataType::UInt64 => copy(physical.u64().ok()?, runs).into_series(),
        DataType::Float32 => copy(physical.f32().ok()?, runs).into_series(),
        DataType::Float64 => copy(physical.f64().ok()?, runs).into_series(),
        _ => return None,
    };
    // Back to the logical type (a date is its days).
    Some(taken.cast(s.dtype()).map(Column::from).map_err(Error::from))
}

/// `df`'s customer_id in one chunk, as [`merge_walk`] reads it.
pub fn id_column(df: &DataFrame) -> Result<StringChunked> {
    Ok(df.column("customer_id")?.str()?.rechunk().into_owned())
}

/// Row `i` of `a` against row `j` of `b` in byte order, from their views
/// where they decide it: an id of up to 12 bytes is held in its view, and
/// a longer one's first 4 bytes. `str`'s comparison calls memcmp for
/// every pair: most of a merge's walk over 10^6 ids.
#[inline]
pub(crate) fn cmp_at(
    a: &Array<StringType>,
    i: usize,
    b: &Array<StringType>,
    j: usize,
) -> std::cmp::Ordering {
    use polars_arrow::array::View;
    let (x, y) = (a.views()[i], b.views()[j]);
    if let (Some(p), Some(q)) = (inline_key(x), inline_key(y)) {
        return p.cmp(&q);
    }
    let first = |v: View| u32::from_be_bytes(v.prefix.to_ne_bytes());
    match first(x).cmp(&first(y)) {
        std::cmp::Ordering::Equal => a.value(i).cmp(b.value(j)),
        other => other,
    }
}

/// A text of up to 12 bytes (held in its view) as one integer that orders
/// and equals as the text does: its bytes big-endian, zero-padded, then
/// its length in the low bits. `None` for a longer text.
#[inline]
pub(crate) fn inline_key(v: polars_arrow::array::View) -> Option<u128> {
    if v.length > polars_arrow::array::View::MAX_INLINE_SIZE {
        return None;
    }
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&v.prefix.to_ne_bytes());
    k[4..8].copy_from_slice(&v.buffer_idx.to_ne_bytes());
    k[8..12].copy_from_slice(&v.offset.to_ne_bytes());
    // Past the length zeroed (whatever a builder left there).
    Some(u128::from_be_bytes(k) & !(u128::MAX >> (8 * v.length)) | v.length as u128)
}

/// Walks two id columns ([`id_column`]) as a full outer merge: `each` gets
/// every id's row on the left and on the right (`None` where that side
/// lacks it), in id order. `false`, without a call, unless each side is
/// strictly increasing (no null, no repeat, byte order).
pub fn merge_walk(
    l: &StringChunked,
    r: &StringChunked,
    each: impl FnMut(Option<usize>, Option<usize>),
) -> bool {
    if !strictly_increasing(l) || !strictly_increasing(r) {
        return false;
    }
    merge_walk_checked(l, r, each);
    true
}

/// [`merge_walk`] over sides the caller has checked are strictly
/// increasing (each check is a pass over the ids: a side walked several
/// times is checked once).
pub(crate) fn merge_walk_checked(
    l: &StringChunked,
    r: &StringChunked,
    mut each: impl FnMut(Option<usize>, Option<usize>),
) {
    use std::cmp::Ordering;
    let (la, ra) = (l.downcast_as_array(), r.downcast_as_array());
    let (mut i, mut j) = (0, 0);
    while i < la.len() || j < ra.len() {
        let next = match (i < la.len(), j < ra.len()) {
            (true, true) => cmp_at(la, i, ra, j),
            (true, false) => Ordering::Less,
            (false, _) => Ordering::Greater,
        };
        match next {
            Ordering::Less => {
                each(Some(i), None);
                i += 1;
            }
            Ordering::Equal => {
                each(Some(i), Some(j));
                (i, j) = (i + 1, j + 1);
            }
            Ordering::Greater => {
                each(None, Some(j));
                j += 1;
            }
        }
    }
}

/// `left` joined with `right` on customer_id when each holds every id at
/// most once, in byte order: one walk over the two id columns says which
/// row of either side each output row takes, and the result comes out in
/// customer_id order. polars' hash join gives its rows in no particular
/// order, and sorting the scored customers afterwards (56 columns) cost
/// ~0.7 s of a 10^7 nightly run. The columns are polars' join's: `left`'s
/// (customer_id coalesced with `right`'s for `full`), then `right`'s other
/// columns. `how` keeps the ids of either side (`Full`), the left's
/// (`Left`) or both's (`Inner`). `None` (the caller joins with polars
/// instead) when a side is out of order, repeats an id, holds a null id,
/// or shares another column name, or for any other join type.
pub fn merge_on_id(
    left: &DataFrame,
    right: &DataFrame,
    how: JoinType,
) -> Result<Option<DataFrame>> {
    let full = match how {
        JoinType::Full => true,
        JoinType::Left | JoinType::Inner => false,
        _ => return Ok(None),
    };
    let inner = matches!(how, JoinType::Inner);
    let shared = right
        .get_column_names()
        .into_iter()
        .any(|n| n != "customer_id" && left.column(n).is_ok());
    if shared {
        return Ok(None);
    }
    let (l, r) = (id_column(left)?, id_column(right)?);
    // Each output row's row on either side.
    let (mut li, mut ri) = (Vec::with_capacity(l.len()), Vec::with_capacity(l.len()));
    let in_order = merge_walk(&l, &r, |i, j| {
        if full || (i.is_some() && (j.is_some() || !inner)) {
            li.push(i.map(|i| i as IdxSize));
            ri.push(j.map(|j| j as IdxSize));
        }
    });
    if !in_order {
        return Ok(None);
    }
    let rows = li.len();
    let (left_same, right_same) = (identity(&li, left.height()), identity(&ri, right.height()));
    let (la, ra) = (l.downcast_as_array(), r.downcast_as_array());
    // Each row's id, from whichever side holds it (full joins only): a
    // side that holds every output row in order already has them.
    let merged = full.then(|| match (left_same, right_same) {
        (true, _) => l.clone(),
        (_, true) => r.clone(),
        _ => StringChunked::from_iter_values(
            "customer_id".into(),
            li.iter().zip(&ri).map(|(a, b)| match (a, b) {
                (Some(a), _) => la.value(*a as usize),
                (None, b) => ra.value(b.unwrap_or_default() as usize),
            }),
        ),
    });
    // A side's columns at its rows; its customer_id only when `id`.
    let gather =
        |df: &DataFrame, at: Vec<Option<IdxSize>>, same: bool, id: bool| -> Result<Vec<Column>> {
            let keep: Vec<&Column> = df
                .columns()
                .iter()
                .filter(|c| id || c.name() != "customer_id")
                .collect();
            if df.height() == 0 {
                // Every index is null: nothing to read.
                return Ok(keep
                    .iter()
                    .map(|c| Column::full_null(c.name().clone(), rows, c.dtype()))
                    .collect());
            }
            if same {
                return Ok(keep.into_iter().cloned().collect());
            }
            // Which output rows this side fills, shared by its columns.
            let filled = Bitmap::from_trusted_len_iter(at.iter().map(Option::is_some));
            keep.par_iter()
                .map(|c| Ok(gathered(c, &at, &filled)?))
                .collect()
        };
    // The left's customer_id is the merged one's for full joins.
    let (columns, right_columns) = rayon::join(
        || gather(left, li, left_same, !full),
        || gather(right, ri, right_same, false),
    );
    let mut columns = columns?;
    if let Some(id) = merged {
        let at = left.get_column_index("customer_id").unwrap_or(0);
        columns.insert(at, id.with_name("customer_id".into()).into_column());
    }
    columns.extend(right_columns?);
    Ok(Some(flag_sorted_ids(DataFrame::new(rows, columns)?)?))
}

/// Whether `at` takes every row of a side of `height` rows, in order.
fn identity(at: &[Option<IdxSize>], height: usize) -> bool {
    at.len() == height && at.iter().enumerate().all(|(k, x)| *x == Some(k as IdxSize))
}

/// `c` at the rows `at` (null where `None`; `filled` says which are not).
/// Numbers and dates by one pass over their values: polars' `take` with
/// nullable indices cost ~8 ns a value (~100 ms for the measures' 13
/// columns at 10^6 customers, single-threaded stretches of a night's
/// scoring); anything else through it.
fn gathered(c: &Column, at: &[Option<IdxSize>], filled: &Bitmap) -> PolarsResult<Column> {
    fn numbers<T: PolarsNumericType>(
        ca: &ChunkedArray<T>,
        at: &[Option<IdxSize>],
        filled: &Bitmap,
    ) -> Series {
        let ca = ca.rechunk();
        let arr = ca.downcast_as_array();
        let src = arr.values().as_slice();
        let values: Vec<T::Native> = at
            .iter()
            .map(|i| i.map_or_else(T::Native::default, |i| src[i as usize]))
            .collect();
        let validity = match arr.validity() {
            None => filled.clone(),
            Some(v) => Bitmap::from_trusted_len_iter(
                at.iter().map(|i| i.is_some_and(|i| v.get_bit(i as usize))),
            ),
        };
        ChunkedArray::<T>::from_vec_validity(ca.name().clone(), values, Some(validity))
            .into_series()
    }
    let s = c.as_materialized_series();
    let phys = s.to_physical_repr();
    let out = match phys.dtype() {
        DataType::Int32 => numbers(phys.i32()?, at, filled),
        DataType::Int64 => numbers(phys.i64()?, at, filled),
        DataType::UInt32 => numbers(phys.u32()?, at, filled),
        DataType::UInt64 => numbers(phys.u64()?, at, filled),
        DataType::Float64 => numbers(phys.f64()?, at, filled),
        DataType::Float32 => numbers(phys.f32()?, at, filled),
        _ => {
            let at = IdxCa::from_iter_options("at".into(), at.iter().copied());
            return c.rechunk().take(&at);
        }
    };
    // SAFETY: `out` is `c`'s physical type, so `c`'s dtype fits it.
    Ok(unsafe { out.from_physical_unchecked(c.dtype()) }?.into_column())
}

/// How much of a frame [`permuted`] replaces between two returns of free
/// memory. A return walks all the allocator's free memory (10-25 ms at
/// 10^7 transactions) and its pages are faulted in again when reused:
/// one after each pair of columns made 140 of them in a lean nightly run
/// at 10^7 (~0.4 s with the faults). Buffers of 4 MiB and more go back at
/// once anyway ([`crate::alloc`]).
const FRUGAL_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Run;

    /// `owned` as optional ids, every `n`th (from the first) null.
    fn every_nth_null(owned: &[String], n: usize) -> Vec<Option<&str>> {
        owned
            .iter()
            .enumerate()
            .map(|(i, s)| (i % n != 0).then_some(s.as_str()))
            .collect()
    }

    /// The order an independent computation gives: a plain sort of
    /// (bytes, tie, row).
    fn expected(ids: &[Option<&str>], ties: &[i32]) -> Vec<IdxSize> {
        let mut rows: Vec<usize> = (0..ids.len()).collect();
        rows.sort_by(|&a, &b| {
            ids[a]
                .unwrap_or("")
                .as_bytes()
                .cmp(ids[b].unwrap_or("").as_bytes())
                .then(ties[a].cmp(&ties[b]))
                .then(a.cmp(&b))
        });
        rows.into_iter().map(|r| r as IdxSize).collect()
    }

    #[test]
    fn orders_by_bytes_then_tie_then_row() {
        let long = "CUSTOMER-ACCOUNT-000";
        let ids = vec![
            Some("b"),
            Some("ab"),
            Some("ab\0"),
            None,
            Some("a"),
            Some("é"),
            Some(""),
            Some("CUSTOMER-ACCOUNT-0002"),
            Some("CUSTOMER-ACCOUNT-0001"),
            Some("CUSTOMER-ACCOUNT-0001"),
            Some("CUSTOMER-ACCOUNT-000"),
            Some("CUSTOMER-ACCOUNT-00"),
            Some(long),
            Some("ab"),
            Some("0123456789abcdef"),
            Some("0123456789abcdef\0"),
        ];
        let ties = vec![3, 2, 1, 0, 0, 0, 0, 5, 9, 4, 1, 1, 0, 1, 0, 0];
        let df = df!("customer_id" => &ids, "day" => &ties).unwrap();
        let got = by_id(&df, Some("day")).unwrap();
        let got: Vec<IdxSize> = got.into_no_null_iter().collect();
        assert_eq!(got, expected(&ids, &ties));
        // Spot checks worked out by hand: "" and null first (row order),
        // "ab" (tie 1, row 13) before "ab" (tie 2, row 1).
        assert_eq!(&got[..2], &[3, 6]);
        let ab: Vec<IdxSize> = got
            .iter()
            .copied()
            .filter(|r| [1, 13].contains(r))
            .collect();
        assert_eq!(ab, vec![13, 1]);
        let sorted = sort_by_id(df, Some("day")).unwrap();
        assert_eq!(sorted.column("day").unwrap().i32().unwrap().get(0), Some(0));
    }

    /// Short ids take the packed keys: the same order as a plain sort,
    /// with NULs, non-ASCII bytes, empty and null ids, negative and null
    /// ties; and the runs of equal (id, tie) start where a plain scan of
    /// that order says.
    #[test]
    fn packed_keys_match_a_plain_sort() {
        let mut next = crate::testing::lcg(11u64);
        // 13 bytes: 104 + 4 (length) + 3 (ties) + 12 (rows) bits, so no
        // null ties there (they widen the ties to 32 bits).
        for longest in [0, 1, 7, 13] {
            let owned: Vec<String> = (0..4000)
                .map(|_| {
                    let n = next() % (longest + 1);
                    (0..n)
                        .map(|_| ['a', 'b', '\0', 'é'][next() % 4])
                        .collect::<String>()
                })
                .map(|s| s.chars().take(longest).collect::<String>())
                .filter(|s| s.len() <= longest)
                .collect();
            let ids = every_nth_null(&owned, 97);
            let days: Vec<Option<i32>> = (0..ids.len())
                .map(|i| (i % 89 != 0 || longest > 8).then_some((next() % 5) as i32 - 2))
                .collect();
            let ties: Vec<i32> = days.iter().map(|d| d.unwrap_or(i32::MIN)).collect();
            let df = df!("customer_id" => &ids, "day" => &days).unwrap();
            let ca = df.column("customer_id").unwrap().str().unwrap();
            assert!(packed(ca, &ties).is_some(), "longest {longest}");
            let got: Vec<IdxSize> = by_id(&df, Some("day"))
                .unwrap()
                .into_no_null_iter()
                .collect();
            let want = expected(&ids, &ties);
            assert_eq!(got, want, "longest {longest}");
            // The groups need ids and ties without nulls: those rows, in
            // order.
            let kept = df.drop_nulls::<String>(None).unwrap();
            let rows: Vec<(&str, i32)> = ids
                .iter()
                .zip(&days)
                .filter_map(|(i, d)| Some(((*i)?, (*d)?)))
                .collect();
            let groups = groups_by_id(&kept, "day").unwrap();
            let (order, starts) = (&groups.order, &groups.starts);
            let want_starts: Vec<IdxSize> = (0..order.len())
                .filter(|&i| i == 0 || rows[order[i - 1] as usize] != rows[order[i] as usize])
                .map(|i| i as IdxSize)
                .collect();
            assert_eq!(starts, &want_starts, "longest {longest}");
            group_keys_are_the_first_rows(&groups, &rows);
        }
        // Too wide for 128 bits (20 positions of 7 bits): the other keys,
        // the same order.
        let df = df!("customer_id" => ["\u{7f}".repeat(20), "\u{1}".repeat(20)]).unwrap();
        let ca = df.column("customer_id").unwrap().str().unwrap();
        assert!(packed(ca, &[0, 0]).is_none());
        let got: Vec<IdxSize> = by_id(&df, None).unwrap().into_no_null_iter().collect();
        assert_eq!(got, vec![1, 0]);
    }

    /// Ids of a few values a position (a letter, then digits; lengths
    /// from 0 to 14) take a few bits a position: `u64` keys when short
    /// enough, and the order and runs a plain sort gives.
    #[test]
    fn compacted_keys_match_a_plain_sort() {
        let mut next = crate::testing::lcg(5u64);
        let owned: Vec<String> = (0..5000)
            .map(|_| {
                let n = next() % 14;
                let letter = ['C', 'D'][next() % 2];
                let digits: String = (0..n)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect();
                if n == 0 {
                    String::new()
                } else {
                    format!("{letter}{digits}")
                }
            })
            .collect();
        let ids = every_nth_null(&owned, 101);
        let ties: Vec<i32> = (0..ids.len()).map(|_| (next() % 3) as i32 - 1).collect();
        // The frame, after checking the key width and the order.
        let check = |ids: &[Option<&str>], narrow: bool| -> DataFrame {
            let df = df!("customer_id" => ids, "day" => &ties).unwrap();
            let ca = df.column("customer_id").unwrap().str().unwrap();
            let p = packed(ca, &ties).expect("fits 128 bits");
            assert_eq!(matches!(p.keys, PackedKeys::Narrow(_)), narrow);
            let got: Vec<IdxSize> = by_id(&df, Some("day"))
                .unwrap()
                .into_no_null_iter()
                .collect();
            assert_eq!(got, expected(ids, &ties));
            df
        };
        // 14 positions: the first 2 bits (C, D or ended), 13 of 4 bits
        // (a digit or ended), + tie 2 + rows 13 bits: 69 > 64.
        check(&ids, false);
        // Cut to 8 bytes: 2 + 7 * 4 + 2 + 13 = 45 bits.
        let short: Vec<Option<&str>> = ids
            .iter()
            .map(|i| i.map(|s| &s[..s.len().min(8)]))
            .collect();
        let df = check(&short, true);
        let groups = groups_by_id(&df.drop_nulls::<String>(None).unwrap(), "day").unwrap();
        let (order, starts) = (&groups.order, &groups.starts);
        let kept: Vec<(&str, i32)> = short
            .iter()
            .zip(&ties)
            .filter_map(|(i, &t)| Some(((*i)?, t)))
            .collect();
        let want: Vec<IdxSize> = (0..order.len())
            .filter(|&i| i == 0 || kept[order[i - 1] as usize] != kept[order[i] as usize])
            .map(|i| i as IdxSize)
            .collect();
        assert_eq!(starts, &want);
        group_keys_are_the_first_rows(&groups, &kept);
    }

    /// Packed groups' keys are their first rows' tie, and their ids
    /// numbered from 0, one more at each new id.
    fn group_keys_are_the_first_rows(groups: &Groups, rows: &[(&str, i32)]) {
        let keys = groups.keys.as_ref().expect("packed");
        let firsts: Vec<(&str, i32)> = groups
            .starts
            .iter()
            .map(|&s| rows[groups.order[s as usize] as usize])
            .collect();
        let then: Vec<i32> = firsts.iter().map(|f| f.1).collect();
        assert_eq!(keys.then, then);
        let mut n = 0;
        let numbers: Vec<IdxSize> = (0..firsts.len())
            .map(|g| {
                n += (g > 0 && firsts[g - 1].0 != firsts[g].0) as IdxSize;
                n
            })
            .collect();
        assert_eq!(keys.id_number, numbers);
    }

    /// The flag is set only on sorted ids without nulls, and joins of
    /// flagged frames (which polars merges) give what unflagged ones
    /// (hashed) give, for every join the summaries and scoring use.
    #[test]
    fn flagged_ids_join_as_unflagged_ones_do() {
        let flag = |ids: &[Option<&str>]| {
            let df = df!("customer_id" => ids).unwrap();
            flag_sorted_ids(df)
                .unwrap()
                .column("customer_id")
                .unwrap()
                .is_sorted_flag()
        };
        assert_eq!(
            flag(&[Some("a"), Some("a"), Some("b")]),
            IsSorted::Ascending
        );
        assert_eq!(flag(&[Some("b"), Some("a")]), IsSorted::Not);
        assert_eq!(flag(&[None, Some("a")]), IsSorted::Not);
        let left = df!(
            "customer_id" => ["a", "c", "d", "f", "h"],
            "x" => [1, 2, 3, 4, 5],
        )
        .unwrap();
        let right = df!(
            "customer_id" => ["b", "c", "f", "g", "h"],
            "y" => [10, 20, 30, 40, 50],
        )
        .unwrap();
        let (fl, fr) = (
            flag_sorted_ids(left.clone()).unwrap(),
            flag_sorted_ids(right.clone()).unwrap(),
        );
        let full = JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns);
        for args in [
            JoinArgs::new(JoinType::Inner),
            JoinArgs::new(JoinType::Left),
            full,
        ] {
            let join = |l: &DataFrame, r: &DataFrame| {
                l.clone()
                    .lazy()
                    .join(
                        r.clone().lazy(),
                        [col("customer_id")],
                        [col("customer_id")],
                        args.clone(),
                    )
                    .run()
                    .unwrap()
                    .sort(["customer_id"], Default::default())
                    .unwrap()
            };
            let (merged, hashed) = (join(&fl, &fr), join(&left, &right));
            assert!(
                merged.equals_missing(&hashed),
                "{:?}\n{merged}\n{hashed}",
                args.how
            );
        }
    }

    #[test]
    fn many_random_ids_match_a_plain_sort() {
        // Ids of 1..24 bytes over a small alphabet, so long shared
        // prefixes, equal ids and equal ties all occur.
        let mut next = crate::testing::lcg(7u64);
        let owned: Vec<String> = (0..5000)
            .map(|_| {
                let n = 1 + next() % 24;
                (0..n).map(|_| ['a', 'b', '\0'][next() % 3]).collect()
            })
            .collect();
        let ids: Vec<Option<&str>> = owned.iter().map(|s| Some(s.as_str())).collect();
        let ties: Vec<i32> = (0..ids.len()).map(|_| (next() % 3) as i32).collect();
        let df = df!("customer_id" => &ids, "day" => &ties).unwrap();
        let got: Vec<IdxSize> = by_id(&df, Some("day"))
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(got, expected(&ids, &ties));
    }

    /// Hand-checked: `full` keeps every id of either side in byte order
    /// with the other side's columns null where it lacks the id; `left`
    /// keeps the left's rows; an empty side gives null columns; and the
    /// result equals polars' join sorted by customer_id.
    #[test]
    fn merge_on_id_joins_sorted_sides_in_order() {
        let left = df!(
            "customer_id" => ["a", "b", "d"],
            "cents" => [Some(1i64), None, Some(4)],
        )
        .unwrap();
        // Every type the merge gathers itself (numbers, dates, with and
        // without nulls) and one it leaves to polars (booleans).
        let d = |day: u32| chrono::NaiveDate::from_ymd_opt(2010, 1, day).unwrap();
        let typed = |ids: &[&str], n: i32| {
            df!(
                "customer_id" => ids,
                "k" => (0..n).collect::<Vec<i32>>(),
                "day" => (0..n).map(|i| (i % 2 == 0).then(|| d(1 + i as u32))).collect::<Vec<_>>(),
                "share" => (0..n).map(|i| i as f64 / 4.0).collect::<Vec<f64>>(),
                "flag" => (0..n).map(|i| (i > 0).then_some(i % 2 == 1)).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        let all = typed(&["a", "b", "c", "d", "e"], 5);
        let some = typed(&["b", "d"], 2)
            .lazy()
            .select([col("*").name().suffix("_r")])
            .rename(["customer_id_r"], ["customer_id"], true)
            .run()
            .unwrap();
        let right = df!(
            "customer_id" => ["b", "c", "d", "e"],
            "region" => [Some("N"), Some("S"), None, Some("W")],
        )
        .unwrap();
        let full = merge_on_id(&left, &right, JoinType::Full).unwrap().unwrap();
        let want = df!(
            "customer_id" => ["a", "b", "c", "d", "e"],
            "cents" => [Some(1i64), None, None, Some(4), None],
            "region" => [None, Some("N"), Some("S"), None, Some("W")],
        )
        .unwrap();
        assert!(full.equals_missing(&want), "{full}");
        let left_only = merge_on_id(&left, &right, JoinType::Left).unwrap().unwrap();
        let want = df!(
            "customer_id" => ["a", "b", "d"],
            "cents" => [Some(1i64), None, Some(4)],
            "region" => [None, Some("N"), None],
        )
        .unwrap();
        assert!(left_only.equals_missing(&want), "{left_only}");
        let inner = merge_on_id(&left, &right, JoinType::Inner)
            .unwrap()
            .unwrap();
        let want = df!(
            "customer_id" => ["b", "d"],
            "cents" => [None::<i64>, Some(4)],
            "region" => [Some("N"), None],
        )
        .unwrap();
        assert!(inner.equals_missing(&want), "{inner}");
        // polars' joins, sorted, give the same frames, here and for every
        // join type between the typed frames either way round.
        let mut cases = vec![
            (&left, &right, JoinType::Full, full.clone()),
            (&left, &right, JoinType::Left, left_only.clone()),
            (&left, &right, JoinType::Inner, inner.clone()),
        ];
        for how in [JoinType::Full, JoinType::Left, JoinType::Inner] {
            cases.push((
                &all,
                &some,
                how.clone(),
                merge_on_id(&all, &some, how.clone()).unwrap().unwrap(),
            ));
            cases.push((
                &some,
                &all,
                how.clone(),
                merge_on_id(&some, &all, how).unwrap().unwrap(),
            ));
        }
        for (left, right, how, got) in cases {
            let polars = left
                .clone()
                .lazy()
                .join(
                    right.clone().lazy(),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(how.clone()).with_coalesce(JoinCoalesce::CoalesceColumns),
                )
                .sort(["customer_id"], Default::default())
                .run()
                .unwrap();
            assert!(polars.equals_missing(&got), "{how:?}: {polars} vs {got}");
        }
        let empty = right.clear();
        let none = merge_on_id(&left, &empty, JoinType::Left).unwrap().unwrap();
        assert_eq!(none.column("region").unwrap().null_count(), 3);
        let from_empty = merge_on_id(&left.clear(), &right, JoinType::Full)
            .unwrap()
            .unwrap();
        assert_eq!(
            from_empty.column("customer_id").unwrap(),
            right.column("customer_id").unwrap()
        );
        assert_eq!(from_empty.column("cents").unwrap().null_count(), 4);
    }

    /// Ids compared from their views order as their bytes do: short and
    /// long ones (12 bytes inline, longer in buffers), NULs, shared
    /// prefixes; and the order checks agree with a plain comparison.
    #[test]
    fn ids_compare_in_byte_order() {
        let mut next = crate::testing::lcg(13u64);
        let owned: Vec<String> = (0..400)
            .map(|_| {
                let n = next() % 20;
                (0..n).map(|_| ['a', 'b', '\0', 'é'][next() % 4]).collect()
            })
            .collect();
        let ca = StringChunked::from_iter_values("id".into(), owned.iter().map(String::as_str));
        let a = ca.downcast_as_array();
        for i in 0..owned.len() {
            for j in 0..owned.len() {
                assert_eq!(
                    cmp_at(a, i, a, j),
                    owned[i].as_bytes().cmp(owned[j].as_bytes()),
                    "{:?} vs {:?}",
                    owned[i],
                    owned[j]
                );
            }
        }
        let mut sorted = owned.clone();
        sorted.sort();
        let mut unique = sorted.clone();
        unique.dedup();
        for (v, in_order, strict) in [
            (&owned, false, false),
            (&sorted, true, sorted.len() == unique.len()),
            (&unique, true, true),
        ] {
            let ca = StringChunked::from_iter_values("id".into(), v.iter().map(String::as_str));
            assert_eq!(super::in_order(&ca), in_order);
            assert_eq!(strictly_increasing(&ca), strict);
            // The same ids in many chunks (empty ones among them), against
            // each id compared as bytes with the next.
            let mut chunked = ca.clear();
            for piece in v.chunks(7) {
                let c =
                    StringChunked::from_iter_values("id".into(), piece.iter().map(String::as_str));
                chunked.append(&c).unwrap();
                chunked.append(&ca.clear()).unwrap();
            }
            assert!(chunked.chunks().len() > 50);
            let plain = |strict: bool| {
                v.windows(2).all(|w| {
                    let (a, b) = (w[0].as_bytes(), w[1].as_bytes());
                    a < b || (!strict && a == b)
                })
            };
            assert_eq!(super::in_order(&chunked), plain(false));
            assert_eq!(strictly_increasing(&chunked), plain(true));
        }
        // Out of order only where two chunks meet; equal only there.
        let two = |a: [&str; 2], b: [&str; 2]| {
            let mut c = StringChunked::from_iter_values("id".into(), a.into_iter());
            c.append(&StringChunked::from_iter_values("id".into(), b.into_iter()))
                .unwrap();
            c
        };
        assert!(!super::in_order(&two(["a", "c"], ["b", "d"])));
        assert!(super::in_order(&two(["a", "b"], ["b", "c"])));
        assert!(!strictly_increasing(&two(["a", "b"], ["b", "c"])));
        assert!(strictly_increasing(&two(["a", "b"], ["c", "d"])));
    }

    /// One column longer than a check's stretch (2^15 ids), short and long
    /// ids mixed: a single swap or repeat is found wherever it lies, at a
    /// stretch's first or last id as well as within one.
    #[test]
    fn a_long_column_is_checked_across_its_stretches() {
        let n = 3 * (1 << 15) + 5;
        // Every third id longer than 12 bytes (kept outside its view).
        let ids: Vec<String> = (0..n)
            .map(|i| match i % 3 {
                0 => format!("C{i:08}-long-suffix"),
                _ => format!("C{i:08}"),
            })
            .collect();
        let check = |v: &[String]| {
            let ca = StringChunked::from_iter_values("id".into(), v.iter().map(String::as_str));
            (super::in_order(&ca), strictly_increasing(&ca))
        };
        assert_eq!(check(&ids), (true, true));
        for at in [
            1,
            (1 << 15) - 1,
            1 << 15,
            (1 << 15) + 1,
            2 * (1 << 15),
            n - 1,
        ] {
            let mut swapped = ids.clone();
            swapped.swap(at - 1, at);
            assert_eq!(check(&swapped), (false, false), "swapped at {at}");
            let mut repeated = ids.clone();
            repeated[at] = repeated[at - 1].clone();
            assert_eq!(check(&repeated), (true, false), "repeated at {at}");
        }
    }

    /// Out of order, repeated or null ids, or another shared column name:
    /// no merge (the caller joins with polars).
    #[test]
    fn merge_on_id_declines_what_it_cannot_merge() {
        let sorted = df!("customer_id" => ["a", "b"], "x" => [1i64, 2]).unwrap();
        for ids in [
            vec![Some("b"), Some("a")],
            vec![Some("a"), Some("a")],
            vec![None, Some("a")],
        ] {
            let other = df!("customer_id" => ids, "y" => [1i64, 2]).unwrap();
            assert!(
                merge_on_id(&sorted, &other, JoinType::Full)
                    .unwrap()
                    .is_none()
            );
            assert!(
                merge_on_id(&other, &sorted, JoinType::Left)
                    .unwrap()
                    .is_none()
            );
        }
        let clash = df!("customer_id" => ["a", "c"], "x" => [3i64, 4]).unwrap();
        assert!(
            merge_on_id(&sorted, &clash, JoinType::Full)
                .unwrap()
                .is_none()
        );
        assert!(
            merge_on_id(&sorted, &sorted.clone().drop("x").unwrap(), JoinType::Right)
                .unwrap()
                .is_none()
        );
    }

    /// Hand-checked runs; and a merge-like permutation of a frame in
    /// several chunks (runs crossing chunk boundaries) comes out as
    /// polars' gather gives it, for each column type, with nulls.
    #[test]
    fn runs_of_an_order_are_copied_as_a_gather_takes_them() {
        assert_eq!(
            runs(&[3, 4, 5, 0, 1, 9], 8),
            Some(vec![(3, 3), (0, 2), (9, 1)])
        );
        assert_eq!(runs(&[3, 4, 5, 0, 1, 9], 2), None);
        assert_eq!(runs(&[], 0), Some(vec![]));
        let part = |from: i32, to: i32| {
            df!(
                "day" => (from..to).collect::<Vec<_>>(),
                "cents" => (from..to).map(|v| v as i64 * 7).collect::<Vec<_>>(),
                "units" => (from..to).map(|v| v as f64 / 4.0).collect::<Vec<_>>(),
                "id" => (from..to).map(|v| format!("c{v}")).collect::<Vec<_>>(),
                "maybe" => (from..to).map(|v| (v % 3 != 0).then_some(v)).collect::<Vec<_>>(),
            )
            .unwrap()
            .lazy()
            .with_column(col("day").cast(DataType::Date))
            .collect()
            .unwrap()
        };
        let mut df = part(0, 5);
        df.vstack_mut_owned(part(5, 12)).unwrap();
        df.vstack_mut_owned(part(12, 20)).unwrap();
        assert_eq!(df.first_col_n_chunks(), 3);
        // The rows of two "files" (0..14 and 14..20) interleaved in runs.
        let order: Vec<IdxSize> = [
            0, 1, 2, 3, 14, 15, 4, 5, 6, 7, 8, 9, 10, 16, 11, 12, 13, 17, 18, 19,
        ]
        .to_vec();
        let order = IdxCa::from_vec("order".into(), order);
        let expected = df.take(&order).unwrap();
        let r = runs(order.cont_slice().unwrap(), 20).unwrap();
        assert_eq!(r, [(0, 4), (14, 2), (4, 7), (16, 1), (11, 3), (17, 3)]);
        for c in df.columns() {
            let name = c.name().as_str();
            match take_runs(c, &r) {
                Some(taken) => {
                    assert_ne!(name, "maybe", "a column with nulls is gathered");
                    assert_ne!(name, "id", "text is gathered");
                    let taken = taken.unwrap();
                    assert_eq!(taken.dtype(), c.dtype());
                    assert!(taken.equals(expected.column(name).unwrap()), "{name}");
                }
                None => assert!(name == "maybe" || name == "id", "{name}"),
            }
        }
        let cents = expected.column("cents").unwrap().i64().unwrap();
        let cents: Vec<i64> = cents.into_no_null_iter().collect();
        assert_eq!(&cents[..7], &[0, 7, 14, 21, 98, 105, 28]);
        // Long runs: permuted copies them.
        let order = IdxCa::from_vec(
            "order".into(),
            [(10..20), (0..10)].into_iter().flatten().collect(),
        );
        let got = permuted(df.clone(), &order, false).unwrap();
        assert!(got.equals_missing(&df.take(&order).unwrap()));
    }
}
