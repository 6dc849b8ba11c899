//! Activations quantized to 8-bit blocks so that quantized weights meet them in integer dot
//! products (the way ggml pairs Q4_0 with Q8_0 and the k-quants with Q8_K).
//!
//! The rounding follows ggml's CPU quantizers, so that smelt's logits track llama.cpp's: for
//! 32-blocks `q = round_half_even(x · 127 / max|x|)` with the scale then stored as f16
//! (`block_q8_0`/`block_q8_1`); for 256-blocks `q = round(x · −127 / max)` where max is the
//! signed value of largest magnitude, clamped to 127 (`block_q8_K`; ggml moved from −128 to
//! −127 for IQ2_XXS, and llama.cpp's x86 build quantizes so). Every variant of every
//! kernel reads these same blocks, so the integer sums they compute are identical.

use crate::w8a8::TokenInt8;

/// 32 activations as int8 with their scale, for the 32-weight block formats.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8x32 {
    /// Scale: `x ≈ d · q` (an f16 value, as ggml stores it).
    pub d: f32,
    /// `d · Σ q`, for the formats with centred codes (Q4_0, Q5_0: Σ (q − k)·y = Σ q·y − k·Σ y).
    pub s: f32,
    /// `d · Σ q` rounded to f16 as ggml's `block_q8_1` stores it, for the offset formats
    /// (Q4_1, Q5_1).
    pub s_f16: f32,
    /// `Σ q` exactly, for kernels that start an integer sum at `−k·Σ q` (the interleaved ones).
    pub sum: i32,
    /// (8,) `−128 · Σ q` over each four consecutive codes, which start the eight lane sums of
    /// the kernels in ggml's order that need an offset: the interleaved Q8_0 and Q5_0 ones
    /// (their unsigned codes carry a +128 bias; see `interleaved.rs`) and, shifted right by 3
    /// (`−16 · Σ q`), the row-at-a-time Q5_0 one.
    pub bias4: [i32; 8],
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

/// `qs[i] = min(round_half_even(x[i] · scale), 127)`. With `FUSED` the product is not rounded
/// first: ggml's `quantize_row_q8_K_ref` calls `nearest_int(iscale · x)`, whose `+ 12582912.f`
/// GCC fuses with the product into one FMA (its built x86 library has `vfmadd132ps` there), so a
/// product that rounds to k + ½ in f32 is rounded as the exact value it came from (Q8_K).
/// Without it, the product is rounded as ggml's `quantize_row_q8_0` rounds it (`vroundps`).
fn scale_round<const FUSED: bool>(x: &[f32], scale: f32, qs: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::variant() != crate::Variant::Reference {
        // SAFETY: a non-reference variant means AVX2 and FMA were detected.
        return unsafe { scale_round_avx2::<FUSED>(x, scale, qs) };
    }
    scale_round_plain::<FUSED>(x, scale, qs)
}

/// The same code compiled for AVX2 + FMA, so the rounding is one `vroundps` (or the fused
/// product one `vfmadd`) instead of a libm call per element, with identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_round_avx2<const FUSED: bool>(x: &[f32], scale: f32, qs: &mut [i8]) {
    scale_round_plain::<FUSED>(x, scale, qs)
}

