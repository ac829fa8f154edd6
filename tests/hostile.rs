//! The hostile input corpus (`tests/data/hostile/`): each damaged extract is
//! parsed correctly, rejected row by row with its reason, or refused with a
//! one-line error naming the file — never a panic, never a silent drop.

use std::path::Path;

use crate::common::*;

const DIR: &str = "tests/data/hostile";

/// Runs with a pipeline file whose transactions input gets `options`.
fn run_case(
    txns: &str,
    options: &str,
    customers: &str,
    customer_options: &str,
) -> (i32, String, TempDir) {
    let tmp = TempDir::new("hostile");
    let abs = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR).join(f);
    let cfg = format!(
        "as_of = \"2010-12-31\"\n[inputs.transactions]\npath = {:?}\n{options}\n[inputs.customers]\npath = {:?}\n{customer_options}\n[ingest]\nmax_reject_ratio = 0.5\n",
        abs(txns).to_string_lossy(),
        abs(customers).to_string_lossy(),
    );
    let p = tmp.write("p.toml", &cfg);
    let o = tiering(&[
        "run",
        "--config",
        &p,
        "--out",
        tmp.join("out").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{txns}: {err}");
    (o.status.code().unwrap_or(-1), err, tmp)
}

fn scores(tmp: &TempDir) -> polars::prelude::DataFrame {
    read_parquet(&tmp.join("out/snapshot=2010-12-31/customer_scores.parquet"))
}

fn reasons(tmp: &TempDir) -> Vec<String> {
    let r = read_parquet(&tmp.join("out/snapshot=2010-12-31/rejects.parquet"));
    strs(&r, "reason").into_iter().flatten().collect()
}

fn monetary(tmp: &TempDir) -> Vec<Option<f64>> {
    floats(&scores(tmp), "monetary")
}

fn refused(code: i32, err: &str, file: &str, needle: &str) {
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(file) && err.contains(needle), "{err}");
}

