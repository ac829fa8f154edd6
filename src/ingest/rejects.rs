//! The rejects table, and duplicate ids collapsed to their first occurrence
//! (file order, then line) within a run.

use polars::prelude::*;

use crate::error::Result;
use crate::ingest::parse::per_batch;
use crate::ingest::stage::POS;
use crate::io::{LINE, Run};

/// Files read into memory, as queries for [`split`].
pub(super) fn lazy(files: Vec<(DataFrame, String)>) -> Vec<(LazyFrame, String)> {
    files.into_iter().map(|(df, f)| (df.lazy(), f)).collect()
}

pub(super) fn reject_columns(table: &str, file: Expr) -> [Expr; 5] {
    [
        lit(table).alias("table"),
        file.alias("file"),
        col(LINE).alias("line"),
        col("reason"),
        col("value"),
    ]
}

/// Each row's file path, from its `__file_no` (null when out of range).
/// Looked up here rather than by a `when` per file: over an interactions
/// log of 1,095 files that expression took ~1 s to build and run, even on
/// no row.
fn file_names_of(rows: &DataFrame, files: &[String]) -> Result<Series> {
    let no = rows.column("__file_no")?.cast(&DataType::UInt32)?;
    let names: Vec<Option<&str>> = no
        .u32()?
        .iter()
        .map(|n| n.and_then(|n| files.get(n as usize)).map(String::as_str))
        .collect();
    Ok(Series::new("file".into(), names))
}

/// Moves every row whose `key` was already seen earlier (file order, then
/// line) to the rejects with `why`. The key column is collected (one
/// column) and hashed; only when a key repeats are the repeated keys' rows
/// looked at, and the later ones anti-joined away.
/// Also returns the dropped rows' file numbers and lines (and `__pos`
/// when `valid` has it).
pub(super) fn drop_duplicates(
    table: &str,
    valid: LazyFrame,
    files: &[String],
    key: &str,
    why: &str,
) -> Result<(LazyFrame, DataFrame, DataFrame)> {
    let (kept, rejects, later, _) = drop_duplicates_hashed(table, valid, files, key, why, None)?;
    Ok((kept, rejects, later))
}

/// [`drop_duplicates`], also giving the keys' hashes sorted when no key
/// repeats (then every valid row is kept): the store writes them as a new
/// segment's [`super::hashes::FILE`] instead of hashing and sorting again.
/// `given`: the valid rows' key hashes ([`id_hashes`], in any order), when
/// staging took them; else they are read from `valid`.
pub(super) fn drop_duplicates_hashed(
    table: &str,
    mut valid: LazyFrame,
    files: &[String],
    key: &str,
    why: &str,
    given: Option<Vec<u64>>,
) -> Result<(LazyFrame, DataFrame, DataFrame, Option<Vec<u64>>)> {
    let mut on = vec![col("__file_no"), col(LINE)];
    if valid.collect_schema()?.contains(POS) {
        on.push(col(POS));
    }
    let sorted = match given {
        Some(hashes) => sort_hashes(hashes),
        None => {
            let hashes = valid
                .clone()
                .select([per_batch(col(key), hash_column, DataType::UInt64)])
                .run()?;
            sorted_hashes(hashes.column(key)?.u64()?)
        }
    };
    if !repeats(&sorted) {
        let none = valid.clone().select(on).limit(0).run()?;
        return Ok((valid, no_rejects(), none, Some(sorted)));
    }
    drop(sorted);
    let repeated = valid
        .clone()
        .group_by([col(key)])
        .agg([len().alias("__n")])
        .filter(col("__n").gt(lit(1)))
        .select([col(key)]);
    let mut columns = on.clone();
    columns.push(col(key));
    let later = valid
        .clone()
        .select(columns)
        .join(
            repeated,
            [col(key)],
            [col(key)],
            JoinArgs::new(JoinType::Semi),
        )
        .filter(later_duplicate(key)?)
        .select(on)
        .run()?;
    let (kept, rejects) = move_to_rejects(table, valid, &later, files, why)?;
    Ok((kept, rejects, later, None))
}

