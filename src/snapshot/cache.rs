//! Auxiliary tierings kept in the store between runs (`_store/tierings/`).
//!
//! A tiering at an earlier date `d` (a concentration year's end, the
//! migration's quarter end) depends only on the stored rows dated on or
//! before `d`, the customers and interactions inputs and the settings. A
//! nightly run adds a file of later rows, so it can read last night's
//! tierings instead of computing them again (~0.4–0.8 s each at 10^7
//! transactions). Each is filed under a hash of everything it depends on:
//! the tool's version and revision, the settings (as-of date, output root and input
//! paths left out), `d`, the scheme, the store files holding a row on or
//! before `d` (each named by the segment it was ingested into, which a
//! merge of segments keeps: the rows are the same; a changed file is
//! ingested into a new one), and, for a threshold or scorecard scheme, the
//! customers' and interactions' XXH3 hashes. A pyramid tiering reads only
//! the transactions (it holds the customers with a row by `d`), so a
//! night whose customers or interactions extract was exported again
//! still reads it: ~0.2 s saved per tiering at 10^6 customers. Any change
//! gives another name, so a stale tiering is never read; files this run
//! did not use are removed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::snapshot::aux::AuxKey;

/// The folder under the store.
pub const TIERINGS: &str = "tierings";

/// A kept tiering read ahead: its file and its rows.
type Read = (PathBuf, DataFrame);

/// Where a run's auxiliary tierings are looked up and kept.
pub struct TieringCache {
    dir: PathBuf,
    /// The hash input shared by every tiering of the run.
    common: String,
    /// The customers' and interactions' hashes (schemes other than the
    /// pyramid read them).
    inputs: String,
    /// Each stored file's first row date and identity (segment, XXH3).
    files: Vec<(NaiveDate, String)>,
    used: Mutex<Vec<PathBuf>>,
    /// Tierings being written in the background ([`TieringCache::put`]).
    writing: Mutex<Vec<std::thread::JoinHandle<Result<()>>>>,
    /// Kept tierings being read ahead ([`TieringCache::prefetch`]), then
    /// the ones read and not yet taken.
    reading: Mutex<Option<std::thread::JoinHandle<Vec<Read>>>>,
    read: Mutex<Vec<Read>>,
    /// How the tierings are written (`store.compression`).
    compression: crate::config::StoreCompression,
}

impl TieringCache {
    /// `files`: each stored file's first row date (none when it has no
    /// row) and identity; `inputs`: the other inputs' XXH3 hashes.
    pub fn new(
        store: &Path,
        cfg: &Config,
        inputs: &[String],
        files: Vec<(Option<NaiveDate>, String)>,
    ) -> Result<TieringCache> {
        let compression = cfg.store.compression;
        let mut settings = cfg.clone();
        settings.as_of = None;
        settings.out = None;
        settings.publish = Default::default();
        // How the store keeps its files (merging, removals) is not what the
        // rows are: the store files' identities below say that.
        settings.store = Default::default();
        // Nor is the engine: both publish the same bytes, so a tiering one
        // kept serves the other.
        settings.spark = Default::default();
        // Where the inputs are named from does not matter: their rows are
        // identified by the store files and the other inputs' hashes.
        settings.inputs.transactions.path.clear();
        settings.inputs.customers.path.clear();
        if let Some(i) = &mut settings.inputs.interactions {
            i.path.clear();
        }
        let settings = serde_json::to_string(&settings)
            .map_err(|e| Error::Invariant(format!("settings not serialisable: {e}")))?;
        Ok(TieringCache {
            dir: store.join(TIERINGS),
            // The revision too, as for the kept customers: a build that
            // computes tierings otherwise never reads an older build's
            // (`v2`, tierings without the dimensions, for builds outside
            // git).
            common: format!(
                "{} {} v2\n{settings}",
                env!("CARGO_PKG_VERSION"),
                env!("TIERING_GIT_REV")
            ),
            inputs: inputs.join(","),
            files: files
                .into_iter()
                .filter_map(|(d, id)| Some((d?, id)))
                .collect(),
            used: Default::default(),
            writing: Default::default(),
            reading: Default::default(),
            read: Default::default(),
            compression,
        })
    }

