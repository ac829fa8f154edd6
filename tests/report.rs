//! The HTML report: self-contained, every section present with the
//! snapshot's numbers, and rendered by a real headless Chromium without a
//! console error.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Headless Chromium with the flags this workplace needs (no network).
fn headless(chrome: &Path, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn the_report_renders_in_headless_chromium() {
    let tmp = TempDir::new("report");
    let snap = run_pipeline(&tmp, "dealer_scorecard.toml");
    let page = snap.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no script, nothing fetched (the SVG namespace URI is
    // a name, not a fetch).
    assert!(!html.contains("<script"));
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(fetch), "{fetch}");
    }
    assert!(html.contains("<meta charset=\"utf-8\">"));
    for id in [
        "headline",
        "pyramid",
        "segments",
        "concentration-region",
        "concentration-industry",
        "churn",
        "follow-up",
        "migration",
        "lost-deals",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "section {id}");
    }
    // Numbers from the snapshot are in the page.
    let scores = read_parquet(&snap.join("customer_scores.parquet"));
    assert!(html.contains(&format!("<dd id=\"customers\">{}</dd>", scores.height())));
    let follow = read_parquet(&snap.join("follow_up.parquet"));
    assert!(html.contains(&format!("{} customers are overdue", follow.height())));
    assert!(html.contains("优质") && html.contains("惠城区") && html.contains("价格高"));
    // `tiering report` rebuilds the same page from the published tables.
    std::fs::remove_file(&page).unwrap();
    ok(&["report", snap.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&page).unwrap(), html);

    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            ".ci/run installs chromium; it is missing"
        );
        eprintln!("skipped the browser half: chromium is not installed");
        return;
    };
    let url = format!("file://{}", page.display());
    let dom = headless(&chrome, &tmp.join("profile"), &["--dump-dom"], &url);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        dom_text.contains("id=\"migration\"") && dom_text.contains("<svg"),
        "DOM lacks the report"
    );
    assert!(
        dom_text.contains(&format!("<dd id=\"customers\">{}</dd>", scores.height())),
        "the customer count is in the rendered DOM"
    );
    let log = String::from_utf8_lossy(&dom.stderr);
    for bad in ["CONSOLE", "Uncaught", "Failed to load resource"] {
        assert!(!log.contains(bad), "browser reported {bad}: {log}");
    }
    let shot = tmp.join("report.png");
    let o = headless(
        &chrome,
        &tmp.join("profile2"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,3000",
            "--hide-scrollbars",
        ],
        &url,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}
