//! `--memory-limit`: the lean plan (pre-aggregate and scoring per customer part,
//! scorings one at a time) publishes exactly the fast plan's tables; a limit
//! not even the lean plan meets stops the run with exit code 2 and
//! publishes nothing.

use std::path::Path;

use crate::common::*;

/// The lean plan's work files (`_ingest/.work-*`) are gone after a run.
fn assert_no_work_files(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out.join("_ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".work-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn manifest(snapshot: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(snapshot.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn the_lean_plan_publishes_the_fast_plans_tables() {
    let tmp = TempDir::new("limits");
    let data = tmp.join("data");
    generate(&data, 90, 4000, 41);
    let inputs = |out: &Path| -> Vec<String> { input_args(&data, out) };
    let run = |out: &Path, extra: &[&str]| -> std::process::Output {
        let mut a = vec!["run".to_string(), "--as-of".into(), "2010-12-31".into()];
        a.extend(inputs(out));
        a.extend(extra.iter().map(|s| s.to_string()));
        tiering(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let snap = "snapshot=2010-12-31";

    let fast = tmp.join("fast");
    assert!(run(&fast, &[]).status.success());
    let m = manifest(&fast.join(snap));
    assert_eq!(m["memory"]["plan"], "fast");
    assert_eq!(m["memory"]["parts"], 1);
    let need = m["memory"]["fast_estimate_bytes"].as_u64().unwrap();

    // One byte under the fast plan's estimate: the lean plan, in parts.
    let lean = tmp.join("lean");
    let limit = (need - 1).to_string();
    let out = run(&lean, &["--memory-limit", &limit]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = manifest(&lean.join(snap));
    assert_eq!(m["memory"]["plan"], "lean");
    assert!(m["memory"]["parts"].as_u64().unwrap() >= 2);
    assert_eq!(m["memory"]["limit_bytes"].as_u64(), Some(need - 1));
    assert!(m["memory"]["estimate_bytes"].as_u64().unwrap() < need);
    assert_same_tables(&fast.join(snap), &lean.join(snap), &[]);
    assert_no_work_files(&lean);

    // Tighter limits: more parts (customer ranges), the same tables.
    let mut estimate = m["memory"]["estimate_bytes"].as_u64().unwrap();
    let mut parts = m["memory"]["parts"].as_u64().unwrap();
    while parts < 5 {
        let out_dir = tmp.join(&format!("lean-{parts}"));
        let out = run(&out_dir, &["--memory-limit", &(estimate - 1).to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = manifest(&out_dir.join(snap));
        let now = m["memory"]["parts"].as_u64().unwrap();
        assert!(now > parts, "{now} parts after {parts}");
        assert_same_tables(&fast.join(snap), &out_dir.join(snap), &[]);
        assert_no_work_files(&out_dir);
        (estimate, parts) = (m["memory"]["estimate_bytes"].as_u64().unwrap(), now);
    }

    // A backfill on the lean plan equals the fast single run for its last date.
    let bf = tmp.join("bf");
    let mut a = vec![
        "backfill".to_string(),
        "--from".into(),
        "2010-09-30".into(),
        "--to".into(),
        "2010-12-31".into(),
        "--memory-limit".into(),
        limit.clone(),
    ];
    a.extend(inputs(&bf));
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(manifest(&bf.join(snap))["memory"]["plan"], "lean");
    // A backfill ingests as of its last date: its rejects speak of that (README).
    assert_same_tables(&fast.join(snap), &bf.join(snap), &["rejects."]);

    // Far too small: refused before scoring, nothing published.
    let refused = tmp.join("refused");
    let out = run(&refused, &["--memory-limit", "1MiB"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--memory-limit 1 MiB is too small"), "{err}");
    assert!(!refused.join(snap).exists());
}

/// Every shipped pipeline on the lean plan publishes the fast plan's
/// tables: their segment schemes, pyramid modes and tier schemes differ
/// (the Chinese eight classes compare scores with the population mean,
/// which a part alone would get wrong).
#[test]
fn every_shipped_pipeline_is_the_same_on_the_lean_plan() {
    let tmp = TempDir::new("limits-pipelines");
    for name in ["sample", "dealer_scorecard", "rfm_cn8"] {
        let config = format!("pipelines/{name}.toml");
        let fast = tmp.join(&format!("{name}-fast"));
        let snap = "snapshot=2010-12-31";
        ok(&["run", "--config", &config, "--out", fast.to_str().unwrap()]);
        let m = manifest(&fast.join(snap));
        let need = m["memory"]["fast_estimate_bytes"].as_u64().unwrap();
        let lean = tmp.join(&format!("{name}-lean"));
        let limit = (need - 1).to_string();
        ok(&[
            "run",
            "--config",
            &config,
            "--out",
            lean.to_str().unwrap(),
            "--memory-limit",
            &limit,
        ]);
        let m = manifest(&lean.join(snap));
        assert_eq!(m["memory"]["plan"], "lean", "{name}");
        assert!(m["memory"]["parts"].as_u64().unwrap() >= 2, "{name}");
        assert_same_tables(&fast.join(snap), &lean.join(snap), &[]);
    }
}

/// The interactions scoring reads count in the plan's estimate: the same
/// data with and without its interactions log differ by
/// `memory::PER_INTERACTION` bytes for each interaction kept, on the fast
/// plan and, shared out, on the lean plan. (Before, a limit that the lean
/// plan's estimate met was overrun by a large log.)
#[test]
fn the_plan_counts_the_interactions() {
    let tmp = TempDir::new("limits-interactions");
    let data = tmp.join("data");
    generate(&data, 90, 4000, 47);
    let snap = "snapshot=2010-12-31";
    let run = |out: &Path, interactions: bool, extra: &[&str]| -> serde_json::Value {
        let mut a: Vec<String> = vec!["run".into(), "--as-of".into(), "2010-12-31".into()];
        let mut inputs = input_args(&data, out);
        if !interactions {
            let at = inputs.iter().position(|a| a == "--interactions").unwrap();
            inputs.drain(at..at + 2);
        }
        a.extend(inputs);
        a.extend(extra.iter().map(|s| s.to_string()));
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        manifest(&out.join(snap))
    };
    let with = run(&tmp.join("with"), true, &[]);
    let without = run(&tmp.join("without"), false, &[]);
    let kept = with["inputs"]["interactions"]["rows_kept"]
        .as_u64()
        .unwrap();
    assert!(kept > 1000, "{kept}");
    let fast = |m: &serde_json::Value| m["memory"]["fast_estimate_bytes"].as_u64().unwrap();
    let held = kept * tiering::memory::PER_INTERACTION;
    assert_eq!(fast(&with), fast(&without) + held);

    // Under a limit just above the fast plan without the log: the lean
    // plan, whose estimate counts each part's share of it.
    let limit = fast(&without).to_string();
    let lean = run(&tmp.join("lean"), true, &["--memory-limit", &limit]);
    assert_eq!(lean["memory"]["plan"], "lean");
    let parts = lean["memory"]["parts"].as_u64().unwrap();
    let alone = run(&tmp.join("lean-alone"), false, &["--memory-limit", &limit]);
    assert_eq!(alone["memory"]["plan"], "fast");
    let estimate = lean["memory"]["estimate_bytes"].as_u64().unwrap();
    assert!(estimate <= fast(&without), "{estimate}");
    assert!(
        estimate >= held.div_ceil(parts),
        "{estimate} {held} {parts}"
    );
    assert_same_tables(
        &tmp.join("with").join(snap),
        &tmp.join("lean").join(snap),
        &[],
    );
}
