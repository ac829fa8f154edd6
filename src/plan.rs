//! The heavy customer-level computation as one small typed plan, with two
//! backends: polars (the default, embedded) and Spark SQL text (sent over
//! Spark Connect with `--features spark`, or written out by `tiering plan
//! --emit spark-sql`).
//!
//! The plan yields two tables:
//! - `core`: one row per customer as of the plan's date — the measures
//!   (SPEC §3), `in_scope`, the RFM scores (tie-safe quantile or fixed
//!   edges) and the contribution pyramid (rank, cumulative share, tier);
//! - `buyers`: the year-over-year group-by under `concentration_*`: per
//!   report year, each customer who bought and their net amount.
//!
//! Both backends give the same answers: money as integer cents, ties
//! broken the same way ('min' ranks; a tie group shares its cumulative
//! share), every integer cast to 64 bits and every fraction computed in
//! doubles in the same order. `tests/spark.rs` runs both and compares
//! every column.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::{Config, FrequencyMode, MonetaryMode, PyramidMode, RfmMode};
use crate::error::{Error, Result};
use crate::io::Run;
use crate::scoring::measures;
use crate::scoring::{pyramid, rfm};
use crate::snapshot::Frames;
use crate::summaries::concentration::{self, ReportYear};

/// The columns of `core`, in order, with their (canonical) types.
pub const CORE_COLUMNS: &[(&str, Kind)] = &[
    ("customer_id", Kind::Text),
    ("region", Kind::Text),
    ("industry", Kind::Text),
    ("in_scope", Kind::Flag),
    ("first_purchase", Kind::Day),
    ("last_purchase", Kind::Day),
    ("recency_days", Kind::Int),
    ("tenure_days", Kind::Int),
    ("frequency", Kind::Int),
    ("revenue_cents", Kind::Int),
    ("monetary_cents", Kind::Int),
    ("contribution_cents", Kind::Int),
    ("window_spend_cents", Kind::Int),
    ("window_spend_prior_cents", Kind::Int),
    ("median_gap_days", Kind::Real),
    ("units_bought", Kind::Real),
    ("r_score", Kind::Int),
    ("f_score", Kind::Int),
    ("m_score", Kind::Int),
    ("contribution_rank", Kind::Int),
    ("cum_contribution_share", Kind::Real),
    ("pyramid_tier", Kind::Text),
];

/// The columns of `buyers`.
pub const BUYERS_COLUMNS: &[(&str, Kind)] = &[
    ("year", Kind::Int),
    ("customer_id", Kind::Text),
    ("year_cents", Kind::Int),
];

/// A column's canonical type: what both backends' results are cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Flag,
    Day,
    Int,
    Real,
}

impl Kind {
    pub fn dtype(self) -> DataType {
        match self {
            Kind::Text => DataType::String,
            Kind::Flag => DataType::Boolean,
            Kind::Day => DataType::Date,
            Kind::Int => DataType::Int64,
            Kind::Real => DataType::Float64,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::Text => "STRING",
            Kind::Flag => "BOOLEAN",
            Kind::Day => "DATE",
            Kind::Int => "BIGINT",
            Kind::Real => "DOUBLE",
        }
    }
}

/// RFM scoring as the plan carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scoring {
    Quantile,
    /// Fixed edges for recency, frequency, monetary (monetary in cents).
    Fixed([Vec<f64>; 3]),
}

/// The customer-level computation of one snapshot date.
#[derive(Debug, Clone)]
pub struct CustomerPlan {
    pub as_of: NaiveDate,
    pub window_days: Option<u32>,
    pub frequency: FrequencyMode,
    pub monetary: MonetaryMode,
    pub has_margin: bool,
    pub has_quantity: bool,
    pub unknown_label: String,
    pub bins: u32,
    pub scoring: Scoring,
    pub pyramid_mode: PyramidMode,
    /// Cuts in percent and labels (one more than the cuts), best first.
    pub pyramid_cuts: Vec<f64>,
    pub pyramid_labels: Vec<String>,
    pub report_years: Vec<ReportYear>,
}

