//! The summary-table pattern shared by `rfm_segments`, `pyramid` and
//! `tier_summary`: one row per label in label order (labels nobody holds
//! kept with zeros), customer and amount shares, amounts in currency units.

use polars::prelude::*;

use crate::error::Result;
use crate::units::cents_to_units;

/// Name of the label-order column [`per_label`] sorts by (u32, 0 = first).
pub const ORDER: &str = "__order";

/// x / sum(x), null when the sum is zero.
pub fn share(x: Expr) -> Expr {
    let total = x.clone().sum();
    when(total.clone().eq(lit(0.0)))
        .then(lit(NULL).cast(DataType::Float64))
        .otherwise(x / total)
}

/// Every label of `key` with its position ([`ORDER`]).
pub fn labels_frame(key: &str, labels: &[String]) -> Result<LazyFrame> {
    let order: Vec<u32> = (0..labels.len() as u32).collect();
    Ok(df!(key => labels, ORDER => order)?.lazy())
}

/// `rows` (one per customer) counted per label of `key`: `customers`,
/// `<amount>_cents` (the sum) and the `extra` aggregations. Every label is
/// listed, missing ones with zero customers and amount; rows failing `keep`
/// are dropped before the shares. Adds `customer_share`, `<amount>_share`
/// and `<amount>` (currency units); sorted by label order. The caller
/// selects its columns.
pub fn per_label(
    rows: LazyFrame,
    key: &str,
    labels: &[String],
    amount: &str,
    extra: Vec<Expr>,
    keep: Option<Expr>,
) -> Result<LazyFrame> {
    let cents = format!("{amount}_cents");
    let mut aggs = vec![
        len().cast(DataType::Int64).alias("customers"),
        col(cents.as_str()).sum().alias(cents.as_str()),
    ];
    aggs.extend(extra);
    let agg = rows.group_by([col(key)]).agg(aggs);
    let joined = labels_frame(key, labels)?
        .join(agg, [col(key)], [col(key)], JoinArgs::new(JoinType::Left))
        .with_columns([
            col("customers").fill_null(lit(0i64)),
            col(cents.as_str()).fill_null(lit(0i64)),
        ]);
    let kept = match keep {
        Some(k) => joined.filter(k),
        None => joined,
    };
    Ok(kept
        .with_columns([
            share(col("customers").cast(DataType::Float64)).alias("customer_share"),
            share(col(cents.as_str()).cast(DataType::Float64)).alias(format!("{amount}_share")),
            cents_to_units(col(cents.as_str())).alias(amount),
        ])
        .sort([ORDER], Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Run;
    use crate::testing::opt_f64s;

    fn strs(df: &DataFrame, c: &str) -> Vec<String> {
        let s = df.column(c).unwrap().str().unwrap().clone();
        s.iter().map(|v| v.unwrap_or("∅").to_string()).collect()
    }

    #[test]
    fn every_label_in_order_with_zero_filled_shares() {
        let labels: Vec<String> = ["gold", "silver", "bronze", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // silver has nobody; other is dropped by `keep` because it is empty.
        let rows = df!(
            "tier" => ["bronze", "gold", "bronze", "bronze"],
            "revenue_cents" => [1_000i64, 7_501, 1_000, 500],
        )
        .unwrap()
        .lazy();
        let keep = col("tier")
            .neq(lit("other"))
            .or(col("customers").gt(lit(0i64)));
        let top = col("revenue_cents").max().alias("top_cents");
        let df = per_label(rows, "tier", &labels, "revenue", vec![top], Some(keep))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(strs(&df, "tier"), ["gold", "silver", "bronze"]);
        let n: Vec<Option<i64>> = df
            .column("customers")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(n, [Some(1), Some(0), Some(3)]);
        assert_eq!(
            opt_f64s(&df, "customer_share"),
            [Some(0.25), Some(0.0), Some(0.75)]
        );
        // 7501 / 10001 and 2500 / 10001 of the revenue; units from cents.
        assert_eq!(
            opt_f64s(&df, "revenue_share"),
            [
                Some(7_501.0 / 10_001.0),
                Some(0.0),
                Some(2_500.0 / 10_001.0)
            ]
        );
        assert_eq!(
            opt_f64s(&df, "revenue"),
            [Some(75.01), Some(0.0), Some(25.0)]
        );
        // Extra aggregations ride along; a label nobody holds has none.
        let top: Vec<Option<i64>> = df
            .column("top_cents")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(top, [Some(7_501), None, Some(1_000)]);
    }

    #[test]
    fn shares_are_null_when_nothing_is_held() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let rows = df!("k" => [None::<&str>], "x_cents" => [0i64])
            .unwrap()
            .lazy()
            .filter(col("k").is_not_null());
        let df = per_label(rows, "k", &labels, "x", vec![], None)
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(strs(&df, "k"), ["a", "b"]);
        assert_eq!(opt_f64s(&df, "customer_share"), [None, None]);
        assert_eq!(opt_f64s(&df, "x_share"), [None, None]);
        assert_eq!(opt_f64s(&df, "x"), [Some(0.0), Some(0.0)]);
    }
}
