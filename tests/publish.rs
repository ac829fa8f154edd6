//! Nightly-batch publishing: a kill at any point leaves the last good
//! snapshot, a backfill equals single runs, outputs are typed for BI tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn run_with_failpoint(args: &[&str], point: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tiering"))
        .args(args)
        .env("TIERING_FAILPOINT", point)
        .output()
        .unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn snapshot_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .filter(|n| n != "manifest.json")
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

/// `tiering run` on a generated data set as of 2010-12-31, plus `extra`.
fn args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["run".to_string(), "--as-of".into(), "2010-12-31".into()];
    v.extend(input_args(data, out));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_kill_at_any_point_keeps_the_last_good_snapshot() {
    let tmp = TempDir::new("kill");
    let data = tmp.join("data");
    generate(&data, 80, 800, 21);
    let out = tmp.join("out");
    let snap = out.join("snapshot=2010-12-31");

    // First run killed while writing: nothing published; the next run
    // cleans up after it without help.
    let a = args(&data, &out, &[]);
    let o = run_with_failpoint(&strs_of(&a), "after_table:customer_scores");
    assert!(!o.status.success());
    assert!(!snap.exists());
    assert!(listing(&out).iter().any(|n| n.starts_with(".staging-")));
    ok(&strs_of(&a));
    let good = snapshot_bytes(&snap);
    assert!(!listing(&out).iter().any(|n| n.starts_with(".staging-")));

    // Different data, --overwrite, killed at each point of the publish: the
    // good snapshot survives (or is restored by the next run).
    generate(&data, 80, 900, 22);
    let b = args(&data, &out, &["--overwrite"]);
    for point in [
        "after_ingest",
        "after_score",
        "after_table:pyramid",
        "before_rename",
    ] {
        let o = run_with_failpoint(&strs_of(&b), point);
        assert!(!o.status.success(), "{point}");
        assert_eq!(snapshot_bytes(&snap), good, "after a kill at {point}");
    }
    let o = run_with_failpoint(&strs_of(&b), "between_renames");
    assert!(!o.status.success());
    assert!(!snap.exists(), "the old snapshot was moved aside");
    // The next run, even one that is refused, puts the old snapshot back.
    let refused = tiering(&strs_of(&a));
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(snapshot_bytes(&snap), good);
    // And a completed overwrite replaces it.
    ok(&strs_of(&b));
    assert_ne!(snapshot_bytes(&snap), good);
    let names = listing(&out);
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no lock, staging or aside left: {names:?}"
    );
}

