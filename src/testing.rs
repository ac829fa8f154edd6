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
