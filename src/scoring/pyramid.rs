//! The contribution pyramid (客户金字塔 / ABC, SPEC §5): rank by contribution,
//! cut by customer share or cumulative contribution share.

use polars::prelude::*;
use polars_arrow::array::BooleanArray;
use polars_arrow::bitmap::Bitmap;
use rayon::prelude::*;

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
    let cfg = cfg.clone();
    // One kernel over the whole population (`apply_many` is group-wise: it
    // sees the whole column, never a morsel), returning the four columns
    // as one struct. Each share is one true division in one place: the
    // polars formulation divided by a broadcast total, as a product with
    // its reciprocal or not depending on how the rows came in batches, so
    // a share could differ in its last bit from one run to the next.
    let ranked = col("in_scope").apply_many(
        move |c: &mut [Column]| ranked(&c[0], &c[1], &cfg).map(|s| s.into_column()),
        &[col("contribution_cents")],
        |_, _| Ok(Field::new(RANKED.into(), ranked_dtype())),
    );
    let field = |n: &str| col(RANKED).struct_().field_by_name(n);
    Ok(base
        .with_column(ranked.alias(RANKED))
        .with_columns(OUTPUTS.iter().map(|n| field(n)).collect::<Vec<_>>())
        .drop(cols([RANKED])))
}

/// The struct column [`assign`] unpacks.
const RANKED: &str = "__pyramid";

/// What [`assign`] adds, in order.
const OUTPUTS: [&str; 4] = [
    "contribution_rank",
    "cum_contribution_share",
    "pyramid_tier",
    "contribution_nonpositive",
];

fn ranked_dtype() -> DataType {
    DataType::Struct(vec![
        Field::new(OUTPUTS[0].into(), DataType::Int64),
        Field::new(OUTPUTS[1].into(), DataType::Float64),
        Field::new(OUTPUTS[2].into(), DataType::String),
        Field::new(OUTPUTS[3].into(), DataType::Boolean),
    ])
}

