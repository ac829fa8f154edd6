//! Timings of the hot per-customer expressions on a synthetic frame, for
//! iterating on one expression without the whole pipeline (the end-to-end
//! comparison with DuckDB and polars is `benches/run.sh`). Run with
//! `cargo bench --bench hot` (`HOT_ROWS`, default 5,000,000 transactions
//! of `HOT_ROWS / 10` customers over two years). Prints the median of
//! `HOT_REPS` (default 5) runs of each step.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use polars::prelude::*;
use tiering::config::Config;
use tiering::io::Run;
use tiering::scoring::{engagement, measures, pyramid};
use tiering::snapshot::{self, Daily, Frames};

// The binary's allocator, keeping freed buffers as a single run does: a
// step's time is then its own work, not the host's zeroing of fresh pages.
#[global_allocator]
static ALLOC: tiering::alloc::LargeMapped = tiering::alloc::LargeMapped;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Transactions with the typed schema: a fixed linear congruential stream,
/// so every run times the same data.
fn transactions(rows: usize) -> DataFrame {
    let customers = (rows / 10).max(1) as u64;
    let mut x = 42u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let start = tiering::units::epoch_days(NaiveDate::from_ymd_opt(2009, 1, 1).unwrap());
    let (mut id, mut ts, mut amount, mut margin, mut qty) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for _ in 0..rows {
        id.push(format!("C{:07}", next() % customers));
        ts.push(start + (next() % 730) as i32);
        let cents = (next() % 200_000) as i64 - 5_000;
        amount.push(cents);
        margin.push(cents / 7);
        qty.push((1 + next() % 4) as f64);
    }
    df!(
        "customer_id" => id,
        "ts" => ts,
        "amount_cents" => amount,
        "margin_cents" => margin,
        "quantity" => qty,
    )
    .unwrap()
    .lazy()
    .with_column(col("ts").cast(DataType::Date))
    .collect()
    .unwrap()
}

/// Times `f` (skipped unless its label contains `HOT_ONLY`, when set):
/// the median wall time, and the median CPU time of the process (user and
/// system, all threads), steadier on a shared host than the wall.
fn time<T>(label: &str, reps: usize, mut f: impl FnMut() -> T) {
    if !wanted(label) {
        return;
    }
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_time());
            std::hint::black_box(f());
            (t.elapsed(), cpu_time() - c)
        })
        .unzip();
    wall.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<44} {:>9.1} ms {:>9.1} ms CPU",
        ms(wall[reps / 2]),
        ms(cpu[reps / 2])
    );
}

/// Whether the step `label` runs: always, or when it contains `HOT_ONLY`.
fn wanted(label: &str) -> bool {
    std::env::var("HOT_ONLY")
        .ok()
        .is_none_or(|only| label.contains(&only))
}