/// `rows` (file numbers and lines) taken out of `valid` and returned as
/// rejects with `why`.
pub(super) fn move_to_rejects(
    table: &str,
    valid: LazyFrame,
    rows: &DataFrame,
    files: &[String],
    why: &str,
) -> Result<(LazyFrame, DataFrame)> {
    let rejects = as_rejects(table, rows.clone().lazy(), files, why)?;
    let on = [col("__file_no"), col(LINE)];
    let kept = valid.join(
        rows.clone().lazy().select(on.clone()),
        on.clone(),
        on,
        JoinArgs::new(JoinType::Anti),
    );
    Ok((kept, rejects))
}

/// An empty rejects table.
pub(super) fn no_rejects() -> DataFrame {
    let schema = Schema::from_iter([
        Field::new("table".into(), DataType::String),
        Field::new("file".into(), DataType::String),
        Field::new("line".into(), DataType::UInt64),
        Field::new("reason".into(), DataType::String),
        Field::new("value".into(), DataType::String),
    ]);
    DataFrame::empty_with_schema(&schema)
}

/// `rows` (with `__file_no` and the line) as rejects with `why`, collected.
pub(crate) fn as_rejects(
    table: &str,
    rows: LazyFrame,
    files: &[String],
    why: &str,
) -> Result<DataFrame> {
    let rows = rows.select([col("__file_no"), col(LINE)]).run()?;
    let names = file_names_of(&rows, files)?;
    Ok(rows
        .lazy()
        .with_columns([
            lit(why).alias("reason"),
            lit(NULL).cast(DataType::String).alias("value"),
        ])
        .select(reject_columns(table, lit(names)))
        .run_whole()?)
}

/// Whether two of the keys `hashes` were taken from may be equal, decided on
/// the sorted 64-bit hashes:
/// ~10× cheaper than an exact distinct count of strings; only a repeated
/// hash (a real duplicate or, rarely, a collision) costs the exact check.
#[cfg(test)]
fn may_repeat(hashes: &UInt64Chunked) -> bool {
    repeats(&sorted_hashes(hashes))
}

/// The hashes (nulls left out), sorted.
pub(super) fn sorted_hashes(hashes: &UInt64Chunked) -> Vec<u64> {
    sort_hashes(hashes.iter().flatten().collect())
}

/// `hashes` sorted.
fn sort_hashes(mut hashes: Vec<u64>) -> Vec<u64> {
    use rayon::prelude::*;
    hashes.par_sort_unstable();
    hashes
}

/// Whether sorted hashes hold one twice.
fn repeats(sorted: &[u64]) -> bool {
    sorted.windows(2).any(|w| w[0] == w[1])
}

/// The 64-bit hash of each key (null stays null), computed batch by batch
/// as the keys stream by: only the hashes are ever held, never the keys.
pub(super) fn hash_column(c: Column) -> PolarsResult<Column> {
    let s = c.as_materialized_series().str()?;
    let out: UInt64Chunked = s.iter().map(|v| v.map(key_hash)).collect();
    Ok(out.with_name(s.name().clone()).into_column())
}

