//! Churn (SPEC §7): status active / sleeping (沉睡) / lost (流失) by fixed days
//! or by each customer's own purchase cadence, the `declining` flag, and the
//! `churn_summary` table.

use polars::prelude::*;

use crate::io::Run;

use crate::config::{ChurnConfig, ChurnMode};
use crate::error::Result;
use crate::scoring::first_label;
use crate::scoring::schemes::TierScheme;
use crate::units::cents_to_units;

/// Days of recency after which a customer is sleeping: fixed, or
/// `sleeping_multiple` × the median purchase gap (fixed days without one).
pub fn sleeping_after(cfg: &ChurnConfig) -> Expr {
    threshold(cfg, cfg.sleeping_days, cfg.sleeping_multiple)
}

/// Days of recency after which a customer is lost.
pub fn lost_after(cfg: &ChurnConfig) -> Expr {
    threshold(cfg, cfg.lost_days, cfg.lost_multiple)
}

fn threshold(cfg: &ChurnConfig, days: u32, multiple: f64) -> Expr {
    let fixed = lit(days as f64);
    match cfg.mode {
        ChurnMode::Fixed => fixed,
        ChurnMode::Cadence => when(col("median_gap_days").is_not_null())
            .then(col("median_gap_days") * lit(multiple))
            .otherwise(fixed),
    }
}

/// `active` when recency ≤ the sleeping threshold, `sleeping` when ≤ the
/// lost threshold, else `lost`; no transaction as of the snapshot →
/// `no_purchase`. Needs the columns `sleeping_after_days` and `lost_after_days`.
pub fn status() -> Expr {
    let r = col("recency_days").cast(DataType::Float64);
    let label = |s: &str| Some(s.to_string());
    first_label(
        vec![
            (r.clone().is_null(), label("no_purchase")),
            (r.clone().lt_eq(col("sleeping_after_days")), label("active")),
            (r.lt_eq(col("lost_after_days")), label("sleeping")),
        ],
        label("lost"),
    )
}

/// Spend in the window fell by more than `drop` against the same window a
/// year earlier (customers with no spend then are not declining).
pub fn declining(drop: f64) -> Expr {
    let prior = col("window_spend_prior_cents").cast(DataType::Float64);
    let now = col("window_spend_cents").cast(DataType::Float64);
    prior
        .clone()
        .gt(lit(0.0))
        .and(now.lt(prior * lit(1.0 - drop)))
}

