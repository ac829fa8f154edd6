//! The persistent typed store under `<out>/_store/`: each transactions file
//! is ingested once, into a segment of its own, and recorded in the
//! catalog by path, size, modification time and XXH3-128 hash. A run
//! ingests only the files the store does not hold (or whose bytes
//! changed), checks their txn_ids against every stored one, and scores
//! from the stored per-file pre-aggregates: a nightly run reads the new
//! day's file and the compact aggregates, never the history's raw rows.
//!
//! ```text
//! _store/catalog.json                      files in store order, settings
//! _store/segments/seg-000001/typed.parquet  valid rows (with __line), file order
//!                           /rejects.parquet invalid rows and duplicates
//!                           /hashes.u64      XXH3-64 of each stored txn_id, sorted (ingest::hashes)
//!                           /daily.parquet   customer × day pre-aggregate,
//!                                            sorted by customer_id
//!                           /daily.keys.parquet  its customer ids once each,
//!                                            with their count of rows
//! _store/tierings/<date>-<hash>.parquet    earlier dates' tierings, kept
//!                                          for the next run (see
//!                                          crate::snapshot::TieringCache)
//! _store/tables/<table>-<hash>.*           customers and interactions as
//!                                          checked, read back while their
//!                                          files are unchanged
//! ```
//!
//! Every Parquet file here is compressed as `store.compression` says (none
//! by default: the store is read back every run).
//!
//! A run commits by replacing the catalog atomically once its new segments
//! are in place: killed before that, the store is as it was (the next run
//! removes the orphan segments); killed after, it holds the new files.
//!
//! Once there are more than `store.compact_at` segments, a run merges the
//! small ones ([`compaction`]): a merged segment holds several files' rows,
//! one file after another (each file's `offset` in the catalog says
//! where), so that a night reads a bounded number of files.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{Config, InputFile, OnChanged, OnRemoved, StoreCompression};
use crate::contract;
use crate::error::{Error, Result};
use crate::ingest::{self, Ingested, TableReport, TypedFile};
use crate::io::{self, LINE, Run, WorkDir};

/// The store's folder under the output root.
pub const STORE_DIR: &str = "_store";
const CATALOG: &str = "catalog.json";
const SEGMENTS: &str = "segments";
/// Beside a segment's `daily.parquet`: its customer ids, once each in
/// order, with their count of rows ([`crate::daily::id_runs`]).
const DAILY_KEYS: &str = "daily.keys.parquet";
/// The stored layout's version: a store of another layout (or written by
/// another tiering version, whose typing may differ) is typed again.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Catalog {
    format: u32,
    version: String,
    /// The transactions input settings the rows were typed with (path left out).
    settings: serde_json::Value,
    next_segment: u64,
    /// In store order: the order of the duplicate check (first wins).
    files: Vec<StoredFile>,
}

/// One ingested transactions file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    /// The canonical path: how the file is recognised by later runs.
    pub key: PathBuf,
    /// The path as the ingesting run named it (the rejects' `file`).
    pub name: String,
    pub bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: Option<u64>,
    pub xxh3_128: String,
    pub segment: String,
    /// Where its rows start in the segment's typed file: a merged segment
    /// holds several files' rows, one file after another in store order.
    #[serde(default)]
    pub offset: u64,
    /// The segment its rows were ingested into: its rows' identity, which a
    /// merge keeps (empty in catalogs written before merging: `segment`).
    #[serde(default)]
    pub origin: String,
    /// The typed columns of its rows.
    pub columns: Vec<String>,
    /// Earliest and latest date of its stored rows (none when it has none).
    pub span: Option<(NaiveDate, NaiveDate)>,
    /// Its counts; `rows_kept` is every stored row, whatever its date.
    pub report: TableReport,
}

/// What a run did to the store, for the manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Files the store holds after the run.
    pub files: usize,
    /// Segments the store holds after the run.
    pub segments: usize,
    /// Segments this run merged into one (more than `store.compact_at`),
    /// or wrote again without the rows of a file that left them.
    pub segments_merged: usize,
    /// Files ingested by this run (new, changed, or typed again).
    pub ingested: Vec<String>,
    /// Files whose changed bytes replaced their stored rows.
    pub replaced: Vec<String>,
    /// Stored files no longer among the inputs, whose rows were removed.
    pub dropped: Vec<String>,
    /// Stored files no longer among the inputs, kept (`on_removed = "keep"`).
    pub kept_absent: Vec<String>,
    /// The store was started over (`--rebuild-store`, new settings or version).
    pub rebuilt: bool,
    /// Customers and interactions read back as checked (`_store/tables/`):
    /// their files and settings were unchanged since an earlier run.
    pub tables_reused: Vec<String>,
    /// Transaction rows this run read: the rows of the files it ingested,
    /// of the segments it merged, and of the files it scanned for rows
    /// after the as-of date (none on a night whose as-of date is the
    /// latest stored date).
    pub rows_read: usize,
}

/// The store as a run reads it: its files in store order.
pub struct View {
    dir: PathBuf,
    files: Vec<StoredFile>,
    pub summary: Summary,
    /// Every stored file's pre-aggregate when this run built them all (a
    /// first run): the fast plan takes them rather than reading back what
    /// was just written ([`View::take_fresh_daily`]).
    fresh_daily: std::sync::Mutex<Option<Vec<DataFrame>>>,
    /// The store's commit when it runs behind the run ([`Commit`]): joined
    /// before any stored pre-aggregate is read, and by [`View::settle`].
    pending: std::sync::Mutex<Option<std::thread::JoinHandle<Result<()>>>>,
}

