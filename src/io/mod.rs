//! Every reader and writer call in one place, so a polars upgrade touches
//! one folder: readers here, writers in `write`, work files in `work`.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::{Encoding, Format, InputFile};
use crate::error::{Error, Result};

mod chunks;
pub mod csv;
mod direct;
mod hits;
mod pages;
mod work;
mod write;

pub use chunks::{CsvWindows, Head, Valued, WINDOW_BYTES, Window};
pub(crate) use chunks::{first_unsure, last_unsure};
pub use work::*;
pub use write::*;

/// Name of the 1-based physical line column added to raw input frames.
pub const LINE: &str = "__line";

/// Expands a path or glob into the sorted list of files it names.
pub fn expand_inputs(table: &'static str, pattern: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match glob::glob(pattern) {
        Ok(paths) => paths
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => vec![PathBuf::from(pattern)],
    };
    files.retain(|p| p.is_file());
    files.sort();
    if files.is_empty() {
        return Err(Error::NoInputFiles {
            table,
            pattern: pattern.to_string(),
        });
    }
    Ok(files)
}

/// The format of one file: configured, or guessed from its extension.
pub fn format_of(path: &Path, input: &InputFile) -> Format {
    input.format.unwrap_or_else(|| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
        {
            Format::Parquet
        } else {
            Format::Csv
        }
    })
}

/// Whether `file`, a CSV file as `input` reads it, holds at most `rows`
/// rows: told by its newlines (a row has at least one), for an
/// uncompressed file small enough to read whole. `false` when unsure.
pub fn csv_rows_at_most(file: &Path, input: &InputFile, rows: usize) -> bool {
    use polars::io::utils::compression::SupportedCompression;
    // Only small files are worth reading for this (read again after).
    const MOST: u64 = 1 << 20;
    if format_of(file, input) != Format::Csv
        || std::fs::metadata(file).map_or(true, |m| m.len() > MOST)
    {
        return false;
    }
    match std::fs::read(file) {
        // The header is a line too; a last row may lack its newline.
        Ok(bytes) => {
            SupportedCompression::check(&bytes).is_none()
                && memchr::memchr_iter(b'\n', &bytes).count() <= rows
        }
        Err(_) => false,
    }
}

/// Scans one raw input file. CSV columns all come back as strings (parsing
/// and rejecting is ingest's job); Parquet keeps its types. A `__line`
/// column holds the physical line (CSV, header = line 1) or row number.
/// `numeric` names CSV columns to parse as Float64 while reading (fast path;
/// a value that does not parse reads as null).
pub fn read_raw(path: &Path, input: &InputFile, numeric: &[String]) -> Result<LazyFrame> {
    let read_err = |e: PolarsError| read_error(path, &e);
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if meta.len() == 0 {
        return Err(Error::EmptyFile {
            file: path.to_path_buf(),
        });
    }
    let pl_path = PlRefPath::try_from_path(path).map_err(read_err)?;
    let overwrite = (!numeric.is_empty()).then(|| {
        Arc::new(Schema::from_iter(
            numeric
                .iter()
                .map(|n| Field::new(n.as_str().into(), DataType::Float64)),
        ))
    });
    let gb = match input.encoding {
        Encoding::Gbk => Some(encoding_rs::GBK),
        Encoding::Gb18030 => Some(encoding_rs::GB18030),
        _ => None,
    };
    match format_of(path, input) {
        Format::Csv if gb.is_some() => {
            // polars reads UTF-8 only: decode in memory (bytes that are not
            // valid GBK become U+FFFD) and read the text.
            let bytes = std::fs::read(path).map_err(Error::io(path))?;
            let (text, _, _) = gb.unwrap_or(encoding_rs::GBK).decode(&bytes);
            let cursor = std::io::Cursor::new(text.into_owned().into_bytes());
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .with_schema_overwrite(overwrite)
                .with_ignore_errors(!numeric.is_empty())
                .with_row_index(Some(RowIndex {
                    name: LINE.into(),
                    offset: 2,
                }))
                .map_parse_options(|o| {
                    o.with_separator(input.delimiter as u8)
                        .with_missing_is_null(true)
                })
                .into_reader_with_file_handle(cursor)
                .finish()
                .map(|df| df.lazy())
                .map_err(read_err)
        }
        Format::Csv => {
            let encoding = match input.encoding {
                Encoding::Utf8Lossy => CsvEncoding::LossyUtf8,
                _ => CsvEncoding::Utf8,
            };
            LazyCsvReader::new(pl_path)
                .with_has_header(true)
                .with_separator(input.delimiter as u8)
                .with_infer_schema_length(Some(0))
                .with_dtype_overwrite(overwrite)
                .with_ignore_errors(!numeric.is_empty())
                .with_encoding(encoding)
                .with_missing_is_null(true)
                .with_glob(false)
                // Line 1 is the header, so data row i (0-based) sits on line i + 2.
                .with_row_index(Some(RowIndex {
                    name: LINE.into(),
                    offset: 2,
                }))
                .finish()
                .map_err(read_err)
        }
        Format::Parquet => {
            let plain = ScanArgsParquet {
                glob: false,
                ..Default::default()
            };
            let mut lf =
                LazyFrame::scan_parquet(pl_path.clone(), plain.clone()).map_err(read_err)?;
            if lf.collect_schema().map_err(read_err)?.contains(LINE) {
                // The store's typed files carry their source's lines under
                // this name: as an input, the row number replaces them.
                return Ok(lf.drop(cols([LINE])).with_row_index(LINE, Some(1)));
            }
            let args = ScanArgsParquet {
                row_index: Some(RowIndex {
                    name: LINE.into(),
                    offset: 1,
                }),
                ..plain
            };
            LazyFrame::scan_parquet(pl_path, args).map_err(read_err)
        }
    }
}

