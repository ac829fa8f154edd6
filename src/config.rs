//! The pipeline file (TOML): plain serde structs with documented defaults,
//! unknown keys rejected, and a semantic `validate()` separate from parsing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A whole pipeline file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Snapshot date (YYYY-MM-DD). Default: the latest valid transaction date.
    /// `--as-of` on the command line wins.
    #[serde(default)]
    pub as_of: Option<NaiveDate>,
    /// Output root; snapshots go to `<out>/snapshot=<as_of>/`. Default `out`.
    /// Relative to the pipeline file's folder. `--out` wins.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Input files.
    pub inputs: Inputs,
    /// Ingest validation settings.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Per-customer measures.
    #[serde(default)]
    pub measures: MeasuresConfig,
    /// RFM scoring and segments.
    #[serde(default)]
    pub rfm: RfmConfig,
    /// Contribution pyramid.
    #[serde(default)]
    pub pyramid: PyramidConfig,
    /// Churn status from recency.
    #[serde(default)]
    pub churn: ChurnConfig,
    /// How tables are written.
    #[serde(default)]
    pub publish: PublishConfig,
    /// Tier schemes by absolute cut-offs on one measure (`[[threshold_tiers]]`).
    #[serde(default)]
    pub threshold_tiers: Vec<ThresholdScheme>,
    /// Point scorecards over several measures (`[[scorecards]]`).
    #[serde(default)]
    pub scorecards: Vec<Scorecard>,
    /// Year-over-year concentration by region, industry, ….
    #[serde(default)]
    pub concentration: ConcentrationConfig,
    /// Contact cadence per tier.
    #[serde(default)]
    pub follow_up: FollowUpConfig,
    /// Tier migration against an earlier date.
    #[serde(default)]
    pub migration: MigrationConfig,
    /// The persistent typed store under `<out>/_store/`.
    #[serde(default)]
    pub store: StoreConfig,
}

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
    /// Any numeric column of the customer base.
    pub measure: String,
    /// Bands tried in order; the first the value falls in gives its points,
    /// none (or a null value) gives 0.
    pub bands: Vec<Band>,
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

/// The three input tables; only transactions and customers are required.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub transactions: InputFile,
    pub customers: InputFile,
    #[serde(default)]
    pub interactions: Option<InputFile>,
}

/// One input: a path (or glob) plus how to read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// File path or glob (`drops/txn_*.csv.gz`), relative to the pipeline file.
    pub path: String,
    /// `csv` or `parquet`. Default: from the extension (`.parquet` → parquet, else csv).
    #[serde(default)]
    pub format: Option<Format>,
    /// CSV field delimiter, one character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// CSV encoding: `utf8` (a leading BOM is accepted), `utf8-lossy`,
    /// `gbk` or `gb18030`. Default `utf8`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Thousands separator inside amounts (`"1,234.50"`), removed before
    /// parsing. Default: none.
    #[serde(default)]
    pub thousands_separator: Option<char>,
    /// Amounts use a decimal comma (`"1.234,50"` with `thousands_separator = "."`).
    #[serde(default)]
    pub decimal_comma: bool,
    /// Currency symbols and codes stripped from amounts. Default ¥ ￥ $ € £
    /// and the codes RMB, CNY.
    #[serde(default = "default_currency_symbols")]
    pub currency_symbols: Vec<String>,
    /// Date formats tried in order (chrono strftime). Default: ISO date and
    /// datetime, `%Y/%m/%d` and `%Y/%m/%d %H:%M:%S`.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
    /// Canonical column name → raw column name in this file. Unmapped
    /// canonical columns are looked up under their own name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Interactions only: raw `kind` value → canonical kind (`电访` = "call").
    #[serde(default)]
    pub kinds: BTreeMap<String, String>,
    /// Customers only: extra numeric columns to keep as measures (e.g.
    /// `star_points`), under their own names.
    #[serde(default)]
    pub attributes: Vec<String>,
}

/// Input file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
}

/// CSV text encoding.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    Utf8,
    Utf8Lossy,
    /// GBK / GB2312 (Chinese CRM exports).
    Gbk,
    /// GB18030 (the superset of GBK).
    Gb18030,
}