/// Where the Spark backend reads the typed inputs (paths Spark can reach).
#[derive(Debug, Clone)]
pub struct Sources {
    /// Typed transactions, or (with `pre_aggregated`) their customer × day
    /// pre-aggregate as [`CustomerPlan::daily_sql`] makes it.
    pub transactions: Relation,
    pub customers: String,
    pub pre_aggregated: bool,
}

/// What Spark reads a table from.
#[derive(Debug, Clone)]
pub enum Relation {
    /// Parquet file(s) at a path (a file, a directory or a glob).
    Parquet(String),
    /// A temporary view of the session.
    View(String),
}

impl Relation {
    /// The relation in a `FROM` clause.
    fn sql(&self) -> Result<String> {
        match self {
            Relation::Parquet(path) => Ok(format!("parquet.{}", quoted_path(path)?)),
            Relation::View(name) => Ok(name.clone()),
        }
    }
}

/// The columns of [`CustomerPlan::buyers_by_window_spark_sql`]:
/// the window's index, then as [`BUYERS_COLUMNS`].
pub const WINDOW_BUYERS_COLUMNS: &[(&str, Kind)] = &[
    ("__window", Kind::Int),
    ("customer_id", Kind::Text),
    ("year_cents", Kind::Int),
];

/// The per-customer measures [`CustomerPlan::measures_by_date_spark_sql`] gives, as
/// [`measures_from_core`] reads them: `core`'s columns up to the scores,
/// without the customer attributes.
pub fn measure_columns() -> Vec<(&'static str, Kind)> {
    CORE_COLUMNS
        .iter()
        .take_while(|(n, _)| *n != "r_score")
        .filter(|(n, _)| !["region", "industry"].contains(n))
        .copied()
        .collect()
}

impl CustomerPlan {
    pub fn new(cfg: &Config, as_of: NaiveDate, has_margin: bool, has_quantity: bool) -> Self {
        let scoring = match (&cfg.rfm.mode, &cfg.rfm.edges) {
            (RfmMode::Fixed, Some(e)) => Scoring::Fixed([
                e.recency.clone(),
                e.frequency.clone(),
                e.monetary.iter().map(|x| x * 100.0).collect(),
            ]),
            _ => Scoring::Quantile,
        };
        CustomerPlan {
            as_of,
            window_days: cfg.measures.window_days,
            frequency: cfg.measures.frequency,
            monetary: cfg.measures.monetary,
            has_margin,
            has_quantity,
            unknown_label: cfg.ingest.unknown_label.clone(),
            bins: cfg.rfm.bins,
            scoring,
            pyramid_mode: cfg.pyramid.mode,
            pyramid_cuts: cfg.pyramid.cuts().to_vec(),
            pyramid_labels: cfg.pyramid.labels(),
            report_years: concentration::report_years(as_of, &cfg.concentration),
        }
    }

    /// The polars backend: `core` and `buyers`, canonical types, sorted.
    pub fn polars(&self, f: &Frames, cfg: &Config) -> Result<(DataFrame, DataFrame)> {
        let m = f.per_customer(|d, keys| {
            measures::measures_from_daily(
                d,
                keys,
                self.as_of,
                &cfg.measures,
                self.has_margin,
                self.has_quantity,
            )
        })?;
        let b = measures::customer_base(m, f.customers.clone(), &self.unknown_label)
            .with_columns(rfm::score_exprs(&cfg.rfm));
        let core = canonical(pyramid::assign(b, &cfg.pyramid)?, CORE_COLUMNS)
            .sort(["customer_id"], SortMultipleOptions::default())
            .run()?;
        let mut years = Vec::new();
        for ry in &self.report_years {
            years.push(
                f.per_customer(|d, keys| concentration::buyers(d, keys, ry))?
                    .with_column(lit(ry.year).alias("year")),
            );
        }
        let buyers = canonical(concat(years, UnionArgs::default())?, BUYERS_COLUMNS)
            .sort(["year", "customer_id"], SortMultipleOptions::default())
            .run()?;
        Ok((core, buyers))
    }

