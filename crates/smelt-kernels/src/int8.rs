//! Integer GEMM for int8 convolutions and linear layers: unsigned 8-bit activations × signed
//! 8-bit weights, summed in i32, then either requantized to u8 with a fixed-point multiplier
//! (the TFLite/gemmlowp integer-only scheme) or scaled back to f32 (dynamic quantization).
//!
//! Layouts: activations are rows `a: [rows][k_pad]` (one row per output pixel or per image;
//! `k_pad` = k rounded up to 4, the tail zero); weights are packed once into [`PackedI8`] as
//! `[oc_pad / 8][k_pad / 4][8][4]`, so one 32-byte load holds 4 consecutive k of 8 output
//! channels and a broadcast of 4 activation bytes feeds a `vpdpbusd` (or its exact AVX2
//! emulation). Outputs are `[rows][oc]`, which for convolutions is NHWC.
//!
//! Requantization is single-rounding fixed point (TFLite's `TFLITE_SINGLE_ROUNDING`):
//! `y = clamp(zp + ((acc + bias) · m + 2^(s−1)) >> s)`, with `m` a Q31 multiplier and
//! `s` the total right shift, computed in i64. Every variant gives the same integers as the
//! reference; `tests/int8_gemm.rs` checks that on fresh random inputs.

use rayon::prelude::*;

use crate::{Variant, available_variants};

/// A real multiplier `M > 0` as `m · 2^−shift` with `m` in `[2^30, 2^31)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedMultiplier {
    /// Q31 mantissa.
    pub m: i32,
    /// Total right shift, 1..=62.
    pub shift: u32,
}

impl FixedMultiplier {
    /// The closest fixed-point form of `real` (`None` outside about `[2^−32, 2^30)` or not finite).
    pub fn new(real: f64) -> Option<Self> {
        if !real.is_finite() || real <= 0.0 {
            return None;
        }
        // real = frac · 2^exp with frac in [0.5, 1).
        let exp = real.log2().floor() as i32 + 1;
        let frac = real / 2f64.powi(exp);
        let mut m = (frac * 2f64.powi(31)).round() as i64;
        let mut exp = exp;
        if m == 1 << 31 {
            m /= 2;
            exp += 1;
        }
        let shift = 31 - exp;
        if !(1..=62).contains(&shift) {
            return None;
        }
        Some(Self {
            m: m as i32,
            shift: shift as u32,
        })
    }

    /// The real value this multiplier stands for.
    pub fn real(&self) -> f64 {
        self.m as f64 / 2f64.powi(self.shift as i32)
    }

    /// `round_half_up(x · m / 2^shift)` in exact integer arithmetic.
    #[inline]
    pub fn apply(&self, x: i32) -> i32 {
        let p = x as i64 * self.m as i64 + (1i64 << (self.shift - 1));
        (p >> self.shift) as i32
    }
}

/// Weights packed for [`gemm_u8i8`]: see the module docs for the layout.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    oc: usize,
    k: usize,
    k_pad: usize,
    oc_pad: usize,
    /// [oc_pad / 8][k_pad / 4][8][4], zero in the padding.
    data: Vec<i8>,
    /// Σ_k w[oc][k] per output channel: folds an activation zero-point into the bias.
    row_sums: Vec<i32>,
}

/// `k` rounded up to the packing step of 4.
pub fn k_padded(k: usize) -> usize {
    k.div_ceil(4) * 4
}

impl PackedI8 {
    /// Packs row-major `w: [oc][k]`.
    pub fn new(w: &[i8], oc: usize, k: usize) -> Self {
        assert_eq!(w.len(), oc * k, "weights must be [oc][k]");
        let k_pad = k_padded(k);
        let oc_pad = oc.div_ceil(8) * 8;
        let mut data = vec![0i8; oc_pad * k_pad];
        for o in 0..oc {
            for kk in 0..k {
                let (ob, ol) = (o / 8, o % 8);
                let (kb, kl) = (kk / 4, kk % 4);
                data[((ob * (k_pad / 4) + kb) * 8 + ol) * 4 + kl] = w[o * k + kk];
            }
        }
        let row_sums = (0..oc)
            .map(|o| w[o * k..(o + 1) * k].iter().map(|&v| v as i32).sum())
            .collect();
        Self {
            oc,
            k,
            k_pad,
            oc_pad,
            data,
            row_sums,
        }
    }

