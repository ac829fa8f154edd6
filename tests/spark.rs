//! Differential tests of the two engines: the same plan on polars and on a
//! real Spark Connect server must give the same answers, column by column
//! (integers, text, dates and flags exactly; floats within 1e-9 relative),
//! and `tiering run|backfill --engine spark`, where Spark reads and checks
//! the transactions itself, must publish byte-identical tables with the
//! same input counts and no transaction row read locally. They need `SPARK_REMOTE=sc://HOST:PORT` and a build with
//! `--features spark` (`.ci/run` starts a server from PyPI's pyspark);
//! without `SPARK_REMOTE` they are skipped and say so.

#[cfg(feature = "spark")]
use polars::prelude::*;

use crate::common::*;

fn remote() -> Option<String> {
    let r = std::env::var("SPARK_REMOTE").ok().filter(|r| !r.is_empty());
    if r.is_none() {
        eprintln!("skipped: SPARK_REMOTE is not set (see tests/spark.rs)");
    }
    r
}

/// Runs `args` (a `run` or `backfill` command line without `--out`) on
/// both engines and checks that every snapshot's tables are the same bytes,
/// that the input counts agree, and that the Spark run read no transaction
/// row locally. Returns the polars engine's output root.
fn both(tmp: &TempDir, args: &[&str], remote: &str) -> std::path::PathBuf {
    let polars_out = tmp.join("polars");
    let spark_out = tmp.join("spark");
    for (out, engine) in [
        (&polars_out, vec![]),
        (
            &spark_out,
            vec!["--engine", "spark", "--spark-remote", remote],
        ),
    ] {
        let mut a = args.to_vec();
        a.extend(["--out", out.to_str().unwrap()]);
        a.extend(engine);
        ok(&a);
    }
    let mut snaps: Vec<_> = std::fs::read_dir(&polars_out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot="))
        .collect();
    snaps.sort();
    assert!(!snaps.is_empty());
    for snap in &snaps {
        let manifest = |root: &std::path::Path| -> serde_json::Value {
            serde_json::from_str(
                &std::fs::read_to_string(root.join(snap).join("manifest.json")).unwrap(),
            )
            .unwrap()
        };
        let (p, s) = (manifest(&polars_out), manifest(&spark_out));
        assert_eq!(s["engine"]["spark"]["remote"], remote);
        assert_eq!(s["transaction_rows_read_locally"], 0, "{snap}");
        let t = |m: &serde_json::Value, k: &str| m["inputs"]["transactions"][k].clone();
        assert_eq!(p["transaction_rows_read_locally"], t(&p, "rows_read"));
        for k in [
            "rows_read",
            "rows_kept",
            "rejected",
            "excluded_after_as_of",
            "duplicates_collapsed",
            "warnings",
        ] {
            assert_eq!(t(&p, k), t(&s, k), "{snap}: inputs.transactions.{k}");
        }
        assert_same_tables(&polars_out.join(snap), &spark_out.join(snap), &[]);
    }
    polars_out
}

#[test]
fn every_shipped_pipeline_publishes_the_same_tables_on_spark() {
    let Some(remote) = remote() else { return };
    for p in ["sample", "dealer_scorecard", "rfm_cn8"] {
        let tmp = TempDir::new(&format!("spark-{p}"));
        let config = format!("pipelines/{p}.toml");
        both(&tmp, &["run", "--config", &config], &remote);
    }
}

#[test]
fn a_backfill_on_spark_publishes_the_same_snapshots() {
    let Some(remote) = remote() else { return };
    let tmp = TempDir::new("spark-backfill");
    let args = [
        "backfill",
        "--config",
        "pipelines/sample.toml",
        "--from",
        "2010-01-01",
        "--to",
        "2010-12-31",
    ];
    let out = both(&tmp, &args, &remote);
    let snapshots = std::fs::read_dir(out)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("snapshot=")
        })
        .count();
    assert_eq!(snapshots, 4);
}

