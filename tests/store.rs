//! The typed store (`OUT/_store/`): a run ingests only the files the store
//! lacks, and publishes exactly the tables of a run from scratch over the
//! same files — for a new file, the same file twice, a changed file, a
//! removed file, a killed ingest and rows that repeat history.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A generated data set with its transactions split into a history file
/// (dates up to 2010-12-20) and a night's file (the later dates, plus
/// every 4th row dated 2010-12-11..20: late arrivals, so the two files
/// share ten days and the stored pre-aggregates of those days are summed). Returns (history lines, night lines) with the header.
pub(crate) fn split_history(data: &Path) -> (String, String) {
    let text = std::fs::read_to_string(data.join("transactions.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut history, mut night) = (format!("{header}\n"), format!("{header}\n"));
    for (i, line) in lines.enumerate() {
        let ts = line.split(',').nth(2).unwrap();
        if ts > "2010-12-20" || (ts > "2010-12-10" && i % 4 == 0) {
            night.push_str(line);
            night.push('\n');
        } else {
            history.push_str(line);
            history.push('\n');
        }
    }
    (history, night)
}

struct Setup {
    tmp: TempDir,
    drops: PathBuf,
    history: String,
    night: String,
    /// The interactions input (the generated file unless a test says).
    interactions: PathBuf,
}

impl Setup {
    fn new(tag: &str, seed: u64) -> Setup {
        let tmp = TempDir::new(tag);
        let data = tmp.join("data");
        generate(&data, 300, 6000, seed);
        let drops = tmp.join("drops");
        std::fs::create_dir_all(&drops).unwrap();
        let (history, night) = split_history(&data);
        Setup {
            interactions: data.join("interactions.csv"),
            tmp,
            drops,
            history,
            night,
        }
    }

    fn put(&self, name: &str, text: &str) {
        std::fs::write(self.drops.join(name), text).unwrap();
    }

    /// A pipeline file over `drops/t_*.csv` with `extra` appended.
    fn config(&self, extra: &str) -> String {
        let data = self.tmp.join("data");
        let text = format!(
            "as_of = \"2010-12-31\"\n[inputs.transactions]\npath = {:?}\n[inputs.customers]\npath = {:?}\n[inputs.interactions]\npath = {:?}\n{extra}",
            self.drops.join("t_*.csv").to_string_lossy(),
            data.join("customers.csv").to_string_lossy(),
            self.interactions.to_string_lossy(),
        );
        let tag = extra
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        self.tmp.write(&format!("p{tag:x}.toml"), &text)
    }

    fn run(&self, out: &str, extra: &str) -> std::process::Output {
        run_env(self, out, extra, &[])
    }

    fn out(&self, out: &str) -> PathBuf {
        self.tmp.join(out)
    }
}

fn run_env(s: &Setup, out: &str, extra: &str, env: &[(&str, &str)]) -> std::process::Output {
    run_with(s, out, extra, env, &[])
}

fn run_with(
    s: &Setup,
    out: &str,
    extra: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let config = s.config(extra);
    let out = s.out(out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tiering"));
    cmd.args([
        "run",
        "--config",
        &config,
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok_run(s: &Setup, out: &str, extra: &str) -> serde_json::Value {
    let o = s.run(out, extra);
    assert!(
        o.status.success(),
        "run into {out} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    manifest(&s.out(out))
}

fn manifest(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("snapshot=2010-12-31/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            Path::new(x.as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// How many segments the store under `out` holds.
fn segments(out: &Path) -> usize {
    std::fs::read_dir(out.join("_store/segments"))
        .unwrap()
        .count()
}

fn snap(out: &Path) -> PathBuf {
    out.join("snapshot=2010-12-31")
}

/// A run from scratch over the files now in `drops/` into a fresh root.
fn from_scratch(s: &Setup, out: &str, extra: &str) -> PathBuf {
    ok_run(s, out, extra);
    snap(&s.out(out))
}

fn revenue_cents(out: &Path) -> i64 {
    let scores = read_parquet(&snap(out).join("customer_scores.parquet"));
    floats(&scores, "revenue")
        .into_iter()
        .map(|v| (v.unwrap_or(0.0) * 100.0).round() as i64)
        .sum()
}

/// The net amount of every data row of `text` (amount in the 4th field), in cents.
fn amounts(text: &str) -> i64 {
    text.lines()
        .skip(1)
        .map(|l| {
            let a: f64 = l.split(',').nth(3).unwrap().parse().unwrap();
            (a * 100.0).round() as i64
        })
        .sum()
}

#[test]
fn a_nightly_run_ingests_only_the_new_file_and_publishes_a_full_runs_tables() {
    let s = Setup::new("store-night", 31);
    s.put("t_1.csv", &s.history);
    let first = ok_run(&s, "inc", "");
    assert_eq!(names(&first["store"]["ingested"]), vec!["t_1.csv"]);
    // The revenue of the history alone, computed from the text.
    assert_eq!(revenue_cents(&s.out("inc")), amounts(&s.history));

    s.put("t_2.csv", &s.night);
    let night = ok_run(&s, "inc", "");
    assert_eq!(names(&night["store"]["ingested"]), vec!["t_2.csv"]);
    assert_eq!(night["store"]["files"], 2);
    let t = &night["inputs"]["transactions"];
    let rows = |text: &str| text.lines().count() as u64 - 1;
    assert_eq!(t["rows_read"], rows(&s.history) + rows(&s.night));
    // The rows this run read: the night's file only.
    assert_eq!(first["store"]["rows_read"], rows(&s.history));
    assert_eq!(night["store"]["rows_read"], rows(&s.night));
    assert_eq!(t["rows_kept"], rows(&s.history) + rows(&s.night));
    assert_eq!(
        revenue_cents(&s.out("inc")),
        amounts(&s.history) + amounts(&s.night)
    );

    let full = from_scratch(&s, "full", "");
    assert_eq!(
        names(&manifest(&s.out("full"))["store"]["ingested"]).len(),
        2
    );
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);
}

#[test]
fn the_same_file_offered_twice_doubles_nothing() {
    let s = Setup::new("store-twice", 32);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", "");
    let before = read_parquet(&snap(&s.out("out")).join("customer_scores.parquet"));
    let tables = |dir: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "csv" || x == "parquet"))
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    };
    let first = tables(&snap(&s.out("out")));
    assert!(first.len() > 10);
    // The same file again: nothing ingested, the same tables, byte for
    // byte (the first run scored the pre-aggregate it had just built, this
    // one reads it back from the store).
    let again = ok_run(&s, "out", "");
    assert!(names(&again["store"]["ingested"]).is_empty());
    assert!(first == tables(&snap(&s.out("out"))));
    // A copy under a new name: ingested, but every row repeats a stored
    // txn_id, so all are rejected as duplicates and nothing doubles.
    s.put("t_9.csv", &s.history);
    let copy = ok_run(&s, "out", "");
    assert_eq!(names(&copy["store"]["ingested"]), vec!["t_9.csv"]);
    let n = s.history.lines().count() as u64 - 1;
    assert_eq!(copy["inputs"]["transactions"]["duplicates_collapsed"], n);
    assert_eq!(copy["inputs"]["transactions"]["rows_kept"], n);
    let after = read_parquet(&snap(&s.out("out")).join("customer_scores.parquet"));
    assert!(before.equals_missing(&after));
    let rejects = read_csv(&snap(&s.out("out")).join("rejects.csv"));
    let dup = strs(&rejects, "reason")
        .iter()
        .zip(strs(&rejects, "file"))
        .filter(|(r, f)| {
            r.as_deref() == Some("duplicate txn_id") && f.as_deref().unwrap().ends_with("t_9.csv")
        })
        .count() as u64;
    assert_eq!(dup, n);
}

#[test]
fn a_changed_file_replaces_its_rows_or_is_refused() {
    let s = Setup::new("store-changed", 33);
    s.put("t_1.csv", &s.history);
    s.put("t_2.csv", &s.night);
    ok_run(&s, "out", "");
    // The night's file is re-exported with its first row's amount raised by 1000.00.
    let mut lines: Vec<String> = s.night.lines().map(String::from).collect();
    let mut f: Vec<String> = lines[1].split(',').map(String::from).collect();
    let amount: f64 = f[3].parse().unwrap();
    f[3] = format!("{:.2}", amount + 1000.0);
    lines[1] = f.join(",");
    let changed = lines.join("\n") + "\n";

    // Refused: exit 2 naming the file, the store untouched.
    let catalog = s.out("out").join("_store/catalog.json");
    let stored = std::fs::read(&catalog).unwrap();
    s.put("t_2.csv", &changed);
    let o = s.run("out", "[store]\non_changed = \"refuse\"\n");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("t_2.csv") && err.contains("changed"), "{err}");
    assert_eq!(std::fs::read(&catalog).unwrap(), stored);

    // Replaced (the default): the new bytes' rows, as a run from scratch.
    let m = ok_run(&s, "out", "");
    assert_eq!(names(&m["store"]["replaced"]), vec!["t_2.csv"]);
    assert_eq!(names(&m["store"]["ingested"]), vec!["t_2.csv"]);
    assert_eq!(
        revenue_cents(&s.out("out")),
        amounts(&s.history) + amounts(&changed)
    );
    let full = from_scratch(&s, "full", "");
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);
}

#[test]
fn a_removed_file_is_dropped_kept_or_refused() {
    let s = Setup::new("store-removed", 34);
    s.put("t_1.csv", &s.history);
    s.put("t_2.csv", &s.night);
    let keep = "[store]\non_removed = \"keep\"\n";
    ok_run(&s, "drop", "");
    ok_run(&s, "keep", keep);
    ok_run(&s, "refuse", "");
    let both = from_scratch(&s, "both", "");
    std::fs::remove_file(s.drops.join("t_2.csv")).unwrap();

    // Refused: exit 2 naming the file.
    let o = s.run("refuse", "[store]\non_removed = \"refuse\"\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("t_2.csv"));

    // Kept: the tables of both files (an archived drop file).
    let m = ok_run(&s, "keep", keep);
    assert_eq!(names(&m["store"]["kept_absent"]), vec!["t_2.csv"]);
    assert_same_tables(&snap(&s.out("keep")), &both, &["manifest", "report"]);

    // Dropped (the default): the tables of the history alone.
    let m = ok_run(&s, "drop", "");
    assert_eq!(names(&m["store"]["dropped"]), vec!["t_2.csv"]);
    assert_eq!(m["store"]["files"], 1);
    assert_eq!(revenue_cents(&s.out("drop")), amounts(&s.history));
    let only = from_scratch(&s, "only", "");
    assert_same_tables(&snap(&s.out("drop")), &only, &["manifest", "report"]);
    assert_eq!(
        segments(&s.out("drop")),
        1,
        "the dropped file's segment is removed"
    );
}

#[test]
fn a_killed_ingest_leaves_the_store_unchanged_and_the_next_run_completes() {
    let s = Setup::new("store-kill", 35);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", "");
    let catalog = s.out("out").join("_store/catalog.json");
    let stored = std::fs::read(&catalog).unwrap();
    let published = std::fs::read(snap(&s.out("out")).join("customer_scores.csv")).unwrap();

    s.put("t_2.csv", &s.night);
    let o = run_env(
        &s,
        "out",
        "",
        &[("TIERING_FAILPOINT", "store_before_commit")],
    );
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&catalog).unwrap(), stored);
    assert_eq!(
        std::fs::read(snap(&s.out("out")).join("customer_scores.csv")).unwrap(),
        published
    );

    let m = ok_run(&s, "out", "");
    assert_eq!(names(&m["store"]["ingested"]), vec!["t_2.csv"]);
    // Nothing of the killed run is left in the store.
    let mut left: Vec<String> = std::fs::read_dir(s.out("out").join("_store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["catalog.json", "segments", "tables", "tierings"]);
    assert_eq!(segments(&s.out("out")), 2);
    let full = from_scratch(&s, "full", "");
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);
}

#[test]
fn rows_of_a_new_file_that_repeat_history_are_rejected_as_duplicates() {
    let s = Setup::new("store-dups", 36);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", "");
    // The night's file repeats three stored txn_ids with other amounts.
    let stored: Vec<&str> = s.history.lines().skip(1).take(3).collect();
    let mut night = s.night.clone();
    let mut repeated = 0i64;
    for l in &stored {
        let mut f: Vec<String> = l.split(',').map(String::from).collect();
        f[3] = "123.45".into();
        night.push_str(&f.join(","));
        night.push('\n');
        repeated += 1;
    }
    s.put("t_2.csv", &night);
    let m = ok_run(&s, "out", "");
    assert_eq!(m["inputs"]["transactions"]["duplicates_collapsed"], 3);
    // The repeats are not counted: revenue is the history plus the night's own rows.
    assert_eq!(
        revenue_cents(&s.out("out")),
        amounts(&s.history) + amounts(&s.night)
    );
    let rejects = read_csv(&snap(&s.out("out")).join("rejects.csv"));
    let lines: Vec<i64> = strs(&rejects, "reason")
        .iter()
        .zip(ints(&rejects, "line"))
        .filter(|(r, _)| r.as_deref() == Some("duplicate txn_id"))
        .map(|(_, l)| l.unwrap())
        .collect();
    // The appended rows are the file's last three lines (header = line 1).
    let last = night.lines().count() as i64;
    assert_eq!(lines, ((last - repeated + 1)..=last).collect::<Vec<_>>());
    let full = from_scratch(&s, "full", "");
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);
}

#[test]
fn inspect_lists_the_stored_files_with_their_counts_and_dates() {
    let s = Setup::new("store-inspect", 41);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", "");
    // The night's file repeats two stored txn_ids.
    let mut night = s.night.clone();
    for l in s.history.lines().skip(1).take(2) {
        night.push_str(l);
        night.push('\n');
    }
    s.put("t_2.csv", &night);
    ok_run(&s, "out", "");
    let inspect = |dir: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_tiering"))
            .arg("inspect")
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let text = inspect(&s.out("out").join("_store"));
    // The output root shows its store the same way.
    assert_eq!(inspect(&s.out("out")), text);
    let rows = |t: &str| t.lines().count() - 1;
    let dates = |t: &str| -> Vec<String> {
        t.lines()
            .skip(1)
            .map(|l| l.split(',').nth(2).unwrap()[..10].to_string())
            .collect()
    };
    let all: Vec<String> = [dates(&s.history), dates(&s.night)].concat();
    let (first, last) = (all.iter().min().unwrap(), all.iter().max().unwrap());
    let stored = rows(&s.history) + rows(&night) - 2;
    assert!(
        text.contains(&format!(
            "files      2 in 2 segments: {stored} rows stored, 0 rejected, 2 duplicates collapsed"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("dates      {first} .. {last}")),
        "{text}"
    );
    // One line a file, in store order, with its own counts and dates.
    let line = |name: &str| -> Vec<String> {
        let l = text.lines().find(|l| l.contains(name)).unwrap();
        l.split_whitespace().map(String::from).collect()
    };
    let (h, n) = (line("t_1.csv"), line("t_2.csv"));
    assert!(text.find("t_1.csv").unwrap() < text.find("t_2.csv").unwrap());
    let hd = dates(&s.history);
    assert_eq!(
        h[1..10],
        [
            "seg-000001".to_string(),
            "stored".into(),
            rows(&s.history).to_string(),
            "rejected".into(),
            "0".into(),
            "duplicates".into(),
            "0".into(),
            hd.iter().min().unwrap().clone(),
            "..".into(),
        ]
    );
    assert_eq!(&h[10], hd.iter().max().unwrap());
    assert_eq!(n[3], (rows(&night) - 2).to_string());
    assert_eq!(n[7], "2");
    // The earlier tierings the runs kept, listed by name.
    let kept = tierings(&s.out("out"));
    assert!(!kept.is_empty());
    assert!(
        text.contains(&format!("earlier tierings kept: {}", kept.len())),
        "{text}"
    );
    for t in &kept {
        assert!(text.contains(t.as_str()), "{t} not in {text}");
    }
}

#[test]
fn a_bad_nights_file_fails_the_run_and_is_not_stored() {
    let s = Setup::new("store-bad", 37);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", "");
    let catalog = s.out("out").join("_store/catalog.json");
    let stored = std::fs::read(&catalog).unwrap();
    // Half the night's rows have no amount: far above the 1% reject ratio,
    // which applies to the rows this run ingests, not to the history.
    let mut bad = String::new();
    for (i, line) in s.night.lines().enumerate() {
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        if i > 0 && i % 2 == 0 {
            f[3].clear();
        }
        bad.push_str(&f.join(","));
        bad.push('\n');
    }
    s.put("t_2.csv", &bad);
    let o = s.run("out", "");
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("t_2.csv"));
    assert_eq!(std::fs::read(&catalog).unwrap(), stored);
    // The corrected file is then ingested like any new file.
    s.put("t_2.csv", &s.night);
    let m = ok_run(&s, "out", "");
    assert_eq!(names(&m["store"]["ingested"]), vec!["t_2.csv"]);
    assert_eq!(
        revenue_cents(&s.out("out")),
        amounts(&s.history) + amounts(&s.night)
    );
}

/// A file whose pre-aggregate does not fit half the memory budget is
/// aggregated in customer_id ranges. With a 100 KiB limit (~5,000 rows at
/// 64 bytes a row against 50 KiB: about seven parts) the store is built and
/// committed, then the run is refused (no plan fits, exit 2); the stored
/// pre-aggregate is sorted by customer_id and sums to the file's amounts,
/// and the next run, from that store, publishes a whole-built run's tables.
#[test]
fn a_pre_aggregate_over_the_memory_budget_is_built_in_parts() {
    let s = Setup::new("store-parts", 37);
    s.put("t_1.csv", &s.history);
    let out = s.out("parts");
    let o = Command::new(env!("CARGO_BIN_EXE_tiering"))
        .args([
            "-vv",
            "run",
            "--config",
            &s.config(""),
            "--out",
            out.to_str().unwrap(),
            "--memory-limit",
            "100KiB",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pre-aggregate built in parts"), "{err}");
    assert!(err.contains("--memory-limit"), "{err}");
    assert_eq!(segments(&out), 1);
    let daily = read_parquet(&out.join("_store/segments/seg-000001/daily.parquet"));
    let ids: Vec<String> = strs(&daily, "customer_id").into_iter().flatten().collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let net: i64 = ints(&daily, "net_cents").into_iter().flatten().sum();
    assert_eq!(net, amounts(&s.history));
    // The id runs kept beside it, from the parts together: each id once,
    // with its count of rows.
    let runs = read_parquet(&out.join("_store/segments/seg-000001/daily.keys.parquet"));
    let mut distinct = sorted.clone();
    distinct.dedup();
    let run_ids: Vec<String> = strs(&runs, "customer_id").into_iter().flatten().collect();
    assert_eq!(run_ids, distinct);
    let counts: Vec<i64> = ints(&runs, "rows").into_iter().flatten().collect();
    let by_hand: Vec<i64> = distinct
        .iter()
        .map(|d| ids.iter().filter(|i| *i == d).count() as i64)
        .collect();
    assert_eq!(counts, by_hand);

    let next = ok_run(&s, "parts", "");
    assert_eq!(names(&next["store"]["ingested"]).len(), 0);
    let whole = from_scratch(&s, "whole", "");
    assert_same_tables(&snap(&out), &whole, &["manifest", "report"]);
}

/// `_ingest/customers.parquet`'s inode under `out`: a rewrite (a rename
/// into place) gives it a new one.
fn typed_customers_inode(out: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(out.join("_ingest/customers.parquet"))
        .unwrap()
        .ino()
}

/// A night whose file shares no day with the history: the stored
/// pre-aggregates are held stacked, numbered on integers by the id runs
/// kept beside each segment's (no merged copy), and a store without them (as written before they were
/// kept) merges them by their ids; the tables equal a run from scratch
/// either way. The customers' typed copy is not rewritten while they
/// are unchanged.
#[test]
fn a_night_merges_the_stored_pre_aggregates_by_their_id_runs() {
    let s = Setup::new("store-keyed", 41);
    let day = |l: &str| l.split(',').nth(2).unwrap_or("").to_string();
    let pick = |later: bool| -> String {
        let mut lines = s.history.lines().chain(s.night.lines().skip(1));
        let mut out = format!("{}\n", lines.next().unwrap());
        for l in lines.filter(|l| (day(l).as_str() > "2010-12-20") == later) {
            out.push_str(l);
            out.push('\n');
        }
        out
    };
    let (history, night) = (pick(false), pick(true));
    assert!(night.lines().count() > 10);
    s.put("t_1.csv", &history);
    ok_run(&s, "inc", "");
    let inode = typed_customers_inode(&s.out("inc"));
    s.put("t_2.csv", &night);
    let o = run_with(&s, "inc", "", &[], &["-vv"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let stacked = err
        .lines()
        .any(|l| l.contains("numbered by their id runs") && l.contains("stacked=true"));
    assert!(o.status.success() && stacked, "{err}");
    assert_eq!(typed_customers_inode(&s.out("inc")), inode);
    let full = from_scratch(&s, "full", "");
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);

    let segs = s.out("inc").join("_store/segments");
    let mut removed = 0;
    for seg in std::fs::read_dir(&segs).unwrap() {
        let keys = seg.unwrap().path().join("daily.keys.parquet");
        removed += std::fs::remove_file(keys).is_ok() as usize;
    }
    assert_eq!(removed, 2);
    let o = run_with(&s, "inc", "", &[], &["-vv"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("by their id runs"),
        "{err}"
    );
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);
}

/// The auxiliary tierings kept under the store, by file name (the date,
/// then the hash of their inputs).
fn tierings(out: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(out.join("_store/tierings"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A new row (txn_id `LATE-1`, with its newline) copying the first history
/// row dated in 2010's first three quarters: a late arrival that the
/// migration's 2010-09-30 tiering depends on.
fn late_row(history: &str) -> String {
    let late = history
        .lines()
        .find(|l| {
            l.split(',')
                .nth(2)
                .is_some_and(|ts| ts.starts_with("2010-0"))
        })
        .unwrap();
    format!("LATE-1,{}\n", late.split_once(',').unwrap().1)
}

#[test]
fn earlier_tierings_are_reused_only_while_their_rows_are_unchanged() {
    let s = Setup::new("store-tierings", 35);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "inc", "");
    let first = tierings(&s.out("inc"));
    // Concentration's two year ends and migration's quarter end.
    let dates = |set: &std::collections::BTreeSet<String>| -> Vec<String> {
        set.iter().map(|n| n[..10].to_string()).collect()
    };
    assert_eq!(dates(&first), ["2008-12-31", "2009-12-31", "2010-09-30"]);

    // The night's rows are all dated after those dates: kept as they were.
    s.put("t_2.csv", &s.night);
    ok_run(&s, "inc", "");
    assert_eq!(tierings(&s.out("inc")), first);
    assert_same_tables(
        &snap(&s.out("inc")),
        &from_scratch(&s, "full-2", ""),
        &["manifest", "report"],
    );

    // A late row dated in 2010 changes the quarter end's tiering only.
    let header = s.history.lines().next().unwrap();
    s.put("t_3.csv", &format!("{header}\n{}", late_row(&s.history)));
    ok_run(&s, "inc", "");
    let third = tierings(&s.out("inc"));
    assert_eq!(dates(&third), dates(&first));
    let changed: Vec<_> = third.difference(&first).collect();
    assert_eq!(changed.len(), 1, "{first:?} -> {third:?}");
    assert!(changed[0].starts_with("2010-09-30"));
    assert_same_tables(
        &snap(&s.out("inc")),
        &from_scratch(&s, "full-3", ""),
        &["manifest", "report"],
    );

    // Customers exported again, a new one added and every customer's
    // region changed (the years' concentration reads today's): the pyramid
    // tierings read only the transactions, so they are kept.
    let customers = s.tmp.join("data/customers.csv");
    let export_again = |tag: &str| {
        let text = std::fs::read_to_string(&customers).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        for l in lines.iter_mut().skip(1) {
            let mut f: Vec<&str> = l.split(',').collect();
            let region = format!("{}-{tag}", f[1]);
            f[1] = &region;
            *l = f.join(",");
        }
        let fields = lines[0].split(',').count();
        lines.push(format!("Z-{tag},North,Retail{}", ",".repeat(fields - 3)));
        std::fs::write(&customers, lines.join("\n") + "\n").unwrap();
    };
    export_again("4");
    ok_run(&s, "inc", "");
    assert_eq!(tierings(&s.out("inc")), third);
    let full = from_scratch(&s, "full-4", "");
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);
    let regions = strs(
        &read_parquet(&full.join("concentration_region.parquet")),
        "region",
    );
    assert!(
        regions
            .iter()
            .all(|r| r.as_deref().unwrap().ends_with("-4"))
    );

    // A threshold scheme reads the whole scoring (customer attributes,
    // interactions): its tiering is computed again when the customers
    // change; the pyramid's are kept.
    let often = "[[threshold_tiers]]\nname = \"often\"\nmeasure = \"frequency\"\nbelow = \"rare\"\nlevels = [{ label = \"often\", min = 3 }]\n[migration]\ntier = \"often\"\n";
    ok_run(&s, "inc", often);
    let fifth = tierings(&s.out("inc"));
    export_again("6");
    ok_run(&s, "inc", often);
    let sixth = tierings(&s.out("inc"));
    let changed: Vec<_> = sixth.difference(&fifth).collect();
    assert_eq!(changed.len(), 1, "{fifth:?} -> {sixth:?}");
    assert!(changed[0].starts_with("2010-09-30"));
    assert_same_tables(
        &snap(&s.out("inc")),
        &from_scratch(&s, "full-6", often),
        &["manifest", "report"],
    );
}

#[test]
fn customers_and_interactions_are_read_back_only_while_their_bytes_are_unchanged() {
    let s = Setup::new("store-tables", 36);
    // A rejected customer (no id) and a duplicate: the kept table must
    // carry its rejects and counts too.
    let customers = s.tmp.join("data/customers.csv");
    let text = std::fs::read_to_string(&customers).unwrap();
    let first_row = text.lines().nth(1).unwrap();
    let no_id = format!(",{}", first_row.split_once(',').unwrap().1);
    std::fs::write(&customers, format!("{text}{no_id}\n{first_row}\n")).unwrap();

    s.put("t_1.csv", &s.history);
    let first = ok_run(&s, "inc", "");
    assert_eq!(first["store"]["tables_reused"], serde_json::json!([]));
    let c = &first["inputs"]["customers"];
    assert_eq!(c["rejected"]["empty customer_id"], 1, "{c}");
    assert_eq!(c["duplicates_collapsed"], 1, "{c}");

    s.put("t_2.csv", &s.night);
    let night = ok_run(&s, "inc", "");
    assert_eq!(
        night["store"]["tables_reused"],
        serde_json::json!(["customers", "interactions"])
    );
    assert_eq!(night["inputs"]["customers"], first["inputs"]["customers"]);
    assert_same_tables(
        &snap(&s.out("inc")),
        &from_scratch(&s, "full-2", ""),
        &["manifest", "report"],
    );

    // One customer's region changed to another of the same byte length,
    // the file's size and modification time kept: only its bytes differ.
    let text = std::fs::read_to_string(&customers).unwrap();
    let region = |line: &str| line.split(',').nth(1).unwrap().to_string();
    let (id, old) = {
        let l = text.lines().nth(2).unwrap();
        (l.split(',').next().unwrap().to_string(), region(l))
    };
    let new = text
        .lines()
        .skip(1)
        .map(region)
        .find(|r| *r != old && r.len() == old.len() && !r.is_empty())
        .unwrap();
    let line = text.lines().nth(2).unwrap();
    let changed = text.replacen(line, &line.replacen(&old, &new, 1), 1);
    assert_eq!(changed.len(), text.len());
    let mtime = std::fs::metadata(&customers).unwrap().modified().unwrap();
    std::fs::write(&customers, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&customers)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let typed = typed_customers_inode(&s.out("inc"));
    let third = ok_run(&s, "inc", "");
    assert_eq!(
        third["store"]["tables_reused"],
        serde_json::json!(["interactions"])
    );
    // The typed copy is written anew, with the new region.
    assert_ne!(typed_customers_inode(&s.out("inc")), typed);
    let copy = read_parquet(&s.out("inc").join("_ingest/customers.parquet"));
    let row = strs(&copy, "customer_id")
        .iter()
        .position(|c| c.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(strs(&copy, "region")[row].as_deref(), Some(new.as_str()));
    let scores = read_parquet(&snap(&s.out("inc")).join("customer_scores.parquet"));
    let at = strs(&scores, "customer_id")
        .iter()
        .position(|c| c.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(strs(&scores, "region")[at].as_deref(), Some(new.as_str()));
    assert_same_tables(
        &snap(&s.out("inc")),
        &from_scratch(&s, "full-3", ""),
        &["manifest", "report"],
    );
}

/// The `interactions-*` entries kept under `out`'s store: each one's
/// report file name and inode (a rewrite gives another inode).
fn interaction_entries(out: &Path) -> std::collections::BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(out.join("_store/tables"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("interactions-") && name.ends_with(".json")
        })
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().ino())
        })
        .collect()
}

/// Interactions delivered as a log of files (a glob over a drop folder)
/// are checked once each: a night checks only its new file and reads the
/// others back, a removed file's entry goes, and every run publishes the
/// tables and input counts of a run from scratch.
#[test]
fn interactions_delivered_file_by_file_are_checked_once_each() {
    let mut s = Setup::new("store-interactions", 41);
    s.interactions = s.drops.join("i_*.csv");
    let text = std::fs::read_to_string(s.tmp.join("data/interactions.csv")).unwrap();
    let header = text.lines().next().unwrap();
    let (mut history, mut night) = (format!("{header}\n"), format!("{header}\n"));
    for line in text.lines().skip(1) {
        let ts = line.split(',').nth(1).unwrap();
        let to = if ts > "2010-12-20" {
            &mut night
        } else {
            &mut history
        };
        to.push_str(line);
        to.push('\n');
    }
    let id = text.lines().nth(1).unwrap().split(',').next().unwrap();
    // A row of a kind nobody maps (rejected: its count and row must come
    // back with the kept file) and one after the as-of date.
    history.push_str(&format!("{id},2010-06-01,传真,,,,\n"));
    night.push_str(&format!("{id},2011-01-05,call,,,,\n"));
    let rows = |t: &str| t.lines().count() - 1;

    s.put("t_1.csv", &s.history);
    s.put("i_1.csv", &history);
    ok_run(&s, "inc", "");
    let first = interaction_entries(&s.out("inc"));
    assert_eq!(first.len(), 1, "{first:?}");

    s.put("t_2.csv", &s.night);
    s.put("i_2.csv", &night);
    // Killed after the night's rows went to their entry, before its
    // report: the entry does not count, and the next run checks the file
    // again and leaves nothing of the killed run behind.
    let killed = [("TIERING_FAILPOINT", "interactions_entry_before_report")];
    assert!(!run_env(&s, "inc", "", &killed).status.success());
    let m = ok_run(&s, "inc", "");
    let left: Vec<String> = std::fs::read_dir(s.out("inc").join("_store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".work-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let second = interaction_entries(&s.out("inc"));
    assert_eq!(second.len(), 2, "{second:?}");
    // The history's entry was read back, not written again.
    for (name, inode) in &first {
        assert_eq!(second.get(name), Some(inode), "{name} rewritten");
    }
    assert_eq!(
        m["store"]["tables_reused"],
        serde_json::json!(["customers"])
    );
    let i = &m["inputs"]["interactions"];
    assert_eq!(i["rows_read"], rows(&history) + rows(&night), "{i}");
    assert_eq!(i["rejected"]["unknown kind"], 1, "{i}");
    assert_eq!(i["excluded_after_as_of"], 1, "{i}");
    assert_eq!(i["rows_kept"], rows(&history) + rows(&night) - 2, "{i}");
    let full = from_scratch(&s, "full-2", "");
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);
    assert_eq!(*i, manifest(&s.out("full-2"))["inputs"]["interactions"]);

    // Nothing new: every file read back.
    let again = ok_run(&s, "inc", "");
    assert_eq!(
        again["store"]["tables_reused"],
        serde_json::json!(["customers", "interactions"])
    );
    assert_eq!(interaction_entries(&s.out("inc")), second);

    // The history's file taken away: its entry goes with it.
    std::fs::remove_file(s.drops.join("i_1.csv")).unwrap();
    let m = ok_run(&s, "inc", "");
    let third = interaction_entries(&s.out("inc"));
    let left: Vec<_> = second.keys().filter(|k| !first.contains_key(*k)).collect();
    assert_eq!(third.keys().collect::<Vec<_>>(), left);
    let i = &m["inputs"]["interactions"];
    assert_eq!(i["rows_read"], rows(&night), "{i}");
    assert_eq!(i["rejected"], serde_json::json!({}), "{i}");
    let full = from_scratch(&s, "full-3", "");
    assert_same_tables(&snap(&s.out("inc")), &full, &["manifest", "report"]);
}

/// Interactions delivered as many files (checked two at a time) publish
/// what the same rows in one file publish, their counts add up, and of two
/// broken files the run names the first, as a run checking one file at a
/// time would.
#[test]
fn interactions_in_many_files_publish_what_one_file_does() {
    let mut s = Setup::new("store-interactions-many", 43);
    s.put("t_1.csv", &s.history);
    let text = std::fs::read_to_string(s.tmp.join("data/interactions.csv")).unwrap();
    let header = text.lines().next().unwrap();
    let id = text.lines().nth(1).unwrap().split(',').next().unwrap();
    // One rejected row (an unmapped kind) and one after the as-of date.
    let extra = [
        format!("{id},2010-06-01,传真,,,,"),
        format!("{id},2011-01-05,call,,,,"),
    ];
    let mut whole = text.clone();
    for line in &extra {
        whole.push_str(line);
        whole.push('\n');
    }
    let one = s.tmp.join("data/interactions-one.csv");
    std::fs::write(&one, &whole).unwrap();
    s.interactions = one;
    let m_one = ok_run(&s, "one", "");

    // The same rows as seven files, by line number; the extra rows in the
    // third and sixth.
    let mut files: Vec<String> = (0..7).map(|_| format!("{header}\n")).collect();
    for (k, line) in text.lines().skip(1).enumerate() {
        files[k % 7].push_str(line);
        files[k % 7].push('\n');
    }
    files[2].push_str(&format!("{}\n", extra[0]));
    files[5].push_str(&format!("{}\n", extra[1]));
    for (k, f) in files.iter().enumerate() {
        s.put(&format!("i_{k}.csv"), f);
    }
    s.interactions = s.drops.join("i_*.csv");
    let m_many = ok_run(&s, "many", "");
    assert_same_tables(
        &snap(&s.out("one")),
        &snap(&s.out("many")),
        &["manifest", "report", "rejects"],
    );
    let (a, b) = (
        &m_one["inputs"]["interactions"],
        &m_many["inputs"]["interactions"],
    );
    for k in ["rows_read", "rows_kept", "rejected", "excluded_after_as_of"] {
        assert_eq!(a[k], b[k], "{k}: {a} against {b}");
    }
    assert_eq!(b["rejected"]["unknown kind"], 1, "{b}");
    assert_eq!(b["excluded_after_as_of"], 1, "{b}");
    let rejects = read_parquet(&snap(&s.out("many")).join("rejects.parquet"));
    let named: Vec<(Option<String>, Option<String>)> = strs(&rejects, "file")
        .into_iter()
        .zip(strs(&rejects, "reason"))
        .collect();
    let file_of = |k: usize| {
        Some(
            s.drops
                .join(format!("i_{k}.csv"))
                .to_string_lossy()
                .into_owned(),
        )
    };
    assert!(
        named.contains(&(file_of(2), Some("unknown kind".into()))),
        "{named:?}"
    );
    assert!(
        named.contains(&(file_of(5), Some("after as_of".into()))),
        "{named:?}"
    );

    // Two files without a ts column, the second and the fifth: the run
    // stops at the second.
    for k in [1, 4] {
        let body: String = files[k]
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                f.remove(1);
                format!("{}\n", f.join(","))
            })
            .collect();
        s.put(&format!("i_{k}.csv"), &body);
    }
    let o = s.run("broken", "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("i_1.csv") && !err.contains("i_4.csv"), "{err}");
}

/// The night's rows split by date into three files (to 12-24, 12-25..28,
/// later), the second with a row of an impossible date (rejected) whose
/// amount is 0.00.
fn three_nights(night: &str) -> [String; 3] {
    let mut lines = night.lines();
    let header = lines.next().unwrap();
    let mut out = [0, 1, 2].map(|_| format!("{header}\n"));
    let mut bad = None;
    for line in lines {
        let ts = line.split(',').nth(2).unwrap();
        let i = if ts <= "2010-12-24" {
            0
        } else if ts <= "2010-12-28" {
            1
        } else {
            2
        };
        if i == 1 && bad.is_none() {
            let mut f: Vec<&str> = line.split(',').collect();
            f[0] = "TBAD0001";
            f[2] = "2010-13-40";
            f[3] = "0.00";
            bad = Some(f.join(","));
        }
        out[i].push_str(line);
        out[i].push('\n');
    }
    out[1].push_str(&bad.unwrap());
    out[1].push('\n');
    out
}

/// Rows of `text` dated after `day` in 2010 (not the impossible date).
fn rows_after(text: &str, day: &str) -> usize {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(2).unwrap().get(..10))
        .filter(|d| *d > day && *d <= "2010-12-31")
        .count()
}

/// A merge of a stored file's segment and a new file (which gets no
/// segment of its own) keeps both files' rows and rejects as separate
/// segments would.
#[test]
fn a_stored_file_and_a_new_one_merge_with_their_rejects() {
    let s = Setup::new("store-merge-new", 37);
    let merge = "[store]\ncompact_at = 2\n[ingest]\nmax_reject_ratio = 0.1\n";
    let [_, b, c] = three_nights(&s.night);
    s.put("t_1.csv", &s.history);
    s.put("t_2.csv", &b);
    let m = ok_run(&s, "out", merge);
    assert_eq!(m["store"]["segments"], 2);
    // The third file's own reject: an amount that does not parse.
    let mut row: Vec<&str> = c.lines().nth(1).unwrap().split(',').collect();
    row[0] = "BAD-1";
    row[3] = "n/a";
    let d = format!("{c}{}\n", row.join(","));
    s.put("t_3.csv", &d);
    let m = ok_run(&s, "out", merge);
    assert_eq!(m["store"]["segments"], 2);
    assert_eq!(m["store"]["segments_merged"], 2);
    let t = &m["inputs"]["transactions"];
    assert_eq!(t["rejected"]["unparseable ts"], 1, "{t}");
    assert_eq!(t["rejected"]["unparseable amount"], 1, "{t}");
    let full = from_scratch(&s, "full", "[ingest]\nmax_reject_ratio = 0.1\n");
    assert_eq!(manifest(&s.out("full"))["store"]["segments"], 3);
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);
    let rejects = read_parquet(&snap(&s.out("out")).join("rejects.parquet"));
    let files: Vec<String> = strs(&rejects, "file")
        .into_iter()
        .flatten()
        .map(|f| f.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(
        files.contains(&"t_2.csv".to_string()) && files.contains(&"t_3.csv".to_string()),
        "{files:?}"
    );
}

#[test]
fn small_segments_are_merged_and_each_files_rows_stay_its_own() {
    let s = Setup::new("store-merge", 36);
    // The changed file is ingested alone: its bad row is over 1% of it.
    let merge = "[store]\ncompact_at = 2\n[ingest]\nmax_reject_ratio = 0.1\n";
    let [a, b, c] = three_nights(&s.night);
    // The first night's file also brings a late row dated in 2010's first
    // three quarters: the migration's 2010-09-30 tiering depends on it.
    let a = format!("{a}{}", late_row(&s.history));
    s.put("t_1.csv", &s.history);
    ok_run(&s, "out", merge);
    // Three segments, more than 2: the two small ones (the nights' files,
    // each under half of the rows) merged into one.
    s.put("t_2.csv", &a);
    s.put("t_3.csv", &b);
    let m = ok_run(&s, "out", merge);
    assert_eq!(m["store"]["segments"], 2);
    assert_eq!(m["store"]["segments_merged"], 2);
    assert_eq!(segments(&s.out("out")), 2);
    let kept = tierings(&s.out("out"));
    // The next night's file joins the merged segment. The rows a tiering
    // depends on did not change, so it is read back, not computed again.
    s.put("t_4.csv", &c);
    let m = ok_run(&s, "out", merge);
    assert_eq!(tierings(&s.out("out")), kept);
    assert_eq!(names(&m["store"]["ingested"]), vec!["t_4.csv"]);
    assert_eq!(
        (m["store"]["segments"].clone(), m["store"]["files"].clone()),
        (2.into(), 4.into())
    );
    assert_eq!(m["store"]["segments_merged"], 2);
    assert_eq!(m["inputs"]["transactions"]["rejected"]["unparseable ts"], 1);
    let o = Command::new(env!("CARGO_BIN_EXE_tiering"))
        .args(["inspect", snap(&s.out("out")).to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("store: 4 files in 2 segments; this run ingested 1, replaced 0, dropped 0, merged 2 segments"),
        "{text}"
    );
    let total = amounts(&s.history) + amounts(&a) + amounts(&b) + amounts(&c);
    assert_eq!(revenue_cents(&s.out("out")), total);
    // A run from scratch keeps a segment per file (the default is 16).
    let full = from_scratch(&s, "full", "");
    assert_eq!(manifest(&s.out("full"))["store"]["segments"], 4);
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);

    // An earlier as-of date: the merged files' later rows are listed as
    // rejects under their own file and line, as from separate segments.
    let early = |out: &str, extra: &str| {
        let o = run_with(&s, out, extra, &[], &["--as-of", "2010-12-26"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        s.out(out).join("snapshot=2010-12-26")
    };
    let (mine, theirs) = (early("out", merge), early("full", ""));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(theirs.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["store"]["segments"], 4);
    assert_same_tables(&mine, &theirs, &["manifest", "report"]);
    let rejects = read_csv(&mine.join("rejects.csv"));
    let after = |file: &str| {
        strs(&rejects, "reason")
            .iter()
            .zip(strs(&rejects, "file"))
            .filter(|(r, f)| {
                r.as_deref() == Some("after as_of") && f.as_deref().unwrap().ends_with(file)
            })
            .count()
    };
    assert_eq!(after("t_3.csv"), rows_after(&b, "2010-12-26"));
    assert_eq!(after("t_4.csv"), rows_after(&c, "2010-12-26"));
    assert!(after("t_4.csv") > 0 && after("t_3.csv") > 0);

    // A merged file changed: the merged segment is written again without
    // its old rows, and its new rows replace them.
    let mut lines: Vec<String> = b.lines().map(String::from).collect();
    let mut f: Vec<String> = lines[1].split(',').map(String::from).collect();
    let amount: f64 = f[3].parse().unwrap();
    f[3] = format!("{:.2}", amount + 1000.0);
    lines[1] = f.join(",");
    let changed = lines.join("\n") + "\n";
    s.put("t_3.csv", &changed);
    let m = ok_run(&s, "out", merge);
    assert_eq!(names(&m["store"]["replaced"]), vec!["t_3.csv"]);
    assert_eq!(m["store"]["segments"], 2);
    assert_eq!(revenue_cents(&s.out("out")), total + 100_000);
    let full = from_scratch(&s, "full2", "");
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);

    // A merged file removed: its rows leave the store, the others stay.
    std::fs::remove_file(s.drops.join("t_2.csv")).unwrap();
    let m = ok_run(&s, "out", merge);
    assert_eq!(names(&m["store"]["dropped"]), vec!["t_2.csv"]);
    assert_eq!(m["store"]["files"], 3);
    assert_eq!(revenue_cents(&s.out("out")), total + 100_000 - amounts(&a));
    let full = from_scratch(&s, "full3", "");
    assert_same_tables(&snap(&s.out("out")), &full, &["manifest", "report"]);
}

/// A file offered from another directory under the same relative path as
/// a stored one is named by its canonical path, so that when both share a
/// merged segment and one of them changes, the other's rejects stay.
#[test]
fn files_of_the_same_relative_name_keep_their_own_rejects_in_a_merged_segment() {
    let s = Setup::new("store-names", 37);
    let extra =
        "[store]\ncompact_at = 2\non_removed = \"keep\"\n[ingest]\nmax_reject_ratio = 0.1\n";
    let [a, b, c] = three_nights(&s.night);
    // The first file's own impossible date (the second file has one).
    let bad = a.lines().nth(1).unwrap().split(',').collect::<Vec<_>>();
    let bad = [&["TBADA001", bad[1], "2010-14-41"], &bad[3..]]
        .concat()
        .join(",");
    let a = format!("{a}{bad}\n");
    let (one, two) = (s.tmp.join("one"), s.tmp.join("two"));
    for d in [&one, &two] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(one.join("t.csv"), &a).unwrap();
    std::fs::write(two.join("t.csv"), &b).unwrap();
    std::fs::write(two.join("t2.csv"), &c).unwrap();
    let config = s.config(extra);
    let out = s.out("out");
    let run_in = |dir: &Path, glob: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_tiering"))
            .current_dir(dir)
            .args(["run", "--config", &config, "--transactions", glob])
            .args(["--out", out.to_str().unwrap(), "--overwrite"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        manifest(&out)
    };
    let rejects = || {
        let r = read_csv(&snap(&out).join("rejects.csv"));
        let mut v: Vec<(String, String)> = strs(&r, "value")
            .into_iter()
            .zip(strs(&r, "file"))
            .map(|(v, f)| (v.unwrap_or_default(), f.unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    run_in(&one, "t.csv");
    // Another directory's t.csv: the first one is kept though not offered.
    let m = run_in(&two, "t.csv");
    assert_eq!(names(&m["store"]["kept_absent"]), vec!["t.csv"]);
    // A third file: three small segments, merged into one.
    let m = run_in(&two, "t*.csv");
    assert_eq!(m["store"]["segments"], 1);
    let values = || rejects().into_iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(values(), ["2010-13-40", "2010-14-41"]);
    // The second directory's t.csv changes: its rows leave the merged
    // segment, the first one's (and its reject) stay.
    let changed = b.clone()
        + &bad
            .replace("TBADA001", "TBADB001")
            .replace("2010-14-41", "2010-15-42")
        + "\n";
    std::fs::write(two.join("t.csv"), &changed).unwrap();
    let m = run_in(&two, "t*.csv");
    assert_eq!(values(), ["2010-13-40", "2010-14-41", "2010-15-42"]);
    assert_eq!(m["inputs"]["transactions"]["rejected"]["unparseable ts"], 3);
    let named = two.join("t.csv").canonicalize().unwrap();
    let named = named.to_string_lossy().into_owned();
    assert_eq!(m["store"]["replaced"], serde_json::json!([named.clone()]));
    let by_name = vec![
        ("2010-13-40".to_string(), named.clone()),
        ("2010-14-41".to_string(), "t.csv".to_string()),
        ("2010-15-42".to_string(), named),
    ];
    assert_eq!(rejects(), by_name);
}

/// The compression codecs of every column chunk of a Parquet file.
#[test]
fn the_store_is_compressed_as_configured_and_mixed_stores_read_alike() {
    let s = Setup::new("store-codec", 34);
    s.put("t_1.csv", &s.history);
    ok_run(&s, "inc", "[store]\ncompression = \"zstd\"\n");
    let seg = |n: u32, file: &str| {
        s.out("inc")
            .join(format!("_store/segments/seg-{n:06}/{file}"))
    };
    for file in ["typed.parquet", "daily.parquet"] {
        assert_eq!(parquet_codecs(&seg(1, file)), ["ZSTD".to_string()].into());
    }
    // The night under the default: its segment uncompressed, the history's
    // left as it was written.
    s.put("t_2.csv", &s.night);
    ok_run(&s, "inc", "");
    for file in ["typed.parquet", "daily.parquet"] {
        assert_eq!(parquet_codecs(&seg(1, file)), ["ZSTD".to_string()].into());
        assert_eq!(
            parquet_codecs(&seg(2, file)),
            ["UNCOMPRESSED".to_string()].into()
        );
    }
    let lz4 = from_scratch(&s, "lz4", "[store]\ncompression = \"lz4\"\n");
    assert_eq!(
        parquet_codecs(
            &s.out("lz4")
                .join("_store/segments/seg-000001/typed.parquet")
        ),
        ["LZ4_RAW".to_string()].into()
    );
    assert_same_tables(&snap(&s.out("inc")), &lz4, &["manifest", "report"]);
    // An unknown codec names the key.
    let o = s.run("bad", "[store]\ncompression = \"gzip\"\n");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("compression"), "{err}");
}

/// A first load of many files (a drop folder of daily files: more files
/// than a run splits as one query, so their valid rows are written out and
/// read back by one scan, and merged without per-file hashes or
/// pre-aggregates) publishes what the same files stored a few at a time
/// publish: rejects, duplicates within and across files, a row after the
/// as-of date and an unparseable margin included.
#[test]
fn a_first_load_of_many_files_equals_the_same_files_stored_a_few_at_a_time() {
    let s = Setup::new("store-many", 38);
    let all = format!(
        "{}{}",
        s.history,
        s.night
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let mut lines = all.lines();
    let header = lines.next().unwrap().to_string();
    let rows: Vec<String> = lines.map(String::from).collect();
    let per = rows.len().div_ceil(12);
    let mut files: Vec<Vec<String>> = rows.chunks(per).map(|c| c.to_vec()).collect();
    assert_eq!(files.len(), 12);
    let field = |line: &str, i: usize| line.split(',').nth(i).unwrap().to_string();
    let with = |line: &str, i: usize, v: &str| {
        let mut f: Vec<String> = line.split(',').map(String::from).collect();
        f[i] = v.to_string();
        f.join(",")
    };
    // File 3: an impossible date. File 5: a margin that does not parse.
    files[2][0] = with(&files[2][0], 2, "2010-13-40");
    files[4][0] = with(&files[4][0], 7, "n/a");
    // File 7 repeats its own first row; file 9 a row of file 2.
    let again = files[6][0].clone();
    files[6].push(again);
    let earlier = with(&files[8][1], 0, &field(&files[1][3], 0));
    files[8][1] = earlier;
    // File 11: a row after the as-of date.
    files[10][0] = with(&files[10][0], 2, "2011-01-05");
    let night: Vec<String> = files[11]
        .iter()
        .map(|l| with(l, 0, &format!("N{}", field(l, 0))))
        .collect();
    files.push(night);
    let put = |range: std::ops::Range<usize>| {
        for i in range {
            let text = format!("{header}\n{}\n", files[i].join("\n"));
            s.put(&format!("t_{:02}.csv", i + 1), &text);
        }
    };

    // A few at a time: 6 files, then 6 more (each batch split as one query).
    let never = "[store]\ncompact_at = 0\n";
    put(0..6);
    ok_run(&s, "few", never);
    put(6..12);
    let few = ok_run(&s, "few", never);
    assert_eq!(names(&few["store"]["ingested"]).len(), 6);
    let t = &few["inputs"]["transactions"];
    assert_eq!(t["rejected"]["unparseable ts"], 1, "{t}");
    assert_eq!(t["duplicates_collapsed"], 2, "{t}");
    assert_eq!(t["rows_read"], 6001, "{t}");
    assert_eq!(t["rows_kept"], 6001 - 1 - 2 - 1, "{t}");
    assert_eq!(t["excluded_after_as_of"], 1, "{t}");
    assert_eq!(t["warnings"]["unparseable margin"], 1, "{t}");

    // All 12 at once: a segment each (default compact_at), or merged into
    // one as they are stored (compact_at = 4).
    for (out, extra, segs) in [("many", "", 12), ("merged", "[store]\ncompact_at = 4\n", 1)] {
        let m = ok_run(&s, out, extra);
        assert_eq!(names(&m["store"]["ingested"]).len(), 12);
        assert_eq!(m["store"]["segments"], segs);
        assert_eq!(segments(&s.out(out)), segs);
        assert_eq!(m["inputs"]["transactions"], few["inputs"]["transactions"]);
        assert_same_tables(
            &snap(&s.out(out)),
            &snap(&s.out("few")),
            &["manifest", "report"],
        );
    }
    // The next night, over each store.
    put(12..13);
    ok_run(&s, "few", never);
    ok_run(&s, "merged", "[store]\ncompact_at = 4\n");
    assert_same_tables(
        &snap(&s.out("merged")),
        &snap(&s.out("few")),
        &["manifest", "report"],
    );
}
