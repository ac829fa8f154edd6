//! Text → typed values: trimming, dates in the configured formats, exact
//! cents, interaction kinds. Pure expressions, one per column kind.

use std::collections::BTreeMap;

use polars::prelude::*;
use polars_arrow::array::{Array, Utf8ViewArray, View};

use crate::io::Valued;
use crate::io::{first_unsure, last_unsure};

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
    if !ca.downcast_iter().any(any_untrimmed) {
        return Ok(c);
    }
    let out: StringChunked = ca
        .iter()
        .map(|v| v.map(str::trim).filter(|t| !t.is_empty()))
        .collect();
    Ok(out.with_name(ca.name().clone()).into_column())
}

/// Whether [`clean_column`] changes any value of `a` ([`untrimmed`]). A
/// value of up to 12 bytes is judged from its view alone, its first byte
/// and last byte read off it: making each value a `&str` first (polars'
/// iterator) was most of the cost.
fn any_untrimmed(a: &Utf8ViewArray) -> bool {
    let valid = a.validity().filter(|v| v.unset_bits() > 0);
    a.views().iter().enumerate().any(|(i, view)| {
        if valid.is_some_and(|v| !v.get_bit(i)) {
            return false;
        }
        let len = view.length as usize;
        if len > View::MAX_INLINE_SIZE as usize {
            // SAFETY: `i` indexes the array's views.
            return untrimmed(unsafe { a.value_unchecked(i) });
        }
        // An inline view is its length (low 32 bits), then its bytes.
        let byte = |k: usize| (view.as_u128() >> (32 + 8 * k)) as u8;
        len == 0 || {
            let (first, last) = (byte(0), byte(len - 1));
            (first_unsure(first) || last_unsure(last))
                // SAFETY: as above.
                && untrimmed(unsafe { a.value_unchecked(i) })
        }
    })
}

/// Whether [`clean_column`] changes `s`: empty, or whitespace at either
/// end. Decided on the end bytes where they rule whitespace out (ids,
/// dates, numbers and most CJK text): decoding the end characters for
/// `char::is_whitespace` was ~2.5% of staging, and ~1% still for text
/// ending in CJK characters.
fn untrimmed(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            (first_unsure(first) && s.starts_with(char::is_whitespace))
                || (last_unsure(last) && s.ends_with(char::is_whitespace))
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
        _ => match Shape::all_of(formats) {
            Some(shapes) => {
                // polars' parse, for a batch the shapes do not settle.
                let slow = strptime(col(TEXT), formats);
                text.map(
                    move |c| iso_dates(c, &shapes, &slow),
                    |_, field| Ok(Field::new(field.name().clone(), DataType::Date)),
                )
            }
            None => strptime(text, formats),
        },
    }
}

/// `text` parsed by polars in each of `formats` in turn, the first that
/// fits winning.
fn strptime(text: Expr, formats: &[String]) -> Expr {
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

/// The name a batch goes by when [`iso_dates`] hands it to polars.
const TEXT: &str = "__date_text";

/// A date format of fixed width that [`iso_dates`] reads itself: the
/// default formats. polars' `strptime` took ~22 ns a value (~6% of a cold
/// 10^7 run's staging); reading the digits at their places takes a few.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// `%Y-%m-%d` (`sep` `-`) or `%Y/%m/%d` (`/`).
    Date { sep: u8 },
    /// The date, then `between` (` ` or `T`) and `%H:%M:%S`.
    DateTime { sep: u8, between: u8 },
}

/// How a value reads in a [`Shape`].
#[derive(Debug, PartialEq)]
enum Read {
    /// Not of the shape: polars' parse in that format rejects it too
    /// (another width, or another character where the shape has a
    /// separator).
    Other,
    /// Of the shape, a valid date and time: its day since 1970-01-01.
    Day(i32),
    /// Of the shape but not plainly valid (a 30th of February, hour 24,
    /// a leap second): left to polars.
    Unsure,
}

