//! The AVX-512 parts of `attention_x86.rs`'s body: scores 16 positions at a time and weighted
//! sums 16 values wide, several rows per value loaded. The same chains as the AVX2 body, so
//! the same floats.

use std::arch::x86_64::*;
use std::ops::Range;

use super::super::{HeadSlabs, Order, Score};
use super::{mask_row, zero_row};
use crate::silu::x86::exp16;

/// What [`scores16`] scores: `g` rows over positions `first..n_pos` (the union of theirs),
/// each row's scores `n_pad` apart in `w`.
#[derive(Clone, Copy)]
pub(super) struct ScoreSpan {
    /// Query rows.
    pub g: usize,
    /// First position scored (rounded down to its 16-position chunk by [`scores16`]).
    pub first: usize,
    /// One past the last position.
    pub n_pos: usize,
    /// Weights per row in `w` (padded).
    pub n_pad: usize,
    /// How a dot product becomes a score.
    pub score: Score,
    /// The products' summation order.
    pub order: Order,
}

/// [`scores16`] for head width `hd` (16 to 128 in steps of 16, or 256).
#[inline(always)]
pub(super) unsafe fn scores_wide(
    hd: usize,
    span: ScoreSpan,
    qr: &[f32],
    kv: HeadSlabs,
    row_of: &[usize],
    w: &mut [f32],
    kbuf: &mut [f32],
) {
    type Scores = unsafe fn(ScoreSpan, &[f32], HeadSlabs, &[usize], &mut [f32], &mut [f32]);
    let f: Scores = match hd {
        16 => scores16::<1>,
        32 => scores16::<2>,
        48 => scores16::<3>,
        64 => scores16::<4>,
        80 => scores16::<5>,
        96 => scores16::<6>,
        112 => scores16::<7>,
        128 => scores16::<8>,
        256 => scores16::<16>,
        _ => unreachable!("head widths are checked by attend_group"),
    };
    // SAFETY: the caller detected AVX-512 (`wide`) and sized the buffers (`attend_group`).
    unsafe { f(span, qr, kv, row_of, w, kbuf) }
}

/// The scores of positions `first / 16 · 16..n_pos` for `g` heads, 16 positions at a time
/// with AVX-512, into `w` (g, n_pad): the same sums as the eight-position loop of [`body`]
/// (one 16-lane chain per score in the `Batch` order; four 16-lane accumulators over each 64
/// values in the `Single` order, for widths without leftovers), each key held in one row of
/// `kbuf` and each head's query in registers. Sixteen [`super::reduce16`] trees run at once
/// through [`reduce16_x16`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn scores16<const C4: usize>(
    span: ScoreSpan,
    qr: &[f32],
    kv: HeadSlabs,
    row_of: &[usize],
    w: &mut [f32],
    kbuf: &mut [f32],
) {
    let ScoreSpan {
        g,
        first,
        n_pos,
        n_pad,
        score,
        order,
    } = span;
    let hd = 16 * C4;
    let chained = order.chained(hd);
    debug_assert!(chained || hd.is_multiple_of(64));
    assert!(qr.len() >= g * hd && kbuf.len() >= 16 * hd && w.len() >= g * n_pad);
    assert!(row_of.len() >= n_pos && n_pad >= n_pos);
    unsafe {
        let kp = kbuf.as_mut_ptr();
        for p0 in (first / 16 * 16..n_pos).step_by(16) {
            let m = 16.min(n_pos - p0);
            for k in 0..16 {
                let dst = kp.add(k * hd);
                for j in 0..C4 {
                    let v = if k < m {
                        let src = kv.keys.as_ptr().add(row_of[p0 + k] * kv.stride + kv.offset);
                        _mm512_cvtph_ps(_mm256_loadu_si256(src.add(16 * j) as *const __m256i))
                    } else {
                        _mm512_setzero_ps()
                    };
                    _mm512_storeu_ps(dst.add(16 * j), v);
                }
            }
            for h in 0..g {
                let qh = qr.as_ptr().add(h * hd);
                let mut qv = [_mm512_setzero_ps(); C4];
                for (j, v) in qv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(qh.add(16 * j));
                }
                let mut t = [_mm512_setzero_ps(); 16];
                for (k, tk) in t.iter_mut().enumerate() {
                    let kr = kp.add(k * hd);
                    if chained {
                        let mut acc = _mm512_setzero_ps();
                        for (j, &qj) in qv.iter().enumerate() {
                            acc = _mm512_fmadd_ps(_mm512_loadu_ps(kr.add(16 * j)), qj, acc);
                        }
                        *tk = acc;
                    } else {
                        let mut a = [_mm512_setzero_ps(); 4];
                        for (j, &qj) in qv.iter().enumerate() {
                            a[j % 4] =
                                _mm512_fmadd_ps(_mm512_loadu_ps(kr.add(16 * j)), qj, a[j % 4]);
                        }
                        *tk = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                    }
                }
                let mut s = [0f32; 16];
                _mm512_storeu_ps(s.as_mut_ptr(), reduce16_x16(t));
                let wh = w.as_mut_ptr().add(h * n_pad + p0);
                for (k, &sk) in s.iter().enumerate().take(m) {
                    *wh.add(k) = score.of(sk);
                }
            }
        }
    }
}

