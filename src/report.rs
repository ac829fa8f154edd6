//! The per-snapshot HTML report: one self-contained file (inline CSS and
//! SVG charts drawn with plotters, markup from maud templates), with the
//! charts the handbooks draw. Built from the snapshot's tables, in memory
//! during a run or read back by `tiering report`.

use std::collections::BTreeMap;
use std::path::Path;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::prelude::*;
use polars::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};

/// The tables a report reads, by published name, plus the manifest.
pub struct ReportInput<'a> {
    pub manifest: &'a Value,
    pub tables: BTreeMap<String, DataFrame>,
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(0x2b, 0x6c, 0xb0),
    RGBColor(0xe0, 0x7a, 0x1f),
    RGBColor(0x3a, 0x9a, 0x5b),
    RGBColor(0xb0, 0x3a, 0x48),
];
const FONT: &str = "Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif";

/// A grouped bar chart as an SVG string: one group per category, one bar
/// per series.
pub fn bar_chart(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let width =
            (160 + 70 * categories.len().max(1) * series.len().max(1)).clamp(480, 1100) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 300)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| Error::Invariant(format!("chart '{title}': {e}"));
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let max = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0_f64, f64::max)
            .max(1e-9);
        let n = categories.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n, 0f64..max * 1.15)
            .map_err(|e| draw(&e))?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(categories.len().max(1) * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                // Label each group once, at its centre.
                if (x - x.floor() - 0.5).abs() < 1e-6 {
                    cats.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 12))
            .draw()
            .map_err(|e| draw(&e))?;
        let k = series.len().max(1) as f64;
        let w = 0.8 / k;
        for (j, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let x0 = i as f64 + 0.1 + j as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.92, *v)], color.filled())
                }))
                .map_err(|e| draw(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

fn strings(df: &DataFrame, c: &str) -> Vec<String> {
    df.column(c)
        .ok()
        .and_then(|s| s.cast(&DataType::String).ok())
        .map(|s| {
            s.str()
                .map(|ca| ca.iter().map(|v| v.unwrap_or("").to_string()).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn numbers(df: &DataFrame, c: &str) -> Vec<f64> {
    df.column(c)
        .ok()
        .and_then(|s| s.cast(&DataType::Float64).ok())
        .map(|s| {
            s.f64()
                .map(|ca| ca.iter().map(|v| v.unwrap_or(0.0)).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn money(x: f64) -> String {
    // Thousands grouping for reading, not for machines.
    let s = format!("{:.2}", x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{}{out}.{frac}", if x < 0.0 { "-" } else { "" })
}

/// A simple table of string cells.
fn table(head: &[&str], rows: &[Vec<String>]) -> Markup {
    html! {
        table {
            thead { tr { @for h in head { th { (h) } } } }
            tbody { @for r in rows { tr { @for c in r { td { (c) } } } } }
        }
    }
}

/// Renders the report.
pub fn render(input: &ReportInput) -> Result<String> {
    let m = input.manifest;
    let t = |name: &str| input.tables.get(name);
    let as_of = m["as_of"].as_str().unwrap_or("?");
    let tx = &m["inputs"]["transactions"];
    // From the manifest: the table itself is never needed whole (the lean
    // plan publishes it part by part).
    let customers_total = m["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|t| t["name"] == "customer_scores"))
        .and_then(|t| t["rows"].as_u64())
        .unwrap_or(0);
    let rejected: u64 = m["inputs"]
        .as_object()
        .map(|o| {
            o.values()
                .flat_map(|r| {
                    r["rejected"]
                        .as_object()
                        .map(|x| x.values().filter_map(|v| v.as_u64()).sum::<u64>())
                })
                .sum()
        })
        .unwrap_or(0);

    // Pyramid: quantity vs contribution.
    let mut sections: Vec<Markup> = Vec::new();
    if let Some(p) = t("pyramid") {
        let tiers = strings(p, "pyramid_tier");
        let chart = bar_chart(
            "客户金字塔 customers vs contribution",
            &tiers,
            &[
                ("customer share".into(), numbers(p, "customer_share")),
                (
                    "contribution share".into(),
                    numbers(p, "contribution_share"),
                ),
            ],
        )?;
        let cs = numbers(p, "customer_share");
        let ct = numbers(p, "contribution_share");
        let n = numbers(p, "customers");
        let c = numbers(p, "contribution");
        let rows: Vec<Vec<String>> = (0..tiers.len())
            .map(|i| {
                vec![
                    tiers[i].clone(),
                    format!("{}", n[i]),
                    pct(cs[i]),
                    money(c[i]),
                    pct(ct[i]),
                ]
            })
            .collect();
        sections.push(html! {
            section id="pyramid" {
                h2 { "Contribution pyramid" }
                (PreEscaped(chart))
                (table(&["tier", "customers", "customer share", "contribution", "contribution share"], &rows))
            }
        });
    }
    if let Some(s) = t("rfm_segments") {
        let names = strings(s, "rfm_segment");
        let chart = bar_chart(
            "RFM segments",
            &names,
            &[
                ("customer share".into(), numbers(s, "customer_share")),
                ("revenue share".into(), numbers(s, "revenue_share")),
            ],
        )?;
        let n = numbers(s, "customers");
        let r = numbers(s, "revenue");
        let rows: Vec<Vec<String>> = (0..names.len())
            .map(|i| vec![names[i].clone(), format!("{}", n[i]), money(r[i])])
            .collect();
        sections.push(html! {
            section id="segments" {
                h2 { "RFM segments" }
                (PreEscaped(chart))
                (table(&["segment", "customers", "revenue"], &rows))
            }
        });
    }
    // Concentration: this year beside last year, per tier.
    for (name, df) in input
        .tables
        .iter()
        .filter(|(n, _)| n.starts_with("concentration_"))
    {
        let dim = name.trim_start_matches("concentration_");
        let years = numbers(df, "year");
        let last = years.iter().copied().fold(f64::MIN, f64::max);
        let latest = df
            .clone()
            .lazy()
            .filter(col("year").cast(DataType::Float64).eq(lit(last)))
            .collect()?;
        let tiers = strings(&latest, "tier");
        let mut seen: Vec<String> = Vec::new();
        for tier in &tiers {
            if !seen.contains(tier) {
                seen.push(tier.clone());
            }
        }
        let mut charts = Vec::new();
        let mut indices = Vec::new();
        for tier in &seen {
            let part = latest
                .clone()
                .lazy()
                .filter(col("tier").eq(lit(tier.as_str())))
                .sort([dim], Default::default())
                .collect()?;
            let members = strings(&part, dim);
            charts.push(bar_chart(
                &format!("{dim} · {tier}: {} vs {}", last as i64 - 1, last as i64),
                &members,
                &[
                    (
                        format!("{}", last as i64 - 1),
                        numbers(&part, "customers_prev"),
                    ),
                    (format!("{}", last as i64), numbers(&part, "customers")),
                ],
            )?);
            let hhi = numbers(&part, "hhi").first().copied().unwrap_or(0.0);
            let cr = numbers(&part, "cr_k").first().copied().unwrap_or(0.0);
            let total: f64 = numbers(&part, "customers").iter().sum();
            let prev: f64 = numbers(&part, "customers_prev").iter().sum();
            let growth = if prev > 0.0 {
                pct((total - prev) / prev)
            } else {
                "–".into()
            };
            indices.push(vec![
                tier.clone(),
                format!("{total}"),
                format!("{prev}"),
                growth,
                format!("{hhi:.0}"),
                pct(cr),
            ]);
        }
        sections.push(html! {
            section id=(format!("concentration-{dim}")) {
                h2 { "Concentration by " (dim) }
                (table(&["tier", "customers", "year before", "growth", "HHI", "CR-k"], &indices))
                div class="grid" { @for c in &charts { (PreEscaped(c)) } }
            }
        });
    }
    if let Some(c) = t("churn_summary").filter(|d| d.height() > 0) {
        let first_dim = strings(c, "dimension").first().cloned().unwrap_or_default();
        let by_tier = c
            .clone()
            .lazy()
            .filter(col("dimension").eq(lit(first_dim.as_str())))
            .group_by([col("tier"), col("tier_order")])
            .agg([
                col("active").sum(),
                col("sleeping").sum(),
                col("lost").sum(),
            ])
            .sort(["tier_order"], Default::default())
            .collect()?;
        let tiers = strings(&by_tier, "tier");
        let chart = bar_chart(
            "churn by tier (沉睡 sleeping, 流失 lost)",
            &tiers,
            &[
                ("active".into(), numbers(&by_tier, "active")),
                ("sleeping".into(), numbers(&by_tier, "sleeping")),
                ("lost".into(), numbers(&by_tier, "lost")),
            ],
        )?;
        sections.push(html! { section id="churn" { h2 { "Churn" } (PreEscaped(chart)) } });
    }
    if let Some(f) = t("follow_up") {
        let counts = f
            .clone()
            .lazy()
            .group_by([col("tier"), col("tier_order")])
            .agg([len().alias("overdue")])
            .sort(["tier_order"], Default::default())
            .collect()?;
        let rows: Vec<Vec<String>> = strings(&counts, "tier")
            .into_iter()
            .zip(numbers(&counts, "overdue"))
            .map(|(t, n)| vec![t, format!("{n}")])
            .collect();
        sections.push(html! {
            section id="follow-up" {
                h2 { "Overdue follow-up" }
                p { (f.height()) " customers are overdue for a call or a visit." }
                (table(&["tier", "overdue customers"], &rows))
            }
        });
    }
    if let Some(mig) = t("tier_migration").filter(|d| d.height() > 0) {
        let from = strings(mig, "from_tier");
        let to = strings(mig, "to_tier");
        let n = numbers(mig, "customers");
        let mut froms: Vec<String> = Vec::new();
        let mut tos: Vec<String> = Vec::new();
        for (a, b) in from.iter().zip(&to) {
            if !froms.contains(a) {
                froms.push(a.clone());
            }
            if !tos.contains(b) {
                tos.push(b.clone());
            }
        }
        let cell = |a: &str, b: &str| {
            (0..from.len())
                .find(|i| from[*i] == a && to[*i] == b)
                .map(|i| format!("{}", n[i]))
                .unwrap_or_else(|| "–".into())
        };
        let since = strings(mig, "compared_to")
            .first()
            .cloned()
            .unwrap_or_default();
        sections.push(html! {
            section id="migration" {
                h2 { "Tier migration since " (since) }
                table class="matrix" {
                    thead { tr { th { "from \\ to" } @for b in &tos { th { (b) } } } }
                    tbody { @for a in &froms { tr { th { (a) } @for b in &tos { td { (cell(a, b)) } } } } }
                }
            }
        });
    }
    if let Some(l) = t("lost_deal_reasons").filter(|d| d.height() > 0) {
        let rows: Vec<Vec<String>> = (0..l.height())
            .map(|i| {
                vec![
                    strings(l, "product_line")[i].clone(),
                    strings(l, "reason")[i].clone(),
                    format!("{}", numbers(l, "deals")[i]),
                    pct(numbers(l, "share")[i]),
                ]
            })
            .collect();
        sections.push(html! {
            section id="lost-deals" {
                h2 { "战败原因 lost-deal reasons" }
                (table(&["product line", "reason", "deals", "share"], &rows))
            }
        });
    }
    let page = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Customer tiers as of " (as_of) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header id="headline" {
                    h1 { "Customer tiers as of " (as_of) }
                    dl {
                        dt { "customers" } dd id="customers" { (customers_total) }
                        dt { "transactions kept" } dd { (tx["rows_kept"]) }
                        dt { "transactions read" } dd { (tx["rows_read"]) }
                        dt { "rows rejected" } dd id="rejected" { (rejected) }
                        dt { "tool" } dd { (m["tool"].as_str().unwrap_or("")) " " (m["version"].as_str().unwrap_or("")) }
                    }
                }
                @for s in &sections { (s) }
            }
        }
    };
    Ok(page.into_string())
}

const CSS: &str = "body{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',system-ui,sans-serif;margin:2rem auto;max-width:1150px;color:#222}\
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{color:#666}dd{margin:0;font-weight:600}\
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}\
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:.5rem}\
svg{max-width:100%;height:auto}@media print{body{margin:0}section{break-inside:avoid}}";

/// Loads a published snapshot's tables and manifest and renders its report.
pub fn render_dir(dir: &Path) -> Result<String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let manifest: Value = serde_json::from_str(&text)?;
    let mut tables = BTreeMap::new();
    for o in manifest["outputs"].as_array().into_iter().flatten() {
        let name = o["name"].as_str().unwrap_or_default().to_string();
        if name == "customer_scores" {
            // The largest table, and the report needs only its row count.
            continue;
        }
        let df = crate::io::scan_parquet(&dir.join(format!("{name}.parquet")))?.collect()?;
        tables.insert(name, df);
    }
    render(&ReportInput {
        manifest: &manifest,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_is_an_svg_with_every_label() {
        let svg = bar_chart(
            "t",
            &["惠城区".into(), "博罗县".into()],
            &[
                ("2009".into(), vec![1.0, 2.0]),
                ("2010".into(), vec![3.0, 0.0]),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("惠城区") && svg.contains("2010"));
    }

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(-5.0), "-5.00");
    }
}
