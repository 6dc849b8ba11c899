//! AVX-512 VNNI k-quant products in llama.cpp's one-token orders, read from the file's own
//! bytes (the output head, a mixture's experts and matrices past the copy budget have no
//! 16-row copy): ggml's `vec_dot` for Q3_K, Q5_K, Q6_K and IQ4_XS (eight i32 lanes per
//! super-block, one FMA per lane by `d_y·d`, `hsum_float_8` at the end) and repacked Q4_K's
//! gemv (the super-block's S and M in two chains).
//!
//! Only exact integers enter the floats, so they may be formed any way. ggml's lane l of a
//! super-block is Σ over its eight 32-weight vectors v of `scale(v, l) · Σ q·y` over bytes
//! 4l..4l+4 of v, where `scale(v, l)` is the scale of the 16-weight group 2v + l / 4 (Q5_K's
//! scales cover 32 weights: the same for both groups). Here the codes of two vectors (64
//! weights) are decoded straight from the block into one 512-bit register, `vpmaddubsw`
//! against 64 activation bytes and `vpmaddwd` against the groups' scales (one `vpermw` from
//! the block's 16) give their 4-byte sums already scaled, and adding the two 256-bit halves
//! gives the eight lanes: half the multiplies of the 256-bit form and no scale broadcasts.
//! (`vpdpbusd` then `vpmulld` takes three multiply µops per 64 weights to these two.)

use std::arch::x86_64::*;

use super::kquant::{k4_scales_mins, pairs_i16};
use super::{f16_at, hsum, hsum_i32};
use crate::TILE_WIDTHS;
use crate::act::BlockQ8K;

/// A format as these kernels read it: codes (unsigned), 16-weight group scales, `d`, and mins.
trait Lanes {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Q6_K: the codes are q + 32, and 32·sc·Σy comes off each lane as ggml takes it off
    /// (lane l: groups 2l and 2l + 1 of the block sums).
    const BIAS32: bool = false;
    /// Whether the weights have mins (`− dmin·m` per 32 weights).
    const MINS: bool = false;
    /// Whether the codes are signed (Q3_K, IQ4_XS): their magnitudes then meet the
    /// activations with the codes' signs (`vpmaddubsw` takes unsigned × signed), as ggml's
    /// `sign_epi8` trick does.
    const SIGNED: bool = false;
    /// (4,) code vectors of the block at `b`: vector k holds weights 64k..64k + 64.
    unsafe fn codes(b: *const u8) -> [__m512i; 4];
    /// (16,) i16: the scale of each 16-weight group.
    unsafe fn scales(b: *const u8) -> __m256i;
    /// (16,) i16: each 32-weight sub-block's min twice (for `madd` against the block sums);
    /// zeros for formats without mins.
    #[inline(always)]
    unsafe fn mins(_: *const u8) -> __m256i {
        unsafe { _mm256_setzero_si256() }
    }
    /// The super-block's scale and min scale.
    unsafe fn d(b: *const u8) -> (f32, f32);
}

/// (32,) i16 shift counts: `lo` for the 256-bit half of weights 0..32, `hi` for 32..64.
#[inline(always)]
unsafe fn halves(lo: i16, hi: i16) -> __m512i {
    unsafe { _mm512_inserti64x4::<1>(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi)) }
}

/// 32 bytes at `p` in both 256-bit halves.
#[inline(always)]
unsafe fn both_halves(p: *const u8) -> __m512i {
    unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i)) }
}

/// `ternarylogic` immediate for bitwise `a ? b : c`.
const SELECT: i32 = 0xca;

/// Q4_K (`FIVE` false) and Q5_K: the same scales, mins and `d`; Q5_K's codes have a fifth bit.
struct Q45<const FIVE: bool>;
type Q4K = Q45<false>;
type Q5K = Q45<true>;
struct Q6K;