/// `churn_summary`: per dimension member and tier (plus the tier total
/// `ALL`), in-scope customers by status, rates, declining customers, and the
/// window spend of sleeping and lost customers (revenue at risk).
pub fn summary(
    scores: LazyFrame,
    dims: &[String],
    scheme: &TierScheme,
    total_label: &str,
) -> Result<DataFrame> {
    let order: Vec<u32> = (0..=scheme.labels.len() as u32).collect();
    let mut labels = scheme.labels.clone();
    labels.push(total_label.to_string());
    let tier_order = df!("tier" => labels, "tier_order" => order)?.lazy();
    let is = |s: &str| col("churn_status").eq(lit(s));
    let aggs = || {
        [
            len().cast(DataType::Int64).alias("customers"),
            is("active").sum().cast(DataType::Int64).alias("active"),
            is("sleeping").sum().cast(DataType::Int64).alias("sleeping"),
            is("lost").sum().cast(DataType::Int64).alias("lost"),
            col("declining")
                .sum()
                .cast(DataType::Int64)
                .alias("declining"),
            col("window_spend_cents")
                .filter(is("sleeping").or(is("lost")))
                .sum()
                .alias("at_risk_cents"),
            col("window_spend_cents").sum().alias("spend_cents"),
        ]
    };
    if dims.is_empty() {
        return Ok(DataFrame::empty());
    }
    // In-scope customers counted once, in cells of tier × every dimension;
    // each dimension's rows sum those few cells (every aggregate is an
    // integer count or sum) instead of grouping the customers again.
    let mut keys = vec![col(scheme.column.as_str()).alias("tier")];
    keys.extend(dims.iter().enumerate().map(|(i, d)| {
        col(d.as_str())
            .cast(DataType::String)
            .alias(format!("__d{i}"))
    }));
    let cells = scores
        .filter(col("in_scope"))
        .group_by(keys)
        .agg(aggs())
        .run()?
        .lazy();
    let sums = || AGGREGATES.map(|c| col(c).sum());
    let mut parts = Vec::new();
    for (i, dim) in dims.iter().enumerate() {
        let base = cells
            .clone()
            .with_column(col(format!("__d{i}")).alias("member"));
        let by_tier = base
            .clone()
            .group_by([col("member"), col("tier")])
            .agg(sums());
        let all = base
            .group_by([col("member")])
            .agg(sums())
            .with_column(lit(total_label).alias("tier"));
        parts.push(
            concat(
                [by_tier, all.select(by_tier_columns())],
                UnionArgs::default(),
            )?
            .with_column(lit(dim.as_str()).alias("dimension")),
        );
    }
    let rate = |c: &str| {
        (col(c).cast(DataType::Float64) / col("customers").cast(DataType::Float64))
            .alias(format!("{c}_rate"))
    };
    Ok(concat(parts, UnionArgs::default())?
        .join(
            tier_order,
            [col("tier")],
            [col("tier")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            rate("active"),
            rate("sleeping"),
            rate("lost"),
            cents_to_units(col("at_risk_cents")).alias("revenue_at_risk"),
            cents_to_units(col("spend_cents")).alias("window_spend"),
        ])
        .sort(
            ["dimension", "member", "tier_order"],
            SortMultipleOptions::default(),
        )
        .select([
            col("dimension"),
            col("member"),
            col("tier"),
            col("tier_order").cast(DataType::Int32),
            col("customers"),
            col("active"),
            col("sleeping"),
            col("lost"),
            col("active_rate"),
            col("sleeping_rate"),
            col("lost_rate"),
            col("declining"),
            col("window_spend"),
            col("revenue_at_risk"),
        ])
        .run()?)
}

/// The aggregates of `churn_summary`'s rows, in column order.
const AGGREGATES: [&str; 7] = [
    "customers",
    "active",
    "sleeping",
    "lost",
    "declining",
    "at_risk_cents",
    "spend_cents",
];

