//! `Config::validate`: the semantic checks serde cannot express, each error
//! naming the key at fault.

use super::*;
use crate::error::{Error, Result};

impl Config {
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
                if !crate::contract::canonical_columns(name).contains(&k.as_str()) {
                    return Err(Error::invalid(
                        &format!("inputs.{name}.columns.{k}"),
                        format!(
                            "not a canonical column of {name} (expected one of: {})",
                            crate::contract::canonical_columns(name).join(", ")
                        ),
                    ));
                }
            }
            for (raw, kind) in &input.kinds {
                if !crate::contract::INTERACTION_KINDS.contains(&kind.as_str()) {
                    return Err(Error::invalid(
                        &format!("inputs.{name}.kinds.{raw}"),
                        format!(
                            "unknown kind '{kind}' (expected one of: {})",
                            crate::contract::INTERACTION_KINDS.join(", ")
                        ),
                    ));
                }
            }
        }
        let c = &self.inputs.customers;
        for a in &c.text_attributes {
            if !is_identifier(a)
                || c.attributes.contains(a)
                || crate::contract::canonical_columns("customers").contains(&a.as_str())
            {
                return Err(Error::invalid(
                    "inputs.customers.text_attributes",
                    format!(
                        "'{a}' must be snake_case and differ from the numeric attributes and the canonical columns"
                    ),
                ));
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
        dims.extend(
            self.inputs
                .customers
                .text_attributes
                .iter()
                .map(String::as_str),
        );
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

    /// Whether `name` is listed in `inputs.customers.text_attributes`.
    pub fn is_text_attribute(&self, name: &str) -> bool {
        self.inputs
            .customers
            .text_attributes
            .iter()
            .any(|a| a == name)
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
            if self.is_text_attribute(&t.measure) {
                return Err(Error::invalid(
                    &format!("{key}.measure"),
                    format!(
                        "'{}' is a text attribute; threshold tiers cut numbers (score text in a scorecard with points_by_value)",
                        t.measure
                    ),
                ));
            }
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
                let ckey = format!("{key}.criteria[{}]", c.name);
                let text = self.is_text_attribute(&c.measure);
                match (text, c.bands.is_empty(), c.points_by_value.is_empty()) {
                    (true, true, false) | (false, false, true) => {}
                    (true, _, _) => {
                        return Err(Error::invalid(
                            &format!("{ckey}.points_by_value"),
                            format!(
                                "'{}' is a text attribute: score it with points_by_value (and no bands)",
                                c.measure
                            ),
                        ));
                    }
                    (false, _, _) => {
                        return Err(Error::invalid(
                            &format!("{ckey}.bands"),
                            format!(
                                "'{}' is numeric: score it with bands (points_by_value is for inputs.customers.text_attributes)",
                                c.measure
                            ),
                        ));
                    }
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

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::super::tests::MINIMAL;
    use super::*;
    use std::path::Path;

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
    fn text_attributes_are_scored_only_through_points_by_value() {
        let card = |criterion: &str| {
            format!(
                "text_attributes = [\"level\"]\n[[scorecards]]\nname = \"d\"\ndefault_tier = \"x\"\ntiers = [{{ label = \"t\", min = {{ size = 1 }} }}]\n[[scorecards.criteria]]\nname = \"c\"\ndimension = \"size\"\n{criterion}"
            )
        };
        let check = |extra: &str| {
            Config::parse(&format!("{MINIMAL}\n{extra}\n"))
                .unwrap()
                .validate()
        };
        check(&card("measure = \"level\"\npoints_by_value = { a = 1 }")).unwrap();
        let cases = [
            (
                card("measure = \"level\"\nbands = [{ min = 1, points = 1 }]"),
                "scorecards[d].criteria[c].points_by_value",
            ),
            (
                card("measure = \"recency_days\"\npoints_by_value = { a = 1 }"),
                "scorecards[d].criteria[c].bands",
            ),
            (
                "text_attributes = [\"level\"]\n[[threshold_tiers]]\nname = \"s\"\nmeasure = \"level\"\nlevels = [{ label = \"a\", min = 1 }]".to_string(),
                "threshold_tiers[s].measure",
            ),
            (
                "text_attributes = [\"region\"]".to_string(),
                "inputs.customers.text_attributes",
            ),
        ];
        for (extra, key) in cases {
            let err = check(&extra).unwrap_err().to_string();
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
