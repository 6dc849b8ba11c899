//! AVX-512 VNNI k-quant products in llama.cpp's tiled order (the order of a batch of 8 rows or
//! more: per super-block `r = S·d` (minus `dmin·M`, fused), `acc = fma(r, d_y, acc)`). Only
//! the super-block's exact integer sums S and M enter the floats, so they may be formed any
//! way: here the codes go unsigned (biased where the format's are signed) into `vpdpbusd`
//! against the activation bytes, 64 at a time, each 4-code sum is scaled by its sub-block's
//! scale with one `vpmulld`, and the bias comes off once per super-block through the block
//! sums (`S = Σ sc·u·y − bias·Σ sc·Σy`). The `vec_dot` orders, which need ggml's eight lanes,
//! stay with the AVX2 kernels.

use std::arch::x86_64::*;

use super::{f16_at, hsum_i32};
use crate::TILE_WIDTHS;
use crate::act::BlockQ8K;
use crate::kdecode::twice;

/// One super-block of one row, decoded once for every token of a tile.
struct Unsigned {
    /// (8,) unsigned code vectors: vector c holds weights 32c..32c+32.
    q: [__m256i; 8],
    /// (16,) the scale of each 16-weight group.
    scales: [i32; 16],
    /// (16,) the min of each 16-weight group (formats with mins).
    mins: [i16; 16],
    /// Super-block scale and min scale.
    d: f32,
    dmin: f32,
}

/// A k-quant format as this kernel reads it: w = d·sc·(u − BIAS) (− dmin·m with MINS).
trait Tiled {
    /// Bytes per super-block.
    const BYTES: usize;
    /// What the unsigned codes are offset by.
    const BIAS: i32;
    /// Whether the weights have mins.
    const MINS: bool;
    /// The super-block at `b`.
    unsafe fn decode(b: *const u8) -> Unsigned;
}

/// Q4_K's (`FIVE` false) or Q5_K's super-block: nibbles (and fifth bits), 6-bit scales and mins.
#[inline(always)]
unsafe fn q45<const FIVE: bool>(b: *const u8) -> Unsigned {
    unsafe {
        let q = super::kquant::q45_codes::<FIVE>(b);
        let packed = std::ptr::read_unaligned(b.add(4) as *const [u8; 12]);
        let sm: [(u8, u8); 8] =
            std::array::from_fn(|j| smelt_gguf::blocks::kquant::scale_min_k4(j, &packed));
        Unsigned {
            q,
            scales: twice(sm.map(|(s, _)| s as i32)),
            mins: twice(sm.map(|(_, m)| m as i16)),
            d: f16_at(b),
            dmin: f16_at(b.add(2)),
        }
    }
}

struct Q4K;
struct Q5K;
struct Q6K;
struct Q2K;
struct Q3K;
struct Iq4Xs;

impl Tiled for Q4K {
    const BYTES: usize = 144;
    const BIAS: i32 = 0;
    const MINS: bool = true;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe { q45::<false>(b) }
    }
}

impl Tiled for Q5K {
    const BYTES: usize = 176;
    const BIAS: i32 = 0;
    const MINS: bool = true;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe { q45::<true>(b) }
    }
}

impl Tiled for Q6K {
    const BYTES: usize = 210;
    const BIAS: i32 = 32;
    const MINS: bool = false;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe {
            let q = super::kquant::q6_k_codes(b);
            Unsigned {
                q,
                scales: std::array::from_fn(|g| *b.add(192 + g) as i8 as i32),
                mins: [0; 16],
                d: f16_at(b.add(208)),
                dmin: 0.0,
            }
        }
    }
}

impl Tiled for Q2K {
    const BYTES: usize = 84;
    const BIAS: i32 = 0;
    const MINS: bool = true;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe {
            let q = super::klanes::q2_k_codes(b);
            let sb = std::ptr::read_unaligned(b as *const [u8; 16]);
            Unsigned {
                q,
                scales: sb.map(|s| (s & 0x0f) as i32),
                mins: sb.map(|s| (s >> 4) as i16),
                d: f16_at(b.add(80)),
                dmin: f16_at(b.add(82)),
            }
        }
    }
}

impl Tiled for Q3K {
    const BYTES: usize = 110;
    const BIAS: i32 = 4;
    const MINS: bool = false;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe {
            let q = super::klanes::q3_k_codes(b);
            let s = std::ptr::read_unaligned(b.add(96) as *const [u8; 12]);
            let scale = |i: usize| smelt_gguf::blocks::q3_k_scale6(&s, i) - 32;
            Unsigned {
                q,
                scales: std::array::from_fn(scale),
                mins: [0; 16],
                d: f16_at(b.add(108)),
                dmin: 0.0,
            }
        }
    }
}