#[test]
fn backfill_snapshots_equal_single_runs() {
    let tmp = TempDir::new("backfill");
    let data = tmp.join("data");
    generate(&data, 120, 2000, 31);
    let bf = tmp.join("bf");
    let base = |out: &PathBuf| -> Vec<String> { input_args(&data, out) };
    let mut a = vec![
        "backfill".to_string(),
        "--from".into(),
        "2010-02-15".into(),
        "--to".into(),
        "2010-12-31".into(),
        "--every".into(),
        "quarter".into(),
    ];
    a.extend(base(&bf));
    ok(&strs_of(&a));
    let dates = ["2010-03-31", "2010-06-30", "2010-09-30", "2010-12-31"];
    assert_eq!(
        listing(&bf)
            .into_iter()
            .filter(|n| n.starts_with("snapshot="))
            .collect::<Vec<_>>(),
        dates
            .iter()
            .map(|d| format!("snapshot={d}"))
            .collect::<Vec<_>>()
    );
    for d in dates {
        let single = tmp.join(&format!("single-{d}"));
        let mut r = vec!["run".to_string(), "--as-of".into(), d.into()];
        r.extend(base(&single));
        ok(&strs_of(&r));
        let x = bf.join(format!("snapshot={d}"));
        let y = single.join(format!("snapshot={d}"));
        for (name, bytes) in snapshot_bytes(&x) {
            if name.starts_with("rejects.") || name == "report.html" {
                // A backfill ingests once, as of --to: its rejects and the
                // report's ingest counts speak of that ingest (README).
                continue;
            }
            let single_bytes = std::fs::read(y.join(&name)).unwrap();
            if bytes != single_bytes {
                let a = String::from_utf8_lossy(&bytes).into_owned();
                let b = String::from_utf8_lossy(&single_bytes).into_owned();
                let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
                panic!("{d} {name} differs (backfill vs single): {first:?}");
            }
        }
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(x.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(m["as_of"], d);
        assert_eq!(m["backfill"]["every"], "quarter");
    }
}

#[test]
fn outputs_read_back_with_an_independent_parquet_reader() {
    use parquet::basic::{Compression, Encoding, LogicalType, Type as Physical};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let tmp = TempDir::new("bi");
    let snap = run_pipeline(&tmp, "sample.toml");
    let file = std::fs::File::open(snap.join("customer_scores.parquet")).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let column = |name: &str| {
        (0..schema.num_columns())
            .map(|i| schema.column(i))
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(
        column("first_purchase").logical_type_ref(),
        Some(&LogicalType::Date)
    );
    assert_eq!(
        column("region").logical_type_ref(),
        Some(&LogicalType::String)
    );
    assert_eq!(column("monetary").physical_type(), Physical::DOUBLE);
    assert_eq!(column("frequency").physical_type(), Physical::INT64);
    assert_eq!(column("in_scope").physical_type(), Physical::BOOLEAN);
    assert_eq!(meta.file_metadata().num_rows(), 400);
    let rg = meta.row_group(0);
    for c in rg.columns() {
        assert!(
            matches!(c.compression(), Compression::ZSTD(_)),
            "{:?}",
            c.column_path()
        );
    }
    let region = rg
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "region")
        .unwrap();
    assert!(
        region.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
        "region is dictionary-encoded"
    );
    // Values: read the region of the first row with the independent reader.
    let first = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
    let polars_first = read_parquet(&snap.join("customer_scores.parquet"));
    let want = strs(&polars_first, "region")[0].clone().unwrap();
    let got = first
        .get_column_iter()
        .find(|(n, _)| n.as_str() == "region")
        .map(|(_, v)| v.to_string())
        .unwrap();
    assert_eq!(got.trim_matches('"'), want);

    // CSV for Excel: BOM (Chinese text), ISO dates, '.' decimals.
    let csv = std::fs::read_to_string(snap.join("customer_scores.csv")).unwrap();
    assert!(csv.starts_with('\u{feff}'));
    let header: Vec<&str> = csv
        .lines()
        .next()
        .unwrap()
        .trim_start_matches('\u{feff}')
        .split(',')
        .collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let at = |c: &str| row[header.iter().position(|h| *h == c).unwrap()];
    assert!(chrono::NaiveDate::parse_from_str(at("first_purchase"), "%Y-%m-%d").is_ok());
    assert!(at("monetary").parse::<f64>().is_ok() && !at("monetary").contains(' '));
    // An ASCII-only table gets no BOM.
    let pyr = std::fs::read(snap.join("pyramid.csv")).unwrap();
    assert_ne!(&pyr[..3], b"\xEF\xBB\xBF");

    // `tiering inspect` shows the manifest readably.
    let text = ok(&["inspect", snap.to_str().unwrap()]);
    assert!(text.contains("as of      2010-12-31"), "{text}");
    assert!(
        text.contains("customer_scores") && text.contains("400 rows"),
        "{text}"
    );
}

#[test]
fn a_full_disk_fails_cleanly_and_the_next_run_recovers() {
    let tmp = TempDir::new("diskfull");
    let data = tmp.join("data");
    generate(&data, 60, 500, 41);
    let out = tmp.join("out");
    let snap = out.join("snapshot=2010-12-31");
    let a = args(&data, &out, &[]);
    ok(&strs_of(&a));
    let good = snapshot_bytes(&snap);
    generate(&data, 60, 600, 42);
    let b = args(&data, &out, &["--overwrite"]);
    // customer_scores is written beside the summaries, on its own thread;
    // tier_summary after them.
    for table in ["tier_summary", "customer_scores"] {
        let o = run_with_failpoint(&strs_of(&b), &format!("disk_full:{table}"));
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{table}.csv")) && err.contains("No space left"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(
            snapshot_bytes(&snap),
            good,
            "the last good snapshot is untouched"
        );
        assert!(
            listing(&out).iter().all(|n| !n.starts_with(".staging-")),
            "staging removed"
        );
    }
    ok(&strs_of(&b));
    assert_ne!(snapshot_bytes(&snap), good);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("manifest.json")).unwrap())
            .unwrap();
    let checked = m["invariants"].as_array().unwrap();
    assert!(checked.iter().any(|i| {
        i["name"]
            .as_str()
            .unwrap()
            .contains("reconciles with the ingested window total")
    }));
}

/// `validate` computes everything and leaves no file: not in the output
/// root, not in the temporary folder, even when killed (the next validate
/// removes what a dead one left).
#[test]
fn validate_leaves_no_file_even_when_killed() {
    let tmp = TempDir::new("validate");
    let data = tmp.join("data");
    generate(&data, 60, 500, 43);
    let out = tmp.join("out");
    let scratch = tmp.join("tmpdir");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut a = args(&data, &out, &[]);
    a[0] = "validate".into();
    let validate = |failpoint: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tiering"));
        c.args(&a).env("TMPDIR", &scratch);
        if let Some(p) = failpoint {
            c.env("TIERING_FAILPOINT", p);
        }
        c.output().unwrap()
    };
    let o = validate(None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // It did compute: the summary names the customers it scored.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("60 customers"),
        "{o:?}"
    );
    assert!(!out.exists(), "validate created the output root");
    assert!(listing(&scratch).is_empty(), "{:?}", listing(&scratch));

    let killed = validate(Some("validate_after_ingest"));
    assert!(!killed.status.success());
    let left = listing(&scratch);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("tiering-validate-"), "{left:?}");

    let o = validate(None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(listing(&scratch).is_empty(), "{:?}", listing(&scratch));
    assert!(!out.exists());
}

