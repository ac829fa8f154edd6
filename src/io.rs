//! Every reader and writer call in one place, so a polars upgrade touches one file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::config::{Encoding, Format, InputFile};
use crate::error::{Error, Result};

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
}

impl Run for LazyFrame {
    fn run(self) -> PolarsResult<DataFrame> {
        // A single query (never a multi-sink) yields a single frame.
        Ok(self.collect_with_engine(Engine::Streaming)?.unwrap_single())
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
    Ok(format!("{:032x}", hasher.digest128()))
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

/// Streams a query into a Parquet file without holding its result in
/// memory. `fast` trades size for speed (LZ4, for work files read back once);
/// otherwise the project's settings (zstd, fixed row groups) apply.
pub fn sink_parquet(lf: LazyFrame, path: &Path, fast: bool) -> PolarsResult<()> {
    parquet_sink(lf, path, fast)?.collect_with_engine(Engine::Streaming)?;
    Ok(())
}

/// `lf` as a query that writes `path` (see [`sink_parquet`]).
/// The compression of the typed inputs under `_ingest/`: zstd at level 1,
/// which compresses about twice as fast as the default level and, on
/// typed transactions, no larger. Published tables keep the default level
/// (written beside their CSV, which is slower anyway).
fn zstd() -> ParquetCompression {
    ParquetCompression::Zstd(polars::polars_utils::compression::ZstdLevel::try_new(1).ok())
}

fn parquet_sink(lf: LazyFrame, path: &Path, fast: bool) -> PolarsResult<LazyFrame> {
    let options = ParquetWriteOptions {
        compression: if fast {
            ParquetCompression::Lz4Raw
        } else {
            zstd()
        },
        statistics: StatisticsOptions::default(),
        // The sink buffers a whole row group: small groups keep a streamed
        // write's memory flat whatever the data size.
        row_group_size: Some(1 << 17),
        ..Default::default()
    };
    let target = SinkTarget::Path(PlRefPath::try_from_path(path)?);
    lf.sink(
        SinkDestination::File { target },
        FileWriteFormat::Parquet(Arc::new(options)),
        UnifiedSinkArgs::default(),
    )
}

/// Several outputs of one streamed pass over a shared input: each
/// `(query, path, fast)` written as by [`sink_parquet`], then each of
/// `collect` gathered in memory (returned in order). Queries that share
/// their input (clones of one LazyFrame) read it once.
pub fn sink_and_collect(
    sinks: Vec<(LazyFrame, &Path, bool)>,
    collect: Vec<LazyFrame>,
) -> PolarsResult<Vec<DataFrame>> {
    let Some(first) = sinks
        .first()
        .map(|s| s.0.clone())
        .or(collect.first().cloned())
    else {
        return Ok(Vec::new());
    };
    let flags = first.get_current_optimizations();
    let n_sinks = sinks.len();
    let mut plans = Vec::new();
    for (lf, path, fast) in sinks {
        plans.push(parquet_sink(lf, path, fast)?.logical_plan);
    }
    plans.extend(collect.into_iter().map(|lf| lf.logical_plan));
    let out = LazyFrame::collect_all_with_engine(plans, Engine::Streaming, flags)?;
    Ok(out.into_iter().skip(n_sinks).collect())
}

/// Writes a Parquet file with the project's fixed settings: zstd, one
/// writer thread layout and a fixed row-group size, so bytes are repeatable.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let file = File::create(path).map_err(Error::io(path))?;
    ParquetWriter::new(BufWriter::new(file))
        .with_compression(zstd())
        .with_statistics(StatisticsOptions::default())
        .with_row_group_size(Some(1 << 20))
        .finish(df)?;
    Ok(())
}

/// Writes a work file read back once (LZ4: fast rather than small).
pub fn write_spill(df: &mut DataFrame, path: &Path) -> Result<()> {
    let file = File::create(path).map_err(Error::io(path))?;
    ParquetWriter::new(BufWriter::new(file))
        .with_compression(ParquetCompression::Lz4Raw)
        .finish(df)?;
    Ok(())
}

/// True when any string column holds a non-ASCII character.
pub fn has_non_ascii_text(df: &DataFrame) -> bool {
    df.columns().iter().any(|c| {
        c.str()
            .map(|ca| ca.iter().flatten().any(|s| !s.is_ascii()))
            .unwrap_or(false)
    })
}

/// What the manifest records about one published table.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub rows: usize,
    pub columns: Vec<ColumnInfo>,
    pub csv_bom: bool,
}

/// A column's name and type.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub dtype: String,
}

/// Rows per Parquet row group of a published table.
const ROW_GROUP: usize = 1 << 17;

/// Writes `<dir>/<name>.parquet` and `<dir>/<name>.csv`.
/// `bom`: Some(force) or None (only when there is non-ASCII text).
pub fn write_table(
    df: &mut DataFrame,
    dir: &Path,
    name: &str,
    bom: Option<bool>,
) -> Result<TableInfo> {
    let bom = bom.unwrap_or_else(|| has_non_ascii_text(df));
    // One contiguous copy, shared by both writers (each would otherwise
    // make its own).
    df.rechunk_mut_par();
    let mut w = TableWriter::create(dir, name, &df.schema().clone(), bom)?;
    w.push(df.clone())?;
    w.finish()
}