/// Brings the store under `out` up to date with the transactions inputs
/// of `cfg` (ingesting only what it lacks) and returns it. `rebuild`
/// starts over. Call with the output root's lock held.
pub fn sync(cfg: &Config, out: &Path, rebuild: bool, budget: u64) -> Result<View> {
    let dir = out.join(STORE_DIR);
    let c = cfg.store.compression;
    let mut summary = Summary::default();
    if rebuild && dir.exists() {
        fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
        summary.rebuilt = true;
    }
    let segments = dir.join(SEGMENTS);
    fs::create_dir_all(&segments).map_err(Error::io(&segments))?;
    let settings = settings_of(&cfg.inputs.transactions)?;
    let mut cat = load_catalog(&dir)?.unwrap_or_else(|| Catalog {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").into(),
        settings: settings.clone(),
        next_segment: 1,
        files: Vec::new(),
    });
    remove_orphans(&dir, &cat)?;

    let input = &cfg.inputs.transactions;
    let offered: Vec<(PathBuf, PathBuf)> = io::expand_inputs("transactions", &input.path)?
        .into_iter()
        .map(|f| Ok((f.canonicalize().map_err(Error::io(&f))?, f)))
        .collect::<Result<_>>()?;
    let by_key: HashMap<&Path, &Path> = offered
        .iter()
        .map(|(k, f)| (k.as_path(), f.as_path()))
        .collect();

    let mut gone: Vec<StoredFile> = Vec::new();
    let retype = cat.format != FORMAT
        || cat.version != env!("CARGO_PKG_VERSION")
        || cat.settings != settings;
    if retype && !cat.files.is_empty() {
        if let Some(absent) = cat
            .files
            .iter()
            .find(|f| !by_key.contains_key(f.key.as_path()))
        {
            return Err(Error::Usage(format!(
                "{}: the stored transactions were typed with other input settings (or another tiering version), and {} is no longer among the inputs to type it again; run with --rebuild-store to start over from the inputs",
                dir.display(),
                absent.name
            )));
        }
        tracing::info!(store = %dir.display(), "input settings or tiering version changed: typing every stored file again");
        summary.rebuilt = true;
        gone.append(&mut cat.files);
    }
    cat.format = FORMAT;
    cat.version = env!("CARGO_PKG_VERSION").into();
    cat.settings = settings;

    // Classify the stored files against the inputs.
    let mut keep: Vec<StoredFile> = Vec::new();
    let mut any_gone = false;
    for mut f in std::mem::take(&mut cat.files) {
        match by_key.get(f.key.as_path()) {
            None => match cfg.store.on_removed {
                OnRemoved::Keep => {
                    summary.kept_absent.push(f.name.clone());
                    keep.push(f);
                }
                OnRemoved::Drop => {
                    tracing::info!(file = %f.name, "no longer among the inputs: its rows leave the store");
                    summary.dropped.push(f.name.clone());
                    any_gone = true;
                    gone.push(f);
                }
                OnRemoved::Refuse => {
                    return Err(Error::Usage(format!(
                        "{}: stored in {} but no longer among the transactions inputs ({}); store.on_removed is \"refuse\" (\"drop\" removes its rows, \"keep\" keeps them, --rebuild-store starts over)",
                        f.name,
                        dir.display(),
                        input.path
                    )));
                }
            },
            Some(file) => {
                if unchanged(&mut f, file)? {
                    keep.push(f);
                } else if cfg.store.on_changed == OnChanged::Refuse {
                    return Err(Error::Usage(format!(
                        "{}: changed since it was stored in {} (size or XXH3 hash differ); store.on_changed is \"refuse\" (\"replace\" ingests it again, --rebuild-store starts over)",
                        file.display(),
                        dir.display()
                    )));
                } else {
                    tracing::info!(file = %file.display(), "changed since stored: its rows are replaced");
                    summary.replaced.push(f.name.clone());
                    any_gone = true;
                    gone.push(f);
                }
            }
        }
    }
    // A stored file's rows that repeated a txn_id of a file now gone may
    // be firsts now: files that collapsed any duplicate are ingested again.
    if any_gone {
        let (again, stay): (Vec<_>, Vec<_>) = keep.into_iter().partition(|f| {
            f.report.duplicates_collapsed > 0 && by_key.contains_key(f.key.as_path())
        });
        keep = stay;
        gone.extend(again);
    }
    // A merged segment that loses files is written again without their
    // rows, before the new files are checked against the kept ones.
    let mut merged = 0;
    let mut shared: Vec<String> = keep
        .iter()
        .filter(|f| gone.iter().any(|g| g.segment == f.segment))
        .map(|f| f.segment.clone())
        .collect();
    shared.sort();
    shared.dedup();
    for seg in shared {
        let members: Vec<usize> = (0..keep.len())
            .filter(|&i| keep[i].segment == seg)
            .collect();
        summary.rows_read += rows_of(&keep, &members);
        let none = Unplaced::default();
        merge_segment(
            &dir,
            &mut cat.next_segment,
            &mut keep,
            &members,
            &none,
            budget,
            c,
        )?;
        merged += 1;
    }
    let kept_keys: std::collections::HashSet<&Path> =
        keep.iter().map(|f| f.key.as_path()).collect();
    // A new file is named by its path as given, unless a kept file (offered
    // from another directory) already has that name: then by its canonical
    // path. A merged segment tells its files' rejects apart by name.
    let names: std::collections::HashSet<&str> = keep.iter().map(|f| f.name.as_str()).collect();
    let new: Vec<(PathBuf, PathBuf)> = offered
        .iter()
        .filter(|(k, _)| !kept_keys.contains(k.as_path()))
        .map(|(k, f)| {
            let taken = names.contains(f.to_string_lossy().as_ref());
            (k.clone(), if taken { k } else { f }.clone())
        })
        .collect();

    let stored = match new.is_empty() {
        true => None,
        false => Some(ingest_new(cfg, &dir, &mut cat, &keep, &new, budget)?),
    };
    let (added, mut fresh_daily, planned, unplaced, unwritten) = match stored {
        None => (Vec::new(), None, None, Unplaced::default(), Vec::new()),
        Some(n) => (
            n.added,
            n.fresh_daily,
            Some(n.planned),
            n.unplaced,
            n.unwritten,
        ),
    };
    summary.ingested = added.iter().map(|(f, _)| f.name.clone()).collect();
    summary.rows_read += added.iter().map(|(f, _)| f.report.rows_read).sum::<usize>();
    let changed = !added.is_empty() || !gone.is_empty() || retype || rebuild;
    keep.extend(added.iter().map(|(f, _)| f.clone()));
    check_columns(&keep)?;
    for (f, staged) in &added {
        if let Some(staged) = staged {
            let target = segments.join(&f.segment);
            fs::rename(staged, &target).map_err(Error::io(&target))?;
        }
    }
    // The new files' merge as ingest_new planned it (it wrote no hashes
    // or pre-aggregate for the files it takes in).
    let planned = match planned {
        Some(p) => p,
        None => compaction(&keep, cfg.store.compact_at),
    };
    if let Some(members) = planned {
        let from = segment_names(&keep).len();
        summary.rows_read += rows_of(&keep, &members);
        merge_segment(
            &dir,
            &mut cat.next_segment,
            &mut keep,
            &members,
            &unplaced,
            budget,
            c,
        )?;
        tracing::info!(
            from,
            to = segment_names(&keep).len(),
            files = members.len(),
            "store segments merged"
        );
        merged += from - segment_names(&keep).len() + 1;
    }
    if merged > 0 {
        // The per-file pre-aggregates no longer match the segments.
        fresh_daily = None;
    }
    let changed = changed || merged > 0;
    drop(unplaced);
    drop(gone);
    cat.files = keep;
    summary.files = cat.files.len();
    summary.segments = segment_names(&cat.files).len();
    summary.segments_merged = merged;
    let files = cat.files.clone();
    let commit = Commit {
        dir: dir.clone(),
        cat,
        changed,
        unwritten,
        compression: c,
    };
    let pending = match commit.unwritten.is_empty() {
        true => {
            commit.run()?;
            None
        }
        false => Some(
            std::thread::Builder::new()
                .name("store-commit".into())
                .spawn(move || commit.run())
                .map_err(Error::io(&dir))?,
        ),
    };
    Ok(View {
        dir,
        files,
        summary,
        fresh_daily: std::sync::Mutex::new(fresh_daily),
        pending: std::sync::Mutex::new(pending),
    })
}

/// The end of [`sync`] once every new segment is in place: the new
/// segments' pre-aggregates that were built whole and not yet written,
/// then the catalog (the commit), then the segments it no longer lists
/// removed.
///
/// Run behind the run when there are such pre-aggregates: the run scores
/// from them in memory meanwhile. Writing a first load's (285 MB at 10^7
/// transactions of 10^6 customers, uncompressed) kept one core copying
/// into the page cache for 0.5–1 s while the other mostly idled (`perf`);
/// behind, such cold runs took 7.37 s instead of 7.57 s (means of 12
/// interleaved pairs). Until the catalog is written the store is the one
/// before this run (a run killed meanwhile leaves unlisted segments, which
/// the next removes).
struct Commit {
    dir: PathBuf,
    cat: Catalog,
    changed: bool,
    /// (segment, its pre-aggregate) to write first.
    unwritten: Vec<(String, DataFrame)>,
    compression: StoreCompression,
}

