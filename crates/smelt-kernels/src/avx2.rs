//! AVX2 + FMA + F16C dot products, same contract as `reference`: the integer sums per block are
//! exact (`maddubs` of unsigned codes × int8 activations, whose pair sums stay below i16's
//! limit for every format here), then scaled and accumulated in f32 lanes.
//!
//! Each kernel takes a run of weight rows and a tile of 1, 2, 3, 4 or 8 activation rows: a block
//! is unpacked once and used for every token, which is what makes prompt processing faster than
//! token-at-a-time; two accumulators per token hide the latency of the float adds.
//!
//! Every function is `unsafe` because it needs those CPU features; `crate::variant()` only
//! selects this module after detecting them.

use std::arch::x86_64::*;

use crate::TILE_WIDTHS;
use crate::act::BlockQ8x32;

#[path = "avx2_x8.rs"]
mod x8;

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

/// The sum of the eight i32 lanes (exact while it fits, as every block dot here does).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)))
    }
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    unsafe {
        let bits = std::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// How 4-byte groups of unsigned × signed bytes are summed into i32 lanes.
pub(crate) trait Isa {
    /// Whether u8 × i8 sums of 4 go straight to i32 (no i16 intermediate that could saturate).
    const WIDE: bool;
    /// Whether AVX-512BW's byte-masked operations may be used (block decoding).
    const BW: bool = false;
    /// Sums of adjacent products of 4 bytes: unsigned `u` × signed `s`, as 8 i32 lanes.
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i;
    /// `acc + dot_u8_i8(u, s)`.
    unsafe fn dot_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
}

/// AVX2: `maddubs` to i16 pairs, `madd` by ones to i32.
pub(crate) struct Avx2;

impl Isa for Avx2 {
    const WIDE: bool = false;
    #[inline(always)]
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
    }
    #[inline(always)]
    unsafe fn dot_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, Self::dot_u8_i8(u, s)) }
    }
}

/// AVX-VNNI: one `vpdpbusd`.
pub(crate) struct Vnni;

impl Isa for Vnni {
    const WIDE: bool = true;
    #[inline(always)]
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s) }
    }
    #[inline(always)]
    unsafe fn dot_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_avx_epi32(acc, u, s) }
    }
}

/// AVX-512 VNNI (EVEX `vpdpbusd` on 256-bit registers, for CPUs that have AVX-512 VNNI but
/// not AVX-VNNI, such as Ice Lake and Cascade Lake).
pub(crate) struct Vnni512;

impl Isa for Vnni512 {
    const WIDE: bool = true;
    const BW: bool = true;
    #[inline(always)]
    unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s) }
    }
    #[inline(always)]
    unsafe fn dot_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, u, s) }
    }
}

/// f16 bits → f32 for every half, so a block's scale is one load (and can be broadcast
/// straight from memory) instead of a conversion on the shuffle port.
fn f16_table() -> &'static [f32; 65536] {
    static T: std::sync::OnceLock<Box<[f32; 65536]>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let v: Vec<f32> = (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect();
        v.into_boxed_slice().try_into().expect("65536 entries")
    })
}

#[inline(always)]
unsafe fn half_bits(p: *const u8) -> usize {
    unsafe { std::ptr::read_unaligned(p as *const u16) as usize }
}

/// 16 bytes of nibbles → 32 bytes: low nibbles first (elements 0..16), then high nibbles.
#[inline(always)]
unsafe fn nibbles_32(p: *const u8) -> __m256i {
    unsafe {
        // Broadcast-load the 16 bytes into both lanes (a pure load), shift a copy, take the
        // low lane from the original and the high lane from the copy: no cross-lane shuffle.
        let q = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let q = _mm256_blend_epi32(q, _mm256_srli_epi16(q, 4), 0xf0);
        _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
    }
}