    /// The Spark SQL backend: (`core`, `buyers`) as two SELECT statements
    /// over the typed Parquet files.
    pub fn spark_sql(&self, src: &Sources) -> Result<(String, String)> {
        let daily = self.daily_sql(src)?;
        let core = format!(
            "WITH {daily},\n{measures},\n{base},\n{scored},\n{pyramid}\nSELECT {cols}\nFROM pyramid\nORDER BY customer_id",
            measures = self.measures_sql(),
            base = self.base_sql(src)?,
            scored = self.scores_sql(),
            pyramid = self.pyramid_sql(),
            cols = select_list(CORE_COLUMNS),
        );
        Ok((core, self.buyers_sql(&daily)))
    }

    /// `buyers` (per report year, each customer who bought and their net
    /// amount) over the `daily` CTE.
    fn buyers_sql(&self, daily: &str) -> String {
        let years: Vec<String> = self
            .report_years
            .iter()
            .map(|ry| {
                format!(
                    "SELECT {year} AS year, customer_id, SUM(net_cents) AS year_cents\n  FROM daily\n  WHERE ts BETWEEN {start} AND {end}\n  GROUP BY customer_id\n  HAVING SUM(purchases) > 0",
                    year = ry.year,
                    start = date(ry.start),
                    end = date(ry.tiered_at),
                )
            })
            .collect();
        format!(
            "WITH {daily},\nyears AS (\n  {union}\n)\nSELECT {cols}\nFROM years\nORDER BY year, customer_id",
            union = years.join("\n  UNION ALL\n  "),
            cols = select_list(BUYERS_COLUMNS),
        )
    }

    /// For each window (first day, last day) of `windows`, none after the
    /// plan's date, every customer who bought in it and their net amount
    /// in it ([`WINDOW_BUYERS_COLUMNS`], by window then customer), in one
    /// pass over a pre-aggregate: the concentration buyers of the report
    /// years that end there.
    pub fn buyers_by_window_spark_sql(
        &self,
        windows: &[(NaiveDate, NaiveDate)],
        src: &Sources,
    ) -> Result<String> {
        let daily = self.daily_sql(src)?;
        let mut sums = Vec::new();
        let mut stacked = Vec::new();
        for (i, (start, end)) in windows.iter().enumerate() {
            let within = format!("ts BETWEEN {} AND {}", date(*start), date(*end));
            sums.push(format!(
                "SUM(CASE WHEN {within} THEN net_cents END) AS cents_{i}"
            ));
            sums.push(format!(
                "SUM(CASE WHEN {within} THEN purchases END) AS bought_{i}"
            ));
            stacked.push(format!("{i}, cents_{i}, bought_{i}"));
        }
        Ok(format!(
            "WITH {daily},\n\
             agg AS (\n  SELECT customer_id,\n    {sums}\n  FROM daily GROUP BY customer_id\n)\n\
             SELECT {cols}\nFROM (SELECT customer_id, stack({n},\n    {stacked}) AS (__window, year_cents, bought)\n  FROM agg)\n\
             WHERE bought > 0\nORDER BY __window, customer_id",
            sums = sums.join(",\n    "),
            n = windows.len(),
            stacked = stacked.join(",\n    "),
            cols = select_list(WINDOW_BUYERS_COLUMNS),
        ))
    }

