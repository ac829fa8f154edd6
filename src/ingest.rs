//! Ingest: raw CSV/Parquet extracts → validated, typed frames, with every
//! rejected row kept in a rejects table (file, line, reason, value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;

use crate::config::{Config, InputFile};
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
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
}

impl TableReport {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// The validated inputs of one run.
pub struct Ingested {
    /// customer_id, txn_id, ts (Date), amount_cents (Int64), optional columns.
    pub transactions: DataFrame,
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
    let s = col(name)
        .cast(DataType::String)
        .str()
        .strip_chars(lit(NULL));
    when(s.clone().str().len_bytes().eq(lit(0)))
        .then(lit(NULL).cast(DataType::String))
        .otherwise(s)
}

/// A date column parsed from text with the given formats (first that
/// fits wins); Date and Datetime columns pass through as dates.
pub fn parse_date(name: &str, dtype: &DataType, formats: &[String]) -> Expr {
    match dtype {
        DataType::Date => col(name),
        DataType::Datetime(_, _) => col(name).cast(DataType::Date),
        _ => {
            let text = clean_str(name);
            let tries: Vec<Expr> = formats
                .iter()
                .map(|f| {
                    let opts = StrptimeOptions {
                        format: Some(f.as_str().into()),
                        strict: false,
                        exact: true,
                        cache: true,
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
    let x = if dtype.is_primitive_numeric() {
        col(name).cast(DataType::Float64)
    } else {
        clean_str(name).cast(DataType::Float64)
    };
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
    df: &DataFrame,
    file: &Path,
    table: &str,
    input: &InputFile,
) -> Result<(DataFrame, Vec<&'static str>)> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
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
    Ok((df.clone().lazy().select(exprs).collect()?, present))
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

/// A validated file's frame plus its per-row reject reason (null = valid).
struct Checked {
    frame: LazyFrame,
    file: String,
}

fn read_table(
    table: &'static str,
    input: &InputFile,
    report: &mut TableReport,
) -> Result<Vec<(DataFrame, PathBuf, Vec<&'static str>)>> {
    let mut out = Vec::new();
    for file in io::expand_inputs(table, &input.path)? {
        let raw = io::read_raw(&file, input)?;
        let meta = std::fs::metadata(&file).map_err(Error::io(&file))?;
        report.files.push(InputFileInfo {
            path: file.clone(),
            bytes: meta.len(),
            modified_unix: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            xxh3_128: io::content_hash(&file)?,
            rows: raw.height(),
        });
        report.rows_read += raw.height();
        let (df, present) = select_canonical(&raw, &file, table, input)?;
        out.push((df, file, present));
    }
    Ok(out)
}

/// The reason column: the first failed check of each row, else null.
fn reason_expr(checks: &[(Expr, String, &str)]) -> (Expr, Expr) {
    let null_s = || lit(NULL).cast(DataType::String);
    let mut reason = null_s();
    let mut value = null_s();
    for (failed, why, col_name) in checks.iter().rev() {
        reason = when(failed.clone())
            .then(lit(why.as_str()))
            .otherwise(reason);
        value = when(failed.clone())
            .then(col(*col_name).cast(DataType::String))
            .otherwise(value);
    }
    (reason.alias("reason"), value.alias("value"))
}

fn parse_transactions(
    df: DataFrame,
    present: &[&str],
    input: &InputFile,
    file: &Path,
) -> Result<Checked> {
    let schema = df.schema().clone();
    let dt = |c: &str| schema.get(c).cloned().unwrap_or(DataType::String);
    let mut exprs = vec![
        col(LINE),
        clean_str("customer_id").alias("customer_id"),
        clean_str("txn_id").alias("txn_id"),
        parse_date("ts", &dt("ts"), &input.date_formats).alias("ts"),
        parse_cents("amount", &dt("amount")).alias("amount_cents"),
        col("ts").cast(DataType::String).alias("__ts_raw"),
        col("amount").cast(DataType::String).alias("__amount_raw"),
    ];
    for &c in present {
        match c {
            "quantity" => exprs.push(if dt(c).is_primitive_numeric() {
                col(c).cast(DataType::Float64)
            } else {
                clean_str(c).cast(DataType::Float64).alias(c)
            }),
            "margin" => exprs.push(parse_cents(c, &dt(c)).alias("margin_cents")),
            "product_line" | "channel" | "currency" => exprs.push(clean_str(c).alias(c)),
            _ => {}
        }
    }
    let raw_empty = |c: &str| clean_str(c).is_null();
    let checks = [
        (
            col("customer_id").is_null(),
            "empty customer_id".into(),
            "customer_id",
        ),
        (col("txn_id").is_null(), "empty txn_id".into(), "txn_id"),
        (raw_empty("__ts_raw"), "empty ts".into(), "__ts_raw"),
        (col("ts").is_null(), "unparseable ts".into(), "__ts_raw"),
        (
            raw_empty("__amount_raw"),
            "empty amount".into(),
            "__amount_raw",
        ),
        (
            col("amount_cents").is_null(),
            "unparseable amount".into(),
            "__amount_raw",
        ),
    ];
    let (reason, value) = reason_expr(&checks);
    Ok(Checked {
        frame: df
            .lazy()
            .select(exprs)
            .with_columns([reason, value])
            .drop(cols(["__ts_raw", "__amount_raw"])),
        file: file.to_string_lossy().into_owned(),
    })
}

fn parse_customers(
    df: DataFrame,
    present: &[&str],
    input: &InputFile,
    unknown: &str,
    file: &Path,
) -> Checked {
    let schema = df.schema().clone();
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
    let (reason, value) = reason_expr(&[(
        col("customer_id").is_null(),
        "empty customer_id".into(),
        "customer_id",
    )]);
    Checked {
        frame: df.lazy().select(exprs).with_columns([reason, value]),
        file: file.to_string_lossy().into_owned(),
    }
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

fn parse_interactions(df: DataFrame, present: &[&str], input: &InputFile, file: &Path) -> Checked {
    let schema = df.schema().clone();
    let ts_type = schema.get("ts").cloned().unwrap_or(DataType::String);
    let mut exprs = vec![
        col(LINE),
        clean_str("customer_id").alias("customer_id"),
        parse_date("ts", &ts_type, &input.date_formats).alias("ts"),
        map_kind(clean_str("kind"), &input.kinds).alias("kind"),
        col("ts").cast(DataType::String).alias("__ts_raw"),
        col("kind").cast(DataType::String).alias("__kind_raw"),
    ];
    // Optional columns are always there (null when the file lacks them),
    // so later stages need no special case.
    for &c in INTER_OPTIONAL {
        exprs.push(if present.contains(&c) {
            clean_str(c).alias(c)
        } else {
            lit(NULL).cast(DataType::String).alias(c)
        });
    }
    let checks = [
        (
            col("customer_id").is_null(),
            "empty customer_id".into(),
            "customer_id",
        ),
        (
            clean_str("__ts_raw").is_null(),
            "empty ts".into(),
            "__ts_raw",
        ),
        (col("ts").is_null(), "unparseable ts".into(), "__ts_raw"),
        (col("kind").is_null(), "unknown kind".into(), "__kind_raw"),
    ];
    let (reason, value) = reason_expr(&checks);
    Checked {
        frame: df
            .lazy()
            .select(exprs)
            .with_columns([reason, value])
            .drop(cols(["__ts_raw", "__kind_raw"])),
        file: file.to_string_lossy().into_owned(),
    }
}

/// Splits checked files into (valid rows, rejects), tagging rejects with
/// their table and file.
fn split(table: &str, checked: Vec<Checked>) -> Result<(DataFrame, DataFrame)> {
    let mut valid = Vec::new();
    let mut rejects = Vec::new();
    for (i, c) in checked.into_iter().enumerate() {
        let f = c.frame.with_column(lit(i as u32).alias("__file_no"));
        valid.push(f.clone().filter(col("reason").is_null()));
        rejects.push(
            f.filter(col("reason").is_not_null())
                .select(reject_columns(table, lit(c.file.as_str()))),
        );
    }
    let valid = concat(valid, UnionArgs::default())?
        .drop(cols(["reason", "value"]))
        .collect()?;
    let rejects = concat(rejects, UnionArgs::default())?.collect()?;
    Ok((valid, rejects))
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

/// Moves rows matching `cond` from `valid` to the rejects with `why`.
fn move_out(
    table: &str,
    valid: DataFrame,
    files: &[String],
    cond: Expr,
    why: &str,
) -> Result<(DataFrame, DataFrame, usize)> {
    let lf = valid.lazy().with_column(cond.alias("__out"));
    let file_name = files_lookup(files);
    let out = lf
        .clone()
        .filter(col("__out"))
        .with_columns([
            lit(why).alias("reason"),
            lit(NULL).cast(DataType::String).alias("value"),
        ])
        .select(reject_columns(table, file_name))
        .collect()?;
    let kept = lf
        .filter(col("__out").not())
        .drop(cols(["__out"]))
        .collect()?;
    let n = out.height();
    Ok((kept, out, n))
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
        .collect()?;
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
/// transaction date.
pub fn ingest(cfg: &Config, as_of: Option<NaiveDate>) -> Result<Ingested> {
    let mut reports = BTreeMap::new();
    let mut all_rejects = Vec::new();
    let limit = cfg.ingest.max_reject_ratio;

    // Transactions.
    let input = &cfg.inputs.transactions;
    let mut rep = TableReport::default();
    let files = read_table("transactions", input, &mut rep)?;
    let mut checked = Vec::new();
    for (df, file, present) in files {
        checked.push(parse_transactions(df, &present, input, &file)?);
    }
    let (valid, rejects) = split("transactions", checked)?;
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio("transactions", &input.path, &rep, limit)?;
    all_rejects.push(rejects);
    let as_of = match as_of {
        Some(d) => d,
        None => latest_date(&valid).ok_or_else(|| {
            Error::Usage(format!(
                "{}: no valid transaction to take the as-of date from; pass --as-of",
                input.path
            ))
        })?,
    };
    let names = file_names(&rep);
    // Duplicates collapse before the as-of cut, so a run for an earlier
    // date keeps exactly the rows a backfill over the same files keeps.
    let (valid, dups, n_dups) = move_out(
        "transactions",
        valid,
        &names,
        later_duplicate("txn_id")?,
        reason::DUPLICATE_TXN,
    )?;
    rep.duplicates_collapsed = n_dups;
    all_rejects.push(dups);
    let (valid, future, n_future) = move_out(
        "transactions",
        valid,
        &names,
        col("ts").gt(crate::measures::date_lit(as_of)),
        reason::AFTER_AS_OF,
    )?;
    rep.excluded_after_as_of = n_future;
    all_rejects.push(future);
    let transactions = sorted_without_bookkeeping(valid, &["customer_id", "ts", "txn_id"])?;
    rep.rows_kept = transactions.height();
    reports.insert("transactions".to_string(), rep);

    // Customers.
    let input = &cfg.inputs.customers;
    let mut rep = TableReport::default();
    let files = read_table("customers", input, &mut rep)?;
    let checked = files
        .into_iter()
        .map(|(df, file, present)| {
            parse_customers(df, &present, input, &cfg.ingest.unknown_label, &file)
        })
        .collect();
    let (valid, rejects) = split("customers", checked)?;
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio("customers", &input.path, &rep, limit)?;
    all_rejects.push(rejects);
    let (valid, dups, n_dups) = move_out(
        "customers",
        valid,
        &file_names(&rep),
        later_duplicate("customer_id")?,
        reason::DUPLICATE_CUSTOMER,
    )?;
    rep.duplicates_collapsed = n_dups;
    all_rejects.push(dups);
    let customers = sorted_without_bookkeeping(valid, &["customer_id"])?;
    rep.rows_kept = customers.height();
    reports.insert("customers".to_string(), rep);

    // Interactions (optional).
    let interactions = match &cfg.inputs.interactions {
        None => None,
        Some(input) => {
            let mut rep = TableReport::default();
            let files = read_table("interactions", input, &mut rep)?;
            let checked = files
                .into_iter()
                .map(|(df, file, present)| parse_interactions(df, &present, input, &file))
                .collect();
            let (valid, rejects) = split("interactions", checked)?;
            count_reasons(&rejects, &mut rep)?;
            enforce_ratio("interactions", &input.path, &rep, limit)?;
            all_rejects.push(rejects);
            let (valid, future, n_future) = move_out(
                "interactions",
                valid,
                &file_names(&rep),
                col("ts").gt(crate::measures::date_lit(as_of)),
                reason::AFTER_AS_OF,
            )?;
            rep.excluded_after_as_of = n_future;
            all_rejects.push(future);
            let df = sorted_without_bookkeeping(valid, &["customer_id", "ts", "kind"])?;
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
    .collect()?;
    Ok(Ingested {
        transactions,
        customers,
        interactions,
        rejects,
        report: reports,
        as_of,
    })
}

fn latest_date(df: &DataFrame) -> Option<NaiveDate> {
    let days = df.column("ts").ok()?.cast(&DataType::Int32).ok()?;
    let max = days.i32().ok()?.max()?;
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(max as i64))
}

fn sorted_without_bookkeeping(df: DataFrame, by: &[&str]) -> Result<DataFrame> {
    let by: Vec<PlSmallStr> = by.iter().map(|s| (*s).into()).collect();
    Ok(df
        .lazy()
        .drop(cols([LINE, "__file_no"]))
        .sort(by, SortMultipleOptions::default().with_maintain_order(true))
        .collect()?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn wrong_delimiter_is_hinted() {
        let h = delimiter_hint(&["customer_id;txn_id;ts".to_string()], ',');
        assert!(h.contains("';'"), "{h}");
    }
}
