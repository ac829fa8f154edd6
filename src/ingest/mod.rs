//! Ingest: raw CSV/Parquet extracts → validated, typed frames, with every
//! rejected row kept in a rejects table (file, line, reason, value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use serde::Serialize;

use crate::config::Config;
use crate::contract::reason;
use crate::error::{Error, Result};
use crate::ingest::checks::split;
use crate::ingest::read::load_table;
use crate::ingest::rejects::{drop_duplicates, lazy};
use crate::ingest::stage::{POS, stage_table};
use crate::io::{self, LINE};
use crate::io::{Run, WorkDir};

mod checks;
pub(crate) mod hashes;
mod incremental;
pub(crate) mod kept;
mod parse;
mod read;
mod rejects;
mod stage;

pub(crate) use incremental::{History, stage_new};
pub use parse::{
    amount_text, cents_from, clean_str, map_kind, parse_cents, parse_date, parse_date_text,
};
// Read by the Spark engine's ingest (`--features spark`).
#[cfg_attr(not(feature = "spark"), allow(unused_imports))]
pub(crate) use checks::checks_for;
#[cfg_attr(not(feature = "spark"), allow(unused_imports))]
pub(crate) use read::resolve_columns;
pub use rejects::check_listed;
pub(crate) use rejects::{as_rejects, id_hash};

/// One input file as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct InputFileInfo {
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified_unix: Option<u64>,
    /// XXH3-128 of the file's bytes, hex.
    pub xxh3_128: String,
    pub rows: usize,
}

/// Counts for one table.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct TableReport {
    pub files: Vec<InputFileInfo>,
    pub rows_read: usize,
    /// Rows kept after validation, exclusion and de-duplication.
    pub rows_kept: usize,
    /// Invalid rows by reason (these count against the reject ratio).
    pub rejected: BTreeMap<String, usize>,
    /// Valid rows dated after the as-of date (kept out, listed in rejects).
    pub excluded_after_as_of: usize,
    /// Duplicate ids collapsed to their first occurrence.
    pub duplicates_collapsed: usize,
    /// Optional values that did not parse (the row is kept, the value null),
    /// by column, e.g. "unparseable margin".
    pub warnings: BTreeMap<String, usize>,
}

impl TableReport {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// A typed table ingest wrote to Parquet (one file, or the store's files
/// in store order): scanned, never held whole.
#[derive(Debug, Clone)]
pub struct TypedFile {
    pub paths: Vec<PathBuf>,
    /// Rows dated on or before the run's as-of date.
    pub rows: usize,
    /// The typed columns (bookkeeping such as the store's line left out).
    pub columns: Vec<String>,
}

impl TypedFile {
    /// Every row of every file, the typed columns only.
    pub fn scan(&self) -> Result<LazyFrame> {
        let names: Vec<Expr> = self.columns.iter().map(|c| col(c.as_str())).collect();
        let scans = self
            .paths
            .iter()
            .map(|p| Ok(io::scan_parquet(p)?.select(names.clone())))
            .collect::<Result<Vec<_>>>()?;
        match scans.len() {
            1 => Ok(scans.into_iter().next().unwrap_or_default()),
            _ => Ok(concat(scans, UnionArgs::default())?),
        }
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}

/// The validated inputs of one run.
pub struct Ingested {
    /// customer_id, txn_id, ts (Date), amount_cents (Int64), optional
    /// columns: `<dir>/transactions.parquet`, streamed there by ingest.
    pub transactions: TypedFile,
    /// customer_id, region, industry, optional columns.
    pub customers: DataFrame,
    /// customer_id, ts (Date), kind, optional columns: in the files the
    /// ingest checked them into (never held whole here).
    pub interactions: Option<Interactions>,
    /// table, file, line, reason, value.
    pub rejects: DataFrame,
    pub report: BTreeMap<String, TableReport>,
    /// The as-of date applied (given, or the latest transaction date).
    pub as_of: NaiveDate,
    /// Transaction rows this process read (from the input files or the
    /// store's typed copy); 0 on the Spark engine.
    pub transaction_rows_read_locally: usize,
    /// By table (customers, interactions): what its typed frame was made
    /// from, when the store kept it (the kept entry, and the as-of date
    /// for interactions): `_ingest/` is not rewritten from the same.
    pub typed_from: BTreeMap<String, String>,
}

/// The interactions kept: the files their ingest checked them into (one
/// per input file, in order: its valid rows with their lines), read as of
/// the as-of date.
#[derive(Clone)]
pub struct Interactions {
    files: Vec<PathBuf>,
    /// Each file's latest date (days since 1970-01-01; `None`: no row or
    /// not known): a file dated no later than the as-of date is not read
    /// for rows after it.
    latest: Vec<Option<i32>>,
    as_of: NaiveDate,
    /// The folder holding the files when there is no store (removed with
    /// the last clone).
    _scratch: Option<std::sync::Arc<WorkDir>>,
}

impl Interactions {
    /// Every interaction dated on or before the as-of date, file after
    /// file, in the canonical columns.
    pub fn scan(&self) -> Result<LazyFrame> {
        Ok(self.as_of_date(io::scan_parquet_files(&self.files, None)?))
    }

