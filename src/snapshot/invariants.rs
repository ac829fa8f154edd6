//! The checks every correct snapshot passes before it is published; the
//! manifest lists what was checked.

use polars::prelude::*;

use crate::io::Run;

use crate::error::{Error, Result};
use crate::snapshot::Invariant;
use crate::snapshot::full::Full;

/// Checks that hold for every correct snapshot; the first that fails
/// aborts the publish. Returns what was checked, for the manifest.
pub fn check_invariants(
    full: &Full,
    segments: &DataFrame,
    pyramid: &DataFrame,
    tier_summary: &DataFrame,
    ingested_window_cents: i64,
) -> Result<Vec<Invariant>> {
    let mut held = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| -> Result<()> {
        if ok {
            held.push(Invariant {
                name: name.to_string(),
                detail,
            });
            Ok(())
        } else {
            Err(Error::Invariant(format!("{name}: {detail}")))
        }
    };
    // Held in customer_id order, the ids are distinct when each is greater
    // than the one before: one pass (5–9 ms of a 10^6-customer night),
    // where counting the distinct ids hashed the texts (~85 ms). Otherwise
    // counted.
    let ordered = match full {
        Full::Memory(df) => crate::order::strictly_increasing(df.column("customer_id")?.str()?),
        Full::Spilled(_) => false,
    };
    let distinct = match ordered {
        true => len(),
        false => col("customer_id").n_unique(),
    };
    let totals = full
        .lazy()?
        .select([
            len().cast(DataType::Int64).alias("rows"),
            distinct.cast(DataType::Int64).alias("distinct"),
            col("in_scope")
                .sum()
                .cast(DataType::Int64)
                .alias("in_scope"),
            col("revenue_cents").sum().alias("revenue_cents"),
        ])
        .run()?;
    let total = |c: &str| -> Result<i64> { Ok(totals.column(c)?.i64()?.get(0).unwrap_or(0)) };
    let (rows, distinct, in_scope) = (total("rows")?, total("distinct")?, total("in_scope")?);
    let customer_cents = total("revenue_cents")?;
    check(
        "every customer once in customer_scores",
        distinct == rows,
        format!("{rows} rows, {distinct} distinct customer_id"),
    )?;
    for (name, table) in [("rfm_segments", segments), ("pyramid", pyramid)] {
        let total: i64 = table.column("customers")?.i64()?.sum().unwrap_or(0);
        check(
            &format!("{name} counts the in-scope population"),
            total == in_scope,
            format!("{total} counted, {in_scope} in scope"),
        )?;
    }
    let per_scheme = tier_summary
        .clone()
        .lazy()
        .group_by([col("scheme")])
        .agg([
            col("customers").sum().alias("n"),
            col("customer_share").sum().alias("share"),
        ])
        .sort(["scheme"], Default::default())
        .run()?;
    let schemes = per_scheme.column("scheme")?.str()?.clone();
    let ns = per_scheme.column("n")?.i64()?.clone();
    let shares = per_scheme.column("share")?.f64()?.clone();
    for i in 0..per_scheme.height() {
        let scheme = schemes.get(i).unwrap_or_default();
        // The pyramid tiers the in-scope customers, other schemes everyone.
        let population = if scheme == crate::scoring::schemes::PYRAMID {
            in_scope
        } else {
            rows
        };
        let n = ns.get(i).unwrap_or(0);
        check(
            &format!("{scheme} tier counts sum to the population"),
            n == population,
            format!("{n} tiered, population {population}"),
        )?;
        let share = shares.get(i);
        check(
            &format!("{scheme} customer shares sum to 1"),
            population == 0 || share.is_some_and(|x| (x - 1.0).abs() < 1e-9),
            format!("{share:?}"),
        )?;
    }
    check(
        "customer revenue reconciles with the ingested window total to the cent",
        customer_cents == ingested_window_cents,
        format!("{customer_cents} vs {ingested_window_cents} cents"),
    )?;
    let seg_rev: f64 = segments.column("revenue")?.f64()?.sum().unwrap_or(0.0);
    check(
        "rfm_segments revenue reconciles with customer revenue",
        (seg_rev * 100.0 - customer_cents as f64).abs() < 0.5,
        format!("{seg_rev:.2} vs {:.2}", customer_cents as f64 / 100.0),
    )?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariants of customers `ids` (all in scope, 100 cents each),
    /// with summaries that count them right.
    fn checked(ids: &[&str]) -> Result<Vec<Invariant>> {
        let n = ids.len() as i64;
        let full = df!(
            "customer_id" => ids,
            "in_scope" => vec![true; ids.len()],
            "revenue_cents" => vec![100i64; ids.len()],
        )
        .unwrap();
        let segments = df!("customers" => [n], "revenue" => [n as f64]).unwrap();
        let pyramid = df!("customers" => [n]).unwrap();
        let tiers = df!(
            "scheme" => ["pyramid"],
            "customers" => [n],
            "customer_share" => [1.0],
        )
        .unwrap();
        check_invariants(&Full::Memory(full), &segments, &pyramid, &tiers, 100 * n)
    }

    #[test]
    fn a_customer_twice_fails_in_order_or_not() {
        let once = |r: Result<Vec<Invariant>>| -> std::result::Result<String, String> {
            match r {
                Ok(held) => Ok(held[0].detail.clone()),
                Err(e) => Err(e.to_string()),
            }
        };
        // In order (checked by one pass) and out of order (counted).
        assert_eq!(
            once(checked(&["C1", "C2", "C3"])).unwrap(),
            "3 rows, 3 distinct customer_id"
        );
        assert_eq!(
            once(checked(&["C2", "C1", "C3"])).unwrap(),
            "3 rows, 3 distinct customer_id"
        );
        for twice in [["C1", "C1", "C2"], ["C2", "C1", "C2"]] {
            let e = once(checked(&twice)).unwrap_err();
            assert!(
                e.contains("every customer once") && e.contains("3 rows, 2 distinct"),
                "{e}"
            );
        }
    }
}