#[inline(always)]
fn scale_round_plain<const FUSED: bool>(x: &[f32], scale: f32, qs: &mut [i8]) {
    // 1.5·2^23: adding it puts |v| < 2^22 on the integer grid, rounding half to even.
    const MAGIC: f32 = 12_582_912.0;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = if FUSED {
            v.mul_add(scale, MAGIC) - MAGIC
        } else {
            (v * scale).round_ties_even()
        };
        *q = r.min(127.0) as i8;
    }
}

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// (codes, max |x|, Σ codes, `bias4`) of 32 activations, all in registers: the same max, the
/// same `vroundps` rounding and the same clamp as the scalar path, so the same codes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_x32_avx2(x: &[f32; 32]) -> ([i8; 32], f32, i32, [i32; 8]) {
    use std::arch::x86_64::*;
    unsafe {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let sign = _mm256_set1_ps(-0.0);
        let a = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let scale = _mm256_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
        let top = _mm256_set1_ps(127.0);
        let mut q = [_mm256_setzero_si256(); 4];
        for (qi, &vi) in q.iter_mut().zip(&v) {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(vi, scale),
            );
            *qi = _mm256_cvtps_epi32(_mm256_min_ps(r, top));
        }
        // packs interleave 128-bit lanes; the permute puts the 4-byte groups back in order.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut qs = [0i8; 32];
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, p);
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        // Sums of four: the hadds leave chunks (0, 2, 4, 6 | 1, 3, 5, 7); the permute orders them.
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3]));
        let h = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut bias4 = [0i32; 8];
        _mm256_storeu_si256(
            bias4.as_mut_ptr() as *mut __m256i,
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(h)),
        );
        (qs, amax, _mm_cvtsi128_si32(s), bias4)
    }
}

impl BlockQ8x32 {
    /// Quantizes 32 activations (ggml's `quantize_row_q8_0`/`q8_1`).
    pub fn quantize(x: &[f32]) -> Self {
        let x: &[f32; 32] = x[..32].try_into().expect("32 values");
        #[cfg(target_arch = "x86_64")]
        if crate::variant() != crate::Variant::Reference {
            // SAFETY: a non-reference variant means AVX2 and FMA were detected.
            let (qs, amax, sum, bias4) = unsafe { quantize_x32_avx2(x) };
            return Self::from_codes(qs, amax, sum, bias4);
        }
        let mut qs = [0i8; 32];
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        scale_round::<false>(x, if amax > 0.0 { 127.0 / amax } else { 0.0 }, &mut qs);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        let bias4 = std::array::from_fn(|j| {
            -128 * qs[4 * j..4 * j + 4].iter().map(|&q| q as i32).sum::<i32>()
        });
        Self::from_codes(qs, amax, sum, bias4)
    }

    /// The block of codes `qs` (Σ = `sum`, sums of four as `bias4`) quantized with
    /// `max |x| = amax`.
    fn from_codes(qs: [i8; 32], amax: f32, sum: i32, bias4: [i32; 8]) -> Self {
        let d = amax / 127.0;
        let d16 = f16_round(d);
        Self {
            d: d16,
            s: d16 * sum as f32,
            s_f16: f16_round(d * sum as f32),
            sum,
            bias4,
            qs,
        }
    }
}

impl BlockQ8K {
    /// Quantizes 256 activations (ggml's `quantize_row_q8_K_ref`: `iscale = −127/max`).
    pub fn quantize(x: &[f32]) -> Self {
        let x = &x[..256];
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        Self::with_scale::<true>(x, if amax == 0.0 { 0.0 } else { -127.0 / max })
    }

    /// The block of `x` at `iscale` (`q = round(x · iscale)`, `d = 1 / iscale`; all zero for
    /// `iscale` 0), the product `FUSED` into the rounding or not (`scale_round`).
    fn with_scale<const FUSED: bool>(x: &[f32], iscale: f32) -> Self {
        let mut qs = [0i8; 256];
        if iscale == 0.0 {
            return Self {
                d: 0.0,
                qs,
                bsums: [0; 16],
            };
        }
        scale_round::<FUSED>(x, iscale, &mut qs);
        let bsums =
            std::array::from_fn(|i| qs[16 * i..16 * i + 16].iter().map(|&q| q as i16).sum());
        Self {
            d: 1.0 / iscale,
            qs,
            bsums,
        }
    }

    /// Quantizes 256 activations as llama.cpp's x86 build does for the rows it hands to the
    /// repacked Q4_K gemm in groups of 4 (`ggml_quantize_mat_q8_K_4x8`): the same scale, except
    /// that a positive value of largest magnitude wins over a negative one, and each product
    /// rounded in f32 before it is rounded to an integer (`vmulps`, `vroundps`).
    pub fn quantize_x4(x: &[f32]) -> Self {
        let x = &x[..256];
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let iscale = match amax {
            0.0 => 0.0,
            _ if x.contains(&amax) => -127.0 / amax,
            _ => 127.0 / amax,
        };
        Self::with_scale::<false>(x, iscale)
    }
}