/// 32 bits → 32 bytes, 0x10 where bit i is set (the fifth bit of a Q5 code).
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    unsafe {
        let bits = std::ptr::read_unaligned(p as *const u32);
        let x = _mm256_set1_epi32(bits as i32);
        let spread = _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let x = _mm256_shuffle_epi8(x, spread);
        let x = _mm256_or_si256(x, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        let set = _mm256_cmpeq_epi8(x, _mm256_set1_epi64x(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// 16 bytes of nibbles plus 32 fifth bits → 32 bytes, with AVX-512BW: the bits load straight
/// into a mask register and one masked byte add sets 0x10 where a bit is set (the AVX2
/// [`fifth_bits`] needs a broadcast, a shuffle, an or, a compare and an and).
#[inline(always)]
unsafe fn q5_codes_bw(nibbles: *const u8, bits: *const u8) -> __m256i {
    unsafe {
        let low = nibbles_32(nibbles);
        let k: __mmask32 = std::ptr::read_unaligned(bits as *const u32);
        _mm256_mask_add_epi8(low, k, low, _mm256_set1_epi8(0x10))
    }
}

/// Shift each 16-bit lane right by a run-time count.
#[inline(always)]
unsafe fn srl(v: __m256i, count: i32) -> __m256i {
    unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(count)) }
}

#[inline(always)]
unsafe fn load_codes(a: &[i8]) -> __m256i {
    unsafe { _mm256_loadu_si256(a.as_ptr() as *const __m256i) }
}

/// Runs `$tile::<T>` on every weight row for the number of activation rows given (a tile width).
macro_rules! by_tokens {
    ($tile:ident $(::<$($b:ty),+>)?, $w:expr, $rb:expr, $a:expr, $out:expr) => {{
        let (w, rb, a, out): (&[u8], usize, &[_], &mut [f32]) = ($w, $rb, $a, $out);
        let nt = a.len();
        assert!(
            TILE_WIDTHS.contains(&nt) && rb > 0 && out.len() >= w.len() / rb * nt,
            "kernel tile shape"
        );
        let rows = w.chunks_exact(rb);
        match nt {
            1 => rows.zip(out.chunks_exact_mut(1)).for_each(|(r, o)| {
                o.copy_from_slice(&$tile::<$($($b,)+)? 1>(r, [a[0]]))
            }),
            2 => rows.zip(out.chunks_exact_mut(2)).for_each(|(r, o)| {
                o.copy_from_slice(&$tile::<$($($b,)+)? 2>(r, [a[0], a[1]]))
            }),
            3 => rows.zip(out.chunks_exact_mut(3)).for_each(|(r, o)| {
                o.copy_from_slice(&$tile::<$($($b,)+)? 3>(r, [a[0], a[1], a[2]]))
            }),
            4 => rows.zip(out.chunks_exact_mut(4)).for_each(|(r, o)| {
                o.copy_from_slice(&$tile::<$($($b,)+)? 4>(r, [a[0], a[1], a[2], a[3]]))
            }),
            8 => rows.zip(out.chunks_exact_mut(8)).for_each(|(r, o)| {
                o.copy_from_slice(&$tile::<$($($b,)+)? 8>(r, std::array::from_fn(|i| a[i])))
            }),
            _ => unreachable!("tile widths are checked by DotFn::dot_rows"),
        }
    }};
}

/// Kernel entry points over 256-block activations, compiled for `$features`: each `$name` runs
/// `$tile::<$c.., T>` (a function of one weight row and a tile of `T` activation rows) on
/// every weight row, for the tile width given.
macro_rules! k_entries {
    ($features:literal; $($(#[$doc:meta])* $name:ident = $tile:ident::<$($c:tt),+>;)*) => {$(
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $name(
            w: &[u8],
            row_bytes: usize,
            a: &[&[crate::act::BlockQ8K]],
            out: &mut [f32],
        ) {
            #[inline(always)]
            unsafe fn tile<const T: usize>(
                w: &[u8],
                a: [&[crate::act::BlockQ8K]; T],
            ) -> [f32; T] {
                unsafe { $tile::<$($c,)+ T>(w, a) }
            }
            unsafe { by_tokens!(tile, w, row_bytes, a, out) }
        }
    )*};
}

/// llama.cpp's summation orders for the 256-block formats (a kernel's `ORDER` parameter; see
/// `reference`).
mod korder {
    /// A repacked matrix's gemv (Q4_K, Q2_K): S and M per super-block in two chains,
    /// `acc − mins`.
    pub const GEMV: u8 = 0;
    /// A repacked matrix's gemm (rows in groups of 4): the same per 64 weights (Q4_K) or 128
    /// (Q2_K).
    pub const GEMM: u8 = 1;
    /// ggml's `vec_dot`: eight integer lanes, one FMA per lane by `d_y·d`; the format's mins
    /// as its `vec_dot` adds them.
    pub const VEC_DOT: u8 = 2;
    /// The tiled matmul: `r = S·d − dmin·M` (fused), `acc = fma(r, d_y, acc)`.
    pub const TILED: u8 = 3;
}

/// 32 values looked up by the 32 nibbles of the 16 bytes at `p` in the 16-byte table `values`:
/// the low nibbles first, then the high ones (IQ4_NL's and IQ4_XS's index layout).
#[inline(always)]
unsafe fn nibble_lookup(p: *const u8, values: __m128i) -> __m256i {
    unsafe {
        let m4 = _mm_set1_epi8(0x0f);
        let raw = _mm_loadu_si128(p as *const __m128i);
        let low = _mm_shuffle_epi8(values, _mm_and_si128(raw, m4));
        let high = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        _mm256_set_m128i(high, low)
    }
}

/// How a 32-weight block format's codes map to weights.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offset {
    /// w = d·q with signed codes (Q8_0).
    Signed,
    /// w = d·(q − k) with unsigned codes (Q4_0: 8, Q5_0: 16).
    Centre(i8),
    /// w = d·q + m, m stored as f16 after d (Q4_1, Q5_1).
    Stored,
}

/// A 32-weight block format: where its scale is and how to get its codes.
trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// How codes become weights.
    const OFFSET: Offset;
    /// Whether the kernel sums in ggml's order (`reference::dot_q8_0`, `dot_q4_1`) unless
    /// `SMELT_FAST_SUMS` is set (`crate::ggml_sums`): every format here says so.
    const GGML_ORDER: bool = false;
    /// In ggml's order, one float chain per output (`reference::dot_q4_0`: llama.cpp's x86
    /// build repacks Q4_0 and sums it so) instead of eight lanes (the `vec_dot` form).
    const ONE_CHAIN: bool = false;
    /// In ggml's order, eight lanes in two sets (even and odd blocks) added before the final
    /// sum, and an odd last block's dot added after it unfused (`reference::dot_iq4_nl_vec`).
    const TWO_CHAINS: bool = false;
    /// The 32 codes (unsigned bytes, or signed for [`Offset::Signed`]).
    unsafe fn codes(p: *const u8) -> __m256i;
    /// The same codes where AVX-512BW may be used.
    #[inline(always)]
    unsafe fn codes_bw(p: *const u8) -> __m256i {
        unsafe { Self::codes(p) }
    }
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;

impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: Offset = Offset::Centre(8);
    const GGML_ORDER: bool = true;
    const ONE_CHAIN: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { nibbles_32(p.add(2)) }
    }
}

