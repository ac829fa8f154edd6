//! `[inputs.*]`, `[ingest]`, `[store]` and `[publish]`: where the extracts are,
//! how to read them, how the typed store treats changed files, how to write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The three input tables; only transactions and customers are required.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub transactions: InputFile,
    pub customers: InputFile,
    #[serde(default)]
    pub interactions: Option<InputFile>,
}

/// One input: a path (or glob) plus how to read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// File path or glob (`drops/txn_*.csv.gz`), relative to the pipeline file.
    pub path: String,
    /// `csv` or `parquet`. Default: from the extension (`.parquet` → parquet, else csv).
    #[serde(default)]
    pub format: Option<Format>,
    /// CSV field delimiter, one character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// CSV encoding: `utf8` (a leading BOM is accepted), `utf8-lossy`,
    /// `gbk` or `gb18030`. Default `utf8`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Thousands separator inside amounts (`"1,234.50"`), removed before
    /// parsing. Default: none.
    #[serde(default)]
    pub thousands_separator: Option<char>,
    /// Amounts use a decimal comma (`"1.234,50"` with `thousands_separator = "."`).
    #[serde(default)]
    pub decimal_comma: bool,
    /// Currency symbols and codes stripped from amounts. Default ¥ ￥ $ € £
    /// and the codes RMB, CNY.
    #[serde(default = "default_currency_symbols")]
    pub currency_symbols: Vec<String>,
    /// Date formats tried in order (chrono strftime). Default: ISO date and
    /// datetime, `%Y/%m/%d` and `%Y/%m/%d %H:%M:%S`.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
    /// Canonical column name → raw column name in this file. Unmapped
    /// canonical columns are looked up under their own name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Interactions only: raw `kind` value → canonical kind (`电访` = "call").
    #[serde(default)]
    pub kinds: BTreeMap<String, String>,
    /// Customers only: extra numeric columns to keep as measures (e.g.
    /// `star_points`), under their own names.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Customers only: extra text columns kept as text (e.g. a dealer
    /// level 一级/二级), scored in scorecards through `points_by_value` and
    /// usable as churn or concentration dimensions.
    #[serde(default)]
    pub text_attributes: Vec<String>,
}

/// Input file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
}

/// CSV text encoding.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    Utf8,
    Utf8Lossy,
    /// GBK / GB2312 (Chinese CRM exports).
    Gbk,
    /// GB18030 (the superset of GBK).
    Gb18030,
}

fn default_currency_symbols() -> Vec<String> {
    ["¥", "￥", "$", "€", "£", "RMB", "CNY"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_delimiter() -> char {
    ','
}

pub fn default_date_formats() -> Vec<String> {
    [
        "%Y-%m-%d",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Ingest validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Fail (exit 3) when more than this fraction of a table's rows is
    /// rejected as invalid. Default 0.01. Rows after the as-of date and
    /// collapsed duplicates do not count against it.
    pub max_reject_ratio: f64,
    /// Label for a missing region / industry and for customers absent from
    /// the customers file. Default `unknown`.
    pub unknown_label: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_reject_ratio: 0.01,
            unknown_label: "unknown".into(),
        }
    }
}

/// Output writing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Write each table's CSV beside its Parquet file. `false`: Parquet
    /// only, for callers who load Parquet (DuckDB, Power BI, Spark): at
    /// 10^6 customers `customer_scores.csv` is ~190 MB and about half of
    /// the table's writing time. Default `true`.
    pub csv: bool,
    /// Write a UTF-8 BOM at the start of each CSV so Excel detects UTF-8.
    /// Default: only when the table holds non-ASCII text.
    pub csv_bom: Option<bool>,
    /// How the published Parquet files are compressed. Default `"zstd"`
    /// (level 1, the smallest); `"snappy"` for readers that refuse zstd
    /// (parquetjs, Azure Storage Explorer's preview, Parquet.Net before
    /// 4.1, Apache Pinot's loader once), `"none"`.
    pub parquet_compression: PublishCompression,
    /// Write the published files around the page cache (`O_DIRECT`, on
    /// file systems that take it): a run never reads them back, and
    /// copying them into the page cache cost more system time than their
    /// encoding saved elsewhere (a 10^7 backfill: 2 GB written, ~2–4 s of
    /// system CPU less). `false`: through the page cache, for a reader on
    /// the same machine that opens the files at once. Default `true`.
    pub direct_io: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            csv: true,
            csv_bom: None,
            parquet_compression: PublishCompression::default(),
            direct_io: true,
        }
    }
}