impl<const FIVE: bool> Lanes for Q45<FIVE> {
    const BYTES: usize = if FIVE { 176 } else { 144 };
    const BIAS32: bool = false;
    const MINS: bool = true;
    #[inline(always)]
    unsafe fn codes(b: *const u8) -> [__m512i; 4] {
        unsafe {
            // qs[32k..32k + 32] (after Q5_K's 32 bytes of fifth bits): low nibbles weights
            // 64k.., high nibbles 64k + 32...
            let (m4, bit4, nib) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x10), halves(0, 4));
            // Weight 32j + l's fifth bit is bit j of qh[l]; moved to bit 4: vector k's halves
            // take bits 2k and 2k + 1 (left shifts for k < 2, right ones after).
            let qh = both_halves(b.add(16));
            // (Loops, not closures: a closure does not inherit the target features.)
            let mut z = [_mm512_setzero_si512(); 4];
            for (k, zk) in z.iter_mut().enumerate() {
                let qs = both_halves(b.add(if FIVE { 48 } else { 16 } + 32 * k));
                let codes = _mm512_srlv_epi16(qs, nib);
                if !FIVE {
                    *zk = _mm512_and_si512(codes, m4);
                    continue;
                }
                let (lo, hi) = (2 * k as i16 - 4, 2 * k as i16 - 3);
                let fifth = if k < 2 {
                    _mm512_sllv_epi16(qh, halves(-lo, -hi))
                } else {
                    _mm512_srlv_epi16(qh, halves(lo, hi))
                };
                let fifth = _mm512_and_si512(fifth, bit4);
                *zk = _mm512_ternarylogic_epi32::<SELECT>(m4, codes, fifth);
            }
            z
        }
    }
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> __m256i {
        // The 6-bit sub-block scales, each for both of its 16-weight groups.
        unsafe {
            let sc = k4_scales_mins(b.add(4)).0;
            let x = _mm_loadl_epi64(sc.as_ptr() as *const __m128i);
            _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x, x))
        }
    }
    #[inline(always)]
    unsafe fn mins(b: *const u8) -> __m256i {
        unsafe { pairs_i16(k4_scales_mins(b.add(4)).1) }
    }
    #[inline(always)]
    unsafe fn d(b: *const u8) -> (f32, f32) {
        unsafe { (f16_at(b), f16_at(b.add(2))) }
    }
}