impl Commit {
    fn run(self) -> Result<()> {
        let segments = self.dir.join(SEGMENTS);
        for (seg, daily) in &self.unwritten {
            let t = std::time::Instant::now();
            write_whole_daily(
                daily,
                &segments.join(seg).join("daily.parquet"),
                self.compression,
            )?;
            tracing::debug!(ms = t.elapsed().as_millis() as u64, segment = %seg, "segment daily written behind");
        }
        if self.changed {
            crate::io::failpoint("store_before_commit");
        }
        // Written even when nothing changed: modification times may have
        // moved, and recording them spares later runs the hash.
        let json = serde_json::to_string_pretty(&self.cat)?;
        let path = self.dir.join(CATALOG);
        crate::io::write_atomically(&path, |tmp| {
            fs::write(tmp, json.as_bytes()).map_err(Error::io(tmp))
        })?;
        remove_unlisted(&segments, &self.cat, false)
    }
}

/// The stored rows of `members` of `files`.
fn rows_of(files: &[StoredFile], members: &[usize]) -> usize {
    members.iter().map(|&i| files[i].report.rows_kept).sum()
}

/// The settings that decide how rows are typed, as recorded in the catalog.
fn settings_of(input: &InputFile) -> Result<serde_json::Value> {
    let mut i = input.clone();
    i.path = String::new();
    Ok(serde_json::to_value(&i)?)
}

/// The files a store holds, in store order, and the tiering version that
/// wrote its catalog (`tiering inspect`); `None` when `dir` holds no
/// catalog.
pub fn stored_files(dir: &Path) -> Result<Option<(String, Vec<StoredFile>)>> {
    Ok(load_catalog(dir)?.map(|c| (c.version, c.files)))
}

fn load_catalog(dir: &Path) -> Result<Option<Catalog>> {
    let path = dir.join(CATALOG);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Usage(format!(
                "{}: not a store catalog this tiering can read ({e}); run with --rebuild-store to start over",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// Removes what a killed run left: segments the catalog does not list,
/// work directories, a catalog's temporary file.
fn remove_orphans(dir: &Path, cat: &Catalog) -> Result<()> {
    remove_unlisted(&dir.join(SEGMENTS), cat, true)?;
    for entry in fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(io::WORK_PREFIX) {
            fs::remove_dir_all(entry.path()).map_err(Error::io(entry.path()))?;
        } else if name.starts_with(CATALOG) && name != CATALOG {
            fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
        }
    }
    Ok(())
}

/// Removes the segments the catalog does not list: after a commit, those
/// of files gone or merged; at a run's start (`warn`), a failed run's.
fn remove_unlisted(segments: &Path, cat: &Catalog, warn: bool) -> Result<()> {
    let listed: std::collections::HashSet<&str> =
        cat.files.iter().map(|f| f.segment.as_str()).collect();
    for entry in fs::read_dir(segments)
        .map_err(Error::io(segments))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !listed.contains(name.as_str()) {
            if warn {
                tracing::warn!(path = %entry.path().display(), "removing a store segment no catalog lists (left by a failed run)");
            }
            fs::remove_dir_all(entry.path()).map_err(Error::io(entry.path()))?;
        }
    }
    Ok(())
}

/// The segments of `files`, each once, in store order.
fn segment_names(files: &[StoredFile]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for f in files {
        if !out.contains(&f.segment.as_str()) {
            out.push(&f.segment);
        }
    }
    out
}

/// The files (indices into `files`, in store order) to merge into one
/// segment when there are more than `at` segments: those of every segment
/// holding at most 1/`at` of the stored rows. Size-tiered: a merged
/// segment is merged again only while it stays that small, so each row is
/// rewritten a few times over the store's life, and the count drops to at
/// most `at` (the larger segments are fewer than `at`, so at least two are
/// small). `None` when `at` is 0 or not exceeded.
fn compaction(files: &[StoredFile], at: usize) -> Option<Vec<usize>> {
    let names = segment_names(files);
    if at == 0 || names.len() <= at {
        return None;
    }
    let rows = |seg: &str| -> u64 {
        files
            .iter()
            .filter(|f| f.segment == seg)
            .map(|f| f.report.rows_kept as u64)
            .sum()
    };
    let total: u64 = names.iter().map(|s| rows(s)).sum();
    let small: Vec<&str> = names
        .into_iter()
        .filter(|s| rows(s) * at as u64 <= total)
        .collect();
    (small.len() >= 2).then(|| {
        (0..files.len())
            .filter(|&i| small.contains(&files[i].segment.as_str()))
            .collect()
    })
}

/// The most typed rows a merge holds at once (~100 MB of the bench's rows).
const MERGE_ROWS: u64 = 1 << 20;

/// A piece of a merge's typed rows: `MERGE_ROWS` of a member from a
/// start, or small members read together.
enum Piece {
    Slice(usize, u64),
    Together(Vec<usize>),
}

/// `members`' rows as [`merge_segment`] reads them, in order: consecutive
/// small members that are alone in their segment (so their typed file is
/// theirs whole) and have the first member's columns in its order go
/// together, up to `MERGE_ROWS` rows; any other member in slices.
fn merge_pieces(files: &[StoredFile], members: &[usize]) -> Vec<Piece> {
    let alone = |i: usize| {
        let f = &files[i];
        f.offset == 0
            && (f.report.rows_kept as u64) < MERGE_ROWS
            && f.columns == files[members[0]].columns
            && files.iter().filter(|g| g.segment == f.segment).count() == 1
    };
    let mut pieces = Vec::new();
    let (mut group, mut held) = (Vec::new(), 0u64);
    for &i in members {
        let rows = files[i].report.rows_kept as u64;
        if alone(i) {
            if held + rows > MERGE_ROWS && !group.is_empty() {
                pieces.push(Piece::Together(std::mem::take(&mut group)));
                held = 0;
            }
            group.push(i);
            held += rows;
            continue;
        }
        if !group.is_empty() {
            pieces.push(Piece::Together(std::mem::take(&mut group)));
            held = 0;
        }
        pieces
            .extend((0..rows.div_ceil(MERGE_ROWS).max(1)).map(|k| Piece::Slice(i, k * MERGE_ROWS)));
    }
    if !group.is_empty() {
        pieces.push(Piece::Together(group));
    }
    pieces
}

/// Writes a new segment holding the rows of `members` (indices into
/// `files`, in store order), read from their segments: their typed rows
/// (each file's slice, one after another), their rejects, and the hashes
/// and pre-aggregate of the result (a day held by several members summed).
/// Moves it under `segments/` (listed once the catalog is committed) and
/// points the members at it.
#[allow(clippy::too_many_arguments)]
fn merge_segment(
    dir: &Path,
    next: &mut u64,
    files: &mut [StoredFile],
    members: &[usize],
    unplaced: &Unplaced,
    budget: u64,
    c: StoreCompression,
) -> Result<()> {
    let segments = dir.join(SEGMENTS);
    let name = format!("seg-{:06}", *next);
    *next += 1;
    let staged = dir.join(format!("{}{}-{name}", io::WORK_PREFIX, std::process::id()));
    fs::create_dir_all(&staged).map_err(Error::io(&staged))?;
    let source = |f: &StoredFile, file: &str| segments.join(&f.segment).join(file);
    // A member's typed rows: its segment's, or where a new file's wait.
    let typed_of = |i: usize| match unplaced.files.get(&i) {
        Some(u) => u.typed.clone(),
        None => source(&files[i], "typed.parquet"),
    };
    // The first member's column order for all (files may order them differently).
    let order: Vec<Expr> = io::scan_parquet(&typed_of(members[0]))?
        .collect_schema()?
        .iter_names()
        .map(|n| col(n.clone()))
        .collect();
    let mut rows = 0u64;
    let mut span: Option<(NaiveDate, NaiveDate)> = None;
    for &i in members {
        rows += files[i].report.rows_kept as u64;
        span = match (span, files[i].span) {
            (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
            (a, b) => a.or(b),
        };
    }
    // Read member by member, at most MERGE_ROWS rows at a time (a member
    // may be a large file), written in row groups as the typed files have.
    // One streamed query over all 365 members of a year's nightly files
    // took the merging run 12.4 s against 6.8 s. Small members that are a
    // whole segment of their own (a night's file, or each of a first
    // load's daily files) are read together by one scan: a query each
    // took ~3 ms, 3 s for 1,093 daily files.
    let path = staged.join("typed.parquet");
    let pieces = merge_pieces(files, members);
    let typed = pieces.iter().map(|piece| -> Result<DataFrame> {
        let lf = match piece {
            Piece::Slice(i, start) => {
                let f = &files[*i];
                let rows = f.report.rows_kept as u64;
                io::scan_parquet(&typed_of(*i))?.slice(
                    (f.offset + start) as i64,
                    MERGE_ROWS.min(rows - start) as IdxSize,
                )
            }
            Piece::Together(all) => {
                let paths: Vec<PathBuf> = all.iter().map(|&i| typed_of(i)).collect();
                io::scan_parquet_files(&paths, None)?
            }
        };
        Ok(lf.select(order.clone()).run_whole()?)
    });
    io::write_parquet_parts(&path, typed, 1 << 17, c)?;
    let stored = io::scan_parquet(&path)?
        .select([len().alias("n")])
        .run()?
        .column("n")?
        .u32()?
        .get(0)
        .unwrap_or(0) as u64;
    if stored != rows {
        return Err(Error::Invariant(format!(
            "{}: merged {stored} rows where its files hold {rows}",
            path.display()
        )));
    }
    // A member alone in its segment owns the segment's rejects whole.
    let rejects = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Slice(i, 0) => match unplaced.files.get(i) {
                Some(u) => Ok(u.rejects.clone()),
                None => {
                    let f = &files[*i];
                    Ok(io::scan_parquet(&source(f, "rejects.parquet"))?
                        .filter(col("file").eq(lit(f.name.as_str())))
                        .run_whole()?)
                }
            },
            Piece::Slice(..) => Ok(DataFrame::empty()),
            Piece::Together(all) => {
                // Stored members' files read by one scan per run of them;
                // a new file's rejects as held.
                let mut parts = Vec::new();
                let mut paths: Vec<PathBuf> = Vec::new();
                for &i in all {
                    match unplaced.files.get(&i) {
                        Some(u) => {
                            if !paths.is_empty() {
                                parts.push(io::scan_parquet_files(
                                    &std::mem::take(&mut paths),
                                    None,
                                )?);
                            }
                            parts.push(u.rejects.clone().lazy());
                        }
                        None => paths.push(source(&files[i], "rejects.parquet")),
                    }
                }
                if !paths.is_empty() {
                    parts.push(io::scan_parquet_files(&paths, None)?);
                }
                Ok(concat(parts, UnionArgs::default())?.run_whole()?)
            }
        })
        .collect::<Result<Vec<DataFrame>>>()?;
    let mut rejects = concat(
        rejects
            .into_iter()
            .filter(|r| r.width() > 0)
            .map(DataFrame::lazy)
            .collect::<Vec<_>>(),
        UnionArgs::default(),
    )?
    .run()?;
    io::write_parquet(&mut rejects, &staged.join("rejects.parquet"))?;
    ingest::hashes::write_sorted(&path, &staged.join(ingest::hashes::FILE))?;
    if span.is_some() {
        let columns = files[members[0]].columns.clone();
        write_daily(
            &path,
            &columns,
            rows as usize,
            &staged.join("daily.parquet"),
            budget,
            c,
            false,
        )?;
    } else {
        // No row: the first member's (empty) pre-aggregate, for its schema.
        // (A merge takes in a new file only with rows: see ingest_new.)
        for name in ["daily.parquet", DAILY_KEYS] {
            let (from, to) = (source(&files[members[0]], name), staged.join(name));
            // A segment written before the keys were kept has none.
            if name == "daily.parquet" || from.exists() {
                fs::copy(&from, &to).map_err(Error::io(&to))?;
            }
        }
    }
    let target = segments.join(&name);
    fs::rename(&staged, &target).map_err(Error::io(&target))?;
    let mut offset = 0;
    for &i in members {
        if files[i].origin.is_empty() {
            files[i].origin = files[i].segment.clone();
        }
        files[i].segment = name.clone();
        files[i].offset = offset;
        offset += files[i].report.rows_kept as u64;
    }
    Ok(())
}

