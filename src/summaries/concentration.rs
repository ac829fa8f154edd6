//! Year-over-year concentration by region, industry or any customer column
//! (区域/行业集中度, SPEC §6): per report year, the customers who bought in
//! that year, tiered as of the year's end; counts, shares, growth, HHI, CR-k.

use chrono::{Datelike, NaiveDate};
use polars::prelude::*;

use crate::io::Run;

use crate::config::ConcentrationConfig;
use crate::error::Result;
use crate::scoring::schemes::{TierScheme, tier_order};
use crate::units::{cents_to_units, epoch_days};

/// One (fiscal) report year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportYear {
    /// Named after the calendar year it ends in.
    pub year: i32,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Where customers are tiered: the year's end, or the as-of date for the
    /// year still running.
    pub tiered_at: NaiveDate,
}

fn year_end(year: i32, (m, d): (u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, m, d)
        // Only Feb 29 can fail; validation refuses it, but stay total.
        .or_else(|| NaiveDate::from_ymd_opt(year, m, d - 1))
        .unwrap_or_default()
}

/// The report years ending with the one that contains `as_of`, preceded by
/// one more year whose counts serve as the first year's "previous".
pub fn report_years(as_of: NaiveDate, cfg: &ConcentrationConfig) -> Vec<ReportYear> {
    let md = cfg.year_end().unwrap_or((12, 31));
    let last = if as_of > year_end(as_of.year(), md) {
        as_of.year() + 1
    } else {
        as_of.year()
    };
    (last - cfg.years as i32..=last)
        .map(|y| {
            let end = year_end(y, md);
            let start = year_end(y - 1, md).succ_opt().unwrap_or(end);
            ReportYear {
                year: y,
                start,
                end,
                tiered_at: end.min(as_of),
            }
        })
        .collect()
}

/// The customers who bought in the report year, with their net amount
/// (`year_cents`), from the customer × day pre-aggregate and its `keys`.
pub fn buyers(daily: LazyFrame, keys: LazyFrame, ry: &ReportYear) -> LazyFrame {
    let day = col("ts").cast(DataType::Int32);
    let per_cid = daily
        .filter(
            day.clone()
                .gt_eq(lit(epoch_days(ry.start)))
                .and(day.lt_eq(lit(epoch_days(ry.tiered_at)))),
        )
        .group_by([col("cid")])
        .agg([
            col("purchases").sum().gt(lit(0i64)).alias("__bought"),
            col("net_cents").sum().alias("year_cents"),
        ])
        .filter(col("__bought"));
    crate::daily::with_customer_id(per_cid, keys).select([
        col("customer_id"),
        col("__bought"),
        col("year_cents"),
    ])
}