impl Tiled for Iq4Xs {
    const BYTES: usize = 136;
    const BIAS: i32 = 128;
    const MINS: bool = false;
    #[inline(always)]
    unsafe fn decode(b: *const u8) -> Unsigned {
        unsafe {
            let biased = smelt_gguf::blocks::iq4_nl::KVALUES_U8;
            let q =
                super::klanes::iq4_xs_codes(b, _mm_loadu_si128(biased.as_ptr() as *const __m128i));
            let high = std::ptr::read_unaligned(b.add(2) as *const [u8; 2]);
            let low = std::ptr::read_unaligned(b.add(4) as *const [u8; 4]);
            let ls: [i32; 8] =
                std::array::from_fn(|c| smelt_gguf::blocks::iq4_xs_scale(high, low, c));
            Unsigned {
                q,
                scales: twice(ls),
                mins: [0; 16],
                d: f16_at(b),
                dmin: 0.0,
            }
        }
    }
}

/// `F` against a tile of `T` tokens in the tiled matmul's order (`reference::dot_*_tiled`).
#[inline(always)]
unsafe fn tile_tiled<F: Tiled, const T: usize>(w: &[u8], a: [&[BlockQ8K]; T]) -> [f32; T] {
    unsafe {
        let nb = w.len() / F::BYTES;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        let mut acc = [0f32; T];
        for i in 0..nb {
            let blk = F::decode(w.as_ptr().add(i * F::BYTES));
            // (4,) 64-code vectors; vector k: weights 64k..64k + 64.
            let u: [__m512i; 4] = std::array::from_fn(|k| {
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(blk.q[2 * k]), blk.q[2 * k + 1])
            });
            // (16,) i32 group scales; i32 lane l of vector k takes group 4k + l/4.
            let all = _mm512_loadu_si512(blk.scales.as_ptr() as *const _);
            let sc: [__m512i; 4] = std::array::from_fn(|k| {
                let idx: [i32; 16] = std::array::from_fn(|l| (4 * k + l / 4) as i32);
                _mm512_permutexvar_epi32(_mm512_loadu_si512(idx.as_ptr() as *const _), all)
            });
            let sc16 = _mm512_cvtepi32_epi16(all);
            let mins16 = _mm256_loadu_si256(blk.mins.as_ptr() as *const __m256i);
            for t in 0..T {
                let y = a[t].get_unchecked(i);
                let mut sumi = _mm512_setzero_si512();
                for k in 0..4 {
                    let yk = _mm512_loadu_si512(y.qs.as_ptr().add(64 * k) as *const _);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[k], yk);
                    sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dot, sc[k]));
                }
                let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                let mut s = _mm512_reduce_add_epi32(sumi);
                if F::BIAS != 0 {
                    s -= F::BIAS * hsum_i32(_mm256_madd_epi16(bs, sc16));
                }
                let sd = s as f32 * blk.d;
                let r = if F::MINS {
                    let m = hsum_i32(_mm256_madd_epi16(bs, mins16));
                    (-blk.dmin).mul_add(m as f32, sd)
                } else {
                    sd
                };
                acc[t] = r.mul_add(y.d, acc[t]);
            }
        }
        acc
    }
}

k_entries! {
    "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni";
    /// Q4_K (a matrix llama.cpp does not repack) × rows of a batch of 8 or more.
    dot_q4_k_tiled_vnni512 = tile_tiled::<Q4K>;
    /// Q5_K × rows of a batch of 8 or more.
    dot_q5_k_tiled_vnni512 = tile_tiled::<Q5K>;
    /// Q6_K × rows of a batch of 8 or more.
    dot_q6_k_tiled_vnni512 = tile_tiled::<Q6K>;
    /// Q2_K (a matrix llama.cpp does not repack) × rows of a batch of 8 or more.
    dot_q2_k_tiled_vnni512 = tile_tiled::<Q2K>;
    /// Q3_K × rows of a batch of 8 or more.
    dot_q3_k_tiled_vnni512 = tile_tiled::<Q3K>;
    /// IQ4_XS × rows of a batch of 8 or more.
    dot_iq4_xs_tiled_vnni512 = tile_tiled::<Iq4Xs>;
}
