//! Helpers shared by the unit tests.

/// A small deterministic generator (the high bits of a 64-bit LCG): random
/// test data that is the same on every run and machine.
pub fn lcg(seed: u64) -> impl FnMut() -> usize {
    let mut x = seed;
    move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    }
}

/// Column `c` of `df` as text (any type cast), nulls kept.
pub fn strs(df: &polars::prelude::DataFrame, c: &str) -> Vec<Option<String>> {
    use polars::prelude::DataType;
    df.column(c)
        .unwrap()
        .cast(&DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(String::from))
        .collect()
}

/// Column `c` of `df` as unsigned integers (any integer type cast); no nulls.
pub fn u64s(df: &polars::prelude::DataFrame, c: &str) -> Vec<u64> {
    use polars::prelude::DataType;
    df.column(c)
        .unwrap()
        .cast(&DataType::UInt64)
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}
