//! Property-based fuzzing of the two parsers users feed by hand: the CSV
//! ingest and the pipeline file. Whatever the bytes, the library returns a
//! result (rows kept, rows rejected, or an error) and never panics. A
//! failing case found here becomes a regression test in `hostile.rs`; the
//! mutational loop at the end keeps its corpus in `tests/data/fuzz/`.

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
        let cfg = transactions_config(&tmp, &bytes);
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

/// SplitMix64: a tiny deterministic generator for the mutational loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b",",
    b";",
    b"\n",
    b"\r\n",
    b"\"",
    b"",
    b"2010-02-30",
    b"31/12/2010",
    b"1,234.50",
    b"-",
    b"1e308",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b"C1",
    b"T1",
];

/// One random edit: flip a byte, insert a token, delete a span, duplicate
/// or drop a line, truncate.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                // Duplicate the line holding `at`.
                let start = v[..at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                let end = v[at..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(v.len(), |i| at + i + 1);
                let line = v[start..end].to_vec();
                v.splice(end..end, line);
            }
            4 => v.truncate(at),
            _ => {}
        }
    }
    v
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in ["tests/data/fuzz", "tests/data/hostile"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "csv") {
                files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Writes `bytes` as the transactions file (beside a one-customer file)
/// and a pipeline reading it that rejects rather than stops.
fn transactions_config(tmp: &TempDir, bytes: &[u8]) -> Config {
    std::fs::write(tmp.join("t.csv"), bytes).unwrap();
    std::fs::write(tmp.join("c.csv"), "customer_id\nC1\n").unwrap();
    let text = format!(
        "[inputs.transactions]\npath = {:?}\n[inputs.customers]\npath = {:?}\n[ingest]\nmax_reject_ratio = 1.0\n",
        tmp.join("t.csv").to_string_lossy(),
        tmp.join("c.csv").to_string_lossy()
    );
    Config::parse(&text).unwrap()
}

/// Ingests `bytes` as a transactions file; panics (with the reason) when a
/// row is lost or the library panics.
fn ingest_checked(tmp: &TempDir, bytes: &[u8]) -> Result<(), String> {
    let cfg = transactions_config(tmp, bytes);
    let as_of = chrono::NaiveDate::from_ymd_opt(2010, 12, 31);
    let out = tmp.join("_ingest");
    let result = std::panic::catch_unwind(|| tiering::ingest::ingest(&cfg, as_of, &out));
    match result {
        Err(_) => Err("panicked".into()),
        Ok(Err(_)) => Ok(()),
        Ok(Ok(ing)) => {
            let r = &ing.report["transactions"];
            let accounted =
                r.rows_kept + r.rejected_total() + r.duplicates_collapsed + r.excluded_after_as_of;
            if accounted != r.rows_read {
                return Err(format!(
                    "{} rows read, {accounted} accounted for",
                    r.rows_read
                ));
            }
            Ok(())
        }
    }
}

/// Mutational fuzzing from a kept corpus for `FUZZ_SECONDS` (default 3; CI
/// 60): every corpus file is replayed, then mutants of them are ingested
/// until the time is up. A failing input is saved into `tests/data/fuzz/`
/// (so it is replayed from then on) and the test fails. `FUZZ_SEED` repeats
/// a run; the seed is printed.
#[test]
fn mutated_corpus_never_loses_a_row() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("fuzz: {seconds} s, FUZZ_SEED={seed}");
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the corpus went missing");
    let tmp = TempDir::new("fuzz-corpus");
    let save = |bytes: &[u8], why: &str| -> String {
        let name = format!("crash-{:016x}.csv", fnv1a(bytes));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fuzz")
            .join(&name);
        std::fs::write(&path, bytes).unwrap();
        format!("{why}; input saved as {}", path.display())
    };
    for (name, bytes) in &corpus {
        if let Err(why) = ingest_checked(&tmp, bytes) {
            panic!("corpus file {name}: {why}");
        }
    }
    let mut rng = Rng(seed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut cases = 0u64;
    while std::time::Instant::now() < deadline {
        let (_, base) = &corpus[rng.below(corpus.len())];
        let input = mutate(base, &mut rng);
        if let Err(why) = ingest_checked(&tmp, &input) {
            panic!("{} (seed {seed}, case {cases})", save(&input, &why));
        }
        cases += 1;
    }
    eprintln!("fuzz: {cases} mutants, none lost a row or panicked");
}

/// FNV-1a: names a saved input by its content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