/// Sixteen [`super::reduce16`]s at once: item k's 16 lanes in `t[k]`, its sum in lane k of the
/// result. Each level of the tree (lane i plus lane i + 8, then i + 4, i + 2, i + 1) adds two
/// items' halves in one vertical add after two shuffles; the last level leaves item 4e + L in
/// lane 4L + e, which one permutation puts back.
#[inline(always)]
unsafe fn reduce16_x16(t: [__m512; 16]) -> __m512 {
    unsafe {
        // Level 1: (lanes 0..8 of a | of b) + (lanes 8..16 of a | of b).
        let mut w = [_mm512_setzero_ps(); 8];
        for (m, wm) in w.iter_mut().enumerate() {
            let (a, b) = (t[2 * m], t[2 * m + 1]);
            *wm = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xee>(a, b),
            );
        }
        // Level 2: 128-bit lane L of z[n] holds item 4n + L's four partial sums.
        let mut z = [_mm512_setzero_ps(); 4];
        for (n, zn) in z.iter_mut().enumerate() {
            let (a, b) = (w[2 * n], w[2 * n + 1]);
            *zn = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xdd>(a, b),
            );
        }
        // Level 3: lane L of r[o] holds items 8o + L and 8o + 4 + L, two sums each.
        let mut r = [_mm512_setzero_ps(); 2];
        for (o, ro) in r.iter_mut().enumerate() {
            let (a, b) = (z[2 * o], z[2 * o + 1]);
            *ro = _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xee>(a, b),
            );
        }
        // Level 4: lane 4L + e holds item 4e + L.
        let f = _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(r[0], r[1]),
            _mm512_shuffle_ps::<0xdd>(r[0], r[1]),
        );
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_ps(idx, f)
    }
}

/// [`super::softmax_row`] 16 lanes wide: the same maximum, e^x
/// ([`crate::silu::x86::exp16`]), chunk sums (one [`super::super::reduce16`] tree each,
/// added in f64 in order) and rounding.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub(super) unsafe fn softmax_wide(wh: &mut [f32], pos: Range<usize>, zero_from: usize) {
    let (first, n_pos) = (pos.start, pos.end);
    let c16 = first / 16 * 16;
    let n16 = n_pos.div_ceil(16) * 16;
    assert!(zero_from <= c16 && n16 <= wh.len());
    unsafe {
        let ptr = wh.as_mut_ptr();
        let mut m16 = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut p = first;
        while p + 16 <= n_pos {
            m16 = _mm512_max_ps(m16, _mm512_loadu_ps(ptr.add(p)));
            p += 16;
        }
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), m16);
        let maxv = _mm512_set1_ps(mask_row(wh, first..n_pos, p, &lanes));
        let mut sum = 0f64;
        for c in (c16..n16).step_by(16) {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ptr.add(c)), maxv));
            _mm512_storeu_ps(ptr.add(c), e);
            // GCC's `_mm512_reduce_add_ps` tree: halves, quarters, then pairs.
            let t8 = _mm256_add_ps(
                _mm512_castps512_ps256(e),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e))),
            );
            let t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps::<1>(t8));
            let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
            let t1 = _mm_add_ss(t2, _mm_shuffle_ps::<1>(t2, t2));
            sum += _mm_cvtss_f32(t1) as f64;
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        for c in (c16..n16).step_by(16) {
            let r = _mm512_mul_ps(_mm512_loadu_ps(ptr.add(c)), inv);
            let r = _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
            _mm512_storeu_ps(ptr.add(c), r);
        }
    }
    zero_row(wh, first..n_pos, zero_from);
}

