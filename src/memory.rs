//! `--memory-limit`: choosing between the fast plan and the lean one from
//! what the data needs, before the memory is spent.
//!
//! Ingest always streams (transactions never sit in memory whole). What
//! grows with the data after that is the customer × day pre-aggregate and
//! the per-customer frames of each scoring. The fast plan holds both in
//! memory. The lean plan cuts the customers into id ranges ("parts"),
//! builds each part's pre-aggregate once into a work file, and scores a
//! snapshot part by part into work files (the RFM scores, segments and
//! the pyramid, which look at the whole population, from one narrow
//! frame); the
//! summaries read those files back and `customer_scores` is published
//! part after part. A limit even the lean plan cannot meet is refused up
//! front, so the run stops with a message instead of being killed.

use serde::Serialize;

use crate::error::{Error, Result};

// Estimates, calibrated on the 2-core development machine: peak RSS
// 0.23 GB at 2·10^6 transactions / 10^3 customers, 0.92 GB at 10^7 / 10^4,
// 1.84 GB at 10^7 / 10^6 on the fast plan; 0.70 GB at 10^7 / 10^4 on the
// lean plan in 3 parts (benches/HISTORY.md). They err on the high side.

/// Process, thread pools and the streaming engine's buffers: what any run
/// holds whatever the data.
pub const FLOOR_BYTES: u64 = 192 << 20;
/// Bytes per pre-aggregate row (key, day, sums, hash tables); its rows are
/// bounded by the transactions kept.
pub const PER_DAILY_ROW: u64 = 80;
/// Bytes per customer for the scorings and summaries of one snapshot.
pub const PER_CUSTOMER: u64 = 1_000;
/// Bytes per customer the lean plan holds whatever its parts: the customers
/// table, the population-wide ranking (RFM scores, pyramid) and the
/// auxiliary tierings, all narrow.
pub const PER_CUSTOMER_HELD: u64 = 300;
/// Bytes per pre-aggregate row of one part on the lean plan: more than
/// [`PER_DAILY_ROW`], as each part also streams the typed Parquet.
pub const PER_DAILY_ROW_LEAN: u64 = 144;

/// Bytes per interaction kept for scoring: the five columns it reads
/// (four texts of 16-byte views, a date), as the fast plan holds them and
/// as each lean part reads its own, plus the engagement's scratch.
pub const PER_INTERACTION: u64 = 96;

/// At most this many parts on the lean plan (each part is one more scan of
/// the typed transactions).
pub const MAX_PARTS: u32 = 64;

/// The plan a run chose, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    /// "fast" or "lean".
    pub plan: &'static str,
    pub limit_bytes: Option<u64>,
    /// Customer parts the pre-aggregate is built in (1 on the fast plan).
    pub parts: u32,
    /// Estimated peak of the fast plan, and of the plan chosen.
    pub fast_estimate_bytes: u64,
    pub estimate_bytes: u64,
    /// Where the limit came from: "--memory-limit", or "available memory"
    /// (the default, see [`default_limit`]); absent when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_from: Option<&'static str>,
}

impl Plan {
    pub fn lean(&self) -> bool {
        self.plan == "lean"
    }
}

/// How much data a run holds, for its estimates: transactions kept,
/// customers, interactions kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows {
    pub transactions: usize,
    pub customers: usize,
    pub interactions: usize,
}

/// The estimated peaks of a run's data.
struct Estimates {
    /// The fast plan.
    fast: u64,
    /// The lean plan's share that every part holds whole.
    lean_base: u64,
    /// The lean plan's share split across its parts.
    per_parts: u64,
}