#[test]
fn a_million_transactions_score_the_same_on_spark() {
    let Some(remote) = remote() else { return };
    let tmp = TempDir::new("spark-1e6");
    let data = tmp.join("data");
    generate(&data, 20_000, 1_000_000, 17);
    let file = |n: &str| data.join(n).to_string_lossy().into_owned();
    // Damage rows all through the file, so that rejects, duplicates and a
    // row after the as-of date fall in every part Spark may split it into
    // (their lines are counted across parts).
    let path = data.join("transactions.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::with_capacity(text.len() + 4096);
    let mut previous_id = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
        if i > 0 {
            if i % 100_003 == 0 {
                fields[3] = "n/a".into(); // amount
            } else if i % 250_007 == 0 {
                fields[0] = previous_id.clone(); // txn_id seen on the line before
            } else if i % 400_009 == 0 {
                fields[2] = "2011-03-01".into(); // after the as-of date
            }
            previous_id = fields[0].clone();
        }
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    for split in [false, true] {
        let tmp = TempDir::new(&format!("spark-1e6-{split}"));
        let cfg = format!(
            "as_of = \"2010-12-31\"\n[inputs.transactions]\npath = {:?}\n[inputs.customers]\npath = {:?}\n[inputs.interactions]\npath = {:?}\n[spark]\nquoted_line_breaks = {}\n",
            file("transactions.csv"),
            file("customers.csv"),
            file("interactions.csv"),
            !split,
        );
        let p = tmp.write("p.toml", &cfg);
        let out = both(&tmp, &["run", "--config", &p], &remote);
        let rejects = std::fs::read_to_string(out.join("snapshot=2010-12-31/rejects.csv")).unwrap();
        for why in ["unparseable amount", "duplicate txn_id", "after as_of"] {
            assert!(rejects.contains(why), "{why}: {rejects}");
        }
    }
}

/// `[spark] store = true`: each file is checked into the store here, once,
/// and Spark scores from the store's pre-aggregates. A history, then a
/// night's file sharing ten days with it (so Spark sums those days across
/// files): each run publishes the local engine's tables byte for byte, with
/// the same input counts, and reads here only the rows of its new file.
#[test]
fn spark_over_the_store_reads_here_only_the_new_files_rows() {
    let Some(remote) = remote() else { return };
    let tmp = TempDir::new("spark-store");
    let data = tmp.join("data");
    generate(&data, 300, 6000, 41);
    let drops = tmp.join("drops");
    std::fs::create_dir_all(&drops).unwrap();
    let (history, mut night) = crate::store::split_history(&data);
    // A second purchase of a history row's customer on its day, in the
    // night's file: that customer's day is then in both files'
    // pre-aggregates. The customer with the fewest rows, whose median gap
    // a day counted twice (a gap of 0) would change.
    let rows_of = |cid: &str| history.matches(&format!(",{cid},")).count();
    let shared = history
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[2] > "2010-12-10" && !f[3].starts_with('-')
        })
        .min_by_key(|l| rows_of(l.split(',').nth(1).unwrap()))
        .unwrap();
    night.push_str(&format!("LATE-1,{}\n", shared.split_once(',').unwrap().1));
    let file = |n: &str| data.join(n).to_string_lossy().into_owned();
    let cfg = format!(
        "as_of = \"2010-12-31\"\n[inputs.transactions]\npath = {:?}\n[inputs.customers]\npath = {:?}\n[inputs.interactions]\npath = {:?}\n[spark]\nstore = true\n",
        drops.join("t_*.csv").to_string_lossy(),
        file("customers.csv"),
        file("interactions.csv"),
    );
    let p = tmp.write("p.toml", &cfg);
    let (polars_out, spark_out) = (tmp.join("polars"), tmp.join("spark"));
    let manifest = |out: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(out.join("snapshot=2010-12-31/manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    for (name, text) in [("t_1.csv", &history), ("t_2.csv", &night)] {
        std::fs::write(drops.join(name), text).unwrap();
        let run = ["run", "--config", &p, "--overwrite", "--out"];
        ok(&[&run[..], &[polars_out.to_str().unwrap()]].concat());
        let spark = ["--engine", "spark", "--spark-remote", &remote];
        let o = tiering(
            &[
                &["-v"][..],
                &run[..],
                &[spark_out.to_str().unwrap()],
                &spark[..],
            ]
            .concat(),
        );
        let log = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{log}");
        // The earlier tierings are kept under the same names as the local
        // engine's. The first run computes their dates' measures on Spark;
        // the night's rows are all later, so the night reads them back and
        // Spark computes the as-of date's measures alone.
        let kept = tierings(&spark_out);
        assert!(kept.len() >= 2, "{kept:?}");
        assert_eq!(kept, tierings(&polars_out));
        let dates = if name == "t_1.csv" { kept.len() + 1 } else { 1 };
        assert!(
            log.contains(&format!("spark measures dates={dates} ")),
            "{log}"
        );
        let (l, s) = (manifest(&polars_out), manifest(&spark_out));
        assert_eq!(s["engine"]["spark"]["remote"], remote.as_str());
        let rows = text.lines().count() - 1;
        assert_eq!(s["transaction_rows_read_locally"], rows, "{name}");
        assert_eq!(s["store"]["rows_read"], rows, "{name}");
        assert_eq!(
            s["store"]["ingested"],
            serde_json::json!([drops.join(name)])
        );
        assert_eq!(s["store"]["files"], l["store"]["files"]);
        assert_eq!(s["inputs"]["transactions"], l["inputs"]["transactions"]);
        assert_same_tables(
            &polars_out.join("snapshot=2010-12-31"),
            &spark_out.join("snapshot=2010-12-31"),
            &[],
        );
    }
}

