//! The run's thread pool: polars' own (`THREAD_POOL`, a worker per core).
//! polars runs its operations there; the run's own parallel loops (rayon)
//! would otherwise run on rayon's global pool, a second set of as many
//! threads competing for the same cores, and each polars operation called
//! from the main thread would be handed to a worker while main waited.

use polars_core::runtime::THREAD_POOL;

/// `op` run as one of the pool's workers: the whole command
/// ([`crate::cli::execute`]). Measured at 10^7 transactions in interleaved pairs: a night 1.685 →
/// 1.598 s (Zipf) and 2.042 → 2.010 s (uniform), a run from CSV 6.04 →
/// 5.96 s and 7.02 → 6.80 s; backfills and the lean plan unchanged.
///
/// Not with fewer than two workers: the run waits on threads of its own
/// (the `customer_scores` writer, the staging pipeline, the tierings read
/// ahead) whose polars operations need a worker, and the only one would be
/// the run's. For the same reason no two parallel branches of a run may
/// wait on such threads at once.
///
/// Those threads' own parallel loops stay on rayon's global pool: put on
/// this one as well, the staging pipeline's parser and writer queued for
/// the one worker the waiting run leaves (a cold 10^7 run 5.11 → 6.03 s)
/// and a night's `customer_scores` encoding for the worker the summaries
/// use (1.438 → 1.499 s).
pub fn run<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    match THREAD_POOL.current_num_threads() {
        0 | 1 => op(),
        _ => THREAD_POOL.install(op),
    }
}
