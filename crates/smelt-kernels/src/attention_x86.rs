//! The AVX2 form of `attention.rs` (see there for the arithmetic): the query heads of one KV
//! head together, each computed exactly as the reference does.

use std::arch::x86_64::*;

use std::ops::Range;

use super::{HeadSlabs, Order, Score, f16, padded};
use crate::silu::x86::exp8;

#[path = "attention_avx512.rs"]
mod avx512;
use avx512::{ScoreSpan, WeightedSums, scores_wide, softmax_wide, weighted_wide};

thread_local! {
    /// (weights (rows, n_pad), rounded queries (rows, hd), keys or values converted (128, hd),
    /// lane sums (rows, 4, 16, hd)) reused between calls on a thread.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 4]> =
        const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()]) };
    /// (n_pos,) each position's slab row.
    static ROWS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`super::reduce16`] of the lanes `lo` (0..8) and `hi` (8..16).
#[inline(always)]
unsafe fn reduce16(lo: __m256, hi: __m256) -> f32 {
    unsafe {
        let t = _mm256_add_ps(lo, hi);
        let t = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        let t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
    }
}

/// Eight [`reduce16`]s at once: `t[k]` holds lanes `lo + hi` of item k; item k's result
/// lands in lane k. The 8×8 transpose turns the tree's additions into vertical ones, the
/// same additions in the same order.
#[inline(always)]
unsafe fn reduce16_x8(t: [__m256; 8]) -> __m256 {
    unsafe {
        // Transpose: c[i] lane k = t[k] lane i.
        let a0 = _mm256_unpacklo_ps(t[0], t[1]);
        let a1 = _mm256_unpackhi_ps(t[0], t[1]);
        let a2 = _mm256_unpacklo_ps(t[2], t[3]);
        let a3 = _mm256_unpackhi_ps(t[2], t[3]);
        let a4 = _mm256_unpacklo_ps(t[4], t[5]);
        let a5 = _mm256_unpackhi_ps(t[4], t[5]);
        let a6 = _mm256_unpacklo_ps(t[6], t[7]);
        let a7 = _mm256_unpackhi_ps(t[6], t[7]);
        let b0 = _mm256_shuffle_ps::<0x44>(a0, a2);
        let b1 = _mm256_shuffle_ps::<0xee>(a0, a2);
        let b2 = _mm256_shuffle_ps::<0x44>(a1, a3);
        let b3 = _mm256_shuffle_ps::<0xee>(a1, a3);
        let b4 = _mm256_shuffle_ps::<0x44>(a4, a6);
        let b5 = _mm256_shuffle_ps::<0xee>(a4, a6);
        let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
        let b7 = _mm256_shuffle_ps::<0xee>(a5, a7);
        let c0 = _mm256_permute2f128_ps::<0x20>(b0, b4);
        let c1 = _mm256_permute2f128_ps::<0x20>(b1, b5);
        let c2 = _mm256_permute2f128_ps::<0x20>(b2, b6);
        let c3 = _mm256_permute2f128_ps::<0x20>(b3, b7);
        let c4 = _mm256_permute2f128_ps::<0x31>(b0, b4);
        let c5 = _mm256_permute2f128_ps::<0x31>(b1, b5);
        let c6 = _mm256_permute2f128_ps::<0x31>(b2, b6);
        let c7 = _mm256_permute2f128_ps::<0x31>(b3, b7);
        // ((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7)), lane by lane.
        let u0 = _mm256_add_ps(c0, c4);
        let u1 = _mm256_add_ps(c1, c5);
        let u2 = _mm256_add_ps(c2, c6);
        let u3 = _mm256_add_ps(c3, c7);
        _mm256_add_ps(_mm256_add_ps(u0, u2), _mm256_add_ps(u1, u3))
    }
}

