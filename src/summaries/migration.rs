//! Tier migration (the seeds' quarterly review): how customers moved between
//! tiers since an earlier date, recomputed from the same inputs as of that
//! date (no earlier output is read back).

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::io::Run;

use crate::error::Result;
use crate::scoring::schemes::{TierScheme, tier_order};
use crate::units::{cents_to_units, date_lit};

/// Label for customers without a tier at the earlier date.
pub const NEW: &str = "(new)";
/// Label for customers without a tier now.
pub const NONE: &str = "(none)";

/// The last calendar quarter end strictly before `d`.
pub fn previous_quarter_end(d: NaiveDate) -> NaiveDate {
    let q_start_month = (d.month0() / 3) * 3 + 1;
    let q_start = NaiveDate::from_ymd_opt(d.year(), q_start_month, 1).unwrap_or(d);
    q_start.pred_opt().unwrap_or(d)
}

/// `tier_migration`: every from-tier × to-tier cell (labels plus `(new)` /
/// `(none)`), with customers, current and earlier window revenue, and the
/// movement: same, upgrade, downgrade, new, departed.
pub fn table(
    current: LazyFrame,
    previous: LazyFrame,
    scheme: &TierScheme,
    compared_to: NaiveDate,
) -> Result<DataFrame> {
    let pick = |df: LazyFrame, tier: &str, rev: &str| {
        df.select([
            col("customer_id"),
            col(scheme.column.as_str()).alias(tier),
            col("revenue_cents").alias(rev),
        ])
    };
    let moved = pick(previous, "from_tier", "prev_cents")
        .join(
            pick(current, "to_tier", "now_cents"),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .filter(
            col("from_tier")
                .is_not_null()
                .or(col("to_tier").is_not_null()),
        )
        .with_columns([
            col("from_tier").fill_null(lit(NEW)),
            col("to_tier").fill_null(lit(NONE)),
        ])
        .group_by([col("from_tier"), col("to_tier")])
        .agg([
            len().cast(DataType::Int64).alias("customers"),
            col("now_cents").sum().alias("now_cents"),
            col("prev_cents").sum().alias("prev_cents"),
        ]);
    let mut from = scheme.labels.clone();
    from.push(NEW.into());
    let mut to = scheme.labels.clone();
    to.push(NONE.into());
    let grid = df!("from_tier" => from)?
        .lazy()
        .cross_join(df!("to_tier" => to)?.lazy(), None)
        .filter(
            col("from_tier")
                .neq(lit(NEW))
                .or(col("to_tier").neq(lit(NONE))),
        );
    let f = tier_order("from_tier", &scheme.labels);
    let t = tier_order("to_tier", &scheme.labels);
    let movement = when(col("from_tier").eq(lit(NEW)))
        .then(lit("new"))
        .when(col("to_tier").eq(lit(NONE)))
        .then(lit("departed"))
        .when(f.clone().eq(t.clone()))
        .then(lit("same"))
        .when(t.clone().lt(f.clone()))
        .then(lit("upgrade"))
        .otherwise(lit("downgrade"));
    let n = scheme.labels.len() as i32;
    Ok(grid
        .join(
            moved,
            [col("from_tier"), col("to_tier")],
            [col("from_tier"), col("to_tier")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("customers").fill_null(lit(0i64)),
            cents_to_units(col("now_cents").fill_null(lit(0i64))).alias("revenue"),
            cents_to_units(col("prev_cents").fill_null(lit(0i64))).alias("revenue_before"),
            movement.alias("movement"),
            date_lit(compared_to).alias("compared_to"),
            f.fill_null(lit(n)).alias("__f"),
            t.fill_null(lit(n)).alias("__t"),
        ])
        .sort(["__f", "__t"], SortMultipleOptions::default())
        .select([
            col("compared_to"),
            col("from_tier"),
            col("to_tier"),
            col("movement"),
            col("customers"),
            col("revenue"),
            col("revenue_before"),
        ])
        .run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_ends() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(previous_quarter_end(d(2010, 12, 31)), d(2010, 9, 30));
        assert_eq!(previous_quarter_end(d(2010, 10, 1)), d(2010, 9, 30));
        assert_eq!(previous_quarter_end(d(2010, 3, 31)), d(2009, 12, 31));
        assert_eq!(previous_quarter_end(d(2010, 5, 15)), d(2010, 3, 31));
    }

    #[test]
    fn flows_between_tiers_by_hand() {
        let scheme = TierScheme {
            name: "pyramid".into(),
            column: "pyramid_tier".into(),
            labels: vec!["A".into(), "B".into()],
        };
        // Before: a=A, b=B, c=B, d untiered. Now: a=B (down), b=A (up),
        // c=B (same), d=A (new), e absent before (new).
        let prev = df!(
            "customer_id" => ["a", "b", "c", "d"],
            "pyramid_tier" => [Some("A"), Some("B"), Some("B"), None],
            "revenue_cents" => [100i64, 50, 20, 0],
        )
        .unwrap();
        let now = df!(
            "customer_id" => ["a", "b", "c", "d", "e"],
            "pyramid_tier" => ["B", "A", "B", "A", "B"],
            "revenue_cents" => [80i64, 300, 25, 10, 5],
        )
        .unwrap();
        let d = NaiveDate::from_ymd_opt(2010, 9, 30).unwrap();
        let out = table(now.lazy(), prev.lazy(), &scheme, d).unwrap();
        let cell = |from: &str, to: &str| -> (i64, String) {
            let m = out
                .clone()
                .lazy()
                .filter(
                    col("from_tier")
                        .eq(lit(from))
                        .and(col("to_tier").eq(lit(to))),
                )
                .collect()
                .unwrap();
            (
                m.column("customers")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .get(0)
                    .unwrap(),
                m.column("movement")
                    .unwrap()
                    .str()
                    .unwrap()
                    .get(0)
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(cell("A", "B"), (1, "downgrade".into()));
        assert_eq!(cell("B", "A"), (1, "upgrade".into()));
        assert_eq!(cell("B", "B"), (1, "same".into()));
        assert_eq!(cell("(new)", "A"), (1, "new".into()));
        assert_eq!(cell("(new)", "B"), (1, "new".into()));
        assert_eq!(cell("A", "A"), (0, "same".into()));
        // 2 labels + (new) from, 2 labels + (none) to, minus (new)→(none).
        assert_eq!(out.height(), 8);
    }
}
