//! Writers: streamed Parquet sinks, work and spill files, and the published
//! tables (Parquet with fixed row groups and CSV, byte-identical however the
//! rows arrive).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars_parquet::write as pq;
use rayon::prelude::*;
use serde::Serialize;

use super::direct::DirectFile;
use super::pages::Paged;
use crate::config::{PublishCompression, StoreCompression};
use crate::error::{Error, Result};

/// Streams a query into a file of the typed store without holding its
/// result in memory, compressed as `store.compression` says ([`stored`]).
pub fn sink_parquet(lf: LazyFrame, path: &Path, c: StoreCompression) -> Result<()> {
    sink_with(lf, path, stored(c))
}

/// [`sink_parquet`] for a work file ([`SPILLED`]).
pub fn sink_spill(lf: LazyFrame, path: &Path) -> Result<()> {
    sink_with(lf, path, SPILLED)
}

fn sink_with(lf: LazyFrame, path: &Path, compression: ParquetCompression) -> Result<()> {
    parquet_sink(lf, path, compression)
        .and_then(|q| q.collect_with_engine(Engine::Streaming))
        .map_err(write_error(path))?;
    Ok(())
}

/// A writer's failure as the run reports it: an IO error (a full disk says
/// "No space left on device") becomes [`Error::Io`] naming the file, so the
/// message says where; anything else stays a polars error.
pub fn write_error(path: &Path) -> impl FnOnce(PolarsError) -> Error + '_ {
    move |e| match io_source(&e) {
        Some(io) => Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        None => Error::Polars(e),
    }
}

/// The IO error inside a polars error, through any context polars added.
fn io_source(e: &PolarsError) -> Option<&std::io::Error> {
    match e {
        PolarsError::IO { error, .. } => Some(error),
        PolarsError::Context { error, .. } => io_source(error),
        _ => None,
    }
}

/// zstd at level 1, which compresses about twice as fast as the default
/// level and, on typed transactions, no larger.
fn zstd() -> ParquetCompression {
    ParquetCompression::Zstd(polars::polars_utils::compression::ZstdLevel::try_new(1).ok())
}

/// The compression of the typed store's files (`store.compression`). The
/// store is a cache that later stages read back (the duplicate check, the
/// pre-aggregate, the lean plan's parts), so the default is none: fast
/// rather than small. Against LZ4 a cold 10^7 run took 4.81 against
/// 5.28 s (Zipf) and 5.83 against 6.66 s (uniform), a 10^8 one 73.7
/// against 81.9 s; LZ4 against zstd level 1 had saved ~0.8 s at 10^7.
pub fn stored(c: StoreCompression) -> ParquetCompression {
    match c {
        StoreCompression::None => ParquetCompression::Uncompressed,
        StoreCompression::Lz4 => ParquetCompression::Lz4Raw,
        StoreCompression::Zstd => zstd(),
    }
}

/// The compression of the lean plan's work files (each part's
/// pre-aggregate, base and scores, earlier tierings): none. They are read
/// back within the run and never kept. At 10^8 transactions LZ4 was ~10%
/// of the lean scoring's CPU samples; without it a rerun over the store
/// took 35.7–37.8 s against 38.7–39.2 s (4 interleaved pairs), its peak
/// RSS lower (2.11 against 2.24 GB) and its peak disk ~1.3 GB higher.
const SPILLED: ParquetCompression = ParquetCompression::Uncompressed;

