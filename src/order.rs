//! Rows in customer_id order, faster than polars' sort on a text column.
//!
//! polars compares text through its views, one random memory access per
//! comparison: sorting 10^7 pre-aggregate rows by customer_id took 12 s
//! (`cargo bench --bench hot`), most of a cold store's pre-aggregate time.
//! Here each row becomes a fixed-size key (the id's first 16 bytes as a
//! big-endian integer, its length, the tie-break, its row number), sorted
//! in place; only ids longer than 16 bytes that share those 16 bytes are
//! compared in full afterwards.

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};

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
    let (keys, _) = sorted_keys(df, then)?;
    Ok(IdxCa::from_vec(
        "order".into(),
        keys.into_iter().map(|k| k.row).collect(),
    ))
}

/// [`by_id`]'s order (ties on `then` left in row order) and where each
/// run of rows with equal (customer_id, `then`) starts in it: a sort-based
/// group-by, which needs no hash table and leaves the groups sorted.
/// `customer_id` and `then` must hold no nulls (null would group with "").
pub fn groups_by_id(df: &DataFrame, then: &str) -> Result<(Vec<IdxSize>, Vec<IdxSize>)> {
    let (keys, ids) = sorted_keys(df, Some(then))?;
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
    Ok((keys.into_iter().map(|k| k.row).collect(), starts))
}

/// The rows' keys in [`by_id`]'s order, and the ids they were made from.
fn sorted_keys(df: &DataFrame, then: Option<&str>) -> Result<(Vec<Key>, StringChunked)> {
    let ids = df.column("customer_id")?.str()?.rechunk().into_owned();
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
    Ok((keys, ids))
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
/// `frugal` returns the replaced columns' memory as it goes.
pub fn permuted(mut df: DataFrame, order: &IdxCa, frugal: bool) -> Result<DataFrame> {
    // SAFETY: a permutation keeps every column's name, type and length.
    let columns = unsafe { df.columns_mut_retain_schema() };
    // Two columns at a time: both cores busy, one copy of two columns
    // over the frame at most.
    for group in columns.chunks_mut(2) {
        group.par_iter_mut().try_for_each(|c| -> Result<()> {
            *c = c.rechunk().take(order)?;
            Ok(())
        })?;
        if frugal {
            crate::memory::release_free();
        }
    }
    Ok(df)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn many_random_ids_match_a_plain_sort() {
        // Ids of 1..24 bytes over a small alphabet, so long shared
        // prefixes, equal ids and equal ties all occur.
        let mut x = 7u64;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
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
}