/// Q4_0 in a matrix llama.cpp does not repack: eight lanes (`reference::dot_q4_0_lanes`).
struct Q4_0Lanes;

impl Block32 for Q4_0Lanes {
    const BYTES: usize = 18;
    const OFFSET: Offset = Offset::Centre(8);
    const GGML_ORDER: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { Q4_0::codes(p) }
    }
}

/// IQ4_NL's 32 table values (signed) from the 16 index bytes at `p`.
#[inline(always)]
unsafe fn iq4_nl_values(p: *const u8) -> __m256i {
    unsafe {
        let table = smelt_gguf::blocks::iq4_nl::KVALUES;
        nibble_lookup(p, _mm_loadu_si128(table.as_ptr() as *const __m128i))
    }
}

/// IQ4_NL in a matrix llama.cpp repacks: one chain (`reference::dot_iq4_nl`).
struct Iq4Nl;
/// IQ4_NL as llamafile's sgemm sums it: eight lanes (`reference::dot_iq4_nl_lanes`).
struct Iq4NlLanes;
/// IQ4_NL as `vec_dot` sums it: two lane sets (`reference::dot_iq4_nl_vec`).
struct Iq4NlVec;

macro_rules! iq4_nl_block {
    ($t:ty, $one:literal, $two:literal) => {
        impl Block32 for $t {
            const BYTES: usize = 18;
            const OFFSET: Offset = Offset::Signed;
            const GGML_ORDER: bool = true;
            const ONE_CHAIN: bool = $one;
            const TWO_CHAINS: bool = $two;
            #[inline(always)]
            unsafe fn codes(p: *const u8) -> __m256i {
                unsafe { iq4_nl_values(p.add(2)) }
            }
        }
    };
}

