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
    CustomerPlan, Kind, Sources, WINDOW_BUYERS_COLUMNS, measure_columns, measures_from_core,
};
use crate::snapshot::{AuxKey, Given, Wanted, aux_needed};
use crate::spark::{Spark, SparkDaily};

/// Dates whose measures one pass over the pre-aggregate computes. Each
/// date's median gap holds its gaps until the customer is done: 10 dates
/// in one pass ran a 2 GB `local[2]` server out of memory at 10^7
/// transactions, where passes of 4 took 33 s against 43 s for one scan a
/// date.
const DATES_PER_PASS: usize = 4;

/// Report-year windows whose buyers one pass computes.
const WINDOWS_PER_PASS: usize = 32;

/// The frames for `snapshots` (each date's measures once, however many
/// snapshots read them). No measures for an earlier tiering's date when
/// every tiering needed there is `kept` (in the store, read back instead).
pub fn given(
    spark: &Spark,
    cfg: &Config,
    daily: &SparkDaily,
    snapshots: &[NaiveDate],
    wanted: Wanted,
    kept: &dyn Fn(&AuxKey) -> bool,
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
            let aux = aux_needed(*d, cfg, wanted).into_iter();
            std::iter::once(*d).chain(aux.filter(|k| !kept(k)).map(|k| k.0))
        })
        .collect();
    dates.sort();
    dates.dedup();
    // The dates' measures from passes over the pre-aggregate (one
    // aggregation per customer with each date's measures side by side, up
    // to DATES_PER_PASS dates), tagged with their date and split here.
    let mut columns = vec![("__date", Kind::Day)];
    columns.extend(measure_columns());
    let t = std::time::Instant::now();
    let mut parts = Vec::new();
    for group in dates.chunks(DATES_PER_PASS) {
        let last = *group.last().expect("chunks are not empty");
        let sql = plan(last).measures_by_date_spark_sql(group, &src)?;
        parts.push(spark.query(&sql, &columns)?.lazy());
    }
    let all = match parts.len() {
        0 => return Ok(Given::default()),
        _ => concat(parts, UnionArgs::default())?.run()?,
    };
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
    // The concentration buyers of every snapshot's report years, each
    // distinct window once, and every snapshot's window total: one pass
    // each (buyers in groups of windows, as the measures).
    let plans: Vec<CustomerPlan> = snapshots.iter().map(|d| plan(*d)).collect();
    let mut windows: Vec<(NaiveDate, NaiveDate)> = plans
        .iter()
        .flat_map(|p| p.report_years.iter().map(|ry| (ry.start, ry.tiered_at)))
        .collect();
    windows.sort();
    windows.dedup();
    let Some(latest) = snapshots.iter().max() else {
        return Ok(given);
    };
    let t = std::time::Instant::now();
    let mut buyers = Vec::new();
    for (g, group) in windows.chunks(WINDOWS_PER_PASS).enumerate() {
        let sql = plan(*latest).buyers_by_window_spark_sql(group, &src)?;
        let part = spark.query(&sql, WINDOW_BUYERS_COLUMNS)?;
        // The group's window indices, as indices into `windows`.
        buyers.push(
            part.lazy()
                .with_column(col("__window") + lit((g * WINDOWS_PER_PASS) as i64)),
        );
    }
    let buyers = match buyers.is_empty() {
        true => DataFrame::default(),
        false => concat(buyers, UnionArgs::default())?.run()?,
    };
    let total_sql = plan(*latest).window_totals_spark_sql(snapshots, &src)?;
    let names: Vec<String> = (0..snapshots.len())
        .map(|i| format!("window_cents_{i}"))
        .collect();
    let columns: Vec<(&str, Kind)> = names.iter().map(|n| (n.as_str(), Kind::Int)).collect();
    let totals = spark.query(&total_sql, &columns)?;
    tracing::info!(
        snapshots = snapshots.len(),
        windows = windows.len(),
        ms = t.elapsed().as_millis() as u64,
        "spark buyers and window totals"
    );
    for ((d, p), total) in snapshots.iter().zip(&plans).zip(&names) {
        let mut per_year = Vec::new();
        for ry in &p.report_years {
            let w = windows
                .binary_search(&(ry.start, ry.tiered_at))
                .expect("every report year's window is listed");
            // Filtered from a result in (window, customer_id) order: each
            // year's buyers by customer_id, as one query gave them.
            per_year.push(
                buyers
                    .clone()
                    .lazy()
                    .filter(col("__window").eq(lit(w as i64)))
                    .select([
                        col("customer_id"),
                        lit(true).alias("__bought"),
                        col("year_cents"),
                    ])
                    .run()?,
            );
        }
        let window_cents = totals.column(total)?.i64()?.get(0).unwrap_or(0);
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
