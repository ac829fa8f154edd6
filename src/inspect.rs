//! `tiering inspect`: a published snapshot's manifest, readably.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Renders the manifest of the snapshot in `dir` as text.
pub fn render(dir: &Path) -> Result<String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let m: Value = serde_json::from_str(&text)?;
    let mut s = String::new();
    let _ = writeln!(s, "snapshot   {}", dir.display());
    let _ = writeln!(s, "as of      {}", m["as_of"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "tool       {} {}",
        m["tool"].as_str().unwrap_or("?"),
        m["version"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "\ninputs");
    if let Some(inputs) = m["inputs"].as_object() {
        for (table, r) in inputs {
            let _ = writeln!(
                s,
                "  {table:<13} read {:>10}  kept {:>10}  after as-of {:>8}  duplicates {:>6}",
                r["rows_read"],
                r["rows_kept"],
                r["excluded_after_as_of"],
                r["duplicates_collapsed"]
            );
            if let Some(rej) = r["rejected"].as_object() {
                for (why, n) in rej {
                    let _ = writeln!(s, "    rejected: {why}: {n}");
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "  unknown customers (in transactions, not in customers): {}",
        m["unknown_customers"]
    );
    if let Some(st) = m["store"].as_object() {
        let n = |k: &str| st.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        let _ = writeln!(
            s,
            "  store: {} files in {} segments; this run ingested {}, replaced {}, dropped {}, merged {} segments",
            st["files"],
            st["segments"],
            n("ingested"),
            n("replaced"),
            n("dropped"),
            st["segments_merged"]
        );
    }
    let _ = writeln!(s, "\noutputs");
    if let Some(outs) = m["outputs"].as_array() {
        for o in outs {
            let _ = writeln!(
                s,
                "  {:<16} {:>10} rows",
                o["name"].as_str().unwrap_or("?"),
                o["rows"]
            );
        }
    }
    let _ = writeln!(
        s,
        "\npyramid ({})",
        m["pyramid"]["mode"].as_str().unwrap_or("?")
    );
    if let Some(tiers) = m["pyramid"]["tiers"].as_array() {
        for t in tiers {
            let _ = writeln!(
                s,
                "  {:<6} {:>8} customers  contribution {} .. {}",
                t["tier"].as_str().unwrap_or("?"),
                t["customers"],
                t["min_contribution"],
                t["max_contribution"]
            );
        }
    }
    if let Some(e) = m["rfm"]["empty_scores"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let _ = writeln!(s, "\nempty RFM scores (collapsed bins): {}", join(e));
    }
    if let Some(e) = m["rfm"]["empty_segments"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let _ = writeln!(s, "empty segments: {}", join(e));
    }
    let _ = writeln!(s, "\ntimings (ms)");
    if let Some(t) = m["timings_ms"].as_object() {
        for (k, v) in t {
            let _ = writeln!(s, "  {k:<14} {v}");
        }
    }
    if let Some(p) = m["peak_rss_bytes"].as_u64() {
        let _ = writeln!(s, "peak memory  {:.1} MiB", p as f64 / 1048576.0);
    }
    Ok(s)
}

fn join(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
