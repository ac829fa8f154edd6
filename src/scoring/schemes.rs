//! The tier vocabulary every summary stage shares: a tier scheme (its
//! column and labels, best first), the schemes a configuration defines, a
//! label's rank, and `tier_summary`.

use polars::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::io::Run;
use crate::scoring::{table, tiers};

/// A tier scheme: its column in `customer_scores` and its labels, best first.
#[derive(Debug, Clone)]
pub struct TierScheme {
    pub name: String,
    pub column: String,
    pub labels: Vec<String>,
}

/// The contribution pyramid's scheme name: its tiers read only the
/// transactions (in-scope customers and their contribution).
pub const PYRAMID: &str = "pyramid";

/// Every tier scheme of the configuration, pyramid first.
pub fn tier_schemes(cfg: &Config) -> Vec<TierScheme> {
    let mut v = vec![TierScheme {
        name: PYRAMID.into(),
        column: "pyramid_tier".into(),
        labels: cfg.pyramid.labels(),
    }];
    for t in &cfg.threshold_tiers {
        v.push(TierScheme {
            name: t.name.clone(),
            column: format!("{}_tier", t.name),
            labels: tiers::threshold_labels(t),
        });
    }
    for s in &cfg.scorecards {
        v.push(TierScheme {
            name: s.name.clone(),
            column: format!("{}_tier", s.name),
            labels: tiers::scorecard_labels(s),
        });
    }
    v
}

/// The scheme called `name` (validated in the configuration).
pub fn scheme(cfg: &Config, name: &str) -> Result<TierScheme> {
    tier_schemes(cfg)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::invalid("tier", format!("unknown tier scheme '{name}'")))
}

/// The position of a tier label in its scheme (0 = best); null otherwise.
pub fn tier_order(column: &str, labels: &[String]) -> Expr {
    let mut e = lit(NULL).cast(DataType::Int32);
    for (i, l) in labels.iter().enumerate().rev() {
        e = when(col(column).eq(lit(l.as_str())))
            .then(lit(i as i32))
            .otherwise(e);
    }
    e
}

/// Each row's tier in `column` as its label's position in `labels`,
/// `labels.len()` for none; `None` when a tier is not among the labels,
/// the column is not text, or there are too many labels for a byte.
/// Summaries that count customers per tier walk these instead of hashing
/// the text.
pub fn label_positions(column: &Column, labels: &[String]) -> Option<Vec<u8>> {
    let n = labels.len();
    if n >= u8::MAX as usize {
        return None;
    }
    let t = column.str().ok()?;
    // Labels of up to 12 bytes as the integers their views hold
    // ([`crate::order::inline_key`]): a row's tier is then matched without
    // a memcmp call per label (~1% of a night's CPU in the concentration
    // summary).
    let keys: Vec<Option<u128>> = labels
        .iter()
        .map(|l| {
            let b = l.as_bytes();
            (b.len() <= polars_arrow::array::View::MAX_INLINE_SIZE as usize)
                .then(|| crate::order::inline_key(polars_arrow::array::View::new_inline(b)))
                .flatten()
        })
        .collect();
    use polars_arrow::array::Array as _;
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(t.len());
    for a in t.downcast_iter() {
        let valid = a.validity();
        // Rows in stretches on the pool: a summary's walk waits for them.
        let positions: Option<Vec<u8>> = a
            .views()
            .par_iter()
            .with_min_len(1 << 15)
            .enumerate()
            .map(|(i, view)| {
                if valid.is_some_and(|v| !v.get_bit(i)) {
                    return Some(n as u8);
                }
                let at = match crate::order::inline_key(*view) {
                    Some(k) => keys.iter().position(|l| *l == Some(k)),
                    // Too long to be any inline label: compared as text.
                    None => labels.iter().position(|l| l == a.value(i)),
                };
                Some(at? as u8)
            })
            .collect();
        out.extend(positions?);
    }
    Some(out)
}

/// `tier_summary`: per scheme and tier (in label order), customers,
/// customer share, revenue and revenue share among customers with a tier.
pub fn tier_summary(full: LazyFrame, schemes: &[TierScheme]) -> Result<DataFrame> {
    let mut parts = Vec::new();
    for s in schemes {
        let tiered = full
            .clone()
            .filter(col(s.column.as_str()).is_not_null())
            .select([col(s.column.as_str()).alias("tier"), col("revenue_cents")]);
        parts.push(
            table::per_label(tiered, "tier", &s.labels, "revenue", vec![], None)?.select([
                lit(s.name.as_str()).alias("scheme"),
                col("tier"),
                col(table::ORDER).cast(DataType::Int32).alias("tier_order"),
                col("customers"),
                col("customer_share"),
                col("revenue"),
                col("revenue_share"),
            ]),
        );
    }
    Ok(concat(parts, UnionArgs::default())?.run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_positions_match_short_and_long_labels_through_chunks() {
        let labels: Vec<String> = ["A", "twelve bytes", "thirteen byte", "重要价值客户"]
            .map(String::from)
            .to_vec();
        let mut c = Column::new(
            "tier".into(),
            [Some("twelve bytes"), None, Some("A"), Some("重要价值客户")],
        );
        c.append(&Column::new(
            "tier".into(),
            [Some("thirteen byte"), Some("A")],
        ))
        .unwrap();
        assert_eq!(label_positions(&c, &labels), Some(vec![1, 4, 0, 3, 2, 0]));
        // Not a label: a prefix of one, and one of them a byte longer.
        for stray in ["twelve byte", "twelve bytes!", "重要价值客"] {
            let c = Column::new("tier".into(), [Some("A"), Some(stray)]);
            assert_eq!(label_positions(&c, &labels), None, "{stray}");
        }
    }
}
