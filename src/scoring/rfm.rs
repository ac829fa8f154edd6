//! RFM scores (tie-safe quantile or fixed edges), codes and segments (SPEC §4).

use polars::prelude::*;

use crate::io::Run;
use serde::Serialize;

use crate::config::{Relative, RfmConfig, RfmMode, ScoreCond, SegmentRule, SegmentScheme};
use crate::error::Result;
use crate::scoring::first_label;
use crate::scoring::table;
use crate::units::mean_money;

/// Quantile score 1..=bins: `1 + floor(bins·(r−1)/n)` with `r` the 'min' rank
/// and `n` the non-null count, so equal values always get equal scores.
/// Nulls (customers out of scope) stay null.
pub fn quantile_score(value: Expr, bins: u32, higher_is_better: bool) -> Expr {
    // Group-wise (`apply`): the kernel must see the whole population.
    value.apply(
        move |c: Column| Ok(quantile_scores(&c, bins, higher_is_better)?.into_column()),
        |_, f| Ok(Field::new(f.name().clone(), DataType::Int32)),
    )
}

/// [`quantile_score`] of one column: each value scores by the count of
/// values scoring before it (its 'min' rank − 1). Values spanning a range
/// no wider than about twice their count (days of recency, counts of
/// purchases) are counted per value, with no sort; others (cents) are
/// sorted once (by value, best last), each run of equal values given the
/// score of its first place. polars' rank, count, cast and arithmetic
/// took a stable sort and several passes per score: ~1/3 of ranking 10^7
/// customers.
fn quantile_scores(c: &Column, bins: u32, higher: bool) -> PolarsResult<Int32Chunked> {
    use rayon::prelude::*;
    let c = c.cast(&DataType::Int64)?;
    let values = c.i64()?.rechunk();
    let n = (values.len() - values.null_count()) as u64;
    let mut out = vec![0i32; values.len()];
    let score = |before: u64| (1 + before * u64::from(bins) / n) as i32;
    if let (Some(lo), Some(hi)) = (values.min(), values.max()) {
        let span = (i128::from(hi) - i128::from(lo)) as u128;
        if span < u128::from(2 * n).max(1 << 16) {
            let mut counts = vec![0u64; span as usize + 1];
            for v in values.iter().flatten() {
                counts[(v - lo) as usize] += 1;
            }
            // Each value's score, walking the values in scoring order.
            let mut scores = vec![0i32; counts.len()];
            let mut before = 0u64;
            let mut place = |k: usize| {
                if counts[k] > 0 {
                    scores[k] = score(before);
                    before += counts[k];
                }
            };
            match higher {
                true => (0..counts.len()).for_each(&mut place),
                false => (0..counts.len()).rev().for_each(&mut place),
            }
            for (o, v) in out.iter_mut().zip(values.iter()) {
                if let Some(v) = v {
                    *o = scores[(v - lo) as usize];
                }
            }
        } else {
            // Keys in scoring order: ascending when higher is better, else
            // descending (`!v` reverses i64 order without overflow).
            let mut order: Vec<(i64, IdxSize)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (if higher { v } else { !v }, i as IdxSize)))
                .collect();
            order.par_sort_unstable_by_key(|k| k.0);
            let mut first = 0;
            for (at, &(key, row)) in order.iter().enumerate() {
                if key != order[first].0 {
                    first = at;
                }
                out[row as usize] = score(first as u64);
            }
        }
    }
    let validity = values.downcast_as_array().validity().cloned();
    Ok(Int32Chunked::from_vec_validity(
        values.name().clone(),
        out,
        validity,
    ))
}

