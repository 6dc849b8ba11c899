//! AVX2 k-quant products (Q4_K, Q5_K, Q6_K), each in every order llama.cpp sums it in (see
//! `reference`): the one for a token alone and the one for rows of a larger batch, and for
//! Q4_K both of these for a repacked matrix and for one left as written. The integer sums are
//! exact either way; only where they are converted and how they are scaled and added differ.

use std::arch::x86_64::*;

use super::{f16_at, hsum, hsum_i32, load_codes, srl};
use crate::TILE_WIDTHS;
use crate::act::BlockQ8K;

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K/Q5_K super-block as bytes, unpacked
/// with word operations (the layout `scale_min_k4` reads one at a time).
#[inline(always)]
pub(super) unsafe fn k4_scales_mins(p: *const u8) -> ([u8; 8], [u8; 8]) {
    unsafe {
        let w = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
        let (w0, w1, w2) = (w(0), w(1), w(2));
        let (six, four, two) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
        let sc_lo = w0 & six;
        let mn_lo = w1 & six;
        let sc_hi = (w2 & four) | (((w0 >> 6) & two) << 4);
        let mn_hi = ((w2 >> 4) & four) | (((w1 >> 6) & two) << 4);
        let cat = |a: u32, b: u32| (a as u64 | ((b as u64) << 32)).to_le_bytes();
        (cat(sc_lo, sc_hi), cat(mn_lo, mn_hi))
    }
}

/// The (16,) i16 vector with each of 8 values repeated twice (for `madd` against bsums).
#[inline(always)]
pub(super) unsafe fn pairs_i16(v: [u8; 8]) -> __m256i {
    unsafe {
        let x = _mm_cvtepu8_epi16(_mm_loadl_epi64(v.as_ptr() as *const __m128i));
        let lo = _mm_unpacklo_epi16(x, x);
        let hi = _mm_unpackhi_epi16(x, x);
        _mm256_set_m128i(hi, lo)
    }
}

/// A Q4_K (`FIVE` false, 144 bytes) or Q5_K (176 bytes) super-block's (8,) code vectors,
/// unsigned: vector j holds weights 32j..32j+32 (sub-block j).
#[inline(always)]
pub(super) unsafe fn q45_codes<const FIVE: bool>(b: *const u8) -> [__m256i; 8] {
    unsafe {
        let (m4, one) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(1));
        let qs = b.add(if FIVE { 48 } else { 16 });
        let qh = _mm256_loadu_si256(b.add(16) as *const __m256i);
        let mut q = [_mm256_setzero_si256(); 8];
        for k in 0..4 {
            let raw = _mm256_loadu_si256(qs.add(32 * k) as *const __m256i);
            q[2 * k] = _mm256_and_si256(raw, m4);
            q[2 * k + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if FIVE {
                let h0 = _mm256_and_si256(srl(qh, 2 * k as i32), one);
                let h1 = _mm256_and_si256(srl(qh, 2 * k as i32 + 1), one);
                q[2 * k] = _mm256_or_si256(q[2 * k], _mm256_slli_epi16(h0, 4));
                q[2 * k + 1] = _mm256_or_si256(q[2 * k + 1], _mm256_slli_epi16(h1, 4));
            }
        }
        q
    }
}

