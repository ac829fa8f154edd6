//! Churn status from recency (SPEC §7): active, sleeping (沉睡) or lost (流失).

use polars::prelude::*;

use crate::config::ChurnConfig;

/// `active` when recency ≤ sleeping_days, `sleeping` when ≤ lost_days,
/// else `lost`; customers with no transaction as of the snapshot are
/// `no_purchase`.
pub fn status(cfg: &ChurnConfig) -> Expr {
    let r = col("recency_days");
    when(r.clone().is_null())
        .then(lit("no_purchase"))
        .when(r.clone().lt_eq(lit(cfg.sleeping_days as i32)))
        .then(lit("active"))
        .when(r.lt_eq(lit(cfg.lost_days as i32)))
        .then(lit("sleeping"))
        .otherwise(lit("lost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_inclusive() {
        let df =
            df!("recency_days" => [Some(0i32), Some(90), Some(91), Some(180), Some(181), None])
                .unwrap();
        let out = df
            .lazy()
            .select([status(&ChurnConfig::default()).alias("s")])
            .collect()
            .unwrap();
        let s: Vec<_> = out
            .column("s")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(
            s,
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
}