fn parquet_sink(
    lf: LazyFrame,
    path: &Path,
    compression: ParquetCompression,
) -> PolarsResult<LazyFrame> {
    let options = ParquetWriteOptions {
        compression,
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
/// `(query, path)` written as by [`sink_parquet`], then each of
/// `collect` gathered in memory (returned in order). Queries that share
/// their input (clones of one LazyFrame) read it once.
pub fn sink_and_collect(
    sinks: Vec<(LazyFrame, &Path)>,
    collect: Vec<LazyFrame>,
    c: StoreCompression,
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
    for (lf, path) in sinks {
        plans.push(parquet_sink(lf, path, stored(c))?.logical_plan);
    }
    plans.extend(collect.into_iter().map(|lf| lf.logical_plan));
    let out = LazyFrame::collect_all_with_engine(plans, Engine::Streaming, flags)?;
    Ok(out.into_iter().skip(n_sinks).collect())
}

/// Writes a Parquet file with the project's fixed settings: zstd and a
/// fixed row-group size, so bytes are repeatable.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_groups(df, path, zstd(), 1 << 20)
}

/// [`write_parquet`]'s settings for the frames `parts` gives, one after
/// another, in row groups of `rows` rows, holding about one of them at a
/// time. `schema` is theirs (the file's, should no part come).
pub fn write_parquet_from(
    path: &Path,
    schema: &Schema,
    parts: impl IntoIterator<Item = Result<DataFrame>>,
    rows: usize,
) -> Result<()> {
    let file = File::create(path).map_err(Error::io(path))?;
    let mut w = Pages::create(BufWriter::new(file), schema, zstd()).map_err(write_error(path))?;
    let mut pending = None;
    let mut write = |mut group: DataFrame| {
        group.rechunk_mut_par();
        w.write(&group).map_err(write_error(path))
    };
    for part in parts {
        for group in full_groups_of(&mut pending, part?, rows)? {
            write(group)?;
        }
    }
    if let Some(rest) = pending.filter(|p| p.height() > 0) {
        write(rest)?;
    }
    w.finish().map_err(write_error(path))?;
    Ok(())
}

/// `df` written in row groups of `rows` rows by [`Pages`].
fn write_groups(
    df: &DataFrame,
    path: &Path,
    compression: ParquetCompression,
    rows: usize,
) -> Result<()> {
    let file = File::create(path).map_err(Error::io(path))?;
    let mut w =
        Pages::create(BufWriter::new(file), df.schema(), compression).map_err(write_error(path))?;
    for offset in (0..df.height()).step_by(rows) {
        // One chunk is one row group.
        let mut group = df.slice(offset as i64, rows);
        group.rechunk_mut_par();
        w.write(&group).map_err(write_error(path))?;
    }
    w.finish().map_err(write_error(path))?;
    Ok(())
}

/// Frames written one after another into one Parquet file with the typed
/// store's settings ([`stored`]), small ones gathered into row groups of at
/// least `rows` rows (a merged store segment's files; with 0, each frame
/// one row group, as a pre-aggregate built in customer ranges).
pub fn write_parquet_parts(
    path: &Path,
    parts: impl IntoIterator<Item = Result<DataFrame>>,
    rows: usize,
    c: StoreCompression,
) -> Result<()> {
    write_frames(path, parts, stored(c), rows)
}

fn write_frames(
    path: &Path,
    parts: impl IntoIterator<Item = Result<DataFrame>>,
    compression: ParquetCompression,
    min_rows: usize,
) -> Result<()> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Ok(());
    };
    let mut df = first?;
    let file = File::create(path).map_err(Error::io(path))?;
    let mut w =
        Pages::create(BufWriter::new(file), df.schema(), compression).map_err(write_error(path))?;
    for next in parts {
        let next = next?;
        if df.height() >= min_rows {
            df.rechunk_mut_par();
            w.write(&df).map_err(write_error(path))?;
            df = next;
        } else {
            df.vstack_mut_owned(next)?;
        }
    }
    df.rechunk_mut_par();
    w.write(&df).map_err(write_error(path))?;
    w.finish().map_err(write_error(path))?;
    Ok(())
}

/// The row groups of the files [`write_groups`] writes for the store and
/// the work files: 2^18 rows.
const GROUP_ROWS: usize = 1 << 18;

/// Writes a file of the typed store ([`stored`]) in row groups of
/// [`GROUP_ROWS`].
pub fn write_stored(df: &mut DataFrame, path: &Path, c: StoreCompression) -> Result<()> {
    write_groups(df, path, stored(c), GROUP_ROWS)
}

/// Writes a frame of the store read back whole ([`stored`]) as one row
/// group up to [`WHOLE_ROWS`] rows, so that it is read as one chunk per
/// column: a kept tiering read in row groups was copied into one chunk
/// again (20–100 ms each at 10^6 customers, most of it the fresh memory).
/// Larger frames (the lean plan's, under a memory limit) keep row groups
/// of [`GROUP_ROWS`], so the writer never holds more than one group's pages.
pub fn write_stored_whole(df: &mut DataFrame, path: &Path, c: StoreCompression) -> Result<()> {
    let rows = match df.height() {
        n if n <= WHOLE_ROWS => n.max(1),
        _ => GROUP_ROWS,
    };
    write_groups(df, path, stored(c), rows)
}

/// The most rows [`write_stored_whole`] writes as one row group.
const WHOLE_ROWS: usize = 1 << 21;

/// Writes a work file ([`SPILLED`]) in row groups of [`GROUP_ROWS`].
pub fn write_spill(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_groups(df, path, SPILLED, GROUP_ROWS)
}

/// Work files ([`write_spill`]) written one after another on a thread of
/// their own, so that the caller computes the next part meanwhile: at
/// 10^8 transactions the lean scoring's 16 work files took ~3 of its
/// ~10 s. A frame is handed over only once the one before is written, so
/// at most two are held: the one being written and the caller's next.
pub struct SpillBehind {
    tx: Option<std::sync::mpsc::SyncSender<(DataFrame, PathBuf)>>,
    writer: Option<std::thread::JoinHandle<Result<()>>>,
}

impl SpillBehind {
    pub fn start() -> SpillBehind {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(DataFrame, PathBuf)>(0);
        let writer = std::thread::spawn(move || {
            for (mut df, path) in rx {
                write_spill(&mut df, &path)?;
                drop(df);
                crate::memory::release_free();
            }
            Ok(())
        });
        SpillBehind {
            tx: Some(tx),
            writer: Some(writer),
        }
    }