/// The 64-bit hash of one key.
fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The hashes of `keys` ([`hash_column`]'s), nulls left out.
pub(super) fn id_hashes(keys: &StringChunked) -> Vec<u64> {
    keys.iter().flatten().map(key_hash).collect()
}

/// The 64-bit hash of a text column, as the duplicate checks use it.
pub(crate) fn id_hash(name: &str) -> Expr {
    per_batch(col(name), hash_column, DataType::UInt64)
}

/// Marks every row whose key was already seen earlier (file order, then line).
pub(super) fn later_duplicate(key: &str) -> Result<Expr> {
    let ord = col("__file_no").cast(DataType::UInt64) * lit(1u64 << 40) + col(LINE);
    Ok(ord.clone().gt(ord.min().over([col(key)])?))
}

/// Checks that `rejects` lists every row the counts say was set aside,
/// once: per table, each rejection reason's rows, and in all the rejected,
/// duplicate and after-as-of rows. The two are kept apart (the store's
/// per-file counts, its segments' rejects), so a row listed twice or lost
/// fails the run here instead of being published. Returns what held.
pub fn check_listed(
    rejects: &DataFrame,
    report: &std::collections::BTreeMap<String, super::TableReport>,
) -> Result<String> {
    use std::collections::BTreeMap;
    let mut listed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let tables = rejects.column("table")?.str()?;
    let reasons = rejects.column("reason")?.str()?;
    for (t, r) in tables.iter().zip(reasons.iter()) {
        *listed
            .entry((t.unwrap_or(""), r.unwrap_or("")))
            .or_default() += 1;
    }
    let total = |t: &str| -> usize {
        listed
            .iter()
            .filter(|((lt, _), _)| *lt == t)
            .map(|(_, n)| n)
            .sum()
    };
    let fail = |what: String| Err(crate::error::Error::Invariant(what));
    for (t, rep) in report {
        for (reason, &n) in &rep.rejected {
            let l = listed
                .get(&(t.as_str(), reason.as_str()))
                .copied()
                .unwrap_or(0);
            if l != n {
                return fail(format!(
                    "{t}: {n} rows counted as \"{reason}\", {l} listed in rejects"
                ));
            }
        }
        let n = rep.rejected_total() + rep.duplicates_collapsed + rep.excluded_after_as_of;
        if total(t) != n {
            return fail(format!(
                "{t}: {n} rows set aside by the counts, {} listed in rejects",
                total(t)
            ));
        }
    }
    if let Some(((t, _), _)) = listed.iter().find(|((t, _), _)| !report.contains_key(*t)) {
        return fail(format!("{t}: rows listed in rejects for a table not read"));
    }
    Ok(format!("{} rows", rejects.height()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_found_by_hash() {
        let hashed = |v: &[&str]| {
            let c = StringChunked::from_slice("id".into(), v).into_column();
            let h = hash_column(c).unwrap();
            h.u64().unwrap().clone()
        };
        assert!(may_repeat(&hashed(&["a", "b", "c", "b"])));
        assert!(!may_repeat(&hashed(&["a", "b", "c", "ab"])));
    }

    #[test]
    fn every_row_set_aside_must_be_listed_once() {
        use crate::ingest::TableReport;
        let rejects = |rows: &[(&str, &str)]| {
            df!(
                "table" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                "reason" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        // 2 unparseable amounts, 1 duplicate, 1 row after the as-of date.
        let mut rep = TableReport {
            duplicates_collapsed: 1,
            excluded_after_as_of: 1,
            ..Default::default()
        };
        rep.rejected.insert("unparseable amount".into(), 2);
        let report = std::collections::BTreeMap::from([("transactions".to_string(), rep)]);
        let t = "transactions";
        let right = [
            (t, "unparseable amount"),
            (t, "duplicate txn_id"),
            (t, "unparseable amount"),
            (t, "after as_of"),
        ];
        assert_eq!(check_listed(&rejects(&right), &report).unwrap(), "4 rows");
        // One listed twice, one lost, one of a table not read.
        let twice = [&right[..], &[(t, "unparseable amount")]].concat();
        let lost = &right[..3];
        let stray = [&right[..], &[("customers", "duplicate customer_id")]].concat();
        let err = |rows: &[(&str, &str)]| {
            check_listed(&rejects(rows), &report)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&twice).contains("2 rows counted as \"unparseable amount\", 3 listed"),
            "{}",
            err(&twice)
        );
        assert!(
            err(lost).contains("4 rows set aside by the counts, 3 listed"),
            "{}",
            err(lost)
        );
        assert!(err(&stray).contains("customers: rows listed in rejects for a table not read"));
    }
}
