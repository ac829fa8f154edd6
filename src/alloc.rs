//! The binary's allocator: glibc's malloc for everything but large
//! buffers, which are mapped directly in whole 2 MiB pages, with
//! transparent huge pages asked for (`MADV_HUGEPAGE`) unless the host takes
//! free pages back ([`adapt_to_host`]).
//!
//! Why: polars builds every column in a fresh buffer of megabytes, and
//! glibc maps and unmaps such buffers itself in 4 KiB pages, so a run spent
//! ~15% of its time in page faults (`perf`, a nightly run at 10^6
//! customers). One fault per 2 MiB instead of per 4 KiB removes most of
//! that. Freed large buffers go back to the kernel at once, as glibc's
//! mapped ones did, so the resident memory stays what it was. Where the
//! kernel does not give huge pages (THP off, or not asked), the mapping
//! works as any other.
//!
//! Unless a run asks to keep some ([`keep_freed`]): then freed mappings
//! are kept, up to that many bytes, and handed out again, so a buffer
//! reuses pages the process already has instead of the kernel zeroing
//! fresh ones. A backfill frees and maps the same sizes snapshot after
//! snapshot (~12 GB mapped at 10^7 transactions, 8 quarters); kept, its
//! system time fell from ~10 s to ~5–7 s. A single run on the fast plan
//! keeps too (see [`crate::memory::kept_for_reuse`]).

use std::alloc::{GlobalAlloc, Layout, System};

/// Buffers of at least this many bytes are mapped directly.
const LARGE: usize = 4 << 20;
/// Mapped lengths are whole huge pages, so the kernel can back all of a
/// buffer (and align it: Linux places anonymous mappings of whole huge
/// pages on a huge-page boundary).
const HUGE_PAGE: usize = 2 << 20;

pub struct LargeMapped;

/// Freed mappings kept for reuse: (address, length) in `slots[..n]`.
struct Kept {
    slots: [(usize, usize); SLOTS],
    n: usize,
    bytes: usize,
}

/// At most this many kept mappings (a linear scan finds the best fit;
/// large buffers are a few per step).
const SLOTS: usize = 128;

static KEPT: std::sync::Mutex<Kept> = std::sync::Mutex::new(Kept {
    slots: [(0, 0); SLOTS],
    n: 0,
    bytes: 0,
});