    /// The rows of [`Interactions::scan`] read a piece of about `rows`
    /// rows at a time (a large file's slices, or small files together),
    /// for writing them out without holding them.
    pub fn slices(&self, rows: usize) -> Result<impl Iterator<Item = Result<DataFrame>> + '_> {
        let rows = rows.max(1);
        // (files, the slice of them to read: all when None)
        let mut pieces: Vec<(&[PathBuf], Option<usize>)> = Vec::new();
        let (mut from, mut held) = (0, 0);
        for (i, f) in self.files.iter().enumerate() {
            let n = io::parquet_rows(f)?;
            if n >= rows {
                if from < i {
                    pieces.push((&self.files[from..i], None));
                }
                pieces.extend((0..n).step_by(rows).map(|s| (&self.files[i..=i], Some(s))));
                (from, held) = (i + 1, 0);
            } else {
                held += n;
                if held >= rows {
                    pieces.push((&self.files[from..=i], None));
                    (from, held) = (i + 1, 0);
                }
            }
        }
        if from < self.files.len() {
            pieces.push((&self.files[from..], None));
        }
        Ok(pieces.into_iter().map(move |(files, start)| {
            let mut lf = io::scan_parquet_files(files, None)?;
            if let Some(start) = start {
                lf = lf.slice(start as i64, rows as IdxSize);
            }
            Ok(self.as_of_date(lf).run_whole()?)
        }))
    }