/// A published table written as its rows come (part after part on the
/// lean plan), as Parquet and CSV side by side: both encoders are mostly
/// single-threaded per file, so two at once use both cores. Row groups are
/// cut every [`ROW_GROUP`] rows however the rows arrive, so a table's
/// bytes do not depend on how it was computed.
pub struct TableWriter {
    name: String,
    parquet: polars::io::parquet::write::BatchedWriter<BufWriter<File>>,
    csv: polars::io::csv::write::BatchedWriter<BufWriter<File>>,
    schema: Schema,
    pending: Option<DataFrame>,
    rows: usize,
    bom: bool,
}

impl TableWriter {
    pub fn create(dir: &Path, name: &str, schema: &Schema, bom: bool) -> Result<TableWriter> {
        let open = |ext: &str| -> Result<BufWriter<File>> {
            let path = dir.join(format!("{name}.{ext}"));
            let file = File::create(&path).map_err(Error::io(&path))?;
            Ok(BufWriter::new(file))
        };
        let (pq, csv) = (open("parquet")?, open("csv")?);
        let pq = ParquetWriter::new(pq)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::default())
            .with_row_group_size(Some(ROW_GROUP))
            .batched(schema)?;
        // CSV for BI tools: UTF-8 (optional BOM), ISO dates, `.` decimals,
        // no scientific notation.
        let csv = CsvWriter::new(csv)
            .include_bom(bom)
            .include_header(true)
            .with_date_format(Some("%Y-%m-%d".into()))
            .with_float_scientific(Some(false))
            .batched(schema)?;
        Ok(TableWriter {
            name: name.to_string(),
            parquet: pq,
            csv,
            schema: schema.clone(),
            pending: None,
            rows: 0,
            bom,
        })
    }

    /// Appends rows (in order); full row groups are written at once.
    pub fn push(&mut self, df: DataFrame) -> Result<()> {
        let mut all = match self.pending.take() {
            Some(mut p) => {
                p.vstack_mut_owned(df)?;
                p
            }
            None => df,
        };
        while all.height() >= ROW_GROUP {
            let (group, rest) = all.split_at(ROW_GROUP as i64);
            self.write(group)?;
            all = rest;
        }
        self.pending = Some(all);
        Ok(())
    }

    fn write(&mut self, mut group: DataFrame) -> Result<()> {
        if group.height() == 0 {
            return Ok(());
        }
        // One chunk is one row group.
        group.rechunk_mut_par();
        self.rows += group.height();
        let (pq, csv) = (&mut self.parquet, &mut self.csv);
        let (a, b) = rayon::join(|| pq.write_batch(&group), || csv.write_batch(&group));
        a?;
        b?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<TableInfo> {
        if let Some(rest) = self.pending.take() {
            self.write(rest)?;
        }
        self.parquet.finish()?;
        self.csv.finish()?;
        Ok(TableInfo {
            name: self.name,
            rows: self.rows,
            columns: self
                .schema
                .iter()
                .map(|(n, t)| ColumnInfo {
                    name: n.to_string(),
                    dtype: t.to_string(),
                })
                .collect(),
            csv_bom: self.bom,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lean plan pushes a table in parts of any size; the fast plan
    /// pushes it whole. Both must give the same bytes, and the Parquet
    /// file must hold row groups of exactly ROW_GROUP rows and the rest.
    #[test]
    fn table_bytes_do_not_depend_on_how_rows_arrive() {
        let n = ROW_GROUP + 1_234;
        let df = df!(
            "customer_id" => (0..n).map(|i| format!("c{i:07}")).collect::<Vec<_>>(),
            "cents" => (0..n as i64).map(|i| i * 7 % 1000).collect::<Vec<_>>(),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tiering-io-{}", std::process::id()));
        let (whole, parts) = (dir.join("whole"), dir.join("parts"));
        std::fs::create_dir_all(&whole).unwrap();
        std::fs::create_dir_all(&parts).unwrap();
        write_table(&mut df.clone(), &whole, "t", None).unwrap();
        let mut w = TableWriter::create(&parts, "t", &df.schema().clone(), false).unwrap();
        for (offset, len) in [(0, 10), (10, ROW_GROUP - 5), (ROW_GROUP + 5, 1_229)] {
            w.push(df.slice(offset as i64, len)).unwrap();
        }
        let info = w.finish().unwrap();
        assert_eq!(info.rows, n);
        for f in ["t.parquet", "t.csv"] {
            let (a, b) = (whole.join(f), parts.join(f));
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{f} differs"
            );
        }
        let meta = ParquetReader::new(File::open(whole.join("t.parquet")).unwrap())
            .get_metadata()
            .unwrap()
            .clone();
        let groups: Vec<usize> = meta.row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![ROW_GROUP, 1_234]);
        let back = ParquetReader::new(File::open(parts.join("t.parquet")).unwrap())
            .finish()
            .unwrap();
        assert!(back.equals(&df));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
