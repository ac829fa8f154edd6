//! Staging: each input file read once, every row checked, valid rows
//! written as a typed candidate and the rest kept as rejects text.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::{Format, InputFile, StoreCompression};
use crate::error::Result;
use crate::ingest::checks::{
    checks_for, has_reason, parse_customers, parse_interactions, parse_transactions,
};
use crate::ingest::parse::{clean_str, parse_date_text};
use crate::ingest::read::{file_info, numeric_columns, resolve_columns, select_canonical};
use crate::ingest::{InputFileInfo, TableReport};
use crate::io::{self, LINE, Run};

/// One staged input file: its work rows and its typed candidate.
pub(super) struct Staged {
    /// Every row's bookkeeping (line, check code, the raw text of rejected
    /// values, txn_id and ts for the duplicate and as-of checks): the work
    /// file, or with `keep_line` the work file's rejected and noted rows
    /// beside the candidate's ([`work_rows`]).
    pub(super) work: LazyFrame,
    /// The file's valid rows with the typed columns, in file order: the
    /// typed Parquet itself unless rows must still be dropped.
    pub(super) candidate: PathBuf,
    pub(super) file: String,
    /// The work file's rows: with `keep_line`, the rejected and noted
    /// (none: the file's every row is a plain valid one).
    pub(super) apart: usize,
    /// The candidate's txn_id hashes, when staging took them (see
    /// [`StagedStats::hashes`]).
    pub(super) hashes: Option<Vec<u64>>,
}

/// How [`stage_table`] writes a file's typed candidate and work file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Typed {
    /// Each row's line kept in the candidate (see [`stage_table`]).
    pub keep_line: bool,
    /// Both files' compression (`store.compression`: the candidate becomes
    /// a store file).
    pub compression: StoreCompression,
    /// The candidate's txn_id hashes are taken as it is written, for the
    /// duplicate check ([`StagedStats::hashes`]); only for files of at
    /// most [`HASHED_BYTES`].
    pub hash_ids: bool,
}

/// The largest file whose txn_id hashes are taken while staging: about
/// 1.8·10^7 rows of the benches' ~58-byte lines, 150 MB of hashes. A
/// larger file's ids are read back after staging, as they always were
/// (a 10^8-row file's hashes held through staging would add ~0.8 GB to
/// its peak).
const HASHED_BYTES: u64 = 1 << 30;

/// Checks every file of a table in one streamed pass per file, never
/// holding a file in memory: the valid rows go straight to a typed
/// candidate (compressed as the store keeps it) and every row's
/// bookkeeping to a work file. The fast paths (numbers parsed by the CSV reader, date
/// formats narrowed to a sample) are verified by the same pass, which is
/// run again without them should they have missed anything.
/// With `to.keep_line` the typed candidate keeps each row's line (the store
/// lists rows after a later run's as-of date by file and line), and the
/// work file holds only the rows the candidate cannot stand for.
/// Small files are staged two at a time ([`crate::pool::two_lanes`]).
pub(super) fn stage_table(
    table: &'static str,
    input: &InputFile,
    unknown: &str,
    work: &Path,
    report: &mut TableReport,
    files: Vec<PathBuf>,
    to: Typed,
) -> Result<Vec<Staged>> {
    let one = |i: usize| stage_file(table, input, unknown, work, i, &files[i], to);
    let sizes = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()));
    let done = crate::pool::two_lanes(files.len(), small_files(sizes), one);
    // In file order: the first error (in file order, as one lane would
    // meet it) is the one reported.
    let mut out = Vec::new();
    for (i, r) in done.into_iter().enumerate() {
        // A slot left empty follows an error, returned first.
        let done = r.expect("an earlier file failed")?;
        report.rows_read += done.info.rows;
        report.files.push(done.info);
        out.push(Staged {
            // With its lines kept, a transactions file's valid rows are
            // read back from the candidate for the duplicate and as-of
            // checks; other tables have none, so their work file's rows
            // (the rejected) are all the bookkeeping they need.
            work: if to.keep_line && table == "transactions" {
                work_rows(&done.staged, &done.candidate, done.apart > 0)?
            } else {
                io::scan_parquet(&done.staged)?
            },
            candidate: done.candidate,
            file: files[i].to_string_lossy().into_owned(),
            apart: done.apart,
            hashes: done.hashes,
        });
    }
    Ok(out)
}

/// Whether `files` average at most a window's bytes: each is then parsed,
/// checked and written in turn on what is in effect one core, and two at a
/// time use both. Larger files each keep both cores busy: the bench's 10^7
/// rows as 4 files took 11.99 and 12.15 s two at a time against 11.93 and
/// 11.86 s one at a time, with ~1 s more CPU and ~100 MB more memory.
pub(super) fn small_files(bytes: impl Iterator<Item = u64>) -> bool {
    let (mut sum, mut n) = (0u64, 0u64);
    for b in bytes {
        sum += b;
        n += 1;
    }
    sum <= n * io::WINDOW_BYTES as u64
}

/// One file staged by [`stage_file`].
struct Done {
    /// The work file.
    staged: PathBuf,
    candidate: PathBuf,
    /// The work file's rows.
    apart: usize,
    /// What the manifest records of the file.
    info: InputFileInfo,
    hashes: Option<Vec<u64>>,
}

