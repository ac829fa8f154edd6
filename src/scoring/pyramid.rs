//! The contribution pyramid (客户金字塔 / ABC, SPEC §5): rank by contribution,
//! cut by customer share or cumulative contribution share.

use polars::prelude::*;

use crate::io::Run;

use crate::config::{PyramidConfig, PyramidMode};
use crate::error::Result;
use crate::scoring::table;
use crate::units::{cents_to_units, mean_money};

/// Adds contribution_rank, cum_contribution_share, pyramid_tier and
/// contribution_nonpositive to the customer base (in-scope customers only;
/// the others get nulls).
///
/// Ties: tied customers share the 'min' rank and the cumulative share of
/// their whole tie group, so a tie at a cut takes the higher tier and the
/// result never depends on row order.
pub fn assign(base: LazyFrame, cfg: &PyramidConfig) -> Result<LazyFrame> {
    let c = when(col("in_scope"))
        .then(col("contribution_cents"))
        .otherwise(lit(NULL).cast(DataType::Int64));
    let pos = when(col("__c").gt(lit(0i64)))
        .then(col("__c"))
        .otherwise(lit(0i64));
    // The running total in descending contribution order, computed on the
    // one column and put back in row order (the inverse permutation):
    // sorting the whole, wide base instead would move every column. Within
    // a tie group the running total depends on the order, but only its
    // group maximum and minimum below are used.
    let order = col("__c").arg_sort(true, true);
    let cum = col("__pos")
        .gather(order.clone(), false)
        .cum_sum(false)
        .gather(order.arg_sort(false, false), false);
    Ok(base
        .with_column(c.alias("__c"))
        .with_column(pos.alias("__pos"))
        .with_column(cum.alias("__cum"))
        .with_columns([
            col("__cum").max().over([col("__c")])?.alias("__cum_group"),
            (col("__cum") - col("__pos"))
                .min()
                .over([col("__c")])?
                .alias("__before"),
            col("__pos").sum().alias("__total"),
            col("__c")
                .rank(
                    RankOptions {
                        method: RankMethod::Min,
                        descending: true,
                    },
                    None,
                )
                .cast(DataType::Int64)
                .alias("contribution_rank"),
            col("__c").count().cast(DataType::Float64).alias("__n"),
        ])
        .with_columns([
            when(col("in_scope").and(col("__total").gt(lit(0i64))))
                .then(
                    col("__cum_group").cast(DataType::Float64)
                        / col("__total").cast(DataType::Float64),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("cum_contribution_share"),
            tier_expr(cfg).alias("pyramid_tier"),
            when(col("in_scope"))
                .then(col("__c").lt_eq(lit(0i64)))
                .otherwise(lit(NULL).cast(DataType::Boolean))
                .alias("contribution_nonpositive"),
        ])
        .drop(cols([
            "__c",
            "__pos",
            "__cum",
            "__cum_group",
            "__before",
            "__total",
            "__n",
        ])))
}

/// The tier label from rank (customer share) or the cumulative share before
/// the customer's tie group (contribution share); ≤ 0 → the last label.
fn tier_expr(cfg: &PyramidConfig) -> Expr {
    let labels = cfg.labels();
    let last = labels.last().cloned().unwrap_or_default();
    let position = match cfg.mode {
        // Share of customers ranked strictly above, in percent × n.
        PyramidMode::CustomerShare => {
            (col("contribution_rank") - lit(1i64)).cast(DataType::Float64) * lit(100.0)
        }
        PyramidMode::ContributionShare => col("__before").cast(DataType::Float64) * lit(100.0),
    };
    let scale = match cfg.mode {
        PyramidMode::CustomerShare => col("__n"),
        PyramidMode::ContributionShare => col("__total").cast(DataType::Float64),
    };
    let mut e = lit(last.as_str());
    for (cut, label) in cfg.cuts().iter().zip(&labels).rev() {
        e = when(position.clone().lt(lit(*cut) * scale.clone()))
            .then(lit(label.as_str()))
            .otherwise(e);
    }
    when(col("__c").is_null())
        .then(lit(NULL).cast(DataType::String))
        .when(col("__c").lt_eq(lit(0i64)))
        .then(lit(last.as_str()))
        .otherwise(e)
}

/// `pyramid`: per tier (all labels, in order) customers, customer share,
/// contribution, contribution share, mean / min / max contribution.
pub fn summary(scores: LazyFrame, cfg: &PyramidConfig) -> Result<DataFrame> {
    let c = || col("contribution_cents");
    let extra = vec![
        mean_money(c()).alias("mean_contribution"),
        cents_to_units(c().min()).alias("min_contribution"),
        cents_to_units(c().max()).alias("max_contribution"),
    ];
    let in_scope = scores.filter(col("in_scope"));
    Ok(table::per_label(
        in_scope,
        "pyramid_tier",
        &cfg.labels(),
        "contribution",
        extra,
        None,
    )?
    .select([
        col("pyramid_tier"),
        col("customers"),
        col("customer_share"),
        col("contribution"),
        col("contribution_share"),
        col("mean_contribution"),
        col("min_contribution"),
        col("max_contribution"),
    ])
    .run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(contrib: &[i64], cfg: &PyramidConfig) -> DataFrame {
        let n = contrib.len();
        let ids: Vec<String> = (0..n).map(|i| format!("c{i:02}")).collect();
        df!(
            "customer_id" => ids,
            "in_scope" => vec![true; n],
            "contribution_cents" => contrib,
        )
        .unwrap()
        .lazy()
        .pipe(|lf| assign(lf, cfg).unwrap())
        .sort(["customer_id"], Default::default())
        .collect()
        .unwrap()
    }

    fn tiers(df: &DataFrame) -> Vec<String> {
        df.column("pyramid_tier")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap_or("null").to_string())
            .collect()
    }

    trait Pipe: Sized {
        fn pipe<F: FnOnce(Self) -> Self>(self, f: F) -> Self {
            f(self)
        }
    }
    impl Pipe for LazyFrame {}

    #[test]
    fn customer_share_cuts_on_100_distinct_customers() {
        // Contributions 100..1 : rank r = 101 − value. 1% → 1 A, 4% → 4 B,
        // 15% → 15 C, 80 D.
        let v: Vec<i64> = (1..=100).rev().collect();
        let t = tiers(&run(&v, &PyramidConfig::default()));
        let count = |l: &str| t.iter().filter(|x| *x == l).count();
        assert_eq!(
            (count("A"), count("B"), count("C"), count("D")),
            (1, 4, 15, 80)
        );
    }

    #[test]
    fn ties_at_a_cut_take_the_higher_tier() {
        // 10 customers; cut 20% → ranks 1–2 are A. Three tie at the top.
        let cfg = PyramidConfig {
            customer_share_cuts: vec![20.0, 50.0],
            labels: Some(vec!["A".into(), "B".into(), "C".into()]),
            ..Default::default()
        };
        let t = tiers(&run(&[9, 9, 9, 8, 7, 6, 5, 4, 3, 2], &cfg));
        assert_eq!(t, vec!["A", "A", "A", "B", "B", "C", "C", "C", "C", "C"]);
    }

    #[test]
    fn nonpositive_contribution_goes_last_and_is_flagged() {
        // n = 4: only rank 1 is in the top 1%; the 100 (rank 2, 25% above it)
        // is D on merit, 0 and −300 are D because they are not positive.
        let df = run(&[500, 0, -300, 100], &PyramidConfig::default());
        assert_eq!(tiers(&df), vec!["A", "D", "D", "D"]);
        let flags: Vec<_> = df
            .column("contribution_nonpositive")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(flags, vec![false, true, true, false]);
        // Shares are of positive contribution: 500/600, then 600/600.
        let s: Vec<_> = df
            .column("cum_contribution_share")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert!((s[0] - 500.0 / 600.0).abs() < 1e-12 && (s[3] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pareto_abc_uses_share_before_the_customer() {
        // Total 100: 50 (before 0%) A, 30 (before 50%) A, 15 (before 80%) B,
        // 5 (before 95%) C.
        let cfg = PyramidConfig {
            mode: PyramidMode::ContributionShare,
            ..Default::default()
        };
        assert_eq!(
            tiers(&run(&[50, 30, 15, 5], &cfg)),
            vec!["A", "A", "B", "C"]
        );
        // Ties at 80% share one group: both 20s start at 60% → A.
        assert_eq!(tiers(&run(&[60, 20, 20], &cfg)), vec!["A", "A", "A"]);
    }

    #[test]
    fn empty_population_gives_empty_result() {
        let df = run(&[], &PyramidConfig::default());
        assert_eq!(df.height(), 0);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn higher_contribution_never_gets_a_lower_tier(
            contrib in proptest::collection::vec(-5i64..40, 1..80),
            contribution_mode in any::<bool>(),
        ) {
            let cfg = PyramidConfig {
                mode: if contribution_mode { PyramidMode::ContributionShare } else { PyramidMode::CustomerShare },
                ..Default::default()
            };
            let labels = cfg.labels();
            let n = contrib.len();
            let ids: Vec<String> = (0..n).map(|i| format!("c{i:03}")).collect();
            let out = assign(
                df!("customer_id" => ids, "in_scope" => vec![true; n], "contribution_cents" => &contrib)
                    .unwrap()
                    .lazy(),
                &cfg,
            )
            .unwrap()
            .sort(["customer_id"], Default::default())
            .collect()
            .unwrap();
            let tiers: Vec<usize> = out
                .column("pyramid_tier").unwrap().str().unwrap().iter()
                .map(|t| labels.iter().position(|l| Some(l.as_str()) == t).unwrap())
                .collect();
            for i in 0..n {
                for j in 0..n {
                    if contrib[i] > contrib[j] {
                        prop_assert!(tiers[i] <= tiers[j]);
                    }
                    if contrib[i] == contrib[j] {
                        prop_assert_eq!(tiers[i], tiers[j]);
                    }
                }
                if contrib[i] <= 0 {
                    prop_assert_eq!(tiers[i], labels.len() - 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod cut_ties {
    use super::*;

    #[test]
    fn ties_straddling_each_default_cut_take_the_higher_tier() {
        // n = 100. Ranks 1 and 2 tie (straddle the 1% cut) → both A.
        // Ranks 5–6 tie (straddle 5%) → both B. Ranks 20–21 tie (straddle
        // 20%) → both C. Everything else distinct and positive.
        let mut v: Vec<i64> = (1..=100).rev().map(|x| x * 10).collect();
        v[1] = v[0];
        v[5] = v[4];
        v[20] = v[19];
        let ids: Vec<String> = (0..100).map(|i| format!("c{i:03}")).collect();
        let out = assign(
            df!("customer_id" => ids, "in_scope" => vec![true; 100], "contribution_cents" => &v)
                .unwrap()
                .lazy(),
            &PyramidConfig::default(),
        )
        .unwrap()
        .sort(["customer_id"], Default::default())
        .collect()
        .unwrap();
        let t: Vec<&str> = out
            .column("pyramid_tier")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(&t[0..2], ["A", "A"]);
        assert_eq!(t[2], "B");
        assert_eq!(&t[4..6], ["B", "B"]);
        assert_eq!(t[6], "C");
        assert_eq!(&t[19..21], ["C", "C"]);
        assert_eq!(t[21], "D");
    }
}
