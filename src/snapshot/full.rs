//! A snapshot's full scoring, held in memory or spilled in parts, and how
//! it is read back for summaries and publishing.

use polars::prelude::*;

use crate::io::Run;

use crate::error::{Error, Result};
use crate::snapshot::base::CENTS_COLUMNS;

/// A snapshot's full scoring (one row per customer, customer_id order):
/// in memory on the fast plan, spilled part by part on the lean plan.
pub enum Full {
    Memory(DataFrame),
    Spilled(Spilled),
}

/// Parquet work files `scores-<i>.parquet`, one per part, in customer_id
/// order; removed when dropped.
pub struct Spilled {
    pub(super) dir: std::path::PathBuf,
    pub(super) parts: usize,
    pub(super) rows: usize,
    /// Any non-ASCII text (the CSV's BOM default).
    pub(super) non_ascii: bool,
    /// Columns left out when published.
    pub(super) hide: Vec<&'static str>,
}

impl Spilled {
    pub(super) fn path(&self, what: &str, i: usize) -> std::path::PathBuf {
        self.dir.join(format!("{what}-{i}.parquet"))
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Full {
    pub fn height(&self) -> usize {
        match self {
            Full::Memory(df) => df.height(),
            Full::Spilled(s) => s.rows,
        }
    }

    /// Every row, as a query (a scan of the parts when spilled).
    pub fn lazy(&self) -> Result<LazyFrame> {
        match self {
            Full::Memory(df) => Ok(df.clone().lazy()),
            Full::Spilled(s) => {
                let parts = (0..s.parts)
                    .map(|i| crate::io::scan_parquet(&s.path("scores", i)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(concat(parts, UnionArgs::default())?)
            }
        }
    }

    /// The published `customer_scores`: without the cent columns.
    pub(super) fn published(self) -> Result<Full> {
        Ok(match self {
            Full::Memory(df) => Full::Memory(df.drop_many(CENTS_COLUMNS.iter().copied())),
            Full::Spilled(mut s) => {
                s.hide = CENTS_COLUMNS.to_vec();
                Full::Spilled(s)
            }
        })
    }

    /// Writes the table (see [`crate::io::write_table`]), part after part
    /// when spilled.
    pub fn write_table(
        &mut self,
        dir: &std::path::Path,
        name: &str,
        out: crate::io::TableOut,
    ) -> Result<crate::io::TableInfo> {
        let s = match self {
            Full::Memory(df) => return crate::io::write_table(df, dir, name, out),
            Full::Spilled(s) => s,
        };
        let out = out.decided(|| s.non_ascii);
        let mut w: Option<crate::io::TableWriter> = None;
        for i in 0..s.parts {
            let df = crate::io::scan_parquet(&s.path("scores", i))?
                .run()?
                .drop_many(s.hide.iter().copied());
            let w = match &mut w {
                Some(w) => w,
                None => w.insert(crate::io::TableWriter::create(
                    dir,
                    name,
                    &df.schema().clone(),
                    out,
                )?),
            };
            w.push(df)?;
        }
        match w {
            Some(w) => w.finish(),
            None => Err(Error::Invariant(format!("{name}: no parts"))),
        }
    }
}