    /// The rows dated after the as-of date, kept out: each one's file
    /// (its place, `__file_no`) and line.
    ///
    /// Only the files whose latest date is after the as-of date (or not
    /// known) are read: the listing scanned all 1,095 files of a daily log
    /// every night (1.4 s), where usually none has such a row.
    fn later(&self) -> Result<DataFrame> {
        let as_of = crate::units::epoch_days(self.as_of);
        let mut files: Vec<PathBuf> = self
            .files
            .iter()
            .zip(self.latest.iter().chain(std::iter::repeat(&None)))
            .filter(|(_, l)| l.is_none_or(|l| l > as_of))
            .map(|(f, _)| f.clone())
            .collect();
        if files.is_empty() {
            // For the columns' types: none of its rows is after the date.
            files = self.files.iter().take(1).cloned().collect();
        }
        let later = io::scan_parquet_files(&files, Some("__entry"))?
            .filter(self.after())
            .select([col("__entry"), col(LINE)])
            .run()?;
        let place: std::collections::HashMap<String, u32> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.to_string_lossy().into_owned(), i as u32))
            .collect();
        let file_no = later
            .column("__entry")?
            .str()?
            .iter()
            .map(|e| {
                e.and_then(|e| place.get(e).copied()).ok_or_else(|| {
                    Error::Invariant(format!("interactions read from an unknown file: {e:?}"))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(later
            .lazy()
            .select([lit(Series::new("__file_no".into(), file_no)), col(LINE)])
            .run_whole()?)
    }

    fn after(&self) -> Expr {
        col("ts").gt(crate::units::date_lit(self.as_of))
    }

    fn as_of_date(&self, rows: LazyFrame) -> LazyFrame {
        rows.filter(self.after().not()).drop(cols([LINE]))
    }
}

pub(crate) fn enforce_ratio(
    table: &str,
    pattern: &str,
    report: &TableReport,
    limit: f64,
) -> Result<()> {
    let rejected = report.rejected_total();
    if report.rows_read == 0 || rejected == 0 {
        return Ok(());
    }
    let ratio = rejected as f64 / report.rows_read as f64;
    if ratio > limit {
        let (why, n) = report
            .rejected
            .iter()
            .max_by_key(|(k, v)| (**v, std::cmp::Reverse((*k).clone())))
            .map(|(k, v)| (k.clone(), *v))
            .unwrap_or_default();
        let file = match report.files.as_slice() {
            [one] => one.path.to_string_lossy().into_owned(),
            _ => format!("{table} ({pattern})"),
        };
        return Err(Error::RejectRatio {
            file,
            rejected,
            total: report.rows_read,
            ratio: ratio * 100.0,
            limit: limit * 100.0,
            top_reason: format!("{why} ({n} rows)"),
        });
    }
    Ok(())
}

fn count_reasons(rejects: &DataFrame, report: &mut TableReport) -> Result<()> {
    if rejects.height() == 0 {
        return Ok(());
    }
    let counts = rejects
        .clone()
        .lazy()
        .group_by([col("reason")])
        .agg([len().alias("n")])
        .run()?;
    let reasons = counts.column("reason")?.str()?.clone();
    let ns = counts.column("n")?.cast(&DataType::UInt64)?;
    let ns = ns.u64()?;
    for (r, n) in reasons.iter().zip(ns.iter()) {
        if let (Some(r), Some(n)) = (r, n) {
            *report.rejected.entry(r.to_string()).or_default() += n as usize;
        }
    }
    Ok(())
}

fn file_names(report: &TableReport) -> Vec<String> {
    report
        .files
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect()
}

/// Reads, validates and types every input. `as_of` None → the latest valid
/// transaction date. Transactions stream file by file through work files
/// into `<dir>/transactions.parquet` (written atomically), so their size is
/// bounded by disk, not memory; so are the interactions (checked into
/// files under `dir`); the customers are read into memory.
pub fn ingest(cfg: &Config, as_of: Option<NaiveDate>, dir: &Path) -> Result<Ingested> {
    let mut reports = BTreeMap::new();
    let mut all_rejects = Vec::new();
    let limit = cfg.ingest.max_reject_ratio;

    // Transactions.
    let input = &cfg.inputs.transactions;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let work = WorkDir::create(dir)?;
    let mut rep = TableReport::default();
    let staged = stage_table(
        "transactions",
        input,
        &cfg.ingest.unknown_label,
        work.path(),
        &mut rep,
        io::expand_inputs("transactions", &input.path)?,
        stage::Typed {
            keep_line: false,
            compression: cfg.store.compression,
            hash_ids: false,
        },
    )?;
    let t = std::time::Instant::now();
    let files = staged
        .iter()
        .map(|s| (s.work.clone(), s.file.clone()))
        .collect();
    let (valid, rejects) = split(
        "transactions",
        files,
        true,
        Some(checks::Spill {
            dir: work.path(),
            rows: rep.files.iter().map(|f| f.rows).collect(),
            apart: staged.iter().map(|s| s.apart).collect(),
        }),
    )?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "rejects split off");
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio("transactions", &input.path, &rep, limit)?;
    all_rejects.push(rejects);
    let as_of = match as_of {
        Some(d) => d,
        None => latest_date(valid.clone())?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no valid transaction to take the as-of date from; pass --as-of",
                input.path
            ))
        })?,
    };
    let names = file_names(&rep);
    // Duplicates collapse before the as-of cut, so a run for an earlier
    // date keeps exactly the rows a backfill over the same files keeps.
    let t = std::time::Instant::now();
    let (valid, dups, later) = drop_duplicates(
        "transactions",
        valid,
        &names,
        "txn_id",
        reason::DUPLICATE_TXN,
    )?;
    rep.duplicates_collapsed = later.height();
    all_rejects.push(dups);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "duplicates checked");
    let after = col("ts").gt(crate::units::date_lit(as_of));
    // Rows after the as-of date, collected once: rejects and positions.
    let future = valid
        .clone()
        .filter(after.clone())
        .select([col("__file_no"), col(LINE), col(POS)])
        .run()?;
    rep.excluded_after_as_of = future.height();
    all_rejects.push(as_rejects(
        "transactions",
        future.clone().lazy(),
        &names,
        reason::AFTER_AS_OF,
    )?);
    rep.warnings = unparsed_optional(valid.filter(after.not()))?;
    // The candidates' rows that must still go: later duplicates and rows
    // after the as-of date.
    let on = [col("__file_no"), col(POS)];
    let dropped = concat(
        [
            later.lazy().select(on.clone()),
            future.lazy().select(on.clone()),
        ],
        UnionArgs::default(),
    )?
    .run()?;
    let path = dir.join("transactions.parquet");
    let t = std::time::Instant::now();
    if let ([only], 0) = (staged.as_slice(), dropped.height()) {
        // The usual case: the one file's candidate is the typed file.
        std::fs::rename(&only.candidate, &path).map_err(Error::io(&path))?;
    } else {
        // A filter, not an anti-join: the rows stay in file order (a
        // streamed join does not keep it), so the file is the same bytes
        // on every run. One scan of every candidate, a row's place in it
        // its file's start plus its place in the file: a union of a scan
        // per file took 17 s for 1,093 daily files (a node per file).
        let mut starts = Vec::with_capacity(staged.len());
        let mut at = 0u64;
        for s in &staged {
            starts.push(at);
            at += io::parquet_rows(&s.candidate)? as u64;
        }
        let file_no = dropped.column("__file_no")?.cast(&DataType::UInt32)?;
        let pos = dropped.column(POS)?.cast(&DataType::UInt64)?;
        let gone: Vec<u64> = file_no
            .u32()?
            .iter()
            .zip(pos.u64()?.iter())
            .map(|(f, p)| match (f, p) {
                (Some(f), Some(p)) => Ok(starts[f as usize] + p),
                _ => Err(Error::Invariant("a dropped row without its place".into())),
            })
            .collect::<Result<_>>()?;
        let candidates: Vec<PathBuf> = staged.iter().map(|s| s.candidate.clone()).collect();
        let kept = io::scan_parquet_files(&candidates, None)?
            .with_row_index(POS, None)
            .filter(
                col(POS)
                    .cast(DataType::UInt64)
                    .is_in(lit(Series::new("k".into(), gone)).implode(false), false)
                    .not(),
            )
            .drop(cols([POS]));
        crate::io::write_atomically(&path, |tmp| {
            io::sink_parquet(kept, tmp, cfg.store.compression)
        })?;
    }
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "typed transactions written"
    );
    drop(work);
    let transactions = typed_file(path)?;
    rep.rows_kept = transactions.rows;
    reports.insert("transactions".to_string(), rep);
    Ok(with_other_tables(
        cfg,
        as_of,
        transactions,
        reports,
        all_rejects,
        None,
        dir,
        None,
    )?
    .0)
}

