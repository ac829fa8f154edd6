//! Customers and interactions as checked, kept in the store between runs
//! (`_store/tables/`). A nightly run usually offers the same customers
//! again (checking, deduplicating and sorting 10^6 of them took ~0.8 s of
//! a 10 s night) and an interactions log that only gained a file. Each
//! entry is filed under a hash of everything its checking depends on: the
//! tool's version and revision, the table's input settings, the unknown
//! label, and each file's path and XXH3-128. Any change gives another
//! name, so stale rows are never read; a table's older entries are
//! removed when a new one is written.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::config::{Config, InputFile};
use crate::error::{Error, Result};
use crate::ingest::read::file_identity;
use crate::ingest::{InputFileInfo, TableReport};
use crate::io::{self, Run};

/// The folder under the store.
pub(crate) const TABLES: &str = "tables";

/// One table as checked: what its reading, checking and deduplication
/// give, whatever the run's as-of date.
pub(super) struct Checked {
    /// The valid rows (customers: deduplicated and sorted by customer_id).
    pub valid: DataFrame,
    /// Its rejected rows, duplicates included (table, file, line, reason,
    /// value).
    pub rejects: DataFrame,
    pub report: TableReport,
}

/// `table` as checked: read back from the store under `store` when an
/// earlier run checked the same bytes with the same settings, otherwise
/// built by `build` from the files' identities and kept there. Returns
/// whether it was read back, and the kept entry's name (what the table
/// was made from). Without a store, always built, and no name.
pub(super) fn checked(
    table: &'static str,
    input: &InputFile,
    cfg: &Config,
    store: Option<&Path>,
    ahead: Option<Ahead>,
    build: impl FnOnce(Vec<InputFileInfo>) -> Result<Checked>,
) -> Result<(Checked, bool, Option<String>)> {
    let files = identities(table, input)?;
    // Built ahead from the same files (paths, sizes, times, hashes): the
    // same rows.
    let build = |files: Vec<InputFileInfo>| match ahead {
        Some(a) if a.files == files => Ok(a.checked),
        _ => build(files),
    };
    let Some(store) = store else {
        return Ok((build(files)?, false, None));
    };
    let dir = store.join(TABLES);
    let entry = Entry::named(&dir, table, key(table, input, cfg, &files)?);
    let (c, hit) = entry.read_or_build(cfg, files, build)?;
    prune(&dir, table, &[&entry])?;
    Ok((c, hit, Some(entry.name)))
}

/// A table checked ahead of the run's other ingest ([`build_ahead`]), for
/// [`checked`] to take instead of checking its files again.
pub struct Ahead {
    files: Vec<InputFileInfo>,
    checked: Checked,
}

/// [`checked`]'s `build` done now, unless the store under `store` keeps
/// the table already (it is then read back, not checked). A run does this
/// beside the store's update of the transactions (see
/// `pipeline::store_inputs`); the store is not written here, as that update
/// may start the store over. None too when the check fails: [`checked`]
/// then checks again and reports the error in the usual order.
pub(super) fn build_ahead(
    table: &'static str,
    input: &InputFile,
    cfg: &Config,
    store: &Path,
    build: impl FnOnce(Vec<InputFileInfo>) -> Result<Checked>,
) -> Option<Ahead> {
    let files = identities(table, input).ok()?;
    let entry = Entry::named(
        &store.join(TABLES),
        table,
        key(table, input, cfg, &files).ok()?,
    );
    if entry.paths.report.exists() {
        return None;
    }
    let checked = build(files.clone()).ok()?;
    Some(Ahead { files, checked })
}

/// One file of a log as [`log_per_file`]'s `stage` checks it: its valid
/// rows written to the Parquet file `valid` as they were checked (their
/// lines kept), its rejects and its counts.
pub(super) struct StagedFile {
    pub valid: PathBuf,
    /// `None` when none was rejected (then not read back).
    pub rejects: Option<DataFrame>,
    pub report: TableReport,
    /// The latest date of its valid rows (days since 1970-01-01).
    pub latest: Option<i32>,
}

/// What a log entry's report file holds: the file's counts, and the
/// latest date of its rows (so a run need not read the rows to know that
/// none is after its as-of date).
#[derive(serde::Serialize, serde::Deserialize)]
struct LogReport {
    report: TableReport,
    latest: Option<i32>,
}

