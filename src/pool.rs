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

/// `f(i)` for each `i` in `0..n`; with `two` and from [`LANE_ITEMS`]
/// items on (and two workers), two at a time: on the calling thread and on
/// one thread of its own, each taking the next `i` as it is done. (`two`:
/// the items are small; one large enough to keep both cores busy gains
/// nothing beside another.) Slot `i` holds its result, or `None` when an
/// error stopped the lanes before `i` was taken; every `i` below a failed
/// one was taken, so the first error in order is the one a single lane
/// would have met. (Small files staged one at a time used what is in
/// effect one core: ~10 ms each for a drop folder of daily files.)
///
/// The second thread is not one of the pool's workers: its polars
/// operations queue for them as any other thread's, and polars waits for
/// them as a worker (taking other work meanwhile). So only the calling
/// lane holds a worker while it waits on threads of its own (see [`run`]).
pub fn two_lanes<T: Send, E: Send>(
    n: usize,
    two: bool,
    f: impl Fn(usize) -> Result<T, E> + Sync,
) -> Vec<Option<Result<T, E>>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if !two || n < LANE_ITEMS || THREAD_POOL.current_num_threads() < 2 {
        let mut done = Vec::new();
        for i in 0..n {
            let r = f(i);
            let stop = r.is_err();
            done.push(Some(r));
            if stop {
                break;
            }
        }
        done.resize_with(n, || None);
        return done;
    }
    let slots: Vec<Mutex<Option<Result<T, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let lane = || {
        while !failed.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= n {
                break;
            }
            let r = f(i);
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            *slots[i].lock().expect("a lane panicked") = Some(r);
        }
    };
    std::thread::scope(|scope| {
        let helper = scope.spawn(lane);
        lane();
        if let Err(panic) = helper.join() {
            std::panic::resume_unwind(panic);
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().expect("a lane panicked"))
        .collect()
}

/// The fewest items [`two_lanes`] runs two at a time.
pub const LANE_ITEMS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item once, in its slot, on both lanes; after an error no new
    /// item is taken, and every item below the failed one has its result.
    #[test]
    fn two_lanes_fill_every_slot_in_order_and_stop_after_an_error() {
        let caller = std::thread::current().id();
        let helped = std::sync::atomic::AtomicUsize::new(0);
        let all = two_lanes(200, true, |i| {
            if std::thread::current().id() != caller {
                helped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // Uneven work, so that the lanes interleave.
            std::thread::sleep(std::time::Duration::from_micros((i % 7) as u64 * 50));
            Ok::<usize, String>(i * 2)
        });
        let got: Vec<usize> = all.into_iter().map(|s| s.unwrap().unwrap()).collect();
        assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
        assert!(helped.load(std::sync::atomic::Ordering::SeqCst) > 0);
        let stopped = two_lanes(1000, true, |i| {
            std::thread::sleep(std::time::Duration::from_micros(20));
            if i == 30 {
                Err(format!("item {i}"))
            } else {
                Ok(i)
            }
        });
        let first_err = stopped.iter().position(|s| matches!(s, Some(Err(_))));
        assert_eq!(first_err, Some(30));
        assert!(stopped[..30].iter().all(|s| matches!(s, Some(Ok(_)))));
        assert!(stopped.iter().filter(|s| s.is_none()).count() > 900);
        // Not two: one lane, the caller's, stopping at the first error.
        let one = two_lanes(100, false, |i| {
            assert_eq!(std::thread::current().id(), caller);
            if i == 30 {
                Err(format!("item {i}"))
            } else {
                Ok(i)
            }
        });
        assert!(one[..30].iter().all(|s| matches!(s, Some(Ok(_)))));
        assert!(matches!(one[30], Some(Err(_))));
        assert!(one[31..].iter().all(Option::is_none));
    }
}
