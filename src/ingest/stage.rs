//! Staging: each input file read once, every row checked, valid rows
//! written as a typed candidate and the rest kept as rejects text.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::InputFile;
use crate::error::Result;
use crate::ingest::TableReport;
use crate::ingest::checks::{
    checks_for, has_reason, parse_customers, parse_interactions, parse_transactions,
};
use crate::ingest::parse::{clean_str, parse_date};
use crate::ingest::read::{file_info, numeric_columns, select_canonical};
use crate::io::{self, LINE, Run};

/// One staged input file: its work rows and its typed candidate.
pub(super) struct Staged {
    /// Every row's bookkeeping (line, check code, the raw text of rejected
    /// values, txn_id and ts for the duplicate and as-of checks): the work
    /// file, or with `keep_line` the work file's rejected and noted rows
    /// beside the candidate's ([`work_rows`]).
    pub(super) work: LazyFrame,
    /// The file's valid rows with the typed columns, in file order: the
    /// typed Parquet itself unless rows must still be dropped.
    pub(super) candidate: PathBuf,
    pub(super) file: String,
}

/// Checks every file of a table in one streamed pass per file, never
/// holding a file in memory: the valid rows go straight to a typed
/// candidate (zstd, the published layout) and every row's bookkeeping to a
/// work file (LZ4). The fast paths (numbers parsed by the CSV reader, date
/// formats narrowed to a sample) are verified by the same pass, which is
/// run again without them should they have missed anything.
/// With `keep_line` the typed candidate keeps each row's line (the store
/// lists rows after a later run's as-of date by file and line), and the
/// work file holds only the rows the candidate cannot stand for.
pub(super) fn stage_table(
    table: &'static str,
    input: &InputFile,
    unknown: &str,
    work: &Path,
    report: &mut TableReport,
    files: Vec<PathBuf>,
    keep_line: bool,
) -> Result<Vec<Staged>> {
    let mut out = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let t = std::time::Instant::now();
        let staged = work.join(format!("{table}-{i}.parquet"));
        let candidate = work.join(format!("{table}-{i}-typed.parquet"));
        let mut numeric = numeric_columns(table, &file, input)?;
        let mut narrow = true;
        let rows = loop {
            let (plan, narrowed) = check_plan(table, &file, input, unknown, &numeric, narrow)?;
            let pass = || stage_pass(table, plan, &staged, &candidate, keep_line);
            let st = if !numeric.is_empty() {
                // polars' CSV number parser can panic on a malformed quoted
                // field (found by tests/fuzz.rs): then read the numbers as
                // text, where such a row is rejected or the file refused.
                match io::catch_panic(pass) {
                    Ok(r) => r.map_err(|e| io::read_error(&file, &e))?,
                    Err(what) => {
                        tracing::info!(file = %file.display(), error = %what, "the fast number parse failed; reading numbers as text");
                        numeric.clear();
                        continue;
                    }
                }
            } else {
                io::guarded(&file, pass)?
            };
            if !numeric.is_empty() && st.numbers_missing {
                numeric.clear();
            } else if narrowed && st.dates_unparsed {
                narrow = false;
            } else {
                break st.rows;
            }
        };
        tracing::debug!(file = %file.display(), ms = t.elapsed().as_millis() as u64, "read, checked and staged");
        report.files.push(file_info(&file, rows)?);
        report.rows_read += rows;
        out.push(Staged {
            work: if keep_line {
                work_rows(&staged, &candidate)?
            } else {
                io::scan_parquet(&staged)?
            },
            candidate,
            file: file.to_string_lossy().into_owned(),
        });
    }
    Ok(out)
}

/// The raw text of optional values, kept for a valid row only when its
/// value did not parse (see [`crate::ingest::checks::only_where_needed`]).
const OPTIONAL_TEXT: [&str; 2] = ["__margin", "__quantity"];

/// Every row's bookkeeping, as the full work file would hold it, from a
/// work file of the rejected and noted rows and the typed candidate (with
/// its lines): the candidate's rows in file order, then the rejected. The
/// valid rows are read from the candidate rather than written twice: at
/// 10^7 rows writing them to the work file cost ~0.6 s of staging.
fn work_rows(staged: &Path, candidate: &Path) -> Result<LazyFrame> {
    let slim = io::scan_parquet(staged)?;
    let schema = slim.clone().collect_schema()?;
    let noted: Vec<&str> = OPTIONAL_TEXT
        .into_iter()
        .filter(|c| schema.contains(c))
        .collect();
    let mut valid = io::scan_parquet(candidate)?.select([col("txn_id"), col("ts"), col(LINE)]);
    if !noted.is_empty() {
        let mut cols = vec![col(LINE)];
        cols.extend(noted.iter().map(|c| col(*c)));
        let notes = slim
            .clone()
            .filter(col("__code").eq(lit(0i32)))
            .select(cols)
            .run()?;
        if notes.height() > 0 {
            let mut args = JoinArgs::new(JoinType::Left);
            args.maintain_order = MaintainOrderJoin::Left;
            valid = valid.join(notes.lazy(), [col(LINE)], [col(LINE)], args);
        }
    }
    let have = valid.collect_schema()?;
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| match name.as_str() {
            "__code" => lit(0i32).alias("__code"),
            n if have.contains(n) => col(name.clone()),
            _ => lit(NULL).cast(dtype.clone()).alias(name.clone()),
        })
        .collect();
    Ok(concat(
        [
            valid.select(columns),
            slim.filter(col("__code").neq(lit(0i32))),
        ],
        UnionArgs::default(),
    )?)
}

