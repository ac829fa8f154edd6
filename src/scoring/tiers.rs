//! Threshold tiers (absolute cut-offs on one measure) and points
//! scorecards (criteria → dimension totals → tier grid), SPEC §5 and the
//! seeds' dealer scheme. Computed for every customer, since attributes such
//! as star points may exist without transactions.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::config::{Band, Scorecard, ThresholdScheme};
use crate::error::{Error, Result};
use crate::scoring::first_label;

/// A measure column as Float64, checked to exist in the base.
fn measure(name: &str, available: &[String], key: &str) -> Result<Expr> {
    if available.iter().any(|a| a == name) {
        Ok(col(name).cast(DataType::Float64))
    } else {
        Err(Error::invalid(
            key,
            format!(
                "unknown measure '{name}' (available: {})",
                available.join(", ")
            ),
        ))
    }
}

/// `<name>_value` and `<name>_tier`: the first level (from the top) whose
/// `min` the value reaches; `below` when none is or the value is null.
pub fn threshold_exprs(t: &ThresholdScheme, available: &[String]) -> Result<Vec<Expr>> {
    let v = measure(
        &t.measure,
        available,
        &format!("threshold_tiers[{}].measure", t.name),
    )?;
    let tier = first_label(
        t.levels
            .iter()
            .map(|level| (v.clone().gt_eq(lit(level.min)), Some(level.label.clone())))
            .collect(),
        Some(t.below.clone()),
    );
    Ok(vec![
        v.alias(format!("{}_value", t.name)),
        tier.alias(format!("{}_tier", t.name)),
    ])
}

/// Points of one criterion: the first band containing the value; else 0.
pub fn band_points(value: Expr, bands: &[Band]) -> Expr {
    let mut e = lit(0.0);
    for b in bands.iter().rev() {
        let mut cond = value.clone().is_not_null();
        if let Some(lo) = b.min {
            cond = cond.and(value.clone().gt_eq(lit(lo)));
        }
        if let Some(hi) = b.max {
            cond = cond.and(value.clone().lt_eq(lit(hi)));
        }
        e = when(cond).then(lit(b.points)).otherwise(e);
    }
    e
}

/// The scorecard's dimensions, in first-seen order.
pub fn dimensions(s: &Scorecard) -> Vec<String> {
    let mut dims: Vec<String> = Vec::new();
    for c in &s.criteria {
        if !dims.contains(&c.dimension) {
            dims.push(c.dimension.clone());
        }
    }
    dims
}

/// Column name of a dimension's points.
pub fn dimension_column(s: &Scorecard, dim: &str) -> String {
    format!("{}_{dim}_points", s.name)
}

/// `<name>_<dimension>_points` per dimension, then `<name>_points` and
/// `<name>_tier` (two `with_columns` steps: totals need the dimensions).
pub fn scorecard_exprs(s: &Scorecard, available: &[String]) -> Result<(Vec<Expr>, Vec<Expr>)> {
    let mut dim_exprs = Vec::new();
    for dim in dimensions(s) {
        let mut total = lit(0.0);
        for c in s.criteria.iter().filter(|c| c.dimension == dim) {
            let key = format!("scorecards[{}].criteria[{}].measure", s.name, c.name);
            let points = if c.points_by_value.is_empty() {
                band_points(measure(&c.measure, available, &key)?, &c.bands)
            } else {
                // A text attribute: checked to exist like a measure, kept as text.
                measure(&c.measure, available, &key).map(drop)?;
                value_points(col(c.measure.as_str()), &c.points_by_value)
            };
            total = total + points;
        }
        dim_exprs.push(total.alias(dimension_column(s, &dim)));
    }
    let mut sum = lit(0.0);
    for dim in dimensions(s) {
        sum = sum + col(dimension_column(s, &dim));
    }
    let mut cases = Vec::new();
    for t in &s.tiers {
        let mut cond = lit(true);
        for (dim, min) in &t.min {
            cond = cond.and(col(dimension_column(s, dim)).gt_eq(lit(*min)));
        }
        cases.push((cond, Some(t.label.clone())));
    }
    let tier = first_label(cases, Some(s.default_tier.clone()));
    Ok((
        dim_exprs,
        vec![
            sum.alias(format!("{}_points", s.name)),
            tier.alias(format!("{}_tier", s.name)),
        ],
    ))
}

/// Points of a text criterion: the value's points; a null value gives 0
/// (values without points are refused at ingest, see
/// [`crate::ingest::unmapped_values`]).
pub fn value_points(value: Expr, points: &BTreeMap<String, f64>) -> Expr {
    let mut e = lit(0.0);
    for (v, p) in points {
        e = when(value.clone().eq(lit(v.as_str())))
            .then(lit(*p))
            .otherwise(e);
    }
    e
}