fn modified_ns(meta: &fs::Metadata) -> Option<u64> {
    let d = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// Whether `file` still has the bytes `f` was stored with: the same size
/// and modification time (as rsync decides), else the same XXH3-128 hash
/// (then the new time is recorded).
fn unchanged(f: &mut StoredFile, file: &Path) -> Result<bool> {
    let meta = fs::metadata(file).map_err(Error::io(file))?;
    if meta.len() != f.bytes {
        return Ok(false);
    }
    let ns = modified_ns(&meta);
    if ns.is_some() && ns == f.modified_ns {
        return Ok(true);
    }
    if io::content_hash(file)? == f.xxh3_128 {
        f.modified_ns = ns;
        return Ok(true);
    }
    Ok(false)
}

/// Every stored file must have the same typed columns: the pre-aggregates
/// are stacked.
fn check_columns(files: &[StoredFile]) -> Result<()> {
    let sorted = |f: &StoredFile| {
        let mut c = f.columns.clone();
        c.sort();
        c
    };
    if let Some(first) = files.first() {
        for f in &files[1..] {
            if sorted(f) != sorted(first) {
                return Err(Error::Usage(format!(
                    "{}: its transactions have the columns {} but {} has {}; every file of the store needs the same optional columns",
                    f.name,
                    f.columns.join(", "),
                    first.name,
                    first.columns.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// New files' typed rows and rejects that no segment of their own holds,
/// by index among the files a merge is given: the merge that follows
/// their ingest takes them from here.
#[derive(Default)]
struct Unplaced {
    files: HashMap<usize, UnplacedFile>,
    /// Where they are (removed when dropped).
    _work: Option<WorkDir>,
}

struct UnplacedFile {
    typed: PathBuf,
    rejects: DataFrame,
}

/// What [`ingest_new`] leaves for [`sync`].
struct NewSegments {
    /// The new catalog entries with their staged segment directories
    /// (none for a file the merge takes in).
    added: Vec<(StoredFile, Option<PathBuf>)>,
    /// The new files' pre-aggregates when no kept file holds rows (then
    /// they are the store's whole pre-aggregate), they fit half of
    /// `budget` together and no merge follows.
    fresh_daily: Option<Vec<DataFrame>>,
    /// The pre-aggregates built whole and left for [`Commit`] to write
    /// (when no merge follows), by segment.
    unwritten: Vec<(String, DataFrame)>,
    /// The merge that is to follow ([`compaction`] of `keep` and the new
    /// files, in that order).
    planned: Option<Vec<usize>>,
    /// The rows of the new files that merge takes in: they get no segment,
    /// hashes or pre-aggregate of their own (a first load of 1,094 daily
    /// files wrote a segment each, 1.5-1.9 s, for the merge to read back).
    unplaced: Unplaced,
}

/// Ingests `new` (canonical path, path) in order, checking txn_ids against
/// the `keep` files, and writes the segment of each file the planned merge
/// does not take in into a work directory (see [`NewSegments`]).
fn ingest_new(
    cfg: &Config,
    dir: &Path,
    cat: &mut Catalog,
    keep: &[StoredFile],
    new: &[(PathBuf, PathBuf)],
    budget: u64,
) -> Result<NewSegments> {
    let work = WorkDir::create(dir)?;
    let t = std::time::Instant::now();
    let held = segment_names(keep);
    let segment = |seg: &str, name: &str| dir.join(SEGMENTS).join(seg).join(name);
    // Segments written before the sorted hashes keep their Parquet ones
    // (read as before) until a merge writes them anew.
    let hash_files: Vec<PathBuf> = held
        .iter()
        .map(|s| {
            let sorted = segment(s, ingest::hashes::FILE);
            match sorted.exists() {
                true => sorted,
                false => segment(s, "hashes.parquet"),
            }
        })
        .collect();
    let typed: Vec<PathBuf> = held.iter().map(|s| segment(s, "typed.parquet")).collect();
    let history = ingest::History {
        hash_files: &hash_files,
        typed: &typed,
    };
    let files = new.iter().map(|(_, f)| f.clone()).collect();
    let staged = ingest::stage_new(cfg, files, work.path(), &history)?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        files = new.len(),
        "new files checked"
    );
    // The catalog entries first, to plan the merge; then the segments of
    // the files it does not take in.
    let mut entries = Vec::new();
    let mut rows = Vec::new();
    for ((key, file), nf) in new.iter().zip(staged) {
        let segment = format!("seg-{:06}", cat.next_segment);
        cat.next_segment += 1;
        let columns = typed_columns(&nf.typed)?;
        let meta = fs::metadata(file).map_err(Error::io(file))?;
        let info = nf.report.files.first().cloned();
        entries.push(StoredFile {
            key: key.clone(),
            name: file.to_string_lossy().into_owned(),
            bytes: meta.len(),
            modified_ns: modified_ns(&meta),
            xxh3_128: info.map(|i| i.xxh3_128).unwrap_or_default(),
            origin: segment.clone(),
            segment,
            offset: 0,
            columns,
            span: nf.span,
            report: nf.report,
        });
        rows.push((nf.typed, nf.rejects, nf.sorted_hashes));
    }
    let mut after: Vec<StoredFile> = keep.to_vec();
    after.extend(entries.iter().cloned());
    let planned = compaction(&after, cfg.store.compact_at);
    let merging: std::collections::HashSet<usize> = planned.iter().flatten().copied().collect();
    let mut fresh = (merging.is_empty() && keep.iter().all(|f| f.span.is_none())).then(Vec::new);
    // A merge that follows reads the new segments' pre-aggregates back.
    let behind = planned.is_none();
    let mut unwritten = Vec::new();
    let mut held = 0;
    let mut added = Vec::new();
    let mut unplaced = HashMap::new();
    for (i, (f, (typed, mut rejects, sorted))) in entries.into_iter().zip(rows).enumerate() {
        // A file without rows keeps a segment: an empty merge copies the
        // first member's pre-aggregate for its columns.
        if merging.contains(&(keep.len() + i)) && f.span.is_some() {
            unplaced.insert(keep.len() + i, UnplacedFile { typed, rejects });
            added.push((f, None));
            continue;
        }
        // The segment is built under the work directory, which a killed
        // run leaves for the next run to remove; then moved in.
        let seg = dir.join(format!(
            "{}{}-{}",
            io::WORK_PREFIX,
            std::process::id(),
            f.segment
        ));
        fs::create_dir_all(&seg).map_err(Error::io(&seg))?;
        let target = seg.join("typed.parquet");
        fs::rename(&typed, &target).map_err(Error::io(&target))?;
        let typed = target;
        io::write_parquet(&mut rejects, &seg.join("rejects.parquet"))?;
        // As the duplicate check sorted them, or hashed from the typed file
        // in slices: at 10^8 rows the ids and their hashes held at once
        // were ~3.5 GiB.
        let hashes = seg.join(ingest::hashes::FILE);
        match sorted {
            Some(sorted) => ingest::hashes::write(&sorted, &hashes)?,
            None => ingest::hashes::write_sorted(&typed, &hashes)?,
        }
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "segment hashes written"
        );
        let daily = write_daily(
            &typed,
            &f.columns,
            f.report.rows_kept,
            &seg.join("daily.parquet"),
            budget,
            cfg.store.compression,
            behind,
        )?;
        if let (true, Some(d)) = (behind, &daily) {
            unwritten.push((f.segment.clone(), d.clone()));
        }
        if f.span.is_some() {
            // Held only while they fit; one missing makes the set useless.
            let size = daily.as_ref().map(|d| d.estimated_size() as u64);
            match (fresh.as_mut(), daily, size) {
                (Some(v), Some(d), Some(size)) if held + size <= budget / 2 => {
                    held += size;
                    v.push(d);
                }
                _ => fresh = None,
            }
        }
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "segment daily written");
        added.push((f, Some(seg)));
    }
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "new files stored");
    Ok(NewSegments {
        added,
        fresh_daily: fresh,
        unwritten,
        planned,
        // The work directory holds the unplaced rows until the merge.
        unplaced: Unplaced {
            files: unplaced,
            _work: Some(work),
        },
    })
}

/// A typed file's columns but the line.
fn typed_columns(path: &Path) -> Result<Vec<String>> {
    Ok(io::scan_parquet(path)?
        .collect_schema()?
        .iter_names()
        .map(|n| n.to_string())
        .filter(|n| n != LINE)
        .collect())
}

/// Anonymous memory per typed row of the sorted walk
/// ([`crate::daily::daily_sorted`]: the key columns and their sort keys,
/// then the order, the amounts and the result). An upper bound: measured
/// ~0.6 GiB over the run's own for 10^7 rows of 10^4 customers, ~1.0 GiB
/// for 10^6 customers, whose rows barely aggregate.
const SORTED_BYTES_PER_ROW: u64 = 112;

/// Writes one file's customer × day pre-aggregate, sorted by customer_id
/// and day ([`crate::order`]: a total order, and 4–10× faster than
/// polars' sort on the text column).
///
/// One sort of the rows and a walk over the runs of equal keys
/// ([`crate::daily::daily_sorted`]): at 10^7 rows of 10^6 customers
/// 1.7–2 s faster than polars' hash group-by and the sort after it
/// (5.4–5.7 s against 7.4 s), and the run's peak RSS ~0.3 GiB lower. When
/// the file's rows do not fit `budget`, the same per customer_id range,
/// each range's rows read by a filtered scan of the typed file, so that
/// `--memory-limit` also bounds a cold store: at 10^8 rows under 6 GiB,
/// 4 ranges took 18–20 s where polars' streaming group-by (which holds
/// groups rather than rows, so 2 ranges) took 24 s.
///
/// Sorted so that the lean plan's parts (id ranges) skip other customers'
/// row groups: at 10^7 its parts build in 2.0 s instead of 3.0 s, and the
/// fast plan keys the daily in 0.6 s instead of 1.0 s, every night.
///
/// Returns the pre-aggregate when it was built whole; with `behind`, that
/// one is not written: the caller writes it ([`write_whole_daily`]).
fn write_daily(
    typed: &Path,
    columns: &[String],
    rows: usize,
    out: &Path,
    budget: u64,
    c: StoreCompression,
    behind: bool,
) -> Result<Option<DataFrame>> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let (margin, quantity) = (has("margin_cents"), has("quantity"));
    // The sorted walk; polars' group-by where an id or a day is null.
    let build = |lf: LazyFrame| -> Result<DataFrame> {
        match crate::daily::daily_sorted(lf.clone(), margin, quantity)? {
            Some(df) => Ok(df),
            None => {
                let df = crate::daily::daily_by_id(lf, margin, quantity).run()?;
                crate::order::sort_by_id(df, Some("ts"))
            }
        }
    };
    let keys_out = out.with_file_name(DAILY_KEYS);
    if rows as u64 * SORTED_BYTES_PER_ROW <= budget {
        let df = build(io::scan_parquet(typed)?)?;
        if !behind {
            write_whole_daily(&df, out, c)?;
        }
        return Ok(Some(df));
    }
    let parts = (rows as u64 * SORTED_BYTES_PER_ROW).div_ceil(budget.max(1));
    // Cut where a sample of the rows divides evenly: the parts hold about
    // equal rows, as the budget above assumes (cutting the distinct ids
    // evenly does not, on skewed data), and no scan reads every id (at
    // 10^8 rows that scan was a hash of 10^8 texts).
    let sample = sample_ids(typed, rows)?;
    let bounds = crate::daily::row_bounds(sample.column("customer_id")?.str()?, parts as u32);
    tracing::debug!(parts = bounds.len() + 1, "pre-aggregate built in parts");
    let mut edges: Vec<Option<&str>> = vec![None];
    edges.extend(bounds.iter().map(|b| Some(b.as_str())));
    edges.push(None);
    // Each part's id runs as it is written: the parts are consecutive id
    // ranges, so theirs stacked are the file's.
    let mut keys: Option<Vec<DataFrame>> = Some(Vec::new());
    io::write_parquet_parts(
        out,
        edges.windows(2).map(|w| {
            let df = build(io::scan_parquet(typed)?.filter(crate::daily::id_range(w[0], w[1])))?;
            keys = match (keys.take(), crate::daily::id_runs(&df)?) {
                (Some(mut all), Some(part)) => {
                    all.push(part);
                    Some(all)
                }
                _ => None,
            };
            Ok(df)
        }),
        0,
        c,
    )?;
    if let Some(mut parts) = keys.filter(|k| !k.is_empty()) {
        let mut keys = parts.remove(0);
        for part in parts {
            keys.vstack_mut_owned(part)?;
        }
        io::write_stored(&mut keys, &keys_out, c)?;
    }
    Ok(None)
}

/// Writes a pre-aggregate built whole to `out`, and its id runs beside it
/// ([`DAILY_KEYS`]).
fn write_whole_daily(daily: &DataFrame, out: &Path, c: StoreCompression) -> Result<()> {
    io::write_stored(&mut daily.clone(), out, c)?;
    if let Some(mut keys) = crate::daily::id_runs(daily)? {
        io::write_stored(&mut keys, &out.with_file_name(DAILY_KEYS), c)?;
    }
    Ok(())
}

impl Drop for View {
    /// A run that fails before [`View::settle`] still completes the commit
    /// (as when the store was committed before scoring).
    fn drop(&mut self) {
        if let Ok(Some(h)) = self.pending.get_mut().map(Option::take)
            && let Ok(Err(e)) = h.join()
        {
            tracing::warn!(error = %e, "the store's commit failed: the next run ingests this run's files again");
        }
    }
}

/// The customer_id of a sample of `typed`'s `rows`: evenly spaced runs of
/// rows, so that only their row groups are read.
fn sample_ids(typed: &Path, rows: usize) -> Result<DataFrame> {
    // Each run's scan reads the file's metadata (~30 ms at 10^8 rows).
    const RUNS: usize = 16;
    const RUN: usize = 16384;
    let step = (rows / RUNS).max(RUN);
    let runs = (0..rows.div_ceil(step))
        .map(|i| {
            Ok(io::scan_parquet(typed)?
                .select([col("customer_id")])
                .slice((i * step) as i64, RUN as IdxSize))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(concat(runs, UnionArgs::default())?.run()?)
}

/// The days covered by more than one file's span, as closed ranges of
/// days since the epoch: a customer's rows of such a day may sit in
/// several files' pre-aggregates and must be summed. Conservative (a day
/// between two spans that overlap a third may be listed; summing a day
/// held once changes nothing).
pub fn contested_days(spans: &[(i32, i32)]) -> Vec<(i32, i32)> {
    let mut spans = spans.to_vec();
    spans.sort_unstable();
    let mut out: Vec<(i32, i32)> = Vec::new();
    let mut reach: Option<i32> = None;
    for (lo, hi) in spans {
        if let Some(r) = reach
            && lo <= r
        {
            let overlap = (lo, hi.min(r));
            match out.last_mut() {
                Some(last) if overlap.0 <= last.1 + 1 => last.1 = last.1.max(overlap.1),
                _ => out.push(overlap),
            }
        }
        reach = Some(reach.map_or(hi, |r| r.max(hi)));
    }
    out
}

impl View {
    fn segment(&self, seg: &str, name: &str) -> PathBuf {
        self.dir.join(SEGMENTS).join(seg).join(name)
    }

    /// Waits for the store's commit if it runs behind ([`Commit`]); its
    /// error if it failed. A run calls this before it publishes, so that a
    /// published snapshot always comes from a committed store.
    pub fn settle(&self) -> Result<()> {
        let pending = match self.pending.lock() {
            Ok(mut p) => p.take(),
            Err(_) => {
                return Err(Error::Invariant(
                    "the store's commit lock was poisoned".into(),
                ));
            }
        };
        match pending.map(|h| h.join()) {
            None => Ok(()),
            Some(Ok(done)) => done,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether the stored rows have `column` (an optional one: margin_cents, quantity).
    pub fn has(&self, column: &str) -> bool {
        self.files
            .first()
            .is_some_and(|f| f.columns.iter().any(|c| c == column))
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Each stored file's first row date (none when it holds no row) and
    /// identity (the segment it was ingested into, and XXH3): what a kept
    /// tiering depends on ([`crate::snapshot::TieringCache`]). A merge
    /// moves rows without changing them, so it keeps the identity; an
    /// ingest (a changed file, or one typed again) gives a new one.
    pub fn file_identities(&self) -> Vec<(Option<NaiveDate>, String)> {
        self.files
            .iter()
            .map(|f| {
                let origin = if f.origin.is_empty() {
                    &f.segment
                } else {
                    &f.origin
                };
                (f.span.map(|s| s.0), format!("{origin} {}", f.xxh3_128))
            })
            .collect()
    }

    /// The latest date of any stored row.
    pub fn latest(&self) -> Option<NaiveDate> {
        self.files.iter().filter_map(|f| f.span.map(|s| s.1)).max()
    }

    /// The run's inputs as of `as_of` (default: the latest stored date):
    /// the stored transactions cut at that date (later rows listed in the
    /// rejects as `after as_of`), customers and interactions read anew.
    /// `customers`: the customers file as [`ingest::customers_ahead`]
    /// checked it, if it did.
    pub fn ingested(
        &mut self,
        cfg: &Config,
        as_of: Option<NaiveDate>,
        customers: Option<ingest::kept::Ahead>,
    ) -> Result<Ingested> {
        let as_of = match as_of.or(self.latest()) {
            Some(d) => d,
            None => {
                return Err(Error::Usage(format!(
                    "{}: no valid transaction to take the as-of date from; pass --as-of",
                    cfg.inputs.transactions.path
                )));
            }
        };
        let mut rep = TableReport::default();
        let mut rejects = Vec::new();
        let mut paths = Vec::new();
        for seg in segment_names(&self.files) {
            rejects.push(io::scan_parquet(&self.segment(seg, "rejects.parquet"))?.run()?);
            paths.push(self.segment(seg, "typed.parquet"));
        }
        for f in &self.files {
            let r = &f.report;
            rep.files.extend(r.files.iter().cloned());
            rep.rows_read += r.rows_read;
            rep.duplicates_collapsed += r.duplicates_collapsed;
            for (k, v) in &r.rejected {
                *rep.rejected.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.warnings {
                *rep.warnings.entry(k.clone()).or_default() += v;
            }
            let mut kept = r.rows_kept;
            if f.span.is_some_and(|(_, last)| last > as_of) {
                let late = io::scan_parquet(&self.segment(&f.segment, "typed.parquet"))?
                    .slice(f.offset as i64, r.rows_kept as IdxSize)
                    .filter(col("ts").gt(crate::units::date_lit(as_of)))
                    .select([col(LINE), lit(0u32).alias("__file_no")])
                    .run()?;
                self.summary.rows_read += r.rows_kept;
                kept -= late.height();
                rep.excluded_after_as_of += late.height();
                rejects.push(ingest::as_rejects(
                    "transactions",
                    late.lazy(),
                    std::slice::from_ref(&f.name),
                    contract::reason::AFTER_AS_OF,
                )?);
            }
            rep.rows_kept += kept;
        }
        let columns = match self.files.first() {
            Some(f) => f.columns.clone(),
            None => ["customer_id", "txn_id", "ts", "amount_cents"]
                .map(String::from)
                .to_vec(),
        };
        let typed = TypedFile {
            paths,
            rows: rep.rows_kept,
            columns,
        };
        let mut reports = BTreeMap::new();
        reports.insert("transactions".to_string(), rep);
        let (ing, reused) = ingest::with_other_tables(
            cfg,
            as_of,
            typed,
            reports,
            rejects,
            Some(&self.dir),
            &self.dir,
            customers,
        )?;
        self.summary.tables_reused = reused;
        Ok(ing)
    }

    /// The customer × day pre-aggregate keyed by customer_id
    /// ([`crate::daily::daily_by_id`]) of every stored row, for the customers
    /// `part` selects (all with `None`): the files' pre-aggregates stacked,
    /// the days held by several files summed.
    pub fn daily_by_id(&self, part: Option<Expr>) -> Result<LazyFrame> {
        self.settle()?;
        let (segments, spans) = self.dated_segments();
        let contested = contested_days(&spans);
        let mut scans = Vec::new();
        for seg in &segments {
            let lf = io::scan_parquet(&self.segment(seg, "daily.parquet"))?;
            scans.push(match &part {
                Some(p) => lf.filter(p.clone()),
                None => lf,
            });
        }
        if scans.is_empty() {
            let empty =
                io::scan_parquet(&self.segment(&self.files_any()?.segment, "daily.parquet"))?;
            return Ok(empty.limit(0));
        }
        if contested.is_empty() {
            return Ok(concat(scans, UnionArgs::default())?);
        }
        let day = col("ts").cast(DataType::Int32);
        let shared = contested.iter().fold(lit(false), |e, (lo, hi)| {
            e.or(day.clone().gt_eq(lit(*lo)).and(day.clone().lt_eq(lit(*hi))))
        });
        let alone: Vec<LazyFrame> = scans
            .iter()
            .map(|s| s.clone().filter(shared.clone().not()))
            .collect();
        let both: Vec<LazyFrame> = scans
            .into_iter()
            .map(|s| s.filter(shared.clone()))
            .collect();
        let merged = crate::daily::merge_daily(
            concat(both, UnionArgs::default())?,
            self.has("margin_cents"),
            self.has("quantity"),
        );
        let mut all = alone;
        all.push(merged);
        Ok(concat(all, UnionArgs::default())?)
    }

    /// The pre-aggregate files of the segments holding rows (absolute paths,
    /// for readers elsewhere: the Spark engine), and whether some day is held
    /// by several of them (then a customer's rows of that day must be summed
    /// across files, as [`View::daily_by_id`] does).
    pub fn daily_files(&self) -> Result<(Vec<PathBuf>, bool)> {
        self.settle()?;
        let (mut segments, spans) = self.dated_segments();
        if segments.is_empty() {
            // No row: the (empty) pre-aggregate of any file gives the schema.
            segments.push(&self.files_any()?.segment);
        }
        let paths = segments
            .iter()
            .map(|seg| {
                let p = self.segment(seg, "daily.parquet");
                p.canonicalize().map_err(Error::io(&p))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((paths, !contested_days(&spans).is_empty()))
    }

    /// The stored files' pre-aggregates (as [`View::daily_per_file`] would
    /// read them) when this run built them all; once.
    pub fn take_fresh_daily(&self) -> Option<Vec<DataFrame>> {
        self.fresh_daily.lock().ok()?.take()
    }

    /// The segments holding rows, and their spans (their files' together)
    /// in days since the epoch.
    fn dated_segments(&self) -> (Vec<&str>, Vec<(i32, i32)>) {
        let mut segments = Vec::new();
        let mut spans = Vec::new();
        for seg in segment_names(&self.files) {
            let span = self
                .files
                .iter()
                .filter(|f| f.segment == seg)
                .filter_map(|f| f.span)
                .map(|(a, b)| (crate::units::epoch_days(a), crate::units::epoch_days(b)))
                .reduce(|x, y| (x.0.min(y.0), x.1.max(y.1)));
            if let Some(span) = span {
                segments.push(seg);
                spans.push(span);
            }
        }
        (segments, spans)
    }

    /// Each segment's pre-aggregate (sorted by customer_id and day), when no
    /// two segments share a day: then stacking them is the store's whole
    /// pre-aggregate ([`View::daily_by_id`] without the merge). `None`
    /// when some day is held by several files.
    pub fn daily_per_file(&self) -> Result<Option<Vec<LazyFrame>>> {
        self.settle()?;
        if !self.days_disjoint() {
            return Ok(None);
        }
        let (segments, _) = self.dated_segments();
        let scans = segments
            .iter()
            .map(|seg| io::scan_parquet(&self.segment(seg, "daily.parquet")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(scans))
    }

    /// Whether some segment holds rows and no two share a day: when
    /// [`View::daily_per_file`] gives the files (read nothing).
    pub fn days_disjoint(&self) -> bool {
        let (segments, spans) = self.dated_segments();
        !segments.is_empty() && contested_days(&spans).is_empty()
    }

    /// [`View::daily_per_file`] as the fast plan merges them
    /// ([`crate::daily::stack_keyed`]): each segment's pre-aggregate
    /// without its customer_id column, with its [`DAILY_KEYS`]. `None`
    /// where `daily_per_file` is, or when a segment has no keys file (one
    /// written before they were kept).
    pub fn daily_keyed_per_file(&self) -> Result<Option<Vec<(LazyFrame, LazyFrame)>>> {
        self.settle()?;
        let (segments, spans) = self.dated_segments();
        if segments.is_empty() || !contested_days(&spans).is_empty() {
            return Ok(None);
        }
        if !segments
            .iter()
            .all(|seg| self.segment(seg, DAILY_KEYS).exists())
        {
            return Ok(None);
        }
        let scans = segments
            .iter()
            .map(|seg| {
                Ok((
                    io::scan_parquet(&self.segment(seg, "daily.parquet"))?
                        .drop(cols(["customer_id"])),
                    io::scan_parquet(&self.segment(seg, DAILY_KEYS))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(scans))
    }

    fn files_any(&self) -> Result<&StoredFile> {
        self.files.first().ok_or_else(|| {
            Error::Invariant(format!("{}: the store holds no file", self.dir.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(segment: &str, rows: usize) -> StoredFile {
        StoredFile {
            key: PathBuf::from(segment),
            name: segment.into(),
            bytes: 0,
            modified_ns: None,
            xxh3_128: String::new(),
            segment: segment.into(),
            offset: 0,
            origin: segment.into(),
            columns: Vec::new(),
            span: None,
            report: TableReport {
                rows_kept: rows,
                ..Default::default()
            },
        }
    }

    /// Small members alone in their segment are read together, up to
    /// MERGE_ROWS rows a scan; a member sharing its segment, a large one or
    /// one of other columns is read in slices, and a group never spans it.
    #[test]
    fn a_merge_reads_small_whole_segments_together_and_others_in_slices() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut files = vec![
            stored("a", 10),
            stored("b", 20),
            stored("m", 5),
            stored("m", 7),
            stored("c", 30),
            stored("d", MERGE_ROWS as usize + 1),
            stored("e", MERGE_ROWS as usize / 2 + 1),
            stored("f", MERGE_ROWS as usize / 2),
            stored("g", 3),
        ];
        for f in files.iter_mut() {
            f.columns = cols(&["customer_id", "ts"]);
        }
        files[3].offset = 5;
        files[8].columns = cols(&["ts", "customer_id"]);
        let got: Vec<String> = merge_pieces(&files, &(0..files.len()).collect::<Vec<_>>())
            .iter()
            .map(|p| match p {
                Piece::Slice(i, start) => format!("{i}@{start}"),
                Piece::Together(all) => format!("{all:?}"),
            })
            .collect();
        let big = MERGE_ROWS;
        assert_eq!(
            got,
            vec![
                "[0, 1]".to_string(),
                "2@0".into(),
                "3@0".into(),
                "[4]".into(),
                "5@0".into(),
                format!("5@{big}"),
                "[6]".into(),
                "[7]".into(),
                "8@0".into(),
            ]
        );
        // Only some members: the others' segments still count as shared.
        let got: Vec<usize> = match &merge_pieces(&files, &[1, 4])[..] {
            [Piece::Together(all)] => all.clone(),
            _ => panic!("one group expected"),
        };
        assert_eq!(got, vec![1, 4]);
    }

    /// A file's pre-aggregate built in customer_id ranges (a budget under
    /// its rows' need) is the one built whole, row for row; and each is
    /// the customer × day sums of the rows (checked on a hand-made day).
    #[test]
    fn the_pre_aggregate_built_in_parts_is_the_one_built_whole() {
        let dir = io::WorkDir::create_tagged(&std::env::temp_dir(), "daily-parts-test").unwrap();
        let mut next = crate::testing::lcg(5u64);
        let n = 6000;
        let ids: Vec<String> = (0..n).map(|_| format!("c{}", next() % 700)).collect();
        let day: Vec<i32> = (0..n).map(|_| 14_000 + (next() % 30) as i32).collect();
        let amount: Vec<i64> = (0..n).map(|_| next() as i64 % 5000 - 1000).collect();
        let margin: Vec<i64> = (0..n).map(|_| next() as i64 % 300).collect();
        let quantity: Vec<f64> = (0..n).map(|_| (next() % 5) as f64).collect();
        let mut typed = df!(
            "customer_id" => &ids,
            "ts" => &day,
            "amount_cents" => &amount,
            "margin_cents" => &margin,
            "quantity" => &quantity,
        )
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(DataType::Date))
        .collect()
        .unwrap();
        let path = dir.path().join("typed.parquet");
        io::write_stored(&mut typed, &path, StoreCompression::Lz4).unwrap();
        let columns: Vec<String> = typed
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let whole = dir.path().join("whole.parquet");
        let parts = dir.path().join("parts.parquet");
        let need = n as u64 * SORTED_BYTES_PER_ROW;
        let c = StoreCompression::default();
        // Built whole behind the run: returned unwritten, written after.
        let built = write_daily(&path, &columns, n, &whole, need, c, true)
            .unwrap()
            .unwrap();
        assert!(!whole.exists());
        write_whole_daily(&built, &whole, c).unwrap();
        assert!(
            write_daily(&path, &columns, n, &parts, need / 3, c, true)
                .unwrap()
                .is_none()
        );
        let read = |p: &Path| io::scan_parquet(p).unwrap().collect().unwrap();
        let (whole, parts) = (read(&whole), read(&parts));
        assert!(
            whole.height() > 700 && whole.height() < n,
            "{}",
            whole.height()
        );
        assert!(whole.equals_missing(&parts), "{whole}\n{parts}");
        // One customer's day, summed by hand from the rows.
        let (c, d) = (&ids[0], day[0]);
        let rows: Vec<usize> = (0..n).filter(|&i| &ids[i] == c && day[i] == d).collect();
        let net: i64 = rows.iter().map(|&i| amount[i]).sum();
        let bought = rows.iter().filter(|&&i| amount[i] > 0).count() as i64;
        let got = whole
            .lazy()
            .filter(
                col("customer_id")
                    .eq(lit(c.as_str()))
                    .and(col("ts").cast(DataType::Int32).eq(lit(d))),
            )
            .collect()
            .unwrap();
        assert_eq!(got.height(), 1);
        assert_eq!(
            got.column("net_cents").unwrap().i64().unwrap().get(0),
            Some(net)
        );
        assert_eq!(
            got.column("purchases").unwrap().i64().unwrap().get(0),
            Some(bought)
        );
    }

    #[test]
    fn compaction_merges_the_small_segments_once_there_are_too_many() {
        // A history and three nights (1000 rows in all): at most 4
        // segments kept as they are.
        let files = vec![
            stored("s1", 940),
            stored("s2", 20),
            stored("s3", 20),
            stored("s4", 20),
        ];
        assert_eq!(compaction(&files, 4), None);
        assert_eq!(compaction(&files, 0), None);
        // Over 3: each night holds at most 1/3 of the rows, the history not.
        assert_eq!(compaction(&files, 3), Some(vec![1, 2, 3]));
        // Files sharing a segment count once and move together, in store
        // order. 1930 rows over 4 segments at most: s2 (two files, 20 rows)
        // and s3 are small, s4 and s5 (500 each) are over 1/4 of them.
        let files = vec![
            stored("s1", 900),
            stored("s2", 10),
            stored("s3", 10),
            stored("s4", 500),
            stored("s2", 10),
            stored("s5", 500),
        ];
        assert_eq!(segment_names(&files), vec!["s1", "s2", "s3", "s4", "s5"]);
        assert_eq!(compaction(&files, 4), Some(vec![1, 2, 4]));
        // Equal segments: all are small.
        let even = vec![stored("a", 10), stored("b", 10), stored("c", 10)];
        assert_eq!(compaction(&even, 2), Some(vec![0, 1, 2]));
    }

    #[test]
    fn contested_days_are_where_spans_overlap() {
        // Disjoint nightly files: nothing to merge.
        assert!(contested_days(&[(1, 10), (11, 11), (12, 12)]).is_empty());
        // A night's file with late rows for days 8..9 of the history.
        assert_eq!(contested_days(&[(1, 10), (8, 11)]), vec![(8, 10)]);
        // Nested and chained overlaps; adjacent overlaps merge into one
        // range; the order of the input does not matter.
        assert_eq!(
            contested_days(&[(5, 6), (1, 10), (9, 12), (12, 14), (13, 20)]),
            vec![(5, 6), (9, 10), (12, 14)]
        );
        // The same day twice.
        assert_eq!(contested_days(&[(3, 3), (3, 3)]), vec![(3, 3)]);
    }
}
