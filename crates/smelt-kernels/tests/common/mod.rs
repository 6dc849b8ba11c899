//! What the kernel test files share: a seeded generator of random inputs (the seed is printed
//! so that a failure can be replayed with `SMELT_SEED`).
#![allow(dead_code)]

/// splitmix64 from the test seed.
pub struct Rng(u64);

impl Rng {
    pub fn fresh() -> Self {
        Self(smelt_quant::rng::test_seed())
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [−1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal, with occasional outliers ×8 (as real activations have).
    pub fn activation(&mut self) -> f32 {
        let v = (0..4).map(|_| self.uniform()).sum::<f32>();
        if self.next().is_multiple_of(64) {
            v * 8.0
        } else {
            v
        }
    }
}