/// The customers file's rows checked, deduplicated and sorted by
/// customer_id.
fn check_customers(cfg: &Config, files: Vec<InputFileInfo>) -> Result<kept::Checked> {
    let (valid, rejects, mut rep) = read_checked("customers", &cfg.inputs.customers, cfg, files)?;
    let (valid, dups, later) = drop_duplicates(
        "customers",
        valid,
        &file_names(&rep),
        "customer_id",
        reason::DUPLICATE_CUSTOMER,
    )?;
    rep.duplicates_collapsed = later.height();
    // Ids are distinct by now, so any sort by them gives these rows; an
    // export usually comes in id order already, which one pass tells (a
    // polars sort of 10^6 ids: ~0.1 s of a night whose customers file was
    // exported again).
    let customers = crate::order::sorted_and_flagged(without_bookkeeping(valid).run()?)?;
    rep.rows_kept = customers.height();
    Ok(kept::Checked {
        valid: customers,
        rejects: stacked(rejects, dups)?,
        report: rep,
    })
}

/// The customers file checked now, unless the store under `store` keeps
/// it ([`kept::build_ahead`]): a cold run checks it beside the staging of
/// the transactions, whose store update leaves a core idle at times,
/// rather than after it.
pub fn customers_ahead(cfg: &Config, store: &Path) -> Option<kept::Ahead> {
    kept::build_ahead("customers", &cfg.inputs.customers, cfg, store, |files| {
        check_customers(cfg, files)
    })
}

