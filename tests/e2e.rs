//! End to end: generated data → `tiering run` → published tables, checked
//! against an independent plain-Rust computation of the same definitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;

use crate::common::*;

const AS_OF: &str = "2010-12-31";

/// One customer's measures computed straight from the CSV text.
#[derive(Debug, Default, Clone)]
struct Expected {
    purchase_days: Vec<NaiveDate>,
    any_days: Vec<NaiveDate>,
    frequency: i64,
    monetary_cents: i64,
    margin_cents: i64,
}

fn cents(s: &str) -> i64 {
    let neg = s.starts_with('-');
    let s = s.trim_start_matches('-');
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    let v = a.parse::<i64>().unwrap() * 100 + format!("{b:0<2}")[..2].parse::<i64>().unwrap();
    if neg { -v } else { v }
}

/// Parses the generator's transactions.csv (no quoting needed: it writes none).
fn expected(dir: &Path, as_of: NaiveDate) -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(dir.join("transactions.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (ci, ti, ai, mi) = (idx("customer_id"), idx("ts"), idx("amount"), idx("margin"));
    let mut m: BTreeMap<String, Expected> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let day = NaiveDate::parse_from_str(f[ti], "%Y-%m-%d").unwrap();
        if day > as_of {
            continue;
        }
        let e = m.entry(f[ci].to_string()).or_default();
        let amount = cents(f[ai]);
        e.any_days.push(day);
        if amount > 0 {
            e.purchase_days.push(day);
            e.frequency += 1;
        }
        e.monetary_cents += amount;
        e.margin_cents += cents(f[mi]);
    }
    m
}

/// score = 1 + floor(B(r−1)/n) with r = 1 + number of strictly better-placed values.
fn score(values: &[i64], v: i64, higher_is_better: bool) -> i64 {
    let before = values
        .iter()
        .filter(|u| if higher_is_better { **u < v } else { **u > v })
        .count() as i64;
    1 + 5 * before / values.len() as i64
}

fn english11(r: i64, f: i64) -> &'static str {
    match (r, f) {
        (5, 4..=5) => "Champions",
        (3..=4, 4..=5) => "Loyal",
        (4..=5, 2..=3) => "Potential Loyalist",
        (5, 1) => "New",
        (4, 1) => "Promising",
        (3, 3) => "Need Attention",
        (3, 1..=2) => "About to Sleep",
        (1..=2, 5) => "Cannot Lose Them",
        (1..=2, 3..=4) => "At Risk",
        (1, 1) => "Lost",
        _ => "Hibernating",
    }
}

fn run_generated(tmp: &TempDir, customers: usize, txns: usize, seed: u64) -> std::path::PathBuf {
    let data = tmp.join("data");
    generate(&data, customers, txns, seed);
    let out = tmp.join("out");
    ok(&[
        "run",
        "--transactions",
        data.join("transactions.csv").to_str().unwrap(),
        "--customers",
        data.join("customers.csv").to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--out",
        out.to_str().unwrap(),
    ]);
    out.join(format!("snapshot={AS_OF}"))
}

