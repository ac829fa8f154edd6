//! Work directories and the test hooks that stand in for a kill or a full
//! disk at named points.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A work directory removed when dropped (a killed run's is removed by
/// the next run's recovery).
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn create(parent: &Path) -> Result<WorkDir> {
        WorkDir::at(parent.join(format!("{WORK_PREFIX}{}", std::process::id())))
    }

    fn at(path: PathBuf) -> Result<WorkDir> {
        std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        Ok(WorkDir(path))
    }

    /// A second work directory of this process under `parent`, told apart by `tag`.
    pub fn create_tagged(parent: &Path, tag: &str) -> Result<WorkDir> {
        WorkDir::at(parent.join(format!("{WORK_PREFIX}{}-{tag}", std::process::id())))
    }

    /// A scratch directory `tiering-<tag>-<pid>` in the system's temporary
    /// folder, for commands that publish nothing (`validate`). Those of
    /// processes no longer alive (killed runs) are removed first, so
    /// nothing is left behind for long.
    pub fn scratch(tag: &str) -> Result<WorkDir> {
        let tmp = std::env::temp_dir();
        let prefix = format!("tiering-{tag}-");
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(&prefix)
                    && !process_alive(pid)
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        WorkDir::at(tmp.join(format!("{prefix}{}", std::process::id())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Whether the process `pid` (as text) is alive; this process counts as
/// not alive, since whatever it left is from an earlier life of its pid.
pub fn process_alive(pid: &str) -> bool {
    match pid.parse::<u32>() {
        Ok(p) if p == std::process::id() => false,
        Ok(p) => Path::new(&format!("/proc/{p}")).exists(),
        Err(_) => false,
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Name prefix of every work directory (ingest's, the store's, the lean
/// plan's parts); recovery and publishing skip or remove what carries it.
pub const WORK_PREFIX: &str = ".work-";

/// Test hook: when `TIERING_FAILPOINT` names this point, the process aborts
/// on the spot (no destructors run), as if killed there.
pub fn failpoint(point: &str) {
    if std::env::var("TIERING_FAILPOINT").is_ok_and(|p| p == point) {
        eprintln!("failpoint {point}: aborting");
        std::process::abort();
    }
}

/// Test hook for write failures: `TIERING_FAILPOINT=disk_full:<table>`
/// fails writing that table as a full disk would (ENOSPC),
/// `read_only:<table>` as a read-only directory would (EACCES; a real
/// chmod does not stop root, who runs CI). The error takes the path a real
/// one from the writer takes (see [`crate::io::write_error`]).
pub fn failpoint_io(table: &str) -> polars::prelude::PolarsResult<()> {
    let Ok(point) = std::env::var("TIERING_FAILPOINT") else {
        return Ok(());
    };
    let errno = match point.split_once(':') {
        Some(("disk_full", t)) if t == table => 28,
        Some(("read_only", t)) if t == table => 13,
        _ => return Ok(()),
    };
    Err(polars::prelude::PolarsError::IO {
        error: std::sync::Arc::new(std::io::Error::from_raw_os_error(errno)),
        msg: None,
    })
}