/// The rules by which llama.cpp picks one of two orders for a product, by the batch a row is
/// in (see `reference`); a matrix's kernel follows one rule, and [`Activations::k_batch`]
/// answers it for each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KBatch {
    /// Repacked Q4_K and Q2_K: the rows of a sequence's batch go through the gemm in groups
    /// of 4, the
    /// rest (`n % 4` at the end; all of a single token) through the gemv.
    Groups4,
    /// Q3_K, Q5_K, Q6_K, IQ4_XS, and Q4_K and Q2_K left as written: a sequence's batch of 8
    /// rows or more goes through the tiled matmul, a
    /// smaller one through `vec_dot`.
    Tiled8,
    /// IQ4_NL not repacked, and F32: a sequence of 2 rows or more goes through llamafile's
    /// sgemm, a token alone through `vec_dot`.
    Several,
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
    /// (n, cols / 256) 256-blocks for repacked Q4_K and Q2_K: rows in groups of 4
    /// ([`KBatch::Groups4`]) by [`BlockQ8K::quantize_x4`], the others as in `q8k`.
    pub q8k_x4: Vec<BlockQ8K>,
    /// (n,) per row: (in one of its sequence's groups of 4, its sequence has 8 rows or more,
    /// its sequence has 2 rows or more).
    batch: Vec<(bool, bool, bool)>,
    /// Per-token int8 rows, filled when some weight is W8A8.
    pub i8row: TokenInt8,
    /// (n / 8, cols / 32) the 32-blocks of each full group of 8 tokens in token pairs, filled
    /// with `q8` when the AVX-512 VNNI kernels will read them ([`crate::paired_tiles`]).
    pub q8_paired: Vec<PairedQ8x32>,
}

/// One 32-block position of 8 consecutive tokens, laid out for 512-bit registers that hold
/// two tokens each: one load gives a pair's codes, one its scales, one all 8 offset terms.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedQ8x32 {
    /// (4, 64): pair p holds the 32 codes of token 2p, then those of token 2p + 1.
    pub qs: [[i8; 64]; 4],
    /// (4, 16): pair p holds token 2p's `d` in lanes 0..8 and token 2p + 1's in lanes 8..16.
    pub d: [[f32; 16]; 4],
    /// (8,) each token's `s` (`d·Σq`).
    pub s: [f32; 8],
    /// (8,) each token's `s_f16`.
    pub s_f16: [f32; 8],
}

