//! The AVX2 form of `attention.rs` (see there for the arithmetic): the query heads of one KV
//! head together, each computed exactly as the reference does.

use std::arch::x86_64::*;

use super::{HeadSlabs, Order, Score, f16, padded};
use crate::silu::x86::exp8;

thread_local! {
    /// (weights (g, n_pad), rounded queries (g, hd), keys or values converted (128, hd),
    /// lane sums (g, 4, 16, hd)) reused between calls on a thread.
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

/// [`body`]'s signature, for one width.
type Body = unsafe fn(
    &[f32],
    usize,
    HeadSlabs,
    &[usize],
    usize,
    usize,
    Score,
    Order,
    bool,
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
);

/// `g` query heads of width `hd` (a multiple of 16 from 16 to 128, or 256) that share one
/// KV head, over positions `first..n_pos`: `q` and `out` are (g, hd). Each head's result is
/// [`super::attend_reference`]'s, bit for bit.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_group(
    q: &[f32],
    g: usize,
    hd: usize,
    kv: HeadSlabs,
    first: usize,
    n_pos: usize,
    score: Score,
    order: Order,
    wide: bool,
    out: &mut [f32],
) {
    assert!(g > 0 && q.len() == g * hd && out.len() >= g * hd && first < n_pos);
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
                q, g, kv, &row_of, first, n_pos, score, order, wide, w, qr, kv32, lanes, out,
            );
        }
    });
    ROWS.with(|r| r.replace(row_of));
}

