//! The value vocabulary every stage shares: dates as epoch days and Date
//! literals, integer cents as currency units.

use chrono::NaiveDate;
use polars::prelude::*;

/// Days since 1970-01-01, the integer form of a polars Date.
pub fn epoch_days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

/// The inverse of [`epoch_days`].
pub fn from_epoch_days(days: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    epoch + chrono::Duration::days(days as i64)
}

/// Integer cents (or a float count of cents) as currency units, correctly
/// rounded: 91917 → 919.17. polars divides by a scalar through its
/// reciprocal (919.1700000000001), so divide by a column of 100s instead.
pub fn cents_to_units(cents: Expr) -> Expr {
    let x = cents.cast(DataType::Float64);
    x.clone() / (x * lit(0.0) + lit(100.0))
}

/// The mean of a cents column as currency units, rounded to whole cents
/// (half away from zero): money prints as 123.46 in the CSV, never as
/// 123.45666666666666.
pub fn mean_money(cents: Expr) -> Expr {
    cents_to_units(cents.mean().round(0, RoundMode::HalfAwayFromZero))
}

/// A Date literal (`lit(NaiveDate)` would make a Datetime).
pub fn date_lit(d: NaiveDate) -> Expr {
    lit(epoch_days(d)).cast(DataType::Date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_become_correctly_rounded_units() {
        let out = df!("c" => [91917i64, 632219, -28465, 0])
            .unwrap()
            .lazy()
            .select([cents_to_units(col("c"))])
            .collect()
            .unwrap();
        let v: Vec<_> = crate::testing::f64s(&out, "c");
        assert_eq!(v, vec![919.17, 6322.19, -284.65, 0.0]);
    }

    #[test]
    fn mean_money_is_rounded_to_whole_cents() {
        // Means 1.5, 100.666…, -0.5 and 2/3 cents → 2, 101, -1 and 1 cent.
        let df = df!(
            "g" => [1, 1, 2, 2, 2, 3, 3, 4, 4, 4],
            "c" => [1i64, 2, 100, 101, 101, 0, -1, 0, 1, 1],
        )
        .unwrap()
        .lazy()
        .group_by([col("g")])
        .agg([mean_money(col("c")).alias("m")])
        .sort(["g"], Default::default())
        .collect()
        .unwrap();
        let m: Vec<f64> = crate::testing::f64s(&df, "m");
        assert_eq!(m, [0.02, 1.01, -0.01, 0.01]);
    }
}
