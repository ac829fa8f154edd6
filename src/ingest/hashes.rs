//! A store segment's txn_id hashes, sorted, for the duplicate check of a
//! night's new rows (`hashes.u64`: the XXH3-64 of each stored txn_id as
//! little-endian u64, ascending, nothing else).
//!
//! Why sorted and raw: a night checks ~10^4 new hashes against every
//! stored one. Scanning a Parquet file of 10^7 hashes decodes all of them
//! (80 MB of fresh memory) to test each against the few new ones: ~140 ms
//! of a 10^7 nightly run. Mapped, the sorted file answers each new hash by
//! bisection, touching ~20 of its pages, read from the page cache.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::{self, Run};

/// The file name in a segment.
pub const FILE: &str = "hashes.u64";

/// Hashes sorted in memory at once: a file with more rows is hashed in
/// slices of this many, spread over buckets by their top bits, and each
/// bucket sorted in turn (~130 MB of hashes per slice or bucket).
const ROWS_IN_MEMORY: u64 = 1 << 24;

/// Writes `out`: the sorted hashes of the `txn_id`s of the typed Parquet
/// file `typed`.
pub fn write_sorted(typed: &Path, out: &Path) -> Result<()> {
    let rows = io::scan_parquet(typed)?
        .select([len().alias("n")])
        .run()?
        .column("n")?
        .cast(&DataType::UInt64)?
        .u64()?
        .get(0)
        .unwrap_or(0);
    write_sorted_by(typed, rows, out, ROWS_IN_MEMORY)
}

/// Writes `out` from hashes already sorted.
pub fn write(sorted: &[u64], out: &Path) -> Result<()> {
    let file = File::create(out).map_err(Error::io(out))?;
    let mut w = BufWriter::new(file);
    write_all(&mut w, sorted)
        .and_then(|()| w.flush())
        .map_err(Error::io(out))
}

fn write_sorted_by(typed: &Path, rows: u64, out: &Path, in_memory: u64) -> Result<()> {
    let slice = |start: u64, len: u64| -> Result<Vec<u64>> {
        let df = io::scan_parquet(typed)?
            .slice(start as i64, len as IdxSize)
            .select([super::id_hash("txn_id").alias("h")])
            .run()?;
        Ok(df.column("h")?.u64()?.iter().flatten().collect())
    };
    let file = File::create(out).map_err(Error::io(out))?;
    let mut w = BufWriter::new(file);
    if rows <= in_memory {
        let mut all = slice(0, rows)?;
        all.par_sort_unstable();
        write_all(&mut w, &all).map_err(Error::io(out))?;
    } else {
        // Hashes are uniform: their top bits cut them into buckets of
        // about equal size, each one range of the sorted whole.
        let buckets = rows.div_ceil(in_memory).next_power_of_two();
        let shift = 64 - buckets.trailing_zeros();
        let dir = io::WorkDir::create_tagged(out.parent().unwrap_or(Path::new(".")), "hashes")?;
        let path = |b: u64| dir.path().join(format!("bucket-{b}"));
        let mut parts = (0..buckets)
            .map(|b| {
                let p = path(b);
                File::create(&p).map(BufWriter::new).map_err(Error::io(&p))
            })
            .collect::<Result<Vec<_>>>()?;
        for start in (0..rows).step_by(in_memory as usize) {
            for h in slice(start, in_memory.min(rows - start))? {
                let b = (h >> shift) as usize;
                parts[b]
                    .write_all(&h.to_le_bytes())
                    .map_err(Error::io(path(b as u64)))?;
            }
        }
        for (b, part) in parts.into_iter().enumerate() {
            let p = path(b as u64);
            part.into_inner()
                .map_err(|e| Error::io(&p)(e.into_error()))?;
            let mut bytes = Vec::new();
            File::open(&p)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(Error::io(&p))?;
            let mut hashes: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            drop(bytes);
            hashes.par_sort_unstable();
            write_all(&mut w, &hashes).map_err(Error::io(out))?;
        }
    }
    w.flush().map_err(Error::io(out))?;
    Ok(())
}

fn write_all(w: &mut impl Write, hashes: &[u64]) -> std::io::Result<()> {
    for h in hashes {
        w.write_all(&h.to_le_bytes())?;
    }
    Ok(())
}

/// A mapped `hashes.u64`.
pub struct Sorted {
    map: Option<memmap2::Mmap>,
}

impl Sorted {
    pub fn open(path: &Path) -> Result<Sorted> {
        let file = File::open(path).map_err(Error::io(path))?;
        let len = file.metadata().map_err(Error::io(path))?.len();
        if len % 8 != 0 {
            return Err(Error::Invariant(format!(
                "{}: {len} bytes, not a whole number of 8-byte hashes",
                path.display()
            )));
        }
        // An empty file cannot be mapped.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the store's files are written once and replaced by
            // rename, never changed in place, and a run holds the output
            // root's lock while it reads them.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io(path))?)
        };
        Ok(Sorted { map })
    }

    fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len() / 8)
    }

    fn get(&self, i: usize) -> u64 {
        let m = self.map.as_deref().unwrap_or_default();
        u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().unwrap_or_default())
    }

    /// Whether the file holds `h`.
    pub fn contains(&self, h: u64) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(&h) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file holds exactly the typed file's txn_id hashes, sorted,
    /// whether sorted whole or through buckets; each is found and a hash
    /// not among them is not.
    #[test]
    fn sorted_hashes_are_the_txn_id_hashes_in_order_and_found() {
        let dir = io::WorkDir::create_tagged(&std::env::temp_dir(), "hashes-test").unwrap();
        let n = 5_000u64;
        let mut typed = df!(
            "txn_id" => (0..n).map(|i| format!("T{:06}", i * 7919 % 10_007)).collect::<Vec<_>>(),
        )
        .unwrap();
        let typed_path = dir.path().join("typed.parquet");
        io::write_parquet(&mut typed, &typed_path).unwrap();
        let mut expected: Vec<u64> = typed
            .clone()
            .lazy()
            .select([super::super::id_hash("txn_id").alias("h")])
            .collect()
            .unwrap()
            .column("h")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        expected.sort_unstable();
        for (name, in_memory) in [("whole", n), ("buckets", 700)] {
            let out = dir.path().join(format!("{name}.u64"));
            write_sorted_by(&typed_path, n, &out, in_memory).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            let written: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(written, expected, "{name}");
            let sorted = Sorted::open(&out).unwrap();
            assert!(expected.iter().all(|h| sorted.contains(*h)), "{name}");
            let absent = (0..u64::MAX).find(|h| expected.binary_search(h).is_err());
            assert!(!sorted.contains(absent.unwrap()), "{name}");
        }
        let empty = dir.path().join("empty.u64");
        std::fs::write(&empty, b"").unwrap();
        assert!(!Sorted::open(&empty).unwrap().contains(expected[0]));
    }
}