impl PairedQ8x32 {
    /// The block at one position of 8 tokens.
    pub fn pack(blocks: [&BlockQ8x32; 8]) -> Self {
        let mut p = Self {
            qs: [[0; 64]; 4],
            d: [[0.0; 16]; 4],
            s: [0.0; 8],
            s_f16: [0.0; 8],
        };
        for (t, blk) in blocks.into_iter().enumerate() {
            let half = (t % 2) * 32;
            p.qs[t / 2][half..half + 32].copy_from_slice(&blk.qs);
            let half = (t % 2) * 8;
            p.d[t / 2][half..half + 8].fill(blk.d);
            p.s[t] = blk.s;
            p.s_f16[t] = blk.s_f16;
        }
        p
    }
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
            q8k_x4: Vec::new(),
            batch: Vec::new(),
            i8row: TokenInt8::default(),
            q8_paired: Vec::new(),
        }
    }

    /// Takes `x`, (n, cols), the rows of one sequence, and quantizes it into the block forms
    /// that `kinds` ask for. The buffers are reused between calls, so a decode loop does not
    /// allocate.
    pub fn set(&mut self, x: &[f32], n: usize, cols: usize, kinds: ActKinds) {
        self.set_spans(x, &[n], cols, kinds)
    }

    /// [`Activations::set`] for the rows of several sequences, `spans[i]` rows each in order:
    /// a k-quant product sums each row in the order llama.cpp would for its sequence's batch
    /// alone ([`KBatch`]), so a sequence's results do not depend on what it is batched with.
    pub fn set_spans(&mut self, x: &[f32], spans: &[usize], cols: usize, kinds: ActKinds) {
        let n: usize = spans.iter().sum();
        assert_eq!(x.len(), n * cols, "activations are (n, cols)");
        self.batch.clear();
        for &m in spans {
            self.batch
                .extend((0..m).map(|i| (i < m - m % 4, m >= 8, m >= 2)));
        }
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
            fill_parallel(&mut self.q8, x, 32, cols, |_| BlockQ8x32::quantize);
        }
        self.q8_paired.clear();
        if kinds.q8_paired && n >= 8 && crate::paired_tiles() {
            let nb = cols / 32;
            for g in 0..n / 8 {
                let group = &self.q8[8 * g * nb..8 * (g + 1) * nb];
                self.q8_paired.extend(
                    (0..nb).map(|i| PairedQ8x32::pack(std::array::from_fn(|t| &group[t * nb + i]))),
                );
            }
        }
        self.q8k.clear();
        if kinds.q8k {
            assert!(
                cols.is_multiple_of(256),
                "k-quant weights need cols % 256 == 0"
            );
            fill_parallel(&mut self.q8k, x, 256, cols, |_| BlockQ8K::quantize);
        }
        self.q8k_x4.clear();
        if kinds.q8k_x4 {
            assert!(
                cols.is_multiple_of(256),
                "k-quant weights need cols % 256 == 0"
            );
            let batch = &self.batch;
            fill_parallel(&mut self.q8k_x4, x, 256, cols, |t| {
                if batch[t].0 {
                    BlockQ8K::quantize_x4
                } else {
                    BlockQ8K::quantize
                }
            });
        }
        if kinds.i8row {
            self.i8row.set(x, n, cols);
        } else {
            self.i8row.n = 0;
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

    /// Tokens `8g..8g + 8` as (cols / 32,) paired blocks, when they were packed.
    pub fn paired_q8(&self, g: usize) -> Option<&[PairedQ8x32]> {
        let b = self.cols / 32;
        self.q8_paired.get(g * b..(g + 1) * b)
    }

    /// Row `t`'s (cols / 256,) blocks.
    pub fn row_q8k(&self, t: usize) -> &[BlockQ8K] {
        let b = self.cols / 256;
        &self.q8k[t * b..(t + 1) * b]
    }

    /// Row `t`'s (cols / 256,) blocks for repacked Q4_K and Q2_K.
    pub fn row_q8k_x4(&self, t: usize) -> &[BlockQ8K] {
        let b = self.cols / 256;
        &self.q8k_x4[t * b..(t + 1) * b]
    }

    /// Row `t`'s (cols / 256,) blocks as a kernel under `rule` reads them (`q8k_x4` for
    /// [`KBatch::Groups4`], else `q8k`).
    pub fn row_q8k_for(&self, t: usize, rule: KBatch) -> &[BlockQ8K] {
        match rule {
            KBatch::Groups4 => self.row_q8k_x4(t),
            _ => self.row_q8k(t),
        }
    }

    /// Whether row `t` takes the batch order under `rule` (else the one-token order).
    pub fn k_batch(&self, t: usize, rule: KBatch) -> bool {
        let (group, wide, several) = self.batch[t];
        match rule {
            KBatch::Groups4 => group,
            KBatch::Tiled8 => wide,
            KBatch::Several => several,
        }
    }

    /// How many rows from `t0` on (at most `max`) take the same order under `rule` as `t0`.
    pub fn k_run(&self, t0: usize, max: usize, rule: KBatch) -> usize {
        let first = self.k_batch(t0, rule);
        (t0 + 1..(t0 + max).min(self.n))
            .take_while(|&t| self.k_batch(t, rule) == first)
            .count()
            + 1
    }
}

impl Default for Activations {
    fn default() -> Self {
        Self::new()
    }
}