impl Estimates {
    fn of(rows: Rows, snapshots: usize) -> Estimates {
        let (transactions, customers) = (rows.transactions as u64, rows.customers as u64);
        let interactions = rows.interactions as u64 * PER_INTERACTION;
        Estimates {
            fast: FLOOR_BYTES
                + transactions * PER_DAILY_ROW
                + customers * snapshots.max(1) as u64 * PER_CUSTOMER
                + interactions,
            // The lean plan builds the pre-aggregate and scores the
            // customers one part at a time; what every part shares stays whole.
            lean_base: FLOOR_BYTES + customers * PER_CUSTOMER_HELD,
            per_parts: transactions * PER_DAILY_ROW_LEAN + customers * PER_CUSTOMER + interactions,
        }
    }

    fn lean(&self, parts: u32) -> u64 {
        self.lean_base + self.per_parts.div_ceil(parts as u64)
    }

    fn plan(&self, plan: &'static str, parts: u32, limit: Option<u64>) -> Plan {
        Plan {
            plan,
            limit_bytes: limit,
            parts,
            fast_estimate_bytes: self.fast,
            estimate_bytes: if plan == "lean" {
                self.lean(parts)
            } else {
                self.fast
            },
            limit_from: limit.map(|_| "--memory-limit"),
        }
    }
}

/// The fast plan unless its estimate exceeds `limit`; else the lean plan
/// with as few customer parts as fit; else an error naming what would be
/// needed. `snapshots` is how many snapshots the fast plan holds at once
/// (a backfill's fast plan scores two at a time).
pub fn choose(rows: Rows, snapshots: usize, limit: Option<u64>) -> Result<Plan> {
    let e = Estimates::of(rows, snapshots);
    let Some(limit) = limit else {
        return Ok(e.plan("fast", 1, None));
    };
    if e.fast <= limit {
        return Ok(e.plan("fast", 1, Some(limit)));
    }
    if e.lean_base < limit {
        let parts = e
            .per_parts
            .div_ceil(limit - e.lean_base)
            .clamp(2, MAX_PARTS as u64) as u32;
        if e.lean(parts) <= limit {
            return Ok(e.plan("lean", parts, Some(limit)));
        }
    }
    Err(Error::MemoryLimit {
        limit_mib: limit >> 20,
        needed_mib: e.lean(MAX_PARTS).div_ceil(1 << 20),
        customers: rows.customers,
    })
}

/// The plan without `--memory-limit`: the fast plan when it fits in
/// `available` ([`default_limit`]), else the lean plan in as few parts as
/// fit, else the lean plan in the most parts — never a refusal: the user
/// asked for no limit, and a run that may fit beats one that surely won't.
pub fn choose_unlimited(rows: Rows, snapshots: usize, available: Option<u64>) -> Plan {
    let e = Estimates::of(rows, snapshots);
    let Some(limit) = available else {
        return e.plan("fast", 1, None);
    };
    let mut plan = choose(rows, snapshots, Some(limit))
        // The most parts: the least the lean plan can hold.
        .unwrap_or_else(|_| e.plan("lean", MAX_PARTS, Some(limit)));
    plan.limit_from = Some("available memory");
    plan
}

/// The default limit: 80% of the memory available when the run starts
/// (`MemAvailable`, or what the cgroup allows, whichever is less), so a
/// nightly run on a smaller machine or container takes the lean plan
/// instead of being killed. `None` where neither can be read.
pub fn default_limit() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    });
    // cgroup v2 ("max" when unlimited), then v1.
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok());
    let cgroup_free = cgroup.map(|max| max.saturating_sub(anon_bytes().unwrap_or(0)));
    let least = match (available, cgroup_free) {
        (Some(a), Some(c)) => a.min(c),
        (a, c) => a.or(c)?,
    };
    Some(least / 10 * 8)
}