impl Shape {
    fn of(format: &str) -> Option<Shape> {
        Some(match format {
            "%Y-%m-%d" => Shape::Date { sep: b'-' },
            "%Y/%m/%d" => Shape::Date { sep: b'/' },
            "%Y-%m-%d %H:%M:%S" => Shape::DateTime {
                sep: b'-',
                between: b' ',
            },
            "%Y-%m-%dT%H:%M:%S" => Shape::DateTime {
                sep: b'-',
                between: b'T',
            },
            "%Y/%m/%d %H:%M:%S" => Shape::DateTime {
                sep: b'/',
                between: b' ',
            },
            _ => return None,
        })
    }

    /// Every format's shape, in order; `None` when any format has none
    /// (then whether an earlier format would take a value is polars' call).
    fn all_of(formats: &[String]) -> Option<Vec<Shape>> {
        formats.iter().map(|f| Shape::of(f)).collect()
    }

    fn read(self, v: &[u8]) -> Read {
        let (sep, time) = match self {
            Shape::Date { sep } => (sep, None),
            Shape::DateTime { sep, between } => (sep, Some(between)),
        };
        let width = if time.is_some() { 19 } else { 10 };
        if v.len() != width || v[4] != sep || v[7] != sep {
            return Read::Other;
        }
        if let Some(between) = time
            && (v[10] != between || v[13] != b':' || v[16] != b':')
        {
            return Read::Other;
        }
        let digits = |at: &[usize]| -> Option<u32> {
            at.iter().try_fold(0u32, |n, &i| {
                let d = v[i].wrapping_sub(b'0');
                (d < 10).then(|| n * 10 + u32::from(d))
            })
        };
        let (Some(y), Some(m), Some(d)) = (digits(&[0, 1, 2, 3]), digits(&[5, 6]), digits(&[8, 9]))
        else {
            return Read::Other;
        };
        if time.is_some() {
            let (Some(h), Some(min), Some(s)) =
                (digits(&[11, 12]), digits(&[14, 15]), digits(&[17, 18]))
            else {
                return Read::Other;
            };
            if h > 23 || min > 59 || s > 59 {
                return Read::Unsure;
            }
        }
        match civil_days(y as i32, m, d) {
            Some(day) => Read::Day(day),
            None => Read::Unsure,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`); `None` when the month or day does not exist.
fn civil_days(y: i32, m: u32, d: u32) -> Option<i32> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let length = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > length {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// One batch of text as dates in `shapes` (the formats' order: the first
/// shape a value has decides). A batch holding a value of no shape, or
/// one [`Read::Unsure`], goes to polars whole (`slow`, the same formats
/// over [`TEXT`]), so every value gets exactly polars' date.
fn iso_dates(c: Column, shapes: &[Shape], slow: &Expr) -> PolarsResult<Column> {
    let ca = c.as_materialized_series().str()?;
    let mut days = Valued::with_capacity(ca.len());
    let mut settled = true;
    'all: for a in ca.downcast_iter() {
        let valid = a.validity().filter(|v| v.unset_bits() > 0);
        for i in 0..a.len() {
            if valid.is_some_and(|v| !v.get_bit(i)) {
                days.push(None);
                continue;
            }
            // SAFETY: `i` indexes the array.
            let v = unsafe { a.value_unchecked(i) }.as_bytes();
            match shapes.iter().map(|s| s.read(v)).find(|r| *r != Read::Other) {
                Some(Read::Day(d)) => days.push(Some(d)),
                _ => {
                    settled = false;
                    break 'all;
                }
            }
        }
    }
    if !settled {
        let name = ca.name().clone();
        let df = DataFrame::new(ca.len(), vec![c.clone().with_name(TEXT.into())])?;
        let out = df.lazy().select([slow.clone().alias(name.clone())]);
        return Ok(out.collect()?.column(&name)?.clone());
    }
    let dates = Int32Chunked::with_chunk(ca.name().clone(), days.finish());
    Ok(dates.into_date().into_column())
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
    per_batch(value.cast(DataType::Float64), cents_column, DataType::Int64)
}

/// One batch of amounts as whole cents ([`to_cents`]) in one pass: as
/// polars expressions (multiply, round, finite and range checks, cast)
/// it took ~6 ns a value, two columns of every transactions file.
fn cents_column(c: Column) -> PolarsResult<Column> {
    let ca = c.as_materialized_series().f64()?;
    let mut out = Valued::with_capacity(ca.len());
    for a in ca.downcast_iter() {
        match a.validity().filter(|v| v.unset_bits() > 0) {
            None => a.values().iter().for_each(|&x| out.push(to_cents(x))),
            Some(valid) => a
                .values()
                .iter()
                .zip(valid.iter())
                .for_each(|(&x, ok)| out.push(ok.then(|| to_cents(x)).flatten())),
        }
    }
    Ok(Int64Chunked::with_chunk(ca.name().clone(), out.finish()).into_column())
}

/// `x` units as cents rounded half away from zero (as `f64::round`);
/// `None` when not finite or 9e15 cents or more in size (far beyond any
/// real amount, still exact in f64).
#[inline]
fn to_cents(x: f64) -> Option<i64> {
    let c = x * 100.0;
    // NaN and the infinities fail too. Past 2^52 every double is whole,
    // so the bound reads the same before rounding as after.
    if !c.is_finite() || c.abs() >= 9.0e15 {
        return None;
    }
    // Truncated (`as`: no libm `round` call a value), then the exact
    // fraction decides.
    let t = c as i64;
    let fraction = c - t as f64;
    Some(t + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5))
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
                // Middles making inline views (up to 12 bytes) and longer.
                for middle in ["", "x", "中 文", "0123456789"] {
                    let s = format!("{first}{middle}{last}");
                    assert_eq!(untrimmed(&s), reference(&s), "{s:?}");
                    let one = Utf8ViewArray::from_slice_values([s.as_str()]);
                    assert_eq!(any_untrimmed(&one), reference(&s), "{s:?}");
                }
            }
        }
        // Every character at either end.
        let mut spaces = 0;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            for s in [format!("{c}x"), format!("x{c}"), c.to_string()] {
                assert_eq!(untrimmed(&s), reference(&s), "{:?}", c as u32);
            }
            spaces += usize::from(c.is_whitespace());
        }
        assert_eq!(spaces, 25);
        // A null is not looked at (its view is of an empty text).
        let nulls = Utf8ViewArray::from_slice([None, Some("x"), None]);
        assert!(!any_untrimmed(&nulls));
        let after = Utf8ViewArray::from_slice([None, Some("x"), Some("long enough to be held ")]);
        assert!(any_untrimmed(&after));
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

    /// `values` parsed by [`parse_date_text`] and by polars alone.
    fn both_ways(values: &[String], formats: &[String]) -> (Vec<Option<i32>>, Vec<Option<i32>>) {
        let df = df!("ts" => values).unwrap();
        let days = |e: Expr| -> Vec<Option<i32>> {
            let out = df
                .clone()
                .lazy()
                .select([e.cast(DataType::Int32).alias("ts")]);
            let out = out.collect().unwrap();
            out.column("ts").unwrap().i32().unwrap().iter().collect()
        };
        (
            days(parse_date_text(col("ts"), &DataType::String, formats)),
            days(strptime(col("ts"), formats)),
        )
    }

    #[test]
    fn shaped_dates_read_as_polars_parses_them() {
        let mut next = crate::testing::lcg(29);
        // Years from 0000 to 9999; months, days, hours, minutes and
        // seconds one past their range and more; all five shapes.
        let values: Vec<String> = (0..20_000)
            .map(|_| {
                let (y, m, d) = (next() % 10_000, next() % 14, next() % 33);
                let (h, mi, s) = (next() % 25, next() % 61, next() % 61);
                match next() % 5 {
                    0 => format!("{y:04}-{m:02}-{d:02}"),
                    1 => format!("{y:04}/{m:02}/{d:02}"),
                    2 => format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
                    3 => format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}"),
                    _ => format!("{y:04}/{m:02}/{d:02} {h:02}:{mi:02}:{s:02}"),
                }
            })
            .collect();
        let orders = [
            crate::config::default_date_formats(),
            crate::config::default_date_formats()
                .into_iter()
                .rev()
                .collect(),
        ];
        for formats in orders {
            let shapes = Shape::all_of(&formats).unwrap();
            // Only values every shape settles: a batch with one unsettled
            // value goes to polars whole, which would compare polars with
            // itself.
            let settled: Vec<String> = values
                .iter()
                .filter(|v| {
                    let read = shapes.iter().map(|s| s.read(v.as_bytes()));
                    matches!(
                        read.into_iter().find(|r| *r != Read::Other),
                        Some(Read::Day(_))
                    )
                })
                .cloned()
                .collect();
            assert!(settled.len() > 10_000, "{} settled", settled.len());
            let (ours, polars) = both_ways(&settled, &formats);
            assert!(ours.iter().all(Option::is_some));
            assert_eq!(ours, polars);
        }
    }

    #[test]
    fn unsettled_batches_are_polars_own() {
        let formats = crate::config::default_date_formats();
        // A 30th of February, hour 24, a leap second, an unpadded month, a
        // format of no shape: each batch goes to polars whole.
        for odd in [
            "2010-02-30",
            "2010-01-05 24:00:00",
            "2016-12-31 23:59:60",
            "2010-1-05",
            "05.01.2010",
        ] {
            let values = ["2010-01-02".to_string(), odd.to_string()];
            let (ours, polars) = both_ways(&values, &formats);
            assert_eq!(ours, polars, "{odd}");
            assert_eq!(ours[0], Some(14611));
        }
        // Nulls stay null on the fast path.
        let df = df!("ts" => [Some("2010-01-02"), None]).unwrap();
        let out = df
            .lazy()
            .select([parse_date_text(col("ts"), &DataType::String, &formats).cast(DataType::Int32)])
            .collect()
            .unwrap();
        let v: Vec<Option<i32>> = out.column("ts").unwrap().i32().unwrap().iter().collect();
        assert_eq!(v, [Some(14611), None]);
    }

    #[test]
    fn civil_days_are_chronos() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for y in 0..10_000 {
            for m in 0..=13 {
                for d in 0..=32 {
                    let chrono = chrono::NaiveDate::from_ymd_opt(y, m, d)
                        .map(|date| (date - epoch).num_days() as i32);
                    assert_eq!(civil_days(y, m, d), chrono, "{y}-{m}-{d}");
                }
            }
        }
    }

    #[test]
    fn cents_are_the_rounded_product_as_polars_computes_it() {
        // polars' own formulation, the reference.
        let reference = |x: Expr| {
            let cents = (x * lit(100.0)).round(0, RoundMode::HalfAwayFromZero);
            when(
                cents
                    .clone()
                    .is_finite()
                    .and(cents.clone().abs().lt(lit(9.0e15))),
            )
            .then(cents.cast(DataType::Int64))
            .otherwise(lit(NULL).cast(DataType::Int64))
        };
        let mut next = crate::testing::lcg(41);
        let mut values: Vec<Option<f64>> = vec![
            None,
            Some(0.0),
            Some(-0.0),
            Some(0.005),
            Some(-0.005),
            Some(0.015),
            Some(2.675),
            Some(1.005),
            Some(-1.005),
            Some(0.004_999_999_999_999_999),
            Some(89_999_999_999_999.99),
            Some(90_000_000_000_000.0),
            Some(-90_000_000_000_000.0),
            Some(45_035_996_273_704.96),
            Some(1e300),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(f64::MIN_POSITIVE),
        ];
        // Cents and half cents of every size, and random bit patterns.
        for _ in 0..20_000 {
            let scale = 10f64.powi((next() % 17) as i32 - 2);
            let sign = if next().is_multiple_of(2) { 1.0 } else { -1.0 };
            values.push(Some(sign * (next() % 1_000_000) as f64 / 200.0 * scale));
            let bits = ((next() as u64) << 32) ^ next() as u64;
            values.push(Some(f64::from_bits(bits)));
        }
        let df = df!("x" => values).unwrap();
        let got = df
            .clone()
            .lazy()
            .select([cents_from(col("x"))])
            .collect()
            .unwrap();
        let want = df.lazy().select([reference(col("x"))]).collect().unwrap();
        let (got, want) = (
            crate::testing::i64s(&got, "x"),
            crate::testing::i64s(&want, "x"),
        );
        assert!(got.iter().flatten().count() > 20_000);
        assert_eq!(got, want);
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
