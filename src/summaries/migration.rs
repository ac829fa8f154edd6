//! Tier migration (the seeds' quarterly review): how customers moved between
//! tiers since an earlier date, recomputed from the same inputs as of that
//! date (no earlier output is read back).

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::io::Run;

use crate::error::Result;
use crate::scoring::schemes::{TierScheme, label_positions, tier_order};
use crate::units::{cents_to_units, date_lit};

/// Label for customers without a tier at the earlier date.
pub const NEW: &str = "(new)";
/// Label for customers without a tier now.
pub const NONE: &str = "(none)";

/// The last calendar quarter end strictly before `d`.
pub fn previous_quarter_end(d: NaiveDate) -> NaiveDate {
    let q_start_month = (d.month0() / 3) * 3 + 1;
    let q_start = NaiveDate::from_ymd_opt(d.year(), q_start_month, 1).unwrap_or(d);
    q_start.pred_opt().unwrap_or(d)
}

/// `tier_migration`: every from-tier × to-tier cell (labels plus `(new)` /
/// `(none)`), with customers, current and earlier window revenue, and the
/// movement: same, upgrade, downgrade, new, departed.
pub fn table(
    current: LazyFrame,
    previous: LazyFrame,
    scheme: &TierScheme,
    compared_to: NaiveDate,
) -> Result<DataFrame> {
    let pick = |df: LazyFrame, tier: &str, rev: &str| {
        df.select([
            col("customer_id"),
            col(scheme.column.as_str()).alias(tier),
            col("revenue_cents").alias(rev),
        ])
    };
    // The in-memory engine: a held tiering comes back as it is, where the
    // streaming engine cut it into morsels for the merge to join again.
    let prev = pick(previous, "from_tier", "prev_cents").run_whole()?;
    let now = pick(current, "to_tier", "now_cents").run_whole()?;
    let moved = match moved_merged(&prev, &now, &scheme.labels)? {
        Some(m) => m.lazy(),
        None => prev
            .lazy()
            .join(
                now.lazy(),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
            )
            .filter(
                col("from_tier")
                    .is_not_null()
                    .or(col("to_tier").is_not_null()),
            )
            .with_columns([
                col("from_tier").fill_null(lit(NEW)),
                col("to_tier").fill_null(lit(NONE)),
            ])
            .group_by([col("from_tier"), col("to_tier")])
            .agg([
                len().cast(DataType::Int64).alias("customers"),
                col("now_cents").sum().alias("now_cents"),
                col("prev_cents").sum().alias("prev_cents"),
            ]),
    };
    let mut from = scheme.labels.clone();
    from.push(NEW.into());
    let mut to = scheme.labels.clone();
    to.push(NONE.into());
    let grid = df!("from_tier" => from)?
        .lazy()
        .cross_join(df!("to_tier" => to)?.lazy(), None)
        .filter(
            col("from_tier")
                .neq(lit(NEW))
                .or(col("to_tier").neq(lit(NONE))),
        );
    let f = tier_order("from_tier", &scheme.labels);
    let t = tier_order("to_tier", &scheme.labels);
    let movement = when(col("from_tier").eq(lit(NEW)))
        .then(lit("new"))
        .when(col("to_tier").eq(lit(NONE)))
        .then(lit("departed"))
        .when(f.clone().eq(t.clone()))
        .then(lit("same"))
        .when(t.clone().lt(f.clone()))
        .then(lit("upgrade"))
        .otherwise(lit("downgrade"));
    let n = scheme.labels.len() as i32;
    Ok(grid
        .join(
            moved,
            [col("from_tier"), col("to_tier")],
            [col("from_tier"), col("to_tier")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("customers").fill_null(lit(0i64)),
            cents_to_units(col("now_cents").fill_null(lit(0i64))).alias("revenue"),
            cents_to_units(col("prev_cents").fill_null(lit(0i64))).alias("revenue_before"),
            movement.alias("movement"),
            date_lit(compared_to).alias("compared_to"),
            f.fill_null(lit(n)).alias("__f"),
            t.fill_null(lit(n)).alias("__t"),
        ])
        .sort(["__f", "__t"], SortMultipleOptions::default())
        .select([
            col("compared_to"),
            col("from_tier"),
            col("to_tier"),
            col("movement"),
            col("customers"),
            col("revenue"),
            col("revenue_before"),
        ])
        .run()?)
}

