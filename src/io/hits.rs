//! Where any of three bytes occurs in a text, in order: the CSV field
//! splitter's separators and line ends.
//!
//! Why not `memchr3_iter`: in a CSV line a separator comes every few
//! bytes, and each of its calls sets up, compares a block and returns the
//! first hit only, so a block is compared again for every hit in it
//! (`perf`: its search functions ~6% of staging's samples). Here 64 bytes
//! are compared once into a bit mask and each hit is its lowest set bit.

/// The positions of `needles` in `bytes`, ascending.
pub struct Hits<'a> {
    bytes: &'a [u8],
    needles: [u8; 3],
    /// Where the block of `mask` starts.
    base: usize,
    /// The block's hits not yet given, one bit per byte.
    mask: u64,
    /// Where the next block starts.
    next: usize,
}

impl<'a> Hits<'a> {
    pub fn new(bytes: &'a [u8], needles: [u8; 3]) -> Hits<'a> {
        Hits {
            bytes,
            needles,
            base: 0,
            mask: 0,
            next: 0,
        }
    }
}

impl Iterator for Hits<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            if self.next >= self.bytes.len() {
                return None;
            }
            self.base = self.next;
            let rest = &self.bytes[self.base..];
            self.mask = match rest.first_chunk::<64>() {
                Some(block) => block_mask(block, self.needles),
                None => tail_mask(rest, self.needles),
            };
            self.next = self.base + 64;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + bit)
    }
}

/// Bit i set where `block[i]` is one of `needles`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn block_mask(block: &[u8; 64], needles: [u8; 3]) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of every x86_64 CPU; the four 16-byte loads
    // (unaligned) lie inside `block`.
    unsafe {
        let [a, b, c] = needles.map(|n| _mm_set1_epi8(n as i8));
        let p = block.as_ptr() as *const __m128i;
        let mut mask = 0u64;
        for i in 0..4 {
            let v = _mm_loadu_si128(p.add(i));
            let hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, b)),
                _mm_cmpeq_epi8(v, c),
            );
            mask |= (_mm_movemask_epi8(hit) as u16 as u64) << (16 * i);
        }
        mask
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn block_mask(block: &[u8; 64], needles: [u8; 3]) -> u64 {
    tail_mask(block, needles)
}

/// [`block_mask`] of up to 64 bytes, byte by byte.
fn tail_mask(bytes: &[u8], [a, b, c]: [u8; 3]) -> u64 {
    bytes.iter().take(64).enumerate().fold(0u64, |m, (i, &x)| {
        m | (u64::from(x == a || x == b || x == c) << i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_memchr3s_at_every_length_and_offset() {
        let mut next = crate::testing::lcg(11);
        let alphabet = b",\n\rab\xe4";
        for len in (0..200).chain([1000, 4099]) {
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            for start in [0, 1, 7, 63] {
                let bytes = text.get(start..).unwrap_or(&[]);
                let ours: Vec<usize> = Hits::new(bytes, [b',', b'\n', b'\r']).collect();
                let theirs: Vec<usize> = memchr::memchr3_iter(b',', b'\n', b'\r', bytes).collect();
                assert_eq!(ours, theirs, "{len} bytes from {start}");
            }
        }
        // A needle above 127 (compared as a signed byte) and one absent.
        let bytes = b"a;b\xe4c;;\n";
        let ours: Vec<usize> = Hits::new(bytes, [b';', 0xe4, b'\r']).collect();
        assert_eq!(ours, [1, 3, 5, 6]);
    }
}
