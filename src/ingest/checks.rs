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
use crate::ingest::stage::POS;
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

pub(super) fn parse_transactions(
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

pub(super) fn parse_interactions(
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
pub(super) fn split(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