/// The shape of [`body`]'s weighted sum, for [`weighted16`].
#[derive(Clone, Copy)]
pub(super) struct WeightedSums {
    /// Query rows.
    pub g: usize,
    /// Head width.
    pub hd: usize,
    /// Positions (the union of the rows').
    pub n_pos: usize,
    /// Weights per row in `w` (padded).
    pub n_pad: usize,
    /// Chunk accumulators per lane: 1 (`Batch`) or 4 (`Single`).
    pub n_acc: usize,
    /// First block of chunks read.
    pub b_start: usize,
    /// Chunks per block.
    pub block: usize,
}

/// [`weighted16`] for the head width.
#[inline(always)]
pub(super) unsafe fn weighted_wide(
    sums: WeightedSums,
    kv: HeadSlabs,
    row_of: &[usize],
    w: &[f32],
    vbuf: &mut [f32],
    lanes: &mut [f32],
    out: &mut [f32],
) {
    type Weighted =
        unsafe fn(WeightedSums, HeadSlabs, &[usize], &[f32], &mut [f32], &mut [f32], &mut [f32]);
    // Rows per value loaded: R · C4 accumulators and C4 values stay within the 32 registers.
    let f: Weighted = match sums.hd {
        16 => weighted16::<1, 4>,
        32 => weighted16::<2, 4>,
        48 => weighted16::<3, 4>,
        64 => weighted16::<4, 4>,
        80 => weighted16::<5, 3>,
        96 => weighted16::<6, 2>,
        112 => weighted16::<7, 2>,
        128 => weighted16::<8, 2>,
        256 => weighted16::<16, 1>,
        _ => unreachable!("head widths are checked by attend_group"),
    };
    // SAFETY: the caller detected AVX-512 (`wide`) and sized the buffers (`attend_group`).
    unsafe { f(sums, kv, row_of, w, vbuf, lanes, out) }
}