/// How many bytes of freed mappings may be kept (0: none, the default).
static KEEP_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Keeps up to `bytes` of freed large buffers for reuse from now on (0
/// returns every one at once, as without it). Kept bytes count towards the
/// process's resident memory, so a run sizes this from its plan's headroom.
pub fn keep_freed(bytes: usize) {
    KEEP_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
    release_kept_over(bytes);
}

/// Whether freed mappings are being kept ([`keep_freed`] with a limit):
/// the run has memory to spare, so it holds on to what it freed rather
/// than return it ([`crate::memory::release_free`]).
pub fn keeping() -> bool {
    KEEP_LIMIT.load(std::sync::atomic::Ordering::Relaxed) > 0
}

/// [`keep_freed`] for as long as the guard lives: dropping it returns the
/// kept mappings and keeps none from then on.
pub struct Keeping(());

impl Keeping {
    pub fn up_to(bytes: usize) -> Keeping {
        keep_freed(bytes);
        Keeping(())
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        keep_freed(0);
    }
}

/// Returns every kept mapping to the kernel.
pub fn release_kept() {
    release_kept_over(0);
}

/// Returns kept mappings to the kernel until at most `bytes` are kept (a
/// lower limit set while some are kept: the ingest's handed to the
/// scoring's).
fn release_kept_over(bytes: usize) {
    loop {
        let (p, len) = {
            let Ok(mut kept) = KEPT.lock() else { return };
            if kept.n == 0 || kept.bytes <= bytes {
                return;
            }
            kept.n -= 1;
            let slot = kept.slots[kept.n];
            kept.bytes -= slot.1;
            slot
        };
        // SAFETY: a kept mapping is owned by the pool alone.
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
    }
}

/// A kept mapping made `len` bytes long, or null when none is kept: the
/// smallest at least `len` (its tail unmapped), else the largest (grown
/// by the kernel, its pages kept).
fn take_kept(len: usize) -> *mut u8 {
    let (p, have) = {
        let Ok(mut kept) = KEPT.lock() else {
            return std::ptr::null_mut();
        };
        let n = kept.n;
        let fits = (0..n)
            .filter(|&i| kept.slots[i].1 >= len)
            .min_by_key(|&i| kept.slots[i].1);
        let Some(i) = fits.or_else(|| (0..n).max_by_key(|&i| kept.slots[i].1)) else {
            return std::ptr::null_mut();
        };
        let slot = kept.slots[i];
        kept.slots[i] = kept.slots[n - 1];
        kept.n -= 1;
        kept.bytes -= slot.1;
        slot
    };
    // SAFETY: the mapping [p, p + have) is ours alone now; lengths are
    // whole huge pages, so the tail starts on a page boundary.
    unsafe {
        if have > len {
            libc::munmap((p + len) as *mut libc::c_void, have - len);
            p as *mut u8
        } else if have < len {
            let q = libc::mremap(p as *mut libc::c_void, have, len, libc::MREMAP_MAYMOVE);
            if q == libc::MAP_FAILED {
                libc::munmap(p as *mut libc::c_void, have);
                return std::ptr::null_mut();
            }
            advise(q, len);
            q.cast()
        } else {
            p as *mut u8
        }
    }
}

/// Keeps the freed mapping [p, p + len) while the limit allows, else
/// unmaps it.
///
/// # Safety
/// The caller gives up the mapping.
unsafe fn free_mapping(p: *mut u8, len: usize) {
    let limit = KEEP_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if limit > 0
        && let Ok(mut kept) = KEPT.lock()
        && kept.n < SLOTS
        && kept.bytes + len <= limit
    {
        let n = kept.n;
        kept.slots[n] = (p as usize, len);
        kept.n += 1;
        kept.bytes += len;
        return;
    }
    unsafe { libc::munmap(p.cast(), len) };
}

/// Whether large mappings ask for huge pages ([`adapt_to_host`]).
static HUGE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Asks for huge pages only where they pay: not on a virtual machine whose
/// balloon reports free pages to its host ([`free_pages_reported`]).
/// There the kernel hands the blocks a process frees back to the host
/// within seconds, and a fresh huge page is cut from such a block and
/// faulted in again by the host, where a 4 KiB page is often served from
/// pages never handed back. Measured on such a host (10^7 transactions,
/// interleaved, `benches/HISTORY.md`, forty-fourth run): nights started
/// after 15 s idle 1.75–2.03 s instead of 2.28–2.43 s; full runs from CSV
/// and backfills no slower (no consistent direction beside the host's
/// drift); only a night started right after the history's run was slower
/// (1.58–1.72 s against 1.50–1.53 s). `TIERING_HUGE_PAGES=1` (or `0`)
/// decides instead. Called once, at the start of `main`.
pub fn adapt_to_host() {
    let huge = match std::env::var("TIERING_HUGE_PAGES").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !free_pages_reported(std::path::Path::new("/sys/bus/virtio/devices")),
    };
    HUGE.store(huge, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a virtio balloon under `devices` (sysfs' virtio devices) has
/// free page reporting (feature bit 5, `VIRTIO_BALLOON_F_REPORTING`;
/// sysfs writes a device's feature bits as '0'/'1' from bit 0).
fn free_pages_reported(devices: &std::path::Path) -> bool {
    const REPORTING: usize = 5;
    let Ok(dir) = std::fs::read_dir(devices) else {
        return false;
    };
    dir.flatten().any(|d| {
        let p = d.path();
        let balloon = std::fs::read_link(p.join("driver"))
            .is_ok_and(|l| l.file_name().is_some_and(|n| n == "virtio_balloon"));
        balloon
            && std::fs::read_to_string(p.join("features"))
                .is_ok_and(|f| f.as_bytes().get(REPORTING) == Some(&b'1'))
    })
}

/// Asks for huge pages on [p, p + len) when [`adapt_to_host`] said so.
///
/// # Safety
/// [p, p + len) is a mapping of the caller's.
unsafe fn advise(p: *mut libc::c_void, len: usize) {
    if HUGE.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: advice on the caller's mapping; a refusal changes nothing.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
    }
}

fn mapped_len(size: usize) -> usize {
    size.div_ceil(HUGE_PAGE) * HUGE_PAGE
}

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    let len = mapped_len(size);
    // SAFETY: an anonymous private mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    // SAFETY: advice on the mapping just made; a refusal changes nothing.
    unsafe {
        advise(p, len);
    }
    p.cast()
}

// SAFETY: large buffers are mapped and unmapped by size (the layout given
// back on dealloc and realloc is the one the buffer was made with, so
// `is_large` decides the same way); everything else is glibc's.
unsafe impl GlobalAlloc for LargeMapped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            let p = take_kept(mapped_len(layout.size()));
            if !p.is_null() {
                return p;
            }
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous pages are zero.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            unsafe { free_mapping(ptr, mapped_len(layout.size())) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new)) {
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                let (old_len, new_len) = (mapped_len(layout.size()), mapped_len(new_size));
                if old_len == new_len {
                    return ptr;
                }
                // The kernel moves the pages, no copy.
                let p = unsafe { libc::mremap(ptr.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
                if p == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                if new_len > old_len {
                    unsafe {
                        advise(p, new_len);
                    }
                }
                p.cast()
            }
            _ => {
                // Crossing the threshold: copy into the other kind.
                let p = unsafe { self.alloc(new) };
                if !p.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the pool: one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn kept() -> (usize, usize) {
        let k = KEPT.lock().unwrap();
        (k.n, k.bytes)
    }

    #[test]
    fn freed_buffers_are_kept_within_the_limit_and_reused() {
        let _one = SERIAL.lock().unwrap();
        let a = LargeMapped;
        keep_freed(8 * HUGE_PAGE);
        let big = Layout::from_size_align(3 * LARGE, 64).unwrap();
        let small = Layout::from_size_align(LARGE + 1, 64).unwrap();
        let huge = Layout::from_size_align(5 * LARGE, 64).unwrap();
        unsafe {
            // Freed and kept; a smaller buffer gets it, its tail unmapped.
            let p = a.alloc(big);
            fill(p, big.size());
            a.dealloc(p, big);
            assert_eq!(kept(), (1, mapped_len(big.size())));
            let q = a.alloc(small);
            assert_eq!(q, p);
            assert_eq!(kept(), (0, 0));
            fill(q, small.size());
            assert!(holds(q, small.size()));
            // Zeroed buffers are never kept ones.
            a.dealloc(q, small);
            assert_eq!(kept(), (1, mapped_len(small.size())));
            let z = a.alloc_zeroed(small);
            assert!((0..small.size()).all(|i| *z.add(i) == 0));
            a.dealloc(z, small);
            assert_eq!(kept(), (2, 2 * mapped_len(small.size())));
            // Larger than every kept one: the largest, grown.
            let g = a.alloc(huge);
            assert_eq!(kept(), (1, mapped_len(small.size())));
            fill(g, huge.size());
            assert!(holds(g, huge.size()));
            // Past the limit: unmapped, not kept.
            a.dealloc(g, huge);
            assert_eq!(kept(), (1, mapped_len(small.size())));
            release_kept();
            assert_eq!(kept(), (0, 0));
        }
        keep_freed(0);
    }

    #[test]
    fn a_keeping_run_holds_freed_buffers_until_its_guard_drops() {
        let _one = SERIAL.lock().unwrap();
        let a = LargeMapped;
        let big = Layout::from_size_align(LARGE, 64).unwrap();
        {
            let _kept = Keeping::up_to(4 * HUGE_PAGE);
            assert!(keeping());
            unsafe { a.dealloc(a.alloc(big), big) };
            // Asked to release free memory, a keeping run holds on to it.
            crate::memory::release_free();
            assert_eq!(kept(), (1, mapped_len(LARGE)));
        }
        assert!(!keeping());
        assert_eq!(kept(), (0, 0));
        // Not keeping: freed buffers go back at once.
        unsafe { a.dealloc(a.alloc(big), big) };
        assert_eq!(kept(), (0, 0));
    }

    /// The ingest's keeping handed to a run that keeps less: what is kept
    /// past the new limit goes back, the rest stays for reuse.
    #[test]
    fn a_lower_limit_returns_what_is_kept_past_it() {
        let _one = SERIAL.lock().unwrap();
        let a = LargeMapped;
        let big = Layout::from_size_align(LARGE, 64).unwrap();
        keep_freed(8 * HUGE_PAGE);
        unsafe {
            let (p, q, r) = (a.alloc(big), a.alloc(big), a.alloc(big));
            for b in [p, q, r] {
                a.dealloc(b, big);
            }
        }
        let each = mapped_len(LARGE);
        assert_eq!(kept(), (3, 3 * each));
        {
            let _run = Keeping::up_to(each + 1);
            assert_eq!(kept(), (1, each));
        }
        assert_eq!(kept(), (0, 0));
    }

    /// Byte `i` of a test pattern.
    fn byte(i: usize) -> u8 {
        (i * 31 % 251) as u8
    }

    fn fill(p: *mut u8, len: usize) {
        for i in 0..len {
            unsafe { *p.add(i) = byte(i) };
        }
    }

    /// The first `len` bytes still hold the pattern.
    fn holds(p: *const u8, len: usize) -> bool {
        (0..len).all(|i| unsafe { *p.add(i) } == byte(i))
    }

    #[test]
    fn buffers_keep_their_bytes_through_every_kind_of_realloc() {
        let _one = SERIAL.lock().unwrap();
        let a = LargeMapped;
        let small = 64 << 10;
        let (big, bigger) = (LARGE + 12_345, 3 * LARGE + 1);
        unsafe {
            // Small, grown past the threshold (copied into a mapping).
            let l = Layout::from_size_align(small, 64).unwrap();
            let p = a.alloc(l);
            fill(p, small);
            let p = a.realloc(p, l, big);
            assert!(holds(p, small));
            // Mapped, grown (the kernel moves the pages).
            fill(p, big);
            let l = Layout::from_size_align(big, 64).unwrap();
            let p = a.realloc(p, l, bigger);
            assert!(holds(p, big));
            // Shrunk within the same whole pages: the same buffer.
            fill(p, bigger);
            let l = Layout::from_size_align(bigger, 64).unwrap();
            let q = a.realloc(p, l, bigger - 100);
            assert_eq!(q, p);
            assert!(holds(q, bigger - 100));
            // Shrunk below the threshold (copied back to glibc).
            let l = Layout::from_size_align(bigger - 100, 64).unwrap();
            let p = a.realloc(q, l, small);
            assert!(holds(p, small));
            a.dealloc(p, Layout::from_size_align(small, 64).unwrap());
        }
    }

    /// A balloon with reporting among other virtio devices is found; one
    /// without it, another driver with the bit set, or no sysfs, is not.
    #[test]
    fn free_page_reporting_is_read_from_the_balloon_features() {
        let dir = crate::io::WorkDir::create_tagged(&std::env::temp_dir(), "virtio-test").unwrap();
        let root = dir.path();
        let device = |name: &str, driver: &str, features: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(
                format!("../../bus/virtio/drivers/{driver}"),
                d.join("driver"),
            )
            .unwrap();
            std::fs::write(d.join("features"), format!("{features}\n")).unwrap();
        };
        device("virtio1", "virtio_blk", "0110010000");
        assert!(!free_pages_reported(root));
        device("virtio0", "virtio_balloon", "0110000000");
        assert!(!free_pages_reported(root));
        std::fs::remove_dir_all(root.join("virtio0")).unwrap();
        device("virtio0", "virtio_balloon", "0110010000");
        assert!(free_pages_reported(root));
        assert!(!free_pages_reported(&root.join("absent")));
    }

    #[test]
    fn large_zeroed_buffers_are_zero_and_aligned() {
        let _one = SERIAL.lock().unwrap();
        let a = LargeMapped;
        let l = Layout::from_size_align(LARGE + 1, 64).unwrap();
        unsafe {
            let p = a.alloc_zeroed(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0);
            assert!((0..l.size()).step_by(4093).all(|i| *p.add(i) == 0));
            assert_eq!(*p.add(l.size() - 1), 0);
            a.dealloc(p, l);
        }
    }
}