fn default_currency_symbols() -> Vec<String> {
    ["¥", "￥", "$", "€", "£", "RMB", "CNY"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_delimiter() -> char {
    ','
}

pub fn default_date_formats() -> Vec<String> {
    [
        "%Y-%m-%d",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Ingest validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Fail (exit 3) when more than this fraction of a table's rows is
    /// rejected as invalid. Default 0.01. Rows after the as-of date and
    /// collapsed duplicates do not count against it.
    pub max_reject_ratio: f64,
    /// Label for a missing region / industry and for customers absent from
    /// the customers file. Default `unknown`.
    pub unknown_label: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_reject_ratio: 0.01,
            unknown_label: "unknown".into(),
        }
    }
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

/// Output writing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Write a UTF-8 BOM at the start of each CSV so Excel detects UTF-8.
    /// Default: only when the table holds non-ASCII text.
    pub csv_bom: Option<bool>,
}

/// The persistent typed store (`<out>/_store/`): every transactions file
/// is ingested once, recorded by path, size and XXH3-128 hash, and later
/// runs ingest only the files it does not hold yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A stored file whose bytes changed. Default `replace`.
    pub on_changed: OnChanged,
    /// A stored file no longer among the inputs. Default `drop`.
    pub on_removed: OnRemoved,
}

/// What a run does with a stored file whose bytes changed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnChanged {
    /// Re-ingest it: its new rows replace the old ones.
    #[default]
    Replace,
    /// Stop with exit 2 naming the file (history must not change).
    Refuse,
}

/// What a run does with a stored file that is no longer among the inputs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnRemoved {
    /// Remove its rows: the store mirrors the inputs, so a run equals a
    /// run from scratch over the same files.
    #[default]
    Drop,
    /// Keep its rows (drop folders whose files are archived once ingested).
    Keep,
    /// Stop with exit 2 naming the file.
    Refuse,
}