iq4_nl_block!(Iq4Nl, true, false);
iq4_nl_block!(Iq4NlLanes, false, false);
iq4_nl_block!(Iq4NlVec, false, true);

impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: Offset = Offset::Stored;
    const GGML_ORDER: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { nibbles_32(p.add(4)) }
    }
}

impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: Offset = Offset::Centre(16);
    const GGML_ORDER: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { _mm256_or_si256(nibbles_32(p.add(6)), fifth_bits(p.add(2))) }
    }
    #[inline(always)]
    unsafe fn codes_bw(p: *const u8) -> __m256i {
        unsafe { q5_codes_bw(p.add(6), p.add(2)) }
    }
}

impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: Offset = Offset::Stored;
    const GGML_ORDER: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { _mm256_or_si256(nibbles_32(p.add(8)), fifth_bits(p.add(4))) }
    }
    #[inline(always)]
    unsafe fn codes_bw(p: *const u8) -> __m256i {
        unsafe { q5_codes_bw(p.add(8), p.add(4)) }
    }
}

impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: Offset = Offset::Signed;
    const GGML_ORDER: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m256i {
        unsafe { _mm256_loadu_si256(p.add(2) as *const __m256i) }
    }
}

/// Block `i` of the row against block `i` of every token, into one accumulator set; `off`
/// collects the float offset terms (stored offsets m·s; centred codes −k·d·s for one token).
///
/// With wide (VNNI) sums, signed Q8_0 codes c meet the activations as unsigned bytes y + 128
/// (the codes with their top bit flipped): Σ (y + 128)·c = Σ y·c + 128·Σ c, and the second term belongs
/// to the weight block alone, so it is computed once and starts every token's sum; no per-token
/// sign fix-up remains.
#[inline(always)]
unsafe fn step32<I: Isa, B: Block32, const T: usize, const GGML: bool>(
    w: &[u8],
    a: &[&[BlockQ8x32]; T],
    lut: &[f32; 65536],
    i: usize,
    acc: &mut [__m256; T],
    off: &mut [f32; T],
) {
    unsafe {
        let p = w.as_ptr().add(i * B::BYTES);
        let q = if I::BW { B::codes_bw(p) } else { B::codes(p) };
        let dw = _mm256_broadcast_ss(lut.get_unchecked(half_bits(p)));
        // Signed codes with wide sums take the bias; centred codes keep their offset as a float
        // term (cheaper for one token, and the same arithmetic for every tile width, which
        // keeps batched results bit-identical to single-token ones).
        let biased = B::OFFSET == Offset::Signed && I::WIDE;
        if biased {
            let c = q;
            let zero = _mm256_setzero_si256();
            let start = _mm256_sub_epi32(zero, I::dot_acc(zero, _mm256_set1_epi8(-128), c));
            for t in 0..T {
                let blk = a[t].get_unchecked(i);
                let yu = _mm256_xor_si256(load_codes(&blk.qs), _mm256_set1_epi8(-128));
                let dot = I::dot_acc(start, yu, c);
                if GGML && B::ONE_CHAIN {
                    let d = *lut.get_unchecked(half_bits(p)) * blk.d;
                    off[t] = (hsum_i32(dot) as f32).mul_add(d, off[t]);
                    continue;
                }
                let s = _mm256_cvtepi32_ps(dot);
                if GGML {
                    // ggml's order (`reference::dot_q8_0`): d_w · d_y, then one FMA per lane.
                    let d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&blk.d));
                    acc[t] = _mm256_fmadd_ps(d, s, acc[t]);
                } else {
                    let sy = _mm256_mul_ps(s, _mm256_broadcast_ss(&blk.d));
                    acc[t] = _mm256_fmadd_ps(sy, dw, acc[t]);
                }
            }
            return;
        }
        // maddubs wants unsigned × signed: for signed codes move their sign onto y.
        let u = if B::OFFSET == Offset::Signed {
            _mm256_sign_epi8(q, q)
        } else {
            q
        };
        for t in 0..T {
            let blk = a[t].get_unchecked(i);
            let y = load_codes(&blk.qs);
            let y = if B::OFFSET == Offset::Signed {
                _mm256_sign_epi8(y, q)
            } else {
                y
            };
            let mut dot = I::dot_u8_i8(u, y);
            if GGML && let Offset::Centre(k) = B::OFFSET {
                // Each lane's exact dot of the centred codes: Σ q·y − k·Σ y over its four, with
                // −k·Σ y = bias4 · k/128 (exact: bias4 is −128·Σ y).
                let bias = _mm256_loadu_si256(blk.bias4.as_ptr() as *const __m256i);
                let shift = _mm_cvtsi32_si128((128 / k as i32).trailing_zeros() as i32);
                dot = _mm256_add_epi32(dot, _mm256_sra_epi32(bias, shift));
            }
            if GGML && B::ONE_CHAIN {
                // The block's exact integer dot, then one FMA by d_w · d_y into the chain.
                let isum = hsum_i32(dot);
                let d = *lut.get_unchecked(half_bits(p)) * blk.d;
                off[t] = (isum as f32).mul_add(d, off[t]);
                continue;
            }
            let s = _mm256_cvtepi32_ps(dot);
            if GGML {
                let d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&blk.d));
                acc[t] = _mm256_fmadd_ps(d, s, acc[t]);
                if B::OFFSET == Offset::Stored {
                    off[t] = lut
                        .get_unchecked(half_bits(p.add(2)))
                        .mul_add(blk.s_f16, off[t]);
                }
                continue;
            }
            let sy = _mm256_mul_ps(s, _mm256_broadcast_ss(&blk.d));
            acc[t] = _mm256_fmadd_ps(sy, dw, acc[t]);
            match B::OFFSET {
                Offset::Stored => off[t] += *lut.get_unchecked(half_bits(p.add(2))) * blk.s_f16,
                // Σ (q − k)·y·d_y = Σ q·y·d_y − k·d_y·Σ y, with blk.s = d_y·Σ y.
                Offset::Centre(k) => off[t] -= k as f32 * *lut.get_unchecked(half_bits(p)) * blk.s,
                Offset::Signed => {}
            }
        }
    }
}

