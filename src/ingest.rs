//! Ingest: raw CSV/Parquet extracts → validated, typed frames, with every
//! rejected row kept in a rejects table (file, line, reason, value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;
use serde::Serialize;

use crate::config::{Config, Format, InputFile};
use crate::error::{Error, Result};
use crate::io::{self, LINE};

/// Canonical interaction kinds (SPEC §2).
pub const INTERACTION_KINDS: [&str; 8] = [
    "call",
    "visit",
    "service",
    "event",
    "complaint",
    "complaint_resolved",
    "referral",
    "lost_deal",
];

const TXN_REQUIRED: &[&str] = &["customer_id", "txn_id", "ts", "amount"];
const TXN_OPTIONAL: &[&str] = &["quantity", "product_line", "channel", "margin", "currency"];
const CUST_REQUIRED: &[&str] = &["customer_id"];
const CUST_OPTIONAL: &[&str] = &[
    "name",
    "region",
    "industry",
    "segment",
    "first_seen",
    "sales_rep",
];
const INTER_REQUIRED: &[&str] = &["customer_id", "ts", "kind"];
const INTER_OPTIONAL: &[&str] = &["channel", "outcome", "ref_customer_id", "product_line"];

/// Reason texts, shared by ingest and the tests.
pub mod reason {
    pub const AFTER_AS_OF: &str = "after as_of";
    pub const DUPLICATE_TXN: &str = "duplicate txn_id";
    pub const DUPLICATE_CUSTOMER: &str = "duplicate customer_id";
}

fn required(table: &str) -> &'static [&'static str] {
    match table {
        "transactions" => TXN_REQUIRED,
        "customers" => CUST_REQUIRED,
        _ => INTER_REQUIRED,
    }
}

fn optional(table: &str) -> &'static [&'static str] {
    match table {
        "transactions" => TXN_OPTIONAL,
        "customers" => CUST_OPTIONAL,
        _ => INTER_OPTIONAL,
    }
}

/// Every canonical column of a table, required first.
pub fn canonical_columns(table: &str) -> Vec<&'static str> {
    required(table)
        .iter()
        .chain(optional(table))
        .copied()
        .collect()
}

/// One input file as the manifest records it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InputFileInfo {
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified_unix: Option<u64>,
    /// XXH3-128 of the file's bytes, hex.
    pub xxh3_128: String,
    pub rows: usize,
}

/// Counts for one table.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct TableReport {
    pub files: Vec<InputFileInfo>,
    pub rows_read: usize,
    /// Rows kept after validation, exclusion and de-duplication.
    pub rows_kept: usize,
    /// Invalid rows by reason (these count against the reject ratio).
    pub rejected: BTreeMap<String, usize>,
    /// Valid rows dated after the as-of date (kept out, listed in rejects).
    pub excluded_after_as_of: usize,
    /// Duplicate ids collapsed to their first occurrence.
    pub duplicates_collapsed: usize,
    /// Optional values that did not parse (the row is kept, the value null),
    /// by column, e.g. "unparseable margin".
    pub warnings: BTreeMap<String, usize>,
}