/// `n` f16 values at `src` into `dst` as f32 (`n` a multiple of 8).
#[inline(always)]
unsafe fn convert(src: *const f16, n: usize, dst: *mut f32) {
    unsafe {
        for i in (0..n).step_by(8) {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(src.add(i) as *const __m128i));
            _mm256_storeu_ps(dst.add(i), v);
        }
    }
}

/// The 16 lanes of [`super::dot_in_order`] of `hd` values (a multiple of 16), as
/// `lo + hi` (the first step of [`reduce16`]), and whether the `Single` order leaves values
/// past the last 64 to add in f64 ([`add_leftovers`]).
#[inline(always)]
unsafe fn dot_lanes(order: Order, x: *const f32, y: *const f32, hd: usize) -> (__m256, bool) {
    unsafe {
        let ld = |p: *const f32, i: usize| _mm256_loadu_ps(p.add(i));
        if order.chained(hd) {
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for i in (0..hd).step_by(16) {
                lo = _mm256_fmadd_ps(ld(x, i), ld(y, i), lo);
                hi = _mm256_fmadd_ps(ld(x, i + 8), ld(y, i + 8), hi);
            }
            return (_mm256_add_ps(lo, hi), false);
        }
        let np = hd - hd % 64;
        let mut acc = [_mm256_setzero_ps(); 8];
        for i in (0..np).step_by(64) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(ld(x, i + 8 * j), ld(y, i + 8 * j), *a);
            }
        }
        // Accumulator j is lanes (acc[2j], acc[2j + 1]): (a0 + a2) + (a1 + a3).
        let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
        (_mm256_add_ps(lo, hi), np < hd)
    }
}

/// `reduced` plus the f64 leftovers `np..hd` of the `Single` order.
#[inline(always)]
unsafe fn add_leftovers(reduced: f32, x: *const f32, y: *const f32, hd: usize) -> f32 {
    unsafe {
        let mut sum = reduced as f64;
        for k in hd - hd % 64..hd {
            sum += (*x.add(k) * *y.add(k)) as f64;
        }
        sum as f32
    }
}

/// The weights of one row from its scores `wh` (n_pad,) over `first..n_pos` as
/// [`super::attend_reference`] has them (ggml's softmax, then rounded to f16), −∞ scores
/// (weights 0) from the chunk of `first` on, and exact zeros from `zero_from` (a chunk
/// boundary at or before it) and past the last chunk.
#[inline(always)]
unsafe fn softmax_row(wh: &mut [f32], pos: Range<usize>, zero_from: usize) {
    let (first, n_pos) = (pos.start, pos.end);
    unsafe {
        let c16 = first / 16 * 16;
        let n16 = n_pos.div_ceil(16) * 16;
        assert!(zero_from <= c16 && n16 <= wh.len());
        let ptr = wh.as_mut_ptr();
        let mut m8 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut p = first;
        while p + 8 <= n_pos {
            m8 = _mm256_max_ps(m8, _mm256_loadu_ps(ptr.add(p)));
            p += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m8);
        let maxv = _mm256_set1_ps(mask_row(wh, first..n_pos, p, &lanes));
        let mut sum = 0f64;
        for c in (c16..n16).step_by(16) {
            let lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(c)), maxv));
            let hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(c + 8)), maxv));
            _mm256_storeu_ps(ptr.add(c), lo);
            _mm256_storeu_ps(ptr.add(c + 8), hi);
            sum += reduce16(lo, hi) as f64;
        }
        let inv = _mm256_set1_ps((1.0 / sum) as f32);
        for c in (c16..n16).step_by(8) {
            let r = _mm256_mul_ps(_mm256_loadu_ps(ptr.add(c)), inv);
            let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(r));
            _mm256_storeu_ps(ptr.add(c), r);
        }
    }
    zero_row(wh, first..n_pos, zero_from);
}