/// Fixed-edge score 1..=bins from `bins − 1` increasing edges. Higher is
/// better: 1 + the number of edges the value reaches (value ≥ edge). Lower is
/// better (recency): bins − the number of edges the value exceeds.
pub fn fixed_score(value: Expr, edges: &[f64], bins: u32, higher_is_better: bool) -> Expr {
    let v = value.cast(DataType::Float64);
    let mut passed = lit(0i32);
    for &e in edges {
        let hit = if higher_is_better {
            v.clone().gt_eq(lit(e))
        } else {
            v.clone().gt(lit(e))
        };
        passed = passed + hit.cast(DataType::Int32);
    }
    if higher_is_better {
        passed + lit(1i32)
    } else {
        lit(bins as i32) - passed
    }
}

/// The three measures as scored: in-scope customers only (others null).
/// Monetary is ranked on exact cents.
fn scored_values() -> [(&'static str, Expr, bool, f64); 3] {
    let scoped = |c: &str| {
        when(col("in_scope"))
            .then(col(c))
            .otherwise(lit(NULL).cast(DataType::Int64))
    };
    [
        ("r_score", scoped("recency_days"), false, 1.0),
        ("f_score", scoped("frequency"), true, 1.0),
        ("m_score", scoped("monetary_cents"), true, 100.0),
    ]
}

/// r_score, f_score, m_score for the configured mode.
pub fn score_exprs(cfg: &RfmConfig) -> Vec<Expr> {
    scored_values()
        .into_iter()
        .enumerate()
        .map(|(i, (name, value, higher, unit))| {
            let e = match (&cfg.mode, &cfg.edges) {
                (RfmMode::Fixed, Some(edges)) => {
                    let raw = [&edges.recency, &edges.frequency, &edges.monetary][i];
                    let scaled: Vec<f64> = raw.iter().map(|x| x * unit).collect();
                    // Keep nulls null: the fixed score of a null would be a number.
                    when(value.clone().is_null())
                        .then(lit(NULL).cast(DataType::Int32))
                        .otherwise(fixed_score(value, &scaled, cfg.bins, higher))
                }
                _ => quantile_score(value, cfg.bins, higher),
            };
            e.alias(name)
        })
        .collect()
}

/// "R F M" digits, e.g. "545" (scores ≥ 10 are separated by dashes); null
/// when a score is null.
pub fn rfm_code(bins: u32) -> Expr {
    col("r_score").map_many(
        move |c: &mut [Column]| Ok(codes(&c[0], &c[1], &c[2], bins)?.into_column()),
        &[col("f_score"), col("m_score")],
        |_, f| Ok(Field::new(f[0].name().clone(), DataType::String)),
    )
}

/// [`rfm_code`]'s text in one pass over the three scores (polars' casts
/// and concatenation built three text columns on the way: ~0.1 s of a
/// 10^6-customer scoring, mostly fresh memory).
fn codes(r: &Column, f: &Column, m: &Column, bins: u32) -> PolarsResult<StringChunked> {
    use std::fmt::Write;
    let sep = if bins >= 10 { "-" } else { "" };
    let (r, f, m) = (
        r.cast(&DataType::Int32)?,
        f.cast(&DataType::Int32)?,
        m.cast(&DataType::Int32)?,
    );
    let (r, f, m) = (r.i32()?, f.i32()?, m.i32()?);
    let mut out = StringChunkedBuilder::new(r.name().clone(), r.len());
    let mut code = String::new();
    for ((r, f), m) in r.iter().zip(f.iter()).zip(m.iter()) {
        match (r, f, m) {
            // Single digits (five bins, as most configure) as bytes: the
            // formatting machinery was ~9% of a night's scoring stage.
            (Some(r), Some(f), Some(m))
                if sep.is_empty() && [r, f, m].iter().all(|d| (0..10).contains(d)) =>
            {
                let digits = [b'0' + r as u8, b'0' + f as u8, b'0' + m as u8];
                out.append_value(std::str::from_utf8(&digits).expect("ASCII digits"));
            }
            (Some(r), Some(f), Some(m)) => {
                code.clear();
                let _ = write!(code, "{r}{sep}{f}{sep}{m}");
                out.append_value(&code);
            }
            _ => out.append_null(),
        }
    }
    Ok(out.finish())
}

/// The English 11-segment rules over R and F (B = 5), first match wins.
/// Together they cover all 25 R×F cells.
pub fn english11() -> Vec<SegmentRule> {
    let rule = |name: &str, r: [u32; 2], f: [u32; 2]| SegmentRule {
        name: name.to_string(),
        r: Some(ScoreCond::Range(r)),
        f: Some(ScoreCond::Range(f)),
        m: None,
    };
    vec![
        rule("Champions", [5, 5], [4, 5]),
        rule("Loyal", [3, 4], [4, 5]),
        rule("Potential Loyalist", [4, 5], [2, 3]),
        rule("New", [5, 5], [1, 1]),
        rule("Promising", [4, 4], [1, 1]),
        rule("Need Attention", [3, 3], [3, 3]),
        rule("About to Sleep", [3, 3], [1, 2]),
        rule("Cannot Lose Them", [1, 2], [5, 5]),
        rule("At Risk", [1, 2], [3, 4]),
        rule("Lost", [1, 1], [1, 1]),
        rule("Hibernating", [1, 2], [1, 2]),
    ]
}

/// The Chinese eight classes: R, F, M each above ("high") or not above the
/// population's mean score; a high R score means more recent.
pub fn cn8() -> Vec<SegmentRule> {
    use Relative::{High, Low};
    let rule = |name: &str, r, f, m| SegmentRule {
        name: name.to_string(),
        r: Some(ScoreCond::Relative(r)),
        f: Some(ScoreCond::Relative(f)),
        m: Some(ScoreCond::Relative(m)),
    };
    vec![
        rule("重要价值客户", High, High, High),
        rule("重要发展客户", High, Low, High),
        rule("重要保持客户", Low, High, High),
        rule("重要挽留客户", Low, Low, High),
        rule("一般价值客户", High, High, Low),
        rule("一般发展客户", High, Low, Low),
        rule("一般保持客户", Low, High, Low),
        rule("一般挽留客户", Low, Low, Low),
    ]
}

/// The rules the configuration selects.
pub fn rules(cfg: &RfmConfig) -> Vec<SegmentRule> {
    match cfg.segments {
        SegmentScheme::English11 => english11(),
        SegmentScheme::Cn8 => cn8(),
        SegmentScheme::Custom => cfg.rules.clone(),
    }
}

/// Label for scored customers that no rule matches.
pub const UNMATCHED: &str = "Other";

fn cond_expr(score: &str, c: &ScoreCond) -> Expr {
    match c {
        ScoreCond::Range([lo, hi]) => col(score)
            .gt_eq(lit(*lo as i32))
            .and(col(score).lt_eq(lit(*hi as i32))),
        ScoreCond::Relative(rel) => {
            let above = col(score)
                .cast(DataType::Float64)
                .gt(col(score).cast(DataType::Float64).mean());
            match rel {
                Relative::High => above,
                Relative::Low => above.not(),
            }
        }
    }
}

/// The segment of each scored customer: the first matching rule's name,
/// [`UNMATCHED`] when none matches, null when unscored.
pub fn segment_expr(rules: &[SegmentRule]) -> Expr {
    let mut cases = vec![(col("r_score").is_null(), None)];
    for rule in rules {
        let mut cond = lit(true);
        for (score, c) in [
            ("r_score", &rule.r),
            ("f_score", &rule.f),
            ("m_score", &rule.m),
        ] {
            if let Some(c) = c {
                cond = cond.and(cond_expr(score, c));
            }
        }
        cases.push((cond, Some(rule.name.clone())));
    }
    first_label(cases, Some(UNMATCHED.to_string()))
}

/// One score bin as applied: the measure's range among its customers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreBin {
    pub score: i32,
    pub customers: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The cut values actually applied per measure, and the empty scores.
#[derive(Debug, Clone, Serialize)]
pub struct RfmCuts {
    pub mode: String,
    pub bins: u32,
    pub recency_days: Vec<ScoreBin>,
    pub frequency: Vec<ScoreBin>,
    pub monetary: Vec<ScoreBin>,
    /// Scores (e.g. "f_score=2") that no customer received: collapsed bins.
    pub empty_scores: Vec<String>,
    /// Segments that came out empty.
    pub empty_segments: Vec<String>,
}

/// Reads the applied cuts back from scored customers.
pub fn applied_cuts(scored: LazyFrame, cfg: &RfmConfig, segments: &DataFrame) -> Result<RfmCuts> {
    let mut empty_scores = Vec::new();
    let mut per = Vec::new();
    for (score, measure, unit) in [
        ("r_score", "recency_days", 1.0),
        ("f_score", "frequency", 1.0),
        ("m_score", "monetary_cents", 100.0),
    ] {
        let g = scored
            .clone()
            .filter(col(score).is_not_null())
            .group_by([col(score)])
            .agg([
                len().cast(DataType::UInt64).alias("n"),
                col(measure).min().cast(DataType::Float64).alias("lo"),
                col(measure).max().cast(DataType::Float64).alias("hi"),
            ])
            .run()?;
        let mut bins = Vec::new();
        for s in 1..=cfg.bins as i32 {
            let mask = g.column(score)?.as_materialized_series().equal(s)?;
            let row = g.filter(&mask)?;
            if row.height() == 0 {
                empty_scores.push(format!("{score}={s}"));
                bins.push(ScoreBin {
                    score: s,
                    customers: 0,
                    min: None,
                    max: None,
                });
            } else {
                let get = |c: &str| -> Result<Option<f64>> {
                    Ok(row.column(c)?.f64()?.get(0).map(|x| x / unit))
                };
                bins.push(ScoreBin {
                    score: s,
                    customers: row.column("n")?.u64()?.get(0).unwrap_or(0),
                    min: get("lo")?,
                    max: get("hi")?,
                });
            }
        }
        per.push(bins);
    }
    let seg_names = segments.column("rfm_segment")?.str()?.clone();
    let seg_counts = segments.column("customers")?.cast(&DataType::UInt64)?;
    let empty_segments = seg_names
        .iter()
        .zip(seg_counts.u64()?.iter())
        .filter(|(_, n)| *n == Some(0))
        .filter_map(|(s, _)| s.map(str::to_string))
        .collect();
    let monetary = per.pop().unwrap_or_default();
    let frequency = per.pop().unwrap_or_default();
    let recency_days = per.pop().unwrap_or_default();
    Ok(RfmCuts {
        mode: format!("{:?}", cfg.mode).to_lowercase(),
        bins: cfg.bins,
        recency_days,
        frequency,
        monetary,
        empty_scores,
        empty_segments,
    })
}

/// `rfm_segments`: every configured segment (in rule order, then
/// [`UNMATCHED`] if used) with customers, share, revenue, revenue share and
/// mean measures, over in-scope customers.
pub fn segment_summary(scores: LazyFrame, rules: &[SegmentRule]) -> Result<DataFrame> {
    let mut names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    names.push(UNMATCHED.to_string());
    let mean = |c: &str| col(c).cast(DataType::Float64).mean();
    let extra = vec![
        mean("recency_days").alias("mean_recency_days"),
        mean("frequency").alias("mean_frequency"),
        mean_money(col("monetary_cents")).alias("mean_monetary"),
    ];
    // "Other" is listed only when some customer fell through every rule.
    let listed = col("rfm_segment")
        .neq(lit(UNMATCHED))
        .or(col("customers").gt(lit(0i64)));
    let in_scope = scores.filter(col("in_scope"));
    Ok(table::per_label(
        in_scope,
        "rfm_segment",
        &names,
        "revenue",
        extra,
        Some(listed),
    )?
    .select([
        col("rfm_segment"),
        col("customers"),
        col("customer_share"),
        col("revenue"),
        col("revenue_share"),
        col("mean_recency_days"),
        col("mean_frequency"),
        col("mean_monetary"),
    ])
    .run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: &[Option<i64>], bins: u32, higher: bool) -> Vec<Option<i32>> {
        let df = df!("v" => values).unwrap();
        df.lazy()
            .select([quantile_score(col("v"), bins, higher).alias("s")])
            .collect()
            .unwrap()
            .column("s")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn quantile_scores_follow_the_min_rank_formula() {
        // n = 10, B = 5: r = 1..10 → 1 + floor(5(r−1)/10) = 1,1,2,2,3,3,4,4,5,5.
        let v: Vec<Option<i64>> = (1..=10).map(Some).collect();
        assert_eq!(
            scores(&v, 5, true),
            [1, 1, 2, 2, 3, 3, 4, 4, 5, 5].map(Some).to_vec()
        );
    }

    #[test]
    fn ties_share_the_lower_rank_and_so_the_score() {
        // values 5,5,5,9: min ranks 1,1,1,4 → scores 1,1,1, 1+floor(15/4)=4.
        let v = [Some(5), Some(5), Some(5), Some(9)];
        assert_eq!(
            scores(&v, 5, true),
            vec![Some(1), Some(1), Some(1), Some(4)]
        );
    }

    #[test]
    fn all_tied_customers_all_score_one() {
        assert_eq!(scores(&[Some(7); 6], 5, true), vec![Some(1); 6]);
    }

    #[test]
    fn recency_ranks_descending_so_recent_scores_high() {
        // recency 0,10,10,50 → descending min ranks 4,2,2,1 → 4,2,2,1.
        let v = [Some(0), Some(10), Some(10), Some(50)];
        assert_eq!(
            scores(&v, 5, false),
            vec![Some(4), Some(2), Some(2), Some(1)]
        );
    }

    #[test]
    fn fewer_customers_than_bins_and_nulls() {
        // n = 2 (the null is not counted): ranks 1,2 → 1, 1+floor(5/2)=3.
        let v = [Some(1), None, Some(3)];
        assert_eq!(scores(&v, 5, true), vec![Some(1), None, Some(3)]);
        assert_eq!(scores(&[], 5, true), Vec::<Option<i32>>::new());
    }

    #[test]
    fn fixed_edges_bin_by_threshold() {
        let df = df!("rec" => [0i64, 30, 31, 365, 366], "f" => [1i64, 2, 3, 10, 11]).unwrap();
        let out = df
            .lazy()
            .select([
                fixed_score(col("rec"), &[30.0, 90.0, 180.0, 365.0], 5, false).alias("r"),
                fixed_score(col("f"), &[2.0, 3.0, 5.0, 10.0], 5, true).alias("f"),
            ])
            .collect()
            .unwrap();
        let r: Vec<_> = out
            .column("r")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let f: Vec<_> = out
            .column("f")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(r, vec![5, 5, 4, 2, 1]);
        assert_eq!(f, vec![1, 2, 3, 5, 5]);
    }

    #[test]
    fn rfm_codes_are_the_scores_digits_and_null_with_a_null_score() {
        let df = df!(
            "r_score" => [Some(5), Some(1), None, Some(10)],
            "f_score" => [Some(4), Some(1), Some(3), Some(2)],
            "m_score" => [Some(3), Some(5), Some(3), Some(11)],
        )
        .unwrap();
        let code = |bins: u32| -> Vec<Option<String>> {
            let out = df
                .clone()
                .lazy()
                .select([rfm_code(bins).alias("rfm_code")])
                .collect()
                .unwrap();
            let c = out.column("rfm_code").unwrap().str().unwrap().clone();
            c.iter().map(|v| v.map(str::to_string)).collect()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(code(5), [s("543"), s("115"), None, s("10211")]);
        assert_eq!(code(12), [s("5-4-3"), s("1-1-5"), None, s("10-2-11")]);
    }

    #[test]
    fn english11_covers_every_cell_and_first_match_wins() {
        let mut r = Vec::new();
        let mut f = Vec::new();
        for ri in 1..=5 {
            for fi in 1..=5 {
                r.push(ri);
                f.push(fi);
            }
        }
        let out = df!("r_score" => r, "f_score" => f.clone(), "m_score" => f)
            .unwrap()
            .lazy()
            .select([segment_expr(&english11()).alias("s")])
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
        assert!(!s.contains(&UNMATCHED));
        assert_eq!(s[0], "Lost"); // R1 F1
        assert_eq!(s[1], "Hibernating"); // R1 F2
        assert_eq!(s[4], "Cannot Lose Them"); // R1 F5
        assert_eq!(s[12], "Need Attention"); // R3 F3
        assert_eq!(s[20], "New"); // R5 F1
        assert_eq!(s[24], "Champions"); // R5 F5
    }

    #[test]
    fn cn8_compares_each_score_with_its_mean() {
        // Mean scores: r 3, f 3, m 3. Row 1 all above → 重要价值; row 2 r above,
        // f and m not → 一般发展; row 3 (3,3,3) equal to the mean is "low".
        let out = df!(
            "r_score" => [5, 4, 3, 1, 2],
            "f_score" => [5, 1, 3, 4, 2],
            "m_score" => [5, 1, 3, 4, 2],
        )
        .unwrap()
        .lazy()
        .select([segment_expr(&cn8()).alias("s")])
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
                "重要价值客户",
                "一般发展客户",
                "一般挽留客户",
                "重要保持客户",
                "一般挽留客户"
            ]
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn scored(values: &[i64], higher: bool) -> Vec<i32> {
        df!("v" => values)
            .unwrap()
            .lazy()
            .select([quantile_score(col("v"), 5, higher).alias("s")])
            .collect()
            .unwrap()
            .column("s")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .map(|s| s.unwrap())
            .collect()
    }

    proptest! {
        // Against the formula computed directly: the 'min' rank of v is 1
        // + the count of values scoring before it; nulls stay null.
        #[test]
        fn quantile_scores_are_the_min_rank_formula(
            values in proptest::collection::vec(proptest::option::weighted(0.8, -5i64..8), 0..80),
            bins in 1u32..11,
            higher: bool,
            wide: bool,
        ) {
            // Spread wide, the values are sorted rather than counted.
            let scale = if wide { 1_000_000_007 } else { 1 };
            let values: Vec<Option<i64>> = values.iter().map(|v| v.map(|v| v * scale)).collect();
            let n = values.iter().flatten().count() as u64;
            let expected: Vec<Option<i32>> = values
                .iter()
                .map(|v| {
                    v.map(|v| {
                        let before = values
                            .iter()
                            .flatten()
                            .filter(|&&w| if higher { w < v } else { w > v })
                            .count() as u64;
                        (1 + before * bins as u64 / n) as i32
                    })
                })
                .collect();
            let got = quantile_scores(&Column::new("v".into(), &values), bins, higher).unwrap();
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), expected);
        }

        // Few distinct values, so ties are common.
        #[test]
        fn scores_are_monotone_tie_safe_and_order_free(
            values in proptest::collection::vec(0i64..12, 1..60),
            rotate in 0usize..60,
        ) {
            for higher in [true, false] {
                let s = scored(&values, higher);
                for i in 0..values.len() {
                    prop_assert!((1..=5).contains(&s[i]));
                    for j in 0..values.len() {
                        if values[i] == values[j] {
                            prop_assert_eq!(s[i], s[j]);
                        }
                        let better = if higher { values[i] < values[j] } else { values[i] > values[j] };
                        if better {
                            prop_assert!(s[i] <= s[j]);
                        }
                    }
                }
                // Any reordering of the rows gives each value the same score.
                let mut moved = values.clone();
                moved.rotate_left(rotate % values.len());
                moved.reverse();
                let s2 = scored(&moved, higher);
                for (v, sc) in moved.iter().zip(&s2) {
                    let k = values.iter().position(|x| x == v).unwrap();
                    prop_assert_eq!(*sc, s[k]);
                }
            }
        }
    }
}