/// Samples the process's anonymous resident memory (heap, not the file
/// pages polars maps while reading inputs) every 20 ms and keeps the peak:
/// what `--memory-limit` is about. Peak RSS (`VmHWM`) also counts mapped
/// input files, which the kernel can drop under pressure.
pub struct Sampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Sampler {
    pub fn start() -> Sampler {
        use std::sync::atomic::Ordering;
        let peak =
            std::sync::Arc::new(std::sync::atomic::AtomicU64::new(anon_bytes().unwrap_or(0)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(now) = anon_bytes() {
                    p.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Sampler { peak, stop }
    }

    /// The highest anonymous resident memory seen so far (0 where
    /// /proc/self/status is not available).
    pub fn peak_bytes(&self) -> u64 {
        let now = anon_bytes().unwrap_or(0);
        self.peak
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed)
            .max(now)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Hands memory the allocator holds free back to the system (glibc keeps
/// freed heap pages otherwise, so a stage's scratch would count towards
/// every later stage's footprint), kept large buffers included. Nothing
/// while the run keeps freed buffers ([`kept_for_reuse`]): it has memory
/// to spare, and pages handed back are zeroed by the kernel again when a
/// later step asks for them.
pub fn release_free() {
    if crate::alloc::keeping() {
        return;
    }
    crate::alloc::release_kept();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free pages to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// How many bytes of freed large buffers a run keeps for reuse
/// ([`crate::alloc::keep_freed`]), returning no free memory meanwhile
/// ([`release_free`]): half the plan's headroom, at most 1 GiB; none on
/// the lean plan, which returns memory as it goes.
///
/// Why: every buffer new to the process is zeroed by the kernel, and on a
/// VM that hands freed pages back to its host the first touch costs more
/// still. Steps free and map the same sizes (columns of 10^6 rows), so
/// reuse spares most of it. A backfill at 10^7 transactions, 8 quarters:
/// ~22.9 → ~21.2 s (system time ~8.5 → ~5.8 s); a 10^7 night: see the
/// benches/HISTORY.md, twenty-first run. Peak RSS stayed within the spread.
pub fn kept_for_reuse(plan: &Plan) -> usize {
    let headroom = match (plan.lean(), plan.limit_bytes) {
        (true, _) => 0,
        (false, Some(limit)) => limit.saturating_sub(plan.estimate_bytes) / 2,
        (false, None) => u64::MAX,
    };
    headroom.min(1 << 30) as usize
}

/// How many bytes of freed large buffers the store's update (reading,
/// checking and staging new files, their pre-aggregates) keeps for reuse,
/// before the plan is known: none under `--memory-limit` (the ingest
/// already splits that limit between staging and the pre-aggregate), else
/// an eighth of the default limit, at most 1 GiB. The run's
/// [`kept_for_reuse`] takes over from it.
///
/// Why: the ingest frees and maps buffers of the same sizes file chunk
/// after file chunk. Cold 10^7 runs, 4 interleaved pairs on a VM that
/// hands freed pages back to its host: 6.80–7.30 s against 6.99–8.47 s,
/// system time 2.42–2.92 s against 2.82–4.37 s, peak RSS within the
/// spread (see benches/HISTORY.md, thirty-fourth run).
pub fn kept_while_ingesting(limit: Option<u64>) -> usize {
    match limit {
        Some(_) => 0,
        None => default_limit().map_or(0, |l| (l / 8).min(1 << 30) as usize),
    }
}

/// Anonymous resident memory now (Linux `RssAnon`), in bytes.
pub fn anon_bytes() -> Option<u64> {
    status_bytes("RssAnon:")
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// A kB field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses a size such as `512MiB`, `4GiB`, `4G`, `2.5GB` or `1000000`
/// (bytes). K/M/G/T and their -iB forms are powers of 1024; kB/MB/GB/TB
/// are powers of 1000.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a size such as 512MiB or 4GiB"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024f64.powi(2),
        "G" | "GiB" => 1024f64.powi(3),
        "T" | "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => return Err(format!("'{text}': unknown unit '{other}'")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("'{text}': a memory limit must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10^7 transactions, 10^4 customers, no interactions.
    const ROWS: Rows = Rows {
        transactions: 10_000_000,
        customers: 10_000,
        interactions: 0,
    };

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("2.5GB"), Ok(2_500_000_000));
        assert_eq!(parse_size(" 1 KiB "), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn without_a_limit_the_available_memory_decides_and_nothing_is_refused() {
        let pick = |available| choose_unlimited(ROWS, 1, available);
        let fast = FLOOR_BYTES + 10_000_000 * PER_DAILY_ROW + 10_000 * PER_CUSTOMER;
        let none = pick(None);
        assert_eq!(
            (none.plan, none.limit_bytes, none.limit_from),
            ("fast", None, None)
        );
        let roomy = pick(Some(fast));
        assert_eq!(
            (roomy.plan, roomy.limit_from),
            ("fast", Some("available memory"))
        );
        let tight = pick(Some(fast - 1));
        assert_eq!((tight.plan, tight.parts), ("lean", 2));
        assert_eq!(tight.limit_bytes, Some(fast - 1));
        // Less than even the lean plan needs: the lean plan in the most parts.
        let starved = pick(Some(1 << 20));
        assert_eq!((starved.plan, starved.parts), ("lean", MAX_PARTS));
        assert!(choose(ROWS, 1, Some(1 << 20)).is_err());
    }

    #[test]
    fn the_plan_follows_the_limit() {
        // 10^7 transactions, 10^4 customers.
        let daily = 10_000_000 * PER_DAILY_ROW;
        let daily_lean = 10_000_000 * PER_DAILY_ROW_LEAN + 10_000 * PER_CUSTOMER;
        let fast = FLOOR_BYTES + daily + 10_000 * PER_CUSTOMER;
        let lean_base = FLOOR_BYTES + 10_000 * PER_CUSTOMER_HELD;
        let pick = |snapshots, limit| choose(ROWS, snapshots, limit);
        assert_eq!(pick(1, None).unwrap().plan, "fast");
        assert_eq!(pick(1, Some(fast)).unwrap().plan, "fast");
        // Just under the fast plan: the lean plan in as few parts as fit.
        let lean = pick(1, Some(fast - 1)).unwrap();
        assert_eq!((lean.plan, lean.parts), ("lean", 2));
        assert_eq!(lean.estimate_bytes, lean_base + daily_lean / 2);
        assert!(lean.estimate_bytes < fast);
        // Room for a tenth of the lean pre-aggregate: ten parts.
        let tight = pick(1, Some(lean_base + daily_lean / 10)).unwrap();
        assert_eq!(tight.parts, 10);
        assert!(tight.estimate_bytes <= lean_base + daily_lean / 10);
        // A backfill holds two scorings at once on the fast plan.
        assert_eq!(pick(2, Some(fast)).unwrap().plan, "lean");
        // Not even 64 parts fit: refused, naming the need.
        match pick(1, Some(lean_base + daily_lean / 100)) {
            Err(Error::MemoryLimit { needed_mib, .. }) => {
                assert_eq!(needed_mib, (lean_base + daily_lean / 64).div_ceil(1 << 20))
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The interactions scoring reads count on both plans: the fast plan
    /// holds them all, each lean part reads its own.
    #[test]
    fn interactions_count_towards_both_plans() {
        let with = Rows {
            interactions: 5_000_000,
            ..ROWS
        };
        let held = 5_000_000 * PER_INTERACTION;
        let fast = FLOOR_BYTES + 10_000_000 * PER_DAILY_ROW + 10_000 * PER_CUSTOMER;
        assert_eq!(choose(with, 1, None).unwrap().estimate_bytes, fast + held);
        // Room for the fast plan without them only: the lean plan, whose
        // parts share them out.
        let lean = choose(with, 1, Some(fast)).unwrap();
        assert_eq!(lean.plan, "lean");
        let per_parts = 10_000_000 * PER_DAILY_ROW_LEAN + 10_000 * PER_CUSTOMER + held;
        let lean_base = FLOOR_BYTES + 10_000 * PER_CUSTOMER_HELD;
        assert_eq!(
            lean.estimate_bytes,
            lean_base + per_parts.div_ceil(lean.parts as u64)
        );
        assert!(lean.parts > choose(ROWS, 1, Some(fast - 1)).unwrap().parts);
    }
}
