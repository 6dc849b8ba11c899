//! AVX2 products of the 256-weight formats whose `vec_dot` ggml sums in eight integer lanes
//! of Σ sc·q·y and nothing else per weight (Q2_K, Q3_K, IQ4_XS), in llama.cpp's orders
//! (`reference::dot_q2_k` and `dot_q2_k_tiled`, and the same for Q3_K and IQ4_XS): ggml's
//! `vec_dot` for a token alone and batches under 8 rows, its tiled matmul for larger ones; and
//! for the Q2_K matrices its AVX-512 build repacks, their gemv and gemm.

use std::arch::x86_64::*;

use super::{f16_at, hsum, hsum_i32, load_codes, nibble_lookup, srl};
use crate::TILE_WIDTHS;
use crate::act::BlockQ8K;

/// One super-block, decoded once for every token of a tile.
struct Decoded {
    /// (8,) code vectors: vector c holds weights 32c..32c+32 (signed for signed formats).
    q: [__m256i; 8],
    /// (8,) i16 vectors: each i16 lane the scale of the sub-block its byte pair is in.
    scales: [__m256i; 8],
    /// (16,) i16 sub-block mins (formats with mins).
    mins: __m256i,
    /// Super-block scale.
    d: f32,
    /// Super-block min scale (formats with mins).
    dmin: f32,
}

/// How a super-block of one of these formats decodes.
trait Lanes256 {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Whether the codes are signed (then they meet the activations through `sign_epi8`).
    const SIGNED: bool;
    /// Whether the weights have mins: w = d·sc·q − dmin·m.
    const MINS: bool;
    /// The super-block at `b`.
    unsafe fn decode(b: *const u8) -> Decoded;
}

/// The scale vector of a 32-weight chunk made of two 16-weight sub-blocks.
#[inline(always)]
unsafe fn two_scales(low: i16, high: i16) -> __m256i {
    unsafe { _mm256_set_m128i(_mm_set1_epi16(high), _mm_set1_epi16(low)) }
}

/// A Q2_K super-block's (8,) code vectors (0..3): vector 4j + k holds weights 128j + 32k ..
/// +32, bits 2k of qs[32j + l].
#[inline(always)]
pub(super) unsafe fn q2_k_codes(b: *const u8) -> [__m256i; 8] {
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let mut q = [_mm256_setzero_si256(); 8];
        for j in 0..2 {
            let raw = _mm256_loadu_si256(b.add(16 + 32 * j) as *const __m256i);
            for k in 0..4 {
                q[4 * j + k] = _mm256_and_si256(srl(raw, 2 * k as i32), m3);
            }
        }
        q
    }
}

/// A Q3_K super-block's (8,) code vectors, unsigned (low | high << 2, 0..7: the weight's
/// q + 4): vector 4j + k holds weights 128j + 32k .. +32; bit 4j + k of hmask[l] is the high
/// bit of weight 128j + 32k + l.
#[inline(always)]
pub(super) unsafe fn q3_k_codes(b: *const u8) -> [__m256i; 8] {
    unsafe {
        let (m3, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
        let hmask = _mm256_loadu_si256(b as *const __m256i);
        let mut q = [_mm256_setzero_si256(); 8];
        for j in 0..2 {
            let raw = _mm256_loadu_si256(b.add(32 + 32 * j) as *const __m256i);
            for k in 0..4 {
                let low = _mm256_and_si256(srl(raw, 2 * k as i32), m3);
                let high = _mm256_and_si256(srl(hmask, (4 * j + k) as i32), one);
                q[4 * j + k] = _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
            }
        }
        q
    }
}

/// An IQ4_XS super-block's (8,) code vectors, each index looked up in `values` (16 bytes):
/// vector c holds sub-block c, the low nibbles of its 16 bytes, then the high ones.
#[inline(always)]
pub(super) unsafe fn iq4_xs_codes(b: *const u8, values: __m128i) -> [__m256i; 8] {
    unsafe { std::array::from_fn(|c| nibble_lookup(b.add(8 + 16 * c), values)) }
}

struct Q2K;
struct Q3K;
struct Iq4Xs;

impl Lanes256 for Q2K {
    const BYTES: usize = 84;
    const SIGNED: bool = false;
    const MINS: bool = true;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Decoded {
        unsafe {
            let q = q2_k_codes(b);
            let sb = std::ptr::read_unaligned(b as *const [u8; 16]);
            let scales = std::array::from_fn(|c| {
                two_scales((sb[2 * c] & 0x0f) as i16, (sb[2 * c + 1] & 0x0f) as i16)
            });
            let packed = _mm_loadu_si128(b as *const __m128i);
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(
                _mm_srli_epi16(packed, 4),
                _mm_set1_epi8(0x0f),
            ));
            Decoded {
                q,
                scales,
                mins,
                d: f16_at(b.add(80)),
                dmin: f16_at(b.add(82)),
            }
        }
    }
}