/// [`assign`]'s columns for one population. An in-scope customer's
/// contribution `c` ranks them ('min' rank, descending); the running total
/// of positive contributions in that order, taken at the end of the
/// customer's tie group, is their cumulative share; the total before the
/// group places them for the contribution-share cuts.
fn ranked(in_scope: &Column, contribution: &Column, cfg: &PyramidConfig) -> PolarsResult<Series> {
    let scope = in_scope.bool()?;
    let n_rows = scope.len();
    // The ranked customers: in scope with a contribution.
    let mut order: Vec<(i64, u32)> = Vec::with_capacity(n_rows);
    for (i, (s, c)) in scope.iter().zip(contribution.i64()?.iter()).enumerate() {
        if let (Some(true), Some(c)) = (s, c) {
            order.push((c, i as u32));
        }
    }
    // Descending; the order within a tie group does not matter.
    order.par_sort_unstable_by(|a, b| b.0.cmp(&a.0));
    let n = order.len() as f64;
    let total: i64 = order.iter().map(|&(v, _)| v.max(0)).sum();
    let labels = cfg.labels();
    let cuts = cfg.cuts();
    // Tiers by index into `labels`, the last label past them.
    let last = labels.len();
    let names: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .chain([labels.last().map_or("", String::as_str)])
        .collect();
    // The label of the first cut the customer's position is under, in
    // percent × the scale: share of customers ranked strictly above, or
    // share of contribution before the tie group; ≤ 0 → the last label.
    // The same for a whole tie group.
    let tier = |v: i64, start: usize, running: i64| -> u32 {
        if v <= 0 {
            return last as u32;
        }
        let (position, scale) = match cfg.mode {
            PyramidMode::CustomerShare => (start as f64 * 100.0, n),
            PyramidMode::ContributionShare => (running as f64 * 100.0, total as f64),
        };
        cuts.iter()
            .zip(&labels)
            .position(|(cut, _)| position < *cut * scale)
            .unwrap_or(last) as u32
    };
    // Each ranked row's outputs written once, straight into the columns'
    // values (only the ranked rows' are read); an in-scope customer without
    // a contribution sits after every group (share 1).
    let mut rank = vec![0i64; n_rows];
    let mut share = vec![1.0f64; n_rows];
    let mut tiers = vec![0u32; n_rows];
    let mut nonpositive = vec![false; n_rows];
    let mut in_ranking = vec![false; n_rows];
    let mut running = 0i64;
    let mut start = 0;
    while start < order.len() {
        let v = order[start].0;
        let end = start + order[start..].iter().take_while(|o| o.0 == v).count();
        let group_end = running + (end - start) as i64 * v.max(0);
        let (r, sh, t) = (
            start as i64 + 1,
            group_end as f64 / total as f64,
            tier(v, start, running),
        );
        for &(_, i) in &order[start..end] {
            let i = i as usize;
            rank[i] = r;
            share[i] = sh;
            tiers[i] = t;
            nonpositive[i] = v <= 0;
            in_ranking[i] = true;
        }
        running = group_end;
        start = end;
    }
    drop(order);
    let ranked = Bitmap::from_iter(in_ranking);
    let shared = (total > 0).then(|| Bitmap::from_iter(scope.iter().map(|s| s == Some(true))));
    // The columns built side by side (the scoring around them leaves the
    // other core idle).
    let ((rank, share), (tier, nonpositive)) = rayon::join(
        || {
            rayon::join(
                || Int64Chunked::from_vec_validity(OUTPUTS[0].into(), rank, Some(ranked.clone())),
                || match &shared {
                    Some(valid) => Float64Chunked::from_vec_validity(
                        OUTPUTS[1].into(),
                        share,
                        Some(valid.clone()),
                    ),
                    None => Float64Chunked::full_null(OUTPUTS[1].into(), n_rows),
                },
            )
        },
        || {
            rayon::join(
                || {
                    let tier = tiers
                        .iter()
                        .zip(ranked.iter())
                        .map(|(&t, r)| r.then(|| names[t as usize]));
                    StringChunked::from_iter_options(OUTPUTS[2].into(), tier)
                },
                || {
                    let values = BooleanArray::new(
                        ArrowDataType::Boolean,
                        Bitmap::from_iter(nonpositive),
                        Some(ranked.clone()),
                    );
                    BooleanChunked::with_chunk(OUTPUTS[3].into(), values)
                },
            )
        },
    );
    let fields = [
        rank.into_series(),
        share.into_series(),
        tier.into_series(),
        nonpositive.into_series(),
    ];
    Ok(StructChunked::from_series(RANKED.into(), n_rows, fields.iter())?.into_series())
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
        let s: Vec<_> = crate::testing::f64s(&df, "cum_contribution_share");
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

/// The kernel against the previous polars formulation of [`assign`]
/// (arg-sorts, window group-bys, rank), kept here as the independent
/// computation, on random populations with ties, null contributions and
/// out-of-scope rows, in both modes.
#[cfg(test)]
mod against_polars {
    use super::*;

    fn reference(base: LazyFrame, cfg: &PyramidConfig) -> LazyFrame {
        let c = when(col("in_scope"))
            .then(col("contribution_cents"))
            .otherwise(lit(NULL).cast(DataType::Int64));
        let pos = when(col("__c").gt(lit(0i64)))
            .then(col("__c"))
            .otherwise(lit(0i64));
        let order = col("__c").arg_sort(true, true);
        let cum = col("__pos")
            .gather(order.clone(), false)
            .cum_sum(false)
            .gather(order.arg_sort(false, false), false);
        let labels = cfg.labels();
        let last = labels.last().cloned().unwrap_or_default();
        let (position, scale) = match cfg.mode {
            PyramidMode::CustomerShare => (
                (col("contribution_rank") - lit(1i64)).cast(DataType::Float64) * lit(100.0),
                col("__n"),
            ),
            PyramidMode::ContributionShare => (
                col("__before").cast(DataType::Float64) * lit(100.0),
                col("__total").cast(DataType::Float64),
            ),
        };
        let mut tier = lit(last.as_str());
        for (cut, label) in cfg.cuts().iter().zip(&labels).rev() {
            tier = when(position.clone().lt(lit(*cut) * scale.clone()))
                .then(lit(label.as_str()))
                .otherwise(tier);
        }
        let tier = when(col("__c").is_null())
            .then(lit(NULL).cast(DataType::String))
            .when(col("__c").lt_eq(lit(0i64)))
            .then(lit(last.as_str()))
            .otherwise(tier);
        let over = |e: Expr| e.over([col("__c")]).unwrap();
        base.with_column(c.alias("__c"))
            .with_column(pos.alias("__pos"))
            .with_column(cum.alias("__cum"))
            .with_columns([
                over(col("__cum").max()).alias("__cum_group"),
                over((col("__cum") - col("__pos")).min()).alias("__before"),
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
                tier.alias("pyramid_tier"),
                when(col("in_scope"))
                    .then(col("__c").lt_eq(lit(0i64)))
                    .otherwise(lit(NULL).cast(DataType::Boolean))
                    .alias("contribution_nonpositive"),
            ])
    }

    #[test]
    fn kernel_equals_the_polars_formulation() {
        let mut lcg = crate::testing::lcg(7u64);
        let mut next = move |m: u64| lcg() as u64 % m;
        let columns = || {
            [
                "customer_id",
                "contribution_rank",
                "cum_contribution_share",
                "pyramid_tier",
                "contribution_nonpositive",
            ]
            .map(col)
        };
        for round in 0..40 {
            let n = 1 + next(400) as usize;
            let spread = 1 + next(50) as i64;
            let ids: Vec<String> = (0..n).map(|i| format!("c{i:04}")).collect();
            let scope: Vec<bool> = (0..n).map(|_| next(10) > 1).collect();
            let cents: Vec<Option<i64>> = (0..n)
                .map(|_| (next(20) > 0).then(|| next(spread as u64) as i64 * 100 - spread * 20))
                .collect();
            let cfg = PyramidConfig {
                mode: if round % 2 == 0 {
                    PyramidMode::CustomerShare
                } else {
                    PyramidMode::ContributionShare
                },
                ..Default::default()
            };
            let base =
                df!("customer_id" => ids, "in_scope" => scope, "contribution_cents" => cents)
                    .unwrap()
                    .lazy();
            let sorted = |lf: LazyFrame| {
                lf.select(columns())
                    .sort(["customer_id"], Default::default())
                    .collect()
                    .unwrap()
            };
            let got = sorted(assign(base.clone(), &cfg).unwrap());
            let want = sorted(reference(base, &cfg));
            for name in want.get_column_names() {
                let (g, w) = (got.column(name).unwrap(), want.column(name).unwrap());
                for i in 0..n {
                    let (a, b) = (g.get(i).unwrap(), w.get(i).unwrap());
                    // polars may divide by the broadcast total as a product
                    // with its reciprocal: an ulp apart at most.
                    match (a.extract::<f64>(), b.extract::<f64>()) {
                        (Some(x), Some(y)) if name == "cum_contribution_share" => {
                            assert!(
                                (x - y).abs() <= 1e-12 * y.abs(),
                                "round {round}, row {i}: {x} vs {y}"
                            )
                        }
                        _ => assert_eq!(a, b, "round {round}, {name}, row {i}"),
                    }
                }
            }
        }
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
