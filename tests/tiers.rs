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

/// A text attribute (a dealer level) scored through `points_by_value`,
/// passed through to `customer_scores` and usable as a churn dimension; a
/// value without points stops the run with exit 2, naming key and value.
#[test]
fn text_attributes_score_through_their_mapping_and_unmapped_values_are_refused() {
    let tmp = TempDir::new("textattr");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let levels = ["一级", "二级", "三级", ""];
    let customers = std::fs::read_to_string(root.join("sample_data/customers.csv")).unwrap();
    let mut lines = customers.lines();
    let mut text = format!("{},level\n", lines.next().unwrap());
    let mut want = std::collections::BTreeMap::new();
    for (i, l) in lines.enumerate() {
        let level = levels[i % levels.len()];
        text.push_str(&format!("{l},{level}\n"));
        want.insert(l.split(',').next().unwrap().to_string(), level);
    }
    let cust = tmp.write("customers.csv", &text);
    let pipeline = |customers: &str| {
        format!(
            r#"as_of = "2010-12-31"
[inputs.transactions]
path = "{}"
[inputs.customers]
path = "{customers}"
attributes = ["star_points"]
text_attributes = ["level"]
[churn]
dimensions = ["region", "level"]
[[scorecards]]
name = "dealer"
default_tier = "其他"
tiers = [{{ label = "一级商", min = {{ size = 30 }} }}]
[[scorecards.criteria]]
name = "level"
dimension = "size"
measure = "level"
points_by_value = {{ "一级" = 30, "二级" = 20, "三级" = 10 }}
"#,
            root.join("sample_data/transactions.csv").display()
        )
    };
    let p = tmp.write("p.toml", &pipeline(&cust));
    let out = tmp.join("out");
    ok(&["run", "--config", &p, "--out", out.to_str().unwrap()]);
    let snap = out.join("snapshot=2010-12-31");
    let df = read_parquet(&snap.join("customer_scores.parquet"));
    let ids = strs(&df, "customer_id");
    let level = strs(&df, "level");
    let pts = floats(&df, "dealer_size_points");
    let tier = strs(&df, "dealer_tier");
    assert_eq!(df.height(), want.len());
    for i in 0..df.height() {
        let w = want[ids[i].as_deref().unwrap()];
        // An empty cell is a missing value: null, 0 points.
        let expected_level = (!w.is_empty()).then(|| w.to_string());
        assert_eq!(level[i], expected_level, "row {i}");
        let p = match w {
            "一级" => 30.0,
            "二级" => 20.0,
            "三级" => 10.0,
            _ => 0.0,
        };
        assert_eq!(pts[i], Some(p), "row {i}");
        let t = if p >= 30.0 { "一级商" } else { "其他" };
        assert_eq!(tier[i].as_deref(), Some(t), "row {i}");
    }
    let churn = read_parquet(&snap.join("churn_summary.parquet"));
    let dims = strs(&churn, "dimension");
    let members = strs(&churn, "member");
    let level_members: std::collections::BTreeSet<_> = (0..churn.height())
        .filter(|&i| dims[i].as_deref() == Some("level"))
        .filter_map(|i| members[i].clone())
        .collect();
    assert_eq!(
        level_members,
        ["一级", "三级", "二级"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );

    // Two customers at a level the mapping lacks: refused, nothing published.
    let mut bad = text.clone();
    let mut n = 0;
    bad = bad
        .lines()
        .map(|l| {
            if n < 2 && l.ends_with(",三级") {
                n += 1;
                format!("{},四级", l.trim_end_matches(",三级"))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cust2 = tmp.write("customers2.csv", &bad);
    let p2 = tmp.write("p2.toml", &pipeline(&cust2));
    let out2 = tmp.join("out2");
    let o = tiering(&["run", "--config", &p2, "--out", out2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("scorecards[dealer].criteria[level].points_by_value")
            && err.contains("'四级' (2 customers)")
            && err.contains("mapped: 一级, 三级, 二级"),
        "{err}"
    );
    assert!(!out2.join("snapshot=2010-12-31").exists());
}