impl TableReport {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// A typed table ingest wrote to Parquet (one file, or the store's files
/// in store order): scanned, never held whole.
#[derive(Debug, Clone)]
pub struct TypedFile {
    pub paths: Vec<PathBuf>,
    /// Rows dated on or before the run's as-of date.
    pub rows: usize,
    /// The typed columns (bookkeeping such as the store's line left out).
    pub columns: Vec<String>,
}

impl TypedFile {
    /// Every row of every file, the typed columns only.
    pub fn scan(&self) -> Result<LazyFrame> {
        let names: Vec<Expr> = self.columns.iter().map(|c| col(c.as_str())).collect();
        let scans = self
            .paths
            .iter()
            .map(|p| Ok(io::scan_parquet(p)?.select(names.clone())))
            .collect::<Result<Vec<_>>>()?;
        match scans.len() {
            1 => Ok(scans.into_iter().next().unwrap_or_default()),
            _ => Ok(concat(scans, UnionArgs::default())?),
        }
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}

/// The validated inputs of one run.
pub struct Ingested {
    /// customer_id, txn_id, ts (Date), amount_cents (Int64), optional
    /// columns: `<dir>/transactions.parquet`, streamed there by ingest.
    pub transactions: TypedFile,
    /// customer_id, region, industry, optional columns.
    pub customers: DataFrame,
    /// customer_id, ts (Date), kind, optional columns.
    pub interactions: Option<DataFrame>,
    /// table, file, line, reason, value.
    pub rejects: DataFrame,
    pub report: BTreeMap<String, TableReport>,
    /// The as-of date applied (given, or the latest transaction date).
    pub as_of: NaiveDate,
}

/// Whitespace-trimmed text; empty becomes null.
pub fn clean_str(name: &str) -> Expr {
    per_batch(
        col(name).cast(DataType::String),
        clean_column,
        DataType::String,
    )
}

/// `f` applied to each batch of `input` as it streams by, giving `dtype`.
fn per_batch(input: Expr, f: fn(Column) -> PolarsResult<Column>, dtype: DataType) -> Expr {
    input.map(f, move |_, field| {
        Ok(Field::new(field.name().clone(), dtype.clone()))
    })
}

/// [`clean_str`] on one batch. Most extracts have nothing to trim: then the
/// batch passes through untouched after one look at each value's ends,
/// where polars' `strip_chars` would rebuild every value (about a second
/// of CPU per 10^7 rows over a transaction file's five text columns).
fn clean_column(c: Column) -> PolarsResult<Column> {
    let ca = c.as_materialized_series().str()?;
    let dirty = |s: &str| {
        s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace)
    };
    if !ca.iter().flatten().any(dirty) {
        return Ok(c);
    }
    let out: StringChunked = ca
        .iter()
        .map(|v| v.map(str::trim).filter(|t| !t.is_empty()))
        .collect();
    Ok(out.with_name(ca.name().clone()).into_column())
}

/// A date column parsed from text with the given formats (first that
/// fits wins); Date and Datetime columns pass through as dates.
pub fn parse_date(name: &str, dtype: &DataType, formats: &[String]) -> Expr {
    match dtype {
        DataType::Date | DataType::Datetime(_, _) => parse_date_text(col(name), dtype, formats),
        _ => parse_date_text(clean_str(name), dtype, formats),
    }
}

/// [`parse_date`] on an expression that is already trimmed text (or a
/// Date / Datetime).
pub fn parse_date_text(text: Expr, dtype: &DataType, formats: &[String]) -> Expr {
    match dtype {
        DataType::Date => text,
        DataType::Datetime(_, _) => text.cast(DataType::Date),
        _ => {
            let tries: Vec<Expr> = formats
                .iter()
                .map(|f| {
                    let opts = StrptimeOptions {
                        format: Some(f.as_str().into()),
                        strict: false,
                        exact: true,
                        // polars' cache holds about sqrt(batch) values,
                        // fewer than a few years of distinct days: it
                        // misses and evicts more than it saves.
                        cache: false,
                    };
                    if f.contains("%H") || f.contains("%T") || f.contains("%M") {
                        text.clone()
                            .str()
                            .to_datetime(Some(TimeUnit::Microseconds), None, opts, lit("raise"))
                            .cast(DataType::Date)
                    } else {
                        text.clone().str().to_date(opts)
                    }
                })
                .collect();
            coalesce(&tries)
        }
    }
}

/// A money column as integer cents (rounded half away from zero), so sums
/// are exact and independent of row order. Non-finite values become null.
pub fn parse_cents(name: &str, dtype: &DataType) -> Expr {
    if dtype.is_primitive_numeric() {
        cents_from(col(name))
    } else {
        cents_from(clean_str(name))
    }
}

/// [`parse_cents`] on a number or on already trimmed text.
pub fn cents_from(value: Expr) -> Expr {
    let x = value.cast(DataType::Float64);
    let cents = (x * lit(100.0)).round(0, RoundMode::HalfAwayFromZero);
    // 9e15 cents is far beyond any real amount and still exact in f64.
    when(
        cents
            .clone()
            .is_finite()
            .and(cents.clone().abs().lt(lit(9.0e15))),
    )
    .then(cents.cast(DataType::Int64))
    .otherwise(lit(NULL).cast(DataType::Int64))
}

/// Selects and renames a raw frame's columns to canonical names; a missing
/// required column is an error naming the file and the raw column.
fn select_canonical(
    mut lf: LazyFrame,
    file: &Path,
    table: &str,
    input: &InputFile,
) -> Result<(LazyFrame, Vec<&'static str>, Schema)> {
    let header = lf.collect_schema().map_err(|e| io::read_error(file, &e))?;
    let names: Vec<String> = header
        .iter_names()
        .map(|s| s.to_string())
        .filter(|s| s != LINE)
        .collect();
    let mut exprs = vec![col(LINE).cast(DataType::UInt64)];
    let mut present = Vec::new();
    for &canon in &canonical_columns(table) {
        let raw = input
            .columns
            .get(canon)
            .map(String::as_str)
            .unwrap_or(canon);
        let found = names.iter().any(|n| n == raw)
            // A UTF-8 BOM glued to the first header name is tolerated.
            || names.first().is_some_and(|n| n.trim_start_matches('\u{feff}') == raw);
        if found {
            let actual = names
                .iter()
                .find(|n| n.trim_start_matches('\u{feff}') == raw)
                .cloned()
                .unwrap_or_default();
            exprs.push(col(actual.as_str()).alias(canon));
            present.push(canon);
        } else if required(table).contains(&canon) || input.columns.contains_key(canon) {
            let mapped = if raw == canon {
                String::new()
            } else {
                format!(" (mapped to '{canon}')")
            };
            return Err(Error::MissingColumn {
                file: file.to_path_buf(),
                column: raw.to_string(),
                hint: format!("{mapped}{}", delimiter_hint(&names, input.delimiter)),
            });
        }
    }
    // Customer attributes pass through under their own names.
    for a in &input.attributes {
        if !names.iter().any(|n| n == a) {
            return Err(Error::MissingColumn {
                file: file.to_path_buf(),
                column: a.clone(),
                hint: format!(
                    " (listed in attributes){}",
                    delimiter_hint(&names, input.delimiter)
                ),
            });
        }
        exprs.push(col(a.as_str()));
    }
    let mut selected = lf.select(exprs);
    let schema = selected.collect_schema()?.as_ref().clone();
    Ok((selected, present, schema))
}

/// When the header came back as a single column that contains another
/// common delimiter, says so: the usual cause of a "missing column".
fn delimiter_hint(names: &[String], delimiter: char) -> String {
    if let [only] = names {
        for d in [';', '\t', '|', ','] {
            if d != delimiter && only.contains(d) {
                return format!(
                    " (the header is one column '{only}': is the delimiter {d:?} rather than {delimiter:?}?)"
                );
            }
        }
    }
    format!(" (found columns: {})", names.join(", "))
}

/// Reads and checks every file of a table: one pass per file, producing
/// the parsed columns plus `reason` (null = valid) and `value`. Date formats
/// are narrowed to those that fit a sample of the file; should any row then
/// fail, the file is checked again with every configured format.
fn load_table(
    table: &'static str,
    input: &InputFile,
    unknown: &str,
    report: &mut TableReport,
) -> Result<Vec<(DataFrame, String)>> {
    let mut out = Vec::new();
    for file in io::expand_inputs(table, &input.path)? {
        let numeric = numeric_columns(table, &file, input)?;
        let mut df = check_file(table, &file, input, unknown, &numeric)?;
        let any_null = |c: &str| df.column(c).is_ok_and(|c| c.null_count() > 0);
        if !numeric.is_empty()
            && (any_null("amount_cents") || any_null("margin_cents") || any_null("quantity"))
        {
            df = check_file(table, &file, input, unknown, &[])?;
        }
        report.files.push(file_info(&file, df.height())?);
        report.rows_read += df.height();
        out.push((df, file.to_string_lossy().into_owned()));
    }
    Ok(out)
}

/// The raw columns the CSV reader may parse as numbers itself (the fast
/// path for clean transaction files). Should any come back null (empty or
/// not a number), the file is checked again as text, where every reject
/// gets its reason.
fn numeric_columns(table: &str, file: &Path, input: &InputFile) -> Result<Vec<String>> {
    if table != "transactions" || io::format_of(file, input) != Format::Csv {
        return Ok(Vec::new());
    }
    let header = io::read_raw(file, input, &[])?
        .collect_schema()
        .map_err(|e| io::read_error(file, &e))?;
    Ok(["amount", "margin", "quantity"]
        .iter()
        .map(|c| input.columns.get(*c).cloned().unwrap_or(c.to_string()))
        .filter(|raw| header.contains(raw))
        .collect())
}

/// What the manifest records of one input file.
fn file_info(file: &Path, rows: usize) -> Result<InputFileInfo> {
    let meta = std::fs::metadata(file).map_err(Error::io(file))?;
    let t = std::time::Instant::now();
    let xxh3_128 = io::content_hash(file)?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "hashed");
    Ok(InputFileInfo {
        path: file.to_path_buf(),
        bytes: meta.len(),
        modified_unix: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        xxh3_128,
        rows,
    })
}

