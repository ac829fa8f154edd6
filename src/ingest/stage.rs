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
    /// values, txn_id and ts for the duplicate and as-of checks).
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
/// lists rows after a later run's as-of date by file and line).
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
            work: io::scan_parquet(&staged)?,
            candidate,
            file: file.to_string_lossy().into_owned(),
        });
    }
    Ok(out)
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
    let out = io::sink_and_collect(
        vec![
            (plan.clone().select(work), staged, true),
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