    /// The file of the tiering `key`: its name is the hash of its inputs.
    fn path(&self, key: &AuxKey) -> PathBuf {
        let mut text = format!("{}\n{}\n{}", self.common, key.0, key.1);
        if key.1 != crate::scoring::schemes::PYRAMID {
            text.push('\n');
            text.push_str(&self.inputs);
        }
        for (first, id) in &self.files {
            if *first <= key.0 {
                text.push('\n');
                text.push_str(id);
            }
        }
        let h = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        self.dir.join(format!("{}-{h:032x}.parquet", key.0))
    }

    /// Whether an earlier run kept the tiering `key` (the Spark engine then
    /// computes no measures for its date).
    pub fn has(&self, key: &AuxKey) -> bool {
        self.path(key).exists()
    }

    /// Starts reading the kept tierings of `keys` in the background, so
    /// that a night reads them while it merges the stored pre-aggregates
    /// (~0.2 s at 10^6 customers, the cores ~25% idle then). [`get`]
    /// takes them; one that failed to read is read again there, which
    /// reports the error.
    ///
    /// [`get`]: TieringCache::get
    pub fn prefetch(&self, keys: &[AuxKey]) {
        let paths: Vec<PathBuf> = keys
            .iter()
            .map(|k| self.path(k))
            .filter(|p| p.exists())
            .collect();
        if paths.is_empty() {
            return;
        }
        let read = std::thread::spawn(move || {
            paths
                .into_iter()
                .filter_map(|p| Some((p.clone(), read_kept(&p).ok()?)))
                .collect()
        });
        if let Ok(mut r) = self.reading.lock() {
            *r = Some(read);
        }
    }

