//! Publishing a snapshot: a lock on the output root, a staging directory
//! renamed into `snapshot=YYYY-MM-DD/` only when every file is written.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::DataFrame;

use crate::error::{Error, Result};
use crate::io::{self, TableInfo};
use crate::io::{failpoint, process_alive};

/// Name of a snapshot directory for `as_of` (Hive-style partition).
pub fn snapshot_dir_name(as_of: NaiveDate) -> String {
    format!("snapshot={}", as_of.format("%Y-%m-%d"))
}

/// Holds `<root>/.tiering.lock` while alive.
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock; a lock left by a process that no longer runs is taken over.
    pub fn acquire(root: &Path) -> Result<Lock> {
        fs::create_dir_all(root).map_err(Error::io(root))?;
        let path = root.join(".tiering.lock");
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    write!(f, "{}", std::process::id()).map_err(Error::io(&path))?;
                    let lock = Lock { path };
                    recover(root)?;
                    return Ok(lock);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(&path)
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    if process_alive(&pid) {
                        return Err(Error::Locked { path, pid });
                    }
                    // Stale: its owner died. Remove and retry once.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(Error::io(&path)(e)),
            }
        }
        Err(Error::Locked {
            path,
            pid: "unknown".into(),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Cleans up after a run that died while holding the lock: staging
/// directories are deleted; a snapshot moved aside for `--overwrite` is put
/// back when its replacement never arrived, else deleted. Only called with
/// the lock held, so nothing here belongs to a live run.
pub fn recover(root: &Path) -> Result<()> {
    let entries = fs::read_dir(root).map_err(Error::io(root))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(STAGING) {
            tracing::warn!(path = %path.display(), "removing a staging directory left by a failed run");
            fs::remove_dir_all(&path).map_err(Error::io(&path))?;
        } else if let Some(rest) = name.strip_prefix(REPLACED) {
            let target = rest.rsplit_once('-').map(|(t, _)| t).unwrap_or(rest);
            let target = root.join(target);
            if target.exists() {
                fs::remove_dir_all(&path).map_err(Error::io(&path))?;
            } else {
                tracing::warn!(path = %target.display(), "restoring the snapshot a failed --overwrite moved aside");
                fs::rename(&path, &target).map_err(Error::io(&target))?;
            }
        }
    }
    // Ingest's work files of a run that was killed (the lock says no run
    // is using them).
    let ingest = root.join("_ingest");
    if let Ok(entries) = fs::read_dir(&ingest) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(crate::io::WORK_PREFIX) {
                tracing::warn!(path = %entry.path().display(), "removing ingest work files left by a failed run");
                fs::remove_dir_all(entry.path()).map_err(Error::io(entry.path()))?;
            }
        }
    }
    Ok(())
}

const STAGING: &str = ".staging-";
const REPLACED: &str = ".replaced-";

/// A snapshot being written. Dropped without [`Snapshot::commit`], its
/// staging directory is removed and nothing is published.
pub struct Snapshot {
    staging: PathBuf,
    target: PathBuf,
    overwrite: bool,
    committed: bool,
    /// Behind a lock: `customer_scores` is written on its own thread while
    /// the summaries' tables are written on the run's.
    tables: std::sync::Mutex<Vec<TableInfo>>,
}

