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
/// are), joined by one merge ([`crate::order::merge_on_id`]) rather than
/// polars' hash join on the text ids (~40 ms a year at 10^6 customers,
/// beside the `customer_scores` writer).
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
