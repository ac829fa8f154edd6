//! The Spark backend (`--features spark`): the plan's SQL goes to a Spark
//! Connect server through the official Apache Rust client; results come
//! back as Arrow record batches and become polars frames column by column,
//! cast to the plan's canonical types.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType as Arrow, Date32Type, Float64Type, Int32Type, Int64Type};
use polars::prelude::*;
use spark_connect::SparkSession;

use crate::error::{Error, Result};
use crate::plan::Kind;

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
        Ok(Spark {
            session,
            remote: remote.to_string(),
        })
    }

    /// Runs a SELECT and returns its rows with `columns` (in that order).
    pub fn query(&self, sql: &str, columns: &[(&str, Kind)]) -> Result<DataFrame> {
        let batches = self
            .session
            .sql(sql)
            .map_err(|e| spark_error(&self.remote, &e))?
            .collect_record_batches()
            .map_err(|e| spark_error(&self.remote, &e))?;
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
            s = s.cast(&kind.dtype())?;
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