/// `out = x.chunks(block).map(quantize)`, rows of a batch spread over the thread pool (a prompt
/// batch has hundreds; a single token stays on the calling thread).
/// `quantize(t)` is the quantizer for row t.
fn fill_parallel<B: Copy + Send + Sync>(
    out: &mut Vec<B>,
    x: &[f32],
    block: usize,
    cols: usize,
    quantize: impl Fn(usize) -> fn(&[f32]) -> B + Sync,
) {
    use rayon::prelude::*;
    if cols == 0 {
        return;
    }
    // A few decode tokens are a few microseconds of work: less than a parallel region costs.
    if x.len() <= cols || x.len() < 1 << 15 {
        for (t, row) in x.chunks_exact(cols).enumerate() {
            out.extend(row.chunks_exact(block).map(quantize(t)));
        }
        return;
    }
    x.par_chunks(cols)
        .enumerate()
        .map(|(t, row)| row.chunks_exact(block).map(quantize(t)).collect::<Vec<B>>())
        .collect::<Vec<_>>()
        .into_iter()
        .for_each(|r| out.extend(r));
}

/// Which block forms a set of weights needs from its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActKinds {
    /// 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
    pub q8: bool,
    /// The 32-blocks also paired per 8 tokens for the paired kernels ([`PairedQ8x32`]); not
    /// wanted by interleaved matrices, whose kernels read the plain blocks.
    pub q8_paired: bool,
    /// 256-blocks (Q5_K, Q6_K).
    pub q8k: bool,
    /// 256-blocks as repacked Q4_K and Q2_K read them ([`Activations::q8k_x4`]).
    pub q8k_x4: bool,
    /// Per-token int8 rows (W8A8).
    pub i8row: bool,
}

impl std::ops::BitOr for ActKinds {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self {
            q8: self.q8 || o.q8,
            q8_paired: self.q8_paired || o.q8_paired,
            q8k: self.q8k || o.q8k,
            q8k_x4: self.q8k_x4 || o.q8k_x4,
            i8row: self.i8row || o.i8row,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8k_x4_prefers_a_positive_maximum_and_rounds_the_rounded_product() {
        // −a before +a: ggml's row quantizer keeps the first, the 4-row one the positive.
        let mut x = [0.25f32; 256];
        (x[0], x[1]) = (-2.0, 2.0);
        let (row, x4) = (BlockQ8K::quantize(&x), BlockQ8K::quantize_x4(&x));
        assert!(row.d > 0.0 && x4.d < 0.0, "{} {}", row.d, x4.d);
        assert_eq!((row.qs[0], x4.qs[0]), (-127, 127));
        // A value whose f32 product with the scale is exactly k + ½ while the exact product
        // is not: the two quantizers round it apart.
        let amax = 1.7f32;
        let scale = -127.0f32 / amax;
        let mut found = None;
        'search: for k in -120..120 {
            let t = k as f32 + 0.5;
            let x0 = t / scale;
            for du in -4i32..=4 {
                let v = f32::from_bits((x0.to_bits() as i32 + du) as u32);
                let (p, exact) = (v * scale, v as f64 * scale as f64);
                if v.abs() < amax && p == t && exact.round_ties_even() != p.round_ties_even() as f64
                {
                    found = Some((v, p, exact));
                    break 'search;
                }
            }
        }
        let (v, p, exact) = found.expect("a telling value exists for this scale");
        let mut x = [0.1f32; 256];
        (x[0], x[5]) = (amax, v);
        let (row, x4) = (BlockQ8K::quantize(&x), BlockQ8K::quantize_x4(&x));
        assert_eq!(x4.qs[5], p.round_ties_even() as i8);
        assert_eq!(row.qs[5], exact.round_ties_even() as i8);
    }