/// A log's files as checked: the files of their valid rows (one per input
/// file, in order; never read whole here), the rejects and the counts.
pub(super) struct Log {
    pub files: Vec<PathBuf>,
    /// Each file's latest date (see [`StagedFile::latest`]).
    pub latest: Vec<Option<i32>>,
    pub rejects: DataFrame,
    pub report: TableReport,
}

/// A table whose files are a log that grows (interactions in a drop
/// folder: one file a day), checked file by file and kept in the store as
/// each file's entry, so a run checks only the files it has not seen.
/// `stage(file, dir)` checks one file, writing its valid rows to a file in
/// the work folder `dir`; that file becomes the entry's. Without a store
/// the entries go to `scratch` and are never read back. Returns whether
/// every file was read back, and a name for the set of entries.
///
/// Why the rows stay on disk: 5·10^6 interactions took ~0.56 GB as a
/// frame and the CSV reader peaked near twice that, whatever
/// `--memory-limit` said; scanned, each consumer reads the columns it needs.
pub(super) fn log_per_file(
    table: &'static str,
    input: &InputFile,
    cfg: &Config,
    store: Option<&Path>,
    scratch: &Path,
    stage: impl Fn(InputFileInfo, &Path) -> Result<StagedFile> + Sync,
) -> Result<(Log, bool, Option<String>)> {
    let files = identities(table, input)?;
    let dir = match store {
        Some(store) => store.join(TABLES),
        None => scratch.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let (mut paths, mut rejects) = (Vec::new(), Vec::new());
    let mut latest = Vec::new();
    let mut report = TableReport::default();
    let mut all_hit = store.is_some();
    let entries = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            Ok(match store {
                Some(_) => Entry::named(
                    &dir,
                    table,
                    key(table, input, cfg, std::slice::from_ref(file))?,
                ),
                None => Entry::named(&dir, table, i as u128),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // New files checked two at a time (a first load of a file a day).
    let one = |i: usize| entries[i].read_or_stage(cfg, files[i].clone(), store, &stage);
    let small = super::stage::small_files(files.iter().map(|f| f.bytes));
    let done = crate::pool::two_lanes(files.len(), small, one);
    for r in done {
        // A slot left empty follows an error, returned first.
        let (staged, hit) = r.expect("an earlier file failed")?;
        all_hit &= hit;
        paths.push(staged.valid);
        latest.push(staged.latest);
        if let Some(r) = staged.rejects {
            rejects.push(r.lazy());
        }
        add_report(&mut report, staged.report);
    }
    if store.is_some() {
        prune(&dir, table, &entries.iter().collect::<Vec<_>>())?;
    }
    let name = store.map(|_| {
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        match names.as_slice() {
            [one] => one.to_string(),
            _ => format!(
                "{table}-{:032x}",
                xxhash_rust::xxh3::xxh3_128(names.join("\n").as_bytes())
            ),
        }
    });
    // io::expand_inputs refuses a pattern that matches no file.
    let rejects = match rejects.is_empty() {
        // None rejected: the first entry's (empty) rejects, for the columns.
        true => match entries.first() {
            Some(e) => io::scan_parquet(&e.paths.rejects)?.run_whole()?,
            None => super::rejects::no_rejects(),
        },
        false => concat(rejects, UnionArgs::default())?.run_whole()?,
    };
    let log = Log {
        files: paths,
        latest,
        rejects,
        report,
    };
    Ok((log, all_hit, name))
}

/// The files `input` names, with their sizes, times and hashes.
fn identities(table: &'static str, input: &InputFile) -> Result<Vec<InputFileInfo>> {
    io::expand_inputs(table, &input.path)?
        .iter()
        .map(|f| file_identity(f))
        .collect()
}

/// `one`'s counts added into `all` (a table's files, one after another).
fn add_report(all: &mut TableReport, one: TableReport) {
    all.files.extend(one.files);
    all.rows_read += one.rows_read;
    all.rows_kept += one.rows_kept;
    all.excluded_after_as_of += one.excluded_after_as_of;
    all.duplicates_collapsed += one.duplicates_collapsed;
    for (why, n) in one.rejected {
        *all.rejected.entry(why).or_default() += n;
    }
    for (what, n) in one.warnings {
        *all.warnings.entry(what).or_default() += n;
    }
}

/// One kept entry: its name and files.
struct Entry {
    name: String,
    paths: Paths,
}

impl Entry {
    fn named(dir: &Path, table: &str, key: u128) -> Entry {
        let name = format!("{table}-{key:032x}");
        let stem = dir.join(&name);
        let paths = Paths {
            valid: stem.with_extension("parquet"),
            rejects: stem.with_extension("rejects.parquet"),
            report: stem.with_extension("json"),
        };
        Entry { name, paths }
    }

    /// The entry as kept (its files' modification times those of
    /// `files`), or else built by `build` and kept; and whether it was
    /// read back.
    fn read_or_build(
        &self,
        cfg: &Config,
        files: Vec<InputFileInfo>,
        build: impl FnOnce(Vec<InputFileInfo>) -> Result<Checked>,
    ) -> Result<(Checked, bool)> {
        let paths = &self.paths;
        if paths.report.exists() {
            match read(paths) {
                Ok(mut c) => {
                    // Same paths and bytes; only the modification times may
                    // have moved (a copy, a touch).
                    for (kept, now) in c.report.files.iter_mut().zip(&files) {
                        kept.modified_unix = now.modified_unix;
                    }
                    return Ok((c, true));
                }
                Err(e) => {
                    tracing::warn!(entry = %self.name, error = %e, "a kept checked table could not be read; checking the input again");
                }
            }
        }
        let c = build(files)?;
        let dir = paths
            .report
            .parent()
            .expect("an entry lies in the store's folder");
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        // One row group up to 2^21 rows, so that a night reads each column as
        // one chunk (the scoring's gathers and the published table's rechunk
        // then copy nothing more); larger tables in row groups, so the writer
        // holds one group's pages: at 10^7 customers a whole-frame write took
        // 1.8 s and ~0.35 GiB more memory.
        // The report is written last: a table counts as kept only with it.
        let sink = |df: &DataFrame, path: &Path| {
            io::write_atomically(path, |tmp| {
                io::write_stored_whole(&mut df.clone(), tmp, cfg.store.compression)
            })
        };
        sink(&c.valid, &paths.valid)?;
        sink(&c.rejects, &paths.rejects)?;
        let json = serde_json::to_vec(&c.report)
            .map_err(|e| Error::Invariant(format!("table report not serialisable: {e}")))?;
        io::write_atomically(&paths.report, |tmp| {
            std::fs::write(tmp, &json).map_err(Error::io(tmp))
        })?;
        Ok((c, false))
    }
}

impl Entry {
    /// [`Entry::read_or_build`] for one file of a log ([`log_per_file`]):
    /// the entry's counts and rejects read back (its rows stay in their
    /// file), or else the file checked by `stage` in a work folder beside
    /// the entry, its valid rows' file renamed to the entry's. Without
    /// the `store` the entry is always staged (in a scratch folder).
    fn read_or_stage(
        &self,
        cfg: &Config,
        file: InputFileInfo,
        store: Option<&Path>,
        stage: impl FnOnce(InputFileInfo, &Path) -> Result<StagedFile>,
    ) -> Result<(StagedFile, bool)> {
        let paths = &self.paths;
        if store.is_some() && paths.report.exists() {
            match read_log_report(paths) {
                Ok((mut report, rejects, latest)) => {
                    for kept in report.files.iter_mut() {
                        kept.modified_unix = file.modified_unix;
                    }
                    let valid = paths.valid.clone();
                    return Ok((
                        StagedFile {
                            valid,
                            rejects,
                            report,
                            latest,
                        },
                        true,
                    ));
                }
                Err(e) => {
                    tracing::warn!(entry = %self.name, error = %e, "a kept checked table could not be read; checking the input again");
                }
            }
        }
        // In the store's own folder, where a killed run's work folders are
        // removed (`store::sync`); on the same disk as the entry.
        let dir = paths.report.parent().expect("an entry lies in a folder");
        let work = io::WorkDir::create_tagged(store.unwrap_or(dir), &self.name)?;
        let staged = stage(file, work.path())?;
        std::fs::rename(&staged.valid, &paths.valid).map_err(Error::io(&paths.valid))?;
        io::failpoint("interactions_entry_before_report");
        // The report last: an entry counts as kept only with it.
        let rejects = staged.rejects.unwrap_or_else(super::rejects::no_rejects);
        io::write_atomically(&paths.rejects, |tmp| {
            io::write_stored_whole(&mut rejects.clone(), tmp, cfg.store.compression)
        })?;
        let kept = LogReport {
            report: staged.report,
            latest: staged.latest,
        };
        let json = serde_json::to_vec(&kept)
            .map_err(|e| Error::Invariant(format!("table report not serialisable: {e}")))?;
        io::write_atomically(&paths.report, |tmp| {
            std::fs::write(tmp, &json).map_err(Error::io(tmp))
        })?;
        let valid = paths.valid.clone();
        Ok((
            StagedFile {
                valid,
                rejects: Some(rejects),
                report: kept.report,
                latest: kept.latest,
            },
            false,
        ))
    }
}

struct Paths {
    valid: PathBuf,
    rejects: PathBuf,
    report: PathBuf,
}

/// What a table's checking depends on, hashed.
fn key(table: &str, input: &InputFile, cfg: &Config, files: &[InputFileInfo]) -> Result<u128> {
    let settings = serde_json::to_string(input)
        .map_err(|e| Error::Invariant(format!("settings not serialisable: {e}")))?;
    let mut text = format!(
        "{}\n{}\n{table}\n{settings}\n{}",
        env!("CARGO_PKG_VERSION"),
        env!("TIERING_GIT_REV"),
        cfg.ingest.unknown_label
    );
    for f in files {
        text.push_str(&format!("\n{}\n{}", f.path.display(), f.xxh3_128));
    }
    Ok(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

fn read(paths: &Paths) -> Result<Checked> {
    let (report, rejects) = read_report(paths)?;
    Ok(Checked {
        valid: io::scan_parquet(&paths.valid)?.run()?,
        rejects,
        report,
    })
}

/// A log entry's counts, rejects (`None`, and not read, when none was
/// rejected: most files of a log, and ~1 ms each) and latest date.
fn read_log_report(paths: &Paths) -> Result<(TableReport, Option<DataFrame>, Option<i32>)> {
    let bytes = std::fs::read(&paths.report).map_err(Error::io(&paths.report))?;
    let kept: LogReport = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invariant(format!(
            "{}: not a log entry's report: {e}",
            paths.report.display()
        ))
    })?;
    let rejects = match kept.report.rejected_total() {
        0 => None,
        _ => Some(io::scan_parquet(&paths.rejects)?.run_whole()?),
    };
    Ok((kept.report, rejects, kept.latest))
}

/// An entry's counts and rejects.
fn read_report(paths: &Paths) -> Result<(TableReport, DataFrame)> {
    let bytes = std::fs::read(&paths.report).map_err(Error::io(&paths.report))?;
    let report = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invariant(format!(
            "{}: not a table report: {e}",
            paths.report.display()
        ))
    })?;
    Ok((report, io::scan_parquet(&paths.rejects)?.run()?))
}

/// Removes `table`'s entries other than `keep`: older entries (a file no
/// longer offered, or changed), and the temporary files of a killed run.
fn prune(dir: &Path, table: &str, keep: &[&Entry]) -> Result<()> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let prefix = format!("{table}-");
    let kept = |p: &Path| {
        keep.iter().any(|e| {
            let k = &e.paths;
            p == k.valid || p == k.rejects || p == k.report
        })
    };
    for e in listing.flatten() {
        let p = e.path();
        let ours = e.file_name().to_string_lossy().starts_with(&prefix);
        if ours && !kept(&p) {
            std::fs::remove_file(&p).map_err(Error::io(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, hash: &str) -> InputFileInfo {
        InputFileInfo {
            path: path.into(),
            bytes: 10,
            modified_unix: Some(1),
            xxh3_128: hash.into(),
            rows: 0,
        }
    }

    /// The key names everything checking depends on, and nothing else: a
    /// file's size and modification time do not count, its bytes do.
    #[test]
    fn the_key_changes_with_bytes_paths_and_settings_only() {
        let cfg = Config::default();
        let input = InputFile::default();
        let base = key("customers", &input, &cfg, &[file("c.csv", "aa")]).unwrap();
        let mut touched = file("c.csv", "aa");
        touched.modified_unix = Some(2);
        touched.bytes = 11;
        assert_eq!(key("customers", &input, &cfg, &[touched]).unwrap(), base);

        let differs = |k: u128| assert_ne!(k, base);
        differs(key("customers", &input, &cfg, &[file("c.csv", "ab")]).unwrap());
        differs(key("customers", &input, &cfg, &[file("d.csv", "aa")]).unwrap());
        differs(key("interactions", &input, &cfg, &[file("c.csv", "aa")]).unwrap());
        let two = [file("c.csv", "aa"), file("d.csv", "bb")];
        differs(key("customers", &input, &cfg, &two).unwrap());
        let mut other = input.clone();
        other.delimiter = ';';
        differs(key("customers", &other, &cfg, &[file("c.csv", "aa")]).unwrap());
        let mut label = cfg.clone();
        label.ingest.unknown_label = "n/a".into();
        differs(key("customers", &input, &label, &[file("c.csv", "aa")]).unwrap());
    }

    /// A scratch directory of this test's own (`tag`), its customers file
    /// of one row and an input reading it.
    fn one_customer_file(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, InputFile) {
        let dir = std::env::temp_dir().join(format!("tiering-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("c.csv");
        std::fs::write(&csv, "customer_id\nc1\n").unwrap();
        let input = InputFile {
            path: csv.to_string_lossy().into_owned(),
            ..Default::default()
        };
        (dir, csv, input)
    }

    /// A kept table comes back equal and in one chunk per column, though
    /// it is larger than one of the store's usual row groups (in 2^17-row
    /// groups it came back in 3): a night then copies none of its columns
    /// to join their chunks.
    #[test]
    fn a_kept_table_comes_back_whole() {
        let (dir, _, input) = one_customer_file("kept");
        let cfg = Config::default();
        let n = 300_000;
        let valid = df!(
            "customer_id" => (0..n).map(|i| format!("c{i:07}")).collect::<Vec<_>>(),
            "region" => (0..n).map(|i| format!("r{}", i % 7)).collect::<Vec<_>>(),
        )
        .unwrap();
        let rejects = df!("reason" => ["duplicate customer_id"]).unwrap();
        let store = dir.join("_store");
        let build = |_| {
            Ok(Checked {
                valid: valid.clone(),
                rejects: rejects.clone(),
                report: TableReport::default(),
            })
        };
        let (_, read_back, _) =
            checked("customers", &input, &cfg, Some(&store), None, build).unwrap();
        assert!(!read_back);
        let (back, read_back, _) = checked("customers", &input, &cfg, Some(&store), None, |_| {
            panic!("the kept table was not read back")
        })
        .unwrap();
        assert!(read_back);
        assert!(back.valid.equals(&valid));
        assert!(back.rejects.equals(&rejects));
        let chunks: Vec<usize> = back.valid.columns().iter().map(|c| c.n_chunks()).collect();
        assert_eq!(chunks, vec![1, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A table checked ahead is what `checked` keeps, unless its file
    /// changed since; none is checked ahead when the store keeps it.
    #[test]
    fn a_table_checked_ahead_is_taken_only_for_the_same_files() {
        let (dir, csv, input) = one_customer_file("ahead");
        let cfg = Config::default();
        let store = dir.join("_store");
        let made = |id: &str| Checked {
            valid: df!("customer_id" => [id]).unwrap(),
            rejects: DataFrame::empty(),
            report: TableReport::default(),
        };
        let ids = |c: &Checked| {
            c.valid
                .column("customer_id")
                .unwrap()
                .str()
                .unwrap()
                .get(0)
                .map(String::from)
        };
        // The same file: taken, not checked again, and kept.
        let ahead = build_ahead("customers", &input, &cfg, &store, |_| Ok(made("ahead")));
        let (c, read_back, _) = checked("customers", &input, &cfg, Some(&store), ahead, |_| {
            panic!("checked again")
        })
        .unwrap();
        assert_eq!((ids(&c).as_deref(), read_back), (Some("ahead"), false));
        // Now kept: nothing is checked ahead.
        let none = build_ahead("customers", &input, &cfg, &store, |_| {
            panic!("checked ahead")
        });
        assert!(none.is_none());
        // The file changed after the look ahead: checked again.
        std::fs::remove_dir_all(&store).unwrap();
        let ahead = build_ahead("customers", &input, &cfg, &store, |_| Ok(made("ahead")));
        std::fs::write(&csv, "customer_id\nc2\n").unwrap();
        let (c, _, _) = checked("customers", &input, &cfg, Some(&store), ahead, |_| {
            Ok(made("again"))
        })
        .unwrap();
        assert_eq!(ids(&c).as_deref(), Some("again"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