impl Config {
    /// Reads and parses a pipeline file; relative paths inside it are
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let mut cfg = Config::parse(&text).map_err(|message| Error::ConfigParse {
            file: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses TOML text; the error text names the offending key.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// Makes relative input and output paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &str| -> String {
            if Path::new(p).is_absolute() || base.as_os_str().is_empty() {
                p.to_string()
            } else {
                lexical_join(base, p)
            }
        };
        self.inputs.transactions.path = fix(&self.inputs.transactions.path);
        self.inputs.customers.path = fix(&self.inputs.customers.path);
        if let Some(i) = &mut self.inputs.interactions {
            i.path = fix(&i.path);
        }
        if let Some(o) = &self.out {
            self.out = Some(PathBuf::from(fix(&o.to_string_lossy())));
        }
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let r = &self.ingest.max_reject_ratio;
        if !(0.0..=1.0).contains(r) {
            return Err(Error::invalid(
                "ingest.max_reject_ratio",
                format!("must be between 0 and 1, got {r}"),
            ));
        }
        for (name, input) in [
            ("transactions", Some(&self.inputs.transactions)),
            ("customers", Some(&self.inputs.customers)),
            ("interactions", self.inputs.interactions.as_ref()),
        ] {
            let Some(input) = input else { continue };
            if !input.delimiter.is_ascii() {
                return Err(Error::invalid(
                    &format!("inputs.{name}.delimiter"),
                    "must be a single ASCII character",
                ));
            }
            if input.date_formats.is_empty() {
                return Err(Error::invalid(
                    &format!("inputs.{name}.date_formats"),
                    "needs at least one format",
                ));
            }
            for k in input.columns.keys() {
                if !crate::ingest::canonical_columns(name).contains(&k.as_str()) {
                    return Err(Error::invalid(
                        &format!("inputs.{name}.columns.{k}"),
                        format!(
                            "not a canonical column of {name} (expected one of: {})",
                            crate::ingest::canonical_columns(name).join(", ")
                        ),
                    ));
                }
            }
            for (raw, kind) in &input.kinds {
                if !crate::ingest::INTERACTION_KINDS.contains(&kind.as_str()) {
                    return Err(Error::invalid(
                        &format!("inputs.{name}.kinds.{raw}"),
                        format!(
                            "unknown kind '{kind}' (expected one of: {})",
                            crate::ingest::INTERACTION_KINDS.join(", ")
                        ),
                    ));
                }
            }
        }
        if self.measures.window_days == Some(0) {
            return Err(Error::invalid("measures.window_days", "must be at least 1"));
        }
        self.validate_rfm()?;
        self.validate_pyramid()?;
        self.validate_tiers()?;
        if self.churn.sleeping_days > self.churn.lost_days {
            return Err(Error::invalid(
                "churn.sleeping_days",
                "must not exceed churn.lost_days",
            ));
        }
        if !(self.churn.sleeping_multiple > 0.0
            && self.churn.sleeping_multiple <= self.churn.lost_multiple)
        {
            return Err(Error::invalid(
                "churn.sleeping_multiple",
                "must be positive and not exceed churn.lost_multiple",
            ));
        }
        if !(0.0..1.0).contains(&self.churn.declining_drop) {
            return Err(Error::invalid("churn.declining_drop", "must be in [0, 1)"));
        }
        if self.concentration.year_end().is_none() {
            return Err(Error::invalid(
                "concentration.fiscal_year_end",
                format!(
                    "'{}' is not a MM-DD date",
                    self.concentration.fiscal_year_end
                ),
            ));
        }
        if self.concentration.years == 0 || self.concentration.top_k == 0 {
            return Err(Error::invalid(
                "concentration.years",
                "years and top_k must be at least 1",
            ));
        }
        let schemes = self.tier_scheme_names();
        for (key, tier) in [
            ("churn.tier", &self.churn.tier),
            ("concentration.tier", &self.concentration.tier),
            ("follow_up.tier", &self.follow_up.tier),
            ("migration.tier", &self.migration.tier),
        ] {
            if !schemes.contains(tier) {
                return Err(Error::invalid(
                    key,
                    format!(
                        "unknown tier scheme '{tier}' (defined: {})",
                        schemes.join(", ")
                    ),
                ));
            }
        }
        let mut dims = vec!["region", "industry", "segment", "sales_rep"];
        dims.extend(self.inputs.customers.attributes.iter().map(String::as_str));
        for (key, list) in [
            ("churn.dimensions", &self.churn.dimensions),
            ("concentration.dimensions", &self.concentration.dimensions),
        ] {
            for d in list {
                if !dims.contains(&d.as_str()) || !is_identifier(d) {
                    return Err(Error::invalid(
                        key,
                        format!(
                            "'{d}' is not a customer column (use one of: {})",
                            dims.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_rfm(&self) -> Result<()> {
        let rfm = &self.rfm;
        if !(2..=100).contains(&rfm.bins) {
            return Err(Error::invalid("rfm.bins", "must be between 2 and 100"));
        }
        if rfm.mode == RfmMode::Fixed {
            let Some(e) = &rfm.edges else {
                return Err(Error::invalid(
                    "rfm.edges",
                    "required when rfm.mode = \"fixed\"",
                ));
            };
            for (k, v) in [
                ("recency", &e.recency),
                ("frequency", &e.frequency),
                ("monetary", &e.monetary),
            ] {
                if v.len() != rfm.bins as usize - 1 {
                    return Err(Error::invalid(
                        &format!("rfm.edges.{k}"),
                        format!("needs bins-1 = {} edges, got {}", rfm.bins - 1, v.len()),
                    ));
                }
                if v.windows(2).any(|w| w[0] >= w[1]) || v.iter().any(|x| !x.is_finite()) {
                    return Err(Error::invalid(
                        &format!("rfm.edges.{k}"),
                        "edges must be finite and strictly increasing",
                    ));
                }
            }
        }
        match rfm.segments {
            SegmentScheme::Custom if rfm.rules.is_empty() => {
                return Err(Error::invalid(
                    "rfm.rules",
                    "segments = \"custom\" needs at least one [[rfm.rules]]",
                ));
            }
            SegmentScheme::English11 if rfm.bins != 5 => {
                return Err(Error::invalid(
                    "rfm.segments",
                    "the english11 rules are defined for bins = 5; use cn8 or custom rules",
                ));
            }
            _ => {}
        }
        if rfm.segments != SegmentScheme::Custom && !rfm.rules.is_empty() {
            return Err(Error::invalid(
                "rfm.rules",
                "rules are only used with segments = \"custom\"",
            ));
        }
        for rule in &rfm.rules {
            for (k, c) in [("r", &rule.r), ("f", &rule.f), ("m", &rule.m)] {
                if let Some(ScoreCond::Range([lo, hi])) = c
                    && (*lo < 1 || hi < lo || *hi > rfm.bins)
                {
                    return Err(Error::invalid(
                        &format!("rfm.rules[{}].{k}", rule.name),
                        format!("range [{lo}, {hi}] must lie within 1..={}", rfm.bins),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Names of every tier scheme: `pyramid`, thresholds, scorecards.
    pub fn tier_scheme_names(&self) -> Vec<String> {
        let mut v = vec!["pyramid".to_string()];
        v.extend(self.threshold_tiers.iter().map(|t| t.name.clone()));
        v.extend(self.scorecards.iter().map(|s| s.name.clone()));
        v
    }

    fn validate_tiers(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for name in self.tier_scheme_names() {
            if !is_identifier(&name) {
                return Err(Error::invalid(
                    &format!("tier scheme '{name}'"),
                    "names must be snake_case (a-z, 0-9, _), starting with a letter",
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(Error::invalid(
                    &format!("tier scheme '{name}'"),
                    "defined twice (pyramid is reserved)",
                ));
            }
        }
        for t in &self.threshold_tiers {
            let key = format!("threshold_tiers[{}]", t.name);
            if t.levels.is_empty() {
                return Err(Error::invalid(
                    &format!("{key}.levels"),
                    "needs at least one level",
                ));
            }
            if t.levels.windows(2).any(|w| w[0].min <= w[1].min) {
                return Err(Error::invalid(
                    &format!("{key}.levels"),
                    "levels go from the top: each min must be below the previous one",
                ));
            }
        }
        for s in &self.scorecards {
            let key = format!("scorecards[{}]", s.name);
            if s.criteria.is_empty() {
                return Err(Error::invalid(
                    &format!("{key}.criteria"),
                    "needs at least one criterion",
                ));
            }
            let dims: std::collections::BTreeSet<&str> =
                s.criteria.iter().map(|c| c.dimension.as_str()).collect();
            for c in &s.criteria {
                if !is_identifier(&c.dimension) {
                    return Err(Error::invalid(
                        &format!("{key}.criteria[{}].dimension", c.name),
                        "must be snake_case",
                    ));
                }
                if c.bands.iter().any(|b| b.min.is_none() && b.max.is_none()) {
                    return Err(Error::invalid(
                        &format!("{key}.criteria[{}].bands", c.name),
                        "every band needs a min, a max or both",
                    ));
                }
            }
            for t in &s.tiers {
                for d in t.min.keys() {
                    if !dims.contains(d.as_str()) {
                        return Err(Error::invalid(
                            &format!("{key}.tiers[{}].min.{d}", t.label),
                            format!(
                                "no criterion has this dimension (dimensions: {})",
                                dims.iter().copied().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_pyramid(&self) -> Result<()> {
        let p = &self.pyramid;
        let key = match p.mode {
            PyramidMode::CustomerShare => "pyramid.customer_share_cuts",
            PyramidMode::ContributionShare => "pyramid.contribution_share_cuts",
        };
        let cuts = p.cuts();
        if cuts.is_empty()
            || cuts.windows(2).any(|w| w[0] >= w[1])
            || cuts.iter().any(|c| !(*c > 0.0 && *c < 100.0))
        {
            return Err(Error::invalid(
                key,
                "cuts must be strictly increasing percentages between 0 and 100",
            ));
        }
        let labels = p.labels();
        if labels.len() != cuts.len() + 1 {
            return Err(Error::invalid(
                "pyramid.labels",
                format!(
                    "needs {} labels (one more than the cuts), got {}",
                    cuts.len() + 1,
                    labels.len()
                ),
            ));
        }
        Ok(())
    }
}

/// `base/p` with `dir/..` pairs folded away, so messages show
/// `out/snapshot=…` rather than `pipelines/../out/snapshot=…`. Purely
/// textual: a leading `..` that cannot fold is kept.
fn lexical_join(base: &Path, p: &str) -> String {
    use std::path::Component;
    let full = base.join(p);
    let mut parts: Vec<Component> = Vec::new();
    for c in full.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if parts
                    .last()
                    .is_some_and(|l| matches!(l, Component::Normal(_))) =>
            {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined: std::path::PathBuf = parts.iter().collect();
    let s = joined.to_string_lossy().into_owned();
    if s.is_empty() { ".".into() } else { s }
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [inputs.transactions]
        path = "t.csv"
        [inputs.customers]
        path = "c.csv"
    "#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        c.validate().unwrap();
        assert_eq!(c.rfm.bins, 5);
        assert_eq!(c.pyramid.customer_share_cuts, vec![1.0, 5.0, 20.0]);
        assert_eq!(c.pyramid.labels(), vec!["A", "B", "C", "D"]);
        assert_eq!(c.ingest.max_reject_ratio, 0.01);
        assert_eq!(c.inputs.transactions.delimiter, ',');
        assert_eq!(c.churn.lost_days, 180);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&format!("{MINIMAL}\n[rfm]\nbinz = 4\n")).unwrap_err();
        assert!(err.contains("binz"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected_with_their_key() {
        let cases = [
            ("[rfm]\nbins = 1", "rfm.bins"),
            ("[rfm]\nmode = \"fixed\"", "rfm.edges"),
            ("[rfm]\nbins = 4", "rfm.segments"),
            (
                "[pyramid]\ncustomer_share_cuts = [5, 1]",
                "pyramid.customer_share_cuts",
            ),
            ("[pyramid]\nlabels = [\"A\", \"B\"]", "pyramid.labels"),
            (
                "[ingest]\nmax_reject_ratio = 2.0",
                "ingest.max_reject_ratio",
            ),
            ("[churn]\nsleeping_days = 200", "churn.sleeping_days"),
            ("[churn]\ntier = \"nope\"", "churn.tier"),
            (
                "[concentration]\nfiscal_year_end = \"13-01\"",
                "concentration.fiscal_year_end",
            ),
            (
                "[concentration]\ndimensions = [\"city\"]",
                "concentration.dimensions",
            ),
            (
                "[rfm]\nsegments = \"custom\"\n[[rfm.rules]]\nname = \"x\"\nr = [0, 9]",
                "rfm.rules[x].r",
            ),
            (
                "[[threshold_tiers]]\nname = \"star\"\nmeasure = \"m\"\nlevels = [{ label = \"a\", min = 1 }, { label = \"b\", min = 5 }]",
                "threshold_tiers[star].levels",
            ),
            (
                "[[threshold_tiers]]\nname = \"Star\"\nmeasure = \"m\"\nlevels = [{ label = \"a\", min = 1 }]",
                "tier scheme 'Star'",
            ),
            (
                "[[scorecards]]\nname = \"d\"\ndefault_tier = \"x\"\ntiers = [{ label = \"t\", min = { nope = 1 } }]\n[[scorecards.criteria]]\nname = \"c\"\ndimension = \"loyalty\"\nmeasure = \"m\"\nbands = [{ min = 1, points = 1 }]",
                "scorecards[d].tiers[t].min.nope",
            ),
        ];
        for (extra, key) in cases {
            let c = Config::parse(&format!("{MINIMAL}\n{extra}\n")).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn unknown_canonical_column_is_rejected() {
        let text = MINIMAL.replace(
            "path = \"t.csv\"",
            "path = \"t.csv\"\ncolumns = { amout = \"x\" }",
        );
        let err = Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("inputs.transactions.columns.amout"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let mut c = Config::parse(MINIMAL).unwrap();
        c.resolve_paths(Path::new("pipelines"));
        assert_eq!(c.inputs.transactions.path, "pipelines/t.csv");
        assert_eq!(lexical_join(Path::new("pipelines"), "../out"), "out");
        assert_eq!(lexical_join(Path::new("a/b"), "../../../x"), "../x");
        assert_eq!(lexical_join(Path::new("pipelines"), ".."), ".");
    }

    #[test]
    fn every_shipped_pipeline_loads_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Config::load(&p).unwrap().validate().unwrap();
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
