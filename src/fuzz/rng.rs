//! The fuzzer's seeded random source: splitmix64, so that a seed and a case number name one
//! case on every machine and every build (a library RNG may change its stream between
//! versions).

/// A deterministic random source.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// splitmix64's increment (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// The source for case `index` of a run seeded with `seed`.
    pub fn for_case(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(GOLDEN).rotate_left(17));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// Random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.byte();
        }
    }

    /// An "interesting" 32-bit value near `near`: the boundaries parsers get wrong, or
    /// anything.
    pub fn interesting_u32(&mut self, near: u32) -> u32 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => near.wrapping_sub(1),
            3 => near.wrapping_add(1),
            4 => u32::MAX,
            5 => 0x7FFF_FFFF,
            6 => 0x8000_0000,
            7 => near.wrapping_mul(2),
            8 => 0x1_0000,
            _ => self.next_u64() as u32,
        }
    }

    /// An "interesting" 16-bit value near `near`.
    pub fn interesting_u16(&mut self, near: u16) -> u16 {
        match self.below(8) {
            0 => 0,
            1 => 1,
            2 => near.wrapping_sub(1),
            3 => near.wrapping_add(1),
            4 => u16::MAX,
            5 => 0x8000,
            6 => 15,
            _ => self.next_u64() as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_same_seed_same_stream() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_case(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_case(7, 3).next_u64(),
            Rng::for_case(7, 4).next_u64()
        );
        let mut r = Rng::for_case(1, 1);
        assert!((0..1000).all(|_| r.below(5) < 5));
        assert_eq!(r.below(0), 0);
    }
}
