//! Year-over-year concentration on a hand-worked fixture: three tiers (a
//! threshold scheme on a fixed attribute, so tiers do not move with the
//! date), four regions, region W absent in 2009, k = 2.

use crate::common::*;

// Tiers from `pts`: ≥ 100 优质, ≥ 50 潜力, else 一般.
const CUSTOMERS: &str = "customer_id,region,industry,pts
c1,N,x,150
c2,N,x,60
c3,S,x,10
c4,S,x,10
c5,E,x,70
c6,W,x,120
c7,W,x,5
c8,N,x,1
";

// 2009 buyers: c1 N 优质, c2 N 潜力, c3 S 一般, c4 S 一般, c5 E 潜力.
// 2010 buyers: c1 N 优质 (twice: 100 + 50), c3 S 一般, c5 E 潜力,
//              c6 W 优质, c7 W 一般, c8 N 一般. c2 and c4 did not buy.
const TXNS: &str = "customer_id,txn_id,ts,amount
c1,t1,2009-03-01,100.00
c2,t2,2009-04-01,100.00
c3,t3,2009-05-01,100.00
c4,t4,2009-06-01,100.00
c5,t5,2009-07-01,100.00
c1,t6,2010-03-01,100.00
c1,t7,2010-04-01,50.00
c3,t8,2010-05-01,100.00
c5,t9,2010-06-01,100.00
c6,t10,2010-07-01,100.00
c7,t11,2010-08-01,100.00
c8,t12,2010-09-01,100.00
";

const PIPELINE: &str = r#"
as_of = "2010-12-31"
[inputs.transactions]
path = "t.csv"
[inputs.customers]
path = "c.csv"
attributes = ["pts"]
[[threshold_tiers]]
name = "grade"
measure = "pts"
below = "一般"
levels = [{ label = "优质", min = 100 }, { label = "潜力", min = 50 }]
[concentration]
tier = "grade"
dimensions = ["region"]
years = 2
top_k = 2
"#;

/// Hand-worked customers per member, in member order E, N, S, W.
fn expected_counts(year: i32, tier: &str) -> [i64; 4] {
    match (year, tier) {
        (2009, "优质") => [0, 1, 0, 0],
        (2009, "潜力") => [1, 1, 0, 0],
        (2009, "一般") => [0, 0, 2, 0],
        (2009, "ALL") => [1, 2, 2, 0],
        (2010, "优质") => [0, 1, 0, 1],
        (2010, "潜力") => [1, 0, 0, 0],
        (2010, "一般") => [0, 1, 1, 1],
        (2010, "ALL") => [1, 2, 1, 2],
        _ => unreachable!(),
    }
}

/// Hand-worked HHI (Σ (100·share)²) and CR-2 per year and tier.
fn expected_hhi_cr(year: i32, tier: &str) -> (f64, f64) {
    match (year, tier) {
        (2009, "优质") => (10000.0, 1.0),
        (2009, "潜力") => (5000.0, 1.0),
        (2009, "一般") => (10000.0, 1.0),
        // shares .4 .4 .2
        (2009, "ALL") => (3600.0, 0.8),
        (2010, "优质") => (5000.0, 1.0),
        (2010, "潜力") => (10000.0, 1.0),
        // three thirds
        (2010, "一般") => (10000.0 / 3.0, 2.0 / 3.0),
        // shares 1/6, 1/3, 1/6, 1/3
        (2010, "ALL") => (2.0 * 10000.0 / 36.0 + 2.0 * 10000.0 / 9.0, 2.0 / 3.0),
        _ => unreachable!(),
    }
}