/// Stages file `i` of [`stage_table`].
fn stage_file(
    table: &'static str,
    input: &InputFile,
    unknown: &str,
    work: &Path,
    i: usize,
    file: &Path,
    to: Typed,
) -> Result<Done> {
    let t = std::time::Instant::now();
    let to = Typed {
        hash_ids: to.hash_ids && std::fs::metadata(file).is_ok_and(|m| m.len() <= HASHED_BYTES),
        ..to
    };
    let staged = work.join(format!("{table}-{i}.parquet"));
    let candidate = work.join(format!("{table}-{i}-typed.parquet"));
    let mut numeric = numeric_columns(table, file, input)?;
    let mut narrow = true;
    // Taken by the windows' look for quotes (else hashed after staging).
    let mut hashed = None;
    let st = loop {
        let mut checks = Checks::for_file(table, file, input, unknown, &numeric, false)?;
        // Read in windows: a CSV file cut where the file allows it
        // (io::CsvWindows), a Parquet file in whole row groups where
        // they are small enough.
        let windows = match io::format_of(file, input) {
            Format::Parquet => Windows::parquet(file, &checks.raw)?,
            _ => io::CsvWindows::open(file, input, &checks.header, &checks.read, &numeric)?
                .map(|w| Windows::Csv(Box::new(w))),
        };
        if let Some(Windows::Csv(w)) = &windows {
            hashed = Some(w.content_hash().to_string());
        }
        if narrow {
            checks.narrow(match &windows {
                Some(Windows::Csv(w)) => Some(&**w),
                _ => None,
            })?;
        }
        let narrowed = checks.narrowed();
        let plan = checks.over_file()?;
        let pass = || match &windows {
            Some(w) => stage_windows(table, w, &checks, &staged, &candidate, to, w.size()),
            None => stage_pass(table, plan, &staged, &candidate, to),
        };
        let st = if !numeric.is_empty() {
            // polars' CSV number parser can panic on a malformed quoted
            // field (found by tests/fuzz.rs): then read the numbers as
            // text, where such a row is rejected or the file refused.
            match io::catch_panic(pass) {
                Ok(Ok(st)) => st,
                // Read in windows, a number that does not parse fails
                // the pass: read the numbers as text then, as when
                // they come back null (any other error recurs there).
                Ok(Err(_)) if windows.is_some() => {
                    numeric.clear();
                    continue;
                }
                Ok(Err(e)) => return Err(io::read_error(file, &e)),
                Err(what) => {
                    tracing::info!(file = %file.display(), error = %what, "the fast number parse failed; reading numbers as text");
                    numeric.clear();
                    continue;
                }
            }
        } else {
            io::guarded(file, pass)?
        };
        if !numeric.is_empty() && st.numbers_missing {
            numeric.clear();
        } else if narrowed && st.dates_unparsed {
            narrow = false;
        } else {
            break st;
        }
    };
    tracing::debug!(file = %file.display(), ms = t.elapsed().as_millis() as u64, "read, checked and staged");
    Ok(Done {
        staged,
        candidate,
        apart: st.apart,
        info: file_info(file, st.rows, hashed)?,
        hashes: st.hashes,
    })
}

/// The raw text of optional values, kept for a valid row only when its
/// value did not parse (see [`crate::ingest::checks::only_where_needed`]).
pub(super) const OPTIONAL_TEXT: [&str; 2] = ["__margin", "__quantity"];

/// Every row's bookkeeping, as the full work file would hold it, from a
/// work file of the rejected and noted rows and the typed candidate (with
/// its lines): the candidate's rows in file order, then the rejected. The
/// valid rows are read from the candidate rather than written twice: at
/// 10^7 rows writing them to the work file cost ~0.6 s of staging.
fn work_rows(staged: &Path, candidate: &Path, apart: bool) -> Result<LazyFrame> {
    let slim = io::scan_parquet(staged)?;
    let schema = slim.clone().collect_schema()?;
    let noted: Vec<&str> = OPTIONAL_TEXT
        .into_iter()
        .filter(|c| schema.contains(c))
        .collect();
    let mut valid = io::scan_parquet(candidate)?.select([col("txn_id"), col("ts"), col(LINE)]);
    // `apart`: the work file holds any row at all (none: no note to read).
    if apart && !noted.is_empty() {
        let mut cols = vec![col(LINE)];
        cols.extend(noted.iter().map(|c| col(*c)));
        // A file's notes are few: the in-memory engine.
        let notes = slim
            .clone()
            .filter(col("__code").eq(lit(0i32)))
            .select(cols)
            .run_whole()?;
        if notes.height() > 0 {
            let mut args = JoinArgs::new(JoinType::Left);
            args.maintain_order = MaintainOrderJoin::Left;
            valid = valid.join(notes.lazy(), [col(LINE)], [col(LINE)], args);
        }
    }
    let have = valid.collect_schema()?;
    let columns: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| match name.as_str() {
            "__code" => lit(0i32).alias("__code"),
            n if have.contains(n) => col(name.clone()),
            _ => lit(NULL).cast(dtype.clone()).alias(name.clone()),
        })
        .collect();
    if !apart {
        return Ok(valid.select(columns));
    }
    Ok(concat(
        [
            valid.select(columns),
            slim.filter(col("__code").neq(lit(0i32))),
        ],
        UnionArgs::default(),
    )?)
}

#[derive(Default)]
pub(super) struct StagedStats {
    rows: usize,
    /// Rows written to the work file.
    apart: usize,
    /// A number column the CSV reader parsed has a null.
    numbers_missing: bool,
    /// A row was rejected for an unparseable date.
    dates_unparsed: bool,
    /// The typed candidate's txn_id hashes ([`super::rejects::id_hashes`]),
    /// in no particular order, taken as each window was checked: the
    /// duplicate check then reads no txn_id back (at 10^7 rows it took
    /// 0.35–0.5 s after staging with them, 0.2–0.3 s without). `None` when
    /// staged in one query, for a file over [`HASHED_BYTES`], or past
    /// [`HELD_HASHES`] in a file.
    hashes: Option<Vec<u64>>,
}

/// At most this many txn_id hashes (256 MiB) are kept while staging a
/// file (a file of short lines under [`HASHED_BYTES`] may reach it); past
/// it the duplicate check reads the ids back from the candidates.
const HELD_HASHES: usize = 1 << 25;

impl StagedStats {
    /// The stats from the one-row frame of [`Outputs::stats`].
    fn from_frame(st: &DataFrame) -> PolarsResult<StagedStats> {
        let flag =
            |c: &str| -> PolarsResult<bool> { Ok(st.column(c)?.bool()?.get(0).unwrap_or(false)) };
        Ok(StagedStats {
            rows: st.column("rows")?.u64()?.get(0).unwrap_or(0) as usize,
            apart: st.column("apart")?.u64()?.get(0).unwrap_or(0) as usize,
            numbers_missing: flag("missing")?,
            dates_unparsed: flag("dates")?,
            hashes: None,
        })
    }

    /// No rows yet, with the hashes taken when `out` says so.
    fn none(out: &Outputs) -> StagedStats {
        StagedStats {
            hashes: out.hash_ids.then(Vec::new),
            ..Default::default()
        }
    }

    /// These stats and those of the rows after them.
    fn and(self, next: StagedStats) -> StagedStats {
        StagedStats {
            rows: self.rows + next.rows,
            apart: self.apart + next.apart,
            numbers_missing: self.numbers_missing || next.numbers_missing,
            dates_unparsed: self.dates_unparsed || next.dates_unparsed,
            hashes: match (self.hashes, next.hashes) {
                (Some(mut a), Some(b)) if a.len() + b.len() <= HELD_HASHES => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            },
        }
    }
}