#[test]
fn bom_and_crlf_parse_cleanly() {
    let (code, err, tmp) = run_case("bom_crlf.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(monetary(&tmp), vec![Some(40.0), Some(20.0)]);
    assert!(reasons(&tmp).is_empty());
}

#[test]
fn gbk_customers_decode_to_the_right_characters() {
    let (code, err, tmp) = run_case(
        "bom_crlf.csv",
        "",
        "customers_gbk.csv",
        "encoding = \"gbk\"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        strs(&scores(&tmp), "region"),
        vec![Some("惠城区".into()), Some("博罗县".into())]
    );
    // Without the option the same file is refused with a hint, not misread.
    let (code, err, _) = run_case("bom_crlf.csv", "", "customers_gbk.csv", "");
    refused(code, &err, "customers_gbk.csv", "gbk");
}

#[test]
fn currency_symbols_and_thousands_separators() {
    // ¥88, "RMB 12.00" and "$ 5" parse by default; "1,234.50" needs the
    // thousands separator and is otherwise rejected with its text.
    let (code, err, tmp) = run_case("thousands_currency.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(reasons(&tmp), vec!["unparseable amount"]);
    assert_eq!(monetary(&tmp), vec![Some(88.0), Some(17.0)]);
    let (code, err, tmp) = run_case(
        "thousands_currency.csv",
        "thousands_separator = \",\"",
        "customers.csv",
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(reasons(&tmp).is_empty());
    assert_eq!(monetary(&tmp), vec![Some(1322.5), Some(17.0)]);
}

#[test]
fn decimal_comma_with_semicolons() {
    let opts = "delimiter = \";\"\nthousands_separator = \".\"\ndecimal_comma = true";
    let (code, err, tmp) = run_case("decimal_comma.csv", opts, "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(monetary(&tmp), vec![Some(1234.5), Some(0.99)]);
}

#[test]
fn a_date_format_first_seen_late_in_the_file_still_parses() {
    // 5001 ISO dates first (the sampled head), then %Y/%m/%d and a datetime
    // (parsed by the full retry) and 02.01.2010 (no configured format).
    let (code, err, tmp) = run_case("mixed_dates_late.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(reasons(&tmp), vec!["unparseable ts"]);
    let s = scores(&tmp);
    assert_eq!(ints(&s, "frequency"), vec![Some(5001), Some(2)]);
}

#[test]
fn truncated_last_line_is_rejected_with_its_line() {
    let (code, err, tmp) = run_case("truncated.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    let r = read_parquet(&tmp.join("out/snapshot=2010-12-31/rejects.parquet"));
    assert_eq!(ints(&r, "line"), vec![Some(4)]);
    assert_eq!(strs(&r, "reason"), vec![Some("unparseable ts".into())]);
    assert_eq!(strs(&r, "value"), vec![Some("2010-0".into())]);
}

#[test]
fn nan_infinity_and_overflow_are_not_amounts() {
    let (code, err, tmp) = run_case("nan_inf.csv", "", "customers.csv", "");
    assert_eq!(code, 3, "3 of 4 rows is over the 50% limit: {err}");
    assert!(err.contains("unparseable amount"), "{err}");
    assert!(!tmp.join("out/snapshot=2010-12-31").exists());
}

#[test]
fn quoted_delimiters_and_newlines_stay_in_their_field() {
    let (code, err, tmp) = run_case("quoted_newline.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert!(reasons(&tmp).is_empty());
    assert_eq!(monetary(&tmp), vec![Some(10.0), Some(20.0)]);
}

#[test]
fn the_same_rows_delivered_twice_are_collapsed() {
    let (code, err, tmp) = run_case("dup_*.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(reasons(&tmp), vec!["duplicate txn_id", "duplicate txn_id"]);
    assert_eq!(monetary(&tmp), vec![Some(10.0), Some(20.0)]);
}

#[test]
fn header_only_publishes_empty_but_valid_tables() {
    let (code, err, tmp) = run_case("header_only.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    let s = scores(&tmp);
    assert_eq!(s.height(), 2, "both customers, unscored");
    assert_eq!(ints(&s, "r_score"), vec![None, None]);
}

#[test]
fn files_that_cannot_be_read_are_refused_in_one_line() {
    let (code, err, _) = run_case("empty.csv", "", "customers.csv", "");
    refused(code, &err, "empty.csv", "empty");
    let (code, err, _) = run_case("shifted_column.csv", "", "customers.csv", "");
    refused(code, &err, "shifted_column.csv", "more fields");
    let (code, err, _) = run_case("wrong_delimiter.csv", "", "customers.csv", "");
    refused(code, &err, "wrong_delimiter.csv", "';'");
    let (code, err, _) = run_case("bad_utf8.csv", "", "customers.csv", "");
    refused(code, &err, "bad_utf8.csv", "utf8-lossy");
    // With the lossy option the damaged amount is rejected, the rest kept.
    let (code, err, tmp) = run_case(
        "bad_utf8.csv",
        "encoding = \"utf8-lossy\"",
        "customers.csv",
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(reasons(&tmp), vec!["unparseable amount"]);
}

#[test]
fn an_unparseable_optional_value_keeps_its_row_and_is_counted() {
    let (code, err, tmp) = run_case("bad_margin.csv", "", "customers.csv", "");
    assert_eq!(code, 0, "{err}");
    assert!(reasons(&tmp).is_empty(), "margin is optional: no reject");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.join("out/snapshot=2010-12-31/manifest.json")).unwrap(),
    )
    .unwrap();
    // "abc" is counted; the empty margin is just absent.
    assert_eq!(
        m["inputs"]["transactions"]["warnings"]["unparseable margin"],
        1
    );
    assert_eq!(
        floats(&scores(&tmp), "contribution"),
        vec![Some(2.5), Some(0.0)]
    );
}