    /// Hands `df` over for `path` (waits while the frame before is written).
    pub fn write(&mut self, df: DataFrame, path: PathBuf) -> Result<()> {
        let Some(tx) = &self.tx else {
            return Err(Error::Invariant(format!(
                "{}: handed to a work file writer already finished",
                path.display()
            )));
        };
        if tx.send((df, path)).is_ok() {
            return Ok(());
        }
        // The writer stopped: its error.
        self.finish()?;
        Err(Error::Invariant("the work file writer stopped".into()))
    }

    /// Waits until every queued file is written; the first error, if any.
    pub fn finish(&mut self) -> Result<()> {
        self.tx = None;
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

impl Drop for SpillBehind {
    fn drop(&mut self) {
        // An early return still waits for the file being written (its
        // directory is removed after); its outcome is the caller's error
        // already, and a panic is not raised again while unwinding.
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
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
    /// Whether `<name>.csv` was written (`publish.csv`).
    pub csv: bool,
    pub csv_bom: bool,
}

/// How a published table is written: whether its CSV is, the CSV's BOM
/// (forced either way, or `None`: only when there is non-ASCII text), the
/// Parquet file's compression, and whether around the page cache
/// ([`DirectFile`]).
#[derive(Debug, Clone, Copy)]
pub struct TableOut {
    pub csv: bool,
    pub bom: Option<bool>,
    pub parquet: PublishCompression,
    pub direct: bool,
}

impl TableOut {
    /// The BOM decided (as [`TableWriter::create`] takes it): forced, or
    /// when the table holds non-ASCII text (asked only if a CSV is written).
    pub fn decided(self, non_ascii: impl FnOnce() -> bool) -> TableOut {
        TableOut {
            bom: Some(self.csv && self.bom.unwrap_or_else(non_ascii)),
            ..self
        }
    }
}

/// The published Parquet files' compression (`publish.parquet_compression`).
fn published(c: PublishCompression) -> ParquetCompression {
    match c {
        PublishCompression::Snappy => ParquetCompression::Snappy,
        PublishCompression::Zstd => zstd(),
        PublishCompression::None => ParquetCompression::Uncompressed,
    }
}

/// A column's name and type.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub dtype: String,
}

/// Rows per Parquet row group of a published table.
const ROW_GROUP: usize = 1 << 17;

/// Writes `<dir>/<name>.parquet` and, as `csv` says, `<dir>/<name>.csv`.
pub fn write_table(df: &mut DataFrame, dir: &Path, name: &str, out: TableOut) -> Result<TableInfo> {
    let out = out.decided(|| has_non_ascii_text(df));
    // One contiguous copy, shared by both writers (each would otherwise
    // make its own).
    df.rechunk_mut_par();
    let mut w = TableWriter::create(dir, name, &df.schema().clone(), out)?;
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
    /// Where the two files go (errors name them).
    dir: PathBuf,
    parquet: Pages,
    /// None without a CSV (`publish.csv = false`).
    csv: Option<Csv>,
    schema: Schema,
    pending: Option<DataFrame>,
    rows: usize,
    bom: bool,
}

impl TableWriter {
    /// `out` as [`TableOut::decided`] gives it.
    pub fn create(dir: &Path, name: &str, schema: &Schema, out: TableOut) -> Result<TableWriter> {
        let bom = out.csv && out.bom == Some(true);
        let open = |ext: &str| -> Result<Out> {
            let path = dir.join(format!("{name}.{ext}"));
            match out.direct {
                true => DirectFile::create(&path).map(Out::Direct),
                false => File::create(&path).map(|f| Out::Buffered(BufWriter::new(f))),
            }
            .map_err(Error::io(&path))
        };
        let pq = Pages::create(open("parquet")?, schema, published(out.parquet))?;
        // CSV for BI tools: UTF-8 (optional BOM), ISO dates, `.` decimals,
        // no scientific notation. Our own encoder for every type a table
        // holds; polars' writer (same bytes, slower) for anything else.
        let csv = match out.csv {
            true if super::csv::encodable(schema) => {
                let mut file = open("csv")?;
                let names: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
                let bom: &[u8] = if bom { b"\xEF\xBB\xBF" } else { b"" };
                file.write_all(bom)
                    .and_then(|()| file.write_all(&super::csv::header(&names)))
                    .map_err(Error::io(dir.join(format!("{name}.csv"))))?;
                Some(Csv::Own(file))
            }
            true => Some(Csv::Polars(
                CsvWriter::new(open("csv")?)
                    .include_bom(bom)
                    .include_header(true)
                    .with_float_scientific(Some(false))
                    .batched(schema)?,
            )),
            false => None,
        };
        Ok(TableWriter {
            name: name.to_string(),
            dir: dir.to_path_buf(),
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
        for group in full_groups(&mut self.pending, df)? {
            self.write(group)?;
        }
        Ok(())
    }

    fn write(&mut self, mut group: DataFrame) -> Result<()> {
        if group.height() == 0 {
            return Ok(());
        }
        // One chunk is one row group.
        group.rechunk_mut_par();
        self.rows += group.height();
        let csv_path = self.path("csv");
        let (pq, csv) = (&mut self.parquet, &mut self.csv);
        let (a, b) = match csv {
            Some(csv) => rayon::join(|| pq.write(&group), || csv.write(&group, &csv_path)),
            None => (pq.write(&group), Ok(())),
        };
        a.map_err(write_error(&self.path("parquet")))?;
        b
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    pub fn finish(mut self) -> Result<TableInfo> {
        crate::io::failpoint_io(&self.name).map_err(write_error(&self.path("csv")))?;
        if let Some(rest) = self.pending.take() {
            self.write(rest)?;
        }
        let (pq, csv) = (self.path("parquet"), self.path("csv"));
        self.parquet.finish().map_err(write_error(&pq))?;
        if let Some(w) = &mut self.csv {
            w.finish(&csv)?;
        }
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
            csv: self.csv.is_some(),
            csv_bom: self.bom,
        })
    }
}

/// `df` added to the rows `pending` holds: the full row groups of
/// [`ROW_GROUP`] rows among them, the rest left pending.
fn full_groups(pending: &mut Option<DataFrame>, df: DataFrame) -> PolarsResult<Vec<DataFrame>> {
    full_groups_of(pending, df, ROW_GROUP)
}

/// [`full_groups`] of `rows` rows.
fn full_groups_of(
    pending: &mut Option<DataFrame>,
    df: DataFrame,
    rows: usize,
) -> PolarsResult<Vec<DataFrame>> {
    let mut all = match pending.take() {
        Some(mut p) => {
            p.vstack_mut_owned(df)?;
            p
        }
        None => df,
    };
    let mut groups = Vec::new();
    while all.height() >= rows {
        let (group, rest) = all.split_at(rows as i64);
        groups.push(group);
        all = rest;
    }
    *pending = Some(all);
    Ok(groups)
}

/// A Parquet file written as its rows come, in row groups of [`ROW_GROUP`]
/// rows (an input staged in windows), compressed as `c` says ([`stored`]).
pub struct ParquetOut {
    pages: Pages,
    pending: Option<DataFrame>,
}

impl ParquetOut {
    pub fn create(path: &Path, schema: &Schema, c: StoreCompression) -> PolarsResult<ParquetOut> {
        let file = File::create(path).map_err(|e| PolarsError::IO {
            error: Arc::new(e),
            msg: Some(format!("{}", path.display()).into()),
        })?;
        Ok(ParquetOut {
            pages: Pages::create(BufWriter::new(file), schema, stored(c))?,
            pending: None,
        })
    }

    /// Appends rows (in order).
    pub fn push(&mut self, df: DataFrame) -> PolarsResult<()> {
        for mut group in full_groups(&mut self.pending, df)? {
            group.rechunk_mut_par();
            self.pages.write(&group)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> PolarsResult<()> {
        if let Some(mut rest) = self.pending.take().filter(|p| p.height() > 0) {
            rest.rechunk_mut_par();
            self.pages.write(&rest)?;
        }
        self.pages.finish()?;
        Ok(())
    }
}

/// A Parquet writer that compresses a row group's columns in parallel
/// (published tables, spill and work files). polars' own batched writer
/// compresses them one after another while it writes (`customer_scores`,
/// 10^6 rows and 51 columns: ~1.7 s, mostly on one core); here each column
/// is encoded and compressed on the pool, numbers, dates, booleans and
/// text of repeated values by [`super::pages`] (~45% less CPU on
/// `customer_scores`), the rest by polars-parquet with the same options,
/// and the finished pages are handed to its file writer. The files read
/// back as polars' writer's do, statistics included (tested).
struct Pages {
    w: polars::io::parquet::write::BatchedWriter<Out>,
    fields: Vec<pq::ParquetType>,
    encodings: Vec<Vec<pq::Encoding>>,
    options: pq::WriteOptions,
}

impl Pages {
    fn create(
        file: impl Into<Out>,
        schema: &Schema,
        compression: ParquetCompression,
    ) -> PolarsResult<Pages> {
        let arrow = schema.to_arrow(CompatLevel::newest());
        let fields = pq::to_parquet_schema(&arrow)?.fields().to_vec();
        // Floats are never dictionary-encoded: polars-parquet cannot pack
        // them and writes them plain, but only after hashing every value to
        // estimate their cardinality. Asked for plain, it writes the same
        // bytes without the hashing.
        let encodings = polars::io::parquet::write::get_encodings(&arrow)
            .iter()
            .zip(arrow.iter_values())
            .map(|(e, field)| match field.dtype {
                ArrowDataType::Float32 | ArrowDataType::Float64 => vec![pq::Encoding::Plain],
                _ => e.clone(),
            })
            .collect();
        let statistics = StatisticsOptions::default();
        let w = ParquetWriter::new(file.into())
            .with_compression(compression)
            .with_statistics(statistics)
            .batched(schema)?;
        // What ParquetWriter::batched gives its own writer.
        let options = pq::WriteOptions {
            statistics,
            compression: compression.into(),
            version: pq::Version::V1,
            data_page_size: None,
        };
        Ok(Pages {
            w,
            fields,
            encodings,
            options,
        })
    }

    /// Writes each chunk of `df` as one row group.
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        let options = self.options;
        for batch in df.iter_chunks(CompatLevel::newest(), false) {
            let columns: Vec<Vec<Vec<pq::CompressedPage>>> = batch
                .columns()
                .par_iter()
                .zip(&self.fields)
                .zip(&self.encodings)
                .map(|((array, field), encoding)| {
                    type Leaf = Box<dyn Iterator<Item = PolarsResult<pq::Page>> + Send>;
                    let theirs = |encoding: &[pq::Encoding]| -> PolarsResult<Vec<Leaf>> {
                        Ok(
                            pq::array_to_columns(array, field.clone(), options, encoding)?
                                .into_iter()
                                .map(|pages| Box::new(pages) as Leaf)
                                .collect(),
                        )
                    };
                    let leaves: Vec<Leaf> =
                        match super::pages::paged(array.as_ref(), field, &options) {
                            Paged::Pages(pages) => vec![Box::new(pages.into_iter().map(Ok))],
                            Paged::Plain => theirs(&[pq::Encoding::Plain])?,
                            Paged::Theirs => theirs(encoding)?,
                        };
                    leaves
                        .into_iter()
                        .map(|pages| {
                            pages
                                .map(|page| compress(page?, options.compression))
                                .collect::<PolarsResult<Vec<_>>>()
                        })
                        .collect()
                })
                .collect::<PolarsResult<_>>()?;
            let leaves: Vec<Vec<pq::CompressedPage>> = columns.into_iter().flatten().collect();
            self.w.write_row_group(batch.len() as u64, &leaves)?;
        }
        Ok(())
    }

    fn finish(&self) -> PolarsResult<u64> {
        self.w.finish()
    }
}

/// `page` compressed as `compression` says, the bytes polars-parquet's
/// `compress` gives. zstd pages go through a compressor kept per thread
/// into a buffer reserved, not zero-filled: `compress` makes a zstd
/// context for every page and first fills the output's worst-case length
/// with zeros (a night compresses ~900 pages, ~100 MB).
fn compress(
    page: pq::Page,
    compression: pq::CompressionOptions,
) -> PolarsResult<pq::CompressedPage> {
    use polars_parquet::parquet::page::{CompressedDictPage, DataPageHeader};
    let pq::CompressionOptions::Zstd(level) = compression else {
        return Ok(pq::compress(page, vec![], compression)?);
    };
    let level = level.map_or(0, |l| l.compression_level());
    let zstd = |input: &[u8]| -> PolarsResult<Vec<u8>> {
        thread_local! {
            static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
                const { std::cell::RefCell::new(None) };
        }
        ZSTD.with_borrow_mut(|kept| {
            if kept.as_ref().is_none_or(|(l, _)| *l != level) {
                *kept = Some((level, zstd::bulk::Compressor::new(level)?));
            }
            let (_, c) = kept.as_mut().expect("set above");
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
            c.compress_to_buffer(input, &mut out)?;
            Ok::<_, std::io::Error>(out)
        })
        .map_err(PolarsError::from)
    };
    Ok(match page {
        pq::Page::Data(data) if matches!(data.header(), DataPageHeader::V1(_)) => {
            let buffer = zstd(data.buffer())?;
            pq::CompressedPage::Data(pq::CompressedDataPage::new(
                data.header().clone(),
                polars_parquet::parquet::CowBuffer::Owned(buffer),
                compression.into(),
                data.buffer().len(),
                data.descriptor.clone(),
                data.num_rows.expect("pages written carry their row count"),
            ))
        }
        pq::Page::Dict(dict) => pq::CompressedPage::Dict(CompressedDictPage::new(
            polars_parquet::parquet::CowBuffer::Owned(zstd(&dict.buffer)?),
            compression.into(),
            dict.buffer.len(),
            dict.num_values,
            dict.is_sorted,
        )),
        other => pq::compress(other, vec![], compression)?,
    })
}

/// Where a file's bytes go: the page cache (the store's files, read again
/// by later runs) or around it (published tables, [`DirectFile`]).
pub enum Out {
    Buffered(BufWriter<File>),
    Direct(DirectFile),
}

impl From<BufWriter<File>> for Out {
    fn from(w: BufWriter<File>) -> Out {
        Out::Buffered(w)
    }
}

impl Write for Out {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Buffered(w) => w.write(data),
            Out::Direct(w) => w.write(data),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Buffered(w) => w.write_all(data),
            Out::Direct(w) => w.write_all(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Buffered(w) => w.flush(),
            Out::Direct(w) => w.flush(),
        }
    }
}

/// A published table's CSV file and what encodes it.
enum Csv {
    /// [`super::csv`]: BOM and header already written.
    Own(Out),
    Polars(polars::io::csv::write::BatchedWriter<Out>),
}

impl Csv {
    fn write(&mut self, rows: &DataFrame, path: &Path) -> Result<()> {
        match self {
            Csv::Own(file) => super::csv::write_rows(rows, file).map_err(Error::io(path)),
            Csv::Polars(w) => w.write_batch(rows).map_err(write_error(path)),
        }
    }

    fn finish(&mut self, path: &Path) -> Result<()> {
        match self {
            Csv::Own(file) => file.flush().map_err(Error::io(path)),
            Csv::Polars(w) => w.finish().map_err(write_error(path)),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame handed over is written, in full, by the time `finish`
    /// returns; a write that fails is the caller's error, not lost.
    #[test]
    fn spill_behind_writes_every_frame_and_reports_a_failure() {
        let dir = std::env::temp_dir().join(format!("tiering-behind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let frame = |k: i64| df!("k" => (0..1000i64).map(|i| i * k).collect::<Vec<_>>()).unwrap();
        let mut w = SpillBehind::start();
        for k in 1..=3 {
            w.write(frame(k), dir.join(format!("f{k}.parquet")))
                .unwrap();
        }
        w.finish().unwrap();
        for k in 1..=3 {
            let back = crate::io::scan_parquet(&dir.join(format!("f{k}.parquet")))
                .unwrap()
                .collect()
                .unwrap();
            assert!(back.equals(&frame(k)), "frame {k}");
        }
        assert!(w.write(frame(4), dir.join("late.parquet")).is_err());
        // A directory that does not exist: the writer fails, and the next
        // hand-over or the finish says so.
        let mut w = SpillBehind::start();
        let missing = dir.join("missing").join("f.parquet");
        w.write(frame(1), missing.clone()).unwrap();
        let err = w.write(frame(2), dir.join("f5.parquet")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(!dir.join("f5.parquet").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Pages compressed here equal those polars-parquet's `compress` makes,
    /// dictionary and data pages, zstd at two levels, each level twice on
    /// one thread (its compressor kept, then made anew), and Snappy (passed
    /// through).
    #[test]
    fn pages_compress_as_polars_parquet_compresses_them() {
        let n = 20_000;
        let df = df!(
            "k" => (0..n).map(|i: i32| i * 7 % 37).collect::<Vec<_>>(),
            "x" => (0..n).map(|i| (i as f64 * 1.37).sin()).collect::<Vec<_>>(),
        )
        .unwrap();
        let arrow = df.schema().to_arrow(CompatLevel::newest());
        let fields = pq::to_parquet_schema(&arrow).unwrap().fields().to_vec();
        let zstd = |l| pq::CompressionOptions::Zstd(Some(pq::ZstdLevel::try_new(l).unwrap()));
        let mut kinds = (0, 0);
        for compression in [
            zstd(1),
            zstd(1),
            zstd(3),
            zstd(3),
            zstd(1),
            pq::CompressionOptions::Snappy,
        ] {
            let options = pq::WriteOptions {
                statistics: StatisticsOptions::default(),
                compression,
                version: pq::Version::V1,
                data_page_size: None,
            };
            for (c, field) in df.columns().iter().zip(&fields) {
                let array = c
                    .as_materialized_series()
                    .to_arrow(0, CompatLevel::newest());
                // Pages are not Clone: encoded twice.
                let encoded =
                    || super::super::pages::pages(array.as_ref(), field, &options).unwrap();
                for (page, again) in encoded().into_iter().zip(encoded()) {
                    match &page {
                        pq::Page::Dict(_) => kinds.0 += 1,
                        pq::Page::Data(_) => kinds.1 += 1,
                    }
                    let ours = compress(page, compression).unwrap();
                    let theirs = pq::compress(again, vec![], compression).unwrap();
                    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
                }
            }
        }
        // A dictionary page each time for the keys, data pages for both.
        assert_eq!(kinds, (6, 12));
    }

    /// The lean plan pushes a table in parts of any size; the fast plan
    /// pushes it whole. Both must give the same bytes, and the Parquet
    /// file must hold row groups of exactly ROW_GROUP rows and the rest.
    /// Written around the page cache or through it, the bytes are the same
    /// too (the CSV, ~3.4 MB, passes through the direct writer's thread).
    #[test]
    fn table_bytes_do_not_depend_on_how_rows_arrive() {
        let n = 2 * ROW_GROUP + 1_234;
        let df = df!(
            "customer_id" => (0..n).map(|i| format!("c{i:07}")).collect::<Vec<_>>(),
            "cents" => (0..n as i64).map(|i| i * 7 % 1000).collect::<Vec<_>>(),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tiering-io-{}", std::process::id()));
        let (whole, parts) = (dir.join("whole"), dir.join("parts"));
        std::fs::create_dir_all(&whole).unwrap();
        std::fs::create_dir_all(&parts).unwrap();
        let out = TableOut {
            csv: true,
            bom: Some(false),
            parquet: PublishCompression::default(),
            direct: true,
        };
        write_table(&mut df.clone(), &whole, "t", out).unwrap();
        let buffered = TableOut {
            direct: false,
            ..out
        };
        let mut w = TableWriter::create(&parts, "t", &df.schema().clone(), buffered).unwrap();
        for (offset, len) in [
            (0, 10),
            (10, ROW_GROUP - 5),
            (ROW_GROUP + 5, n - ROW_GROUP - 5),
        ] {
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
        assert_eq!(groups, vec![ROW_GROUP, ROW_GROUP, 1_234]);
        let back = ParquetReader::new(File::open(parts.join("t.parquet")).unwrap())
            .finish()
            .unwrap();
        assert!(back.equals(&df));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Frames of any heights, empty ones included, come out stacked, in
    /// row groups of the rows asked for; the same file as `write_parquet`
    /// of the stacked frame when those are its groups.
    #[test]
    fn frames_written_one_after_another_are_cut_into_whole_row_groups() {
        let dir = std::env::temp_dir().join(format!("tiering-from-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let df = df!(
            "customer_id" => (0..12).map(|i| format!("c{i:02}")).collect::<Vec<_>>(),
            "kind" => (0..12).map(|i| ["call", "visit"][i % 2]).collect::<Vec<_>>(),
        )
        .unwrap();
        let parts = [(0, 3), (3, 5), (8, 0), (8, 4)].map(|(o, n)| Ok(df.slice(o, n)));
        let path = dir.join("from.parquet");
        write_parquet_from(&path, &df.schema().clone(), parts, 4).unwrap();
        let meta = ParquetReader::new(File::open(&path).unwrap())
            .get_metadata()
            .unwrap()
            .clone();
        let groups: Vec<usize> = meta.row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![4, 4, 4]);
        let back = ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert!(back.equals(&df));
        // Groups of 2^20 rows: write_parquet's file, byte for byte.
        let whole = dir.join("whole.parquet");
        write_parquet(&mut df.clone(), &whole).unwrap();
        let parts = [Ok(df.slice(0, 5)), Ok(df.slice(5, 7))];
        write_parquet_from(&path, &df.schema().clone(), parts, 1 << 20).unwrap();
        assert!(std::fs::read(&path).unwrap() == std::fs::read(&whole).unwrap());
        // No part: an empty file of the schema.
        write_parquet_from(&path, &df.schema().clone(), [], 4).unwrap();
        let back = ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert_eq!((back.height(), back.schema()), (0, df.schema()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The published Parquet (our own pages for numbers, dates, booleans
    /// and text of few values; polars-parquet's for the rest) reads back
    /// as what polars' own batched writer writes with the same settings:
    /// the same rows, types, row groups and per-column statistics, nulls,
    /// NaN and a column of one distinct text included.
    #[test]
    fn published_parquet_reads_back_as_polars_writes_it() {
        let n = ROW_GROUP + 1_234;
        let df = df!(
            "customer_id" => (0..n).map(|i| format!("c{:07}", i * 7919 % n)).collect::<Vec<_>>(),
            "segment" => (0..n).map(|i| (i % 4 != 0).then_some(["重要价值", "lost", ""][i % 3])).collect::<Vec<_>>(),
            "one" => (0..n).map(|_| "same").collect::<Vec<_>>(),
            // Past polars' 64-byte bound on text statistics.
            "long" => (0..n).map(|i| format!("{:0>70}", i % 9)).collect::<Vec<_>>(),
            "cents" => (0..n as i64).map(|i| (i % 5 != 0).then_some(i * 7 % 1000 - 300)).collect::<Vec<_>>(),
            "share" => (0..n).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0 - 5.0)).collect::<Vec<_>>(),
            "nan" => (0..n).map(|i| if i == 77 { f64::NAN } else { i as f64 }).collect::<Vec<_>>(),
            "zero" => (0..n).map(|i| (i % 3 == 0).then_some(0.0f32)).collect::<Vec<_>>(),
            "days" => (0..n).map(|i| (i % 13 != 0).then_some([90.0, 180.0][i % 2])).collect::<Vec<_>>(),
            "flag" => (0..n).map(|i| (i % 11 != 0).then_some(i % 2 == 0)).collect::<Vec<_>>(),
            "all_true" => (0..n).map(|_| true).collect::<Vec<_>>(),
            "rank" => (0..n as u32).collect::<Vec<_>>(),
            "none" => (0..n).map(|_| None::<i32>).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
        .with_columns([
            col("rank").cast(DataType::Int32).cast(DataType::Date).alias("day"),
            col("rank").cast(DataType::Int32).alias("rank32"),
        ])
        .collect()
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tiering-pq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Each codec `publish.parquet_compression` offers.
        for codec in [
            PublishCompression::Snappy,
            PublishCompression::Zstd,
            PublishCompression::None,
        ] {
            let out = TableOut {
                csv: false,
                bom: None,
                parquet: codec,
                direct: true,
            };
            write_table(&mut df.clone(), &dir, "t", out).unwrap();
            let mut expected = Vec::new();
            let mut w = ParquetWriter::new(&mut expected)
                .with_compression(published(codec))
                .with_statistics(StatisticsOptions::default())
                .batched(df.schema())
                .unwrap();
            for offset in (0..n).step_by(ROW_GROUP) {
                let mut group = df.slice(offset as i64, ROW_GROUP);
                group.rechunk_mut_par();
                w.write_batch(&group).unwrap();
            }
            w.finish().unwrap();
            let written = std::fs::read(dir.join("t.parquet")).unwrap();
            let ours = ParquetReader::new(std::io::Cursor::new(&written))
                .finish()
                .unwrap();
            assert!(ours.equals_missing(&df), "values differ");
            assert_eq!(ours.schema(), df.schema());
            let stats = |bytes: &[u8]| {
                let meta = ParquetReader::new(std::io::Cursor::new(bytes))
                    .get_metadata()
                    .unwrap()
                    .clone();
                meta.row_groups
                    .iter()
                    .map(|g| {
                        let cols = g.parquet_columns().iter();
                        let s: Vec<String> = cols
                            .map(|c| format!("{:?}", c.statistics(&meta.footer_buf)))
                            .collect();
                        (g.num_rows(), s)
                    })
                    .collect::<Vec<_>>()
            };
            let (ours, theirs) = (stats(&written), stats(&expected));
            assert_eq!(ours.len(), 2);
            let nan = df.get_column_index("nan").unwrap();
            for (g, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a.0, b.0, "row group {g}'s rows");
                for (c, (x, y)) in a.1.iter().zip(&b.1).enumerate() {
                    if c != nan {
                        assert_eq!(x, y, "row group {g}, column {c}'s statistics");
                    }
                }
            }
            // NaN is left out of the bounds (polars' are wrong there).
            let first = &ours[0].1[nan];
            let bounds = format!(
                "min_value: Some(-0.0), max_value: Some({}.0)",
                ROW_GROUP - 1
            );
            assert!(first.contains(&bounds), "{first}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Both CSV encoders a table can get (ours, and polars' for a type ours
    /// leaves alone) write what polars' writer writes, BOM included.
    #[test]
    fn published_csv_is_what_polars_writes() {
        let n = 40_000;
        let plain = df!(
            "customer_id" => (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>(),
            "amount" => (0..n).map(|i| (i % 3 != 0).then_some(i as f64 / 8.0 - 7.3)).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut stamped = plain.clone();
        let ms = Column::new(
            "at".into(),
            (0..n as i64).map(|i| i * 3_600_123).collect::<Vec<_>>(),
        )
        .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
        .unwrap();
        stamped.with_column(ms).unwrap();
        assert!(crate::io::csv::encodable(plain.schema()));
        assert!(!crate::io::csv::encodable(stamped.schema()));
        let dir = std::env::temp_dir().join(format!("tiering-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, df) in [("plain", plain), ("stamped", stamped)] {
            let out = TableOut {
                csv: true,
                bom: Some(true),
                parquet: PublishCompression::default(),
                direct: true,
            };
            write_table(&mut df.clone(), &dir, name, out).unwrap();
            let mut expected = Vec::new();
            CsvWriter::new(&mut expected)
                .include_bom(true)
                .include_header(true)
                .with_float_scientific(Some(false))
                .finish(&mut df.clone())
                .unwrap();
            let written = std::fs::read(dir.join(format!("{name}.csv"))).unwrap();
            assert!(
                written.starts_with(b"\xEF\xBB\xBFcustomer_id,amount"),
                "{name}"
            );
            assert!(
                written == expected,
                "{name}.csv differs from polars' writer"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_writers_io_error_names_the_file() {
        let path = Path::new("out/.staging-1/pyramid.csv");
        let full = PolarsError::IO {
            error: std::sync::Arc::new(std::io::Error::from_raw_os_error(28)),
            msg: None,
        };
        // Polars may wrap it in context; the file and the cause still show.
        let wrapped = full.context("writing batch".into());
        let e = write_error(path)(wrapped);
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("out/.staging-1/pyramid.csv: ") && text.contains("No space left"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
        // Anything else stays a computation error.
        let other = write_error(path)(PolarsError::ComputeError("x".into()));
        assert!(matches!(other, Error::Polars(_)), "{other:?}");
    }
}