/// Collects a frame read from `path`, naming the file on failure.
pub fn collect_file(lf: LazyFrame, path: &Path) -> Result<DataFrame> {
    guarded(path, || lf.run())
}

/// Runs a query reading `path`; an error or a panic inside polars (its
/// CSV reader has panicked on malformed input) becomes a read error naming
/// the file instead of a crash.
pub fn guarded<T>(path: &Path, f: impl FnOnce() -> PolarsResult<T>) -> Result<T> {
    match catch_panic(f) {
        Ok(r) => r.map_err(|e| read_error(path, &e)),
        Err(what) => Err(Error::Read {
            file: path.to_path_buf(),
            message: format!("the CSV reader failed ({what}); is a quoted field malformed?"),
        }),
    }
}

/// How many [`catch_panic`] calls are running: a panic then is expected
/// and becomes an error, so the hook of [`quiet_caught_panics`] keeps its
/// default message off stderr. A count, not a thread-local flag: polars
/// panics on its own worker threads.
static CATCHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Installs a panic hook that stays silent while [`catch_panic`] runs (the
/// caught panic is reported as one error line) and prints as usual
/// otherwise. The binary installs it once at start.
pub fn quiet_caught_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CATCHING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            default(info);
        }
    }));
}

/// `f`'s result, or the message of a panic inside it.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::sync::atomic::Ordering;
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    caught.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into())
    })
}

/// Runs a query on polars' streaming engine: morsel-parallel and lean on
/// memory. At 10^7 transactions it made the whole run ~20% faster than the
/// default in-memory engine, with byte-identical outputs; operators the
/// streaming engine lacks fall back to in-memory inside polars.
pub trait Run {
    fn run(self) -> PolarsResult<DataFrame>;
    /// The query on polars' in-memory engine, for row-wise work on a
    /// frame already held whole: each expression runs over whole columns
    /// and every column comes out as one chunk. The streaming engine
    /// returns its morsels as chunks, which the next reader then joins
    /// (the scored customers: ~10 chunks a column, 0.1-0.2 s to join at
    /// 10^6 customers, and ~60 MB more at the peak).
    fn run_whole(self) -> PolarsResult<DataFrame>;
}

impl Run for LazyFrame {
    fn run(self) -> PolarsResult<DataFrame> {
        // A single query (never a multi-sink) yields a single frame.
        Ok(self.collect_with_engine(Engine::Streaming)?.unwrap_single())
    }

    fn run_whole(self) -> PolarsResult<DataFrame> {
        Ok(self.collect_with_engine(Engine::InMemory)?.unwrap_single())
    }
}

/// A read failure as one line naming the file, with a hint for the usual
/// causes.
pub fn read_error(path: &Path, e: &PolarsError) -> Error {
    let first = e.to_string().lines().next().unwrap_or_default().to_string();
    let hint = if first.contains("utf-8") || first.contains("utf8") {
        " (not UTF-8: set encoding = \"gbk\", \"gb18030\" or \"utf8-lossy\" for this input)"
    } else if first.contains("more fields") {
        " (a row has more fields than the header: a shifted column or an unquoted delimiter)"
    } else {
        ""
    };
    Error::Read {
        file: path.to_path_buf(),
        message: format!("{first}{hint}"),
    }
}

/// A fast content hash of a file (XXH3-128, hex), for the manifest: enough
/// to tell whether an input changed between runs.
pub fn content_hash(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = File::open(path).map_err(Error::io(path))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hash_text(hasher.digest128()))
}

/// A content hash as the store and the manifest record it.
pub(crate) fn hash_text(h: u128) -> String {
    format!("{h:032x}")
}

/// Scans Parquet files this tool wrote, of one schema, as one table (one
/// after another), with each row's file path in `file_column` if named.
/// One scan of many files: a concat of one scan per file made the
/// streaming engine's graph a node per file (1,095 daily files: ~19 s to
/// list a few rows).
pub fn scan_parquet_files(paths: &[PathBuf], file_column: Option<&str>) -> Result<LazyFrame> {
    let paths = paths
        .iter()
        .map(|p| PlRefPath::try_from_path(p))
        .collect::<PolarsResult<Vec<_>>>()?;
    let args = ScanArgsParquet {
        glob: false,
        include_file_paths: file_column.map(Into::into),
        ..Default::default()
    };
    Ok(LazyFrame::scan_parquet_files(
        paths.into_iter().collect(),
        args,
    )?)
}

/// The rows of a Parquet file, from its footer.
pub fn parquet_rows(path: &Path) -> Result<usize> {
    let mut f = File::open(path).map_err(Error::io(path))?;
    let meta = polars_parquet::read::read_metadata(&mut f).map_err(|e| read_error(path, &e))?;
    Ok(meta.num_rows)
}

/// Scans a Parquet file this tool wrote.
pub fn scan_parquet(path: &Path) -> Result<LazyFrame> {
    let pl_path = PlRefPath::try_from_path(path)?;
    let args = ScanArgsParquet {
        glob: false,
        ..Default::default()
    };
    Ok(LazyFrame::scan_parquet(pl_path, args)?)
}
