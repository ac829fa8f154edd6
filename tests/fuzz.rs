//! Property-based fuzzing of the two parsers users feed by hand: the CSV
//! ingest and the pipeline file. Whatever the bytes, the library returns a
//! result (rows kept, rows rejected, or an error) and never panics. A
//! failing case found here becomes a regression test in `hostile.rs`.

use proptest::prelude::*;
use tiering::config::Config;

use crate::common::TempDir;

/// Bytes biased towards CSV syntax, dates, numbers and trouble.
fn csv_body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b",".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"C1".to_vec()),
        Just(b"T9".to_vec()),
        Just(b"2010-01-02".to_vec()),
        Just(b"2010/13/45".to_vec()),
        Just(b"12.50".to_vec()),
        Just(b"-0.01".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"NaN".to_vec()),
        Just("¥8".as_bytes().to_vec()),
        Just("惠城区".as_bytes().to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0]),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

proptest! {
    // 48 cases in the test suite; FUZZ_CASES=5000 for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn csv_ingest_never_panics(body in csv_body(), header in 0usize..3) {
        let tmp = TempDir::new("fuzz");
        let head: &[u8] = match header {
            0 => b"customer_id,txn_id,ts,amount\n",
            1 => b"customer_id,txn_id,ts,amount,margin,quantity\n",
            _ => b"",
        };
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&body);
        std::fs::write(tmp.join("t.csv"), &bytes).unwrap();
        std::fs::write(tmp.join("c.csv"), "customer_id\nC1\n").unwrap();
        let text = format!(
            "[inputs.transactions]\npath = {:?}\n[inputs.customers]\npath = {:?}\n[ingest]\nmax_reject_ratio = 1.0\n",
            tmp.join("t.csv").to_string_lossy(),
            tmp.join("c.csv").to_string_lossy()
        );
        let cfg = Config::parse(&text).unwrap();
        let as_of = chrono::NaiveDate::from_ymd_opt(2010, 12, 31);
        // Any outcome but a panic is fine; a kept frame is internally consistent.
        if let Ok(ing) = tiering::ingest::ingest(&cfg, as_of, &tmp.join("_ingest")) {
            let kept = ing.report["transactions"].rows_kept;
            let typed = ing.transactions.scan().unwrap().collect().unwrap();
            prop_assert_eq!(kept, typed.height());
            prop_assert_eq!(kept, ing.transactions.rows);
            prop_assert!(ing.report["transactions"].rows_read >= kept);
        }
    }

    #[test]
    fn pipeline_file_parser_never_panics(text in "\\PC{0,200}") {
        if let Ok(cfg) = Config::parse(&text) {
            let _ = cfg.validate();
        }
    }

    #[test]
    fn mutated_pipeline_files_never_panic(cut in 0usize..2000, insert in "[\\[\\]=\"a-z0-9 .,\\n]{0,12}") {
        let base = include_str!("../pipelines/dealer_scorecard.toml");
        let at = base.char_indices().map(|(i, _)| i).nth(cut % base.chars().count()).unwrap_or(0);
        let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
        if let Ok(cfg) = Config::parse(&text) {
            let _ = cfg.validate();
        }
    }
}
