//! The Spark backend (`--features spark`): SQL goes to a Spark Connect
//! server through the official Apache Rust client; results come back as
//! Arrow record batches and become polars frames column by column, cast to
//! the plan's canonical types. [`ingest`] reads and checks the transactions
//! on Spark; [`given`] computes every per-customer frame a run needs from
//! them, so the local machine never reads a transaction row. With
//! `[spark] store = true`, [`store_daily`] gives Spark the typed store's
//! pre-aggregates instead (the files are checked into the store locally).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType as Arrow, Date32Type, Float64Type, Int32Type, Int64Type};
use polars::prelude::*;
use spark_connect::SparkSession;

use crate::error::{Error, Result};
use crate::plan::Kind;

mod given;
mod ingest;
mod store;

pub use given::given;
pub use ingest::{SparkIngest, ingest, is_uri};
pub use store::store_daily;

/// The customer × day pre-aggregate Spark scores from (written by
/// [`ingest`], or the store's), with its optional columns.
pub struct SparkDaily {
    pub relation: crate::plan::Relation,
    pub has_margin: bool,
    pub has_quantity: bool,
}

/// A session on one Spark Connect server.
pub struct Spark {
    session: SparkSession,
    remote: String,
}

impl Spark {
    /// Connects to `sc://HOST:PORT`.
    pub fn connect(remote: &str) -> Result<Spark> {
        let session = SparkSession::builder()
            .remote(remote)
            .get_or_create()
            .map_err(|e| spark_error(remote, &e))?;
        let spark = Spark {
            session,
            remote: remote.to_string(),
        };
        // Dates are parsed and cast in the session's time zone: UTC, as
        // the local engine.
        spark.execute("SET spark.sql.session.timeZone=UTC")?;
        Ok(spark)
    }

    /// Whether the last execution ran to its end. A Spark Connect server
    /// ends a result stream after `senderMaxStreamDuration` (2 minutes) or
    /// `senderMaxStreamSize` (1 GB) and expects the client to reattach,
    /// which this Rust client does not do: it takes the cut for the end.
    /// The server sends the execution's metrics after the last result, so
    /// a stream cut short has none, and the run stops saying how to start
    /// the server (both settings are static).
    fn finished(&self, sql: &str) -> Result<()> {
        if self
            .session
            .last_execution_info()
            .is_some_and(|i| i.metrics.is_some())
        {
            return Ok(());
        }
        let head: String = sql.chars().take(60).collect();
        Err(Error::Spark(format!(
            "{}: the server ended the result stream early ({head}…); start the Spark Connect server with --conf spark.connect.execute.reattachable.senderMaxStreamDuration=0 --conf spark.connect.execute.reattachable.senderMaxStreamSize=0",
            self.remote
        )))
    }

    /// Runs a statement (a view, a write, a setting), discarding any rows.
    pub fn execute(&self, sql: &str) -> Result<()> {
        tracing::trace!(sql, "spark");
        self.session
            .sql(sql)
            .map_err(|e| spark_error(&self.remote, &e))?
            .collect_record_batches()
            .map_err(|e| spark_error(&self.remote, &e))?;
        self.finished(sql)
    }

    /// The column names of a relation (a view or a SELECT), without running it.
    pub fn columns(&self, sql: &str) -> Result<Vec<String>> {
        self.session
            .sql(sql)
            .map_err(|e| spark_error(&self.remote, &e))?
            .columns()
            .map_err(|e| spark_error(&self.remote, &e))
    }

    /// The server address, for messages and the manifest.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Runs a SELECT and returns its rows with `columns` (in that order).
    pub fn query(&self, sql: &str, columns: &[(&str, Kind)]) -> Result<DataFrame> {
        tracing::trace!(sql, "spark");
        let batches = self
            .session
            .sql(sql)
            .map_err(|e| spark_error(&self.remote, &e))?
            .collect_record_batches()
            .map_err(|e| spark_error(&self.remote, &e))?;
        self.finished(sql)?;
        let mut out = Vec::new();
        for (name, kind) in columns {
            let mut parts = Vec::new();
            for b in &batches {
                let array = b.column_by_name(name).ok_or_else(|| {
                    Error::Spark(format!("{}: no column '{name}' in the result", self.remote))
                })?;
                parts.push(series(name, array.as_ref(), *kind)?);
            }
            let mut s = parts
                .into_iter()
                .reduce(|mut a, b| {
                    let _ = a.append(&b);
                    a
                })
                .unwrap_or_else(|| Series::new_empty((*name).into(), &kind.dtype()));
            // One chunk, as the local engine's frames: float sums over
            // chunks associate differently.
            s = s.cast(&kind.dtype())?.rechunk();
            out.push(s.into_column());
        }
        let height = out.first().map_or(0, |c| c.len());
        Ok(DataFrame::new(height, out)?)
    }
}

fn spark_error(remote: &str, e: &spark_connect::SparkError) -> Error {
    Error::Spark(format!("{remote}: {e}"))
}

/// One Arrow column as a polars Series of the canonical type.
fn series(name: &str, a: &dyn Array, kind: Kind) -> Result<Series> {
    let n: PlSmallStr = name.into();
    let unexpected = || {
        Error::Spark(format!(
            "column '{name}': Spark returned {:?}, expected {kind:?}",
            a.data_type()
        ))
    };
    Ok(match (kind, a.data_type()) {
        (Kind::Text, Arrow::Utf8) => {
            Series::new(n, a.as_string::<i32>().iter().collect::<Vec<_>>())
        }
        (Kind::Text, Arrow::LargeUtf8) => {
            Series::new(n, a.as_string::<i64>().iter().collect::<Vec<_>>())
        }
        (Kind::Text, Arrow::Utf8View) => {
            Series::new(n, a.as_string_view().iter().collect::<Vec<_>>())
        }
        (Kind::Flag, Arrow::Boolean) => Series::new(n, a.as_boolean().iter().collect::<Vec<_>>()),
        (Kind::Day, Arrow::Date32) => {
            Series::new(n, a.as_primitive::<Date32Type>().iter().collect::<Vec<_>>())
                .cast(&DataType::Date)?
        }
        (Kind::Int, Arrow::Int64) => {
            Series::new(n, a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
        }
        (Kind::Int, Arrow::Int32) => {
            Series::new(n, a.as_primitive::<Int32Type>().iter().collect::<Vec<_>>())
        }
        (Kind::Real, Arrow::Float64) => Series::new(
            n,
            a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
        ),
        (_, Arrow::Null) => Series::full_null(n, a.len(), &kind.dtype()),
        _ => return Err(unexpected()),
    })
}