    /// The tiering `key` as kept by an earlier run, if any.
    pub fn get(&self, key: &AuxKey) -> Result<Option<DataFrame>> {
        let path = self.path(key);
        if let Ok(mut u) = self.used.lock() {
            u.push(path.clone());
        }
        if let Some(df) = self.take_read(&path) {
            return Ok(Some(df));
        }
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_kept(&path)?))
    }

    /// Waits for [`TieringCache::prefetch`]'s read, if one is under way, and
    /// files what it read.
    fn wait_read(&self) {
        let reading = self.reading.lock().ok().and_then(|mut r| r.take());
        if let (Some(done), Ok(mut read)) = (reading.and_then(|h| h.join().ok()), self.read.lock())
        {
            read.extend(done);
        }
    }

    /// The tiering at `path` if [`TieringCache::prefetch`] read it.
    fn take_read(&self, path: &Path) -> Option<DataFrame> {
        self.wait_read();
        let mut read = self.read.lock().ok()?;
        let i = read.iter().position(|(p, _)| p == path)?;
        Some(read.swap_remove(i).1)
    }

    /// Keeps the tiering `key` for later runs, written in the background
    /// (~0.2 s at 10^6 customers, while the run goes on) through a
    /// temporary file and a rename: a killed run leaves no partial file
    /// under its name. [`TieringCache::prune`] waits for the writes.
    pub fn put(&self, key: &AuxKey, df: &DataFrame) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        let path = self.path(key);
        let mut df = df.clone();
        let c = self.compression;
        let write = std::thread::spawn(move || {
            crate::io::write_atomically(&path, |tmp| crate::io::write_stored_whole(&mut df, tmp, c))
        });
        if let Ok(mut w) = self.writing.lock() {
            w.push(write);
        }
        Ok(())
    }

    /// Waits for the tierings being written; with `prune`, removes the
    /// kept tierings this run did not use (the run's as-of date moved on,
    /// or their inputs changed).
    pub fn finish(&self, prune: bool) -> Result<()> {
        let writes = self
            .writing
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in writes {
            w.join()
                .map_err(|_| Error::Invariant("a tiering's write panicked".into()))??;
        }
        if !prune {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        for e in entries.flatten() {
            let p = e.path();
            if !used.contains(&p) {
                std::fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        Ok(())
    }
}

/// A kept tiering's rows.
fn read_kept(path: &Path) -> Result<DataFrame> {
    use crate::io::Run;
    Ok(crate::io::scan_parquet(path)?.run()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pyramid tiering's name does not depend on the customers' and
    /// interactions' hashes; another scheme's does. Both depend on the
    /// store files holding a row by their date, and only those.
    #[test]
    fn only_other_schemes_hash_the_customers_and_interactions() {
        let d = |m, day| NaiveDate::from_ymd_opt(2010, m, day).unwrap();
        let dir = std::env::temp_dir();
        let files = vec![
            (Some(d(1, 4)), "seg-000001 ab".to_string()),
            (Some(d(10, 1)), "seg-000002 cd".to_string()),
        ];
        let cache = |inputs: &[&str], files: Vec<(Option<NaiveDate>, String)>| {
            let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
            TieringCache::new(&dir, &Config::default(), &inputs, files).unwrap()
        };
        let (a, b) = (
            cache(&["c1", "i1"], files.clone()),
            cache(&["c2", "i1"], files.clone()),
        );
        let pyramid: AuxKey = (d(9, 30), crate::scoring::schemes::PYRAMID.into());
        let star: AuxKey = (d(9, 30), "star".into());
        assert_eq!(a.path(&pyramid), b.path(&pyramid));
        assert_ne!(a.path(&star), b.path(&star));
        // A file whose first row is after the date changes nothing; one
        // before it does.
        let mut later = files.clone();
        later[1].1 = "seg-000003 ef".into();
        assert_eq!(cache(&["c1", "i1"], later).path(&pyramid), a.path(&pyramid));
        let mut earlier = files;
        earlier[0].1 = "seg-000004 gh".into();
        assert_ne!(
            cache(&["c1", "i1"], earlier).path(&pyramid),
            a.path(&pyramid)
        );
    }

    /// A prefetched tiering is served from memory (its file removed after
    /// the read), once; a key not kept is still none.
    #[test]
    fn a_prefetched_tiering_is_the_kept_one_served_once() {
        let dir =
            crate::io::WorkDir::create_tagged(&std::env::temp_dir(), "tierings-test").unwrap();
        let d = |m, day| NaiveDate::from_ymd_opt(2010, m, day).unwrap();
        let files = vec![(Some(d(1, 4)), "seg-000001 ab".to_string())];
        let cache =
            || TieringCache::new(dir.path(), &Config::default(), &[], files.clone()).unwrap();
        let (kept, absent): (AuxKey, AuxKey) =
            ((d(9, 30), "pyramid".into()), (d(6, 30), "pyramid".into()));
        let df = df!("customer_id" => ["C1", "C2"], "revenue_cents" => [500i64, 7]).unwrap();
        let first = cache();
        first.put(&kept, &df).unwrap();
        first.finish(false).unwrap();

        // Past a row group of the store's other files, it still comes back
        // in one chunk per column (the summaries need no rechunk).
        let many = cache();
        let ids: Vec<String> = (0..300_000).map(|i| format!("C{i:07}")).collect();
        let wide = df!("customer_id" => ids, "revenue_cents" => vec![3i64; 300_000]).unwrap();
        let whole = (d(3, 31), "pyramid".to_string());
        many.put(&whole, &wide).unwrap();
        many.finish(false).unwrap();
        let back = many.get(&whole).unwrap().unwrap();
        assert!(back.equals(&wide));
        assert!(back.columns().iter().all(|c| c.n_chunks() == 1));

        let night = cache();
        night.prefetch(&[kept.clone(), absent.clone()]);
        night.wait_read();
        std::fs::remove_file(night.path(&kept)).unwrap();
        assert!(night.get(&kept).unwrap().unwrap().equals(&df));
        assert!(night.get(&kept).unwrap().is_none());
        assert!(night.get(&absent).unwrap().is_none());
    }
}