/// The year's buyers (amount > 0) counted by their tier as of `tiered_at`
/// (from `scores`, scored at that date) and the dimension columns together:
/// `customers` and their net amount in the year (`revenue_cents`, from
/// [`buyers`]) per cell, with `year`. Counted here rather than kept a row
/// per buyer: the tables only ever sum these cells, and a row per buyer
/// and year (every customer_id and dimension value copied, ~3 × 10^6 rows
/// at 10^6 customers) was most of the summary's time.
///
/// `held`: both sides fit in memory (the fast plan), so they are collected
/// and, when both are in customer_id order (the tierings and the buyers
/// are), counted by one merge walk ([`cells_merged`]) rather than polars'
/// hash join on the text ids and group-by on the text cells: a uniform
/// 10^7 night's concentration summary 571–672 → 321–396 ms, beside the
/// `customer_scores` writer. Merged and grouped by polars when a tier is
/// outside the labels; joined by polars when a side is out of order.
pub fn population(
    scores: LazyFrame,
    buyers: LazyFrame,
    ry: &ReportYear,
    scheme: &TierScheme,
    dims: &[String],
    held: bool,
) -> Result<LazyFrame> {
    let mut cols = vec![
        col("customer_id"),
        col(scheme.column.as_str()).alias("tier"),
    ];
    cols.extend(dims.iter().map(|d| col(d.as_str()).cast(DataType::String)));
    let mut cell = vec![col("tier")];
    cell.extend(dims.iter().map(|d| col(d.as_str())));
    let scores = scores.select(cols);
    let join = |scores: LazyFrame, buyers: LazyFrame| {
        scores.join(
            buyers,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
    };
    let joined = if held {
        let (s, b) = (scores.run_whole()?, buyers.run_whole()?);
        if let Some(cells) = cells_merged(&s, &b, &scheme.labels, dims)? {
            return Ok(cells.lazy().with_column(lit(ry.year).alias("year")));
        }
        match crate::order::merge_on_id(&s, &b, JoinType::Inner)? {
            Some(j) => j.lazy(),
            None => join(s.lazy(), b.lazy()),
        }
    } else {
        join(scores, buyers)
    };
    Ok(joined
        .group_by(cell)
        .agg([
            len().cast(DataType::Int64).alias("customers"),
            col("year_cents").sum().alias("revenue_cents"),
        ])
        .with_column(lit(ry.year).alias("year")))
}

/// [`population`]'s cells (before `year`) from one merge walk of `scores`
/// (customer_id, tier, the dimensions as text) and `buyers` (customer_id,
/// year_cents), both in customer_id order: each tier is its label's
/// position and each dimension value a code found once per buyer, so no
/// row of text is hashed as a group key. Cells in (tier, dimensions) code
/// order. `None` (the caller joins and groups with polars) when a side is
/// out of order, a tier is outside `labels`, or the cells outgrow a u64.
fn cells_merged(
    scores: &DataFrame,
    buyers: &DataFrame,
    labels: &[String],
    dims: &[String],
) -> Result<Option<DataFrame>> {
    let Some(tiers) = crate::scoring::schemes::label_positions(scores.column("tier")?, labels)
    else {
        return Ok(None);
    };
    let texts = dims
        .iter()
        .map(|d| Ok(scores.column(d)?.str()?.rechunk().into_owned()))
        .collect::<Result<Vec<StringChunked>>>()?;
    let texts: Vec<_> = texts.iter().map(|t| t.downcast_as_array()).collect();
    let cents = buyers.column("year_cents")?.i64()?.rechunk();
    let cents = cents.downcast_as_array();
    // Per dimension: its distinct values in order of first appearance,
    // found by the value's view where it holds the text, else by text.
    let mut values: Vec<Vec<Option<&str>>> = vec![Vec::new(); dims.len()];
    let mut short: Vec<PlHashMap<u128, u32>> = vec![PlHashMap::new(); dims.len()];
    let mut long: Vec<PlHashMap<Option<&str>, u32>> = vec![PlHashMap::new(); dims.len()];
    // Per matched buyer: tier, then each dimension's code; and the cents.
    let width = 1 + dims.len();
    let mut codes: Vec<u32> = Vec::new();
    let mut year_cents: Vec<i64> = Vec::new();
    let (si, bi) = (
        crate::order::id_column(scores)?,
        crate::order::id_column(buyers)?,
    );
    let in_order = crate::order::merge_walk(&si, &bi, |i, j| {
        let (Some(i), Some(j)) = (i, j) else { return };
        codes.push(tiers[i] as u32);
        for (k, t) in texts.iter().enumerate() {
            let v = t.get(i);
            let next = values[k].len() as u32;
            let key = v.and_then(|_| crate::order::inline_key(t.views()[i]));
            let code = match key {
                Some(key) => short[k].entry(key).or_insert(next),
                None => long[k].entry(v).or_insert(next),
            };
            if *code == next {
                values[k].push(v);
            }
            codes.push(*code);
        }
        year_cents.push(cents.get(j).unwrap_or(0));
    });
    if !in_order {
        return Ok(None);
    }
    // Mixed radix: tier first (labels and none), then each dimension.
    let mut radix = vec![labels.len() as u64 + 1];
    radix.extend(values.iter().map(|v| v.len().max(1) as u64));
    let Some(keys) = radix.iter().try_fold(1u64, |acc, r| acc.checked_mul(*r)) else {
        return Ok(None);
    };
    // (customers, cents) per cell: counted in a table of every key when
    // that is small (it is for regions and industries), else in a map.
    let keyed = codes.chunks_exact(width).zip(&year_cents).map(|(row, c)| {
        let key = row
            .iter()
            .zip(&radix)
            .fold(0u64, |acc, (code, r)| acc * r + *code as u64);
        (key, *c)
    });
    let mut cells: std::collections::BTreeMap<u64, (i64, i64)> = Default::default();
    if keys <= 1 << 16 {
        let mut table = vec![(0i64, 0i64); keys as usize];
        for (key, c) in keyed {
            let cell = &mut table[key as usize];
            cell.0 += 1;
            cell.1 += c;
        }
        cells.extend((0..keys).zip(table).filter(|(_, c)| c.0 > 0));
    } else {
        for (key, c) in keyed {
            let cell = cells.entry(key).or_default();
            cell.0 += 1;
            cell.1 += c;
        }
    }
    // Back from a key to its codes, last radix first.
    let n = cells.len();
    let mut parts: Vec<Vec<u32>> = vec![Vec::with_capacity(n); width];
    for key in cells.keys() {
        let mut k = *key;
        for (p, r) in parts.iter_mut().zip(&radix).rev() {
            p.push((k % r) as u32);
            k /= r;
        }
    }
    let mut columns = vec![
        StringChunked::from_iter_options(
            "tier".into(),
            parts[0]
                .iter()
                .map(|t| labels.get(*t as usize).map(String::as_str)),
        )
        .into_column(),
    ];
    for (k, d) in dims.iter().enumerate() {
        columns.push(
            StringChunked::from_iter_options(
                d.as_str().into(),
                parts[k + 1].iter().map(|c| values[k][*c as usize]),
            )
            .into_column(),
        );
    }
    columns.push(Column::new(
        "customers".into(),
        cells.values().map(|c| c.0).collect::<Vec<i64>>(),
    ));
    columns.push(Column::new(
        "revenue_cents".into(),
        cells.values().map(|c| c.1).collect::<Vec<i64>>(),
    ));
    Ok(Some(DataFrame::new(n, columns)?))
}

/// `concentration_<dim>` from the [`population`] cells of every year (including the
/// extra first year), reporting the years after it.
pub fn table(
    populations: LazyFrame,
    years: &[ReportYear],
    dim: &str,
    scheme: &TierScheme,
    cfg: &ConcentrationConfig,
    unknown: &str,
) -> Result<DataFrame> {
    let total = cfg.total_label.as_str();
    let pops = populations.with_column(col(dim).fill_null(lit(unknown)).alias("member"));
    let agg = || [col("customers").sum(), col("revenue_cents").sum()];
    // One pass over the populations' cells: the member totals and the
    // member list come from its fewer cells.
    let by_tier = pops
        .group_by([col("year"), col("member"), col("tier")])
        .agg(agg())
        .run()?;
    let cells = concat(
        [
            by_tier.clone().lazy(),
            by_tier
                .clone()
                .lazy()
                .group_by([col("year"), col("member")])
                .agg([col("customers").sum(), col("revenue_cents").sum()])
                .select([
                    col("year"),
                    col("member"),
                    lit(total).alias("tier"),
                    col("customers"),
                    col("revenue_cents"),
                ]),
        ],
        UnionArgs::default(),
    )?;
    // Every member seen in any year × every tier × every year, zeros filled,
    // in a fixed order so window sums and ranks are reproducible.
    let mut labels = scheme.labels.clone();
    labels.push(total.to_string());
    let members = by_tier
        .lazy()
        .select([col("member")])
        .unique(None, UniqueKeepStrategy::Any)
        .sort(["member"], SortMultipleOptions::default());
    let year_list: Vec<i32> = years.iter().map(|y| y.year).collect();
    let tiered: Vec<NaiveDate> = years.iter().map(|y| y.tiered_at).collect();
    let grid = df!("year" => year_list, "tiered_as_of" => tiered)?
        .lazy()
        .cross_join(df!("tier" => labels.clone())?.lazy(), None)
        .cross_join(members, None)
        .with_column(tier_order("tier", &labels).alias("tier_order"))
        .sort(
            ["year", "tier_order", "member"],
            SortMultipleOptions::default(),
        );
    let yt = [col("year"), col("tier")];
    let ym = [col("year"), col("member")];
    let share_of = |x: Expr, by: &[Expr]| -> Result<Expr> {
        let t = x.clone().sum().over(by)?;
        Ok(when(t.clone().gt(lit(0)))
            .then(x.cast(DataType::Float64) / t.cast(DataType::Float64))
            .otherwise(lit(NULL).cast(DataType::Float64)))
    };
    let member_total = col("customers")
        .filter(col("tier").eq(lit(total)))
        .sum()
        .over(ym.clone())?;
    let full = grid
        .join(
            cells,
            [col("year"), col("member"), col("tier")],
            [col("year"), col("member"), col("tier")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("customers").fill_null(lit(0i64)),
            col("revenue_cents").fill_null(lit(0i64)),
        ])
        .with_columns([
            share_of(col("customers"), &yt)?.alias("column_share"),
            share_of(col("revenue_cents"), &yt)?.alias("revenue_share"),
            when(member_total.clone().gt(lit(0)))
                .then(
                    col("customers").cast(DataType::Float64) / member_total.cast(DataType::Float64),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("row_share"),
            col("customers")
                .rank(
                    RankOptions {
                        method: RankMethod::Min,
                        descending: true,
                    },
                    None,
                )
                .over(yt.clone())?
                .cast(DataType::Int32)
                .alias("member_rank"),
            col("customers")
                .rank(
                    RankOptions {
                        method: RankMethod::Ordinal,
                        descending: true,
                    },
                    None,
                )
                .over(yt.clone())?
                .alias("__ordinal"),
        ])
        // HHI and CR-k from integer counts, divided once: float sums would
        // depend on row order, and so would the bytes of the table.
        .with_columns([
            (lit(10000.0)
                * (col("customers") * col("customers"))
                    .sum()
                    .over(yt.clone())?
                    .cast(DataType::Float64)
                / col("customers")
                    .sum()
                    .over(yt.clone())?
                    .pow(2)
                    .cast(DataType::Float64))
            .alias("hhi"),
            (col("customers")
                .filter(col("__ordinal").lt_eq(lit(cfg.top_k)))
                .sum()
                .over(yt.clone())?
                .cast(DataType::Float64)
                / col("customers")
                    .sum()
                    .over(yt.clone())?
                    .cast(DataType::Float64))
            .alias("cr_k"),
        ])
        .with_columns([
            // A tier with no customers that year has no concentration.
            when(col("column_share").is_null())
                .then(lit(NULL).cast(DataType::Float64))
                .otherwise(col("hhi"))
                .alias("hhi"),
            when(col("column_share").is_null())
                .then(lit(NULL).cast(DataType::Float64))
                .otherwise(col("cr_k"))
                .alias("cr_k"),
        ]);
    let prev = full.clone().select([
        (col("year") + lit(1)).alias("year"),
        col("member"),
        col("tier"),
        col("customers").alias("customers_prev"),
        col("column_share").alias("column_share_prev"),
    ]);
    let first = years.first().map(|y| y.year).unwrap_or_default();
    Ok(full
        .join(
            prev,
            [col("year"), col("member"), col("tier")],
            [col("year"), col("member"), col("tier")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("year").gt(lit(first)))
        .with_columns([
            col("customers_prev").fill_null(lit(0i64)),
            (col("customers") - col("customers_prev").fill_null(lit(0i64))).alias("change"),
        ])
        .with_columns([
            when(col("customers_prev").gt(lit(0i64)))
                .then(
                    col("change").cast(DataType::Float64) * lit(100.0)
                        / col("customers_prev").cast(DataType::Float64),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("growth_pct"),
            ((col("column_share") - col("column_share_prev")) * lit(100.0))
                .alias("share_change_pts"),
            cents_to_units(col("revenue_cents")).alias("revenue"),
            lit(cfg.top_k as i32).alias("k"),
        ])
        .sort(
            ["year", "tier_order", "member_rank", "member"],
            SortMultipleOptions::default(),
        )
        .select([
            col("year"),
            col("tiered_as_of"),
            col("member").alias(dim),
            col("tier"),
            col("tier_order"),
            col("customers"),
            col("customers_prev"),
            col("change"),
            col("growth_pct"),
            col("column_share"),
            col("column_share_prev"),
            col("share_change_pts"),
            col("row_share"),
            col("revenue"),
            col("revenue_share"),
            col("member_rank"),
            col("hhi"),
            col("k"),
            col("cr_k"),
        ])
        .run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merged cells equal polars' join and group-by: by hand on a
    /// small case (a null tier, a null region, a buyer with no score, a
    /// long text), and on generated sides; a tier outside the labels or
    /// ids out of order leave it to polars.
    #[test]
    fn merged_cells_are_the_join_and_group_by() {
        let labels: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let dims = vec!["region".to_string(), "industry".to_string()];
        let polars = |s: &DataFrame, b: &DataFrame| {
            s.clone()
                .lazy()
                .join(
                    b.clone().lazy(),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(JoinType::Inner),
                )
                .group_by([col("tier"), col("region"), col("industry")])
                .agg([
                    len().cast(DataType::Int64).alias("customers"),
                    col("year_cents").sum().alias("revenue_cents"),
                ])
                .sort(["tier", "region", "industry"], Default::default())
                .run()
                .unwrap()
        };
        let sorted = |df: DataFrame| {
            df.lazy()
                .sort(["tier", "region", "industry"], Default::default())
                .run()
                .unwrap()
        };
        let scores = df!(
            "customer_id" => ["c1", "c2", "c3", "c4", "c5"],
            "tier" => [Some("A"), Some("B"), None, Some("A"), Some("A")],
            "region" => [Some("N"), Some("N"), Some("S"), None, Some("N")],
            "industry" => ["x", "x", "y", "x", "a rather long industry name"],
        )
        .unwrap();
        let buyers = df!(
            "customer_id" => ["c1", "c3", "c4", "c5", "c6"],
            "__bought" => [true; 5],
            "year_cents" => [100i64, 200, 300, 400, 500],
        )
        .unwrap();
        let got = sorted(
            cells_merged(&scores, &buyers, &labels, &dims)
                .unwrap()
                .unwrap(),
        );
        // c2 did not buy and c6 has no score: c1, c3, c4, c5 in four cells.
        let want = df!(
            "tier" => [None, Some("A"), Some("A"), Some("A")],
            "region" => [Some("S"), None, Some("N"), Some("N")],
            "industry" => ["y", "x", "a rather long industry name", "x"],
            "customers" => [1i64, 1, 1, 1],
            "revenue_cents" => [200i64, 300, 400, 100],
        )
        .unwrap();
        assert!(got.equals_missing(&want), "{got}");
        assert!(got.equals_missing(&polars(&scores, &buyers)));
        // Generated: 2,000 scored customers, every third a buyer.
        let mut next = crate::testing::lcg(3u64);
        let ids: Vec<String> = (0..2000).map(|i| format!("C{i:05}")).collect();
        let pick = |n: usize, next: &mut dyn FnMut() -> usize| next() % n;
        let (mut tiers, mut regions, mut inds) = (Vec::new(), Vec::new(), Vec::new());
        for _ in &ids {
            tiers.push([Some("A"), Some("B"), None][pick(3, &mut next)]);
            regions.push(
                [
                    Some("惠城区"),
                    Some("惠阳区"),
                    None,
                    Some("a region of over 12 bytes"),
                ][pick(4, &mut next)],
            );
            inds.push(["x", "y", "z"][pick(3, &mut next)]);
        }
        let scores = df!(
            "customer_id" => &ids, "tier" => tiers, "region" => regions, "industry" => inds,
        )
        .unwrap();
        let bought: Vec<&String> = ids.iter().step_by(3).collect();
        let buyers = df!(
            "customer_id" => bought.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "__bought" => vec![true; bought.len()],
            "year_cents" => (0..bought.len()).map(|_| (next() % 10_000) as i64 - 1000).collect::<Vec<_>>(),
        )
        .unwrap();
        let got = sorted(
            cells_merged(&scores, &buyers, &labels, &dims)
                .unwrap()
                .unwrap(),
        );
        assert!(got.equals_missing(&polars(&scores, &buyers)), "{got}");
        // A tier outside the labels; ids out of order.
        let only_a = vec!["A".to_string()];
        assert!(
            cells_merged(&scores, &buyers, &only_a, &dims)
                .unwrap()
                .is_none()
        );
        let reversed = scores.reverse();
        assert!(
            cells_merged(&reversed, &buyers, &labels, &dims)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn report_years_calendar_and_fiscal() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let ys = report_years(d(2010, 12, 31), &ConcentrationConfig::default());
        assert_eq!(
            ys.iter().map(|y| y.year).collect::<Vec<_>>(),
            vec![2008, 2009, 2010]
        );
        assert_eq!(
            (ys[2].start, ys[2].tiered_at),
            (d(2010, 1, 1), d(2010, 12, 31))
        );
        let fiscal = ConcentrationConfig {
            fiscal_year_end: "03-31".into(),
            years: 1,
            ..Default::default()
        };
        let ys = report_years(d(2010, 6, 30), &fiscal);
        // FY2011 runs 2010-04-01 … 2011-03-31 and is tiered at the as-of date.
        assert_eq!(ys[1].year, 2011);
        assert_eq!((ys[1].start, ys[1].end), (d(2010, 4, 1), d(2011, 3, 31)));
        assert_eq!(ys[1].tiered_at, d(2010, 6, 30));
        assert_eq!(ys[0].tiered_at, d(2010, 3, 31));
    }
}