/// The earlier tierings kept in the store under `out`, by file name.
fn tierings(out: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("_store/tierings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A pipeline file over one hostile transactions file with `options`.
fn hostile_config(tmp: &TempDir, file: &str, options: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile");
    let cfg = format!(
        "as_of = \"2010-12-31\"\n[inputs.transactions]\npath = {:?}\n{options}\n[inputs.customers]\npath = {:?}\n[ingest]\nmax_reject_ratio = 0.5\n",
        dir.join(file).to_string_lossy(),
        dir.join("customers.csv").to_string_lossy(),
    );
    tmp.write("p.toml", &cfg)
}

/// The hostile corpus (`tests/data/hostile/`) on both engines: where the
/// local engine accepts a file, Spark publishes the same tables, rejects
/// included; where it stops at the reject-ratio limit, Spark stops with the
/// same exit code and reason.
#[test]
fn the_hostile_corpus_gives_the_same_rejects_on_spark() {
    let Some(remote) = remote() else { return };
    let cases = [
        ("bom_crlf.csv", ""),
        ("thousands_currency.csv", ""),
        ("thousands_currency.csv", "thousands_separator = \",\""),
        (
            "decimal_comma.csv",
            "delimiter = \";\"\nthousands_separator = \".\"\ndecimal_comma = true",
        ),
        ("mixed_dates_late.csv", ""),
        ("truncated.csv", ""),
        ("quoted_newline.csv", ""),
        ("dup_*.csv", ""),
        // Read line by line (Spark may split files): the same rows.
        ("dup_*.csv", "[spark]\nquoted_line_breaks = false"),
        ("header_only.csv", ""),
        ("bad_utf8.csv", "encoding = \"utf8-lossy\""),
        ("bad_margin.csv", ""),
    ];
    for (i, (file, options)) in cases.iter().enumerate() {
        let tmp = TempDir::new(&format!("spark-hostile-{i}"));
        let p = hostile_config(&tmp, file, options);
        both(&tmp, &["run", "--config", &p], &remote);
    }
    // 3 of 4 amounts are NaN or infinite: over the limit on both engines.
    let tmp = TempDir::new("spark-hostile-limit");
    let p = hostile_config(&tmp, "nan_inf.csv", "");
    let out = tmp.join("out");
    for engine in [vec![], vec!["--engine", "spark", "--spark-remote", &remote]] {
        let mut a = vec!["run", "--config", &p, "--out", out.to_str().unwrap()];
        a.extend(engine);
        let o = tiering(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(err.contains("unparseable amount"), "{err}");
    }
}

/// Column by column: equal heights, names and types; integers, text, dates
/// and flags exactly; floats within 1e-9 relative.
#[cfg(feature = "spark")]
fn assert_frames_agree(what: &str, a: &DataFrame, b: &DataFrame) {
    assert_eq!(a.height(), b.height(), "{what}: row counts differ");
    assert_eq!(a.get_column_names(), b.get_column_names(), "{what}");
    for (x, y) in a.columns().iter().zip(b.columns()) {
        let name = x.name();
        assert_eq!(x.dtype(), y.dtype(), "{what}.{name}: types differ");
        if x.dtype() == &DataType::Float64 {
            for (i, (p, q)) in x
                .f64()
                .unwrap()
                .iter()
                .zip(y.f64().unwrap().iter())
                .enumerate()
            {
                let same = match (p, q) {
                    (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-300),
                    (None, None) => true,
                    _ => false,
                };
                assert!(same, "{what}.{name} row {i}: polars {p:?}, spark {q:?}");
            }
        } else {
            let (p, q) = (x.as_materialized_series(), y.as_materialized_series());
            if !p.equals_missing(q) {
                let i = (0..p.len())
                    .find(|i| p.get(*i).ok() != q.get(*i).ok())
                    .unwrap_or(0);
                panic!(
                    "{what}.{name} row {i}: polars {:?}, spark {:?}",
                    p.get(i).ok(),
                    q.get(i).ok()
                );
            }
        }
    }
}

#[cfg(feature = "spark")]
#[test]
fn the_plan_gives_the_same_tables_on_both_backends() {
    use tiering::config::Config;
    use tiering::plan::{BUYERS_COLUMNS, CORE_COLUMNS, CustomerPlan, Relation, Sources};
    use tiering::snapshot::{Daily, Frames};

    let Some(remote) = remote() else { return };
    let tmp = TempDir::new("spark-plan");
    let data = tmp.join("data");
    generate(&data, 400, 12_000, 23);
    let out = tmp.join("out");
    ok(&[
        "ingest",
        "--transactions",
        data.join("transactions.csv").to_str().unwrap(),
        "--customers",
        data.join("customers.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let dir = out.join("_ingest").canonicalize().unwrap();
    let typed = tiering::ingest::typed_file(dir.join("transactions.parquet")).unwrap();
    let customers = tiering::io::scan_parquet(&dir.join("customers.parquet"))
        .unwrap()
        .collect()
        .unwrap();
    let frames = Frames {
        daily: Daily::in_memory(typed.scan().unwrap(), true, true).unwrap(),
        customers: customers.lazy(),
        interactions: tiering::scoring::engagement::empty_interactions(),
        has_margin: true,
        has_quantity: true,
        attributes: vec![],
        given: Default::default(),
        frugal: false,
        wanted: tiering::snapshot::Wanted::ALL,
        tierings: None,
    };
    let src = Sources {
        transactions: Relation::Parquet(typed.paths[0].display().to_string()),
        customers: dir.join("customers.parquet").display().to_string(),
        pre_aggregated: false,
    };
    let spark = tiering::spark::Spark::connect(&remote).unwrap();
    // The defaults, and every other branch of the plan at once.
    let variant = "[measures]\nwindow_days = 180\nfrequency = \"days\"\nmonetary = \"mean\"\n\
                   [rfm]\nmode = \"fixed\"\n[rfm.edges]\nrecency = [30, 90, 180, 365]\nfrequency = [2, 4, 8, 16]\nmonetary = [500, 2000, 8000, 20000]\n\
                   [pyramid]\nmode = \"contribution_share\"\ncontribution_share_cuts = [70, 90]\nlabels = [\"A\", \"B\", \"C\"]\n";
    for (label, extra) in [("defaults", ""), ("variant", variant)] {
        let text = format!(
            "[inputs.transactions]\npath = \"t.csv\"\n[inputs.customers]\npath = \"c.csv\"\n{extra}"
        );
        let cfg = Config::parse(&text).unwrap();
        cfg.validate().unwrap();
        for as_of in ["2010-12-31", "2010-06-30"] {
            let d: chrono::NaiveDate = as_of.parse().unwrap();
            let plan = CustomerPlan::new(&cfg, d, true, true);
            let (core, buyers) = plan.polars(&frames, &cfg).unwrap();
            let (core_sql, buyers_sql) = plan.spark_sql(&src).unwrap();
            let spark_core = spark.query(&core_sql, CORE_COLUMNS).unwrap();
            let spark_buyers = spark.query(&buyers_sql, BUYERS_COLUMNS).unwrap();
            assert!(core.height() > 300, "{label} {as_of}: {}", core.height());
            assert!(
                buyers.height() > 100,
                "{label} {as_of}: {}",
                buyers.height()
            );
            assert_frames_agree(&format!("{label} {as_of} core"), &core, &spark_core);
            assert_frames_agree(&format!("{label} {as_of} buyers"), &buyers, &spark_buyers);
        }
    }
}