/// The body of [`attend_group`] for head width `8·C`, compiled with its features (not
/// inside a closure, whose code would not get them).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn body<const C: usize>(
    q: &[f32],
    g: usize,
    kv: HeadSlabs,
    row_of: &[usize],
    first: usize,
    n_pos: usize,
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
        let n_pad = padded(order, n_pos);
        // The queries, rounded to f16 and back (vcvtps2ph/vcvtph2ps round to nearest even).
        for i in (0..g * hd).step_by(8) {
            let x = _mm256_loadu_ps(q.as_ptr().add(i));
            let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            _mm256_storeu_ps(qr.as_mut_ptr().add(i), r);
        }
        // The window's first 16-position chunk, and the first block of BLOCK chunks the
        // weighted sum reads (BLOCK is a multiple of 4, so accumulator c % 4 stays aligned).
        const BLOCK: usize = 8;
        let c16 = first / 16 * 16;
        let b_start = first / 16 / BLOCK * BLOCK;
        // Scores, eight positions at a time (16 with AVX-512: `scores16`): their keys
        // converted once into the first eight rows of `kv32` for every head, then reduced
        // together (positions past n_pos in the last eight get zero keys and unused scores;
        // those before `first` are overwritten with −∞ below).
        let kp = kv32.as_mut_ptr();
        let wide_scores = wide && (order.chained(hd) || hd.is_multiple_of(64));
        if wide_scores {
            scores_wide(
                hd, qr, g, kv, row_of, first, n_pos, score, order, w, n_pad, kv32,
            );
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
        // Softmax per head: 16-position chunks from the window's, positions outside the
        // window at −∞ (weight 0).
        for h in 0..g {
            let wh = &mut w[h * n_pad..(h + 1) * n_pad];
            let max = wh[first..n_pos]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            wh[n_pos..].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
            wh[c16..first]
                .iter_mut()
                .for_each(|v| *v = f32::NEG_INFINITY);
            let maxv = _mm256_set1_ps(max);
            let mut sum = 0f64;
            let ptr = wh.as_mut_ptr();
            let n16 = n_pos.div_ceil(16) * 16;
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
            wh[n16..].iter_mut().for_each(|v| *v = 0.0);
            wh[16 * b_start..c16].iter_mut().for_each(|v| *v = 0.0);
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

/// [`scores16`] for head width `hd` (16 to 128 in steps of 16, or 256).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scores_wide(
    hd: usize,
    qr: &[f32],
    g: usize,
    kv: HeadSlabs,
    row_of: &[usize],
    first: usize,
    n_pos: usize,
    score: Score,
    order: Order,
    w: &mut [f32],
    n_pad: usize,
    kbuf: &mut [f32],
) {
    type Scores = unsafe fn(
        &[f32],
        usize,
        HeadSlabs,
        &[usize],
        usize,
        usize,
        Score,
        Order,
        &mut [f32],
        usize,
        &mut [f32],
    );
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
    unsafe {
        f(
            qr, g, kv, row_of, first, n_pos, score, order, w, n_pad, kbuf,
        )
    }
}

/// The scores of positions `first / 16 · 16..n_pos` for `g` heads, 16 positions at a time
/// with AVX-512, into `w` (g, n_pad): the same sums as the eight-position loop of [`body`]
/// (one 16-lane chain per score in the `Batch` order; four 16-lane accumulators over each 64
/// values in the `Single` order, for widths without leftovers), each key held in one row of
/// `kbuf` and each head's query in registers. Sixteen [`super::reduce16`] trees run at once
/// through [`reduce16_x16`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn scores16<const C4: usize>(
    qr: &[f32],
    g: usize,
    kv: HeadSlabs,
    row_of: &[usize],
    first: usize,
    n_pos: usize,
    score: Score,
    order: Order,
    w: &mut [f32],
    n_pad: usize,
    kbuf: &mut [f32],
) {
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

/// The shape of [`body`]'s weighted sum, for [`weighted16`].
#[derive(Clone, Copy)]
struct WeightedSums {
    /// Query heads.
    g: usize,
    /// Head width.
    hd: usize,
    /// Positions.
    n_pos: usize,
    /// Weights per head in `w` (padded).
    n_pad: usize,
    /// Chunk accumulators per lane: 1 (`Batch`) or 4 (`Single`).
    n_acc: usize,
    /// First block of chunks read.
    b_start: usize,
    /// Chunks per block.
    block: usize,
}

/// [`weighted16`] for the head width.
#[inline(always)]
unsafe fn weighted_wide(
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
    let f: Weighted = match sums.hd {
        16 => weighted16::<1>,
        32 => weighted16::<2>,
        48 => weighted16::<3>,
        64 => weighted16::<4>,
        80 => weighted16::<5>,
        96 => weighted16::<6>,
        112 => weighted16::<7>,
        128 => weighted16::<8>,
        256 => weighted16::<16>,
        _ => unreachable!("head widths are checked by attend_group"),
    };
    // SAFETY: the caller detected AVX-512 (`wide`) and sized the buffers (`attend_group`).
    unsafe { f(sums, kv, row_of, w, vbuf, lanes, out) }
}

/// [`body`]'s weighted sum with AVX-512: the same chains (lane l of chunk c is position
/// 16c + l; each (head, accumulator, lane) chain over the positions in order, carried across
/// blocks in `lanes`), each value row held in 16-wide registers, then the same combination of
/// accumulators and lanes per output value.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
unsafe fn weighted16<const C4: usize>(
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
        b_start,
        block,
    } = sums;
    assert!(hd == 16 * C4 && vbuf.len() >= 16 * block * hd && w.len() >= g * n_pad);
    assert!(lanes.len() >= g * n_acc * 16 * hd && out.len() >= g * hd && row_of.len() >= n_pos);
    let n_chunks = n_pos.div_ceil(16);
    unsafe {
        let vp = vbuf.as_mut_ptr();
        let lp = lanes.as_mut_ptr();
        for b0 in (b_start..n_chunks).step_by(block) {
            let b1 = (b0 + block).min(n_chunks);
            let (p_lo, p_hi) = (16 * b0, (16 * b1).min(n_pos));
            for (i, &row) in row_of[p_lo..p_hi].iter().enumerate() {
                let src = kv.values.as_ptr().add(row * kv.stride + kv.offset);
                for j in 0..C4 {
                    let v = _mm512_cvtph_ps(_mm256_loadu_si256(src.add(16 * j) as *const __m256i));
                    _mm512_storeu_ps(vp.add(i * hd + 16 * j), v);
                }
            }
            for h in 0..g {
                let wh = w.as_ptr().add(h * n_pad);
                for j in 0..n_acc {
                    for l in 0..16 {
                        let dst = lp.add(((h * n_acc + j) * 16 + l) * hd);
                        let mut acc = [_mm512_setzero_ps(); C4];
                        if b0 > b_start {
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm512_loadu_ps(dst.add(16 * i));
                            }
                        }
                        // The block size is a multiple of 4, so its first chunk is ≡ 0.
                        let mut c = b0 + j;
                        while c < b1 && 16 * c + l < n_pos {
                            let p = 16 * c + l;
                            let wv = _mm512_set1_ps(*wh.add(p));
                            let src = vp.add((p - p_lo) * hd);
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm512_fmadd_ps(_mm512_loadu_ps(src.add(16 * i)), wv, *a);
                            }
                            c += n_acc;
                        }
                        for (i, a) in acc.iter().enumerate() {
                            _mm512_storeu_ps(dst.add(16 * i), *a);
                        }
                    }
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