pub(super) struct StagedStats {
    rows: usize,
    /// A number column the CSV reader parsed has a null.
    numbers_missing: bool,
    /// A row was rejected for an unparseable date.
    dates_unparsed: bool,
}

/// The pass of [`stage_table`] over one file's checked rows (`plan`):
/// writes `staged` and `candidate`, returns what decides a re-read.
pub(super) fn stage_pass(
    table: &str,
    mut plan: LazyFrame,
    staged: &Path,
    candidate: &Path,
    keep_line: bool,
) -> PolarsResult<StagedStats> {
    let schema = plan.collect_schema()?;
    let rejected = col("__code").neq(lit(0i32));
    // Bookkeeping columns start with "__"; the typed columns are the rest.
    let mut work = Vec::new();
    let mut typed = Vec::new();
    for name in schema.iter_names() {
        match name.as_str() {
            "txn_id" | "ts" => work.push(col(name.clone())),
            // Only a rejected row's customer_id is ever reported.
            "customer_id" => work.push(
                when(rejected.clone())
                    .then(col(name.clone()))
                    .otherwise(lit(NULL))
                    .alias(name.clone()),
            ),
            n if n.starts_with("__") => work.push(col(name.clone())),
            _ => {}
        }
        if !name.starts_with("__") || (keep_line && name.as_str() == LINE) {
            typed.push(col(name.clone()));
        }
    }
    let mut missing = lit(false);
    for c in ["amount_cents", "margin_cents", "quantity"] {
        if schema.contains(c) {
            missing = missing.or(col(c).null_count().gt(lit(0)));
        }
    }
    let ts_code = checks_for(table)
        .iter()
        .position(|c| c.0 == "unparseable ts")
        .map_or(-1, |i| i as i32 + 1);
    let stats = plan.clone().select([
        len().cast(DataType::UInt64).alias("rows"),
        missing.alias("missing"),
        col("__code").eq(lit(ts_code)).any(true).alias("dates"),
    ]);
    // With the typed candidate keeping each row's line, the work file
    // holds only the rows the candidate cannot stand for: the rejected and
    // those with an optional value that did not parse ([`work_rows`]).
    let work_rows = if keep_line {
        let mut needed = rejected;
        for c in OPTIONAL_TEXT {
            if schema.contains(c) {
                needed = needed.or(col(c).is_not_null());
            }
        }
        plan.clone().filter(needed)
    } else {
        plan.clone()
    };
    let out = io::sink_and_collect(
        vec![
            (work_rows.select(work), staged, true),
            (
                plan.filter(col("__code").eq(lit(0i32))).select(typed),
                candidate,
                false,
            ),
        ],
        vec![stats],
    )?;
    let st = &out[0];
    let flag =
        |c: &str| -> PolarsResult<bool> { Ok(st.column(c)?.bool()?.get(0).unwrap_or(false)) };
    Ok(StagedStats {
        rows: st.column("rows")?.u64()?.get(0).unwrap_or(0) as usize,
        numbers_missing: flag("missing")?,
        dates_unparsed: flag("dates")?,
    })
}

/// A valid transaction's row number in its file's typed candidate.
pub(super) const POS: &str = "__pos";

/// Reads one file and checks every row (see [`load_table`]).
pub(super) fn check_file(
    table: &'static str,
    file: &Path,
    input: &InputFile,
    unknown: &str,
    numeric: &[String],
) -> Result<DataFrame> {
    let t = std::time::Instant::now();
    let (plan, narrowed) = check_plan(table, file, input, unknown, numeric, true)?;
    let mut df = io::collect_file(plan, file)?;
    if narrowed && has_reason(table, &df, "unparseable ts")? {
        let (all, _) = check_plan(table, file, input, unknown, numeric, false)?;
        df = io::collect_file(all, file)?;
    }
    tracing::debug!(file = %file.display(), ms = t.elapsed().as_millis() as u64, fast = !numeric.is_empty(), "read and checked");
    Ok(df)
}

