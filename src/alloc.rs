//! The binary's allocator: glibc's malloc for everything but large
//! buffers, which are mapped directly in whole 2 MiB pages with
//! transparent huge pages asked for (`MADV_HUGEPAGE`).
//!
//! Why: polars builds every column in a fresh buffer of megabytes, and
//! glibc maps and unmaps such buffers itself in 4 KiB pages, so a run spent
//! ~15% of its time in page faults (`perf`, a nightly run at 10^6
//! customers). One fault per 2 MiB instead of per 4 KiB removes most of
//! that. Freed large buffers go back to the kernel at once, as glibc's
//! mapped ones did, so the resident memory stays what it was. Where the
//! kernel does not give huge pages (THP off), the mapping works as any
//! other.

use std::alloc::{GlobalAlloc, Layout, System};

/// Buffers of at least this many bytes are mapped directly.
const LARGE: usize = 4 << 20;
/// Mapped lengths are whole huge pages, so the kernel can back all of a
/// buffer (and align it: Linux places anonymous mappings of whole huge
/// pages on a huge-page boundary).
const HUGE_PAGE: usize = 2 << 20;

pub struct HugePages;

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
        libc::madvise(p, len, libc::MADV_HUGEPAGE);
    }
    p.cast()
}

// SAFETY: large buffers are mapped and unmapped by size (the layout given
// back on dealloc and realloc is the one the buffer was made with, so
// `is_large` decides the same way); everything else is glibc's.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
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
            unsafe {
                libc::munmap(ptr.cast(), mapped_len(layout.size()));
            }
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
                        libc::madvise(p, new_len, libc::MADV_HUGEPAGE);
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
        let a = HugePages;
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

    #[test]
    fn large_zeroed_buffers_are_zero_and_aligned() {
        let a = HugePages;
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
