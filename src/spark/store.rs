//! The Spark engine over the typed store (`[spark] store = true`): the
//! store's per-file customer × day pre-aggregates, as one view Spark scores
//! from. The files are checked into the store here, once each, as on the
//! local engine; Spark then reads only their pre-aggregates.

use std::path::PathBuf;

use crate::error::Result;
use crate::plan::{Relation, quoted_path};
use crate::spark::{Spark, SparkDaily};
use crate::store::View;

/// The session's view of the store's pre-aggregate.
const VIEW: &str = "__tiering_store_daily";

/// Registers the store's pre-aggregate as a view of the session.
pub fn store_daily(spark: &Spark, store: &View) -> Result<SparkDaily> {
    let (files, contested) = store.daily_files()?;
    let (has_margin, has_quantity) = (store.has("margin_cents"), store.has("quantity"));
    spark.execute(&view_sql(&files, contested, has_margin, has_quantity)?)?;
    Ok(SparkDaily {
        relation: Relation::View(VIEW.into()),
        has_margin,
        has_quantity,
    })
}

/// The view's definition: the files stacked; when some day is held by
/// several files, each customer's day summed across them (as
/// [`crate::daily::merge_daily`] does locally).
fn view_sql(
    files: &[PathBuf],
    contested: bool,
    has_margin: bool,
    has_quantity: bool,
) -> Result<String> {
    let mut sums = vec!["purchases", "net_cents"];
    if has_margin {
        sums.push("margin_cents");
    }
    if has_quantity {
        sums.push("units");
    }
    let columns = ["customer_id", "ts"]
        .iter()
        .chain(&sums)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let stacked = files
        .iter()
        .map(|f| {
            Ok(format!(
                "SELECT {columns} FROM parquet.{}",
                quoted_path(&f.display().to_string())?
            ))
        })
        .collect::<Result<Vec<_>>>()?
        .join("\nUNION ALL\n");
    let body = if contested {
        let summed = sums
            .iter()
            .map(|c| format!("SUM({c}) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT customer_id, ts, {summed} FROM (\n{stacked}\n) GROUP BY customer_id, ts")
    } else {
        stacked
    };
    Ok(format!(
        "CREATE OR REPLACE TEMPORARY VIEW {VIEW} AS\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_stacks_the_files_and_sums_only_shared_days() {
        let files = [
            PathBuf::from("/s/a/daily.parquet"),
            PathBuf::from("/s/b/daily.parquet"),
        ];
        let plain = view_sql(&files, false, true, false).unwrap();
        assert_eq!(
            plain,
            "CREATE OR REPLACE TEMPORARY VIEW __tiering_store_daily AS\n\
             SELECT customer_id, ts, purchases, net_cents, margin_cents FROM parquet.`/s/a/daily.parquet`\n\
             UNION ALL\n\
             SELECT customer_id, ts, purchases, net_cents, margin_cents FROM parquet.`/s/b/daily.parquet`"
        );
        let summed = view_sql(&files[..1], true, false, true).unwrap();
        assert_eq!(
            summed,
            "CREATE OR REPLACE TEMPORARY VIEW __tiering_store_daily AS\n\
             SELECT customer_id, ts, SUM(purchases) AS purchases, SUM(net_cents) AS net_cents, SUM(units) AS units FROM (\n\
             SELECT customer_id, ts, purchases, net_cents, units FROM parquet.`/s/a/daily.parquet`\n\
             ) GROUP BY customer_id, ts"
        );
        assert!(view_sql(&[PathBuf::from("/s/`x")], false, false, false).is_err());
    }
}
