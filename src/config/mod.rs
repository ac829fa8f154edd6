//! The pipeline file (TOML): plain serde structs with documented defaults,
//! unknown keys rejected, and a semantic `validate()` separate from parsing.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod inputs;
mod scoring;
mod summaries;
mod validate;

pub use inputs::*;
pub use scoring::*;
pub use summaries::*;

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
    /// How the Spark engine reads the inputs (`--engine spark`).
    #[serde(default)]
    pub spark: SparkConfig,
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
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
        assert!(c.publish.csv);
        assert_eq!(c.publish.csv_bom, None);
        // A [publish] table naming one key keeps the other's default.
        let c = Config::parse(&format!("{MINIMAL}\n[publish]\ncsv = false\n")).unwrap();
        assert!(!c.publish.csv);
        assert_eq!(c.publish.csv_bom, None);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&format!("{MINIMAL}\n[rfm]\nbinz = 4\n")).unwrap_err();
        assert!(err.contains("binz"), "{err}");
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
}
