//! Activations quantized to 8-bit blocks so that quantized weights meet them in integer dot
//! products (the way ggml pairs Q4_0 with Q8_0 and the k-quants with Q8_K).
//!
//! Rounding is round-half-to-even of `x · (1/d)` with `d = max|x| / 127`; every variant of every
//! kernel reads these same blocks, so the integer sums they compute are identical.

/// 32 activations as int8 with their scale, for the 32-weight block formats.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8x32 {
    /// Scale: `x ≈ d · q`.
    pub d: f32,
    /// `d · Σ q`, the block sum that the offset formats (Q4_1, Q5_1) need.
    pub s: f32,
    /// (32,) codes in [−127, 127].
    pub qs: [i8; 32],
}

/// 256 activations as int8 with their scale and 16-element partial sums, for the k-quants.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale: `x ≈ d · q`.
    pub d: f32,
    /// (256,) codes in [−127, 127].
    pub qs: [i8; 256],
    /// (16,) sums of each 16 consecutive codes (for the k-quant minimum and offset terms).
    pub bsums: [i16; 16],
}

fn quantize_codes(x: &[f32], qs: &mut [i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::variant() != crate::Variant::Reference {
        // SAFETY: a non-reference variant means AVX2 was detected.
        return unsafe { quantize_codes_avx2(x, qs) };
    }
    quantize_codes_plain(x, qs)
}

/// The same code compiled for AVX2, so the rounding is one `vroundps` instead of a libm call
/// per element (identical results: both are IEEE round-half-to-even).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_codes_avx2(x: &[f32], qs: &mut [i8]) -> f32 {
    quantize_codes_plain(x, qs)
}

#[inline(always)]
fn quantize_codes_plain(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    d
}

impl BlockQ8x32 {
    /// Quantizes 32 activations.
    pub fn quantize(x: &[f32]) -> Self {
        let mut qs = [0i8; 32];
        let d = quantize_codes(&x[..32], &mut qs);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        Self {
            d,
            s: d * sum as f32,
            qs,
        }
    }
}

impl BlockQ8K {
    /// Quantizes 256 activations.
    pub fn quantize(x: &[f32]) -> Self {
        let mut qs = [0i8; 256];
        let d = quantize_codes(&x[..256], &mut qs);
        let bsums =
            std::array::from_fn(|i| qs[16 * i..16 * i + 16].iter().map(|&q| q as i16).sum());
        Self { d, qs, bsums }
    }
}

/// A batch of activation rows in every form the weights of one product may need.
pub struct Activations {
    /// Rows (tokens).
    pub n: usize,
    /// Elements per row.
    pub cols: usize,
    /// (n, cols) the activations themselves, for float weights.
    pub f32: Vec<f32>,
    /// (n, cols / 32) 32-blocks, filled when some weight needs them.
    pub q8: Vec<BlockQ8x32>,
    /// (n, cols / 256) 256-blocks, filled when some weight needs them.
    pub q8k: Vec<BlockQ8K>,
}

impl Activations {
    /// An empty batch; `set` fills it.
    pub fn new() -> Self {
        Self {
            n: 0,
            cols: 0,
            f32: Vec::new(),
            q8: Vec::new(),
            q8k: Vec::new(),
        }
    }

    /// Takes `x`, (n, cols), and quantizes it into the block forms that `kinds` ask for. The
    /// buffers are reused between calls, so a decode loop does not allocate.
    pub fn set(&mut self, x: &[f32], n: usize, cols: usize, kinds: ActKinds) {
        assert_eq!(x.len(), n * cols, "activations are (n, cols)");
        self.n = n;
        self.cols = cols;
        self.f32.clear();
        self.f32.extend_from_slice(x);
        self.q8.clear();
        if kinds.q8 {
            assert!(
                cols.is_multiple_of(32),
                "32-block weights need cols % 32 == 0"
            );
            self.q8.extend(x.chunks_exact(32).map(BlockQ8x32::quantize));
        }
        self.q8k.clear();
        if kinds.q8k {
            assert!(
                cols.is_multiple_of(256),
                "k-quant weights need cols % 256 == 0"
            );
            self.q8k.extend(x.chunks_exact(256).map(BlockQ8K::quantize));
        }
    }

    /// Row `t`'s (cols,) floats.
    pub fn row_f32(&self, t: usize) -> &[f32] {
        &self.f32[t * self.cols..(t + 1) * self.cols]
    }

    /// Row `t`'s (cols / 32,) blocks.
    pub fn row_q8(&self, t: usize) -> &[BlockQ8x32] {
        let b = self.cols / 32;
        &self.q8[t * b..(t + 1) * b]
    }

    /// Row `t`'s (cols / 256,) blocks.
    pub fn row_q8k(&self, t: usize) -> &[BlockQ8K] {
        let b = self.cols / 256;
        &self.q8k[t * b..(t + 1) * b]
    }
}

impl Default for Activations {
    fn default() -> Self {
        Self::new()
    }
}

/// Which block forms a set of weights needs from its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActKinds {
    /// 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
    pub q8: bool,
    /// 256-blocks (Q4_K, Q5_K, Q6_K).
    pub q8k: bool,
}

impl std::ops::BitOr for ActKinds {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self {
            q8: self.q8 || o.q8,
            q8k: self.q8k || o.q8k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let b = BlockQ8K::quantize(&x);
        for (q, v) in b.qs.iter().zip(&x) {
            assert!((*q as f32 * b.d - v).abs() <= 0.5 * b.d + 1e-7);
        }
        assert_eq!(
            b.bsums[3],
            b.qs[48..64].iter().map(|&q| q as i16).sum::<i16>()
        );
        let s = BlockQ8x32::quantize(&x[..32]);
        let sum: i32 = s.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(s.s, s.d * sum as f32);
    }

    #[test]
    fn zero_block_has_zero_scale_and_codes() {
        let b = BlockQ8x32::quantize(&[0.0; 32]);
        assert_eq!((b.d, b.s, b.qs), (0.0, 0.0, [0; 32]));
    }
}