#[test]
fn scores_match_an_independent_computation() {
    let tmp = TempDir::new("e2e");
    let snap = run_generated(&tmp, 250, 3000, 11);
    let as_of = NaiveDate::parse_from_str(AS_OF, "%Y-%m-%d").unwrap();
    let exp = expected(&tmp.join("data"), as_of);
    let df = read_parquet(&snap.join("customer_scores.parquet"));

    let recency: BTreeMap<&String, i64> = exp
        .iter()
        .map(|(k, e)| {
            let last = e
                .purchase_days
                .iter()
                .max()
                .or(e.any_days.iter().max())
                .unwrap();
            (k, (as_of - *last).num_days())
        })
        .collect();
    let rec_all: Vec<i64> = recency.values().copied().collect();
    let freq_all: Vec<i64> = exp.values().map(|e| e.frequency).collect();
    let mon_all: Vec<i64> = exp.values().map(|e| e.monetary_cents).collect();
    let con_all: Vec<i64> = exp.values().map(|e| e.margin_cents).collect();
    let n = exp.len() as f64;

    let ids = strs(&df, "customer_id");
    let (r, f, m) = (
        ints(&df, "r_score"),
        ints(&df, "f_score"),
        ints(&df, "m_score"),
    );
    let (rec, freq) = (ints(&df, "recency_days"), ints(&df, "frequency"));
    let (mon, con) = (floats(&df, "monetary"), floats(&df, "contribution"));
    let (tier, seg) = (strs(&df, "pyramid_tier"), strs(&df, "rfm_segment"));
    let (churn, code) = (strs(&df, "churn_status"), strs(&df, "rfm_code"));
    let mut checked = 0;
    for i in 0..df.height() {
        let id = ids[i].clone().unwrap();
        let Some(e) = exp.get(&id) else {
            // A customer with no transaction: listed once, unscored.
            assert_eq!(r[i], None, "{id}");
            assert_eq!(churn[i].as_deref(), Some("no_purchase"));
            continue;
        };
        let want_r = score(&rec_all, recency[&id], false);
        let want_f = score(&freq_all, e.frequency, true);
        let want_m = score(&mon_all, e.monetary_cents, true);
        assert_eq!(rec[i], Some(recency[&id]), "{id} recency");
        assert_eq!(freq[i], Some(e.frequency), "{id} frequency");
        assert_eq!(
            mon[i].map(|x| (x * 100.0).round() as i64),
            Some(e.monetary_cents),
            "{id}"
        );
        assert_eq!(
            (r[i], f[i], m[i]),
            (Some(want_r), Some(want_f), Some(want_m)),
            "{id}"
        );
        assert_eq!(code[i], Some(format!("{want_r}{want_f}{want_m}")));
        assert_eq!(seg[i].as_deref(), Some(english11(want_r, want_f)), "{id}");
        let c = e.margin_cents;
        assert_eq!(con[i].map(|x| (x * 100.0).round() as i64), Some(c), "{id}");
        let above = con_all.iter().filter(|u| **u > c).count() as f64;
        let want_tier = if c <= 0 {
            "D"
        } else if above * 100.0 < 1.0 * n {
            "A"
        } else if above * 100.0 < 5.0 * n {
            "B"
        } else if above * 100.0 < 20.0 * n {
            "C"
        } else {
            "D"
        };
        assert_eq!(tier[i].as_deref(), Some(want_tier), "{id} tier");
        let want_churn = match recency[&id] {
            0..=90 => "active",
            91..=180 => "sleeping",
            _ => "lost",
        };
        assert_eq!(churn[i].as_deref(), Some(want_churn), "{id}");
        checked += 1;
    }
    assert_eq!(
        checked,
        exp.len(),
        "every customer with transactions is scored"
    );
    // Every customer of either file appears exactly once.
    let customers_file = std::fs::read_to_string(tmp.join("data/customers.csv")).unwrap();
    let mut all: BTreeSet<String> = customers_file
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    all.extend(exp.keys().cloned());
    let got: Vec<String> = ids.into_iter().flatten().collect();
    assert_eq!(got, all.into_iter().collect::<Vec<_>>());

    // The pyramid summary: the quantity-vs-contribution view.
    let p = read_parquet(&snap.join("pyramid.parquet"));
    let total: i64 = con_all.iter().sum();
    let tiers = strs(&p, "pyramid_tier");
    let counts = ints(&p, "customers");
    let shares = floats(&p, "contribution_share");
    for (j, t) in tiers.iter().enumerate() {
        let t = t.as_deref().unwrap();
        let members: Vec<usize> = (0..df.height())
            .filter(|i| tier[*i].as_deref() == Some(t))
            .collect();
        assert_eq!(counts[j], Some(members.len() as i64), "tier {t}");
        let sum: i64 = members
            .iter()
            .map(|i| exp[ids_at(&df, *i).as_str()].margin_cents)
            .sum();
        let want = sum as f64 / total as f64;
        assert!(
            (shares[j].unwrap() - want).abs() < 1e-9,
            "tier {t}: {:?} vs {want}",
            shares[j]
        );
    }
}

fn ids_at(df: &polars::prelude::DataFrame, i: usize) -> String {
    strs(df, "customer_id")[i].clone().unwrap()
}