/// Ordered labels of a threshold scheme, best first.
pub fn threshold_labels(t: &ThresholdScheme) -> Vec<String> {
    let mut v: Vec<String> = t.levels.iter().map(|l| l.label.clone()).collect();
    v.push(t.below.clone());
    v
}

/// Ordered labels of a scorecard, best first.
/// A label may head several rules (alternatives); it is listed once.
pub fn scorecard_labels(s: &Scorecard) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in s.tiers.iter().map(|t| &t.label).chain([&s.default_tier]) {
        if !v.contains(l) {
            v.push(l.clone());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Criterion, GridTier, Level};

    fn avail(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn strs(df: &DataFrame, c: &str) -> Vec<String> {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect()
    }

    #[test]
    fn star_levels_take_the_first_level_reached() {
        let t = ThresholdScheme {
            name: "star".into(),
            measure: "points".into(),
            levels: vec![
                Level {
                    label: "7".into(),
                    min: 80000.0,
                },
                Level {
                    label: "6".into(),
                    min: 10000.0,
                },
                Level {
                    label: "1".into(),
                    min: 1.0,
                },
            ],
            below: "none".into(),
        };
        let out = df!("points" => [Some(80000.0), Some(79999.99), Some(10000.0), Some(0.5), None])
            .unwrap()
            .lazy()
            .select(threshold_exprs(&t, &avail(&["points"])).unwrap())
            .collect()
            .unwrap();
        assert_eq!(strs(&out, "star_tier"), vec!["7", "6", "6", "none", "none"]);
    }

    #[test]
    fn unknown_measure_names_the_key_and_the_choices() {
        let t = ThresholdScheme {
            name: "star".into(),
            measure: "pionts".into(),
            levels: vec![Level {
                label: "x".into(),
                min: 1.0,
            }],
            below: "none".into(),
        };
        let err = threshold_exprs(&t, &avail(&["points"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("threshold_tiers[star].measure") && err.contains("points"),
            "{err}"
        );
    }

    #[test]
    fn scorecard_sums_band_points_per_dimension_and_applies_the_grid() {
        let crit = |name: &str, dim: &str, m: &str, bands: Vec<Band>| Criterion {
            name: name.into(),
            dimension: dim.into(),
            measure: m.into(),
            bands,
            points_by_value: Default::default(),
        };
        let band = |min: Option<f64>, max: Option<f64>, points: f64| Band { min, max, points };
        let s = Scorecard {
            name: "dealer".into(),
            criteria: vec![
                crit(
                    "service",
                    "loyalty",
                    "service",
                    vec![band(Some(4.0), None, 3.0), band(Some(1.0), None, 1.0)],
                ),
                crit(
                    "complaints",
                    "loyalty",
                    "open",
                    vec![band(None, Some(0.0), 2.0)],
                ),
                crit(
                    "spend",
                    "economic",
                    "spend",
                    vec![band(Some(100.0), None, 5.0)],
                ),
            ],
            tiers: vec![
                GridTier {
                    label: "优质".into(),
                    min: [("loyalty".to_string(), 5.0), ("economic".to_string(), 5.0)].into(),
                },
                GridTier {
                    label: "潜力".into(),
                    min: [("loyalty".to_string(), 3.0)].into(),
                },
            ],
            default_tier: "一般".into(),
        };
        let (dims, totals) = scorecard_exprs(&s, &avail(&["service", "open", "spend"])).unwrap();
        let out = df!(
            "service" => [5i64, 1, 0, 4],
            "open" => [0i64, 0, 2, 1],
            "spend" => [Some(150.0), Some(200.0), Some(10.0), None],
        )
        .unwrap()
        .lazy()
        .with_columns(dims)
        .with_columns(totals)
        .collect()
        .unwrap();
        // Row 1: loyalty 3+2=5, economic 5 → 优质. Row 2: loyalty 1+2=3 → 潜力.
        // Row 3: loyalty 0 → 一般. Row 4: loyalty 3, spend null → 0 → 潜力.
        let pts: Vec<f64> = crate::testing::f64s(&out, "dealer_points");
        assert_eq!(pts, vec![10.0, 8.0, 0.0, 3.0]);
        assert_eq!(
            strs(&out, "dealer_tier"),
            vec!["优质", "潜力", "一般", "潜力"]
        );
    }

    #[test]
    fn text_values_earn_their_mapped_points_and_null_earns_none() {
        let points: BTreeMap<String, f64> =
            [("一级".to_string(), 30.0), ("二级".to_string(), 20.0)].into();
        let df = df!("level" => [Some("二级"), None, Some("一级")])
            .unwrap()
            .lazy()
            .select([value_points(col("level"), &points).alias("p")])
            .collect()
            .unwrap();
        let p: Vec<f64> = crate::testing::f64s(&df, "p");
        assert_eq!(p, [20.0, 0.0, 30.0]);
    }
}
