//! `tiering inspect`: a published snapshot's manifest, readably.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Renders what `dir` holds as text: a snapshot's manifest, or a typed
/// store's files (`dir` the store, or an output root holding one).
pub fn render(dir: &Path) -> Result<String> {
    if !dir.join("manifest.json").exists() {
        for store in [dir.to_path_buf(), dir.join(crate::store::STORE_DIR)] {
            if let Some((version, files)) = crate::store::stored_files(&store)? {
                return Ok(render_store(&store, &version, &files));
            }
        }
    }
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

/// A store's files in store order: each one's segment, counts and span,
/// then the totals and what else the store keeps.
fn render_store(dir: &Path, version: &str, files: &[crate::store::StoredFile]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "store      {}", dir.display());
    let _ = writeln!(s, "written by tiering {version}");
    let segments: std::collections::BTreeSet<&str> =
        files.iter().map(|f| f.segment.as_str()).collect();
    let kept: usize = files.iter().map(|f| f.report.rows_kept).sum();
    let rejected: usize = files.iter().map(|f| f.report.rejected_total()).sum();
    let dups: usize = files.iter().map(|f| f.report.duplicates_collapsed).sum();
    let first = files.iter().filter_map(|f| f.span).map(|s| s.0).min();
    let last = files.iter().filter_map(|f| f.span).map(|s| s.1).max();
    let span = |a: Option<chrono::NaiveDate>, b: Option<chrono::NaiveDate>| match (a, b) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => "no rows".to_string(),
    };
    let _ = writeln!(
        s,
        "files      {} in {} segments: {kept} rows stored, {rejected} rejected, {dups} duplicates collapsed",
        files.len(),
        segments.len(),
    );
    let _ = writeln!(s, "dates      {}", span(first, last));
    let _ = writeln!(
        s,
        "\nfiles (store order; a txn_id seen in an earlier file wins)"
    );
    let width = files
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0);
    for f in files {
        let _ = writeln!(
            s,
            "  {:<width$}  {}  stored {:>10}  rejected {:>8}  duplicates {:>6}  {}  {} bytes",
            f.name,
            f.segment,
            f.report.rows_kept,
            f.report.rejected_total(),
            f.report.duplicates_collapsed,
            span(f.span.map(|s| s.0), f.span.map(|s| s.1)),
            f.bytes,
        );
    }
    for (what, sub) in [
        ("earlier tierings kept", crate::snapshot::TIERINGS),
        ("checked tables kept", crate::ingest::kept::TABLES),
    ] {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".parquet") && !n.ends_with(".rejects.parquet"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let _ = writeln!(s, "\n{what}: {}", names.len());
        for n in names {
            let _ = writeln!(s, "  {n}");
        }
    }
    s
}