#[test]
fn rerun_is_byte_identical_and_csv_matches_parquet() {
    let tmp = TempDir::new("det");
    let a = run_generated(&tmp, 120, 1500, 5);
    let b_out = tmp.join("out2");
    let data = tmp.join("data");
    ok(&[
        "run",
        "--transactions",
        data.join("transactions.csv").to_str().unwrap(),
        "--customers",
        data.join("customers.csv").to_str().unwrap(),
        "--as-of",
        AS_OF,
        "--out",
        b_out.to_str().unwrap(),
    ]);
    let b = b_out.join(format!("snapshot={AS_OF}"));
    for t in ["customer_scores", "rfm_segments", "pyramid", "rejects"] {
        for ext in ["parquet", "csv"] {
            let name = format!("{t}.{ext}");
            assert_eq!(
                std::fs::read(a.join(&name)).unwrap(),
                std::fs::read(b.join(&name)).unwrap(),
                "{name} differs between identical runs"
            );
        }
    }
    let pq = read_parquet(&a.join("customer_scores.parquet"));
    let csv = read_csv(&a.join("customer_scores.csv"));
    assert_eq!(pq.height(), csv.height());
    for c in [
        "customer_id",
        "region",
        "rfm_code",
        "pyramid_tier",
        "churn_status",
    ] {
        assert_eq!(strs(&pq, c), strs(&csv, c), "{c}");
    }
    assert_eq!(floats(&pq, "monetary"), floats(&csv, "monetary"));
    assert!(a.join("_SUCCESS").exists());
}

#[test]
fn sample_pipeline_publishes_a_reconciled_snapshot() {
    let tmp = TempDir::new("sample");
    let snap = run_pipeline(&tmp, "sample.toml");
    let scores = read_parquet(&snap.join("customer_scores.parquet"));
    let customers = std::fs::read_to_string("sample_data/customers.csv").unwrap();
    assert_eq!(scores.height(), customers.lines().count() - 1);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["as_of"], "2010-12-31");
    let txn_lines = std::fs::read_to_string("sample_data/transactions.csv")
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(
        manifest["inputs"]["transactions"]["rows_read"],
        txn_lines as u64
    );
    // Segment and pyramid tables count the same population as customer_scores.
    let in_scope = scores
        .column("in_scope")
        .unwrap()
        .bool()
        .unwrap()
        .sum()
        .unwrap() as i64;
    for t in ["rfm_segments", "pyramid"] {
        let s = read_parquet(&snap.join(format!("{t}.parquet")));
        let total: i64 = ints(&s, "customers").into_iter().flatten().sum();
        assert_eq!(total, in_scope, "{t}");
    }
    // The sample has Chinese regions, so the CSV carries a BOM for Excel.
    let csv = std::fs::read(snap.join("customer_scores.csv")).unwrap();
    assert_eq!(&csv[..3], b"\xEF\xBB\xBF");
}

#[test]
fn as_of_excludes_later_data_and_lists_it() {
    let tmp = TempDir::new("asof");
    let data = tmp.join("data");
    generate(&data, 80, 1000, 3);
    let out = tmp.join("out");
    ok(&[
        "run",
        "--transactions",
        data.join("transactions.csv").to_str().unwrap(),
        "--customers",
        data.join("customers.csv").to_str().unwrap(),
        "--as-of",
        "2010-06-30",
        "--out",
        out.to_str().unwrap(),
    ]);
    let snap = out.join("snapshot=2010-06-30");
    let as_of = NaiveDate::from_ymd_opt(2010, 6, 30).unwrap();
    let text = std::fs::read_to_string(data.join("transactions.csv")).unwrap();
    let later = text
        .lines()
        .skip(1)
        .filter(|l| {
            NaiveDate::parse_from_str(l.split(',').nth(2).unwrap(), "%Y-%m-%d").unwrap() > as_of
        })
        .count();
    let rejects = read_parquet(&snap.join("rejects.parquet"));
    let after = strs(&rejects, "reason")
        .iter()
        .filter(|r| r.as_deref() == Some("after as_of"))
        .count();
    assert_eq!(after, later);
    let scores = read_parquet(&snap.join("customer_scores.parquet"));
    let exp = expected(&data, as_of);
    let freq: i64 = ints(&scores, "frequency").into_iter().flatten().sum();
    assert_eq!(freq, exp.values().map(|e| e.frequency).sum::<i64>());
}