impl PublishConfig {
    /// The published tables' files as the writers take them.
    pub fn table_out(&self) -> crate::io::TableOut {
        crate::io::TableOut {
            csv: self.csv,
            bom: self.csv_bom,
            parquet: self.parquet_compression,
            direct: self.direct_io,
        }
    }
}

/// How the published Parquet files are compressed
/// (`publish.parquet_compression`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishCompression {
    /// zstd at level 1: the smallest files.
    #[default]
    Zstd,
    /// Snappy: read by every Parquet reader. At 10^6 customers
    /// `customer_scores.parquet` is ~26% larger than with zstd; a night
    /// takes ~0.1–0.17 s less user CPU but, its output buffers zeroed
    /// whole by polars-parquet, no less time (10 interleaved pairs).
    Snappy,
    /// Not compressed.
    None,
}

/// How the Spark engine reads the transactions files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SparkConfig {
    /// CSV fields may hold line breaks (inside quotes), as the local
    /// engine reads them: Spark then reads each CSV file whole, in one
    /// task. `false` lets Spark split a large file across tasks; a line
    /// break inside a field then cuts its row in two (both rejected).
    /// Default `true`.
    pub quoted_line_breaks: bool,
    /// Spark reads the typed store (`<out>/_store/`) instead of the input
    /// files: each transactions file is checked here once, as on the local
    /// engine, and Spark computes the per-customer frames from the store's
    /// per-file pre-aggregates, so a night re-reads no history. Spark must
    /// see the output root under the same absolute path. Default `false`
    /// (Spark reads and checks every input file on every run).
    pub store: bool,
}

impl Default for SparkConfig {
    fn default() -> Self {
        SparkConfig {
            quoted_line_breaks: true,
            store: false,
        }
    }
}

/// The persistent typed store (`<out>/_store/`): every transactions file
/// is ingested once, recorded by path, size and XXH3-128 hash, and later
/// runs ingest only the files it does not hold yet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A stored file whose bytes changed. Default `replace`.
    pub on_changed: OnChanged,
    /// A stored file no longer among the inputs. Default `drop`.
    pub on_removed: OnRemoved,
    /// When the store holds more than this many segments (each file is
    /// ingested into one), a run merges the small ones (each at most
    /// 1/`compact_at` of the stored rows) into one: every run reads each
    /// segment, so a year of nightly files would otherwise cost a night
    /// ~3.5 s more at 10^7 rows. 0 never merges. Default 16.
    pub compact_at: usize,
    /// How the store's Parquet files are compressed: `none` (default),
    /// `lz4` or `zstd` (level 1). Every run reads them back, and at 10^7
    /// transactions a cold run took ~0.5 s (10^8: ~8 s) less without
    /// compression, for a store about twice the size (10^8: 7.3 against
    /// ~3.7 GB). Changing it rewrites nothing: files already stored keep
    /// theirs.
    pub compression: StoreCompression,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            on_changed: OnChanged::default(),
            on_removed: OnRemoved::default(),
            compact_at: 16,
            compression: StoreCompression::default(),
        }
    }
}

/// What a run does with a stored file whose bytes changed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnChanged {
    /// Re-ingest it: its new rows replace the old ones.
    #[default]
    Replace,
    /// Stop with exit 2 naming the file (history must not change).
    Refuse,
}

/// What a run does with a stored file that is no longer among the inputs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnRemoved {
    /// Remove its rows: the store mirrors the inputs, so a run equals a
    /// run from scratch over the same files.
    #[default]
    Drop,
    /// Keep its rows (drop folders whose files are archived once ingested).
    Keep,
    /// Stop with exit 2 naming the file.
    Refuse,
}

/// How the store's Parquet files are compressed (`store.compression`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreCompression {
    /// Not compressed: the fastest to write and read back.
    #[default]
    None,
    /// LZ4: ~half the size, a little slower.
    Lz4,
    /// zstd at level 1: smaller still, slower to write.
    Zstd,
}
