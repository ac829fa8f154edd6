//! Test harness: temp dirs, running the binary, reading tables back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::*;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tiering-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// Writes a text file and returns its path as a string.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tiering` with the arguments.
pub fn tiering(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiering"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run tiering")
}

/// Runs `tiering` and panics with its stderr unless it succeeds.
pub fn ok(args: &[&str]) -> String {
    let out = tiering(args);
    assert!(
        out.status.success(),
        "tiering {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shipped pipeline file into `tmp/out` and returns the snapshot
/// directory of its as-of date (2010-12-31 for every shipped pipeline).
pub fn run_pipeline(tmp: &TempDir, pipeline: &str) -> PathBuf {
    let out = tmp.join("out");
    ok(&[
        "run",
        "--config",
        &format!("pipelines/{pipeline}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    out.join("snapshot=2010-12-31")
}

/// Generates a data set into `dir`.
pub fn generate(dir: &Path, customers: usize, transactions: usize, seed: u64) {
    ok(&[
        "generate",
        "--customers",
        &customers.to_string(),
        "--transactions",
        &transactions.to_string(),
        "--years",
        "2",
        "--seed",
        &seed.to_string(),
        "--out",
        dir.to_str().unwrap(),
    ]);
}

/// Reads a published CSV with polars, inferring types.
pub fn read_csv(path: &Path) -> DataFrame {
    LazyCsvReader::new(PlRefPath::try_from_path(path).unwrap())
        .with_has_header(true)
        .with_infer_schema_length(None)
        .finish()
        .unwrap()
        .collect()
        .unwrap()
}

/// Reads a published Parquet file.
pub fn read_parquet(path: &Path) -> DataFrame {
    LazyFrame::scan_parquet(PlRefPath::try_from_path(path).unwrap(), Default::default())
        .unwrap()
        .collect()
        .unwrap()
}

pub fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    df.column(c)
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

pub fn ints(df: &DataFrame, c: &str) -> Vec<Option<i64>> {
    df.column(c)
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect()
}

pub fn floats(df: &DataFrame, c: &str) -> Vec<Option<f64>> {
    df.column(c)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect()
}

/// Every table (Parquet and CSV) of two snapshot directories, byte for
/// byte, except those whose name starts with one of `except` (the manifest
/// and report, which name how a run was made, are never compared).
pub fn assert_same_tables(a: &Path, b: &Path, except: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv") || n.ends_with(".parquet"))
        .filter(|n| !except.iter().any(|x| n.starts_with(x)))
        .collect();
    names.sort();
    assert!(names.len() > 10, "{names:?}");
    for n in names {
        let x = std::fs::read(a.join(&n)).unwrap();
        let y = std::fs::read(b.join(&n)).unwrap();
        if x != y {
            let (x, y) = (String::from_utf8_lossy(&x), String::from_utf8_lossy(&y));
            let first = x.lines().zip(y.lines()).find(|(p, q)| p != q);
            panic!(
                "{n} differs between {} and {}: first differing lines {first:?}",
                a.display(),
                b.display()
            );
        }
    }
}

/// `--transactions/--customers/--interactions` of a generated data set and
/// `--out`, as owned arguments.
pub fn input_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "--transactions",
        data.join("transactions.csv").to_str().unwrap(),
        "--customers",
        data.join("customers.csv").to_str().unwrap(),
        "--interactions",
        data.join("interactions.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The codecs (ZSTD, SNAPPY, UNCOMPRESSED…) of a Parquet file's column
/// chunks, read by the independent `parquet` crate.
pub fn parquet_codecs(path: &Path) -> std::collections::BTreeSet<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata();
    (0..meta.num_row_groups())
        .flat_map(|g| meta.row_group(g).columns().to_vec())
        .map(|c| format!("{:?}", c.compression()))
        .map(|c| c.split('(').next().unwrap().to_string())
        .collect()
}