/// What a staging pass makes of checked rows: the work file's rows and
/// columns, the typed candidate's, and the stats that decide a re-read.
struct Outputs {
    work_rows: Expr,
    work: Vec<Expr>,
    typed: Vec<Expr>,
    stats: Vec<Expr>,
    /// The typed rows' txn_id hashes are taken (a store's transactions).
    hash_ids: bool,
}

impl Outputs {
    /// The outputs of `table`'s checked rows of `schema`.
    fn new(table: &str, schema: &Schema, to: Typed) -> Outputs {
        let keep_line = to.keep_line;
        let rejected = col("__code").neq(lit(0i32));
        // Bookkeeping columns start with "__"; the typed columns are the rest.
        let mut work = Vec::new();
        let mut typed = Vec::new();
        for name in schema.iter_names() {
            match name.as_str() {
                "txn_id" | "ts" => work.push(col(name.clone())),
                // Only a rejected row's customer_id is ever reported.
                "customer_id" => work.push(
                    when(rejected.clone())
                        .then(col(name.clone()))
                        .otherwise(lit(NULL))
                        .alias(name.clone()),
                ),
                n if n.starts_with("__") => work.push(col(name.clone())),
                _ => {}
            }
            if !name.starts_with("__") || (keep_line && name.as_str() == LINE) {
                typed.push(col(name.clone()));
            }
        }
        let mut missing = lit(false);
        for c in ["amount_cents", "margin_cents", "quantity"] {
            if schema.contains(c) {
                missing = missing.or(col(c).null_count().gt(lit(0)));
            }
        }
        let ts_code = checks_for(table)
            .iter()
            .position(|c| c.0 == "unparseable ts")
            .map_or(-1, |i| i as i32 + 1);
        // With the typed candidate keeping each row's line, the work file
        // holds only the rows the candidate cannot stand for: the rejected
        // and those with an optional value that did not parse ([`work_rows`]).
        let mut work_rows = lit(true);
        if keep_line {
            work_rows = rejected;
            for c in OPTIONAL_TEXT {
                if schema.contains(c) {
                    work_rows = work_rows.or(col(c).is_not_null());
                }
            }
        }
        let stats = vec![
            len().cast(DataType::UInt64).alias("rows"),
            if keep_line {
                work_rows.clone().sum().cast(DataType::UInt64)
            } else {
                len().cast(DataType::UInt64)
            }
            .alias("apart"),
            missing.alias("missing"),
            col("__code").eq(lit(ts_code)).any(true).alias("dates"),
        ];
        Outputs {
            work_rows,
            work,
            typed,
            stats,
            hash_ids: to.hash_ids && table == "transactions" && schema.contains("txn_id"),
        }
    }

    fn work(&self, checked: LazyFrame) -> LazyFrame {
        checked
            .filter(self.work_rows.clone())
            .select(self.work.clone())
    }

    fn typed(&self, checked: LazyFrame) -> LazyFrame {
        checked
            .filter(col("__code").eq(lit(0i32)))
            .select(self.typed.clone())
    }
}

/// The pass of [`stage_table`] over one file's checked rows (`plan`):
/// writes `staged` and `candidate`, returns what decides a re-read.
pub(super) fn stage_pass(
    table: &str,
    mut plan: LazyFrame,
    staged: &Path,
    candidate: &Path,
    to: Typed,
) -> PolarsResult<StagedStats> {
    let out = Outputs::new(table, &*plan.collect_schema()?, to);
    let stats = plan.clone().select(out.stats.clone());
    let frames = io::sink_and_collect(
        vec![
            (out.work(plan.clone()), staged),
            (out.typed(plan), candidate),
        ],
        vec![stats],
        to.compression,
    )?;
    StagedStats::from_frame(&frames[0])
}

/// A file read window by window for [`stage_windows`].
enum Windows {
    /// Cut at newlines, windows of bytes.
    Csv(Box<io::CsvWindows>),
    /// Slices of whole row groups (`groups`: their rows) of the file as
    /// [`io::read_raw`] reads it. One polars query over the whole file
    /// wrote the typed candidate with polars' Parquet sink (dictionary
    /// attempts on every text column) and staged 10^7 typed rows no faster
    /// than their CSV (3.4 s).
    Parquet {
        raw: Box<LazyFrame>,
        groups: Vec<usize>,
    },
}

/// Rows per window of a Parquet input: about a CSV window's.
const PARQUET_WINDOW_ROWS: usize = 1 << 18;

/// The largest row group read in windows: a slice reads its row groups
/// whole, so a file of larger ones is left to one streamed query (10^7
/// rows in one group took 9.2 s in windows against 3.6 s).
const PARQUET_GROUP_ROWS: usize = 1 << 21;

impl Windows {
    /// A Parquet file's windows; `None` when its row groups are too large.
    fn parquet(file: &Path, raw: &LazyFrame) -> Result<Option<Windows>> {
        let mut f = std::fs::File::open(file).map_err(crate::error::Error::io(file))?;
        let meta =
            polars_parquet::read::read_metadata(&mut f).map_err(|e| io::read_error(file, &e))?;
        let groups: Vec<usize> = meta.row_groups.iter().map(|g| g.num_rows()).collect();
        Ok(
            (groups.iter().all(|&n| n <= PARQUET_GROUP_ROWS)).then(|| Windows::Parquet {
                raw: Box::new(raw.clone()),
                groups,
            }),
        )
    }

    /// The window size [`Windows::cut`] is given: bytes for CSV, rows for
    /// Parquet (whole row groups).
    fn size(&self) -> usize {
        match self {
            Windows::Csv(_) => io::WINDOW_BYTES,
            Windows::Parquet { .. } => PARQUET_WINDOW_ROWS,
        }
    }

    fn cut(&self, size: usize) -> Vec<std::ops::Range<usize>> {
        match self {
            Windows::Csv(w) => w.windows(size),
            // Whole row groups, at least `size` rows a window but the last.
            Windows::Parquet { groups, .. } => {
                let (mut out, mut start, mut end) = (Vec::new(), 0, 0);
                for &n in groups {
                    end += n;
                    if end - start >= size {
                        out.push(start..end);
                        start = end;
                    }
                }
                if end > start {
                    out.push(start..end);
                }
                out
            }
        }
    }