/// [`body`]'s weighted sum with AVX-512: the same chains (lane l of chunk c is position
/// 16c + l; each (row, accumulator, lane) chain over the positions in order, carried across
/// blocks in `lanes`), each value row held in 16-wide registers and used by `R` rows at a
/// time, then the same combination of accumulators and lanes per output value.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn weighted16<const C4: usize, const R: usize>(
    sums: WeightedSums,
    kv: HeadSlabs,
    row_of: &[usize],
    w: &[f32],
    vbuf: &mut [f32],
    lanes: &mut [f32],
    out: &mut [f32],
) {
    let WeightedSums {
        g,
        hd,
        n_pos,
        n_pad,
        n_acc,
        block,
        ..
    } = sums;
    assert!(hd == 16 * C4 && vbuf.len() >= 16 * block * hd && w.len() >= g * n_pad);
    assert!(lanes.len() >= g * n_acc * 16 * hd && out.len() >= g * hd && row_of.len() >= n_pos);
    let n_chunks = n_pos.div_ceil(16);
    unsafe {
        let vp = vbuf.as_mut_ptr();
        let lp = lanes.as_mut_ptr();
        for b0 in (sums.b_start..n_chunks).step_by(block) {
            let b1 = (b0 + block).min(n_chunks);
            let (p_lo, p_hi) = (16 * b0, (16 * b1).min(n_pos));
            for (i, &row) in row_of[p_lo..p_hi].iter().enumerate() {
                let src = kv.values.as_ptr().add(row * kv.stride + kv.offset);
                for j in 0..C4 {
                    let v = _mm512_cvtph_ps(_mm256_loadu_si256(src.add(16 * j) as *const __m256i));
                    _mm512_storeu_ps(vp.add(i * hd + 16 * j), v);
                }
            }
            let mut h = 0;
            while h < g {
                let block = Block { b0, b1, p_lo };
                if h + R <= g {
                    rows_chains::<C4, R>(sums, block, h, w, vp, lp);
                    h += R;
                } else {
                    rows_chains::<C4, 1>(sums, block, h, w, vp, lp);
                    h += 1;
                }
            }
        }
        for h in 0..g {
            let lp = lp.add(h * n_acc * 16 * hd);
            let oh = out.as_mut_ptr().add(h * hd);
            for i in (0..hd).step_by(16) {
                // Per lane: the chunk accumulators combined as ggml does, then the 16 lanes.
                let mut a = [_mm512_setzero_ps(); 16];
                for (l, al) in a.iter_mut().enumerate() {
                    let at = |j: usize| _mm512_loadu_ps(lp.add((j * 16 + l) * hd + i));
                    *al = if n_acc == 1 {
                        at(0)
                    } else {
                        _mm512_add_ps(_mm512_add_ps(at(0), at(2)), _mm512_add_ps(at(1), at(3)))
                    };
                }
                let mut t8 = [_mm512_setzero_ps(); 8];
                for (k, t) in t8.iter_mut().enumerate() {
                    *t = _mm512_add_ps(a[k], a[k + 8]);
                }
                let mut t4 = [_mm512_setzero_ps(); 4];
                for (k, t) in t4.iter_mut().enumerate() {
                    *t = _mm512_add_ps(t8[k], t8[k + 4]);
                }
                let r = _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
                _mm512_storeu_ps(oh.add(i), r);
            }
        }
    }
}

/// One block of chunks `b0..b1` of the weighted sum, its values converted from position
/// `p_lo` on.
#[derive(Clone, Copy)]
struct Block {
    b0: usize,
    b1: usize,
    p_lo: usize,
}

/// Rows `h0..h0 + R`'s chains over one block: per (accumulator, lane), each value row loaded
/// once into registers and multiplied by the R rows' weights.
#[inline(always)]
unsafe fn rows_chains<const C4: usize, const R: usize>(
    sums: WeightedSums,
    block: Block,
    h0: usize,
    w: &[f32],
    vp: *const f32,
    lp: *mut f32,
) {
    let WeightedSums {
        hd,
        n_pos,
        n_pad,
        n_acc,
        b_start,
        ..
    } = sums;
    let Block { b0, b1, p_lo } = block;
    unsafe {
        for j in 0..n_acc {
            for l in 0..16 {
                let dst = |r: usize| lp.add((((h0 + r) * n_acc + j) * 16 + l) * hd);
                let mut acc = [[_mm512_setzero_ps(); C4]; R];
                if b0 > b_start {
                    for (r, ar) in acc.iter_mut().enumerate() {
                        for (i, a) in ar.iter_mut().enumerate() {
                            *a = _mm512_loadu_ps(dst(r).add(16 * i));
                        }
                    }
                }
                // The block size is a multiple of 4, so its first chunk is ≡ 0.
                let mut c = b0 + j;
                while c < b1 && 16 * c + l < n_pos {
                    let p = 16 * c + l;
                    let src = vp.add((p - p_lo) * hd);
                    let mut v = [_mm512_setzero_ps(); C4];
                    for (i, vi) in v.iter_mut().enumerate() {
                        *vi = _mm512_loadu_ps(src.add(16 * i));
                    }
                    for (r, ar) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*w.get_unchecked((h0 + r) * n_pad + p));
                        for (a, &vi) in ar.iter_mut().zip(&v) {
                            *a = _mm512_fmadd_ps(vi, wv, *a);
                        }
                    }
                    c += n_acc;
                }
                for (r, ar) in acc.iter().enumerate() {
                    for (i, a) in ar.iter().enumerate() {
                        _mm512_storeu_ps(dst(r).add(16 * i), *a);
                    }
                }
            }
        }
    }
}