    /// As one row, for each date of `dates` (none after the plan's date),
    /// the net amount inside its measures window (`window_cents_<i>`), in
    /// one pass over a pre-aggregate: the reconciliation invariant's total.
    pub fn window_totals_spark_sql(&self, dates: &[NaiveDate], src: &Sources) -> Result<String> {
        let totals: Vec<String> = dates
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let window = match self.window_days {
                    Some(w) => format!("DATEDIFF({}, ts) < {w}", date(*d)),
                    None => "TRUE".into(),
                };
                format!(
                    "CAST(COALESCE(SUM(CASE WHEN ts <= {} AND {window} THEN net_cents ELSE 0 END), 0) AS BIGINT) AS window_cents_{i}",
                    date(*d)
                )
            })
            .collect();
        Ok(format!(
            "WITH {}\nSELECT {} FROM daily",
            self.daily_sql(src)?,
            totals.join(",\n  ")
        ))
    }

    /// Transactions on or before the date, per customer and day.
    fn daily_sql(&self, src: &Sources) -> Result<String> {
        if src.pre_aggregated {
            return Ok(format!(
                "daily AS (\n  SELECT * FROM {from} WHERE ts <= {as_of}\n)",
                from = src.transactions.sql()?,
                as_of = date(self.as_of),
            ));
        }
        Ok(format!(
            "daily AS (\n  SELECT customer_id, ts, {aggs}\n  FROM (SELECT {cols} FROM {from} WHERE ts <= {as_of})\n  GROUP BY customer_id, ts\n)",
            aggs = self.daily_aggregates().join(",\n    "),
            cols = self.daily_inputs().join(", "),
            from = src.transactions.sql()?,
            as_of = date(self.as_of),
        ))
    }

    /// The typed transaction columns the pre-aggregate reads.
    pub fn daily_inputs(&self) -> Vec<&'static str> {
        let mut cols = vec!["customer_id", "ts", "amount_cents"];
        if self.has_margin {
            cols.push("margin_cents");
        }
        if self.has_quantity {
            cols.push("quantity");
        }
        cols
    }

    /// The pre-aggregate's columns (after customer_id and ts), as
    /// aggregations of the typed transactions.
    pub fn daily_aggregates(&self) -> Vec<String> {
        let mut aggs = vec![
            "CAST(SUM(CASE WHEN amount_cents > 0 THEN 1 ELSE 0 END) AS BIGINT) AS purchases"
                .to_string(),
            "SUM(amount_cents) AS net_cents".to_string(),
        ];
        if self.has_margin {
            aggs.push("COALESCE(SUM(margin_cents), 0) AS margin_cents".into());
        }
        if self.has_quantity {
            aggs.push(
                "COALESCE(SUM(CASE WHEN amount_cents > 0 THEN CAST(quantity AS DOUBLE) END), CAST(0 AS DOUBLE)) AS units"
                    .into(),
            );
        }
        aggs
    }

    /// The per-customer aggregates of the measures as of `d` (a SQL date),
    /// as (expression, name): over every row of `daily` (`within` None), or
    /// over the rows where `within` holds (the one-pass query of several
    /// dates, [`CustomerPlan::measures_by_date_spark_sql`]).
    fn measure_aggs(&self, d: &str, within: Option<&str>) -> Vec<(String, &'static str)> {
        let when = |c: &str| match within {
            Some(w) => format!("{w} AND {c}"),
            None => c.to_string(),
        };
        let window = when(&match self.window_days {
            Some(w) => format!("DATEDIFF({d}, ts) < {w}"),
            None => "TRUE".into(),
        });
        let span = self.window_days.unwrap_or(365);
        let age = format!("DATEDIFF({d}, ts)");
        let freq_term = match self.frequency {
            FrequencyMode::Orders => "purchases",
            FrequencyMode::Days => "CASE WHEN purchases > 0 THEN 1 ELSE 0 END",
        };
        let ts = match within {
            Some(w) => format!("CASE WHEN {w} THEN ts END"),
            None => "ts".into(),
        };
        let purchase = when("purchases > 0");
        vec![
            (
                format!("COALESCE(MIN(CASE WHEN {purchase} THEN ts END), MIN({ts}))"),
                "first_purchase",
            ),
            (
                format!("COALESCE(MAX(CASE WHEN {purchase} THEN ts END), MAX({ts}))"),
                "last_purchase",
            ),
            (
                format!("CAST(SUM(CASE WHEN {window} THEN {freq_term} ELSE 0 END) AS BIGINT)"),
                "frequency",
            ),
            (
                format!("SUM(CASE WHEN {window} THEN net_cents ELSE 0 END)"),
                "revenue_cents",
            ),
            (
                format!(
                    "SUM(CASE WHEN {} THEN net_cents ELSE 0 END)",
                    when(&format!("{age} < {span}"))
                ),
                "window_spend_cents",
            ),
            (
                format!(
                    "SUM(CASE WHEN {} THEN net_cents ELSE 0 END)",
                    when(&format!("{age} >= 365 AND {age} < {}", 365 + span))
                ),
                "window_spend_prior_cents",
            ),
            (
                format!(
                    "SUM(CASE WHEN {window} THEN {} ELSE 0 END)",
                    if self.has_margin {
                        "margin_cents"
                    } else {
                        "net_cents"
                    }
                ),
                "contribution_cents",
            ),
            (
                match (self.has_quantity, within) {
                    (false, _) => "CAST(NULL AS DOUBLE)".into(),
                    (true, None) => "SUM(units)".into(),
                    (true, Some(w)) => format!("SUM(CASE WHEN {w} THEN units END)"),
                },
                "units_bought",
            ),
        ]
    }

    /// `monetary_cents` from `frequency` and `revenue_cents`.
    fn monetary_sql(&self) -> &'static str {
        match self.monetary {
            MonetaryMode::Sum => "revenue_cents",
            MonetaryMode::Mean => {
                "CASE WHEN frequency > 0 THEN CAST(ROUND(CAST(revenue_cents AS DOUBLE) / CAST(frequency AS DOUBLE)) AS BIGINT) ELSE revenue_cents END"
            }
        }
    }

    /// Per-customer measures from `daily` (see [`measures::measures_from_daily`]).
    fn measures_sql(&self) -> String {
        let aggs: Vec<String> = self
            .measure_aggs(&date(self.as_of), None)
            .into_iter()
            .map(|(e, n)| format!("{e} AS {n}"))
            .collect();
        format!(
            "gaps AS (\n  SELECT customer_id, CAST(DATEDIFF(ts, LAG(ts) OVER (PARTITION BY customer_id ORDER BY ts)) AS DOUBLE) AS gap\n  FROM daily WHERE purchases > 0\n),\n\
             measures AS (\n  SELECT agg.*, {monetary} AS monetary_cents, g.median_gap_days\n  FROM (SELECT customer_id,\n    {aggs}\n    FROM daily GROUP BY customer_id) agg\n  LEFT JOIN (SELECT customer_id, MEDIAN(gap) AS median_gap_days FROM gaps GROUP BY customer_id) g\n    ON agg.customer_id = g.customer_id\n)",
            monetary = self.monetary_sql(),
            aggs = aggs.join(",\n    "),
        )
    }

    /// The measures ([`measure_columns`]) of every customer with a
    /// transaction on or before each date of `dates` (none after the plan's
    /// date), over a pre-aggregate, in one pass: each row is tagged with its
    /// date (`__date`). One
    /// aggregation per customer computes every date's measures from the
    /// rows on or before it. A purchase day's gap to the customer's
    /// previous purchase day does not depend on the date, so one window
    /// gives every date's gaps. A customer has a row for a date when it
    /// has a transaction on or before it.
    pub fn measures_by_date_spark_sql(&self, dates: &[NaiveDate], src: &Sources) -> Result<String> {
        let mut aggs = Vec::new();
        let mut stacked = Vec::new();
        let mut names = Vec::new();
        for (i, d) in dates.iter().enumerate() {
            let d = date(*d);
            let within = format!("ts <= {d}");
            let mut row = vec![d.clone()];
            for (e, n) in self.measure_aggs(&d, Some(&within)) {
                aggs.push(format!("{e} AS {n}_{i}"));
                row.push(format!("{n}_{i}"));
                if i == 0 {
                    names.push(n);
                }
            }
            aggs.push(format!(
                "MEDIAN(CASE WHEN {within} THEN gap END) AS median_gap_days_{i}"
            ));
            row.push(format!("median_gap_days_{i}"));
            stacked.push(row.join(", "));
        }
        let names = names.join(", ");
        Ok(format!(
            "WITH {daily},\n\
             gaps AS (\n  SELECT *, CASE WHEN purchases > 0 THEN CAST(DATEDIFF(ts, LAG(ts) OVER (PARTITION BY customer_id, purchases > 0 ORDER BY ts)) AS DOUBLE) END AS gap\n  FROM daily\n),\n\
             agg AS (\n  SELECT customer_id,\n    {aggs}\n  FROM gaps GROUP BY customer_id\n),\n\
             dated AS (\n  SELECT customer_id, stack({n},\n    {stacked}) AS (__date, {names}, median_gap_days)\n  FROM agg\n)\n\
             SELECT CAST(__date AS DATE) AS __date, {cols}\n\
             FROM (SELECT *, {monetary} AS monetary_cents, TRUE AS in_scope,\n    CAST(DATEDIFF(__date, last_purchase) AS BIGINT) AS recency_days,\n    CAST(DATEDIFF(__date, first_purchase) AS BIGINT) AS tenure_days\n  FROM dated WHERE first_purchase IS NOT NULL)",
            daily = self.daily_sql(src)?,
            aggs = aggs.join(",\n    "),
            n = dates.len(),
            stacked = stacked.join(",\n    "),
            monetary = self.monetary_sql(),
            cols = select_list(&measure_columns()),
        ))
    }

    /// Every customer once (see [`measures::customer_base`]).
    fn base_sql(&self, src: &Sources) -> Result<String> {
        let unknown = text(&self.unknown_label);
        let as_of = date(self.as_of);
        Ok(format!(
            "base AS (\n  SELECT COALESCE(m.customer_id, c.customer_id) AS customer_id,\n    COALESCE(c.region, {unknown}) AS region,\n    COALESCE(c.industry, {unknown}) AS industry,\n    m.first_purchase IS NOT NULL AS in_scope,\n    m.first_purchase, m.last_purchase,\n    CAST(DATEDIFF({as_of}, m.last_purchase) AS BIGINT) AS recency_days,\n    CAST(DATEDIFF({as_of}, m.first_purchase) AS BIGINT) AS tenure_days,\n    COALESCE(m.frequency, 0) AS frequency,\n    COALESCE(m.revenue_cents, 0) AS revenue_cents,\n    COALESCE(m.monetary_cents, 0) AS monetary_cents,\n    COALESCE(m.contribution_cents, 0) AS contribution_cents,\n    COALESCE(m.window_spend_cents, 0) AS window_spend_cents,\n    COALESCE(m.window_spend_prior_cents, 0) AS window_spend_prior_cents,\n    m.median_gap_days, m.units_bought\n  FROM measures m\n  FULL OUTER JOIN (SELECT customer_id, region, industry FROM parquet.{path}) c\n    ON m.customer_id = c.customer_id\n)",
            path = quoted_path(&src.customers)?,
        ))
    }

    /// r/f/m scores (see [`rfm::score_exprs`]).
    fn scores_sql(&self) -> String {
        let b = self.bins;
        let measures = [
            ("r_score", "recency_days", false),
            ("f_score", "frequency", true),
            ("m_score", "monetary_cents", true),
        ];
        let scores: Vec<String> = measures
            .iter()
            .enumerate()
            .map(|(i, (name, column, higher))| {
                let v = format!("CASE WHEN in_scope THEN {column} END");
                let score = match &self.scoring {
                    Scoring::Quantile => format!(
                        "CAST(((RANK() OVER (ORDER BY {v} {dir} NULLS LAST) - 1) * {b}) DIV COUNT({v}) OVER () + 1 AS BIGINT)",
                        dir = if *higher { "ASC" } else { "DESC" },
                    ),
                    Scoring::Fixed(edges) => {
                        let x = format!("CAST({column} AS DOUBLE)");
                        let hits: Vec<String> = edges[i]
                            .iter()
                            .map(|e| {
                                let op = if *higher { ">=" } else { ">" };
                                format!("CASE WHEN {x} {op} {} THEN 1 ELSE 0 END", double(*e))
                            })
                            .collect();
                        let passed = if hits.is_empty() {
                            "0".to_string()
                        } else {
                            hits.join(" + ")
                        };
                        if *higher {
                            format!("CAST(1 + {passed} AS BIGINT)")
                        } else {
                            format!("CAST({b} - ({passed}) AS BIGINT)")
                        }
                    }
                };
                format!("CASE WHEN {v} IS NULL THEN NULL ELSE {score} END AS {name}")
            })
            .collect();
        format!(
            "scored AS (\n  SELECT *,\n    {}\n  FROM base\n)",
            scores.join(",\n    ")
        )
    }

    /// Rank, cumulative share and tier (see [`pyramid::assign`]): a tie
    /// group shares the cumulative share of the whole group.
    fn pyramid_sql(&self) -> String {
        let order = "ORDER BY c DESC NULLS LAST";
        let last = text(self.pyramid_labels.last().map_or("", String::as_str));
        let (position, scale) = match self.pyramid_mode {
            PyramidMode::CustomerShare => (
                "CAST(contribution_rank - 1 AS DOUBLE) * CAST(100 AS DOUBLE)",
                "n",
            ),
            PyramidMode::ContributionShare => (
                "CAST(cum_group - group_pos AS DOUBLE) * CAST(100 AS DOUBLE)",
                "CAST(total AS DOUBLE)",
            ),
        };
        let mut tier = format!("CASE WHEN c IS NULL THEN NULL WHEN c <= 0 THEN {last}");
        for (cut, label) in self.pyramid_cuts.iter().zip(&self.pyramid_labels) {
            tier.push_str(&format!(
                " WHEN {position} < {} * {scale} THEN {}",
                double(*cut),
                text(label)
            ));
        }
        tier.push_str(&format!(" ELSE {last} END"));
        format!(
            "ranked AS (\n  SELECT *,\n    SUM(pos) OVER ({order} RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum_group,\n    SUM(pos) OVER (PARTITION BY c) AS group_pos,\n    SUM(pos) OVER () AS total,\n    CASE WHEN c IS NULL THEN NULL ELSE CAST(RANK() OVER ({order}) AS BIGINT) END AS contribution_rank,\n    CAST(COUNT(c) OVER () AS DOUBLE) AS n\n  FROM (SELECT *, CASE WHEN c > 0 THEN c ELSE 0 END AS pos\n        FROM (SELECT *, CASE WHEN in_scope THEN contribution_cents END AS c FROM scored))\n),\n\
             pyramid AS (\n  SELECT *,\n    CASE WHEN in_scope AND total > 0 THEN CAST(cum_group AS DOUBLE) / CAST(total AS DOUBLE) END AS cum_contribution_share,\n    {tier} AS pyramid_tier\n  FROM ranked\n)"
        )
    }
}

