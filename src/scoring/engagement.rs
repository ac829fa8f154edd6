//! Per-customer measures from interactions as of the snapshot date:
//! contact counts, complaints, referrals, last call / visit / contact.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::scoring::measures::{days_before, in_window, on_or_before};

/// Count columns this module adds (0 for customers without interactions).
pub const COUNT_COLUMNS: &[&str] = &[
    "calls",
    "visits",
    "service_visits",
    "events_attended",
    "complaints",
    "complaints_resolved",
    "unresolved_complaints",
    "referrals_made",
    "referrals_converted",
    "lost_deals",
];

/// Date columns this module adds (null when there was no such contact).
pub const DATE_COLUMNS: &[&str] = &["last_call", "last_visit", "last_contact"];

fn kind_is(k: &str) -> Expr {
    col("kind").eq(lit(k))
}

/// Aggregates interactions dated on or before `as_of` per customer. Counts
/// respect the look-back window; last-contact dates use all history.
/// `last_contact` is the latest call, visit, service visit or event.
pub fn customer_engagement(
    interactions: LazyFrame,
    as_of: NaiveDate,
    window_days: Option<u32>,
    converted_outcomes: &[String],
) -> LazyFrame {
    let w = in_window(as_of, window_days);
    let count = |cond: Expr| cond.and(w.clone()).sum().cast(DataType::Int64);
    let converted = if converted_outcomes.is_empty() {
        lit(false)
    } else {
        let values = Series::new("outcomes".into(), converted_outcomes);
        col("outcome")
            .is_in(lit(values).implode(false), false)
            .fill_null(lit(false))
    };
    let contact = kind_is("call")
        .or(kind_is("visit"))
        .or(kind_is("service"))
        .or(kind_is("event"));
    interactions
        .filter(on_or_before(as_of))
        .group_by([col("customer_id")])
        .agg([
            count(kind_is("call")).alias("calls"),
            count(kind_is("visit")).alias("visits"),
            count(kind_is("service")).alias("service_visits"),
            count(kind_is("event")).alias("events_attended"),
            count(kind_is("complaint")).alias("complaints"),
            count(kind_is("complaint_resolved")).alias("complaints_resolved"),
            count(kind_is("referral")).alias("referrals_made"),
            count(kind_is("referral").and(converted)).alias("referrals_converted"),
            count(kind_is("lost_deal")).alias("lost_deals"),
            col("ts").filter(kind_is("call")).max().alias("last_call"),
            col("ts").filter(kind_is("visit")).max().alias("last_visit"),
            col("ts").filter(contact).max().alias("last_contact"),
        ])
        .with_columns([
            (col("complaints") - col("complaints_resolved"))
                .clip_min(lit(0i64))
                .alias("unresolved_complaints"),
            days_before(as_of, "last_contact").alias("days_since_contact"),
        ])
}

/// Joins engagement onto the customer base; customers without interactions
/// get zero counts and null dates.
pub fn join_engagement(base: LazyFrame, engagement: LazyFrame) -> LazyFrame {
    engagement_filled(base.join(
        engagement,
        [col("customer_id")],
        [col("customer_id")],
        JoinArgs::new(JoinType::Left),
    ))
}

/// [`join_engagement`]'s zero counts on a base already joined (left, on
/// customer_id) with the engagement.
pub fn engagement_filled(joined: LazyFrame) -> LazyFrame {
    let fill: Vec<Expr> = COUNT_COLUMNS
        .iter()
        .map(|c| col(*c).fill_null(lit(0i64)))
        .collect();
    joined.with_columns(fill)
}

/// An empty interactions frame with the canonical schema, for runs without
/// an interactions input (every customer then has zero counts).
pub fn empty_interactions() -> LazyFrame {
    let mut columns = vec![Column::new_empty("ts".into(), &DataType::Date)];
    for c in crate::contract::canonical_columns("interactions") {
        if c != "ts" {
            columns.push(Column::new_empty(c.into(), &DataType::String));
        }
    }
    DataFrame::new_infer_height(columns)
        .map(|df| df.lazy())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2010, m, day).unwrap()
    }

    #[test]
    fn counts_and_last_contacts_by_hand() {
        let i = df!(
            "customer_id" => ["a", "a", "a", "a", "a", "a", "b"],
            "ts" => [d(1, 5), d(3, 1), d(6, 1), d(6, 2), d(7, 1), d(12, 31), d(2, 1)],
            "kind" => ["call", "visit", "complaint", "complaint", "complaint_resolved", "referral", "lost_deal"],
            "outcome" => [None, None, None, None, None, Some("成交"), Some("价格高")],
        )
        .unwrap()
        .lazy();
        let out = customer_engagement(i, d(12, 31), None, &["成交".to_string()])
            .sort(["customer_id"], Default::default())
            .collect()
            .unwrap();
        let get = |c: &str| -> Vec<Option<i64>> {
            out.column(c)
                .unwrap()
                .cast(&DataType::Int64)
                .unwrap()
                .i64()
                .unwrap()
                .iter()
                .collect()
        };
        assert_eq!(get("calls"), vec![Some(1), Some(0)]);
        assert_eq!(get("complaints"), vec![Some(2), Some(0)]);
        assert_eq!(get("unresolved_complaints"), vec![Some(1), Some(0)]);
        assert_eq!(get("referrals_converted"), vec![Some(1), Some(0)]);
        assert_eq!(get("lost_deals"), vec![Some(0), Some(1)]);
        // a: last contact is the 2010-03-01 visit (complaints and referrals
        // are not contacts): 305 days before 2010-12-31. b: none.
        assert_eq!(get("days_since_contact"), vec![Some(305), None]);
    }
}