/// A Q6_K super-block's (8,) code vectors, unsigned (0..63, the weight's q + 32): vector
/// 4h + k holds weights 128h + 32k .. +32, from nibble k / 2 of ql[64h + 32(k % 2) + l] and
/// bits 2k of qh[32h + l].
#[inline(always)]
pub(super) unsafe fn q6_k_codes(b: *const u8) -> [__m256i; 8] {
    unsafe {
        let (m4, m2) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(3));
        let mut q = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let ql0 = _mm256_loadu_si256(b.add(64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(b.add(64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(b.add(128 + 32 * h) as *const __m256i);
            let lows = [
                _mm256_and_si256(ql0, m4),
                _mm256_and_si256(ql1, m4),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
            ];
            for (k, low) in lows.into_iter().enumerate() {
                let high = _mm256_and_si256(srl(qh, 2 * k as i32), m2);
                q[4 * h + k] = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
            }
        }
        q
    }
}

/// The four i32 sums of `v[0]`..`v[3]`'s eight lanes each.
#[inline(always)]
unsafe fn hsum4_i32(v: [__m256i; 4]) -> [i32; 4] {
    unsafe {
        // Lanes (v0, v1, v2, v3) of each 128-bit half, summed over the halves.
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        std::mem::transmute::<__m128i, [i32; 4]>(s)
    }
}

/// Q4_K (`FIVE` false) and Q5_K (true) against a tile of `T` tokens, in llama.cpp's order
/// `ORDER` (`korder`; VEC_DOT's mins: Q5_K one chain, Q4_K four lanes): `reference::dot_q4_k`
/// (GEMV), `dot_q4_k_x4` (GEMM), `dot_q4_k_vec` / `dot_q5_k` (VEC_DOT), `dot_q4_k_tiled` /
/// `dot_q5_k_tiled` (TILED).
#[inline(always)]
unsafe fn tile_q45_k<const FIVE: bool, const ORDER: u8, const T: usize>(
    w: &[u8],
    a: [&[BlockQ8K]; T],
) -> [f32; T] {
    use super::korder::*;
    unsafe {
        let bytes = if FIVE { 176 } else { 144 };
        let nb = w.len() / bytes;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        // VEC_DOT: ggml's eight lanes (and Q4_K's four lanes of mins); the rest: scalar chains.
        let mut lanes = [_mm256_setzero_ps(); T];
        let mut acc = [0f32; T];
        let mut mins = [0f32; T];
        let mut mins4 = [[0f32; 4]; T];
        for i in 0..nb {
            let b = w.as_ptr().add(i * bytes);
            let (d, dmin) = (f16_at(b), f16_at(b.add(2)));
            let (sc, mn) = k4_scales_mins(b.add(4));
            let mn16 = pairs_i16(mn);
            let q = q45_codes::<FIVE>(b);
            for t in 0..T {
                let blk = a[t].get_unchecked(i);
                // pair[k]: sc·q·y of sub-blocks 2k and 2k + 1, in ggml's lanes.
                let mut pair = [_mm256_setzero_si256(); 4];
                for j in 0..8 {
                    let p = _mm256_maddubs_epi16(q[j], load_codes(&blk.qs[32 * j..]));
                    let p = _mm256_madd_epi16(p, _mm256_set1_epi16(sc[j] as i16));
                    pair[j / 2] = _mm256_add_epi32(pair[j / 2], p);
                }
                // Lane j: m_j · Σ y of sub-block j.
                let bs = _mm256_loadu_si256(blk.bsums.as_ptr() as *const __m256i);
                let mv = _mm256_madd_epi16(bs, mn16);
                if ORDER == GEMM {
                    let s = hsum4_i32(pair);
                    let m: [i32; 8] = std::mem::transmute(mv);
                    let (dd, dm) = (d * blk.d, dmin * blk.d);
                    for k in 0..4 {
                        acc[t] = (s[k] as f32).mul_add(dd, acc[t]);
                        mins[t] = ((m[2 * k] + m[2 * k + 1]) as f32).mul_add(dm, mins[t]);
                    }
                    continue;
                }
                let sumi = _mm256_add_epi32(
                    _mm256_add_epi32(pair[0], pair[1]),
                    _mm256_add_epi32(pair[2], pair[3]),
                );
                match ORDER {
                    VEC_DOT => {
                        let dd = _mm256_set1_ps(blk.d * d);
                        lanes[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), lanes[t]);
                        let dm = -blk.d * dmin;
                        if FIVE {
                            mins[t] = dm.mul_add(hsum_i32(mv) as f32, mins[t]);
                        } else {
                            let m: [i32; 8] = std::mem::transmute(mv);
                            for k in 0..4 {
                                let mk = (m[2 * k] + m[2 * k + 1]) as f32;
                                mins4[t][k] = dm.mul_add(mk, mins4[t][k]);
                            }
                        }
                    }
                    TILED => {
                        let msum = hsum_i32(mv) as f32;
                        let r = (-dmin).mul_add(msum, hsum_i32(sumi) as f32 * d);
                        acc[t] = r.mul_add(blk.d, acc[t]);
                    }
                    _ => {
                        let msum = hsum_i32(mv) as f32;
                        acc[t] = (hsum_i32(sumi) as f32).mul_add(d * blk.d, acc[t]);
                        mins[t] = msum.mul_add(dmin * blk.d, mins[t]);
                    }
                }
            }
        }
        std::array::from_fn(|t| match ORDER {
            // `hsum` is ggml's `hsum_float_8` tree.
            VEC_DOT if FIVE => hsum(lanes[t]) + mins[t],
            VEC_DOT => {
                let m = mins4[t];
                hsum(lanes[t]) + ((m[0] + m[2]) + (m[1] + m[3]))
            }
            TILED => acc[t],
            _ => acc[t] - mins[t],
        })
    }
}

/// Q6_K against a tile of `T` tokens: `reference::dot_q6_k` (`BATCH` false) or
/// `dot_q6_k_tiled`. Σ (q − 32)·y = Σ q·y − 32·Σ y, the second term from the block sums, both
/// in the integer lanes.
#[inline(always)]
unsafe fn tile_q6_k<const BATCH: bool, const T: usize>(w: &[u8], a: [&[BlockQ8K]; T]) -> [f32; T] {
    unsafe {
        let nb = w.len() / 210;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        let mut lanes = [_mm256_setzero_ps(); T];
        let mut acc = [0f32; T];
        for i in 0..nb {
            let b = w.as_ptr().add(i * 210);
            let d = f16_at(b.add(208));
            // (16,) sub-block scales as i16.
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
            // Code vector c holds weights 32c..32c+32 (sub-blocks 2c, 2c + 1).
            let q = q6_k_codes(b);
            let scale: [__m256i; 8] = std::array::from_fn(|c| {
                let (s0, s1) = (
                    *b.add(192 + 2 * c) as i8 as i16,
                    *b.add(193 + 2 * c) as i8 as i16,
                );
                _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0))
            });
            for t in 0..T {
                let blk = a[t].get_unchecked(i);
                let mut sumi = _mm256_setzero_si256();
                for v in 0..8 {
                    let p = _mm256_maddubs_epi16(q[v], load_codes(&blk.qs[32 * v..]));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale[v]));
                }
                // Lane k: 32·(sc·Σ y) of sub-blocks 2k and 2k + 1, as ggml subtracts it.
                let bs = _mm256_loadu_si256(blk.bsums.as_ptr() as *const __m256i);
                let off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
                let sumi = _mm256_sub_epi32(sumi, off);
                if BATCH {
                    acc[t] = (hsum_i32(sumi) as f32 * d).mul_add(blk.d, acc[t]);
                } else {
                    let dd = _mm256_set1_ps(blk.d * d);
                    lanes[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), lanes[t]);
                }
            }
        }
        // `hsum` is ggml's `hsum_float_8` tree.
        std::array::from_fn(|t| if BATCH { acc[t] } else { hsum(lanes[t]) })
    }
}