impl Snapshot {
    /// Starts a snapshot under `root` (which the caller has locked).
    pub fn begin(root: &Path, as_of: NaiveDate, overwrite: bool) -> Result<Snapshot> {
        let name = snapshot_dir_name(as_of);
        let target = root.join(&name);
        if target.exists() && !overwrite {
            return Err(Error::SnapshotExists { path: target });
        }
        let staging = root.join(format!("{STAGING}{name}-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(Error::io(&staging))?;
        Ok(Snapshot {
            staging,
            target,
            overwrite,
            committed: false,
            tables: Default::default(),
        })
    }

    /// Writes one table as Parquet and (as `out` says) CSV into the
    /// staging directory.
    pub fn write(&self, name: &str, df: &mut DataFrame, out: io::TableOut) -> Result<()> {
        self.write_with(name, |dir| io::write_table(df, dir, name, out))
    }

    /// Writes a table with `write` (given the staging directory).
    pub fn write_with(
        &self,
        name: &str,
        write: impl FnOnce(&Path) -> Result<TableInfo>,
    ) -> Result<()> {
        let t = std::time::Instant::now();
        let info = write(&self.staging)?;
        tracing::debug!(
            table = name,
            rows = info.rows,
            ms = t.elapsed().as_millis() as u64,
            "table written"
        );
        self.list().push(info);
        failpoint(&format!("after_table:{name}"));
        Ok(())
    }

    /// Writes a non-table file (the report) into the staging directory.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.staging.join(name);
        fs::write(&path, bytes).map_err(Error::io(&path))
    }

    /// Tables written so far, `customer_scores` first and the rest in the
    /// order written (one thread writes them), whichever thread finished
    /// first: the manifest lists them the same way every run.
    pub fn tables(&self) -> Vec<TableInfo> {
        let mut v = self.list().clone();
        v.sort_by_key(|t| t.name != "customer_scores");
        v
    }

    /// Whether table `name` is written already.
    pub fn has(&self, name: &str) -> bool {
        self.list().iter().any(|t| t.name == name)
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<TableInfo>> {
        // A writer that panicked leaves the list as it was.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the manifest and `_SUCCESS`, then renames the staging
    /// directory into place. Returns the published path.
    pub fn commit(mut self, manifest_json: &str) -> Result<PathBuf> {
        let m = self.staging.join("manifest.json");
        fs::write(&m, manifest_json).map_err(Error::io(&m))?;
        let s = self.staging.join("_SUCCESS");
        fs::write(&s, b"").map_err(Error::io(&s))?;
        failpoint("before_rename");
        if self.target.exists() {
            if !self.overwrite {
                return Err(Error::SnapshotExists {
                    path: self.target.clone(),
                });
            }
            // Move the old snapshot aside, then rename the new one in. A
            // crash between the two renames is repaired by `recover`.
            let name = self
                .target
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let root = self.target.parent().unwrap_or(Path::new("."));
            let old = root.join(format!("{REPLACED}{name}-{}", std::process::id()));
            fs::rename(&self.target, &old).map_err(Error::io(&self.target))?;
            failpoint("between_renames");
            fs::rename(&self.staging, &self.target).map_err(Error::io(&self.target))?;
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.staging, &self.target).map_err(Error::io(&self.target))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tiering-publish-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn an_uncommitted_snapshot_leaves_nothing() {
        let root = tmp("drop");
        let d = NaiveDate::from_ymd_opt(2010, 12, 31).unwrap();
        {
            let _s = Snapshot::begin(&root, d, false).unwrap();
        }
        let left: Vec<_> = fs::read_dir(&root).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn existing_snapshot_needs_overwrite() {
        let root = tmp("exists");
        let d = NaiveDate::from_ymd_opt(2010, 12, 31).unwrap();
        Snapshot::begin(&root, d, false)
            .unwrap()
            .commit("{}")
            .unwrap();
        assert!(matches!(
            Snapshot::begin(&root, d, false),
            Err(Error::SnapshotExists { .. })
        ));
        Snapshot::begin(&root, d, true)
            .unwrap()
            .commit("{\"v\":2}")
            .unwrap();
        let m = fs::read_to_string(root.join("snapshot=2010-12-31/manifest.json")).unwrap();
        assert_eq!(m, "{\"v\":2}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn recovery_restores_a_snapshot_moved_aside_and_drops_staging() {
        let root = tmp("recover");
        fs::create_dir_all(root.join(".replaced-snapshot=2010-12-31-4242")).unwrap();
        fs::write(root.join(".replaced-snapshot=2010-12-31-4242/_SUCCESS"), "").unwrap();
        fs::create_dir_all(root.join(".staging-snapshot=2010-12-31-4242")).unwrap();
        fs::create_dir_all(root.join("snapshot=2010-09-30")).unwrap();
        fs::create_dir_all(root.join(".replaced-snapshot=2010-09-30-77")).unwrap();
        recover(&root).unwrap();
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["snapshot=2010-09-30", "snapshot=2010-12-31"]);
        assert!(root.join("snapshot=2010-12-31/_SUCCESS").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_live_lock_refuses_and_a_stale_one_is_taken_over() {
        let root = tmp("lock");
        let lock = Lock::acquire(&root).unwrap();
        // Our own pid counts as stale for a second acquire in-process, so
        // simulate another live process with pid 1 (always running).
        fs::write(root.join(".tiering.lock"), "1").unwrap();
        assert!(matches!(Lock::acquire(&root), Err(Error::Locked { .. })));
        fs::write(root.join(".tiering.lock"), "999999999").unwrap();
        drop(lock);
        fs::write(root.join(".tiering.lock"), "999999999").unwrap();
        let again = Lock::acquire(&root).unwrap();
        drop(again);
        assert!(!root.join(".tiering.lock").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