    /// Output channels.
    pub fn oc(&self) -> usize {
        self.oc
    }
    /// Reduction length before padding.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Row length activations must have.
    pub fn k_pad(&self) -> usize {
        self.k_pad
    }
    /// Σ_k w[oc][k] for each output channel.
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }
    /// The weight at (o, kk), read back from the packing (for the reference).
    #[inline]
    pub(crate) fn at(&self, o: usize, kk: usize) -> i8 {
        self.data[(((o / 8) * (self.k_pad / 4) + kk / 4) * 8 + o % 8) * 4 + kk % 4]
    }
}

/// Integer-only requantization of each row's i32 sums:
/// `u8 = clamp(zp + M[oc]·(acc + bias[oc]), lo, hi)`; `lo = zp` fuses ReLU.
#[derive(Debug, Clone, Copy)]
pub struct Requant<'a> {
    /// Per output channel, with any activation zero-point correction already folded in.
    pub bias: &'a [i32],
    /// Per output channel.
    pub mult: &'a [FixedMultiplier],
    /// Output zero-point.
    pub zp: i32,
    /// Smallest output code.
    pub lo: i32,
    /// Largest output code.
    pub hi: i32,
}

/// Rows per parallel task: enough work to amortize scheduling.
const ROWS_PER_TASK: usize = 64;

/// `out[r][o] = requant(Σ_k a[r][k] · w[o][k])` for all rows of `a: [rows][k_pad]`,
/// `out: [rows][oc]`. Threads split the rows when the product is large enough to pay for them.
pub fn gemm_u8i8_requant(
    a: &[u8],
    w: &PackedI8,
    rq: Requant<'_>,
    out: &mut [u8],
    variant: Variant,
) {
    let rows = a.len() / w.k_pad;
    assert_eq!(a.len(), rows * w.k_pad, "activations must be [rows][k_pad]");
    let kp = w.k_pad;
    gemm_u8i8_requant_from(
        rows,
        &|r0, buf: &mut [u8]| buf.copy_from_slice(&a[r0 * kp..r0 * kp + buf.len()]),
        w,
        rq,
        out,
        variant,
    );
}

/// [`gemm_u8i8_requant`] with activation rows produced on demand: `fill(r0, buf)` writes rows
/// `r0 .. r0 + buf.len() / k_pad` into `buf` (e.g. im2col patches). Each task fills a block of
/// rows into a small buffer that stays in cache, instead of materializing the whole matrix.
pub fn gemm_u8i8_requant_from(
    rows: usize,
    fill: &(dyn Fn(usize, &mut [u8]) + Sync),
    w: &PackedI8,
    rq: Requant<'_>,
    out: &mut [u8],
    variant: Variant,
) {
    assert_eq!(out.len(), rows * w.oc, "output must be [rows][oc]");
    assert!(rq.bias.len() == w.oc && rq.mult.len() == w.oc);
    let work = rows * w.oc_pad * w.k_pad;
    let task = |(chunk, out_chunk): (usize, &mut [u8])| {
        let r0 = chunk * ROWS_PER_TASK;
        let n = out_chunk.len() / w.oc;
        let mut a = vec![0u8; n * w.k_pad]; // [n][k_pad]
        fill(r0, &mut a);
        let mut acc = vec![0i32; n * w.oc_pad]; // [n][oc_pad]
        gemm_u8i8(&a, w, &mut acc, variant);
        requant_rows(&acc, w.oc_pad, &rq, out_chunk, variant);
    };
    if work < 1 << 21 {
        out.chunks_mut(ROWS_PER_TASK * w.oc)
            .enumerate()
            .for_each(task);
    } else {
        out.par_chunks_mut(ROWS_PER_TASK * w.oc)
            .enumerate()
            .for_each(task);
    }
}

