//! `[measures]`, `[rfm]`, `[pyramid]`, `[[threshold_tiers]]` and
//! `[[scorecards]]`: how customers are measured and graded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tiers from ordered cut-offs on one per-customer measure, e.g. a bank's
/// star levels from star points.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdScheme {
    /// Scheme name (snake_case); columns `<name>_tier` and `<name>_value`.
    pub name: String,
    /// Any numeric column of the customer base (see README, "Measures").
    pub measure: String,
    /// Levels from the top: the first whose `min` the value reaches wins.
    pub levels: Vec<Level>,
    /// Label when no level is reached (or the value is null). Default `none`.
    #[serde(default = "default_below")]
    pub below: String,
}

fn default_below() -> String {
    "none".into()
}

/// One threshold level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub label: String,
    pub min: f64,
}

/// A points scorecard: criteria grouped into dimensions, then a tier grid
/// over the dimension totals (the seeds' loyalty × economic capability).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scorecard {
    /// Scorecard name (snake_case); columns `<name>_<dimension>_points`,
    /// `<name>_points`, `<name>_tier`.
    pub name: String,
    pub criteria: Vec<Criterion>,
    /// Ordered tier rules; the first whose minimums all hold wins.
    pub tiers: Vec<GridTier>,
    /// Tier when no rule holds.
    pub default_tier: String,
}

/// One criterion: a measure and its point bands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// Criterion name, for the manifest.
    pub name: String,
    /// Dimension (snake_case) whose total this criterion adds to.
    pub dimension: String,
    /// Any numeric column of the customer base, or a text attribute
    /// (`inputs.customers.text_attributes`) scored by `points_by_value`.
    pub measure: String,
    /// Numeric measures: bands tried in order; the first the value falls in
    /// gives its points, none (or a null value) gives 0.
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Text attributes: points per value (`{ "一级" = 30, "二级" = 20 }`); a
    /// missing value gives 0, a value not listed stops the run (exit 2).
    #[serde(default)]
    pub points_by_value: BTreeMap<String, f64>,
}

/// A value range (inclusive; either end optional) and the points it earns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Band {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    pub points: f64,
}

/// A tier of the grid: minimum points per dimension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridTier {
    pub label: String,
    /// Dimension → minimum total points.
    #[serde(default)]
    pub min: BTreeMap<String, f64>,
}

/// How per-customer measures are computed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MeasuresConfig {
    /// Look-back window in days for frequency and monetary (recency always
    /// uses all history). Default: none (all history).
    pub window_days: Option<u32>,
    /// `orders` (distinct purchase txn_ids, default) or `days` (distinct purchase days).
    pub frequency: FrequencyMode,
    /// `sum` (net amount, default) or `mean` (net amount / frequency).
    pub monetary: MonetaryMode,
    /// Interaction `outcome` values that mark a referral as converted.
    /// Default ["converted", "成交"].
    pub converted_outcomes: Vec<String>,
}

impl Default for MeasuresConfig {
    fn default() -> Self {
        MeasuresConfig {
            window_days: None,
            frequency: FrequencyMode::Orders,
            monetary: MonetaryMode::Sum,
            converted_outcomes: vec!["converted".into(), "成交".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FrequencyMode {
    #[default]
    Orders,
    Days,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MonetaryMode {
    #[default]
    Sum,
    Mean,
}

/// RFM scoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RfmConfig {
    /// Number of score bins B. Default 5.
    pub bins: u32,
    /// `quantile` (default, tie-safe ranks) or `fixed` (edges below).
    pub mode: RfmMode,
    /// Fixed-mode edges, B−1 strictly increasing values per measure.
    pub edges: Option<RfmEdges>,
    /// `english11` (default), `cn8`, or `custom` (then `rules` is used).
    pub segments: SegmentScheme,
    /// Ordered segment rules for `segments = "custom"`; first match wins.
    pub rules: Vec<SegmentRule>,
}

impl Default for RfmConfig {
    fn default() -> Self {
        RfmConfig {
            bins: 5,
            mode: RfmMode::Quantile,
            edges: None,
            segments: SegmentScheme::English11,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RfmMode {
    #[default]
    Quantile,
    Fixed,
}

/// Fixed bin edges. Recency: days (lower is better); frequency: count;
/// monetary: currency units.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RfmEdges {
    pub recency: Vec<f64>,
    pub frequency: Vec<f64>,
    pub monetary: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SegmentScheme {
    #[default]
    English11,
    Cn8,
    Custom,
}

/// One named rule. Each of r, f, m is either an inclusive score range
/// `[lo, hi]` or `"high"` / `"low"` (score above / not above the population
/// mean score). An omitted measure matches anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    pub name: String,
    #[serde(default)]
    pub r: Option<ScoreCond>,
    #[serde(default)]
    pub f: Option<ScoreCond>,
    #[serde(default)]
    pub m: Option<ScoreCond>,
}

/// A condition on one score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ScoreCond {
    Range([u32; 2]),
    Relative(Relative),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Relative {
    High,
    Low,
}

/// Contribution pyramid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PyramidConfig {
    /// `customer_share` (default: top 1% / next 4% / next 15% / rest) or
    /// `contribution_share` (Pareto ABC on cumulative share).
    pub mode: PyramidMode,
    /// Cumulative customer-share cuts in percent. Default [1, 5, 20].
    pub customer_share_cuts: Vec<f64>,
    /// Cumulative contribution-share cuts in percent. Default [80, 95].
    pub contribution_share_cuts: Vec<f64>,
    /// Tier labels, one more than the cuts of the chosen mode. Default
    /// A/B/C/D (customer share) or A/B/C (contribution share).
    pub labels: Option<Vec<String>>,
}

impl Default for PyramidConfig {
    fn default() -> Self {
        PyramidConfig {
            mode: PyramidMode::CustomerShare,
            customer_share_cuts: vec![1.0, 5.0, 20.0],
            contribution_share_cuts: vec![80.0, 95.0],
            labels: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PyramidMode {
    #[default]
    CustomerShare,
    ContributionShare,
}

impl PyramidConfig {
    /// The cuts of the chosen mode, in percent.
    pub fn cuts(&self) -> &[f64] {
        match self.mode {
            PyramidMode::CustomerShare => &self.customer_share_cuts,
            PyramidMode::ContributionShare => &self.contribution_share_cuts,
        }
    }

    /// The labels actually used (configured, or A, B, C, … by cut count).
    pub fn labels(&self) -> Vec<String> {
        match &self.labels {
            Some(l) => l.clone(),
            None => (0..=self.cuts().len())
                .map(|i| char::from(b'A' + i as u8).to_string())
                .collect(),
        }
    }
}