impl Lanes for Q6K {
    const BYTES: usize = 210;
    const BIAS32: bool = true;
    #[inline(always)]
    unsafe fn codes(b: *const u8) -> [__m512i; 4] {
        unsafe {
            // Weights 128h + 32k + l (k < 4): nibble k / 2 of ql[64h + 32(k % 2) + l], bits
            // 2k, 2k + 1 of qh[32h + l] above it. Vector 2h: k = 0, 1; vector 2h + 1: k = 2, 3.
            let (m4, m30) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
            let (up, down) = (halves(4, 2), halves(0, 2));
            let mut z = [_mm512_setzero_si512(); 4];
            for h in 0..2 {
                let ql = _mm512_loadu_si512(b.add(64 * h) as *const _);
                let qh = both_halves(b.add(128 + 32 * h));
                let high01 = _mm512_and_si512(_mm512_sllv_epi16(qh, up), m30);
                let high23 = _mm512_and_si512(_mm512_srlv_epi16(qh, down), m30);
                z[2 * h] = _mm512_ternarylogic_epi32::<SELECT>(m4, ql, high01);
                let ql_hi = _mm512_srli_epi16::<4>(ql);
                z[2 * h + 1] = _mm512_ternarylogic_epi32::<SELECT>(m4, ql_hi, high23);
            }
            z
        }
    }
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> __m256i {
        unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn d(b: *const u8) -> (f32, f32) {
        unsafe { (f16_at(b.add(208)), 0.0) }
    }
}

/// Q3_K: 3-bit codes − 4 (−4..3), 16-weight groups with 6-bit scales − 32.
struct Q3K;
/// IQ4_XS: IQ4_NL's table values, 32-weight sub-blocks with 6-bit scales − 32.
struct Iq4Xs;

impl Lanes for Q3K {
    const BYTES: usize = 110;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn codes(b: *const u8) -> [__m512i; 4] {
        unsafe {
            // Weight 128j + 32c + l: bits 2c of qs[32j + l], its high bit bit 4j + c of
            // hmask[l]. Vector k holds c-blocks 2k and 2k + 1: j = k / 2, c = 2(k % 2) + half;
            // their high bits are bits 2k and 2k + 1.
            let (m3, one, four) = (
                _mm512_set1_epi8(3),
                _mm512_set1_epi8(1),
                _mm512_set1_epi8(4),
            );
            let hmask = both_halves(b);
            let mut z = [_mm512_setzero_si512(); 4];
            for (k, zk) in z.iter_mut().enumerate() {
                let qs = both_halves(b.add(32 + 32 * (k / 2)));
                let c = 4 * (k % 2) as i16;
                let low = _mm512_and_si512(_mm512_srlv_epi16(qs, halves(c, c + 2)), m3);
                let k2 = 2 * k as i16;
                let high = _mm512_and_si512(_mm512_srlv_epi16(hmask, halves(k2, k2 + 1)), one);
                let u = _mm512_or_si512(low, _mm512_slli_epi16::<2>(high));
                *zk = _mm512_sub_epi8(u, four);
            }
            z
        }
    }
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> __m256i {
        // Group j: low nibble of byte j (j < 8) or high nibble of byte j − 8, bits 2(j / 4)
        // of byte 8 + j % 4 above them; minus 32.
        unsafe {
            let s = _mm_loadl_epi64(b.add(96) as *const __m128i);
            let m4 = _mm_set1_epi8(0x0f);
            let low = _mm_unpacklo_epi64(
                _mm_and_si128(s, m4),
                _mm_and_si128(_mm_srli_epi16(s, 4), m4),
            );
            let h = _mm_set1_epi32(std::ptr::read_unaligned(b.add(104) as *const i32));
            let high = _mm_and_si128(
                _mm_srlv_epi32(h, _mm_setr_epi32(0, 2, 4, 6)),
                _mm_set1_epi8(3),
            );
            let sc = _mm_sub_epi8(
                _mm_or_si128(low, _mm_slli_epi16(high, 4)),
                _mm_set1_epi8(32),
            );
            _mm256_cvtepi8_epi16(sc)
        }
    }
    #[inline(always)]
    unsafe fn d(b: *const u8) -> (f32, f32) {
        unsafe { (f16_at(b.add(108)), 0.0) }
    }
}

impl Lanes for Iq4Xs {
    const BYTES: usize = 136;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn codes(b: *const u8) -> [__m512i; 4] {
        unsafe {
            // Sub-block c: the low nibbles of its 16 bytes (at 8 + 16c), then the high ones,
            // each looked up in the table (in every 128-bit quarter).
            let table = smelt_gguf::blocks::iq4_nl::KVALUES;
            let table = _mm512_broadcast_i32x4(_mm_loadu_si128(table.as_ptr() as *const __m128i));
            let shifts: [i16; 32] = std::array::from_fn(|j| if j / 8 % 2 == 1 { 4 } else { 0 });
            let shifts = _mm512_loadu_si512(shifts.as_ptr() as *const _);
            let m4 = _mm512_set1_epi8(0x0f);
            let mut z = [_mm512_setzero_si512(); 4];
            for (k, zk) in z.iter_mut().enumerate() {
                // Quarters: sub-block 2k's bytes twice, then 2k + 1's twice.
                let x =
                    _mm512_castsi256_si512(_mm256_loadu_si256(b.add(8 + 32 * k) as *const __m256i));
                let x = _mm512_shuffle_i64x2::<0x50>(x, x);
                let idx = _mm512_and_si512(_mm512_srlv_epi16(x, shifts), m4);
                *zk = _mm512_shuffle_epi8(table, idx);
            }
            z
        }
    }
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> __m256i {
        // Sub-block i: nibble i % 2 of byte 4 + i / 2, bits 2i of the u16 at 2 above it;
        // minus 32; each for both of its 16-weight groups.
        unsafe {
            let l = _mm_cvtsi32_si128(std::ptr::read_unaligned(b.add(4) as *const i32));
            let m4 = _mm_set1_epi8(0x0f);
            let low = _mm_unpacklo_epi8(
                _mm_and_si128(l, m4),
                _mm_and_si128(_mm_srli_epi16(l, 4), m4),
            );
            let h = _mm_set1_epi16(std::ptr::read_unaligned(b.add(2) as *const i16));
            let high = _mm_srlv_epi16(h, _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14));
            let high = _mm_slli_epi16(_mm_and_si128(high, _mm_set1_epi16(3)), 4);
            let sc = _mm_sub_epi16(
                _mm_or_si128(_mm_cvtepu8_epi16(low), high),
                _mm_set1_epi16(32),
            );
            _mm256_set_m128i(_mm_unpackhi_epi16(sc, sc), _mm_unpacklo_epi16(sc, sc))
        }
    }
    #[inline(always)]
    unsafe fn d(b: *const u8) -> (f32, f32) {
        unsafe { (f16_at(b), 0.0) }
    }
}

/// The orders ([`tile_lanes`]'s `GEMV`): false for `vec_dot`'s eight lanes, true for
/// repacked Q4_K's gemv.
const VEC_DOT: bool = false;
const GEMV: bool = true;