/// Raw sums `acc: [rows][oc_pad] = Σ_k a[r][k] · w[o][k]` (padding columns are 0).
pub fn gemm_u8i8(a: &[u8], w: &PackedI8, acc: &mut [i32], variant: Variant) {
    gemm_u8i8_blocks(a, w, 0..w.oc_pad / 8, acc, variant);
}

/// [`gemm_u8i8`] for the output channels of 8-blocks `blocks` only:
/// `acc: [rows][blocks.len() * 8]`, so threads can split a matrix by output channels.
pub fn gemm_u8i8_blocks(
    a: &[u8],
    w: &PackedI8,
    blocks: std::ops::Range<usize>,
    acc: &mut [i32],
    variant: Variant,
) {
    let rows = a.len() / w.k_pad;
    assert_eq!(a.len(), rows * w.k_pad, "activations must be [rows][k_pad]");
    assert!(blocks.end <= w.oc_pad / 8, "output blocks past the matrix");
    assert_eq!(acc.len(), rows * blocks.len() * 8);
    #[cfg(target_arch = "x86_64")]
    {
        let avail = available_variants();
        let run = |v: Variant| variant == v && avail.contains(&v);
        // SAFETY: each branch runs only when the CPU has the instructions it was compiled for;
        // the sizes were checked above.
        unsafe {
            if run(Variant::AvxVnni) {
                return x86::gemm_vnni(a, w, blocks, acc);
            }
            if run(Variant::Avx512Vnni) {
                return x86::gemm_vnni512(a, w, blocks, acc);
            }
            if run(Variant::Avx2) {
                return x86::gemm_avx2(a, w, blocks, acc);
            }
        }
    }
    let _ = variant;
    reference_blocks(a, w, blocks, acc);
}

/// The plain definition of [`gemm_u8i8`].
pub fn gemm_reference(a: &[u8], w: &PackedI8, acc: &mut [i32]) {
    reference_blocks(a, w, 0..w.oc_pad / 8, acc);
}

fn reference_blocks(a: &[u8], w: &PackedI8, blocks: std::ops::Range<usize>, acc: &mut [i32]) {
    let rows = a.len() / w.k_pad;
    let width = blocks.len() * 8;
    for r in 0..rows {
        let row = &a[r * w.k_pad..(r + 1) * w.k_pad];
        for (j, o) in (blocks.start * 8..blocks.end * 8).enumerate() {
            acc[r * width + j] = if o < w.oc {
                (0..w.k).map(|kk| row[kk] as i32 * w.at(o, kk) as i32).sum()
            } else {
                0
            };
        }
    }
}