impl Lanes256 for Q3K {
    const BYTES: usize = 110;
    const SIGNED: bool = true;
    const MINS: bool = false;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Decoded {
        unsafe {
            let four = _mm256_set1_epi8(4);
            let q = q3_k_codes(b).map(|c| _mm256_sub_epi8(c, four));
            let s = std::ptr::read_unaligned(b.add(96) as *const [u8; 12]);
            let scale = |i: usize| (smelt_gguf::blocks::q3_k_scale6(&s, i) - 32) as i16;
            Decoded {
                q,
                scales: std::array::from_fn(|c| two_scales(scale(2 * c), scale(2 * c + 1))),
                mins: _mm256_setzero_si256(),
                d: f16_at(b.add(108)),
                dmin: 0.0,
            }
        }
    }
}

impl Lanes256 for Iq4Xs {
    const BYTES: usize = 136;
    const SIGNED: bool = true;
    const MINS: bool = false;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Decoded {
        unsafe {
            let table = smelt_gguf::blocks::iq4_nl::KVALUES;
            let q = iq4_xs_codes(b, _mm_loadu_si128(table.as_ptr() as *const __m128i));
            let high = std::ptr::read_unaligned(b.add(2) as *const [u8; 2]);
            let low = std::ptr::read_unaligned(b.add(4) as *const [u8; 4]);
            let scales = std::array::from_fn(|c| {
                _mm256_set1_epi16(smelt_gguf::blocks::iq4_xs_scale(high, low, c) as i16)
            });
            Decoded {
                q,
                scales,
                mins: _mm256_setzero_si256(),
                d: f16_at(b),
                dmin: 0.0,
            }
        }
    }
}