k_entries! {
    "avx2,fma,f16c";
    /// Q4_K × a tile of 256-block rows, as llama.cpp's repacked gemv sums.
    dot_q4_k = tile_q45_k::<false, { super::korder::GEMV }>;
    /// Q4_K × a tile of rows in groups of 4, as llama.cpp's repacked gemm sums.
    dot_q4_k_x4 = tile_q45_k::<false, { super::korder::GEMM }>;
    /// Q4_K × a tile of 256-block rows of a matrix llama.cpp does not repack, as ggml's
    /// `vec_dot` sums.
    dot_q4_k_vec = tile_q45_k::<false, { super::korder::VEC_DOT }>;
    /// Q4_K × a tile of rows of a batch of 8 or more, of a matrix llama.cpp does not repack,
    /// as its tiled matmul sums.
    dot_q4_k_tiled = tile_q45_k::<false, { super::korder::TILED }>;
    /// Q5_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q5_k = tile_q45_k::<true, { super::korder::VEC_DOT }>;
    /// Q5_K × a tile of rows of a batch of 8 or more, as llama.cpp's tiled matmul sums.
    dot_q5_k_tiled = tile_q45_k::<true, { super::korder::TILED }>;
    /// Q6_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q6_k = tile_q6_k::<false>;
    /// Q6_K × a tile of rows of a batch of 8 or more, as llama.cpp's tiled matmul sums.
    dot_q6_k_tiled = tile_q6_k::<true>;
}
