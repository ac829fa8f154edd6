//! Threshold and scorecard tiers on the shipped pipelines, recomputed in
//! plain Rust from the published measure columns.

use crate::common::*;
use tiering::config::Config;

fn points(value: Option<f64>, bands: &[tiering::config::Band]) -> f64 {
    let Some(v) = value else { return 0.0 };
    bands
        .iter()
        .find(|b| b.min.is_none_or(|lo| v >= lo) && b.max.is_none_or(|hi| v <= hi))
        .map_or(0.0, |b| b.points)
}

#[test]
fn dealer_scorecard_points_and_tiers_match_a_recomputation() {
    let tmp = TempDir::new("dealer");
    let snap = run_pipeline(&tmp, "dealer_scorecard.toml");
    let df = read_parquet(&snap.join("customer_scores.parquet"));
    let cfg = Config::load(std::path::Path::new("pipelines/dealer_scorecard.toml")).unwrap();
    let card = &cfg.scorecards[0];
    let n = df.height();
    let mut loyalty = vec![0.0; n];
    let mut economic = vec![0.0; n];
    for c in &card.criteria {
        let values = floats(&df, &c.measure);
        for i in 0..n {
            let p = points(values[i], &c.bands);
            match c.dimension.as_str() {
                "loyalty" => loyalty[i] += p,
                _ => economic[i] += p,
            }
        }
    }
    let got_l = floats(&df, "dealer_loyalty_points");
    let got_e = floats(&df, "dealer_economic_points");
    let tiers = strs(&df, "dealer_tier");
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..n {
        assert_eq!(got_l[i], Some(loyalty[i]), "row {i}");
        assert_eq!(got_e[i], Some(economic[i]), "row {i}");
        let want = if loyalty[i] >= 6.0 && economic[i] >= 7.0 {
            "优质"
        } else if (loyalty[i] >= 4.0 && economic[i] >= 4.0) || economic[i] >= 7.0 {
            "潜力"
        } else {
            "一般"
        };
        assert_eq!(tiers[i].as_deref(), Some(want), "row {i}");
        *counts.entry(want).or_insert(0i64) += 1;
    }
    // tier_summary agrees with the per-customer tiers.
    let ts = read_parquet(&snap.join("tier_summary.parquet"));
    let schemes = strs(&ts, "scheme");
    let labels = strs(&ts, "tier");
    let customers = ints(&ts, "customers");
    for i in 0..ts.height() {
        if schemes[i].as_deref() == Some("dealer") {
            let l = labels[i].clone().unwrap();
            assert_eq!(
                customers[i],
                Some(*counts.get(l.as_str()).unwrap_or(&0)),
                "{l}"
            );
        }
    }
}

#[test]
fn star_levels_follow_the_bank_thresholds() {
    let tmp = TempDir::new("star");
    let snap = run_pipeline(&tmp, "sample.toml");
    let df = read_parquet(&snap.join("customer_scores.parquet"));
    let pts = floats(&df, "star_points");
    let tiers = strs(&df, "star_tier");
    for i in 0..df.height() {
        let p = pts[i].unwrap();
        let want = match p {
            x if x >= 80000.0 => "七星级",
            x if x >= 10000.0 => "六星级",
            x if x >= 2000.0 => "五星级",
            x if x >= 500.0 => "四星级",
            x if x >= 50.0 => "三星级",
            x if x > 0.0 => "准星级",
            _ => "未评级",
        };
        assert_eq!(tiers[i].as_deref(), Some(want), "star_points {p}");
    }
    assert_eq!(floats(&df, "star_value"), pts);
}