#[inline(always)]
unsafe fn tile32<I: Isa, B: Block32, const T: usize>(w: &[u8], a: [&[BlockQ8x32]; T]) -> [f32; T] {
    unsafe {
        let nb = w.len() / B::BYTES;
        for row in &a {
            assert!(row.len() >= nb, "activation row shorter than the weights");
        }
        let lut = f16_table();
        let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
        let (mut off0, mut off1) = ([0f32; T], [0f32; T]);
        if B::GGML_ORDER && crate::ggml_sums() && B::TWO_CHAINS {
            // Even blocks into one lane set, odd into the other; an odd last block alone.
            let pairs = nb / 2 * 2;
            for i in 0..pairs {
                let acc = if i % 2 == 0 { &mut acc0 } else { &mut acc1 };
                step32::<I, B, T, true>(w, &a, lut, i, acc, &mut off0);
            }
            if pairs < nb {
                let p = w.as_ptr().add(pairs * B::BYTES);
                let q = B::codes(p);
                for t in 0..T {
                    let blk = a[t].get_unchecked(pairs);
                    let y = _mm256_sign_epi8(load_codes(&blk.qs), q);
                    let isum = hsum_i32(I::dot_u8_i8(_mm256_sign_epi8(q, q), y));
                    off1[t] = *lut.get_unchecked(half_bits(p)) * blk.d * isum as f32;
                }
            }
            return std::array::from_fn(|t| hsum(_mm256_add_ps(acc0[t], acc1[t])) + off1[t]);
        }
        if B::GGML_ORDER && crate::ggml_sums() {
            // One chain over the blocks, as ggml sums it; the mins' chain added last.
            for i in 0..nb {
                step32::<I, B, T, true>(w, &a, lut, i, &mut acc0, &mut off0);
            }
            if B::ONE_CHAIN {
                return off0;
            }
            return std::array::from_fn(|t| hsum(acc0[t]) + off0[t]);
        }
        let mut i = 0;
        while i + 2 <= nb {
            // Two accumulator sets for every tile width, so a token's sum is added in the same
            // order whatever the batch: batched and one-at-a-time logits are bit-identical.
            step32::<I, B, T, false>(w, &a, lut, i, &mut acc0, &mut off0);
            step32::<I, B, T, false>(w, &a, lut, i + 1, &mut acc1, &mut off1);
            i += 2;
        }
        if i < nb {
            step32::<I, B, T, false>(w, &a, lut, i, &mut acc0, &mut off0);
        }
        std::array::from_fn(|t| hsum(_mm256_add_ps(acc0[t], acc1[t])) + (off0[t] + off1[t]))
    }
}

