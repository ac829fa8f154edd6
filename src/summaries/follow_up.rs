//! Follow-up compliance (SPEC §7): each tier's required call and visit
//! cadence, who is overdue and by how much — the call list for the day.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::io::Run;

use crate::config::FollowUpConfig;
use crate::error::Result;
use crate::scoring::schemes::{TierScheme, tier_order};
use crate::units::epoch_days;

/// `call_every_days` and `visit_every_days` from the customer's tier.
pub fn cadence_exprs(cfg: &FollowUpConfig, scheme: &TierScheme) -> [Expr; 2] {
    let tier = col(scheme.column.as_str());
    let mut call = lit(cfg.call_days as i32);
    let mut visit = lit(cfg.visit_days as i32);
    for r in cfg.rules.iter().rev() {
        let hit = tier.clone().eq(lit(r.tier.as_str()));
        if let Some(c) = r.call_days {
            call = when(hit.clone()).then(lit(c as i32)).otherwise(call);
        }
        if let Some(v) = r.visit_days {
            visit = when(hit).then(lit(v as i32)).otherwise(visit);
        }
    }
    let scoped = |e: Expr| {
        when(col("in_scope"))
            .then(e)
            .otherwise(lit(NULL).cast(DataType::Int32))
    };
    [
        scoped(call).alias("call_every_days"),
        scoped(visit).alias("visit_every_days"),
    ]
}

/// `days_overdue` (0 when up to date) and `contact_overdue`, for in-scope
/// customers. A customer never called (visited) counts from its first
/// purchase: the relationship's start.
pub fn overdue_exprs(as_of: NaiveDate) -> [Expr; 3] {
    let since = |c: &str| {
        lit(epoch_days(as_of)) - coalesce(&[col(c), col("first_purchase")]).cast(DataType::Int32)
    };
    let call_late = since("last_call") - col("call_every_days");
    let visit_late = since("last_visit") - col("visit_every_days");
    let days = when(call_late.clone().gt(visit_late.clone()))
        .then(call_late.clone())
        .otherwise(visit_late.clone())
        .clip_min(lit(0i32));
    let kinds = when(
        call_late
            .clone()
            .gt(lit(0))
            .and(visit_late.clone().gt(lit(0))),
    )
    .then(lit("call+visit"))
    .when(call_late.gt(lit(0)))
    .then(lit("call"))
    .when(visit_late.gt(lit(0)))
    .then(lit("visit"))
    .otherwise(lit(NULL).cast(DataType::String));
    [
        days.clone().cast(DataType::Int32).alias("days_overdue"),
        days.gt(lit(0)).alias("contact_overdue"),
        kinds.alias("overdue_contact"),
    ]
}

/// `follow_up`: overdue customers ordered by tier, then days overdue
/// (most first), then customer_id.
pub fn table(scores: LazyFrame, scheme: &TierScheme) -> Result<DataFrame> {
    Ok(scores
        .filter(col("contact_overdue").fill_null(lit(false)))
        .with_columns([
            col(scheme.column.as_str()).alias("tier"),
            tier_order(scheme.column.as_str(), &scheme.labels).alias("tier_order"),
        ])
        .sort_by_exprs(
            [col("tier_order"), col("days_overdue"), col("customer_id")],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
        .select([
            col("tier"),
            col("tier_order"),
            col("customer_id"),
            col("name"),
            col("sales_rep"),
            col("region"),
            col("industry"),
            col("churn_status"),
            col("last_call"),
            col("last_visit"),
            col("call_every_days"),
            col("visit_every_days"),
            col("overdue_contact"),
            col("days_overdue"),
            col("contribution"),
        ])
        .run()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FollowUpRule;

    #[test]
    fn overdue_days_by_hand() {
        let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(2010, m, day).unwrap();
        let scheme = TierScheme {
            name: "pyramid".into(),
            column: "pyramid_tier".into(),
            labels: vec!["A".into(), "B".into()],
        };
        let cfg = FollowUpConfig {
            rules: vec![FollowUpRule {
                tier: "B".into(),
                call_days: Some(60),
                visit_days: None,
            }],
            ..Default::default()
        };
        // as of 2010-12-31. c1 (A): called 12-21 (10 days), visited 09-02
        // (120 days > 90) → 30 overdue, visit. c2 (B): call every 60, called
        // 10-22 (70 days → 10 late), visited 12-01 → 10, call. c3 (A): never
        // contacted, first purchase 12-11 (20 days) → up to date.
        let df = df!(
            "in_scope" => [true, true, true],
            "pyramid_tier" => ["A", "B", "A"],
            "last_call" => [Some(d(12, 21)), Some(d(10, 22)), None],
            "last_visit" => [Some(d(9, 2)), Some(d(12, 1)), None],
            "first_purchase" => [d(1, 1), d(1, 1), d(12, 11)],
        )
        .unwrap();
        let out = df
            .lazy()
            .with_columns(cadence_exprs(&cfg, &scheme))
            .with_columns(overdue_exprs(d(12, 31)))
            .collect()
            .unwrap();
        let days: Vec<i32> = out
            .column("days_overdue")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(days, vec![30, 10, 0]);
        let kinds: Vec<Option<&str>> = out
            .column("overdue_contact")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(kinds, vec![Some("visit"), Some("call"), None]);
    }
}
