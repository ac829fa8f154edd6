//! `[churn]`, `[concentration]`, `[follow_up]` and `[migration]`: the
//! summary stages built on the grades.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Churn status thresholds (fixed days on recency).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// `fixed` (default: the day thresholds below) or `cadence` (multiples
    /// of the customer's own median gap between purchase days, the fixed
    /// days for customers with a single purchase day).
    pub mode: ChurnMode,
    /// Recency above this is `sleeping`. Default 90.
    pub sleeping_days: u32,
    /// Recency above this is `lost`. Default 180.
    pub lost_days: u32,
    /// Cadence mode: sleeping after this many median gaps. Default 2.
    pub sleeping_multiple: f64,
    /// Cadence mode: lost after this many median gaps. Default 4.
    pub lost_multiple: f64,
    /// `declining` when window spend fell by more than this fraction against
    /// the same window a year earlier. Default 0.3.
    pub declining_drop: f64,
    /// Tier scheme of `churn_summary`. Default `pyramid`.
    pub tier: String,
    /// Customer columns `churn_summary` breaks down by. Default region, industry.
    pub dimensions: Vec<String>,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            mode: ChurnMode::Fixed,
            sleeping_days: 90,
            lost_days: 180,
            sleeping_multiple: 2.0,
            lost_multiple: 4.0,
            declining_drop: 0.3,
            tier: "pyramid".into(),
            dimensions: default_dimensions(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChurnMode {
    #[default]
    Fixed,
    Cadence,
}

fn default_dimensions() -> Vec<String> {
    vec!["region".into(), "industry".into()]
}

/// Year-over-year concentration by dimension (SPEC §6).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConcentrationConfig {
    /// Customer columns; one table `concentration_<dimension>` each.
    /// Default region, industry.
    pub dimensions: Vec<String>,
    /// Tier scheme the customers are counted by. Default `pyramid`.
    pub tier: String,
    /// Report years, ending with the (fiscal) year of the as-of date. Default 2.
    pub years: u32,
    /// Last day of the fiscal year, `MM-DD`. Default `12-31` (calendar years).
    /// A fiscal year is named after the calendar year it ends in.
    pub fiscal_year_end: String,
    /// k of CR-k. Default 3.
    pub top_k: u32,
    /// Tier label of the all-tiers rows (the seeds' 合计). Default `ALL`.
    pub total_label: String,
}

impl Default for ConcentrationConfig {
    fn default() -> Self {
        ConcentrationConfig {
            dimensions: default_dimensions(),
            tier: "pyramid".into(),
            years: 2,
            fiscal_year_end: "12-31".into(),
            top_k: 3,
            total_label: "ALL".into(),
        }
    }
}

impl ConcentrationConfig {
    /// (month, day) of the fiscal year end.
    pub fn year_end(&self) -> Option<(u32, u32)> {
        let (m, d) = self.fiscal_year_end.split_once('-')?;
        let (m, d) = (m.parse().ok()?, d.parse().ok()?);
        // Any year that is not a leap year validates the day.
        NaiveDate::from_ymd_opt(2001, m, d).map(|_| (m, d))
    }
}

/// Follow-up compliance: required contact cadence per tier (SPEC §7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FollowUpConfig {
    /// Tier scheme the cadence depends on. Default `pyramid`.
    pub tier: String,
    /// A call at least every this many days. Default 30 (the seeds: monthly).
    pub call_days: u32,
    /// A visit at least every this many days. Default 90 (every three months).
    pub visit_days: u32,
    /// Per-tier overrides.
    pub rules: Vec<FollowUpRule>,
}

impl Default for FollowUpConfig {
    fn default() -> Self {
        FollowUpConfig {
            tier: "pyramid".into(),
            call_days: 30,
            visit_days: 90,
            rules: Vec::new(),
        }
    }
}

/// Cadence for one tier; an omitted kind keeps the default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRule {
    pub tier: String,
    #[serde(default)]
    pub call_days: Option<u32>,
    #[serde(default)]
    pub visit_days: Option<u32>,
}

/// Tier migration against an earlier date (the seeds' quarterly review).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Tier scheme compared. Default `pyramid`.
    pub tier: String,
    /// Earlier date; default the last quarter end before the as-of date.
    pub compare_to: Option<NaiveDate>,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            tier: "pyramid".into(),
            compare_to: None,
        }
    }
}