macro_rules! block32_kernel {
    ($avx2:ident, $vnni:ident, $vnni512:ident, $b:ty, $what:literal) => {
        #[doc = concat!($what, " × a tile of 32-block rows (AVX2).")]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $avx2(
            w: &[u8],
            row_bytes: usize,
            a: &[&[BlockQ8x32]],
            out: &mut [f32],
        ) {
            unsafe { by_tokens!(tile32::<Avx2, $b>, w, row_bytes, a, out) }
        }

        #[doc = concat!($what, " × a tile of 32-block rows (AVX-VNNI).")]
        #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
        pub(crate) unsafe fn $vnni(
            w: &[u8],
            row_bytes: usize,
            a: &[&[BlockQ8x32]],
            out: &mut [f32],
        ) {
            unsafe { by_tokens!(tile32::<Vnni, $b>, w, row_bytes, a, out) }
        }

        #[doc = concat!($what, " × a tile of 32-block rows (AVX-512 VNNI; 8-token tiles two tokens per register).")]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        pub(crate) unsafe fn $vnni512(
            w: &[u8],
            row_bytes: usize,
            a: &[&[BlockQ8x32]],
            out: &mut [f32],
        ) {
            // Formats in ggml's order skip the paired kernel, which sums otherwise.
            let ggml = <$b as Block32>::GGML_ORDER && crate::ggml_sums();
            if a.len() == 8 && crate::paired_tiles() && !ggml {
                unsafe { x8::rows_x8::<$b>(w, row_bytes, a, out) }
            } else {
                unsafe { by_tokens!(tile32::<Vnni512, $b>, w, row_bytes, a, out) }
            }
        }
    };
    ($avx2:ident, $vnni:ident, $vnni512:ident, $paired:ident, $b:ty, $what:literal) => {
        block32_kernel!($avx2, $vnni, $vnni512, $b, $what);

        #[doc = concat!($what, " × 8 tokens of pre-paired blocks (AVX-512 VNNI).")]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        pub(crate) unsafe fn $paired(
            w: &[u8],
            row_bytes: usize,
            pack: &[crate::act::PairedQ8x32],
            out: &mut [f32],
        ) {
            unsafe { x8::rows_paired::<$b>(w, row_bytes, pack, out) }
        }
    };
}