    #[test]
    fn q8k_rounds_the_exact_product_as_ggml_does() {
        // f32 pairs (x, scale) whose product rounds in f32 to exactly k + ½ while the exact
        // product is not a tie: ggml's fused `iscale·x + 1.5·2^23` rounds the exact value.
        let mut seen = 0;
        for i in 0..2000u32 {
            let scale = -127.0f32 / (0.5 + i as f32 * 0.001);
            let target = -37.5f32 + (i % 50) as f32;
            let x = target / scale;
            let p = x * scale;
            let exact = x as f64 * scale as f64;
            if p != target || exact == target as f64 {
                continue;
            }
            let want = exact.round_ties_even() as i8;
            if want == p.round_ties_even() as i8 {
                continue; // both roundings agree here: not a telling case
            }
            let mut q = [0i8];
            scale_round::<true>(&[x], scale, &mut q);
            assert_eq!(q[0], want, "x {x}: f32 product {p}, exact {exact}");
            scale_round_plain::<true>(&[x], scale, &mut q);
            assert_eq!(q[0], want, "plain path, x {x}");
            seen += 1;
        }
        assert!(seen > 0, "no f32 tie found to test");
    }

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let b = BlockQ8K::quantize(&x);
        // −127/max maps the extreme to −127 exactly, and nothing reaches ±128.
        for (q, v) in b.qs.iter().zip(&x) {
            let steps = if *q == 127 { 1.5 } else { 0.5 };
            assert!((*q as f32 * b.d - v).abs() <= steps * b.d.abs() + 1e-7);
        }
        assert_eq!(
            b.bsums[3],
            b.qs[48..64].iter().map(|&q| q as i16).sum::<i16>()
        );
        let s = BlockQ8x32::quantize(&x[..32]);
        let sum: i32 = s.qs.iter().map(|&q| q as i32).sum();
        // The SIMD path gives the scalar path's codes: check against the plain loop.
        let amax = x[..32].iter().fold(0f32, |m, v| m.max(v.abs()));
        let mut plain = [0i8; 32];
        scale_round_plain::<false>(&x[..32], 127.0 / amax, &mut plain);
        assert_eq!(s.qs, plain);
        assert_eq!(s.s, s.d * sum as f32);
        assert_eq!(s.sum, sum);
        assert_eq!(s.d, half::f16::from_f32(s.d).to_f32(), "d is an f16 value");
        for (q, v) in s.qs.iter().zip(&x[..32]) {
            assert!((*q as f32 * s.d - v).abs() <= 0.5 * s.d * 1.002 + 1e-7);
        }
    }

    #[test]
    fn simd_blocks_equal_the_plain_loop() {
        // Pseudo-random blocks, some with values on rounding ties (k + 0.5 steps) and
        // outliers; the block's codes, sum and scale must equal the plain loop's.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..2000 {
            let mut x: Vec<f32> = (0..32)
                .map(|_| {
                    let r = next();
                    match i % 3 {
                        // Half-integers in [−126.5, 126.5]: with 127 as the maximum the scale
                        // is 1, so every value is a rounding tie.
                        0 => (r % 254) as f32 - 126.5,
                        _ => {
                            let outlier = if r % 7 == 0 { 10.0 } else { 1.0 };
                            ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * outlier
                        }
                    }
                })
                .collect();
            if i % 3 == 0 {
                x[(i / 3) % 32] = 127.0;
            }
            let b = BlockQ8x32::quantize(&x);
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mut plain = [0i8; 32];
            scale_round_plain::<false>(&x, if amax > 0.0 { 127.0 / amax } else { 0.0 }, &mut plain);
            assert_eq!(b.qs, plain, "block {i}");
            assert_eq!(b.sum, plain.iter().map(|&q| q as i32).sum::<i32>());
            for (j, &bias) in b.bias4.iter().enumerate() {
                let four: i32 = plain[4 * j..4 * j + 4].iter().map(|&q| q as i32).sum();
                assert_eq!(bias, -128 * four, "block {i} chunk {j}");
            }
            assert_eq!(b.d, f16_round(amax / 127.0));
        }
    }

    #[test]
    fn zero_block_has_zero_scale_and_codes() {
        let b = BlockQ8x32::quantize(&[0.0; 32]);
        assert_eq!(
            (b.d, b.s, b.s_f16, b.sum, b.qs),
            (0.0, 0.0, 0.0, 0, [0; 32])
        );
        let k = BlockQ8K::quantize(&[0.0; 256]);
        assert_eq!((k.d, k.bsums), (0.0, [0; 16]));
    }
}