/// `F` against a tile of `T` tokens in llama.cpp's order `ORDER` (`korder`; VEC_DOT's mins:
/// per lane `fma(−d_y·dmin, ·)` before the lane's sum):
/// `reference::dot_q2_k` (VEC_DOT), `dot_q2_k_tiled` (TILED), `dot_q2_k_gemv`, `dot_q2_k_gemm`,
/// and the same for Q3_K and IQ4_XS, which have the first two.
#[inline(always)]
unsafe fn tile_lanes<F: Lanes256, const ORDER: u8, const T: usize>(
    w: &[u8],
    a: [&[BlockQ8K]; T],
) -> [f32; T] {
    use super::korder::*;
    unsafe {
        let nb = w.len() / F::BYTES;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        let mut lanes = [_mm256_setzero_ps(); T];
        let mut acc = [0f32; T];
        let mut mins_acc = [0f32; T];
        for i in 0..nb {
            let blk = F::decode(w.as_ptr().add(i * F::BYTES));
            // maddubs wants unsigned × signed: signed codes give their sign to y.
            let u: [__m256i; 8] = if F::SIGNED {
                blk.q.map(|q| _mm256_abs_epi8(q))
            } else {
                blk.q
            };
            for t in 0..T {
                let y = a[t].get_unchecked(i);
                // The two 128-weight halves' lanes.
                let mut half = [_mm256_setzero_si256(); 2];
                for c in 0..8 {
                    let yc = load_codes(&y.qs[32 * c..]);
                    let yc = if F::SIGNED {
                        _mm256_sign_epi8(yc, blk.q[c])
                    } else {
                        yc
                    };
                    let p = _mm256_maddubs_epi16(u[c], yc);
                    half[c / 4] =
                        _mm256_add_epi32(half[c / 4], _mm256_madd_epi16(p, blk.scales[c]));
                }
                let sumi = _mm256_add_epi32(half[0], half[1]);
                // Lane l: m·Σy of sub-blocks 2l and 2l + 1.
                let mins = if F::MINS {
                    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                    _mm256_madd_epi16(blk.mins, bs)
                } else {
                    _mm256_setzero_si256()
                };
                match ORDER {
                    VEC_DOT => {
                        if F::MINS {
                            let dm = _mm256_set1_ps(-y.d * blk.dmin);
                            lanes[t] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(mins), lanes[t]);
                        }
                        let dd = _mm256_set1_ps(y.d * blk.d);
                        lanes[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), lanes[t]);
                    }
                    TILED => {
                        let s = hsum_i32(sumi) as f32 * blk.d;
                        let r = if F::MINS {
                            (-blk.dmin).mul_add(hsum_i32(mins) as f32, s)
                        } else {
                            s
                        };
                        acc[t] = r.mul_add(y.d, acc[t]);
                    }
                    _ => {
                        let (dd, dm) = (blk.d * y.d, blk.dmin * y.d);
                        let m: [i32; 8] = std::mem::transmute(mins);
                        let mh = [m[..4].iter().sum::<i32>(), m[4..].iter().sum::<i32>()];
                        if ORDER == GEMV {
                            acc[t] = (hsum_i32(sumi) as f32).mul_add(dd, acc[t]);
                            mins_acc[t] = ((mh[0] + mh[1]) as f32).mul_add(dm, mins_acc[t]);
                        } else {
                            for h in 0..2 {
                                acc[t] = (hsum_i32(half[h]) as f32).mul_add(dd, acc[t]);
                                mins_acc[t] = (mh[h] as f32).mul_add(dm, mins_acc[t]);
                            }
                        }
                    }
                }
            }
        }
        // `hsum` is ggml's `hsum_float_8` tree.
        std::array::from_fn(|t| match ORDER {
            VEC_DOT => hsum(lanes[t]),
            TILED => acc[t],
            _ => acc[t] - mins_acc[t],
        })
    }
}

k_entries! {
    "avx2,fma,f16c";
    /// Q2_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q2_k = tile_lanes::<Q2K, { super::korder::VEC_DOT }>;
    /// Q2_K × a tile of rows of a batch of 8 or more, as llama.cpp's tiled matmul sums.
    dot_q2_k_tiled = tile_lanes::<Q2K, { super::korder::TILED }>;
    /// Q2_K × a tile of rows of a matrix llama.cpp repacks, as its gemv sums.
    dot_q2_k_gemv = tile_lanes::<Q2K, { super::korder::GEMV }>;
    /// Q2_K × a tile of rows in groups of 4, of a matrix llama.cpp repacks, as its gemm sums.
    dot_q2_k_gemm = tile_lanes::<Q2K, { super::korder::GEMM }>;
    /// Q3_K × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_q3_k = tile_lanes::<Q3K, { super::korder::VEC_DOT }>;
    /// Q3_K × a tile of rows of a batch of 8 or more, as llama.cpp's tiled matmul sums.
    dot_q3_k_tiled = tile_lanes::<Q3K, { super::korder::TILED }>;
    /// IQ4_XS × a tile of 256-block rows, as ggml's `vec_dot` sums.
    dot_iq4_xs = tile_lanes::<Iq4Xs, { super::korder::VEC_DOT }>;
    /// IQ4_XS × a tile of rows of a batch of 8 or more, as llama.cpp's tiled matmul sums.
    dot_iq4_xs_tiled = tile_lanes::<Iq4Xs, { super::korder::TILED }>;
}