fn by_tier_columns() -> Vec<Expr> {
    ["member", "tier"]
        .into_iter()
        .chain(AGGREGATES)
        .map(col)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(cfg: &ChurnConfig, recency: &[Option<i32>], gap: &[Option<f64>]) -> Vec<String> {
        df!("recency_days" => recency, "median_gap_days" => gap)
            .unwrap()
            .lazy()
            .with_columns([
                sleeping_after(cfg).alias("sleeping_after_days"),
                lost_after(cfg).alias("lost_after_days"),
            ])
            .select([status().alias("s")])
            .collect()
            .unwrap()
            .column("s")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect()
    }

    #[test]
    fn fixed_thresholds_are_inclusive() {
        let r = [Some(0), Some(90), Some(91), Some(180), Some(181), None];
        assert_eq!(
            statuses(&ChurnConfig::default(), &r, &[None; 6]),
            vec![
                "active",
                "active",
                "sleeping",
                "sleeping",
                "lost",
                "no_purchase"
            ]
        );
    }

    #[test]
    fn cadence_uses_each_customers_own_gap() {
        let cfg = ChurnConfig {
            mode: ChurnMode::Cadence,
            ..Default::default()
        };
        // Regular buyer every 10 days: sleeping after 20, lost after 40.
        // Irregular (median gap 100): 150 days is still active (≤ 200).
        // Single purchase (no gap): the fixed 90 / 180 apply.
        let r = [Some(20), Some(21), Some(41), Some(150), Some(100)];
        let gap = [Some(10.0), Some(10.0), Some(10.0), Some(100.0), None];
        assert_eq!(
            statuses(&cfg, &r, &gap),
            vec!["active", "sleeping", "lost", "active", "sleeping"]
        );
    }

    #[test]
    fn declining_needs_a_prior_year_and_a_real_drop() {
        let df = df!(
            "window_spend_cents" => [60i64, 80, 10, 5],
            "window_spend_prior_cents" => [100i64, 100, 0, -5],
        )
        .unwrap();
        let out = df
            .lazy()
            .select([declining(0.3).alias("d")])
            .collect()
            .unwrap();
        let d: Vec<bool> = out
            .column("d")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(d, vec![true, false, false, false]);
    }

    /// Six customers, two dimensions (one member null), one out of scope:
    /// every row's counts and sums worked out by hand.
    #[test]
    fn summary_counts_each_member_and_tier_and_their_total() {
        let scores = df!(
            "in_scope" => [true, true, true, true, true, false],
            "region" => [Some("N"), Some("N"), Some("S"), Some("S"), None, Some("N")],
            "industry" => ["x", "y", "x", "x", "y", "x"],
            "pyramid_tier" => ["A", "B", "A", "B", "A", "A"],
            "churn_status" => ["active", "lost", "sleeping", "active", "lost", "lost"],
            "declining" => [false, true, true, false, false, true],
            "window_spend_cents" => [100i64, 20, 30, 400, 5, 1000],
        )
        .unwrap()
        .lazy();
        let scheme = TierScheme {
            name: "pyramid".into(),
            column: "pyramid_tier".into(),
            labels: vec!["A".into(), "B".into()],
        };
        let dims = ["region".to_string(), "industry".to_string()];
        let t = summary(scores, &dims, &scheme, "ALL").unwrap();
        let text = |c: &str| crate::testing::strs(&t, c);
        let ints = |c: &str| -> Vec<i64> {
            t.column(c)
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect()
        };
        let (dim, member, tier) = (text("dimension"), text("member"), text("tier"));
        let rows: Vec<(String, Option<String>, String, [i64; 5])> = (0..t.height())
            .map(|i| {
                (
                    dim[i].clone().unwrap(),
                    member[i].clone(),
                    tier[i].clone().unwrap(),
                    [
                        ints("customers")[i],
                        ints("active")[i],
                        ints("sleeping")[i],
                        ints("lost")[i],
                        ints("declining")[i],
                    ],
                )
            })
            .collect();
        let m = |s: &str| Some(s.to_string());
        let want = vec![
            ("industry".into(), m("x"), "A".into(), [2, 1, 1, 0, 1]),
            ("industry".into(), m("x"), "B".into(), [1, 1, 0, 0, 0]),
            ("industry".into(), m("x"), "ALL".into(), [3, 2, 1, 0, 1]),
            ("industry".into(), m("y"), "A".into(), [1, 0, 0, 1, 0]),
            ("industry".into(), m("y"), "B".into(), [1, 0, 0, 1, 1]),
            ("industry".into(), m("y"), "ALL".into(), [2, 0, 0, 2, 1]),
            ("region".into(), None, "A".into(), [1, 0, 0, 1, 0]),
            ("region".into(), None, "ALL".into(), [1, 0, 0, 1, 0]),
            ("region".into(), m("N"), "A".into(), [1, 1, 0, 0, 0]),
            ("region".into(), m("N"), "B".into(), [1, 0, 0, 1, 1]),
            ("region".into(), m("N"), "ALL".into(), [2, 1, 0, 1, 1]),
            ("region".into(), m("S"), "A".into(), [1, 0, 1, 0, 1]),
            ("region".into(), m("S"), "B".into(), [1, 1, 0, 0, 0]),
            ("region".into(), m("S"), "ALL".into(), [2, 1, 1, 0, 1]),
        ];
        assert_eq!(rows, want);
        // Spend in the window, and of the sleeping and lost (at risk).
        let money = |c: &str| -> Vec<f64> {
            t.column(c)
                .unwrap()
                .f64()
                .unwrap()
                .into_no_null_iter()
                .collect()
        };
        assert_eq!(
            money("window_spend"),
            [
                1.3, 4.0, 5.3, 0.05, 0.2, 0.25, 0.05, 0.05, 1.0, 0.2, 1.2, 0.3, 4.0, 4.3
            ]
        );
        assert_eq!(
            money("revenue_at_risk"),
            [
                0.3, 0.0, 0.3, 0.05, 0.2, 0.25, 0.05, 0.05, 0.0, 0.2, 0.2, 0.3, 0.0, 0.3
            ]
        );
        assert_eq!(ints("customers").len(), 14);
    }
}
