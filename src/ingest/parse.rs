//! Text → typed values: trimming, dates in the configured formats, exact
//! cents, interaction kinds. Pure expressions, one per column kind.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::config::InputFile;
use crate::contract::INTERACTION_KINDS;

/// Whitespace-trimmed text; empty becomes null.
pub fn clean_str(name: &str) -> Expr {
    per_batch(
        col(name).cast(DataType::String),
        clean_column,
        DataType::String,
    )
}

/// `f` applied to each batch of `input` as it streams by, giving `dtype`.
pub(super) fn per_batch(
    input: Expr,
    f: fn(Column) -> PolarsResult<Column>,
    dtype: DataType,
) -> Expr {
    input.map(f, move |_, field| {
        Ok(Field::new(field.name().clone(), dtype.clone()))
    })
}

/// [`clean_str`] on one batch. Most extracts have nothing to trim: then the
/// batch passes through untouched after one look at each value's ends,
/// where polars' `strip_chars` would rebuild every value (about a second
/// of CPU per 10^7 rows over a transaction file's five text columns).
pub(super) fn clean_column(c: Column) -> PolarsResult<Column> {
    let ca = c.as_materialized_series().str()?;
    if !ca.iter().flatten().any(untrimmed) {
        return Ok(c);
    }
    let out: StringChunked = ca
        .iter()
        .map(|v| v.map(str::trim).filter(|t| !t.is_empty()))
        .collect();
    Ok(out.with_name(ca.name().clone()).into_column())
}

/// Whether [`clean_column`] changes `s`: empty, or whitespace at either
/// end. Decided on the end bytes where they are ASCII (ids, dates and
/// numbers nearly always are): decoding the end characters for
/// `char::is_whitespace` was ~2.5% of staging.
fn untrimmed(s: &str) -> bool {
    // ASCII whitespace as `char::is_whitespace` has it (with U+000B); a
    // byte above 0x7F is part of a character that must be decoded.
    let unsure = |b: u8| matches!(b, b'\t'..=b'\r' | b' ') || b > 0x7F;
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            (unsure(first) && s.starts_with(char::is_whitespace))
                || (unsure(last) && s.ends_with(char::is_whitespace))
        }
        _ => true,
    }
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
pub(super) fn money_text(value: Expr, dtype: &DataType, input: &InputFile) -> Expr {
    if dtype.is_primitive_numeric() {
        value
    } else {
        amount_text(value, input)
    }
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
    fn untrimmed_text_is_told_as_by_decoding_its_ends() {
        let reference = |s: &str| {
            s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace)
        };
        let ends = [
            "", " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\u{85}", "\u{a0}", "\u{3000}", "a", "中",
            "é", "~", "\u{7f}", "\u{1f}",
        ];
        for first in ends {
            for last in ends {
                for middle in ["", "x", "中 文"] {
                    let s = format!("{first}{middle}{last}");
                    assert_eq!(untrimmed(&s), reference(&s), "{s:?}");
                }
            }
        }
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
}
