//! Lost-deal reasons (战败原因统计, SPEC §7): per product line, how often each
//! reason was given.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::Result;
use crate::scoring::measures::{in_window, on_or_before};

/// `lost_deal_reasons`: product_line, reason, deals, share of the product
/// line's lost deals; plus `total_label` rows over all product lines.
/// Missing product line → `unknown`; missing reason → `unspecified`.
pub fn reasons(
    interactions: LazyFrame,
    as_of: NaiveDate,
    window_days: Option<u32>,
    total_label: &str,
) -> Result<LazyFrame> {
    let deals = interactions
        .filter(
            col("kind")
                .eq(lit("lost_deal"))
                .and(on_or_before(as_of))
                .and(in_window(as_of, window_days)),
        )
        .select([
            col("product_line").fill_null(lit("unknown")),
            col("outcome").fill_null(lit("unspecified")).alias("reason"),
        ]);
    let by_line = deals
        .clone()
        .group_by([col("product_line"), col("reason")])
        .agg([len().cast(DataType::Int64).alias("deals")]);
    let all = deals
        .group_by([col("reason")])
        .agg([len().cast(DataType::Int64).alias("deals")])
        .select([
            lit(total_label).alias("product_line"),
            col("reason"),
            col("deals"),
        ]);
    let line_total = col("deals").sum().over([col("product_line")])?;
    Ok(concat([by_line, all], UnionArgs::default())?
        .with_columns([
            (col("product_line").eq(lit(total_label))).alias("__is_total"),
            (col("deals").cast(DataType::Float64) / line_total.cast(DataType::Float64))
                .alias("share"),
        ])
        .sort_by_exprs(
            [
                col("__is_total"),
                col("product_line"),
                col("deals"),
                col("reason"),
            ],
            SortMultipleOptions::default().with_order_descending_multi([false, false, true, false]),
        )
        .select([
            col("product_line"),
            col("reason"),
            col("deals"),
            col("share"),
        ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_per_product_line_and_overall() {
        let d = NaiveDate::from_ymd_opt(2010, 6, 1).unwrap();
        let i = df!(
            "customer_id" => ["a", "b", "c", "d", "e"],
            "ts" => [d; 5],
            "kind" => ["lost_deal", "lost_deal", "lost_deal", "lost_deal", "call"],
            "outcome" => [Some("价格高"), Some("价格高"), Some("资金不到位"), None, None],
            "product_line" => [Some("轻卡"), Some("轻卡"), Some("轻卡"), Some("皮卡"), Some("轻卡")],
        )
        .unwrap()
        .lazy();
        let out = reasons(
            i,
            NaiveDate::from_ymd_opt(2010, 12, 31).unwrap(),
            None,
            "ALL",
        )
        .unwrap()
        .collect()
        .unwrap();
        let lines: Vec<&str> = out
            .column("product_line")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let why: Vec<&str> = out
            .column("reason")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let share: Vec<f64> = crate::testing::f64s(&out, "share");
        assert_eq!(lines, vec!["皮卡", "轻卡", "轻卡", "ALL", "ALL", "ALL"]);
        assert_eq!(
            why,
            vec![
                "unspecified",
                "价格高",
                "资金不到位",
                "价格高",
                "unspecified",
                "资金不到位"
            ]
        );
        let want = [1.0, 2.0 / 3.0, 1.0 / 3.0, 0.5, 0.25, 0.25];
        for (g, w) in share.iter().zip(want) {
            assert!((g - w).abs() < 1e-12);
        }
    }
}