/// The query that reads one file and checks every row: the parsed columns
/// plus `__code` (0 = valid) and the raw text of checked values. With
/// `narrow`, date formats are narrowed to those that fit a sample of the
/// file; the flag returned says whether that left any format out.
pub(super) fn check_plan(
    table: &'static str,
    file: &Path,
    input: &InputFile,
    unknown: &str,
    numeric: &[String],
    narrow: bool,
) -> Result<(LazyFrame, bool)> {
    let raw = io::read_raw(file, input, numeric)?;
    let (lf, present, schema) = select_canonical(raw, file, table, input)?;
    let all = &input.date_formats;
    let formats = match (table, schema.get("ts")) {
        ("customers", _) => all.clone(),
        (_, Some(DataType::String)) if narrow => {
            let t = std::time::Instant::now();
            let f = sample_formats(lf.clone(), all, file)?;
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "date formats sampled");
            f
        }
        _ => all.clone(),
    };
    let plan = match table {
        "transactions" => parse_transactions(lf, &schema, &present, input, &formats),
        "customers" => parse_customers(lf, &schema, &present, input, unknown),
        _ => parse_interactions(lf, &schema, &present, input, &formats),
    };
    Ok((plan, formats.len() < all.len()))
}

/// The formats (in configured order) that parse at least one non-empty `ts`
/// among the first 5000 rows; all of them when none does.
pub(super) fn sample_formats(
    lf: LazyFrame,
    formats: &[String],
    file: &Path,
) -> Result<Vec<String>> {
    let sample = io::collect_file(
        // The limit comes first so that only the file's head is read.
        lf.limit(5000)
            .select([clean_str("ts").alias("ts")])
            .filter(col("ts").is_not_null()),
        file,
    )?;
    if sample.height() == 0 {
        return Ok(formats.to_vec());
    }
    let mut keep = Vec::new();
    for f in formats {
        let one = std::slice::from_ref(f);
        let hits = sample
            .clone()
            .lazy()
            .select([parse_date("ts", &DataType::String, one).alias("d")])
            .run()?
            .column("d")?
            .null_count();
        if hits < sample.height() {
            keep.push(f.clone());
        }
    }
    Ok(if keep.is_empty() {
        formats.to_vec()
    } else {
        keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checked file of four rows: line 3 rejected (its date), line 4
    /// valid but for its margin, lines 2 and 5 clean.
    fn checked() -> LazyFrame {
        df!(
            "customer_id" => ["C1", "C2", "C1", "C3"],
            "txn_id" => ["T1", "T2", "T3", "T4"],
            "ts" => [Some(14_610i32), None, Some(14_612), Some(14_613)],
            "amount_cents" => [100i64, 200, 300, 400],
            "margin_cents" => [Some(10i64), Some(20), None, Some(40)],
            LINE => [2 as IdxSize, 3, 4, 5],
            "__code" => [0i32, 3, 0, 0],
            "__ts" => [None, Some("2010-13-01"), None, None],
            "__margin" => [None, None, Some("n/a"), None],
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Date))
    }

    fn sorted_by_line(lf: LazyFrame) -> DataFrame {
        lf.sort([LINE], Default::default()).collect().unwrap()
    }

    #[test]
    fn the_work_rows_equal_the_full_work_file_from_the_rejected_and_noted_rows() {
        let dir = std::env::temp_dir().join(format!("tiering-stage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (full, slim) = (dir.join("full.parquet"), dir.join("slim.parquet"));
        let (typed_full, typed) = (dir.join("full-typed.parquet"), dir.join("typed.parquet"));
        stage_pass("transactions", checked(), &full, &typed_full, false).unwrap();
        let st = stage_pass("transactions", checked(), &slim, &typed, true).unwrap();
        assert_eq!(st.rows, 4);
        // Only the rejected line 3 and the noted line 4 are written twice.
        let written = io::scan_parquet(&slim).unwrap().collect().unwrap();
        let lines: Vec<_> = written
            .column(LINE)
            .unwrap()
            .idx()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(lines, vec![Some(3), Some(4)]);
        // Read back: the candidate's rows in file order, then the rejected.
        let rows = work_rows(&slim, &typed).unwrap().collect().unwrap();
        let lines: Vec<_> = rows.column(LINE).unwrap().idx().unwrap().iter().collect();
        assert_eq!(lines, vec![Some(2), Some(4), Some(5), Some(3)]);
        let margin: Vec<_> = rows
            .column("__margin")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(margin, vec![None, Some("n/a"), None, None]);
        // Column for column what the full work file holds.
        let want = sorted_by_line(io::scan_parquet(&full).unwrap());
        let got = sorted_by_line(rows.lazy())
            .select(want.get_column_names().into_iter().cloned())
            .unwrap();
        assert!(got.equals_missing(&want), "{got}\n{want}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
