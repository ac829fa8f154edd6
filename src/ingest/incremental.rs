//! Staging for the typed store: only new files, checked against the stored
//! txn_id hashes, with per-file spans and counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::Config;
use crate::contract::reason;
use crate::error::Result;
use crate::ingest::checks::{Spill, split};
use crate::ingest::rejects::{drop_duplicates_hashed, id_hash, move_to_rejects, no_rejects};
use crate::ingest::stage::{POS, Typed, stage_table};
use crate::ingest::{TableReport, count_reasons, enforce_ratio};
use crate::io::{self, LINE, Run};

/// The stored transactions a store run checks new rows against.
pub(crate) struct History<'a> {
    /// Files of XXH3-64 hashes of the stored txn_ids: sorted
    /// ([`super::hashes::FILE`]), each new hash looked up; or Parquet
    /// (column `h`, segments written before), streamed through a
    /// membership test of the new rows' hashes.
    pub hash_files: &'a [PathBuf],
    /// The stored typed files, for the exact check of a hash that matches.
    pub typed: &'a [PathBuf],
}

/// One transactions file ingested for the store.
pub(crate) struct NewFile {
    /// Its valid rows that repeat no earlier txn_id (of this batch, in file
    /// order then line, or of the history), in file order, with `__line`;
    /// rows after any as-of date included.
    pub typed: PathBuf,
    /// Its rejects (invalid rows and duplicates; never `after as_of`).
    pub rejects: DataFrame,
    /// Its counts: `rows_kept` counts every stored row, whatever its date.
    pub report: TableReport,
    /// The earliest and latest dates among its stored rows.
    pub span: Option<(NaiveDate, NaiveDate)>,
    /// Its stored txn_ids' hashes, sorted, when the duplicate check already
    /// holds them (one file, every valid row stored, at any size):
    /// the segment's [`super::hashes::FILE`] as it is to be written.
    pub sorted_hashes: Option<Vec<u64>>,
}