fn requant_rows(acc: &[i32], oc_pad: usize, rq: &Requant<'_>, out: &mut [u8], variant: Variant) {
    let Requant {
        bias,
        mult,
        zp,
        lo,
        hi,
    } = *rq;
    let oc = bias.len();
    #[cfg(target_arch = "x86_64")]
    if variant != Variant::Reference && available_variants().contains(&Variant::Avx2) {
        // SAFETY: AVX2 is present (checked above).
        unsafe { x86::requant_rows(acc, oc_pad, rq, out) };
        return;
    }
    let _ = variant;
    for (r, out_row) in out.chunks_exact_mut(oc).enumerate() {
        for (o, y) in out_row.iter_mut().enumerate() {
            let v = mult[o].apply(acc[r * oc_pad + o] + bias[o]) + zp;
            *y = v.clamp(lo, hi) as u8;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{PackedI8, Requant};
    use crate::avx2::{Avx2, Isa, Vnni, Vnni512};

    /// Rows per register tile.
    const MR: usize = 4;

    /// [`gemm`] compiled for plain AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gemm_avx2(a: &[u8], w: &PackedI8, blocks: Range<usize>, acc: &mut [i32]) {
        unsafe { gemm::<Avx2>(a, w, blocks, acc) }
    }

    /// [`gemm`] compiled for AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn gemm_vnni(a: &[u8], w: &PackedI8, blocks: Range<usize>, acc: &mut [i32]) {
        unsafe { gemm::<Vnni>(a, w, blocks, acc) }
    }

    /// [`gemm`] compiled for AVX-512 VNNI on 256-bit registers.
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemm_vnni512(
        a: &[u8],
        w: &PackedI8,
        blocks: Range<usize>,
        acc: &mut [i32],
    ) {
        unsafe { gemm::<Vnni512>(a, w, blocks, acc) }
    }

    /// See [`super::gemm_u8i8_blocks`]: tiles of 4 rows × 16 output channels (two registers,
    /// so each broadcast of 4 activation bytes feeds two dot products), then × 8 for an odd
    /// block.
    #[inline(always)]
    unsafe fn gemm<I: Isa>(a: &[u8], w: &PackedI8, blocks: Range<usize>, acc: &mut [i32]) {
        let (kp, k4) = (w.k_pad, w.k_pad / 4);
        // Row stride of `acc`.
        let width = blocks.len() * 8;
        let rows = a.len() / kp;
        let ap = a.as_ptr();
        let nb = blocks.end;
        let mut ob = blocks.start;
        while ob < nb {
            let two = ob + 1 < nb;
            let wb0 = unsafe { w.data.as_ptr().add(ob * k4 * 32) };
            let wb1 = unsafe { w.data.as_ptr().add((ob + two as usize) * k4 * 32) };
            let mut r = 0;
            while r < rows {
                let n = (rows - r).min(MR);
                let mut c0 = [unsafe { _mm256_setzero_si256() }; MR];
                let mut c1 = [unsafe { _mm256_setzero_si256() }; MR];
                for kb in 0..k4 {
                    let w0 = unsafe { _mm256_loadu_si256(wb0.add(kb * 32) as *const __m256i) };
                    let w1 = unsafe { _mm256_loadu_si256(wb1.add(kb * 32) as *const __m256i) };
                    for i in 0..n {
                        let a4 = unsafe {
                            (ap.add((r + i) * kp + kb * 4) as *const i32).read_unaligned()
                        };
                        let av = unsafe { _mm256_set1_epi32(a4) };
                        c0[i] = unsafe { dot4::<I>(c0[i], av, w0) };
                        if two {
                            c1[i] = unsafe { dot4::<I>(c1[i], av, w1) };
                        }
                    }
                }
                for i in 0..n {
                    let dst = unsafe {
                        acc.as_mut_ptr()
                            .add((r + i) * width + (ob - blocks.start) * 8)
                    };
                    unsafe { _mm256_storeu_si256(dst as *mut __m256i, c0[i]) };
                    if two {
                        unsafe { _mm256_storeu_si256(dst.add(8) as *mut __m256i, c1[i]) };
                    }
                }
                r += n;
            }
            ob += 1 + two as usize;
        }
    }

    /// `acc + Σ of each 4-byte group u8 × i8`, exact for any bytes. VNNI does that in one
    /// instruction; plain AVX2's `maddubs` saturates pairs at i16, so it splits `u` into its low
    /// 7 bits (pairs ≤ 2·127·128) and its top bit (pairs ≤ 2·128, scaled by 128 after).
    #[inline(always)]
    unsafe fn dot4<I: Isa>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        if I::WIDE {
            return unsafe { I::dot_acc(acc, u, s) };
        }
        unsafe {
            let low = _mm256_and_si256(u, _mm256_set1_epi8(0x7f));
            let top = _mm256_and_si256(_mm256_srli_epi16(u, 7), _mm256_set1_epi8(1));
            let ones = _mm256_set1_epi16(1);
            let p_low = _mm256_maddubs_epi16(low, s);
            let p_top = _mm256_slli_epi16(_mm256_maddubs_epi16(top, s), 7);
            let sum = _mm256_add_epi32(
                _mm256_madd_epi16(p_low, ones),
                _mm256_madd_epi16(p_top, ones),
            );
            _mm256_add_epi32(acc, sum)
        }
    }

    /// Vector form of the reference requantization (same integers).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requant_rows(
        acc: &[i32],
        oc_pad: usize,
        rq: &Requant<'_>,
        out: &mut [u8],
    ) {
        let Requant {
            bias,
            mult,
            zp,
            lo,
            hi,
        } = *rq;
        let oc = bias.len();
        let full = oc / 8 * 8;
        // Per-lane constants, 8 channels at a time: [oc_pad / 8] of (bias, m, shift, round).
        let mut consts = Vec::with_capacity(full / 8);
        for o in (0..full).step_by(8) {
            let b: [i32; 8] = std::array::from_fn(|i| bias[o + i]);
            let m: [i32; 8] = std::array::from_fn(|i| mult[o + i].m);
            let sh: [i64; 8] = std::array::from_fn(|i| mult[o + i].shift as i64);
            let rnd: [i64; 8] = std::array::from_fn(|i| (1i64 << 62) + (1i64 << (sh[i] - 1)));
            let sub: [i64; 8] = std::array::from_fn(|i| 1i64 << (62 - sh[i]));
            unsafe {
                consts.push((
                    _mm256_loadu_si256(b.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(m.as_ptr() as *const __m256i),
                    [
                        _mm256_loadu_si256(sh.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(sh[4..].as_ptr() as *const __m256i),
                    ],
                    [
                        _mm256_loadu_si256(rnd.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(rnd[4..].as_ptr() as *const __m256i),
                    ],
                    [
                        _mm256_loadu_si256(sub.as_ptr() as *const __m256i),
                        _mm256_loadu_si256(sub[4..].as_ptr() as *const __m256i),
                    ],
                ));
            }
        }
        unsafe {
            let (zpv, lov, hiv) = (
                _mm256_set1_epi32(zp),
                _mm256_set1_epi32(lo),
                _mm256_set1_epi32(hi),
            );
            let pick = _mm256_setr_epi8(
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1,
                -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            );
            for (r, out_row) in out.chunks_exact_mut(oc).enumerate() {
                let arow = acc.as_ptr().add(r * oc_pad);
                for (j, (b, m, sh, rnd, sub)) in consts.iter().enumerate() {
                    let x =
                        _mm256_add_epi32(_mm256_loadu_si256(arow.add(j * 8) as *const __m256i), *b);
                    // Widen lanes 0..4 and 4..8 to i64 (mul_epi32 multiplies the low i32 of
                    // each i64); the +2^62 bias makes the logical shift act as a floor shift.
                    let lo128 = |v: __m256i| _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
                    let hi128 =
                        |v: __m256i| _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v));
                    let (x0, x1, m0, m1) = (lo128(x), hi128(x), lo128(*m), hi128(*m));
                    let p0 = _mm256_mul_epi32(x0, m0); // lanes 0..4 as i64
                    let p1 = _mm256_mul_epi32(x1, m1); // lanes 4..8 as i64
                    let q0 = _mm256_sub_epi64(
                        _mm256_srlv_epi64(_mm256_add_epi64(p0, rnd[0]), sh[0]),
                        sub[0],
                    );
                    let q1 = _mm256_sub_epi64(
                        _mm256_srlv_epi64(_mm256_add_epi64(p1, rnd[1]), sh[1]),
                        sub[1],
                    );
                    // Low i32 of each i64 → 8 lanes in order.
                    let perm = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
                    let l0 = _mm256_permutevar8x32_epi32(q0, perm);
                    let l1 = _mm256_permutevar8x32_epi32(q1, perm);
                    let y = _mm256_blend_epi32::<0b1111_0000>(l0, l1);
                    let y = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(y, zpv), lov), hiv);
                    let bytes = _mm256_shuffle_epi8(y, pick);
                    let lo4 = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)) as u32;
                    let hi4 = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(bytes)) as u32;
                    let v = (lo4 as u64) | ((hi4 as u64) << 32);
                    (out_row.as_mut_ptr().add(j * 8) as *mut u64).write_unaligned(v);
                }
                for o in full..oc {
                    let v = mult[o].apply(*arow.add(o) + bias[o]) + zp;
                    out_row[o] = v.clamp(lo, hi) as u8;
                }
            }
        }
    }
}