/// `--tables` computes only the summaries it publishes (and the earlier
/// dates' tierings they read), leaves the tierings a full run keeps for the
/// next full run, and a table it does compute is a full run's, byte for byte.
#[test]
fn tables_option_computes_only_what_it_publishes() {
    let tmp = TempDir::new("tables-work");
    let data = tmp.join("data");
    generate(&data, 60, 600, 45);
    let out = tmp.join("out");
    ok(&strs_of(&args(&data, &out, &[])));
    let snap = out.join("snapshot=2010-12-31");
    let read = |f: &str| std::fs::read(snap.join(f)).unwrap();
    let (migration, region) = (
        read("tier_migration.parquet"),
        read("concentration_region.parquet"),
    );
    // Two report-year ends and the previous quarter end.
    let tierings = out.join("_store").join("tierings");
    let kept = listing(&tierings);
    assert_eq!(kept.len(), 3, "{kept:?}");
    let logged = |tables: &str| -> String {
        let mut a = vec!["-vv".to_string()];
        a.extend(args(&data, &out, &["--tables", tables, "--overwrite"]));
        let o = tiering(&strs_of(&a));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let summaries = ["concentration", "churn", "follow_up", "migration"];
    let log = logged("customer_scores");
    assert!(log.contains("scored"), "{log}");
    for s in summaries {
        assert!(!log.contains(&format!("summary=\"{s}\"")), "{s}: {log}");
    }
    assert!(!log.contains("auxiliary tiering"), "{log}");
    assert_eq!(listing(&tierings), kept);

    let log = logged("tier_migration,concentration_region");
    let computed: Vec<&str> = summaries
        .into_iter()
        .filter(|s| log.contains(&format!("summary=\"{s}\"")))
        .collect();
    assert_eq!(computed, ["concentration", "migration"], "{log}");
    assert_eq!(log.matches("reused=true").count(), 3, "{log}");
    assert_eq!(read("tier_migration.parquet"), migration);
    assert_eq!(read("concentration_region.parquet"), region);
}

/// `--tables` publishes only the named tables (byte-identical to a full
/// run's), always with the manifest, never a partial report; a name the
/// pipeline does not publish is refused with the list; backfill too.
#[test]
fn tables_option_publishes_only_the_named_tables() {
    let tmp = TempDir::new("tables");
    let data = tmp.join("data");
    generate(&data, 60, 600, 44);
    let full = tmp.join("full");
    ok(&strs_of(&args(&data, &full, &[])));
    let part = tmp.join("part");
    ok(&strs_of(&args(
        &data,
        &part,
        &["--tables", "pyramid,customer_scores"],
    )));
    let snap = |root: &Path| root.join("snapshot=2010-12-31");
    assert_eq!(
        listing(&snap(&part)),
        [
            "_SUCCESS",
            "customer_scores.csv",
            "customer_scores.parquet",
            "manifest.json",
            "pyramid.csv",
            "pyramid.parquet"
        ]
    );
    for f in [
        "customer_scores.csv",
        "customer_scores.parquet",
        "pyramid.csv",
        "pyramid.parquet",
    ] {
        assert_eq!(
            std::fs::read(snap(&part).join(f)).unwrap(),
            std::fs::read(snap(&full).join(f)).unwrap(),
            "{f}"
        );
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap(&part).join("manifest.json")).unwrap())
            .unwrap();
    let outputs: Vec<&str> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["customer_scores", "pyramid"]);

    let bad = tiering(&strs_of(&args(
        &data,
        &tmp.join("bad"),
        &["--tables", "pyramid,nope"],
    )));
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("'nope'") && err.contains("concentration_region") && err.contains("rejects"),
        "{err}"
    );
    assert!(!tmp.join("bad").join("snapshot=2010-12-31").exists());

    let bf = tmp.join("bf");
    let mut b = vec![
        "backfill".to_string(),
        "--from".into(),
        "2010-06-30".into(),
        "--to".into(),
        "2010-12-31".into(),
        "--tables".into(),
        "tier_summary".into(),
    ];
    b.extend(input_args(&data, &bf));
    ok(&strs_of(&b));
    for d in ["2010-06-30", "2010-09-30", "2010-12-31"] {
        assert_eq!(
            listing(&bf.join(format!("snapshot={d}"))),
            [
                "_SUCCESS",
                "manifest.json",
                "tier_summary.csv",
                "tier_summary.parquet"
            ],
            "{d}"
        );
    }
    assert_eq!(
        std::fs::read(bf.join("snapshot=2010-12-31/tier_summary.parquet")).unwrap(),
        std::fs::read(snap(&full).join("tier_summary.parquet")).unwrap()
    );

    // Parquet only: the same Parquet bytes, no CSV, and the manifest says so.
    let pq = tmp.join("pq");
    ok(&strs_of(&args(&data, &pq, &["--no-csv"])));
    let (with, without) = (listing(&snap(&full)), listing(&snap(&pq)));
    let parquet: Vec<&String> = with.iter().filter(|n| n.ends_with(".parquet")).collect();
    assert!(parquet.len() > 10, "{with:?}");
    assert!(!without.iter().any(|n| n.ends_with(".csv")), "{without:?}");
    assert_eq!(
        without,
        with.iter()
            .filter(|n| !n.ends_with(".csv"))
            .cloned()
            .collect::<Vec<_>>()
    );
    for f in parquet {
        assert_eq!(
            std::fs::read(snap(&pq).join(f)).unwrap(),
            std::fs::read(snap(&full).join(f)).unwrap(),
            "{f}"
        );
    }
    let csv_flags = |root: &Path| -> Vec<bool> {
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(snap(root).join("manifest.json")).unwrap(),
        )
        .unwrap();
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["csv"].as_bool().unwrap())
            .collect()
    };
    let (a, b) = (csv_flags(&full), csv_flags(&pq));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().all(|x| *x) && b.iter().all(|x| !*x), "{a:?} {b:?}");
}