block32_kernel!(
    dot_q4_0,
    dot_q4_0_vnni,
    dot_q4_0_vnni512,
    dot_q4_0_paired,
    Q4_0,
    "Q4_0"
);
block32_kernel!(
    dot_q4_0_lanes,
    dot_q4_0_lanes_vnni,
    dot_q4_0_lanes_vnni512,
    Q4_0Lanes,
    "Q4_0 (not repacked)"
);
block32_kernel!(
    dot_q4_1,
    dot_q4_1_vnni,
    dot_q4_1_vnni512,
    dot_q4_1_paired,
    Q4_1,
    "Q4_1"
);
block32_kernel!(
    dot_q5_0,
    dot_q5_0_vnni,
    dot_q5_0_vnni512,
    dot_q5_0_paired,
    Q5_0,
    "Q5_0"
);
block32_kernel!(
    dot_q5_1,
    dot_q5_1_vnni,
    dot_q5_1_vnni512,
    dot_q5_1_paired,
    Q5_1,
    "Q5_1"
);
block32_kernel!(
    dot_q8_0,
    dot_q8_0_vnni,
    dot_q8_0_vnni512,
    dot_q8_0_paired,
    Q8_0,
    "Q8_0"
);

block32_kernel!(
    dot_iq4_nl,
    dot_iq4_nl_vnni,
    dot_iq4_nl_vnni512,
    Iq4Nl,
    "IQ4_NL (repacked by llama.cpp)"
);
block32_kernel!(
    dot_iq4_nl_lanes,
    dot_iq4_nl_lanes_vnni,
    dot_iq4_nl_lanes_vnni512,
    Iq4NlLanes,
    "IQ4_NL (not repacked, batches)"
);
block32_kernel!(
    dot_iq4_nl_vec,
    dot_iq4_nl_vec_vnni,
    dot_iq4_nl_vec_vnni512,
    Iq4NlVec,
    "IQ4_NL (not repacked, one token)"
);

#[path = "avx2_float.rs"]
mod float;
pub(crate) use float::{dot_f16, dot_f32, dot_f32_chain};

#[path = "avx2_klanes.rs"]
mod klanes;
pub(crate) use klanes::{
    dot_iq4_xs, dot_iq4_xs_tiled, dot_q2_k, dot_q2_k_gemm, dot_q2_k_gemv, dot_q2_k_tiled, dot_q3_k,
    dot_q3_k_tiled,
};

#[path = "avx512_ktiled.rs"]
mod ktiled;
pub(crate) use ktiled::{
    dot_iq4_xs_tiled_vnni512, dot_q2_k_tiled_vnni512, dot_q3_k_tiled_vnni512,
    dot_q4_k_tiled_vnni512, dot_q5_k_tiled_vnni512, dot_q6_k_tiled_vnni512,
};

#[path = "avx512_klanes.rs"]
mod klanes512;
pub(crate) use klanes512::{
    dot_iq4_xs_vnni512, dot_q3_k_vnni512, dot_q4_k_vnni512, dot_q5_k_vnni512, dot_q6_k_vnni512,
};

#[path = "avx2_kquant.rs"]
mod kquant;
pub(crate) use kquant::{
    dot_q4_k, dot_q4_k_tiled, dot_q4_k_vec, dot_q4_k_x4, dot_q5_k, dot_q5_k_tiled, dot_q6_k,
    dot_q6_k_tiled,
};