/// The process's CPU time so far, user and system.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    tiering::alloc::keep_freed(4 << 30);
    let rows = env("HOT_ROWS", 5_000_000);
    let reps = env("HOT_REPS", 5).max(1);
    let txns = transactions(rows);
    let cfg = Config::default();
    let as_of = NaiveDate::from_ymd_opt(2010, 12, 31).unwrap();
    println!("{rows} transactions, median of {reps}");
    // Staging's per-value parsing: amounts (as the CSV reader gives them)
    // to cents, ISO dates to days.
    let raw = txns
        .clone()
        .lazy()
        .select([
            (col("amount_cents").cast(DataType::Float64) / lit(100.0)).alias("amount"),
            col("ts").cast(DataType::String).alias("ts"),
        ])
        .collect()
        .unwrap();
    time("amounts to cents", reps, || {
        let cents = tiering::ingest::cents_from(col("amount")).alias("cents");
        raw.clone().lazy().select([cents]).run().unwrap()
    });
    csv_windows(&txns, reps);
    let formats = tiering::config::default_date_formats();
    // A format of no fixed shape among them sends every batch to polars.
    let mut other = formats.clone();
    other.push("%d.%m.%Y".into());
    for (label, formats) in [
        ("dates parsed", &formats),
        ("dates by polars, 6 formats each tried", &other),
    ] {
        time(label, reps, || {
            let days = tiering::ingest::parse_date_text(col("ts"), &DataType::String, formats);
            raw.clone().lazy().select([days]).run().unwrap()
        });
    }
    let keys = tiering::daily::customer_keys(txns.clone().lazy())
        .run()
        .unwrap();
    time("store's pre-aggregate (sorted walk)", reps, || {
        tiering::daily::daily_sorted(txns.clone().lazy(), true, true)
            .unwrap()
            .unwrap()
    });
    time("daily pre-aggregate", reps, || {
        tiering::daily::daily(txns.clone().lazy(), keys.clone().lazy(), true, true)
            .run()
            .unwrap()
    });
    let daily = tiering::daily::daily(txns.clone().lazy(), keys.clone().lazy(), true, true)
        .run()
        .unwrap();
    let by_id = tiering::daily::daily_by_id(txns.clone().lazy(), true, true)
        .run()
        .unwrap();
    time("stored pre-aggregate sorted by id, day", reps, || {
        let mut d = by_id.clone();
        d.rechunk_mut_par();
        d.lazy()
            .sort(["customer_id", "ts"], Default::default())
            .run()
            .unwrap()
    });
    time("stored pre-aggregate, tiering::order", reps, || {
        tiering::order::sort_by_id(by_id.clone(), Some("ts")).unwrap()
    });
    time("median gaps", reps, || {
        measures::median_gaps(daily.clone().lazy()).run().unwrap()
    });
    for gaps in [false, true] {
        time(&format!("measures (median gap: {gaps})"), reps, || {
            measures::measures_with_gaps(
                daily.clone().lazy(),
                keys.clone().lazy(),
                as_of,
                &cfg.measures,
                true,
                true,
                gaps,
            )
            .run()
            .unwrap()
        });
    }
    let sorted_daily = tiering::scoring::held::Held::Whole(
        tiering::scoring::sorted::sort_daily(daily.clone()).unwrap(),
    );
    time("pre-aggregate sorted by cid, day", reps, || {
        tiering::scoring::sorted::sort_daily(daily.clone()).unwrap()
    });
    for (what, name) in [
        (
            tiering::scoring::sorted::Measured::All { gaps: true },
            "measures in one scan of the sorted",
        ),
        (
            tiering::scoring::sorted::Measured::Tiering,
            "an earlier tiering's measures, one scan",
        ),
    ] {
        time(name, reps, || {
            tiering::scoring::sorted::measures_sorted(
                &sorted_daily,
                &keys,
                as_of,
                &cfg.measures,
                true,
                true,
                what,
            )
            .unwrap()
        });
    }
    let ids = keys
        .clone()
        .lazy()
        .select([col("customer_id")])
        .with_columns([
            lit("north").alias("region"),
            lit("retail").alias("industry"),
            lit("name").alias("name"),
            lit("dealer").alias("segment"),
            lit("rep01").alias("sales_rep"),
        ])
        .run()
        .unwrap();
    let f = Frames {
        daily: Daily::Memory {
            daily: sorted_daily.clone(),
            keys: keys.clone(),
        },
        customers: ids.lazy(),
        interactions: engagement::empty_interactions(),
        has_margin: true,
        has_quantity: true,
        attributes: vec![],
        given: Default::default(),
        frugal: false,
        wanted: tiering::snapshot::Wanted::ALL,
        tierings: None,
    };
    let base = snapshot::base(&f, as_of, &cfg).unwrap().run().unwrap();
    time("pyramid assignment", reps, || {
        pyramid::assign(base.clone().lazy(), &cfg.pyramid)
            .unwrap()
            .run()
            .unwrap()
    });
    time("full scoring from the base", reps, || {
        snapshot::score(base.clone().lazy(), as_of, &cfg, &[])
            .unwrap()
            .run()
            .unwrap()
    });
    time("full scoring from the pre-aggregate", reps, || {
        snapshot::scores_as_of(&f, as_of, &cfg).unwrap()
    });
    let year_end = NaiveDate::from_ymd_opt(2009, 12, 31).unwrap();
    time("pyramid-only tiering", reps, || {
        snapshot::tiers_as_of(&f, year_end, &cfg, "pyramid").unwrap()
    });
    // Publishing a table: `HOT_TABLE` names a published Parquet table
    // (e.g. a 10^7 run's customer_scores.parquet), written again as
    // Parquet, as CSV, and both as a run publishes them.
    if let Ok(path) = std::env::var("HOT_TABLE") {
        // One chunk per column, as a run's scored frame is.
        let mut df = ParquetReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        df.rechunk_mut_par();
        let dir = std::env::temp_dir().join(format!("tiering-hot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        time("table as Parquet", reps, || {
            tiering::io::write_parquet(&mut df.clone(), &dir.join("t.parquet")).unwrap()
        });
        time("table as CSV (polars' writer)", reps, || {
            let f = std::fs::File::create(dir.join("t.csv")).unwrap();
            CsvWriter::new(std::io::BufWriter::new(f))
                .with_float_scientific(Some(false))
                .finish(&mut df.clone())
                .unwrap()
        });
        time("table as CSV (ours, to no file)", reps, || {
            tiering::io::csv::write_rows(&df, &mut std::io::sink()).unwrap()
        });
        time("table as CSV (ours, same bytes)", reps, || {
            let f = std::fs::File::create(dir.join("t.csv")).unwrap();
            let mut f = std::io::BufWriter::new(f);
            tiering::io::csv::write_rows(&df, &mut f).unwrap()
        });
        use tiering::config::PublishCompression::{Snappy, Zstd};
        for (what, csv, parquet, direct) in [
            ("Parquet and CSV", true, Zstd, true),
            ("Parquet and CSV, page cache", true, Zstd, false),
            ("Parquet only", false, Zstd, true),
            ("Parquet only, Snappy", false, Snappy, true),
        ] {
            time(&format!("table published ({what})"), reps, || {
                let out = tiering::io::TableOut {
                    csv,
                    bom: None,
                    parquet,
                    direct,
                };
                tiering::io::write_table(&mut df.clone(), &dir, "t", out).unwrap()
            });
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Staging's CSV parse: `txns` written as a transactions file (the bench
/// generator's columns), then every window parsed as staging parses it.
fn csv_windows(txns: &DataFrame, reps: usize) {
    // Skipped before the file is written, not only before the timing.
    if !wanted("CSV windows parsed") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tiering-hot-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("transactions.csv");
    let mut text =
        String::from("txn_id,customer_id,ts,amount,quantity,product_line,channel,margin\n");
    let ids = txns.column("customer_id").unwrap().str().unwrap();
    let days = txns
        .column("ts")
        .unwrap()
        .date()
        .unwrap()
        .physical()
        .clone();
    let cents = txns.column("amount_cents").unwrap().i64().unwrap();
    for i in 0..txns.height() {
        let day = tiering::units::from_epoch_days(days.get(i).unwrap());
        let c = cents.get(i).unwrap();
        use std::fmt::Write;
        writeln!(
            text,
            "T{i:09},{},{day} 11:33:57,{:.2},1,配件,online,{:.2}",
            ids.get(i).unwrap(),
            c as f64 / 100.0,
            c as f64 / 700.0,
        )
        .unwrap();
    }
    std::fs::write(&file, text).unwrap();
    let header: Vec<String> = [
        "txn_id",
        "customer_id",
        "ts",
        "amount",
        "quantity",
        "product_line",
        "channel",
        "margin",
    ]
    .map(String::from)
    .to_vec();
    let numeric: Vec<String> = ["amount", "quantity", "margin"].map(String::from).to_vec();
    let input: tiering::config::InputFile = toml::from_str("path = 'transactions.csv'").unwrap();
    let w = tiering::io::CsvWindows::open(&file, &input, &header, &header, &numeric)
        .unwrap()
        .unwrap();
    time("CSV windows parsed", reps, || {
        let mut rows = 0;
        for window in w.windows(tiering::io::WINDOW_BYTES) {
            rows += w.parse(window, 0).unwrap().rows.height();
        }
        rows
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