    /// One window's rows, the first of them the file's `first` (0-based).
    fn parse(&self, range: std::ops::Range<usize>, first: u64) -> PolarsResult<io::Window> {
        match self {
            Windows::Csv(w) => w.parse(range, first),
            // read_raw numbers the rows of the whole file: a slice keeps
            // their lines.
            Windows::Parquet { raw, .. } => Ok(io::Window {
                rows: raw
                    .as_ref()
                    .clone()
                    .slice(range.start as i64, range.len() as IdxSize)
                    .run_whole()?,
                trimmed: Vec::new(),
            }),
        }
    }

    fn empty(&self) -> PolarsResult<DataFrame> {
        match self {
            Windows::Csv(w) => w.empty(),
            Windows::Parquet { raw, .. } => raw.as_ref().clone().limit(0).run_whole(),
        }
    }
}

/// [`stage_pass`] over a file read in windows ([`Windows`]): each
/// window parsed and checked on its own, its rows appended to the same two
/// files, in file order. Three threads in a pipeline, so that parsing the
/// next window, checking this one and writing the one before overlap.
fn stage_windows(
    table: &str,
    windows: &Windows,
    checks: &Checks,
    staged: &Path,
    candidate: &Path,
    to: Typed,
    window: usize,
) -> PolarsResult<StagedStats> {
    use std::sync::mpsc::sync_channel;
    let mut shape = checks
        .over(windows.empty()?.lazy(), &[])
        .map_err(to_polars)?;
    let out = Outputs::new(table, &*shape.collect_schema()?, to);
    let work_schema = out.work(shape.clone()).collect_schema()?;
    let mut work = io::ParquetOut::create(staged, &work_schema, to.compression)?;
    let typed_schema = out.typed(shape).collect_schema()?;
    let mut typed = io::ParquetOut::create(candidate, &typed_schema, to.compression)?;
    let cuts = windows.cut(window);
    if cuts.len() <= 1 {
        // One window (a drop folder's daily file): parsed, checked and
        // written in turn on this thread. Two threads of its own and the
        // hand-offs between them cost a small file more than they overlap.
        let mut stats = StagedStats::none(&out);
        if let Some(range) = cuts.into_iter().next() {
            let (st, (w, t)) = check_window(windows.parse(range, 0)?, checks, &out)?;
            stats = st;
            work.push(w)?;
            typed.push(t)?;
        }
        work.finish()?;
        typed.finish()?;
        return Ok(stats);
    }
    let (raw_tx, raw_rx) = sync_channel::<PolarsResult<io::Window>>(1);
    let (out_tx, out_rx) = sync_channel::<(DataFrame, DataFrame)>(1);
    std::thread::scope(|scope| {
        let parser = scope.spawn(move || {
            let mut first = 0u64;
            for range in cuts {
                let raw = windows.parse(range, first);
                let failed = match &raw {
                    Ok(w) => {
                        first += w.rows.height() as u64;
                        false
                    }
                    Err(_) => true,
                };
                if raw_tx.send(raw).is_err() || failed {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> PolarsResult<()> {
            for (w, t) in out_rx {
                work.push(w)?;
                typed.push(t)?;
            }
            work.finish()?;
            typed.finish()
        });
        // Returning drops this end of both channels, which stops the others.
        let checked = check_windows(raw_rx, out_tx, checks, &out);
        // A panic (polars' number parser on a malformed field) goes on to
        // the caller, which then reads the numbers as text.
        if let Err(panic) = parser.join() {
            std::panic::resume_unwind(panic);
        }
        let written = match writer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let stats = checked?;
        written?;
        Ok(stats)
    })
}

/// The checking stage of [`stage_windows`]: each window parsed in `raw`
/// checked, its work and typed rows sent to `rows`.
fn check_windows(
    raw: std::sync::mpsc::Receiver<PolarsResult<io::Window>>,
    rows: std::sync::mpsc::SyncSender<(DataFrame, DataFrame)>,
    checks: &Checks,
    out: &Outputs,
) -> PolarsResult<StagedStats> {
    let mut stats = StagedStats::none(out);
    for window in raw {
        let (st, frames) = check_window(window?, checks, out)?;
        stats = stats.and(st);
        if rows.send(frames).is_err() {
            // The writer stopped: its error is the one reported.
            break;
        }
    }
    Ok(stats)
}

/// One window checked: its counts, and its work and typed rows.
fn check_window(
    window: io::Window,
    checks: &Checks,
    out: &Outputs,
) -> PolarsResult<(StagedStats, (DataFrame, DataFrame))> {
    let checked = checks
        .over(window.rows.lazy(), &window.trimmed)
        .map_err(to_polars)?
        .run_whole()?
        .lazy();
    let st = checked.clone().select(out.stats.clone()).run_whole()?;
    let frames = (
        out.work(checked.clone()).run_whole()?,
        out.typed(checked).run_whole()?,
    );
    let mut st = StagedStats::from_frame(&st)?;
    if out.hash_ids {
        st.hashes = Some(super::rejects::id_hashes(frames.1.column("txn_id")?.str()?));
    }
    Ok((st, frames))
}

/// One of our errors inside a polars query's result.
fn to_polars(e: crate::error::Error) -> PolarsError {
    polars_err!(ComputeError: "{e}")
}

/// A valid transaction's row number in its file's typed candidate.
pub(super) const POS: &str = "__pos";

/// Reads one file and checks every row (see [`load_table`]).
pub(super) fn check_file(
    table: &'static str,
    file: &Path,
    input: &InputFile,
    unknown: &str,
    numeric: &[String],
) -> Result<DataFrame> {
    let t = std::time::Instant::now();
    let (plan, narrowed) = check_plan(table, file, input, unknown, numeric, true)?;
    let mut df = io::collect_file(plan, file)?;
    if narrowed && has_reason(table, &df, "unparseable ts")? {
        let (all, _) = check_plan(table, file, input, unknown, numeric, false)?;
        df = io::collect_file(all, file)?;
    }
    tracing::debug!(file = %file.display(), ms = t.elapsed().as_millis() as u64, fast = !numeric.is_empty(), "read and checked");
    Ok(df)
}

/// The query that reads one file and checks every row: the parsed columns
/// plus `__code` (0 = valid) and the raw text of checked values. With
/// `narrow`, date formats are narrowed to those that fit a sample of the
/// file; the flag returned says whether that left any format out.
pub(super) fn check_plan(
    table: &'static str,
    file: &Path,
    input: &InputFile,
    unknown: &str,
    numeric: &[String],
    narrow: bool,
) -> Result<(LazyFrame, bool)> {
    let checks = Checks::for_file(table, file, input, unknown, numeric, narrow)?;
    Ok((checks.over_file()?, checks.narrowed()))
}

/// How one file's rows are checked: its table's parse and checks, with the
/// date formats decided for the file, over any frame of its raw rows.
pub(super) struct Checks<'a> {
    table: &'static str,
    file: &'a Path,
    input: &'a InputFile,
    unknown: &'a str,
    formats: Vec<String>,
    /// `formats` narrowed from a sample of every row (see [`Checks::narrow`]).
    exact: bool,
    /// The file as [`io::read_raw`] reads it (read once: a GBK file is
    /// decoded whole).
    raw: LazyFrame,
    /// The header's column names (the raw frame's, but for [`LINE`]).
    header: Vec<String>,
    /// Those of them the checks read.
    read: Vec<String>,
}

impl<'a> Checks<'a> {
    /// The checks of `file` (see [`check_plan`]).
    fn for_file(
        table: &'static str,
        file: &'a Path,
        input: &'a InputFile,
        unknown: &'a str,
        numeric: &[String],
        narrow: bool,
    ) -> Result<Checks<'a>> {
        let mut raw = io::read_raw(file, input, numeric)?;
        let header: Vec<String> = raw
            .collect_schema()
            .map_err(|e| io::read_error(file, &e))?
            .iter_names()
            .filter(|n| n.as_str() != LINE)
            .map(|n| n.to_string())
            .collect();
        let read = resolve_columns(&header, file, table, input)?
            .into_iter()
            .map(|(_, actual)| actual)
            .collect();
        let mut checks = Checks {
            table,
            file,
            input,
            unknown,
            formats: input.date_formats.clone(),
            exact: false,
            raw,
            header,
            read,
        };
        if narrow {
            checks.narrow(None)?;
        }
        Ok(checks)
    }

    /// The date formats narrowed to those that fit a sample of the file's
    /// head ([`sample_formats`]): from `windows` when the file is read in
    /// them (the head parsed in memory, ~1 ms where a scan of it took ~10
    /// ms a file: a drop folder of 1,094 daily files spent 6.8 s sampling).
    fn narrow(&mut self, windows: Option<&io::CsvWindows>) -> Result<()> {
        if self.table == "customers" {
            return Ok(());
        }
        let (lf, _, schema, _) =
            select_canonical(self.raw.clone(), self.file, self.table, self.input, &[])?;
        if schema.get("ts") != Some(&DataType::String) {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let all = &self.input.date_formats;
        // A file the sample would read whole parses the same with every
        // format: a format that fits none of its dates changes no row.
        // Sampling it would read it twice (small files: an interactions log
        // of a file a day).
        let sample = match windows {
            // A head that does not parse (a number, with `numeric`) is left
            // to the pass, which then reads the numbers as text.
            Some(w) => match io::catch_panic(|| w.head(SAMPLE_ROWS)) {
                Ok(Ok(Some(head))) => {
                    let rows = match head {
                        io::Head::Part(df) => df,
                        // A file of one window was parsed whole for its
                        // pass; the sample reads its head (the query's
                        // limit). A file no longer than that is sampled
                        // whole: the narrowing is then exact (a format left
                        // out parses none of its dates, so it changes no
                        // row) and costs no second read, where otherwise
                        // such a file tried every format on every date (a
                        // drop folder's daily files: most of them).
                        io::Head::Whole(df) => {
                            self.exact = df.height() <= SAMPLE_ROWS;
                            df
                        }
                    };
                    let (lf, _, _, _) =
                        select_canonical(rows.lazy(), self.file, self.table, self.input, &[])?;
                    Sample::Whole(lf)
                }
                _ => return Ok(()),
            },
            None if io::csv_rows_at_most(self.file, self.input, SAMPLE_ROWS) => return Ok(()),
            None => Sample::Scan(lf),
        };
        self.formats = sample_formats(sample, all, self.file)?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "date formats sampled");
        Ok(())
    }

    /// Whether the date formats were narrowed to a sample's, and a row
    /// outside it might need one left out.
    fn narrowed(&self) -> bool {
        !self.exact && self.formats.len() < self.input.date_formats.len()
    }

    /// The checked rows of the whole file.
    fn over_file(&self) -> Result<LazyFrame> {
        self.over(self.raw.clone(), &[])
    }

    /// The checked rows of `raw`, a frame of the file's rows as
    /// [`io::read_raw`] reads them, of which the text columns `trimmed`
    /// are known to need no trimming ([`io::Window::trimmed`]).
    fn over(&self, raw: LazyFrame, trimmed: &[PlSmallStr]) -> Result<LazyFrame> {
        let (lf, present, schema, clean) =
            select_canonical(raw, self.file, self.table, self.input, trimmed)?;
        let (input, formats) = (self.input, &self.formats);
        Ok(match self.table {
            "transactions" => parse_transactions(lf, &schema, &present, input, formats, &clean),
            "customers" => parse_customers(lf, &schema, &present, input, self.unknown),
            _ => parse_interactions(lf, &schema, &present, input, formats, &clean),
        })
    }
}

/// The rows [`sample_formats`] counts dates in.
pub(super) enum Sample {
    /// A scan of the file (the limit reads only its head).
    Scan(LazyFrame),
    /// The head, already in memory.
    Whole(LazyFrame),
}

/// The rows [`sample_formats`] reads from a file's head.
const SAMPLE_ROWS: usize = 5000;

/// The formats (in configured order) that parse some non-empty `ts` among
/// the first [`SAMPLE_ROWS`] rows that no format before them parses; all
/// of them when none does. The checks parse a date with the first format
/// that fits it, so a format left out changes none of the sample's dates.
///
/// One query: a query per format cost ~1 ms each in polars' set-up, about
/// half of checking a small file (an interactions log of a file a day).
/// Each format is tried only on the dates the ones before it left
/// unparsed: a format that fits no date falls back to chrono's parser,
/// which reads the format again for every value, so a head of 5,000
/// times of day cost 5 formats' fallbacks where the first two formats now
/// see them (a drop folder of daily files with times: ~7 s of sampling).
pub(super) fn sample_formats(
    sample: Sample,
    formats: &[String],
    file: &Path,
) -> Result<Vec<String>> {
    let parsed = |i: usize| format!("f{i}");
    let left = |i: usize| format!("__left{i}");
    let query = |lf: LazyFrame| {
        // The limit comes first so that only the file's head is read.
        // Each distinct date once: a format fits some date or none.
        let mut lf = lf
            .limit(SAMPLE_ROWS as IdxSize)
            .select([clean_str("ts").alias(left(0))])
            .filter(col(left(0)).is_not_null())
            .unique_stable(None, UniqueKeepStrategy::Any);
        for (i, f) in formats.iter().enumerate() {
            let date = parse_date_text(col(left(i)), &DataType::String, std::slice::from_ref(f));
            lf = lf.with_column(date.alias(parsed(i))).with_column(
                when(col(parsed(i)).is_null())
                    .then(col(left(i)))
                    .otherwise(lit(NULL).cast(DataType::String))
                    .alias(left(i + 1)),
            );
        }
        let mut counts = vec![col(left(0)).count().alias("n")];
        counts.extend((0..formats.len()).map(|i| col(parsed(i)).count()));
        lf.select(counts)
    };
    let hits = match sample {
        Sample::Scan(lf) => io::collect_file(query(lf), file)?,
        Sample::Whole(lf) => io::guarded(file, || query(lf).run_whole())?,
    };
    let count = |name: &str| -> Result<u64> {
        Ok(hits
            .column(name)?
            .cast(&DataType::UInt64)?
            .u64()?
            .get(0)
            .unwrap_or(0))
    };
    if count("n")? == 0 {
        return Ok(formats.to_vec());
    }
    let mut keep = Vec::new();
    for (i, f) in formats.iter().enumerate() {
        if count(&format!("f{i}"))? > 0 {
            keep.push(f.clone());
        }
    }
    Ok(if keep.is_empty() {
        formats.to_vec()
    } else {
        keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formats kept are those that parse some sampled date no format
    /// before them parses, in the configured order; all of them when none
    /// parses any (one query for every format, checked against dates read
    /// by eye).
    #[test]
    fn the_sample_keeps_the_formats_that_parse_some_date() {
        let formats = crate::config::default_date_formats();
        let sample = |ts: &[Option<&str>]| {
            let lf = df!("ts" => ts).unwrap().lazy();
            sample_formats(Sample::Scan(lf), &formats, Path::new("t.csv")).unwrap()
        };
        assert_eq!(
            sample(&[
                Some("2010/03/04"),
                None,
                Some("2010-01-02 10:00:00"),
                Some("x")
            ]),
            vec!["%Y-%m-%d %H:%M:%S".to_string(), "%Y/%m/%d".to_string()]
        );
        assert_eq!(sample(&[Some("2010-01-02")]), vec!["%Y-%m-%d".to_string()]);
        assert_eq!(sample(&[Some("x"), None]), formats);
        assert_eq!(sample(&[None, None]), formats);
        // "2010-01-02" fits both of these; the checks read it with the
        // first, so the second is kept only for a date only it fits.
        let (md, dm) = ("%Y-%m-%d".to_string(), "%Y-%d-%m".to_string());
        let overlapping = |ts: &[&str]| {
            let lf = df!("ts" => ts).unwrap().lazy();
            let both = [md.clone(), dm.clone()];
            sample_formats(Sample::Whole(lf), &both, Path::new("t.csv")).unwrap()
        };
        assert_eq!(overlapping(&["2010-01-02"]), vec![md.clone()]);
        assert_eq!(
            overlapping(&["2010-01-02", "2010-31-01"]),
            vec![md.clone(), dm.clone()]
        );
        assert_eq!(overlapping(&["2010-31-01"]), vec![dm]);
    }

    /// A CSV file holds at most N rows when it has at most N newlines; a
    /// larger count, a compressed file or Parquet are not vouched for.
    #[test]
    fn a_file_is_vouched_small_by_its_newlines() {
        let dir = std::env::temp_dir().join(format!("tiering-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = InputFile::default();
        let put = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let three = put("three.csv", b"a,b\n1,2\n3,4\n5,6\n");
        assert!(io::csv_rows_at_most(&three, &input, 4));
        // The header's newline counts: 4 newlines are not vouched as 3 rows.
        assert!(!io::csv_rows_at_most(&three, &input, 3));
        let unended = put("unended.csv", b"a,b\n1,2\n3,4");
        assert!(io::csv_rows_at_most(&unended, &input, 2));
        let gz = put("z.csv", &[0x1f, 0x8b, 8, 0, b'\n']);
        assert!(!io::csv_rows_at_most(&gz, &input, 100));
        let pq = put("t.parquet", b"a,b\n");
        assert!(!io::csv_rows_at_most(&pq, &input, 100));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The formats are narrowed from the head of a file read in windows:
    /// to those its first SAMPLE_ROWS dates fit, and a pass that meets a
    /// date they do not parse reads the file again with every format. A
    /// file no longer than that (one window) is narrowed from all its
    /// dates, exactly: no second pass. Not narrowed when a number of the
    /// head does not parse (the pass reads the numbers as text then).
    #[test]
    fn the_head_read_in_windows_narrows_the_date_formats() {
        let dir = std::env::temp_dir().join(format!("tiering-narrow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.csv");
        // The input as a pipeline file gives it: its documented defaults.
        let input: InputFile = toml::from_str("path = 't.csv'").unwrap();
        let formats = |rows: usize, amount: &str, numeric: &[String]| {
            let mut text = String::from("txn_id,customer_id,ts,amount\n");
            for i in 0..rows {
                text.push_str(&format!("T{i},C1,2010-01-02,{amount}\n"));
            }
            text.push_str("T-last,C1,2010/01/03 10:00:00,1\n");
            std::fs::write(&file, text).unwrap();
            let mut checks =
                Checks::for_file("transactions", &file, &input, "unknown", numeric, false).unwrap();
            let w = io::CsvWindows::open(&file, &input, &checks.header, &checks.read, numeric)
                .unwrap()
                .unwrap();
            checks.narrow(Some(&w)).unwrap();
            (checks.formats.clone(), checks.narrowed())
        };
        let all = input.date_formats.clone();
        let first = vec!["%Y-%m-%d".to_string()];
        assert_eq!(formats(SAMPLE_ROWS, "1", &[]), (first.clone(), true));
        // The sample is the whole file: the last row's format too, and
        // nothing left to verify.
        let both = vec!["%Y-%m-%d".to_string(), "%Y/%m/%d %H:%M:%S".to_string()];
        assert_eq!(formats(SAMPLE_ROWS - 1, "1", &[]), (both, false));
        let numeric = vec!["amount".to_string()];
        assert_eq!(formats(SAMPLE_ROWS, "1", &numeric), (first, true));
        assert_eq!(formats(SAMPLE_ROWS, "n/a", &numeric), (all, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Files are small when they average at most a window's bytes.
    #[test]
    fn files_averaging_a_window_or_less_are_small() {
        let w = io::WINDOW_BYTES as u64;
        assert!(small_files([1, 2, 3].into_iter()));
        assert!(small_files([w, w].into_iter()));
        assert!(small_files([3 * w, 0, 0].into_iter()));
        assert!(!small_files([3 * w, 0].into_iter()));
        assert!(!small_files([w + 1].into_iter()));
    }

    /// Staging as the store does, lines kept or not.
    fn lines(keep_line: bool) -> Typed {
        Typed {
            keep_line,
            compression: StoreCompression::default(),
            hash_ids: keep_line,
        }
    }

    /// A checked file of four rows: line 3 rejected (its date), line 4
    /// valid but for its margin, lines 2 and 5 clean.
    fn checked() -> LazyFrame {
        df!(
            "customer_id" => ["C1", "C2", "C1", "C3"],
            "txn_id" => ["T1", "T2", "T3", "T4"],
            "ts" => [Some(14_610i32), None, Some(14_612), Some(14_613)],
            "amount_cents" => [100i64, 200, 300, 400],
            "margin_cents" => [Some(10i64), Some(20), None, Some(40)],
            LINE => [2 as IdxSize, 3, 4, 5],
            "__code" => [0i32, 3, 0, 0],
            "__ts" => [None, Some("2010-13-01"), None, None],
            "__margin" => [None, None, Some("n/a"), None],
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Date))
    }

    fn sorted_by_line(lf: LazyFrame) -> DataFrame {
        lf.sort([LINE], Default::default()).collect().unwrap()
    }

    #[test]
    fn the_work_rows_equal_the_full_work_file_from_the_rejected_and_noted_rows() {
        let dir = std::env::temp_dir().join(format!("tiering-stage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (full, slim) = (dir.join("full.parquet"), dir.join("slim.parquet"));
        let (typed_full, typed) = (dir.join("full-typed.parquet"), dir.join("typed.parquet"));
        stage_pass("transactions", checked(), &full, &typed_full, lines(false)).unwrap();
        let st = stage_pass("transactions", checked(), &slim, &typed, lines(true)).unwrap();
        assert_eq!((st.rows, st.apart), (4, 2));
        // Only the rejected line 3 and the noted line 4 are written twice.
        let written = io::scan_parquet(&slim).unwrap().collect().unwrap();
        let lines: Vec<_> = written
            .column(LINE)
            .unwrap()
            .idx()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(lines, vec![Some(3), Some(4)]);
        // Read back: the candidate's rows in file order, then the rejected.
        let rows = work_rows(&slim, &typed, true).unwrap().collect().unwrap();
        let lines: Vec<_> = rows.column(LINE).unwrap().idx().unwrap().iter().collect();
        assert_eq!(lines, vec![Some(2), Some(4), Some(5), Some(3)]);
        let margin: Vec<_> = rows
            .column("__margin")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(margin, vec![None, Some("n/a"), None, None]);
        // Column for column what the full work file holds.
        let want = sorted_by_line(io::scan_parquet(&full).unwrap());
        let got = sorted_by_line(rows.lazy())
            .select(want.get_column_names().into_iter().cloned())
            .unwrap();
        assert!(got.equals_missing(&want), "{got}\n{want}");
        // A file of plain valid rows only: nothing apart, its work rows read
        // from the candidate alone.
        let plain = || checked().filter(col(LINE).eq(lit(2)).or(col(LINE).eq(lit(5))));
        stage_pass(
            "transactions",
            plain(),
            &full,
            &typed_full,
            self::lines(false),
        )
        .unwrap();
        let st = stage_pass("transactions", plain(), &slim, &typed, self::lines(true)).unwrap();
        assert_eq!((st.rows, st.apart), (2, 0));
        let want = sorted_by_line(io::scan_parquet(&full).unwrap());
        let got = sorted_by_line(work_rows(&slim, &typed, false).unwrap())
            .select(want.get_column_names().into_iter().cloned())
            .unwrap();
        assert!(got.equals_missing(&want), "{got}\n{want}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A transaction file with every kind of row a reader must agree on:
    /// rejects, an unparseable optional number, CRLF and empty lines, a
    /// short row, and no newline after the last.
    fn awkward_file(rows: usize) -> String {
        let mut t = String::from("txn_id,customer_id,ts,amount,quantity,margin\n");
        for i in 0..rows {
            let line = match i % 97 {
                5 => format!("T{i},,2010-01-02,1.5,1,0.5\n"),
                11 => format!("T{i},C{i},2010-13-02,1.5,1,0.5\n"),
                17 => format!("T{i},C{i},2010-01-02,abc,1,0.5\n"),
                23 => format!("T{i},C{i},2010-01-02,2.25,1,n/a\r\n"),
                29 => "\n".to_string(),
                31 => format!("T{i},C{i},2010-01-02\n"),
                _ => format!(
                    "T{i},C{},2010-01-{:02},{}.{:02},{},0.1\n",
                    i % 13,
                    1 + i % 28,
                    i % 500,
                    i % 100,
                    i % 3
                ),
            };
            t.push_str(&line);
        }
        t.push_str("Tlast,C1,2010-02-03,9.99,1,1");
        t
    }

    /// A transactions file staged in windows of `window` into `(work,
    /// typed)`, lines kept as the store keeps them.
    fn in_windows(
        windows: &Windows,
        checks: &Checks,
        (work, typed): (&Path, &Path),
        window: usize,
    ) -> PolarsResult<StagedStats> {
        stage_windows(
            "transactions",
            windows,
            checks,
            work,
            typed,
            lines(true),
            window,
        )
    }

    #[test]
    fn a_parquet_file_staged_in_slices_matches_one_query_over_it() {
        let dir = std::env::temp_dir().join(format!("tiering-pq-windows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.parquet");
        let input: InputFile = toml::from_str("path = 't.parquet'").unwrap();
        let read = |p: &Path| io::scan_parquet(p).unwrap().collect().unwrap();
        // Typed columns, as an extract holds them: every 7th customer and
        // every 11th amount missing, every 13th date too.
        let n = 3_000usize;
        let every = |k: usize, i: usize| i % k != 3;
        let customer: Vec<Option<String>> = (0..n)
            .map(|i| every(7, i).then(|| format!(" C{} ", i % 40)))
            .collect();
        let txn: Vec<String> = (0..n).map(|i| format!("T{i}")).collect();
        let day: Vec<Option<i32>> = (0..n)
            .map(|i| every(13, i).then_some(14_000 + (i % 300) as i32))
            .collect();
        let amount: Vec<Option<f64>> = (0..n)
            .map(|i| every(11, i).then_some((i % 500) as f64 / 4.0))
            .collect();
        let mut df = df!(
            "txn_id" => txn,
            "customer_id" => customer,
            "ts" => day,
            "amount" => amount,
        )
        .unwrap();
        df.apply("ts", |c| c.cast(&DataType::Date).unwrap())
            .unwrap();
        // Row groups of 250 rows: windows of whole groups.
        let out = std::fs::File::create(&file).unwrap();
        ParquetWriter::new(out)
            .with_row_group_size(Some(250))
            .finish(&mut df)
            .unwrap();
        let (work, typed) = (dir.join("a.parquet"), dir.join("a-typed.parquet"));
        let checks = Checks::for_file("transactions", &file, &input, "unknown", &[], true).unwrap();
        let want = stage_pass(
            "transactions",
            checks.over_file().unwrap(),
            &work,
            &typed,
            lines(true),
        )
        .unwrap();
        let (want_work, want_typed) = (read(&work), read(&typed));
        let rejected = want_work
            .column("__code")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .filter(|c| *c != Some(0))
            .count();
        // Rows 3, 10, 17… lack a customer, 3, 14, 25… an amount, 3, 16…
        // a date: each rejected once.
        let expect = (0..n)
            .filter(|&i| !(every(7, i) && every(11, i) && every(13, i)))
            .count();
        assert_eq!(
            (want.rows, rejected, want_typed.height()),
            (n, expect, n - expect)
        );
        let windows = Windows::parquet(&file, &checks.raw).unwrap().unwrap();
        let cuts = |size: usize| {
            windows
                .cut(size)
                .iter()
                .map(|r| r.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(cuts(700), [750, 750, 750, 750]);
        assert_eq!(cuts(1_024), [1_250, 1_250, 500]);
        for window in [700, 1_024, n, 1 << 18] {
            let got = in_windows(&windows, &checks, (&work, &typed), window).unwrap();
            assert_eq!(
                (got.rows, got.numbers_missing, got.dates_unparsed),
                (want.rows, want.numbers_missing, want.dates_unparsed)
            );
            assert!(read(&work).equals_missing(&want_work), "window {window}");
            assert!(read(&typed).equals_missing(&want_typed), "window {window}");
            assert_eq!(got.hashes.map(sorted), Some(typed_hashes(&typed)));
        }
        // One query over the file takes no hashes: the check reads them.
        assert!(want.hashes.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    /// The txn_id hashes of a typed file's rows, sorted, hashed by xxh3
    /// here as the duplicate check hashes what it reads back.
    fn typed_hashes(typed: &Path) -> Vec<u64> {
        let df = io::scan_parquet(typed).unwrap().collect().unwrap();
        let ids = df.column("txn_id").unwrap().str().unwrap();
        assert_eq!(ids.null_count(), 0);
        sorted(
            ids.iter()
                .flatten()
                .map(|v| xxhash_rust::xxh3::xxh3_64(v.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn staging_in_windows_writes_what_polars_reader_staging_writes() {
        let dir = std::env::temp_dir().join(format!("tiering-windows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.csv");
        let input: InputFile = toml::from_str("path = 't.csv'").unwrap();
        let read = |p: &Path| io::scan_parquet(p).unwrap().collect().unwrap();
        let (work, typed) = (dir.join("a.parquet"), dir.join("a-typed.parquet"));
        let numbers: Vec<String> = ["amount", "margin", "quantity"].map(String::from).into();
        // (rows, whether every number parses); ~150 KB, parsed in several
        // pieces on the pool.
        for (rows, clean) in [(5_000, false), (3_000, true)] {
            let mut text = awkward_file(rows);
            if clean {
                text = text
                    .lines()
                    .filter(|l| l.matches(',').count() == 5)
                    .filter(|l| !["abc", "n/a", "-13-"].iter().any(|bad| l.contains(bad)))
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            std::fs::write(&file, &text).unwrap();
            for numeric in [Vec::new(), numbers.clone()] {
                let checks =
                    Checks::for_file("transactions", &file, &input, "unknown", &numeric, false)
                        .unwrap();
                let windows =
                    io::CsvWindows::open(&file, &input, &checks.header, &checks.read, &numeric)
                        .unwrap()
                        .expect("a file without quotes is read in windows");
                let windows = Windows::Csv(Box::new(windows));
                let plan = checks.over_file().unwrap();
                let want = stage_pass("transactions", plan, &work, &typed, lines(true)).unwrap();
                assert_eq!(want.rows, text.lines().count() - 1);
                assert_eq!(
                    (want.dates_unparsed, want.numbers_missing),
                    (!clean, !clean)
                );
                let (want_work, want_typed) = (read(&work), read(&typed));
                assert!(want_typed.height() > 2_000);
                for window in [700, 8_192, 1 << 20] {
                    let got = in_windows(&windows, &checks, (&work, &typed), window);
                    if !clean && !numeric.is_empty() {
                        // A number that does not parse fails the pass
                        // (the caller then reads them as text).
                        assert!(got.is_err(), "window {window}");
                        continue;
                    }
                    let got = got.unwrap();
                    let facts = |s: &StagedStats| (s.rows, s.numbers_missing, s.dates_unparsed);
                    assert_eq!(facts(&got), facts(&want), "window {window}");
                    assert!(read(&work).equals_missing(&want_work), "window {window}");
                    assert!(read(&typed).equals_missing(&want_typed), "window {window}");
                    let hashes = got.hashes.map(sorted);
                    assert_eq!(hashes.as_ref().map(Vec::len), Some(want_typed.height()));
                    assert_eq!(hashes, Some(typed_hashes(&typed)), "window {window}");
                }
            }
        }
        // A quote anywhere, or compressed bytes (gzip's magic here), leave
        // the file to polars' reader; the same rows plain are read in
        // windows.
        let header = ["txn_id", "customer_id"].map(String::from);
        let opens = |bytes: &[u8]| {
            std::fs::write(&file, bytes).unwrap();
            io::CsvWindows::open(&file, &input, &header, &header, &[])
                .unwrap()
                .is_some()
        };
        let plain = b"txn_id,customer_id\nT1,C1\n";
        assert!(!opens(b"txn_id,customer_id\nT1,\"C,1\"\n"));
        assert!(!opens(&[&[0x1f, 0x8b, 0x08, 0x00][..], plain].concat()));
        assert!(opens(plain));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