/// `F` against a tile of `T` tokens: `reference::dot_q5_k`, `dot_q6_k` (`vec_dot`) or
/// `dot_q4_k` (`GEMV`).
#[inline(always)]
unsafe fn tile_lanes<F: Lanes, const ORDER: bool, const T: usize>(
    w: &[u8],
    a: [&[BlockQ8K]; T],
) -> [f32; T] {
    unsafe {
        let nb = w.len() / F::BYTES;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        // i16 lane j of code vector k (64 weights; the 32-bit lane j / 2) belongs to group
        // 4k + j / 8.
        let mut group = [_mm512_setzero_si512(); 4];
        for (k, g) in group.iter_mut().enumerate() {
            let idx: [i16; 32] = std::array::from_fn(|j| (4 * k + j / 8) as i16);
            *g = _mm512_loadu_si512(idx.as_ptr() as *const _);
        }
        let mut lanes = [_mm256_setzero_ps(); T];
        let (mut acc, mut mins) = ([0f32; T], [0f32; T]);
        for i in 0..nb {
            let b = w.as_ptr().add(i * F::BYTES);
            let mut z = F::codes(b);
            // Signed codes: their magnitudes, and where they are negative (to negate y).
            let mut neg = [0 as __mmask64; 4];
            if F::SIGNED {
                for (zk, nk) in z.iter_mut().zip(&mut neg) {
                    *nk = _mm512_movepi8_mask(*zk);
                    *zk = _mm512_abs_epi8(*zk);
                }
            }
            // (16,) i16 group scales, (16,) i16 mins for the block sums.
            let sc16 = F::scales(b);
            let mut sc = [_mm512_setzero_si512(); 4];
            for (s, &g) in sc.iter_mut().zip(&group) {
                *s = _mm512_permutexvar_epi16(g, _mm512_castsi256_si512(sc16));
            }
            let mn16 = F::mins(b);
            let (d, dmin) = F::d(b);
            for t in 0..T {
                let y = a[t].get_unchecked(i);
                // 32-bit lane l of vector k: Σ u·y over its 4 bytes, times their group's
                // scale (u·y pairs stay within i16: |u| < 64).
                let mut s = _mm512_setzero_si512();
                for (k, (&zk, &sk)) in z.iter().zip(&sc).enumerate() {
                    let mut yk = _mm512_loadu_si512(y.qs.as_ptr().add(64 * k) as *const _);
                    if F::SIGNED {
                        yk = _mm512_mask_sub_epi8(yk, neg[k], _mm512_setzero_si512(), yk);
                    }
                    let pairs = _mm512_maddubs_epi16(zk, yk);
                    s = _mm512_add_epi32(s, _mm512_madd_epi16(pairs, sk));
                }
                let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                if ORDER == GEMV {
                    let m = hsum_i32(_mm256_madd_epi16(bs, mn16));
                    acc[t] = (_mm512_reduce_add_epi32(s) as f32).mul_add(d * y.d, acc[t]);
                    mins[t] = (m as f32).mul_add(dmin * y.d, mins[t]);
                    continue;
                }
                // Lane l: both vectors' lane l.
                let mut sumi =
                    _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s));
                if F::BIAS32 {
                    let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16));
                    sumi = _mm256_sub_epi32(sumi, off);
                }
                let dd = _mm256_set1_ps(y.d * d);
                lanes[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), lanes[t]);
                if F::MINS {
                    let m = hsum_i32(_mm256_madd_epi16(bs, mn16));
                    mins[t] = (-y.d * dmin).mul_add(m as f32, mins[t]);
                }
            }
        }
        std::array::from_fn(|t| match (ORDER, F::MINS) {
            (GEMV, _) => acc[t] - mins[t],
            // `hsum` is ggml's `hsum_float_8` tree.
            (VEC_DOT, true) => hsum(lanes[t]) + mins[t],
            (VEC_DOT, false) => hsum(lanes[t]),
        })
    }
}

k_entries! {
    "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni";
    /// Q4_K × a tile of 256-block rows, as llama.cpp's repacked gemv sums.
    dot_q4_k_vnni512 = tile_lanes::<Q4K, GEMV>;
    /// Q5_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q5_k_vnni512 = tile_lanes::<Q5K, VEC_DOT>;
    /// Q6_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q6_k_vnni512 = tile_lanes::<Q6K, VEC_DOT>;
    /// Q3_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q3_k_vnni512 = tile_lanes::<Q3K, VEC_DOT>;
    /// IQ4_XS × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_iq4_xs_vnni512 = tile_lanes::<Iq4Xs, VEC_DOT>;
}
