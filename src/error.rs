//! The one error type at the library boundary; every variant names the file,
//! column or key at fault, and maps to a documented exit code.

use std::path::PathBuf;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file could not be parsed (syntax, unknown key, wrong type).
    #[error("pipeline file {file}: {message}")]
    ConfigParse { file: PathBuf, message: String },

    /// The pipeline file parsed but its values do not make sense together.
    #[error("invalid configuration: {key}: {message}")]
    ConfigInvalid { key: String, message: String },

    /// Command-line arguments that cannot be combined.
    #[error("{0}")]
    Usage(String),

    /// An input path or glob matched no file.
    #[error("{table} input {pattern}: no file matches")]
    NoInputFiles {
        table: &'static str,
        pattern: String,
    },

    /// An input file has no bytes at all (not even a header).
    #[error("{file}: file is empty (expected at least a header line)")]
    EmptyFile { file: PathBuf },

    /// A required column is absent from an input file.
    #[error("{file}: missing required column '{column}'{hint}")]
    MissingColumn {
        file: PathBuf,
        column: String,
        /// Extra explanation, e.g. a suspected wrong delimiter.
        hint: String,
    },

    /// The file could not be read or decoded.
    #[error("{file}: cannot read: {message}")]
    Read { file: PathBuf, message: String },

    /// Too many rows were rejected during ingest.
    #[error(
        "{file}: {rejected} of {total} rows rejected ({ratio:.2}% > limit {limit:.2}%); most common: {top_reason}"
    )]
    RejectRatio {
        file: String,
        rejected: usize,
        total: usize,
        ratio: f64,
        limit: f64,
        top_reason: String,
    },

    /// A snapshot for this date is already published and --overwrite was not given.
    #[error("{path} already exists; pass --overwrite to replace it")]
    SnapshotExists { path: PathBuf },

    /// Another run holds the output root's lock.
    #[error(
        "{path} is held by another run (pid {pid}); wait for it, or delete the file if no run is active"
    )]
    Locked { path: PathBuf, pid: String },

    /// The data needs more memory than --memory-limit allows, even on the
    /// lean plan.
    #[error(
        "--memory-limit {limit_mib} MiB is too small: the lean plan needs about {needed_mib} MiB for {customers} customers; raise the limit"
    )]
    MemoryLimit {
        limit_mib: u64,
        needed_mib: u64,
        customers: usize,
    },

    /// The Spark backend failed (connection, SQL, or an unexpected result).
    #[error("spark: {0}")]
    Spark(String),

    /// A check that must hold before publishing did not.
    #[error("invariant violated, nothing published: {0}")]
    Invariant(String),

    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A polars computation failed (a bug or an unforeseen input shape).
    #[error("computation failed: {}", first_line(.0))]
    Polars(#[from] polars::prelude::PolarsError),

    /// JSON serialisation of the manifest failed.
    #[error("manifest: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Process exit code: 1 failed, 2 bad configuration or input, 3 reject ratio exceeded.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ConfigParse { .. }
            | Error::ConfigInvalid { .. }
            | Error::Usage(_)
            | Error::NoInputFiles { .. }
            | Error::EmptyFile { .. }
            | Error::MissingColumn { .. }
            | Error::Read { .. }
            | Error::SnapshotExists { .. }
            | Error::Locked { .. }
            | Error::MemoryLimit { .. } => 2,
            Error::RejectRatio { .. } => 3,
            Error::Invariant(_)
            | Error::Io { .. }
            | Error::Polars(_)
            | Error::Json(_)
            | Error::Spark(_) => 1,
        }
    }

    /// Wraps an io error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Error {
        Error::ConfigInvalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Polars errors can carry a whole query plan; one line is enough on stderr.
fn first_line(e: &polars::prelude::PolarsError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Result with the library's error.
pub type Result<T> = std::result::Result<T, Error>;
