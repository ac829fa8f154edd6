//! The row checks of each table and their reason codes, and the split of
//! checked rows into valid and rejected.

use polars::prelude::*;

use crate::config::InputFile;
use crate::contract::INTER_OPTIONAL;
use crate::error::Result;
use crate::ingest::parse::{
    cents_from, clean_str, map_kind, money_text, parse_date, parse_date_text,
};
use crate::ingest::rejects::reject_columns;
use crate::ingest::stage::{OPTIONAL_TEXT, POS};
use crate::io::{LINE, Run};

pub(super) fn has_reason(table: &str, df: &DataFrame, why: &str) -> Result<bool> {
    let Some(i) = checks_for(table).iter().position(|c| c.0 == why) else {
        return Ok(false);
    };
    let code = i as i32 + 1;
    Ok(df.column("__code")?.i32()?.iter().any(|c| c == Some(code)))
}

/// The reason column: the first failed check of each row, else null.
/// The row checks of each table, in order: (reason, column whose text is
/// reported as the rejected value). A row fails on the first that applies.
pub(crate) fn checks_for(table: &str) -> &'static [(&'static str, &'static str)] {
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
pub(super) fn reason_code(failed: &[Expr]) -> Expr {
    let mut code = lit(0i32);
    for (i, f) in failed.iter().enumerate().rev() {
        code = when(f.clone()).then(lit(i as i32 + 1)).otherwise(code);
    }
    code.cast(DataType::Int32).alias("__code")
}

/// Text columns trimmed ([`clean_str`]) but for those in `clean`, known
/// to need none.
fn cleaner(clean: &[&str]) -> impl Fn(&str) -> Expr {
    move |c: &str| match clean.contains(&c) {
        true => col(c),
        false => clean_str(c),
    }
}