/// A row's maximum over `first..n_pos` (the SIMD loop's `lanes` over `first..p`, then the
/// rest), and its scores set to −∞ outside `first..n_pos` within its 16-position chunks.
pub(super) fn mask_row(wh: &mut [f32], pos: Range<usize>, p: usize, lanes: &[f32]) -> f32 {
    let (first, n_pos) = (pos.start, pos.end);
    let (c16, n16) = (first / 16 * 16, n_pos.div_ceil(16) * 16);
    let max = wh[p..n_pos]
        .iter()
        .chain(lanes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    wh[n_pos..n16]
        .iter_mut()
        .for_each(|v| *v = f32::NEG_INFINITY);
    wh[c16..first]
        .iter_mut()
        .for_each(|v| *v = f32::NEG_INFINITY);
    max
}

/// A row's weights set to exact zeros past its last chunk and from `zero_from` to its first.
pub(super) fn zero_row(wh: &mut [f32], pos: Range<usize>, zero_from: usize) {
    let (first, n_pos) = (pos.start, pos.end);
    wh[n_pos.div_ceil(16) * 16..]
        .iter_mut()
        .for_each(|v| *v = 0.0);
    wh[zero_from..first / 16 * 16]
        .iter_mut()
        .for_each(|v| *v = 0.0);
}

/// [`body`]'s signature, for one width.
type Body = unsafe fn(
    &[f32],
    usize,
    HeadSlabs,
    &[usize],
    &[Range<usize>],
    Score,
    Order,
    bool,
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
);

/// `g` query rows of width `hd` (a multiple of 16 from 16 to 128, or 256) that share one
/// KV head, row r over positions `ranges[r]` (or all over `ranges[0]` when it is the only
/// one): `q` and `out` are (g, hd). Each row's result is [`super::attend_reference`]'s, bit
/// for bit. The rows share every key and value converted, and (with AVX-512) every value
/// loaded for their weighted sums.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_group(
    q: &[f32],
    g: usize,
    hd: usize,
    kv: HeadSlabs,
    ranges: &[Range<usize>],
    score: Score,
    order: Order,
    wide: bool,
    out: &mut [f32],
) {
    assert!(g > 0 && q.len() == g * hd && out.len() >= g * hd);
    assert!(ranges.len() == 1 || ranges.len() == g);
    assert!(ranges.iter().all(|r| r.start < r.end));
    let n_pos = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    assert!(super::simd_width(hd));
    assert!(n_pos.div_ceil(kv.block) <= kv.table.len());
    for (_, row, len) in kv.runs(n_pos) {
        assert!(kv.keys.len().min(kv.values.len()) >= (row + len - 1) * kv.stride + kv.offset + hd);
    }
    let row_of = ROWS.with(|r| {
        let mut row_of = r.take();
        row_of.clear();
        for (_, row0, len) in kv.runs(n_pos) {
            row_of.extend(row0..row0 + len);
        }
        row_of
    });
    SCRATCH.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let [w, qr, kv32, lanes] = &mut *bufs;
        let n_pad = padded(order, n_pos);
        // Sized, not cleared: every value read is written first (`body`).
        for (buf, len) in [
            (&mut *w, g * n_pad),
            (&mut *qr, g * hd),
            (&mut *kv32, 128 * hd),
            (&mut *lanes, g * 4 * 16 * hd),
        ] {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        // SAFETY: the CPU features are this function's; every slab read was bounds-checked
        // above and every buffer is sized here. The width is a constant in each body, so
        // its accumulators stay in registers.
        unsafe {
            let body: Body = match hd {
                16 => body::<2>,
                32 => body::<4>,
                48 => body::<6>,
                64 => body::<8>,
                80 => body::<10>,
                96 => body::<12>,
                112 => body::<14>,
                128 => body::<16>,
                // Gemma's heads: the 32 accumulators spill, still far faster than scalar.
                256 => body::<32>,
                _ => unreachable!("head widths are checked above"),
            };
            body(
                q, g, kv, &row_of, ranges, score, order, wide, w, qr, kv32, lanes, out,
            );
        }
    });
    ROWS.with(|r| r.replace(row_of));
}