/// `publish.parquet_compression` sets every published Parquet file's
/// codec (read by the independent reader); the values are the same under
/// each, the CSVs byte-identical; an unknown codec names the key. Written
/// through the page cache (`publish.direct_io = false`) every file has the
/// same bytes as written around it (the default).
#[test]
fn published_parquet_is_compressed_as_configured() {
    let tmp = TempDir::new("publish-codec");
    let sample = std::fs::read_to_string("pipelines/sample.toml").unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let sample = sample.replace("../sample_data", data.to_str().unwrap());
    let run = |codec: Option<&str>| -> (std::process::Output, PathBuf) {
        let name = codec.unwrap_or("default");
        let config = tmp.join(&format!("{name}.toml"));
        let extra = match codec {
            Some("buffered") => "\n[publish]\ndirect_io = false\n".to_string(),
            Some(c) => format!("\n[publish]\nparquet_compression = \"{c}\"\n"),
            None => String::new(),
        };
        std::fs::write(&config, format!("{sample}{extra}")).unwrap();
        let out = tmp.join(name);
        let o = tiering(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        (o, out.join("snapshot=2010-12-31"))
    };
    // Every published table's Parquet file, its codecs together.
    let codecs = |snap: &Path| -> std::collections::BTreeSet<String> {
        ["customer_scores", "pyramid", "follow_up", "rejects"]
            .iter()
            .flat_map(|t| parquet_codecs(&snap.join(format!("{t}.parquet"))))
            .collect()
    };
    let (o, default) = run(None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(codecs(&default), ["ZSTD".to_string()].into());
    for (codec, expect) in [
        ("snappy", "SNAPPY"),
        ("none", "UNCOMPRESSED"),
        ("zstd", "ZSTD"),
    ] {
        let (o, snap) = run(Some(codec));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(codecs(&snap), [expect.to_string()].into(), "{codec}");
        for table in [
            "customer_scores",
            "pyramid",
            "follow_up",
            "concentration_region",
        ] {
            let (a, b) = (
                read_parquet(&default.join(format!("{table}.parquet"))),
                read_parquet(&snap.join(format!("{table}.parquet"))),
            );
            assert!(a.equals_missing(&b), "{table} under {codec}");
            let csv = format!("{table}.csv");
            assert_eq!(
                std::fs::read(default.join(&csv)).unwrap(),
                std::fs::read(snap.join(&csv)).unwrap(),
                "{csv} under {codec}"
            );
        }
    }
    let (o, buffered) = run(Some("buffered"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut compared = 0;
    for entry in std::fs::read_dir(&default).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_str().unwrap();
        if name.ends_with(".parquet") || name.ends_with(".csv") {
            assert_eq!(
                std::fs::read(default.join(name)).unwrap(),
                std::fs::read(buffered.join(name)).unwrap(),
                "{name} through the page cache"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 11, "every table's Parquet and CSV");
    let (o, _) = run(Some("gzip"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("parquet_compression"), "{err}");
}
