//! Every per-customer frame a run scores from, computed on Spark from the
//! pre-aggregate [`super::ingest`] wrote (or the store's): the measures as of each date the
//! snapshots need (their own and their auxiliary tierings'), and per
//! snapshot the concentration buyers and the window's net amount. What
//! comes back is one row per customer and date, never a transaction.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::Config;
use crate::error::Result;
use crate::io::Run;
use crate::plan::{
    BUYERS_COLUMNS, CustomerPlan, Kind, Sources, measure_columns, measures_from_core,
};
use crate::snapshot::{Given, Wanted, aux_needed};
use crate::spark::{Spark, SparkDaily};

/// The frames for `snapshots` (each date's measures once, however many
/// snapshots read them).
pub fn given(
    spark: &Spark,
    cfg: &Config,
    daily: &SparkDaily,
    snapshots: &[NaiveDate],
    wanted: Wanted,
) -> Result<Given> {
    let src = Sources {
        transactions: daily.relation.clone(),
        customers: String::new(),
        pre_aggregated: true,
    };
    let plan = |d: NaiveDate| CustomerPlan::new(cfg, d, daily.has_margin, daily.has_quantity);
    let mut dates: Vec<NaiveDate> = snapshots
        .iter()
        .flat_map(|d| {
            std::iter::once(*d).chain(aux_needed(*d, cfg, wanted).into_iter().map(|k| k.0))
        })
        .collect();
    dates.sort();
    dates.dedup();
    // Every date in one query (one Spark job over the pre-aggregate, and
    // one round trip however many dates a backfill has), tagged with its
    // date and split here.
    let mut selects = Vec::new();
    for d in &dates {
        selects.push(format!(
            "SELECT {} AS __date, * FROM ({})",
            crate::plan::date(*d),
            plan(*d).measures_spark_sql(&src)?
        ));
    }
    let mut columns = vec![("__date", Kind::Day)];
    columns.extend(measure_columns());
    let t = std::time::Instant::now();
    let all = spark.query(&selects.join("\nUNION ALL\n"), &columns)?;
    tracing::info!(
        dates = dates.len(),
        ms = t.elapsed().as_millis() as u64,
        rows = all.height(),
        "spark measures"
    );
    let mut given = Given::default();
    for d in dates {
        let m = all
            .clone()
            .lazy()
            .filter(col("__date").eq(crate::units::date_lit(d)))
            .drop(cols(["__date"]))
            .sort(["customer_id"], SortMultipleOptions::default())
            .run()?;
        given
            .measures
            .insert(d, as_received(&measures_from_core(&m)?)?);
    }
    for d in snapshots {
        let p = plan(*d);
        let (buyers_sql, total_sql) = p.summaries_spark_sql(&src)?;
        let buyers = spark.query(&buyers_sql, BUYERS_COLUMNS)?;
        let mut per_year = Vec::new();
        for ry in &p.report_years {
            per_year.push(
                buyers
                    .clone()
                    .lazy()
                    .filter(col("year").eq(lit(ry.year as i64)))
                    .select([
                        col("customer_id"),
                        lit(true).alias("__bought"),
                        col("year_cents"),
                    ])
                    .run()?,
            );
        }
        let total = spark.query(&total_sql, &[("window_cents", Kind::Int)])?;
        let window_cents = total.column("window_cents")?.i64()?.get(0).unwrap_or(0);
        given.summaries.insert(*d, (per_year, window_cents));
    }
    Ok(given)
}

/// A frame split off a larger one, made to look as a single query's
/// result does: one chunk per column and no sortedness flag. With
/// `customer_id` flagged sorted (by the split's sort), polars takes other
/// paths downstream and one customer's `cum_contribution_share` came out
/// one unit in the last place apart from the local engine's (seen on the
/// sample backfill; the values going in were identical).
fn as_received(df: &DataFrame) -> Result<DataFrame> {
    let columns = df
        .columns()
        .iter()
        .map(|c| {
            let mut s = c.as_materialized_series().rechunk();
            s.set_sorted_flag(polars::series::IsSorted::Not);
            s.into_column()
        })
        .collect();
    Ok(DataFrame::new(df.height(), columns)?)
}
