//! Customers and interactions as checked, kept in the store between runs
//! (`_store/tables/`). They are current-state extracts read whole on every
//! run; a nightly run usually offers the same bytes again, and checking,
//! deduplicating and sorting 10^6 customers took ~0.8 s of a 10 s nightly
//! run. Each table is filed under a hash of everything its checking
//! depends on: the tool's version and revision, the table's input
//! settings, the unknown label, and each file's path and XXH3-128. Any
//! change gives another name, so stale rows are never read; a table's
//! older entries are removed when a new one is written.

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
    build: impl FnOnce(Vec<InputFileInfo>) -> Result<Checked>,
) -> Result<(Checked, bool, Option<String>)> {
    let files = io::expand_inputs(table, &input.path)?
        .iter()
        .map(|f| file_identity(f))
        .collect::<Result<Vec<_>>>()?;
    let Some(store) = store else {
        return Ok((build(files)?, false, None));
    };
    let dir = store.join(TABLES);
    let name = format!("{table}-{:032x}", key(table, input, cfg, &files)?);
    let stem = dir.join(&name);
    let paths = Paths {
        valid: stem.with_extension("parquet"),
        rejects: stem.with_extension("rejects.parquet"),
        report: stem.with_extension("json"),
    };
    if paths.report.exists() {
        match read(&paths) {
            Ok(mut c) => {
                // Same paths and bytes; only the modification times may
                // have moved (a copy, a touch).
                for (kept, now) in c.report.files.iter_mut().zip(&files) {
                    kept.modified_unix = now.modified_unix;
                }
                prune(&dir, table, &paths)?;
                return Ok((c, true, Some(name)));
            }
            Err(e) => {
                tracing::warn!(table, error = %e, "a kept checked table could not be read; checking the input again");
            }
        }
    }
    let c = build(files)?;
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
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
    prune(&dir, table, &paths)?;
    Ok((c, false, Some(name)))
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
    let bytes = std::fs::read(&paths.report).map_err(Error::io(&paths.report))?;
    let report = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invariant(format!(
            "{}: not a table report: {e}",
            paths.report.display()
        ))
    })?;
    Ok(Checked {
        valid: io::scan_parquet(&paths.valid)?.run()?,
        rejects: io::scan_parquet(&paths.rejects)?.run()?,
        report,
    })
}

/// Removes `table`'s entries other than `keep`: older entries, and the
/// temporary files of a killed run.
fn prune(dir: &Path, table: &str, keep: &Paths) -> Result<()> {
    let prefix = format!("{table}-");
    for e in std::fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        let p = e.path();
        let ours = e.file_name().to_string_lossy().starts_with(&prefix);
        if ours && p != keep.valid && p != keep.rejects && p != keep.report {
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

    /// A kept table comes back equal and in one chunk per column, though
    /// it is larger than one of the store's usual row groups (in 2^17-row
    /// groups it came back in 3): a night then copies none of its columns
    /// to join their chunks.
    #[test]
    fn a_kept_table_comes_back_whole() {
        let dir = std::env::temp_dir().join(format!("tiering-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("c.csv");
        std::fs::write(&csv, "customer_id\nc1\n").unwrap();
        let input = InputFile {
            path: csv.to_string_lossy().into_owned(),
            ..Default::default()
        };
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
        let (_, read_back, _) = checked("customers", &input, &cfg, Some(&store), build).unwrap();
        assert!(!read_back);
        let (back, read_back, _) = checked("customers", &input, &cfg, Some(&store), |_| {
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
}
