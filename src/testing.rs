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

/// Column `c` of `df` as floats (any numeric type cast); it must hold no
/// nulls.
pub fn f64s(df: &polars::prelude::DataFrame, c: &str) -> Vec<f64> {
    let v = opt_f64s(df, c);
    assert!(v.iter().all(Option::is_some), "column {c} holds nulls");
    v.into_iter().flatten().collect()
}

/// Column `c` of `df` as floats (any numeric type cast), nulls kept.
pub fn opt_f64s(df: &polars::prelude::DataFrame, c: &str) -> Vec<Option<f64>> {
    use polars::prelude::DataType;
    df.column(c)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect()
}

/// Column `c` of `df` as signed integers (any integer type cast), nulls
/// kept.
pub fn i64s(df: &polars::prelude::DataFrame, c: &str) -> Vec<Option<i64>> {
    use polars::prelude::DataType;
    df.column(c)
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect()
}