/// The rest of an ingest once the transactions are typed: customers (a
/// current-state extract, read whole) and interactions (a log, checked in
/// windows into a file per input file), each read back as checked from
/// the store under `store` when their bytes and settings are unchanged
/// (see [`kept`]), and the rejects table of all three tables. Without a
/// store the interactions' files go to a work folder under
/// `scratch_parent`, held by the result. Also returns the tables read back
/// from the store.
///
/// `customers_ahead`: the customers file as [`customers_ahead`] checked it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn with_other_tables(
    cfg: &Config,
    as_of: NaiveDate,
    transactions: TypedFile,
    mut reports: BTreeMap<String, TableReport>,
    mut all_rejects: Vec<DataFrame>,
    store: Option<&Path>,
    scratch_parent: &Path,
    customers_ahead: Option<kept::Ahead>,
) -> Result<(Ingested, Vec<String>)> {
    let limit = cfg.ingest.max_reject_ratio;
    let mut reused = Vec::new();
    let mut typed_from = BTreeMap::new();
    // Customers. The reject ratio is checked again on a kept table: the
    // limit is not part of its name.
    let input = &cfg.inputs.customers;
    let (c, hit, from) = kept::checked("customers", input, cfg, store, customers_ahead, |files| {
        check_customers(cfg, files)
    })?;
    if hit {
        reused.push("customers".to_string());
    }
    if let Some(from) = from {
        typed_from.insert("customers".to_string(), from);
    }
    enforce_ratio("customers", &input.path, &c.report, limit)?;
    all_rejects.push(c.rejects);
    reports.insert("customers".to_string(), c.report);
    let customers = c.valid;
    unmapped_values(cfg, &customers)?;

    // Interactions (optional): a log that grows (a file a day in a drop
    // folder, say), checked file by file in windows and kept as each
    // file's entry, so a night checks only its new file; the rows stay in
    // those files (see `kept::log_per_file`). The reject ratio is checked
    // below, over all the files.
    let interactions = match &cfg.inputs.interactions {
        None => None,
        Some(input) => {
            let stage = |file: InputFileInfo, work: &Path| {
                let mut rep = TableReport::default();
                let to = stage::Typed {
                    keep_line: true,
                    compression: cfg.store.compression,
                    hash_ids: false,
                };
                let unknown = &cfg.ingest.unknown_label;
                let mut staged = stage_table(
                    "interactions",
                    input,
                    unknown,
                    work,
                    &mut rep,
                    vec![file.path],
                    to,
                )?;
                let one = staged.pop().expect("one file staged");
                let (_, rejects) = split("interactions", vec![(one.work, one.file)], false, None)?;
                count_reasons(&rejects, &mut rep)?;
                let latest = io::scan_parquet(&one.candidate)?
                    .select([col("ts").cast(DataType::Int32).max()])
                    .run_whole()?;
                Ok(kept::StagedFile {
                    valid: one.candidate,
                    rejects: Some(rejects),
                    report: rep,
                    latest: latest.column("ts")?.i32()?.get(0),
                })
            };
            let scratch = match store {
                Some(_) => None,
                None => Some(std::sync::Arc::new(WorkDir::create_tagged(
                    scratch_parent,
                    "interactions",
                )?)),
            };
            let dir = scratch.as_ref().map_or(scratch_parent, |w| w.path());
            let t = std::time::Instant::now();
            let (log, hit, from) =
                kept::log_per_file("interactions", input, cfg, store, dir, stage)?;
            tracing::debug!(
                ms = t.elapsed().as_millis() as u64,
                files = log.files.len(),
                "interactions checked or read back"
            );
            if hit {
                reused.push("interactions".to_string());
            }
            if let Some(from) = from {
                // Rows after the as-of date are set aside below.
                typed_from.insert("interactions".to_string(), format!("{from} as of {as_of}"));
            }
            let mut rep = log.report;
            enforce_ratio("interactions", &input.path, &rep, limit)?;
            all_rejects.push(log.rejects);
            let logged = Interactions {
                files: log.files,
                latest: log.latest,
                as_of,
                _scratch: scratch,
            };
            let future = as_rejects(
                "interactions",
                logged.later()?.lazy(),
                &file_names(&rep),
                reason::AFTER_AS_OF,
            )?;
            rep.excluded_after_as_of = future.height();
            tracing::debug!(
                ms = t.elapsed().as_millis() as u64,
                "interactions after the as-of date listed"
            );
            all_rejects.push(future);
            // Interactions have no duplicates to collapse.
            rep.rows_kept = rep.rows_read - rep.rejected_total() - rep.excluded_after_as_of;
            reports.insert("interactions".to_string(), rep);
            Some(logged)
        }
    };

    let rejects = concat(
        all_rejects
            .into_iter()
            .map(|d| d.lazy())
            .collect::<Vec<_>>(),
        UnionArgs::default(),
    )?
    .sort(
        ["table", "file", "line"],
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .run()?;
    let transaction_rows_read_locally = reports.get("transactions").map_or(0, |r| r.rows_read);
    let ing = Ingested {
        transaction_rows_read_locally,
        transactions,
        customers,
        interactions,
        rejects,
        report: reports,
        as_of,
        typed_from,
    };
    Ok((ing, reused))
}

/// A table's files (`files`: their identities) read and checked: its
/// valid rows, its rejects and its counts. A table over the reject ratio
/// fails here, before any further work.
fn read_checked(
    table: &'static str,
    input: &crate::config::InputFile,
    cfg: &Config,
    files: Vec<InputFileInfo>,
) -> Result<(LazyFrame, DataFrame, TableReport)> {
    let mut rep = TableReport::default();
    let files = load_table(table, input, &cfg.ingest.unknown_label, &mut rep, files)?;
    let (valid, rejects) = split(table, lazy(files), false, None)?;
    count_reasons(&rejects, &mut rep)?;
    enforce_ratio(table, &input.path, &rep, cfg.ingest.max_reject_ratio)?;
    Ok((valid, rejects, rep))
}

/// Two reject tables as one.
fn stacked(a: DataFrame, b: DataFrame) -> Result<DataFrame> {
    Ok(concat([a.lazy(), b.lazy()], UnionArgs::default())?.run()?)
}

/// Refuses text attribute values a scorecard has no points for: scoring
/// them 0 would grade those customers silently wrong. The error names the
/// criterion's key, the values (most customers first) and what is mapped.
pub fn unmapped_values(cfg: &Config, customers: &DataFrame) -> Result<()> {
    for s in &cfg.scorecards {
        for c in s.criteria.iter().filter(|c| !c.points_by_value.is_empty()) {
            let values = customers.column(c.measure.as_str())?.str()?;
            let mut unmapped: BTreeMap<&str, usize> = BTreeMap::new();
            for v in values.iter().flatten() {
                if !c.points_by_value.contains_key(v) {
                    *unmapped.entry(v).or_default() += 1;
                }
            }
            if unmapped.is_empty() {
                continue;
            }
            let mut by_count: Vec<(&str, usize)> = unmapped.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = by_count
                .iter()
                .take(5)
                .map(|(v, n)| format!("'{v}' ({n} customers)"))
                .collect();
            let more = match by_count.len() {
                n if n > 5 => format!(" and {} more", n - 5),
                _ => String::new(),
            };
            let mapped: Vec<&str> = c.points_by_value.keys().map(String::as_str).collect();
            return Err(Error::invalid(
                &format!(
                    "scorecards[{}].criteria[{}].points_by_value",
                    s.name, c.name
                ),
                format!(
                    "no points for {} of {}: {}{more} (mapped: {})",
                    if by_count.len() == 1 {
                        "a value"
                    } else {
                        "values"
                    },
                    c.measure,
                    shown.join(", "),
                    mapped.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The latest `ts` of a transactions query.
pub fn latest_date(valid: LazyFrame) -> Result<Option<NaiveDate>> {
    let max = valid
        .select([col("ts").cast(DataType::Int32).max().alias("ts")])
        .run()?;
    Ok(max
        .column("ts")?
        .i32()?
        .get(0)
        .map(crate::units::from_epoch_days))
}

/// Counts optional values (margin, quantity) that had text but did not
/// parse (the row is kept, the value null).
fn unparsed_optional(mut kept: LazyFrame) -> Result<BTreeMap<String, usize>> {
    let schema = kept.collect_schema()?;
    let mut counts = Vec::new();
    // The raw text is kept only where the parse failed
    // (`only_where_needed`), so any text left is an unparsed value.
    for (text, label) in [
        ("__margin", "unparseable margin"),
        ("__quantity", "unparseable quantity"),
    ] {
        if schema.contains(text) {
            counts.push(
                col(text)
                    .is_not_null()
                    .sum()
                    .cast(DataType::Int64)
                    .alias(label),
            );
        }
    }
    let mut warnings = BTreeMap::new();
    if counts.is_empty() {
        return Ok(warnings);
    }
    let df = kept.select(counts).run()?;
    for c in df.columns() {
        let n = c.i64()?.get(0).unwrap_or(0);
        if n > 0 {
            warnings.insert(c.name().to_string(), n as usize);
        }
    }
    Ok(warnings)
}

/// The row count and columns of a Parquet file ingest wrote.
pub fn typed_file(path: PathBuf) -> Result<TypedFile> {
    let mut lf = io::scan_parquet(&path)?;
    let columns = lf
        .collect_schema()?
        .iter_names()
        .map(|n| n.to_string())
        .filter(|n| n != LINE)
        .collect();
    let n = lf.select([len().cast(DataType::UInt64).alias("n")]).run()?;
    let rows = n.column("n")?.u64()?.get(0).unwrap_or(0) as usize;
    Ok(TypedFile {
        paths: vec![path],
        rows,
        columns,
    })
}

/// Drops the line and file-number columns every table carries through ingest.
fn without_bookkeeping(valid: LazyFrame) -> LazyFrame {
    valid.drop(cols([LINE, "__file_no"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interactions read a slice at a time are the scan's rows: every
    /// file's, in order, none after the as-of date, without their lines.
    #[test]
    fn interactions_read_in_slices_are_the_scans_rows() {
        let dir = std::env::temp_dir().join(format!("tiering-inter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2010, 12, d).unwrap();
        let file = |name: &str, days: &[u32]| {
            let mut df = df!(
                LINE => (2..days.len() as u64 + 2).collect::<Vec<_>>(),
                "customer_id" => days.iter().map(|d| format!("c{d}")).collect::<Vec<_>>(),
                "ts" => days.iter().map(|&d| day(d)).collect::<Vec<_>>(),
            )
            .unwrap();
            let path = dir.join(name);
            io::write_parquet(&mut df, &path).unwrap();
            path
        };
        let i = Interactions {
            files: vec![
                file("a.parquet", &[1, 30, 31, 2, 31]),
                file("b.parquet", &[31, 5]),
                file("c.parquet", &[3]),
            ],
            latest: vec![
                Some(crate::units::epoch_days(day(31))),
                None,
                Some(crate::units::epoch_days(day(3))),
            ],
            as_of: day(30),
            _scratch: None,
        };
        let scanned = i.scan().unwrap().run_whole().unwrap();
        let ids: Vec<Option<&str>> = scanned
            .column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ids, ["c1", "c30", "c2", "c5", "c3"].map(Some));
        assert_eq!(scanned.get_column_names(), ["customer_id", "ts"]);
        // The rows after the as-of date: a's two 31sts and b's (its latest
        // date unknown), not c, whose latest date is before it.
        let later = i.later().unwrap();
        let got: Vec<(u64, u64)> = crate::testing::u64s(&later, "__file_no")
            .into_iter()
            .zip(crate::testing::u64s(&later, LINE))
            .collect();
        assert_eq!(got, vec![(0, 4), (0, 6), (1, 2)]);
        // No file after the date: nothing read but the columns.
        let none = Interactions {
            as_of: day(31),
            ..i.clone()
        };
        assert_eq!(none.later().unwrap().height(), 0);
        for rows in [1, 2, 3, 10] {
            let slices: Vec<DataFrame> = i.slices(rows).unwrap().collect::<Result<_>>().unwrap();
            // A large file's slices hold `rows`; small files together, fewer than twice that.
            assert!(slices.iter().all(|s| s.height() < 2 * rows));
            let mut stacked = slices[0].clone();
            for s in &slices[1..] {
                stacked.vstack_mut(s).unwrap();
            }
            assert!(stacked.equals(&scanned), "{rows} rows a slice");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