/// Ingests new transactions files for the store: the same checks as
/// [`ingest`], file by file, with the reject ratio over this batch and the
/// duplicate check spanning `history`. Nothing is cut at an as-of date:
/// the store holds every valid row and each run cuts at its own date.
/// The typed files are left in `work` for the store to move.
pub(crate) fn stage_new(
    cfg: &Config,
    files: Vec<PathBuf>,
    work: &Path,
    history: &History,
) -> Result<Vec<NewFile>> {
    let input = &cfg.inputs.transactions;
    let mut batch = TableReport::default();
    let unknown = &cfg.ingest.unknown_label;
    let mut staged = stage_table(
        "transactions",
        input,
        unknown,
        work,
        &mut batch,
        files,
        Typed {
            keep_line: true,
            compression: cfg.store.compression,
            hash_ids: true,
        },
    )?;
    let names: Vec<String> = staged.iter().map(|s| s.file.clone()).collect();
    // Every file's valid txn_id hashes, when staging took them all.
    let hashes = staged
        .iter_mut()
        .map(|s| s.hashes.take())
        .collect::<Option<Vec<Vec<u64>>>>()
        .map(|mut v| match v.len() {
            1 => v.pop().unwrap_or_default(),
            _ => v.concat(),
        });
    let pairs = staged
        .iter()
        .map(|s| (s.work.clone(), s.file.clone()))
        .collect();
    let (valid, invalid) = split(
        "transactions",
        pairs,
        true,
        Some(Spill {
            dir: work,
            rows: batch.files.iter().map(|f| f.rows).collect(),
            apart: staged.iter().map(|s| s.apart).collect(),
        }),
    )?;
    count_reasons(&invalid, &mut batch)?;
    enforce_ratio(
        "transactions",
        &input.path,
        &batch,
        cfg.ingest.max_reject_ratio,
    )?;
    let (kept, dups, later, sorted) = drop_duplicates_hashed(
        "transactions",
        valid,
        &names,
        "txn_id",
        reason::DUPLICATE_TXN,
        hashes,
    )?;
    let (kept, old_dups, old) = history_duplicates(kept, &names, history)?;
    // One file whose valid rows are all stored: the hashes are its segment's.
    // Kept whatever their number: the check already held them all sorted,
    // and hashing 10^8 ids again from the typed file took 23 s of a 227 s run.
    let mut sorted_hashes = sorted.filter(|_| names.len() == 1 && old.height() == 0);
    let dropped = concat(
        [
            later.lazy().select([col("__file_no"), col(POS)]),
            old.lazy().select([col("__file_no"), col(POS)]),
        ],
        UnionArgs::default(),
    )?
    .run()?;
    let stats = per_file_stats(kept, names.len())?;
    let mut out = Vec::new();
    for (i, s) in staged.into_iter().enumerate() {
        let no = i as u32;
        let of_file = |df: &DataFrame| -> Result<DataFrame> {
            Ok(df
                .clone()
                .lazy()
                .filter(col("file").eq(lit(s.file.as_str())))
                .run_whole()?)
        };
        let mut report = TableReport {
            files: vec![batch.files[i].clone()],
            rows_read: batch.files[i].rows,
            ..Default::default()
        };
        let own_invalid = of_file(&invalid)?;
        count_reasons(&own_invalid, &mut report)?;
        let own_dups = concat(
            [of_file(&dups)?.lazy(), of_file(&old_dups)?.lazy()],
            UnionArgs::default(),
        )?
        .run_whole()?;
        report.duplicates_collapsed = own_dups.height();
        let rejects = concat([own_invalid.lazy(), own_dups.lazy()], UnionArgs::default())?
            .sort(
                ["line"],
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .run_whole()?;
        let gone = dropped
            .clone()
            .lazy()
            .filter(col("__file_no").cast(DataType::UInt32).eq(lit(no)))
            .select([col(POS).cast(DataType::UInt64)])
            .run_whole()?
            .column(POS)?
            .as_materialized_series()
            .clone();
        let typed = if gone.is_empty() {
            s.candidate
        } else {
            // A filter, not an anti-join: the rows stay in file order.
            let path = work.join(format!("kept-{i}.parquet"));
            let kept = io::scan_parquet(&s.candidate)?
                .with_row_index(POS, None)
                .filter(
                    col(POS)
                        .cast(DataType::UInt64)
                        .is_in(lit(gone).implode(false), false)
                        .not(),
                )
                .drop(cols([POS]));
            io::sink_parquet(kept, &path, cfg.store.compression)?;
            path
        };
        let (rows, span, warnings) = stats.get(&no).cloned().unwrap_or_default();
        report.rows_kept = rows;
        report.warnings = warnings;
        out.push(NewFile {
            typed,
            rejects,
            report,
            span,
            sorted_hashes: sorted_hashes.take(),
        });
    }
    Ok(out)
}

/// Per file number: kept rows, their latest date and the optional values
/// that did not parse (see [`unparsed_optional`]).
pub(super) type FileStats = (
    usize,
    Option<(NaiveDate, NaiveDate)>,
    BTreeMap<String, usize>,
);

pub(super) fn per_file_stats(
    mut kept: LazyFrame,
    files: usize,
) -> Result<BTreeMap<u32, FileStats>> {
    let schema = kept.collect_schema()?;
    let mut aggs = vec![
        len().cast(DataType::UInt64).alias("rows"),
        col("ts").cast(DataType::Int32).min().alias("earliest"),
        col("ts").cast(DataType::Int32).max().alias("latest"),
    ];
    let labels = [
        ("__margin", "unparseable margin"),
        ("__quantity", "unparseable quantity"),
    ];
    for (text, label) in labels {
        if schema.contains(text) {
            aggs.push(
                col(text)
                    .is_not_null()
                    .sum()
                    .cast(DataType::UInt64)
                    .alias(label),
            );
        }
    }
    let df = if files == 1 {
        // One file (every night's): plain reductions over its rows. At
        // 10^8 rows polars' group-by on the one key took ~20% of the
        // duplicate check's CPU samples.
        kept.select(aggs)
            .with_column(lit(0u32).cast(DataType::UInt32).alias("__file_no"))
            .run()?
    } else {
        kept.group_by([col("__file_no").cast(DataType::UInt32)])
            .agg(aggs)
            .run()?
    };
    let mut out = BTreeMap::new();
    for row in 0..df.height() {
        let get_u64 = |c: &str| -> Result<u64> {
            Ok(match df.column(c) {
                Ok(c) => c.u64()?.get(row).unwrap_or(0),
                Err(_) => 0,
            })
        };
        let no = df.column("__file_no")?.u32()?.get(row).unwrap_or(0);
        let day = |c: &str| -> Result<Option<NaiveDate>> {
            Ok(df
                .column(c)?
                .i32()?
                .get(row)
                .map(crate::units::from_epoch_days))
        };
        let span = day("earliest")?.zip(day("latest")?);
        let mut warnings = BTreeMap::new();
        for (_, label) in labels {
            let n = get_u64(label)?;
            if n > 0 {
                warnings.insert(label.to_string(), n as usize);
            }
        }
        out.insert(no, (get_u64("rows")? as usize, span, warnings));
    }
    Ok(out)
}

/// Moves the rows of `kept` whose txn_id the history already holds to the
/// rejects (`duplicate txn_id`). Hashes first: only ids whose hash the
/// history has are compared as text, with the stored typed files.
/// Returns the rows left, the rejects and the dropped rows' file numbers,
/// lines and positions.
pub(super) fn history_duplicates(
    kept: LazyFrame,
    files: &[String],
    history: &History,
) -> Result<(LazyFrame, DataFrame, DataFrame)> {
    let on = [col("__file_no"), col(LINE), col(POS)];
    let none = || -> Result<DataFrame> { Ok(kept.clone().select(on.clone()).limit(0).run()?) };
    if history.hash_files.is_empty() {
        return Ok((kept.clone(), no_rejects(), none()?));
    }
    let hash = || id_hash("txn_id").alias("__h");
    let new = kept
        .clone()
        .select([hash()])
        .unique(None, UniqueKeepStrategy::Any)
        .run()?;
    let new = new.column("__h")?.as_materialized_series().clone();
    let mut found: Vec<u64> = Vec::new();
    let mut hits = Vec::new();
    for p in history.hash_files {
        if p.file_name() == Some(super::hashes::FILE.as_ref()) {
            let stored = super::hashes::Sorted::open(p)?;
            found.extend(new.u64()?.iter().flatten().filter(|h| stored.contains(*h)));
        } else {
            hits.push(
                io::scan_parquet(p)?
                    .filter(col("h").is_in(lit(new.clone()).implode(false), false))
                    .select([col("h").alias("__h")]),
            );
        }
    }
    if !found.is_empty() {
        hits.push(df!("__h" => found)?.lazy());
    }
    if hits.is_empty() {
        return Ok((kept.clone(), no_rejects(), none()?));
    }
    let hits = concat(hits, UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::Any)
        .run()?;
    if hits.height() == 0 {
        return Ok((kept.clone(), no_rejects(), none()?));
    }
    let hits = hits.column("__h")?.as_materialized_series().clone();
    let mut columns = on.to_vec();
    columns.push(col("txn_id"));
    let candidates = kept
        .clone()
        .with_column(hash())
        .filter(col("__h").is_in(lit(hits).implode(false), false))
        .select(columns)
        .run()?;
    let ids = candidates
        .column("txn_id")?
        .as_materialized_series()
        .clone();
    let mut stored = Vec::new();
    for p in history.typed {
        stored.push(
            io::scan_parquet(p)?
                .select([col("txn_id")])
                .filter(col("txn_id").is_in(lit(ids.clone()).implode(false), false)),
        );
    }
    let stored = concat(stored, UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::Any)
        .run()?;
    let stored = stored.column("txn_id")?.as_materialized_series().clone();
    let dup = candidates
        .lazy()
        .filter(col("txn_id").is_in(lit(stored).implode(false), false))
        .select(on.clone())
        .run()?;
    if dup.height() == 0 {
        return Ok((kept.clone(), no_rejects(), none()?));
    }
    let (left, rejects) =
        move_to_rejects("transactions", kept, &dup, files, reason::DUPLICATE_TXN)?;
    Ok((left, rejects, dup))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new file's rows that repeat stored txn_ids are found through the
    /// sorted hashes as through the Parquet ones of segments written
    /// before them, and through both kinds in one history.
    #[test]
    fn history_repeats_are_found_through_sorted_and_parquet_hashes_alike() {
        let dir = io::WorkDir::create_tagged(&std::env::temp_dir(), "history-test").unwrap();
        let segment = |k: usize, ids: Vec<String>| {
            let typed = dir.path().join(format!("typed-{k}.parquet"));
            let mut df = df!("txn_id" => ids).unwrap();
            io::write_parquet(&mut df, &typed).unwrap();
            let sorted_dir = dir.path().join(format!("seg-{k}"));
            std::fs::create_dir_all(&sorted_dir).unwrap();
            let sorted = sorted_dir.join(super::super::hashes::FILE);
            super::super::hashes::write_sorted(&typed, &sorted).unwrap();
            let mut h = df
                .lazy()
                .select([id_hash("txn_id").alias("h")])
                .collect()
                .unwrap();
            let parquet = sorted_dir.join("hashes.parquet");
            io::write_parquet(&mut h, &parquet).unwrap();
            (typed, sorted, parquet)
        };
        let a = segment(1, (0..3000).map(|i| format!("A{i}")).collect());
        let b = segment(2, (0..2000).map(|i| format!("B{i}")).collect());
        // The night: new ids, and A17, A2999 and B5 again.
        let ids = ["N1", "A17", "N2", "A2999", "B5", "N3"];
        let kept = df!(
            "__file_no" => vec![0u32; ids.len()],
            LINE => (2..2 + ids.len() as u64).collect::<Vec<_>>(),
            POS => (0..ids.len() as u64).collect::<Vec<_>>(),
            "txn_id" => ids,
        )
        .unwrap()
        .lazy();
        let files = vec!["night.csv".to_string()];
        let typed = [a.0.clone(), b.0.clone()];
        let lines = |hash_files: &[PathBuf]| -> (Vec<String>, Vec<u64>) {
            let history = History {
                hash_files,
                typed: &typed,
            };
            let (left, rejects, _) = history_duplicates(kept.clone(), &files, &history).unwrap();
            let left = left.collect().unwrap();
            let left: Vec<String> = left
                .column("txn_id")
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect();
            let mut lines: Vec<u64> = rejects
                .column("line")
                .unwrap()
                .u64()
                .unwrap()
                .iter()
                .flatten()
                .collect();
            lines.sort_unstable();
            (left, lines)
        };
        let expected = (
            vec!["N1".to_string(), "N2".into(), "N3".into()],
            vec![3, 5, 6],
        );
        assert_eq!(lines(&[a.1.clone(), b.1.clone()]), expected);
        assert_eq!(lines(&[a.2.clone(), b.2.clone()]), expected);
        assert_eq!(lines(&[a.1.clone(), b.2.clone()]), expected);
        // Without B's hashes its repeat is not looked for.
        let without_b = (
            vec!["N1".to_string(), "N2".into(), "B5".into(), "N3".into()],
            vec![3, 5],
        );
        assert_eq!(lines(std::slice::from_ref(&a.1)), without_b);
    }
}