/// One staged input file: its work rows and its typed candidate.
struct Staged {
    /// Every row's bookkeeping (line, check code, the raw text of rejected
    /// values, txn_id and ts for the duplicate and as-of checks).
    work: LazyFrame,
    /// The file's valid rows with the typed columns, in file order: the
    /// typed Parquet itself unless rows must still be dropped.
    candidate: PathBuf,
    file: String,
}

/// Checks every file of a table in one streamed pass per file, never
/// holding a file in memory: the valid rows go straight to a typed
/// candidate (zstd, the published layout) and every row's bookkeeping to a
/// work file (LZ4). The fast paths (numbers parsed by the CSV reader, date
/// formats narrowed to a sample) are verified by the same pass, which is
/// run again without them should they have missed anything.
/// With `keep_line` the typed candidate keeps each row's line (the store
/// lists rows after a later run's as-of date by file and line).
fn stage_table(
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

struct StagedStats {
    rows: usize,
    /// A number column the CSV reader parsed has a null.
    numbers_missing: bool,
    /// A row was rejected for an unparseable date.
    dates_unparsed: bool,
}

/// The pass of [`stage_table`] over one file's checked rows (`plan`):
/// writes `staged` and `candidate`, returns what decides a re-read.
fn stage_pass(
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

/// A work directory removed when dropped (a killed run's is removed by
/// the next run's recovery).
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn create(parent: &Path) -> Result<WorkDir> {
        let path = parent.join(format!("{WORK_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        Ok(WorkDir(path))
    }

    /// A second work directory of this process under `parent`, told apart by `tag`.
    pub fn create_tagged(parent: &Path, tag: &str) -> Result<WorkDir> {
        let path = parent.join(format!("{WORK_PREFIX}{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        Ok(WorkDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid transaction's row number in its file's typed candidate.
const POS: &str = "__pos";

/// Name prefix of ingest's work directories under `_ingest/`.
pub const WORK_PREFIX: &str = ".work-";

/// Reads one file and checks every row (see [`load_table`]).
fn check_file(
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
fn check_plan(
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
fn sample_formats(lf: LazyFrame, formats: &[String], file: &Path) -> Result<Vec<String>> {
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

fn has_reason(table: &str, df: &DataFrame, why: &str) -> Result<bool> {
    let Some(i) = checks_for(table).iter().position(|c| c.0 == why) else {
        return Ok(false);
    };
    let code = i as i32 + 1;
    Ok(df.column("__code")?.i32()?.iter().any(|c| c == Some(code)))
}

/// The reason column: the first failed check of each row, else null.
/// The row checks of each table, in order: (reason, column whose text is
/// reported as the rejected value). A row fails on the first that applies.
fn checks_for(table: &str) -> &'static [(&'static str, &'static str)] {
    match table {
        "transactions" => &[
            ("empty customer_id", "customer_id"),
            ("empty txn_id", "txn_id"),
            ("empty ts", "__ts"),
            ("unparseable ts", "__ts"),
            ("empty amount", "__amount"),
            ("unparseable amount", "__amount"),
        ],
        "customers" => &[("empty customer_id", "customer_id")],
        _ => &[
            ("empty customer_id", "customer_id"),
            ("empty ts", "__ts"),
            ("unparseable ts", "__ts"),
            ("unknown kind", "__kind"),
        ],
    }
}

/// `__code`: 0 for a valid row, else 1 + the index of the first failed
/// check. A small integer per row is far cheaper than reason text; the text
/// and the offending value are filled in for rejected rows only (`split`).
fn reason_code(failed: &[Expr]) -> Expr {
    let mut code = lit(0i32);
    for (i, f) in failed.iter().enumerate().rev() {
        code = when(f.clone()).then(lit(i as i32 + 1)).otherwise(code);
    }
    code.cast(DataType::Int32).alias("__code")
}

/// The text of an amount with currency symbols and thousands separators
/// removed and a decimal comma made a point, ready for a number parse.
pub fn amount_text(text: Expr, input: &InputFile) -> Expr {
    let mut t = text;
    for sym in &input.currency_symbols {
        t = t.str().replace_all(lit(sym.as_str()), lit(""), true);
    }
    if let Some(sep) = input.thousands_separator {
        t = t.str().replace_all(lit(sep.to_string()), lit(""), true);
    }
    if input.decimal_comma {
        t = t.str().replace_all(lit(","), lit("."), true);
    }
    t.str().strip_chars(lit(NULL))
}

/// Numbers pass through; text goes through [`amount_text`].
fn money_text(value: Expr, dtype: &DataType, input: &InputFile) -> Expr {
    if dtype.is_primitive_numeric() {
        value
    } else {
        amount_text(value, input)
    }
}

fn parse_transactions(
    lf: LazyFrame,
    schema: &Schema,
    present: &[&str],
    input: &InputFile,
    formats: &[String],
) -> LazyFrame {
    let dt = |c: &str| schema.get(c).cloned().unwrap_or(DataType::String);
    // Text columns are trimmed once (stage 1); parsing (stage 2) and the
    // checks (stage 3) then read materialised columns.
    let trimmed = |c: &str| {
        if dt(c) == DataType::String {
            clean_str(c)
        } else {
            col(c)
        }
    };
    let mut stage1 = vec![
        col(LINE),
        clean_str("customer_id").alias("customer_id"),
        clean_str("txn_id").alias("txn_id"),
        trimmed("ts").alias("__ts"),
        trimmed("amount").alias("__amount"),
    ];
    let mut stage2 = vec![
        parse_date_text(col("__ts"), &dt("ts"), formats).alias("ts"),
        cents_from(money_text(col("__amount"), &dt("amount"), input)).alias("amount_cents"),
    ];
    let mut keep = vec![
        col(LINE),
        col("customer_id"),
        col("txn_id"),
        col("ts"),
        col("amount_cents"),
    ];
    for &c in present {
        match c {
            "quantity" => {
                stage1.push(trimmed(c).alias("__quantity"));
                stage2.push(col("__quantity").cast(DataType::Float64).alias("quantity"));
                keep.extend([col("quantity"), col("__quantity")]);
            }
            "margin" => {
                stage1.push(trimmed(c).alias("__margin"));
                stage2.push(
                    cents_from(money_text(col("__margin"), &dt(c), input)).alias("margin_cents"),
                );
                keep.extend([col("margin_cents"), col("__margin")]);
            }
            "product_line" | "channel" | "currency" => {
                stage1.push(clean_str(c).alias(c));
                keep.push(col(c));
            }
            _ => {}
        }
    }
    let code = reason_code(&[
        col("customer_id").is_null(),
        col("txn_id").is_null(),
        col("__ts").is_null(),
        col("ts").is_null(),
        col("__amount").is_null(),
        col("amount_cents").is_null(),
    ]);
    keep.extend([col("__code"), col("__ts"), col("__amount")]);
    lf.select(stage1)
        .with_columns(stage2)
        .with_column(code)
        .select(keep)
        .with_columns(only_where_needed(present))
}

/// The raw text kept beside parsed values is only ever read for rejected
/// rows (the reported value) and for optional values that did not parse
/// (the manifest's warnings): elsewhere it is nulled, so the staged work
/// file does not carry a second copy of every date and number.
fn only_where_needed(present: &[&str]) -> Vec<Expr> {
    let rejected = || col("__code").neq(lit(0i32));
    // A null literal takes the column's type (text, or a number the CSV
    // reader parsed).
    let keep = |text: &str, needed: Expr| {
        when(needed)
            .then(col(text))
            .otherwise(lit(NULL))
            .alias(text)
    };
    let mut v = vec![keep("__ts", rejected()), keep("__amount", rejected())];
    if present.contains(&"margin") {
        v.push(keep("__margin", col("margin_cents").is_null()));
    }
    if present.contains(&"quantity") {
        v.push(keep("__quantity", col("quantity").is_null()));
    }
    v
}

fn parse_customers(
    lf: LazyFrame,
    schema: &Schema,
    present: &[&str],
    input: &InputFile,
    unknown: &str,
) -> LazyFrame {
    let mut exprs = vec![col(LINE), clean_str("customer_id").alias("customer_id")];
    for dim in ["region", "industry"] {
        exprs.push(if present.contains(&dim) {
            clean_str(dim).fill_null(lit(unknown)).alias(dim)
        } else {
            lit(unknown).alias(dim)
        });
    }
    // Optional text columns are always there (null when absent), so the
    // published schema does not change with the extract.
    for c in ["name", "segment", "sales_rep"] {
        exprs.push(if present.contains(&c) {
            clean_str(c).alias(c)
        } else {
            lit(NULL).cast(DataType::String).alias(c)
        });
    }
    if present.contains(&"first_seen") {
        let dt = schema
            .get("first_seen")
            .cloned()
            .unwrap_or(DataType::String);
        exprs.push(
            parse_date("first_seen", &dt, &crate::config::default_date_formats())
                .alias("first_seen"),
        );
    }
    // Attributes are numbers; text that is not one becomes null.
    for a in &input.attributes {
        let dt = schema.get(a.as_str()).cloned().unwrap_or(DataType::String);
        exprs.push(if dt.is_primitive_numeric() {
            col(a.as_str()).cast(DataType::Float64)
        } else {
            clean_str(a).cast(DataType::Float64).alias(a.as_str())
        });
    }
    lf.select(exprs)
        .with_column(reason_code(&[col("customer_id").is_null()]))
}

/// Maps raw kind values to canonical ones; unmapped values become null.
pub fn map_kind(raw: Expr, kinds: &BTreeMap<String, String>) -> Expr {
    let mut e = lit(NULL).cast(DataType::String);
    for k in INTERACTION_KINDS.iter().rev() {
        e = when(raw.clone().eq(lit(*k))).then(lit(*k)).otherwise(e);
    }
    for (from, to) in kinds.iter().rev() {
        e = when(raw.clone().eq(lit(from.as_str())))
            .then(lit(to.as_str()))
            .otherwise(e);
    }
    e
}

fn parse_interactions(
    lf: LazyFrame,
    schema: &Schema,
    present: &[&str],
    input: &InputFile,
    formats: &[String],
) -> LazyFrame {
    let ts_type = schema.get("ts").cloned().unwrap_or(DataType::String);
    let trimmed_ts = if ts_type == DataType::String {
        clean_str("ts")
    } else {
        col("ts")
    };
    let mut stage1 = vec![
        col(LINE),
        clean_str("customer_id").alias("customer_id"),
        trimmed_ts.alias("__ts"),
        clean_str("kind").alias("__kind"),
    ];
    // Optional columns are always there (null when the file lacks them),
    // so later stages need no special case.
    for &c in INTER_OPTIONAL {
        stage1.push(if present.contains(&c) {
            clean_str(c).alias(c)
        } else {
            lit(NULL).cast(DataType::String).alias(c)
        });
    }
    let code = reason_code(&[
        col("customer_id").is_null(),
        col("__ts").is_null(),
        col("ts").is_null(),
        col("kind").is_null(),
    ]);
    lf.select(stage1)
        .with_columns([
            parse_date_text(col("__ts"), &ts_type, formats).alias("ts"),
            map_kind(col("__kind"), &input.kinds).alias("kind"),
        ])
        .with_column(code)
}

/// Splits checked files into (valid rows, rejects), tagging rejects with
/// their table and file. Valid rows stay a query; rejects are collected.
/// Valid rows (with `__file_no`, and `__pos`, a valid row's position in
/// its file's typed candidate, when `positions`) and the collected rejects.
fn split(
    table: &str,
    files: Vec<(LazyFrame, String)>,
    positions: bool,
) -> Result<(LazyFrame, DataFrame)> {
    let checks = checks_for(table);
    let mut reason = lit(NULL).cast(DataType::String);
    let mut value = lit(NULL).cast(DataType::String);
    for (i, (why, column)) in checks.iter().enumerate().rev() {
        let hit = col("__code").eq(lit(i as i32 + 1));
        reason = when(hit.clone()).then(lit(*why)).otherwise(reason);
        value = when(hit)
            .then(col(*column).cast(DataType::String))
            .otherwise(value);
    }
    // Raw-text helper columns leave with the rejects.
    let mut helpers: Vec<&str> = checks
        .iter()
        .map(|c| c.1)
        .filter(|c| c.starts_with("__"))
        .collect();
    helpers.sort();
    helpers.dedup();
    helpers.push("__code");
    let mut valid = Vec::new();
    let mut rejects = Vec::new();
    for (i, (lf, file)) in files.into_iter().enumerate() {
        let f = lf.with_column(lit(i as u32).alias("__file_no"));
        let ok = f.clone().filter(col("__code").eq(lit(0i32)));
        valid.push(if positions {
            ok.with_row_index(POS, None)
        } else {
            ok
        });
        rejects.push(
            f.filter(col("__code").neq(lit(0i32)))
                .with_columns([reason.clone().alias("reason"), value.clone().alias("value")])
                .select(reject_columns(table, lit(file.as_str()))),
        );
    }
    let valid = concat(valid, UnionArgs::default())?.drop(cols(helpers));
    let rejects = concat(rejects, UnionArgs::default())?.run()?;
    Ok((valid, rejects))
}

/// Files read into memory, as queries for [`split`].
fn lazy(files: Vec<(DataFrame, String)>) -> Vec<(LazyFrame, String)> {
    files.into_iter().map(|(df, f)| (df.lazy(), f)).collect()
}

fn reject_columns(table: &str, file: Expr) -> [Expr; 5] {
    [
        lit(table).alias("table"),
        file.alias("file"),
        col(LINE).alias("line"),
        col("reason"),
        col("value"),
    ]
}

/// An expression giving the file path for `__file_no`.
fn files_lookup(files: &[String]) -> Expr {
    let mut e = lit(NULL).cast(DataType::String);
    for (i, f) in files.iter().enumerate().rev() {
        e = when(col("__file_no").eq(lit(i as u32)))
            .then(lit(f.as_str()))
            .otherwise(e);
    }
    e
}

/// Moves every row whose `key` was already seen earlier (file order, then
/// line) to the rejects with `why`. The key column is collected (one
/// column) and hashed; only when a key repeats are the repeated keys' rows
/// looked at, and the later ones anti-joined away.
/// Also returns the dropped rows' file numbers and lines (and `__pos`
/// when `valid` has it).
fn drop_duplicates(
    table: &str,
    mut valid: LazyFrame,
    files: &[String],
    key: &str,
    why: &str,
) -> Result<(LazyFrame, DataFrame, DataFrame)> {
    let mut on = vec![col("__file_no"), col(LINE)];
    if valid.collect_schema()?.contains(POS) {
        on.push(col(POS));
    }
    let hashes = valid
        .clone()
        .select([per_batch(col(key), hash_column, DataType::UInt64)])
        .run()?;
    let repeats = may_repeat(hashes.column(key)?.u64()?);
    drop(hashes);
    if !repeats {
        let none = valid.clone().select(on).limit(0).run()?;
        return Ok((valid, no_rejects(), none));
    }
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
    Ok((kept, rejects, later))
}

/// `rows` (file numbers and lines) taken out of `valid` and returned as
/// rejects with `why`.
fn move_to_rejects(
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
fn no_rejects() -> DataFrame {
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
    Ok(rows
        .with_columns([
            lit(why).alias("reason"),
            lit(NULL).cast(DataType::String).alias("value"),
        ])
        .select(reject_columns(table, files_lookup(files)))
        .run()?)
}

/// Whether two of the keys `hashes` were taken from may be equal, decided on
/// the sorted 64-bit hashes:
/// ~10× cheaper than an exact distinct count of strings; only a repeated
/// hash (a real duplicate or, rarely, a collision) costs the exact check.
fn may_repeat(hashes: &UInt64Chunked) -> bool {
    use rayon::prelude::*;
    let mut hashes: Vec<u64> = hashes.iter().flatten().collect();
    hashes.par_sort_unstable();
    hashes.windows(2).any(|w| w[0] == w[1])
}

/// The 64-bit hash of each key (null stays null), computed batch by batch
/// as the keys stream by: only the hashes are ever held, never the keys.
fn hash_column(c: Column) -> PolarsResult<Column> {
    let s = c.as_materialized_series().str()?;
    let out: UInt64Chunked = s
        .iter()
        .map(|v| v.map(|v| xxhash_rust::xxh3::xxh3_64(v.as_bytes())))
        .collect();
    Ok(out.with_name(s.name().clone()).into_column())
}

/// The 64-bit hash of a text column, as the duplicate checks use it.
pub(crate) fn id_hash(name: &str) -> Expr {
    per_batch(col(name), hash_column, DataType::UInt64)
}

/// Marks every row whose key was already seen earlier (file order, then line).
fn later_duplicate(key: &str) -> Result<Expr> {
    let ord = col("__file_no").cast(DataType::UInt64) * lit(1u64 << 40) + col(LINE);
    Ok(ord.clone().gt(ord.min().over([col(key)])?))
}

fn enforce_ratio(table: &str, pattern: &str, report: &TableReport, limit: f64) -> Result<()> {
    let rejected = report.rejected_total();
    if report.rows_read == 0 || rejected == 0 {
        return Ok(());
    }
    let ratio = rejected as f64 / report.rows_read as f64;
    if ratio > limit {
        let (why, n) = report
            .rejected
            .iter()
            .max_by_key(|(k, v)| (**v, std::cmp::Reverse((*k).clone())))
            .map(|(k, v)| (k.clone(), *v))
            .unwrap_or_default();
        let file = match report.files.as_slice() {
            [one] => one.path.to_string_lossy().into_owned(),
            _ => format!("{table} ({pattern})"),
        };
        return Err(Error::RejectRatio {
            file,
            rejected,
            total: report.rows_read,
            ratio: ratio * 100.0,
            limit: limit * 100.0,
            top_reason: format!("{why} ({n} rows)"),
        });
    }
    Ok(())
}

fn count_reasons(rejects: &DataFrame, report: &mut TableReport) -> Result<()> {
    if rejects.height() == 0 {
        return Ok(());
    }
    let counts = rejects
        .clone()
        .lazy()
        .group_by([col("reason")])
        .agg([len().alias("n")])
        .run()?;
    let reasons = counts.column("reason")?.str()?.clone();
    let ns = counts.column("n")?.cast(&DataType::UInt64)?;
    let ns = ns.u64()?;
    for (r, n) in reasons.iter().zip(ns.iter()) {
        if let (Some(r), Some(n)) = (r, n) {
            *report.rejected.entry(r.to_string()).or_default() += n as usize;
        }
    }
    Ok(())
}

fn file_names(report: &TableReport) -> Vec<String> {
    report
        .files
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect()
}

/// Reads, validates and types every input. `as_of` None → the latest valid
/// transaction date. Transactions stream file by file through work files
/// into `<dir>/transactions.parquet` (written atomically), so their size is
/// bounded by disk, not memory; customers and interactions are read into
/// memory.
pub fn ingest(cfg: &Config, as_of: Option<NaiveDate>, dir: &Path) -> Result<Ingested> {
    let mut reports = BTreeMap::new();
    let mut all_rejects = Vec::new();
    let limit = cfg.ingest.max_reject_ratio;

    // Transactions.
    let input = &cfg.inputs.transactions;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let work = WorkDir::create(dir)?;
    let mut rep = TableReport::default();
    let staged = stage_table(
        "transactions",
        input,
        &cfg.ingest.unknown_label,
        &work.0,
        &mut rep,
        io::expand_inputs("transactions", &input.path)?,
        false,
    )?;
    let t = std::time::Instant::now();
    let files = staged
        .iter()
        .map(|s| (s.work.clone(), s.file.clone()))
        .collect();
    let (valid, rejects) = split("transactions", files, true)?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "rejects split off");
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio("transactions", &input.path, &rep, limit)?;
    all_rejects.push(rejects);
    let as_of = match as_of {
        Some(d) => d,
        None => latest_date(valid.clone())?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no valid transaction to take the as-of date from; pass --as-of",
                input.path
            ))
        })?,
    };
    let names = file_names(&rep);
    // Duplicates collapse before the as-of cut, so a run for an earlier
    // date keeps exactly the rows a backfill over the same files keeps.
    let t = std::time::Instant::now();
    let (valid, dups, later) = drop_duplicates(
        "transactions",
        valid,
        &names,
        "txn_id",
        reason::DUPLICATE_TXN,
    )?;
    rep.duplicates_collapsed = later.height();
    all_rejects.push(dups);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "duplicates checked");
    let after = col("ts").gt(crate::measures::date_lit(as_of));
    // Rows after the as-of date, collected once: rejects and positions.
    let future = valid
        .clone()
        .filter(after.clone())
        .select([col("__file_no"), col(LINE), col(POS)])
        .run()?;
    rep.excluded_after_as_of = future.height();
    all_rejects.push(as_rejects(
        "transactions",
        future.clone().lazy(),
        &names,
        reason::AFTER_AS_OF,
    )?);
    rep.warnings = unparsed_optional(valid.filter(after.not()))?;
    // The candidates' rows that must still go: later duplicates and rows
    // after the as-of date.
    let on = [col("__file_no"), col(POS)];
    let dropped = concat(
        [
            later.lazy().select(on.clone()),
            future.lazy().select(on.clone()),
        ],
        UnionArgs::default(),
    )?
    .run()?;
    let path = dir.join("transactions.parquet");
    let t = std::time::Instant::now();
    if let ([only], 0) = (staged.as_slice(), dropped.height()) {
        // The usual case: the one file's candidate is the typed file.
        std::fs::rename(&only.candidate, &path).map_err(Error::io(&path))?;
    } else {
        // A filter, not an anti-join: the rows stay in file order (a
        // streamed join does not keep it), so the file is the same bytes
        // on every run.
        let key = || {
            col("__file_no").cast(DataType::UInt64) * lit(1u64 << 32)
                + col(POS).cast(DataType::UInt64)
        };
        let gone = dropped
            .lazy()
            .select([key().alias("k")])
            .run()?
            .column("k")?
            .as_materialized_series()
            .clone();
        let mut parts = Vec::new();
        for (i, s) in staged.iter().enumerate() {
            parts.push(
                io::scan_parquet(&s.candidate)?
                    .with_row_index(POS, None)
                    .with_column(lit(i as u32).alias("__file_no")),
            );
        }
        let kept = concat(parts, UnionArgs::default())?
            .filter(key().is_in(lit(gone).implode(false), false).not())
            .drop(cols([POS, "__file_no"]));
        crate::publish::write_atomically(&path, |tmp| Ok(io::sink_parquet(kept, tmp, false)?))?;
    }
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "typed transactions written"
    );
    drop(work);
    let transactions = typed_file(path)?;
    rep.rows_kept = transactions.rows;
    reports.insert("transactions".to_string(), rep);
    with_other_tables(cfg, as_of, transactions, reports, all_rejects)
}

/// The rest of an ingest once the transactions are typed: customers and
/// interactions (read whole on every run: they are current-state extracts,
/// not history that grows) and the rejects table of all three tables.
pub(crate) fn with_other_tables(
    cfg: &Config,
    as_of: NaiveDate,
    transactions: TypedFile,
    mut reports: BTreeMap<String, TableReport>,
    mut all_rejects: Vec<DataFrame>,
) -> Result<Ingested> {
    let limit = cfg.ingest.max_reject_ratio;
    // Customers.
    let input = &cfg.inputs.customers;
    let mut rep = TableReport::default();
    let files = load_table("customers", input, &cfg.ingest.unknown_label, &mut rep)?;
    let (valid, rejects) = split("customers", lazy(files), false)?;
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio("customers", &input.path, &rep, limit)?;
    all_rejects.push(rejects);
    let (valid, dups, later) = drop_duplicates(
        "customers",
        valid,
        &file_names(&rep),
        "customer_id",
        reason::DUPLICATE_CUSTOMER,
    )?;
    rep.duplicates_collapsed = later.height();
    all_rejects.push(dups);
    let customers = without_bookkeeping(valid)
        .sort(
            ["customer_id"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .run()?;
    rep.rows_kept = customers.height();
    reports.insert("customers".to_string(), rep);

    // Interactions (optional).
    let interactions = match &cfg.inputs.interactions {
        None => None,
        Some(input) => {
            let mut rep = TableReport::default();
            let files = load_table("interactions", input, &cfg.ingest.unknown_label, &mut rep)?;
            let (valid, rejects) = split("interactions", lazy(files), false)?;
            count_reasons(&rejects, &mut rep)?;
            enforce_ratio("interactions", &input.path, &rep, limit)?;
            all_rejects.push(rejects);
            let after = col("ts").gt(crate::measures::date_lit(as_of));
            let future = as_rejects(
                "interactions",
                valid.clone().filter(after.clone()),
                &file_names(&rep),
                reason::AFTER_AS_OF,
            )?;
            rep.excluded_after_as_of = future.height();
            all_rejects.push(future);
            let df = without_bookkeeping(valid.filter(after.not())).run()?;
            rep.rows_kept = df.height();
            reports.insert("interactions".to_string(), rep);
            Some(df)
        }
    };

    let rejects = concat(
        all_rejects
            .into_iter()
            .map(|d| d.lazy())
            .collect::<Vec<_>>(),
        UnionArgs::default(),
    )?
    .sort(
        ["table", "file", "line"],
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .run()?;
    Ok(Ingested {
        transactions,
        customers,
        interactions,
        rejects,
        report: reports,
        as_of,
    })
}

/// The stored transactions a store run checks new rows against.
pub(crate) struct History<'a> {
    /// Files of XXH3-64 hashes of the stored txn_ids (column `h`), streamed
    /// through a membership test of the new rows' hashes (never collected:
    /// at 10^8 stored rows they are 800 MB).
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
    let staged = stage_table(
        "transactions",
        input,
        unknown,
        work,
        &mut batch,
        files,
        true,
    )?;
    let names: Vec<String> = staged.iter().map(|s| s.file.clone()).collect();
    let pairs = staged
        .iter()
        .map(|s| (s.work.clone(), s.file.clone()))
        .collect();
    let (valid, invalid) = split("transactions", pairs, true)?;
    count_reasons(&invalid, &mut batch)?;
    enforce_ratio(
        "transactions",
        &input.path,
        &batch,
        cfg.ingest.max_reject_ratio,
    )?;
    let (kept, dups, later) = drop_duplicates(
        "transactions",
        valid,
        &names,
        "txn_id",
        reason::DUPLICATE_TXN,
    )?;
    let (kept, old_dups, old) = history_duplicates(kept, &names, history)?;
    let dropped = concat(
        [
            later.lazy().select([col("__file_no"), col(POS)]),
            old.lazy().select([col("__file_no"), col(POS)]),
        ],
        UnionArgs::default(),
    )?
    .run()?;
    let stats = per_file_stats(kept)?;
    let mut out = Vec::new();
    for (i, s) in staged.into_iter().enumerate() {
        let no = i as u32;
        let of_file = |df: &DataFrame| -> Result<DataFrame> {
            Ok(df
                .clone()
                .lazy()
                .filter(col("file").eq(lit(s.file.as_str())))
                .run()?)
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
        .run()?;
        report.duplicates_collapsed = own_dups.height();
        let rejects = concat([own_invalid.lazy(), own_dups.lazy()], UnionArgs::default())?
            .sort(
                ["line"],
                SortMultipleOptions::default().with_maintain_order(true),
            )
            .run()?;
        let gone = dropped
            .clone()
            .lazy()
            .filter(col("__file_no").cast(DataType::UInt32).eq(lit(no)))
            .select([col(POS).cast(DataType::UInt64)])
            .run()?
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
            io::sink_parquet(kept, &path, false)?;
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
        });
    }
    Ok(out)
}

/// Per file number: kept rows, their latest date and the optional values
/// that did not parse (see [`unparsed_optional`]).
type FileStats = (
    usize,
    Option<(NaiveDate, NaiveDate)>,
    BTreeMap<String, usize>,
);

fn per_file_stats(mut kept: LazyFrame) -> Result<BTreeMap<u32, FileStats>> {
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
    let df = kept
        .group_by([col("__file_no").cast(DataType::UInt32)])
        .agg(aggs)
        .run()?;
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
                .map(crate::measures::from_epoch_days))
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
fn history_duplicates(
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
    let mut hits = Vec::new();
    for p in history.hash_files {
        hits.push(
            io::scan_parquet(p)?
                .filter(col("h").is_in(lit(new.clone()).implode(false), false))
                .select([col("h").alias("__h")]),
        );
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

/// The latest `ts` of a transactions query.
pub fn latest_date(valid: LazyFrame) -> Result<Option<NaiveDate>> {
    let max = valid
        .select([col("ts").cast(DataType::Int32).max().alias("ts")])
        .run()?;
    Ok(max
        .column("ts")?
        .i32()?
        .get(0)
        .map(crate::measures::from_epoch_days))
}

/// Counts optional values (margin, quantity) that had text but did not
/// parse (the row is kept, the value null).
fn unparsed_optional(mut kept: LazyFrame) -> Result<BTreeMap<String, usize>> {
    let schema = kept.collect_schema()?;
    let mut counts = Vec::new();
    // The raw text is kept only where the parse failed
    // (`only_where_needed`), so any text left is an unparsed value.
    for (text, label) in [
        ("__margin", "unparseable margin"),
        ("__quantity", "unparseable quantity"),
    ] {
        if schema.contains(text) {
            counts.push(
                col(text)
                    .is_not_null()
                    .sum()
                    .cast(DataType::Int64)
                    .alias(label),
            );
        }
    }
    let mut warnings = BTreeMap::new();
    if counts.is_empty() {
        return Ok(warnings);
    }
    let df = kept.select(counts).run()?;
    for c in df.columns() {
        let n = c.i64()?.get(0).unwrap_or(0);
        if n > 0 {
            warnings.insert(c.name().to_string(), n as usize);
        }
    }
    Ok(warnings)
}

/// The row count and columns of a Parquet file ingest wrote.
pub fn typed_file(path: PathBuf) -> Result<TypedFile> {
    let mut lf = io::scan_parquet(&path)?;
    let columns = lf
        .collect_schema()?
        .iter_names()
        .map(|n| n.to_string())
        .filter(|n| n != LINE)
        .collect();
    let n = lf.select([len().cast(DataType::UInt64).alias("n")]).run()?;
    let rows = n.column("n")?.u64()?.get(0).unwrap_or(0) as usize;
    Ok(TypedFile {
        paths: vec![path],
        rows,
        columns,
    })
}

/// Drops the line and file-number columns every table carries through ingest.
fn without_bookkeeping(valid: LazyFrame) -> LazyFrame {
    valid.drop(cols([LINE, "__file_no"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(values: &[Option<&str>]) -> Vec<Option<String>> {
        let df = df!("v" => values).unwrap();
        let out = df.lazy().select([clean_str("v")]).collect().unwrap();
        let v = out.column("v").unwrap().str().unwrap();
        v.iter().map(|x| x.map(str::to_string)).collect()
    }

    #[test]
    fn text_is_trimmed_and_empty_becomes_null() {
        let s = |v: &str| Some(v.to_string());
        // Unicode spaces too (U+3000, the ideographic space of CJK extracts);
        // inner spaces stay.
        let dirty = [
            Some(" a "),
            Some("b"),
            Some(""),
            Some("\u{3000}c\u{3000}"),
            None,
            Some("d e"),
            Some("\t "),
        ];
        assert_eq!(
            cleaned(&dirty),
            vec![s("a"), s("b"), None, s("c"), None, s("d e"), None]
        );
        // A batch with nothing to trim comes back as it was.
        let clean = [Some("x"), None, Some("y z")];
        assert_eq!(cleaned(&clean), vec![s("x"), None, s("y z")]);
    }

    #[test]
    fn dates_parse_in_any_configured_format_and_reject_garbage() {
        let df = df!("ts" => ["2010-01-02", "2010/01/03", "2010-01-04 23:30:00", "02.01.2010", "", "2010-02-30"]).unwrap();
        let out = df
            .lazy()
            .select([parse_date(
                "ts",
                &DataType::String,
                &crate::config::default_date_formats(),
            )
            .cast(DataType::Int32)
            .alias("ts")])
            .collect()
            .unwrap();
        let v: Vec<Option<i32>> = out.column("ts").unwrap().i32().unwrap().iter().collect();
        // 2010-01-02 is day 14611 since 1970-01-01; a late-evening time keeps its day.
        assert_eq!(
            v,
            vec![Some(14611), Some(14612), Some(14613), None, None, None]
        );
    }

    #[test]
    fn amounts_become_exact_cents() {
        let df = df!("amount" => [" 12.345", "-0.005", "1e2", "abc", "nan", "0.1"]).unwrap();
        let out = df
            .lazy()
            .select([parse_cents("amount", &DataType::String).alias("amount")])
            .collect()
            .unwrap();
        let v: Vec<Option<i64>> = out
            .column("amount")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            v,
            vec![Some(1235), Some(-1), Some(10000), None, None, Some(10)]
        );
    }

    #[test]
    fn kinds_map_raw_values_and_null_the_unknown() {
        let mut kinds = BTreeMap::new();
        kinds.insert("电访".to_string(), "call".to_string());
        let df = df!("kind" => ["电访", "visit", "fax"]).unwrap();
        let out = df
            .lazy()
            .select([map_kind(col("kind"), &kinds).alias("kind")])
            .collect()
            .unwrap();
        let v: Vec<Option<&str>> = out.column("kind").unwrap().str().unwrap().iter().collect();
        assert_eq!(v, vec![Some("call"), Some("visit"), None]);
    }

    #[test]
    fn raw_text_is_kept_only_for_rejects_and_unparsed_optionals() {
        // Row 1 is valid with a parsed margin; row 2 is rejected (code 4);
        // row 3 is valid but its margin text did not parse.
        let df = df!(
            "__code" => [0i32, 4, 0],
            "__ts" => ["2010-01-01", "2010-13-01", "2010-01-03"],
            "__amount" => [Some(1.5f64), Some(2.0), Some(3.0)],
            "margin_cents" => [Some(10i64), Some(20), None],
            "__margin" => ["0.10", "0.20", "n/a"],
        )
        .unwrap()
        .lazy()
        .with_columns(only_where_needed(&["margin"]))
        .collect()
        .unwrap();
        let ts: Vec<Option<&str>> = df.column("__ts").unwrap().str().unwrap().iter().collect();
        assert_eq!(ts, vec![None, Some("2010-13-01"), None]);
        let amount: Vec<Option<f64>> = df
            .column("__amount")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(amount, vec![None, Some(2.0), None]);
        let margin: Vec<Option<&str>> = df
            .column("__margin")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(margin, vec![None, None, Some("n/a")]);
    }

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
    fn wrong_delimiter_is_hinted() {
        let h = delimiter_hint(&["customer_id;txn_id;ts".to_string()], ',');
        assert!(h.contains("';'"), "{h}");
    }
}