#[test]
fn concentration_numbers_match_the_hand_worked_fixture() {
    let tmp = TempDir::new("yoy");
    tmp.write("c.csv", CUSTOMERS);
    tmp.write("t.csv", TXNS);
    let p = tmp.write("p.toml", PIPELINE);
    let out = tmp.join("out");
    ok(&["run", "--config", &p, "--out", out.to_str().unwrap()]);
    let df = read_parquet(&out.join("snapshot=2010-12-31/concentration_region.parquet"));
    let members = ["E", "N", "S", "W"];
    let tiers = ["优质", "潜力", "一般", "ALL"];
    assert_eq!(df.height(), 2 * tiers.len() * members.len());

    let year = ints(&df, "year");
    let region = strs(&df, "region");
    let tier = strs(&df, "tier");
    let customers = ints(&df, "customers");
    let prev = ints(&df, "customers_prev");
    let change = ints(&df, "change");
    let growth = floats(&df, "growth_pct");
    let col_share = floats(&df, "column_share");
    let row_share = floats(&df, "row_share");
    let share_pts = floats(&df, "share_change_pts");
    let revenue = floats(&df, "revenue");
    let rank = ints(&df, "member_rank");
    let hhi = floats(&df, "hhi");
    let cr = floats(&df, "cr_k");
    let close = |a: Option<f64>, b: Option<f64>, what: &str| match (a, b) {
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{what}: {x} vs {y}"),
        _ => assert_eq!(a, b, "{what}"),
    };

    for i in 0..df.height() {
        let (y, t) = (year[i].unwrap() as i32, tier[i].clone().unwrap());
        let m = members
            .iter()
            .position(|x| Some(*x) == region[i].as_deref())
            .unwrap();
        let what = format!("{y} {t} {}", members[m]);
        let counts = expected_counts(y, &t);
        let before = if y == 2010 {
            expected_counts(2009, &t)[m]
        } else {
            0
        };
        let total: i64 = counts.iter().sum();
        let member_total = expected_counts(y, "ALL")[m];
        assert_eq!(customers[i], Some(counts[m]), "{what}");
        assert_eq!(prev[i], Some(before), "{what}");
        assert_eq!(change[i], Some(counts[m] - before), "{what}");
        let g = (before > 0).then(|| (counts[m] - before) as f64 * 100.0 / before as f64);
        close(growth[i], g, &format!("growth {what}"));
        let cs = counts[m] as f64 / total as f64;
        close(col_share[i], Some(cs), &format!("column share {what}"));
        let rs = (member_total > 0).then(|| counts[m] as f64 / member_total as f64);
        close(row_share[i], rs, &format!("row share {what}"));
        if y == 2010 {
            let prev_total: i64 = expected_counts(2009, &t).iter().sum();
            let prev_share = before as f64 / prev_total as f64;
            close(
                share_pts[i],
                Some((cs - prev_share) * 100.0),
                &format!("pts {what}"),
            );
        }
        // Every purchase is 100.00 except c1's second 2010 purchase (50.00).
        let c1_extra = if y == 2010 && members[m] == "N" && (t == "优质" || t == "ALL") {
            50.0
        } else {
            0.0
        };
        close(
            revenue[i],
            Some(counts[m] as f64 * 100.0 + c1_extra),
            &format!("revenue {what}"),
        );
        let better = counts.iter().filter(|c| **c > counts[m]).count() as i64;
        assert_eq!(rank[i], Some(better + 1), "rank {what}");
        let (h, c) = expected_hhi_cr(y, &t);
        close(hhi[i], Some(h), &format!("hhi {what}"));
        close(cr[i], Some(c), &format!("cr {what}"));
    }
    // Spot checks from the comments above, read straight off the table.
    let row = |y: i64, r: &str, t: &str| {
        (0..df.height())
            .find(|i| {
                year[*i] == Some(y)
                    && region[*i].as_deref() == Some(r)
                    && tier[*i].as_deref() == Some(t)
            })
            .unwrap()
    };
    let w = row(2010, "W", "ALL");
    assert_eq!((customers[w], prev[w], growth[w]), (Some(2), Some(0), None));
    let s = row(2010, "S", "一般");
    close(growth[s], Some(-50.0), "S 一般 growth");
    let n = row(2010, "N", "优质");
    close(share_pts[n], Some(-50.0), "N 优质 share change");
    close(
        floats(&df, "revenue_share")[n],
        Some(0.6),
        "N 优质 revenue share",
    );
}
