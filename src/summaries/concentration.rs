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
/// The dimensions are customer columns, the same at every date, so they
/// come from `customers` (customer_id and the dimensions: the as-of date's
/// scoring) and an earlier tiering holds only the tier. With `members`
/// (the same customers coded, held in memory on the fast plan) and both
/// sides held in customer_id order, the cells are counted by merge walks
/// ([`cells_merged`]) rather than polars' hash joins on the text ids and
/// group-by on the text cells: a uniform 10^7 night's concentration
/// summary 571–672 → 321–396 ms, beside the `customer_scores` writer.
/// Joined and grouped by polars otherwise (a tier outside the labels, a
/// side out of order, the lean plan).
pub fn population(
    scores: LazyFrame,
    buyers: LazyFrame,
    customers: LazyFrame,
    members: Option<&Members>,
    ry: &ReportYear,
    scheme: &TierScheme,
    dims: &[String],
) -> Result<LazyFrame> {
    let scores = scores.select([
        col("customer_id"),
        col(scheme.column.as_str()).alias("tier"),
    ]);
    let (scores, buyers) = match members {
        Some(m) => {
            let (s, b) = (scores.run_whole()?, buyers.run_whole()?);
            if let Some(cells) = cells_merged(&s, &b, &scheme.labels, m)? {
                return Ok(cells.lazy().with_column(lit(ry.year).alias("year")));
            }
            (s.lazy(), b.lazy())
        }
        None => (scores, buyers),
    };
    let mut of_customers = vec![col("customer_id")];
    of_customers.extend(dims.iter().map(|d| col(d.as_str()).cast(DataType::String)));
    let joined = scores
        .join(
            buyers,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .join(
            customers.select(of_customers),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        );
    let mut cell = vec![col("tier")];
    cell.extend(dims.iter().map(|d| col(d.as_str())));
    Ok(joined
        .group_by(cell)
        .agg([
            len().cast(DataType::Int64).alias("customers"),
            col("year_cents").sum().alias("revenue_cents"),
        ])
        .with_column(lit(ry.year).alias("year")))
}

/// The customers' dimension values coded once for every report year's
/// [`cells_merged`]: per dimension, each customer's value as the order of
/// its first appearance, so no text is hashed per buyer and year.
pub struct Members {
    /// The customers' ids, strictly increasing.
    ids: StringChunked,
    /// Per dimension, in the configured order: its column as text (one
    /// chunk, named as the dimension) ...
    texts: Vec<StringChunked>,
    /// ... each customer's code ...
    codes: Vec<Vec<u32>>,
    /// ... and each code's first row (where its text is read back).
    firsts: Vec<Vec<u32>>,
}

impl Members {
    /// `customers`' columns `dims` coded; `None` unless its ids are
    /// strictly increasing (the merge walks need them so).
    pub fn of(customers: &DataFrame, dims: &[String]) -> Result<Option<Members>> {
        let ids = crate::order::id_column(customers)?;
        if !crate::order::strictly_increasing(&ids) {
            return Ok(None);
        }
        let texts = dims
            .iter()
            .map(|d| {
                let c = customers.column(d)?.cast(&DataType::String)?;
                Ok(c.str()?.rechunk().into_owned())
            })
            .collect::<Result<Vec<StringChunked>>>()?;
        let (codes, firsts) = texts.iter().map(code_values).unzip();
        Ok(Some(Members {
            ids,
            texts,
            codes,
            firsts,
        }))
    }

    /// Dimension `k`'s text for `code` (`None` for null, or for the code
    /// one past the last: a buyer with no customer row).
    fn text(&self, k: usize, code: u32) -> Option<&str> {
        let row = *self.firsts[k].get(code as usize)?;
        self.texts[k].get(row as usize)
    }
}

/// Each row's value of `text` coded by order of first appearance (null a
/// value too), found by the value's view where it holds the text, else by
/// the text; and each code's first row.
fn code_values(text: &StringChunked) -> (Vec<u32>, Vec<u32>) {
    let t = text.downcast_as_array();
    let mut short: PlHashMap<u128, u32> = PlHashMap::new();
    let mut long: PlHashMap<Option<&str>, u32> = PlHashMap::new();
    let mut firsts: Vec<u32> = Vec::new();
    let codes = (0..t.len())
        .map(|i| {
            let v = t.get(i);
            let next = firsts.len() as u32;
            let code = match v.and_then(|_| crate::order::inline_key(t.views()[i])) {
                Some(key) => *short.entry(key).or_insert(next),
                None => *long.entry(v).or_insert(next),
            };
            if code == next {
                firsts.push(i as u32);
            }
            code
        })
        .collect();
    (codes, firsts)
}

/// [`population`]'s cells (before `year`) from merge walks of `scores`
/// (customer_id, tier), `buyers` (customer_id, year_cents) and the coded
/// `members`, each in customer_id order: each tier is its label's
/// position and each dimension value its code, so no row of text is
/// hashed as a group key. Cells in (tier, dimensions) code order. `None`
/// (the caller joins and groups with polars) when a side is out of order,
/// a tier is outside `labels`, or the cells outgrow a u64.
fn cells_merged(
    scores: &DataFrame,
    buyers: &DataFrame,
    labels: &[String],
    members: &Members,
) -> Result<Option<DataFrame>> {
    let Some(tiers) = crate::scoring::schemes::label_positions(scores.column("tier")?, labels)
    else {
        return Ok(None);
    };
    let cents = buyers.column("year_cents")?.i64()?.rechunk();
    let cents = cents.downcast_as_array();
    let (si, bi) = (
        crate::order::id_column(scores)?,
        crate::order::id_column(buyers)?,
    );
    // Each buyer's tier (u8::MAX: no score, not counted) and row among
    // the members (u32::MAX: none, its dimensions null).
    let mut tier_of = vec![u8::MAX; buyers.height()];
    let mut row_of = vec![u32::MAX; buyers.height()];
    // The members' ids were checked when they were coded.
    use crate::order::{merge_walk_checked, strictly_increasing};
    if !strictly_increasing(&si) || !strictly_increasing(&bi) {
        return Ok(None);
    }
    merge_walk_checked(&si, &bi, |i, j| {
        if let (Some(i), Some(j)) = (i, j) {
            tier_of[j] = tiers[i];
        }
    });
    merge_walk_checked(&members.ids, &bi, |k, j| {
        if let (Some(k), Some(j)) = (k, j) {
            row_of[j] = k as u32;
        }
    });
    // Mixed radix: tier first (labels and none), then each dimension (its
    // codes and one for a buyer without a customer row).
    let mut radix = vec![labels.len() as u64 + 1];
    radix.extend(members.firsts.iter().map(|f| f.len() as u64 + 1));
    let Some(keys) = radix.iter().try_fold(1u64, |acc, r| acc.checked_mul(*r)) else {
        return Ok(None);
    };
    let keyed =
        (0..buyers.height())
            .filter(|j| tier_of[*j] != u8::MAX)
            .map(|j| {
                let row = row_of[j];
                let key = members.codes.iter().zip(&radix[1..]).fold(
                    tier_of[j] as u64,
                    |acc, (codes, r)| {
                        let code = match row {
                            u32::MAX => r - 1,
                            row => codes[row as usize] as u64,
                        };
                        acc * r + code
                    },
                );
                (key, cents.get(j).unwrap_or(0))
            });
    // (customers, cents) per cell: counted in a table of every key when
    // that is small (it is for regions and industries), else in a map.
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
    let width = radix.len();
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
    for (k, text) in members.texts.iter().enumerate() {
        columns.push(
            StringChunked::from_iter_options(
                text.name().clone(),
                parts[k + 1].iter().map(|c| members.text(k, *c)),
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

    /// The merged cells equal polars' joins and group-by: by hand on a
    /// small case (a null tier, a null region, a buyer with no score, a
    /// scored buyer with no customer row, a long text), and on generated
    /// sides; a tier outside the labels or ids out of order leave it to
    /// polars.
    #[test]
    fn merged_cells_are_the_join_and_group_by() {
        let labels: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let dims = vec!["region".to_string(), "industry".to_string()];
        let polars = |s: &DataFrame, b: &DataFrame, c: &DataFrame| {
            s.clone()
                .lazy()
                .join(
                    b.clone().lazy(),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(JoinType::Inner),
                )
                .join(
                    c.clone().lazy(),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(JoinType::Left),
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
        let merged = |s: &DataFrame, b: &DataFrame, c: &DataFrame, labels: &[String]| {
            let m = Members::of(c, &dims).unwrap().unwrap();
            cells_merged(s, b, labels, &m).unwrap()
        };
        let scores = df!(
            "customer_id" => ["c1", "c2", "c3", "c4", "c5", "c7"],
            "tier" => [Some("A"), Some("B"), None, Some("A"), Some("A"), Some("B")],
        )
        .unwrap();
        let customers = df!(
            "customer_id" => ["c1", "c2", "c3", "c4", "c5", "c6"],
            "region" => [Some("N"), Some("N"), Some("S"), None, Some("N"), Some("S")],
            "industry" => ["x", "x", "y", "x", "a rather long industry name", "y"],
        )
        .unwrap();
        let buyers = df!(
            "customer_id" => ["c1", "c3", "c4", "c5", "c6", "c7"],
            "__bought" => [true; 6],
            "year_cents" => [100i64, 200, 300, 400, 500, 600],
        )
        .unwrap();
        let got = sorted(merged(&scores, &buyers, &customers, &labels).unwrap());
        // c2 did not buy, c6 has no score, c7 no customer row: c1, c3, c4,
        // c5, c7 in five cells.
        let want = df!(
            "tier" => [None, Some("A"), Some("A"), Some("A"), Some("B")],
            "region" => [Some("S"), None, Some("N"), Some("N"), None],
            "industry" => [Some("y"), Some("x"), Some("a rather long industry name"), Some("x"), None],
            "customers" => [1i64, 1, 1, 1, 1],
            "revenue_cents" => [200i64, 300, 400, 100, 600],
        )
        .unwrap();
        assert!(got.equals_missing(&want), "{got}");
        assert!(got.equals_missing(&polars(&scores, &buyers, &customers)));
        // Generated: 2,000 customers, 1,500 scored, every third a buyer.
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
        let customers =
            df!("customer_id" => &ids, "region" => regions, "industry" => inds).unwrap();
        let scores = df!("customer_id" => &ids, "tier" => tiers)
            .unwrap()
            .slice(250, 1500);
        let bought: Vec<&String> = ids.iter().step_by(3).collect();
        let buyers = df!(
            "customer_id" => bought.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "__bought" => vec![true; bought.len()],
            "year_cents" => (0..bought.len()).map(|_| (next() % 10_000) as i64 - 1000).collect::<Vec<_>>(),
        )
        .unwrap();
        let got = sorted(merged(&scores, &buyers, &customers, &labels).unwrap());
        assert!(
            got.equals_missing(&polars(&scores, &buyers, &customers)),
            "{got}"
        );
        // A tier outside the labels; ids out of order.
        let only_a = vec!["A".to_string()];
        assert!(merged(&scores, &buyers, &customers, &only_a).is_none());
        assert!(merged(&scores.reverse(), &buyers, &customers, &labels).is_none());
        assert!(Members::of(&customers.reverse(), &dims).unwrap().is_none());
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