/// The occupied (from_tier, to_tier) cells with their customers and
/// summed `now_cents` and `prev_cents`, by one merge of the two tierings
/// in customer_id order (both are: the full scoring and the kept
/// tierings), each tier a label's position. polars' full join on the text
/// ids and group-by on two text columns took ~3 s at 10^7 customers (the
/// lean plan at 10^8 transactions). `None` when either side is out of
/// order or holds a tier outside `labels`: the caller joins instead.
fn moved_merged(prev: &DataFrame, now: &DataFrame, labels: &[String]) -> Result<Option<DataFrame>> {
    let n = labels.len();
    // Each row's tier as a label's position, `n` for none.
    let codes = |df: &DataFrame, tier: &str| -> Result<Option<Vec<u8>>> {
        Ok(label_positions(df.column(tier)?, labels))
    };
    let cents = |df: &DataFrame, c: &str| -> Result<Option<Int64Chunked>> {
        Ok(df.column(c)?.i64().ok().map(|c| c.rechunk().into_owned()))
    };
    let (Some(pt), Some(nt)) = (codes(prev, "from_tier")?, codes(now, "to_tier")?) else {
        return Ok(None);
    };
    let (Some(pc), Some(nc)) = (cents(prev, "prev_cents")?, cents(now, "now_cents")?) else {
        return Ok(None);
    };
    let (pc, nc) = (pc.downcast_as_array(), nc.downcast_as_array());
    let side = n + 1;
    // customers, now_cents, prev_cents per cell (from * side + to).
    let mut cells = vec![(0i64, 0i64, 0i64); side * side];
    let (pi, ni) = (
        crate::order::id_column(prev)?,
        crate::order::id_column(now)?,
    );
    let in_order = crate::order::merge_walk(&pi, &ni, |i, j| {
        let from = i.map_or(n, |i| pt[i] as usize);
        let to = j.map_or(n, |j| nt[j] as usize);
        // No tier at either date: not in the table.
        if from == n && to == n {
            return;
        }
        let c = &mut cells[from * side + to];
        c.0 += 1;
        c.1 += j.and_then(|j| nc.get(j)).unwrap_or(0);
        c.2 += i.and_then(|i| pc.get(i)).unwrap_or(0);
    });
    if !in_order {
        return Ok(None);
    }
    let label = |k: usize, none: &str| -> String {
        labels.get(k).cloned().unwrap_or_else(|| none.to_string())
    };
    let (mut from, mut to, mut customers, mut now_cents, mut prev_cents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, c) in cells.iter().enumerate().filter(|(_, c)| c.0 > 0) {
        from.push(label(k / side, NEW));
        to.push(label(k % side, NONE));
        customers.push(c.0);
        now_cents.push(c.1);
        prev_cents.push(c.2);
    }
    Ok(Some(df!(
        "from_tier" => from,
        "to_tier" => to,
        "customers" => customers,
        "now_cents" => now_cents,
        "prev_cents" => prev_cents,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_ends() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(previous_quarter_end(d(2010, 12, 31)), d(2010, 9, 30));
        assert_eq!(previous_quarter_end(d(2010, 10, 1)), d(2010, 9, 30));
        assert_eq!(previous_quarter_end(d(2010, 3, 31)), d(2009, 12, 31));
        assert_eq!(previous_quarter_end(d(2010, 5, 15)), d(2010, 3, 31));
    }

    #[test]
    fn flows_between_tiers_by_hand() {
        let scheme = TierScheme {
            name: "pyramid".into(),
            column: "pyramid_tier".into(),
            labels: vec!["A".into(), "B".into()],
        };
        // Before: a=A, b=B, c=B, d untiered, f=A, g untiered. Now: a=B
        // (down), b=A (up), c=B (same), d=A (new), e absent before (new),
        // f absent now (departed), g untiered now (not counted), h only
        // now and untiered (not counted). Ids in order: merged.
        let prev = df!(
            "customer_id" => ["a", "b", "c", "d", "f", "g"],
            "pyramid_tier" => [Some("A"), Some("B"), Some("B"), None, Some("A"), None],
            "revenue_cents" => [Some(100i64), Some(50), Some(20), Some(0), Some(7), Some(1)],
        )
        .unwrap();
        let now = df!(
            "customer_id" => ["a", "b", "c", "d", "e", "g", "h"],
            "pyramid_tier" => [Some("B"), Some("A"), Some("B"), Some("A"), Some("B"), None, None],
            "revenue_cents" => [Some(80i64), Some(300), None, Some(10), Some(5), Some(2), Some(3)],
        )
        .unwrap();
        let d = NaiveDate::from_ymd_opt(2010, 9, 30).unwrap();
        let out = table(now.clone().lazy(), prev.clone().lazy(), &scheme, d).unwrap();
        // Rows out of id order take polars' join instead: the same table.
        let joined = table(now.reverse().lazy(), prev.reverse().lazy(), &scheme, d).unwrap();
        assert!(out.equals_missing(&joined), "{out}\n{joined}");
        let cell = |from: &str, to: &str| -> (i64, String) {
            let m = out
                .clone()
                .lazy()
                .filter(
                    col("from_tier")
                        .eq(lit(from))
                        .and(col("to_tier").eq(lit(to))),
                )
                .collect()
                .unwrap();
            (
                m.column("customers")
                    .unwrap()
                    .i64()
                    .unwrap()
                    .get(0)
                    .unwrap(),
                m.column("movement")
                    .unwrap()
                    .str()
                    .unwrap()
                    .get(0)
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(cell("A", "B"), (1, "downgrade".into()));
        assert_eq!(cell("B", "A"), (1, "upgrade".into()));
        assert_eq!(cell("B", "B"), (1, "same".into()));
        assert_eq!(cell("(new)", "A"), (1, "new".into()));
        assert_eq!(cell("(new)", "B"), (1, "new".into()));
        assert_eq!(cell("A", "(none)"), (1, "departed".into()));
        assert_eq!(cell("A", "A"), (0, "same".into()));
        // Revenue now and before, in units: a's 0.80 and 1.00 in A→B; f's
        // 0.07 before and nothing now in A→(none); e's 0.05 in (new)→B;
        // c's unknown revenue now counted as nothing in B→B.
        let at = |f: &str, t: &str| -> (f64, f64) {
            let i = (0..out.height())
                .find(|&i| {
                    let s = |c: &str| out.column(c).unwrap().str().unwrap().get(i).unwrap();
                    s("from_tier") == f && s("to_tier") == t
                })
                .unwrap();
            let money = |c: &str| out.column(c).unwrap().f64().unwrap().get(i).unwrap();
            (money("revenue"), money("revenue_before"))
        };
        assert_eq!(at("A", "B"), (0.80, 1.00));
        assert_eq!(at("A", "(none)"), (0.0, 0.07));
        assert_eq!(at("(new)", "B"), (0.05, 0.0));
        assert_eq!(at("B", "B"), (0.0, 0.20));
        assert_eq!(at("(new)", "A"), (0.10, 0.0));
        // 2 labels + (new) from, 2 labels + (none) to, minus (new)→(none).
        assert_eq!(out.height(), 8);
    }
}