/// The measures part of a `core` table (or of [`measure_columns`]), shaped
/// as [`measures::measures_from_daily`] gives it (customers with
/// transactions only), so scoring can start from measures another backend
/// computed.
pub fn measures_from_core(core: &DataFrame) -> Result<DataFrame> {
    let int32 = |c: &str| col(c).cast(DataType::Int32);
    Ok(core
        .clone()
        .lazy()
        .filter(col("in_scope"))
        .select([
            col("customer_id"),
            col("first_purchase"),
            col("last_purchase"),
            int32("recency_days"),
            col("frequency"),
            col("revenue_cents"),
            col("monetary_cents"),
            int32("tenure_days"),
            col("contribution_cents"),
            col("window_spend_cents"),
            col("window_spend_prior_cents"),
            col("median_gap_days"),
            col("units_bought"),
        ])
        .run()?)
}

/// Casts and orders a frame's columns to the canonical list.
fn canonical(lf: LazyFrame, columns: &[(&str, Kind)]) -> LazyFrame {
    lf.select(
        columns
            .iter()
            .map(|(n, k)| col(*n).cast(k.dtype()))
            .collect::<Vec<_>>(),
    )
}

fn select_list(columns: &[(&str, Kind)]) -> String {
    columns
        .iter()
        .map(|(n, k)| format!("CAST({n} AS {}) AS {n}", k.sql()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn date(d: NaiveDate) -> String {
    format!("DATE'{}'", d.format("%Y-%m-%d"))
}

/// A SQL string literal.
pub(crate) fn text(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A double literal that parses to exactly `x` (Spark reads `1.5` as a
/// decimal, so the text is cast).
pub(crate) fn double(x: f64) -> String {
    format!("CAST('{x:?}' AS DOUBLE)")
}

/// A path in backquotes for `parquet.`…``; a backquote in it is refused.
pub(crate) fn quoted_path(path: &str) -> Result<String> {
    if path.contains('`') {
        return Err(Error::Usage(format!(
            "{path}: a path with a backquote cannot be read by the Spark backend"
        )));
    }
    Ok(format!("`{path}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CustomerPlan {
        let cfg = Config::default();
        CustomerPlan::new(
            &cfg,
            NaiveDate::from_ymd_opt(2010, 12, 31).unwrap(),
            true,
            false,
        )
    }

    #[test]
    fn literals_are_exact_and_quoted() {
        assert_eq!(double(0.1), "CAST('0.1' AS DOUBLE)");
        assert_eq!(double(1e20), "CAST('1e20' AS DOUBLE)");
        assert_eq!("1e20".parse::<f64>().unwrap(), 1e20);
        assert_eq!(text("it's"), "'it\\'s'");
        assert!(quoted_path("/a/`b").is_err());
    }

    #[test]
    fn the_sql_follows_the_configuration() {
        let src = Sources {
            transactions: Relation::Parquet("/d/t.parquet".into()),
            customers: "/d/c.parquet".into(),
            pre_aggregated: false,
        };
        let (core, buyers) = plan().spark_sql(&src).unwrap();
        // Default pyramid: customer share, cuts 1/5/20, labels A..D.
        assert!(core.contains("WHEN CAST(contribution_rank - 1 AS DOUBLE) * CAST(100 AS DOUBLE) < CAST('1.0' AS DOUBLE) * n THEN 'A'"), "{core}");
        assert!(core.contains("ELSE 'D' END AS pyramid_tier"));
        // Quantile scores, recency ranked worst (largest) first.
        assert!(core.contains(
            "RANK() OVER (ORDER BY CASE WHEN in_scope THEN recency_days END DESC NULLS LAST)"
        ));
        assert!(core.contains("FROM parquet.`/d/t.parquet` WHERE ts <= DATE'2010-12-31'"));
        assert!(core.contains("margin_cents"));
        // Default concentration: two report years plus the base year.
        assert_eq!(
            buyers.matches("UNION ALL").count(),
            plan().report_years.len() - 1
        );
        assert!(buyers.contains("WHERE ts BETWEEN DATE'2010-01-01' AND DATE'2010-12-31'"));
        // A pre-aggregate in a view (the store's on Spark) is read as given.
        let pre = Sources {
            transactions: Relation::View("__v".into()),
            customers: String::new(),
            pre_aggregated: true,
        };
        let d = |m| NaiveDate::from_ymd_opt(2010, m, 30).unwrap();
        let measures = plan()
            .measures_by_date_spark_sql(&[d(6), d(9)], &pre)
            .unwrap();
        assert!(
            measures.contains("daily AS (\n  SELECT * FROM __v WHERE ts <= DATE'2010-12-31'\n)")
        );
        // Each date's measures over the rows on or before it, side by side
        // (no window by default), then one row per customer and date.
        assert!(
            measures.contains("CAST(SUM(CASE WHEN ts <= DATE'2010-09-30' AND TRUE THEN purchases ELSE 0 END) AS BIGINT) AS frequency_1"),
            "{measures}"
        );
        assert!(measures.contains(
            "MEDIAN(CASE WHEN ts <= DATE'2010-06-30' THEN gap END) AS median_gap_days_0"
        ));
        assert!(measures.contains("stack(2,\n    DATE'2010-06-30', first_purchase_0, "));
    }
}