/// The body of [`attend_group`] for head width `8·C`, compiled with its features (not
/// inside a closure, whose code would not get them).
///
/// Rows over different positions (a prompt's consecutive tokens) are computed together over
/// the union of their ranges, `first..n_pos`: a row's scores outside its own range are
/// overwritten (−∞ before the softmax, exact zeros after), and its weighted sum runs over
/// the union's blocks, where every extra term has weight +0 and leaves a chain that started
/// at +0 unchanged, so each row's floats are those of its own call.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn body<const C: usize>(
    q: &[f32],
    g: usize,
    kv: HeadSlabs,
    row_of: &[usize],
    ranges: &[Range<usize>],
    score: Score,
    order: Order,
    wide: bool,
    w: &mut [f32],
    qr: &mut [f32],
    kv32: &mut [f32],
    lanes: &mut [f32],
    out: &mut [f32],
) {
    unsafe {
        let hd = 8 * C;
        let range = |h: usize| ranges[if ranges.len() == 1 { 0 } else { h }].clone();
        let first = (0..g).map(|h| range(h).start).min().unwrap_or(0);
        let n_pos = (0..g).map(|h| range(h).end).max().unwrap_or(0);
        let n_pad = padded(order, n_pos);
        // The queries, rounded to f16 and back (vcvtps2ph/vcvtph2ps round to nearest even).
        for i in (0..g * hd).step_by(8) {
            let x = _mm256_loadu_ps(q.as_ptr().add(i));
            let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            _mm256_storeu_ps(qr.as_mut_ptr().add(i), r);
        }
        // The first block of BLOCK chunks the weighted sum reads (BLOCK is a multiple of 4, so accumulator c % 4 stays aligned).
        const BLOCK: usize = 8;
        let b_start = first / 16 / BLOCK * BLOCK;
        // Scores, eight positions at a time (16 with AVX-512: `scores16`): their keys
        // converted once into the first eight rows of `kv32` for every head, then reduced
        // together (positions past n_pos in the last eight get zero keys and unused scores;
        // those before `first` are overwritten with −∞ below).
        let kp = kv32.as_mut_ptr();
        let wide_scores = wide && (order.chained(hd) || hd.is_multiple_of(64));
        if wide_scores {
            let span = ScoreSpan {
                g,
                first,
                n_pos,
                n_pad,
                score,
                order,
            };
            scores_wide(hd, span, qr, kv, row_of, w, kv32);
        }
        for p0 in (first / 8 * 8..n_pos).step_by(8) {
            if wide_scores {
                break;
            }
            let m = 8.min(n_pos - p0);
            for k in 0..8 {
                if k < m {
                    let p = p0 + k;
                    let src = kv.keys.as_ptr().add(row_of[p] * kv.stride + kv.offset);
                    convert(src, hd, kp.add(k * hd));
                } else {
                    kv32[k * hd..(k + 1) * hd].iter_mut().for_each(|v| *v = 0.0);
                }
            }
            for h in 0..g {
                let qh = qr.as_ptr().add(h * hd);
                let mut t = [_mm256_setzero_ps(); 8];
                let mut leftovers = false;
                for (k, tk) in t.iter_mut().enumerate() {
                    let (lanes16, left) = dot_lanes(order, kp.add(k * hd), qh, hd);
                    *tk = lanes16;
                    leftovers |= left;
                }
                let mut s = [0f32; 8];
                _mm256_storeu_ps(s.as_mut_ptr(), reduce16_x8(t));
                let wh = w.as_mut_ptr().add(h * n_pad + p0);
                for (k, &sk) in s.iter().enumerate().take(m) {
                    let sk = if leftovers {
                        add_leftovers(sk, kp.add(k * hd), qh, hd)
                    } else {
                        sk
                    };
                    *wh.add(k) = score.of(sk);
                }
            }
        }
        // Softmax per row: 16-position chunks from its window's, positions outside its range
        // at −∞ (weight 0), exact zeros in the rest of the union's blocks.
        for h in 0..g {
            let wh = &mut w[h * n_pad..(h + 1) * n_pad];
            if wide {
                softmax_wide(wh, range(h), 16 * b_start);
            } else {
                softmax_row(wh, range(h), 16 * b_start);
            }
        }
        // Weighted sum. Lane l of chunk c is position 16c + l; Single keeps four chunk
        // accumulators (chunk c in c % 4), Batch one. Positions go in blocks of BLOCK
        // chunks whose values are converted once into `kv32` (L1-sized) and read by every
        // head; each (head, accumulator, lane) chain carries over in `lanes`. Blocks before
        // the window's would only add products with weight 0 to chains starting at +0.
        let n_acc = if order.chained(n_pad) { 1 } else { 4 };
        let n_chunks = n_pos.div_ceil(16);
        if wide {
            let sums = WeightedSums {
                g,
                hd,
                n_pos,
                n_pad,
                n_acc,
                b_start,
                block: BLOCK,
            };
            return weighted_wide(sums, kv, row_of, w, kv32, lanes, out);
        }
        let vp = kv32.as_mut_ptr();
        let lp = lanes.as_mut_ptr();
        for b0 in (b_start..n_chunks).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(n_chunks);
            let (p_lo, p_hi) = (16 * b0, (16 * b1).min(n_pos));
            for (i, &row) in row_of[p_lo..p_hi].iter().enumerate() {
                let src = kv.values.as_ptr().add(row * kv.stride + kv.offset);
                convert(src, hd, vp.add(i * hd));
            }
            for h in 0..g {
                let wh = w.as_ptr().add(h * n_pad);
                for j in 0..n_acc {
                    for l in 0..16 {
                        let dst = lp.add(((h * n_acc + j) * 16 + l) * hd);
                        let mut acc = [_mm256_setzero_ps(); C];
                        if b0 > b_start {
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm256_loadu_ps(dst.add(8 * i));
                            }
                        }
                        // BLOCK is a multiple of 4, so the block's first chunk is ≡ 0.
                        let mut c = b0 + j;
                        while c < b1 && 16 * c + l < n_pos {
                            let p = 16 * c + l;
                            let wv = _mm256_set1_ps(*wh.add(p));
                            let src = vp.add((p - p_lo) * hd);
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm256_fmadd_ps(_mm256_loadu_ps(src.add(8 * i)), wv, *a);
                            }
                            c += n_acc;
                        }
                        for (i, a) in acc.iter().enumerate() {
                            _mm256_storeu_ps(dst.add(8 * i), *a);
                        }
                    }
                }
            }
        }
        for h in 0..g {
            let lp = lp.add(h * n_acc * 16 * hd);
            let at = |j: usize, l: usize, i: usize| _mm256_loadu_ps(lp.add((j * 16 + l) * hd + i));
            let oh = out.as_mut_ptr().add(h * hd);
            for i in (0..hd).step_by(8) {
                // Per lane: the chunk accumulators combined as ggml does, then the 16 lanes.
                let lane = |l: usize| {
                    if n_acc == 1 {
                        at(0, l, i)
                    } else {
                        _mm256_add_ps(
                            _mm256_add_ps(at(0, l, i), at(2, l, i)),
                            _mm256_add_ps(at(1, l, i), at(3, l, i)),
                        )
                    }
                };
                let a: [__m256; 16] = std::array::from_fn(lane);
                let t8: [__m256; 8] = std::array::from_fn(|k| _mm256_add_ps(a[k], a[k + 8]));
                let t4: [__m256; 4] = std::array::from_fn(|k| _mm256_add_ps(t8[k], t8[k + 4]));
                let r = _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
                _mm256_storeu_ps(oh.add(i), r);
            }
        }
    }
}