/// The checked transactions of `lf` (canonical columns), of which the text
/// columns `clean` need no trimming.
pub(super) fn parse_transactions(
    lf: LazyFrame,
    schema: &Schema,
    present: &[&str],
    input: &InputFile,
    formats: &[String],
    clean: &[&str],
) -> LazyFrame {
    let dt = |c: &str| schema.get(c).cloned().unwrap_or(DataType::String);
    let clean_str = cleaner(clean);
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
pub(super) fn only_where_needed(present: &[&str]) -> Vec<Expr> {
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

pub(super) fn parse_customers(
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
    // Text attributes are trimmed text; empty becomes null.
    for a in &input.text_attributes {
        let dt = schema.get(a.as_str()).cloned().unwrap_or(DataType::String);
        exprs.push(if dt == DataType::String {
            clean_str(a).alias(a.as_str())
        } else {
            col(a.as_str()).cast(DataType::String)
        });
    }
    lf.select(exprs)
        .with_column(reason_code(&[col("customer_id").is_null()]))
}

/// The checked interactions of `lf`, as [`parse_transactions`].
pub(super) fn parse_interactions(
    lf: LazyFrame,
    schema: &Schema,
    present: &[&str],
    input: &InputFile,
    formats: &[String],
    clean: &[&str],
) -> LazyFrame {
    let clean_str = cleaner(clean);
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

/// More files than this are split one by one (see [`split`]).
const SPILL_FILES: usize = 8;

/// Files of more rows than this are written on their own by [`split`];
/// smaller ones are held one at a time.
const SPILL_HELD_ROWS: usize = 1 << 20;

/// The most small files whose valid rows [`split`] collects by one query.
const SPILL_GROUP_FILES: usize = 64;

/// Where [`split`] may write valid rows: a work folder, and each file's
/// rows read.
pub(super) struct Spill<'a> {
    pub dir: &'a std::path::Path,
    pub rows: Vec<usize>,
    /// Each file's rows that are not plain valid ones (rejected, or with a
    /// note): a file of none has no reject to collect.
    pub apart: Vec<usize>,
}

/// Splits checked files into (valid rows, rejects), tagging rejects with
/// their table and file. Valid rows stay a query; rejects are collected.
/// Valid rows (with `__file_no`, and `__pos`, a valid row's position in
/// its file's typed candidate, when `positions`) and the collected rejects.
///
/// With `spill` and more than [`SPILL_FILES`] files, the files' valid
/// rows are written to the work folder and read back by one scan: a query
/// over a union of a plan per file makes polars' streaming engine build a
/// node per file, and each query over 1,093 daily files took tens of
/// seconds, most of it switching tasks (a first load of a drop folder).
/// Small files' rows are collected and written one after another into a
/// shared file (a sink per file cost ~6 ms each).
pub(super) fn split(
    table: &str,
    files: Vec<(LazyFrame, String)>,
    positions: bool,
    spill: Option<Spill>,
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
    // A file whose numbers the CSV reader parsed keeps its raw values of
    // them as numbers, one read as text as text: the same text for a
    // reject's value either way, but a union needs one type.
    // (One file needs no union: left as it was read.)
    let mut raw: Vec<&str> = helpers.iter().copied().filter(|c| *c != "__code").collect();
    raw.extend(OPTIONAL_TEXT);
    if files.len() == 1 {
        raw.clear();
    }
    let mut first: Option<(String, std::collections::BTreeSet<String>)> = None;
    for (i, (mut lf, file)) in files.into_iter().enumerate() {
        let schema = lf.collect_schema()?;
        same_columns(table, &mut first, &file, &schema)?;
        let as_text: Vec<Expr> = raw
            .iter()
            .filter(|c| schema.get(c).is_some_and(|t| *t != DataType::String))
            .map(|c| col(*c).cast(DataType::String))
            .collect();
        if !as_text.is_empty() {
            lf = lf.with_columns(as_text);
        }
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
    let spill = match spill {
        Some(s) if valid.len() > SPILL_FILES && same_schemas(&mut valid)? => Some(s),
        _ => None,
    };
    match spill {
        Some(spill) => {
            let valid = valid
                .into_iter()
                .map(|lf| lf.drop(cols(helpers.clone())))
                .collect();
            let valid = spilled(table, valid, &spill)?;
            // The first file's rejects, even none, give the frame its columns.
            let mut all = rejects
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i == 0 || spill.apart.get(*i).is_none_or(|&n| n > 0))
                .map(|(_, r)| r.run_whole());
            let mut stacked = all.next().expect("more than one file")?;
            for r in all {
                stacked.vstack_mut_owned(r?)?;
            }
            stacked.rechunk_mut_par();
            Ok((valid, stacked))
        }
        None => {
            let valid = concat(valid, UnionArgs::default())?.drop(cols(helpers));
            let rejects = concat(rejects, UnionArgs::default())?.run()?;
            Ok((valid, rejects))
        }
    }
}

/// Refuses a file whose checked columns are not those of the first file
/// (`first`, set by the first call): an optional column (margin,
/// quantity, …) in some files of a table but not in others. Named here,
/// before polars' union fails on it without naming either file.
fn same_columns(
    table: &str,
    first: &mut Option<(String, std::collections::BTreeSet<String>)>,
    file: &str,
    schema: &Schema,
) -> Result<()> {
    // The input columns read, as the checks name them (`__margin`: margin).
    let read: std::collections::BTreeSet<String> = schema
        .iter_names()
        .map(|n| n.trim_start_matches("__").to_string())
        .filter(|n| !matches!(n.as_str(), "line" | "code" | "file_no" | "pos"))
        .map(|n| n.strip_suffix("_cents").unwrap_or(&n).to_string())
        .collect();
    match first {
        None => *first = Some((file.to_string(), read)),
        Some((name, cols)) if *cols != read => {
            let list = |c: &std::collections::BTreeSet<String>| {
                c.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return Err(crate::error::Error::Usage(format!(
                "{file}: its {table} have the columns {} but {name} has {}; every file of a table needs the same optional columns",
                list(&read),
                list(cols)
            )));
        }
        Some(_) => {}
    }
    Ok(())
}

/// Whether every frame has the first one's columns (else they are left
/// to the union, whose error names the difference).
fn same_schemas(frames: &mut [LazyFrame]) -> Result<bool> {
    let mut first = None;
    for lf in frames {
        let schema = lf.collect_schema()?;
        match &first {
            None => first = Some(schema),
            Some(f) if *f != schema => return Ok(false),
            Some(_) => {}
        }
    }
    Ok(true)
}

/// The files' `valid` rows written under `spill.dir` in order (a large
/// file on its own, each run of small ones into one file), as one scan.
fn spilled(table: &str, valid: Vec<LazyFrame>, spill: &Spill) -> Result<LazyFrame> {
    let mut paths = Vec::new();
    let mut shared: Option<crate::io::ParquetOut> = None;
    let close = |shared: &mut Option<crate::io::ParquetOut>| -> Result<()> {
        match shared.take() {
            Some(out) => Ok(out.finish()?),
            None => Ok(()),
        }
    };
    // Small files held together, up to SPILL_HELD_ROWS rows and
    // SPILL_GROUP_FILES files: one query each such group.
    let mut group: Vec<LazyFrame> = Vec::new();
    let mut held = 0;
    let flush =
        |group: &mut Vec<LazyFrame>, shared: &mut Option<crate::io::ParquetOut>| -> Result<()> {
            if group.is_empty() {
                return Ok(());
            }
            let out = shared.as_mut().expect("opened with the group's first file");
            let lf = match group.len() {
                1 => group.pop().expect("one"),
                _ => concat(std::mem::take(group), UnionArgs::default())?,
            };
            out.push(lf.run_whole()?)?;
            Ok(())
        };
    for (i, mut lf) in valid.into_iter().enumerate() {
        let path = spill.dir.join(format!("{table}-valid-{i}.parquet"));
        let rows = spill.rows.get(i).copied();
        if rows.is_none_or(|n| n > SPILL_HELD_ROWS) {
            flush(&mut group, &mut shared)?;
            close(&mut shared)?;
            crate::io::sink_spill(lf, &path)?;
            paths.push(path);
            continue;
        }
        let rows = rows.unwrap_or(0);
        if held + rows > SPILL_HELD_ROWS || group.len() >= SPILL_GROUP_FILES {
            flush(&mut group, &mut shared)?;
            held = 0;
        }
        if shared.is_none() {
            let schema = lf.collect_schema()?;
            shared = Some(crate::io::ParquetOut::create(
                &path,
                &schema,
                Default::default(),
            )?);
            paths.push(path);
        }
        group.push(lf);
        held += rows;
    }
    flush(&mut group, &mut shared)?;
    close(&mut shared)?;
    crate::io::scan_parquet_files(&paths, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten files split with their valid rows spilled to a work folder give
    /// the rows and rejects of the union, and files whose raw numbers came
    /// as numbers or as text (the CSV reader's fast parse or not) mix.
    #[test]
    fn many_files_split_through_a_work_folder_as_their_union() {
        use crate::testing::{strs, u64s};
        let file = |i: usize| {
            let n = i % 3 + 1;
            let df = df!(
                "customer_id" => (0..n).map(|k| format!("C{i}{k}")).collect::<Vec<_>>(),
                "txn_id" => (0..n).map(|k| format!("T{i}{k}")).collect::<Vec<_>>(),
                LINE => (0..n).map(|k| k as u64 + 2).collect::<Vec<_>>(),
                "__code" => (0..n).map(|k| if k == 1 { 6i32 } else { 0 }).collect::<Vec<_>>(),
                "__ts" => (0..n).map(|_| None::<&str>).collect::<Vec<_>>(),
                "__amount" => (0..n).map(|k| (k == 1).then_some(-1.5f64)).collect::<Vec<_>>(),
                "__margin" => (0..n).map(|k| (k == 2).then_some(3.0f64)).collect::<Vec<_>>(),
            )
            .unwrap();
            let lf = df.lazy();
            // Every other file's raw values as text.
            let lf = match i % 2 {
                0 => lf,
                _ => lf.with_columns([
                    col("__amount").cast(DataType::String),
                    col("__margin").cast(DataType::String),
                ]),
            };
            (lf, format!("f{i}.csv"))
        };
        let files: Vec<_> = (0..10).map(file).collect();
        let dir = std::env::temp_dir().join(format!("tiering-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spill = Spill {
            dir: &dir,
            rows: (0..10).map(|i| i % 3 + 1).collect(),
            apart: (0..10).map(|i| usize::from(i % 3 + 1 > 1)).collect(),
        };
        let (valid, rejects) = split("transactions", files.clone(), true, Some(spill)).unwrap();
        let valid = valid.collect().unwrap();
        // Two files at a time stay below the spill: their union is the reference.
        let mut want_valid = Vec::new();
        let mut want_rejects = Vec::new();
        for pair in files.chunks(2) {
            let (v, r) = split("transactions", pair.to_vec(), true, None).unwrap();
            want_valid.push(v.collect().unwrap());
            want_rejects.push(r);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // 1+2+3+1+2+3+1+2+3+1 rows, a rejected one in each file of 2 or 3.
        assert_eq!(valid.height(), 19 - 6);
        assert_eq!(rejects.height(), 6);
        assert_eq!(strs(&rejects, "value"), vec![Some("-1.5".to_string()); 6]);
        assert_eq!(strs(&rejects, "file")[0].as_deref(), Some("f1.csv"));
        assert_eq!(
            u64s(&valid, "__file_no"),
            vec![0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9]
        );
        let pos = u64s(&valid, POS);
        assert_eq!(pos, vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
        let margins = valid.column("__margin").unwrap().null_count();
        assert_eq!(margins, valid.height() - 3);
        let ids: Vec<Option<String>> = strs(&valid, "txn_id");
        let mut want: Vec<Option<String>> = Vec::new();
        for v in &want_valid {
            want.extend(strs(v, "txn_id"));
        }
        assert_eq!(ids, want);
        let mut lines = Vec::new();
        for r in &want_rejects {
            lines.extend(strs(r, "file"));
        }
        assert_eq!(strs(&rejects, "file"), lines);
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
        let amount: Vec<Option<f64>> = crate::testing::opt_f64s(&df, "__amount");
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
}
