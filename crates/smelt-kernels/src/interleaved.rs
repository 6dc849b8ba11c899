//! Row-interleaved 32-block weights for AVX-512 VNNI: the layout ggml calls "repacked".
//!
//! The row-at-a-time kernels (`avx2.rs`) put one row's 32 codes in a register, so every
//! (row, token, block) costs a dot, a convert, a multiply, an FMA and, at the end, a horizontal
//! sum. Here 16 rows are interleaved four bytes at a time, so one 512-bit register holds
//! elements 4k..4k+4 of 16 rows and `vpdpbusd` against the token's four activation bytes
//! (broadcast straight from memory) adds them into one i32 lane *per row*. A block's exact
//! integer dot product for 16 rows is 8 such instructions; the float work (convert, scale,
//! accumulate) is then done once per 16 rows, and no horizontal sum remains. The codes are
//! decoded once per block and reused for every token of the tile.
//!
//! The integer sums are exact, offsets included (Q4_0's −8 and the +128 bias of Q8_0's and
//! Q5_0's codes start the sum as `−k·Σy`), as ggml computes `Σ (q − k)·y`; Q4_1/Q5_1 add
//! `m · s` after, as ggml does with `block_q8_1`. Each token's lanes see the same operations whatever the tile
//! width, so a token's result in a batch is bit-identical to its result alone.
//!
//! Layout of a group of 16 rows (`16 · row_bytes` bytes, the same size as the rows), block by
//! block, each block `16 · BYTES` bytes:
//! - `d`: (16,) f16 scales; Q4_1/Q5_1 then (16,) f16 mins;
//! - Q5_0/Q5_1: (8,) u64 masks, mask j bit 4r + i = the fifth bit of row r's element 4j + i;
//! - codes: (4, 16, 4) bytes for nibble formats: chunk k, row r holds the row's code bytes
//!   4k..4k+4 (low nibbles elements 4k.., high nibbles elements 16 + 4k..); (8, 16, 4) for Q8_0,
//!   elements 4k.. with the sign bit flipped (c + 128, unsigned). Q5_0's codes are decoded as
//!   `(c − 16) + 128` for the same reason: Q8_0's −128·Σy per four codes then starts their
//!   sums as well, which ggml's eight-lane order needs per four codes (`BlockQ8x32::bias4`).

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::WeightType;
use crate::act::BlockQ8x32;

/// Rows per interleaved group: one 512-bit register holds one i32 lane per row.
pub const GROUP: usize = 16;

/// How many blocks ahead the kernels prefetch their weights.
const PREFETCH_BLOCKS: usize = 4;

/// One cache line: the interleaved copy is allocated in these, so that the 64-byte code
/// loads of formats whose group blocks are whole lines (Q4_1, Q5_1) never straddle two.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// A 64-byte-aligned byte buffer.
pub(crate) struct Lines {
    /// (len / 64 rounded up,) lines.
    lines: Vec<Line>,
    len: usize,
}

impl Lines {
    pub(crate) fn zeroed(len: usize) -> Self {
        Self {
            lines: vec![Line([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialized bytes, and u8 has no alignment.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// `rows` rows of `row_bytes` standard ggml blocks of `F` → the interleaved layout (module
/// docs). `rows` must be a multiple of [`GROUP`].
fn repack<F: Format>(src: &[u8], rows: usize, row_bytes: usize) -> Lines {
    assert!(rows.is_multiple_of(GROUP) && src.len() == rows * row_bytes);
    let bb = F::BYTES;
    // The block's f16 fields (d, and m for the offset formats) come before its other bytes.
    let head = if F::MIN { 4 } else { 2 };
    let nb = row_bytes / bb;
    let mut buf = Lines::zeroed(src.len());
    let out = buf.bytes_mut();
    let group_bytes = GROUP * row_bytes;
    out.par_chunks_mut(group_bytes)
        .enumerate()
        .for_each(|(g, out)| {
            let rows_of = |r: usize| &src[(g * GROUP + r) * row_bytes..][..row_bytes];
            for b in 0..nb {
                let dst = &mut out[b * GROUP * bb..][..GROUP * bb];
                let mut at = 0;
                // Scales, then mins: (16,) f16 each.
                for field in 0..head / 2 {
                    for r in 0..GROUP {
                        dst[at..at + 2].copy_from_slice(&rows_of(r)[b * bb + 2 * field..][..2]);
                        at += 2;
                    }
                }
                if F::FIFTH {
                    for j in 0..8 {
                        let mut mask = 0u64;
                        for r in 0..GROUP {
                            let q = &rows_of(r)[b * bb + head..][..4];
                            let qh = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
                            mask |= (((qh >> (4 * j)) & 0xf) as u64) << (4 * r);
                        }
                        dst[at..at + 8].copy_from_slice(&mask.to_le_bytes());
                        at += 8;
                    }
                }
                let codes_at = head + if F::FIFTH { 4 } else { 0 };
                let chunks = if F::NIBBLES { 4 } else { 8 };
                for k in 0..chunks {
                    for r in 0..GROUP {
                        let q = &rows_of(r)[b * bb + codes_at + 4 * k..][..4];
                        for (o, &c) in dst[at..at + 4].iter_mut().zip(q) {
                            *o = if F::NIBBLES { c } else { c ^ 0x80 };
                        }
                        at += 4;
                    }
                }
                debug_assert_eq!(at, GROUP * bb);
            }
        });
    buf
}

/// A 32-block format as the interleaved kernel reads it.
trait Format {
    /// Bytes per block of one row.
    const BYTES: usize;
    /// Whether (16,) f16 mins follow the scales (w = d·q + m).
    const MIN: bool;
    /// Whether (8,) fifth-bit masks precede the nibbles.
    const FIFTH: bool;
    /// Nibbles (4 chunks of 64 bytes, two codes a byte) or bytes (8 chunks).
    const NIBBLES: bool;
    /// The integer sum starts at `−OFFSET · Σy` (the codes' centre, or the +128 bias of Q8_0's
    /// and Q5_0's decoded codes).
    const OFFSET: i32;
    /// Q5_0: the 5-bit codes c are decoded as `c + 112` (centred at 16, then biased by 128).
    const RECENTRED: bool = false;
    /// Summed in ggml's order: by [`group_ggml`] (Q8_0, Q5_0, Q4_1, Q5_1), or by [`group`]'s
    /// exact form for [`Format::ONE_CHAIN`] (Q4_0).
    const GGML_ORDER: bool = false;
    /// ggml's order is one float chain per output (Q4_0 and IQ4_NL, which llama.cpp's x86
    /// build repacks and sums so: `reference::dot_q4_0`, `dot_iq4_nl`), not eight lanes.
    const ONE_CHAIN: bool = false;
    /// IQ4_NL: the nibbles index its table; the codes are the table's values + 128.
    const TABLE: bool = false;
}

macro_rules! format {
    ($name:ident, $bytes:literal, min: $min:literal, fifth: $fifth:literal, nibbles: $nib:literal, offset: $off:literal $(, ggml_order: $ggml:literal)? $(, recentred: $rc:literal)? $(, one_chain: $oc:literal)? $(, table: $tb:literal)?) => {
        struct $name;
        impl Format for $name {
            const BYTES: usize = $bytes;
            const MIN: bool = $min;
            const FIFTH: bool = $fifth;
            const NIBBLES: bool = $nib;
            const OFFSET: i32 = $off;
            $(const GGML_ORDER: bool = $ggml;)?
            $(const RECENTRED: bool = $rc;)?
            $(const ONE_CHAIN: bool = $oc;)?
            $(const TABLE: bool = $tb;)?
        }
    };
}

format!(Q4_0, 18, min: false, fifth: false, nibbles: true, offset: 8, ggml_order: true, one_chain: true);
format!(Q5_0, 22, min: false, fifth: true, nibbles: true, offset: 128, ggml_order: true, recentred: true);
format!(Q4_1, 20, min: true, fifth: false, nibbles: true, offset: 0, ggml_order: true);
format!(Q5_1, 24, min: true, fifth: true, nibbles: true, offset: 0, ggml_order: true);
format!(Q8_0, 34, min: false, fifth: false, nibbles: false, offset: 128, ggml_order: true);
format!(Iq4Nl, 18, min: false, fifth: false, nibbles: true, offset: 128, ggml_order: true, one_chain: true, table: true);

/// IQ4_NL's table + 128 (unsigned) in each 128-bit lane, for `shuffle_epi8` by nibble.
#[inline(always)]
unsafe fn iq4_nl_table() -> __m512i {
    let biased = smelt_gguf::blocks::iq4_nl::KVALUES_U8;
    unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(biased.as_ptr() as *const __m128i)) }
}

/// The four activation bytes 4j..4j+4 of a block in every i32 lane.
#[inline(always)]
unsafe fn y4(blk: &BlockQ8x32, j: usize) -> __m512i {
    unsafe {
        _mm512_set1_epi32(std::ptr::read_unaligned(
            blk.qs.as_ptr().add(4 * j) as *const i32
        ))
    }
}

/// Block `b` of a group (`nb` blocks): its (16,) scales, (16,) mins (zero without), and its
/// (8,) decoded code registers, register j holding elements 4j..4j+4 of the 16 rows. Prefetches
/// the block PREFETCH_BLOCKS ahead into L1, line by line (the rows of a group are one
/// contiguous stream; this runs ahead of the hardware prefetcher's distance).
#[inline(always)]
unsafe fn block<F: Format>(w: &[u8], b: usize, nb: usize) -> (__m512, __m512, [__m512i; 8]) {
    unsafe {
        let block_bytes = GROUP * F::BYTES;
        let p = w.as_ptr().add(b * block_bytes);
        if b + PREFETCH_BLOCKS < nb {
            let ahead = p.add(PREFETCH_BLOCKS * block_bytes);
            for line in (0..block_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.add(line) as *const i8);
            }
        }
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
        let mut at = if F::MIN { 64 } else { 32 };
        let masks = p.add(at) as *const u64;
        if F::FIFTH {
            at += 64;
        }
        let mut codes = [_mm512_setzero_si512(); 8];
        if F::NIBBLES {
            let low4 = _mm512_set1_epi8(0x0f);
            for k in 0..4 {
                let v = _mm512_loadu_si512(p.add(at + 64 * k) as *const _);
                codes[k] = v;
                codes[4 + k] = _mm512_srli_epi16(v, 4);
            }
            for (j, c) in codes.iter_mut().enumerate() {
                if F::RECENTRED {
                    // c + 112 = nibble | 0x70, or nibble | 0x80 where the fifth bit is set.
                    let m: __mmask64 = std::ptr::read_unaligned(masks.add(j));
                    let top =
                        _mm512_mask_blend_epi8(m, _mm512_set1_epi8(0x70), _mm512_set1_epi8(-128));
                    // (c & 0x0f) | top.
                    *c = _mm512_ternarylogic_epi32::<0xEA>(*c, low4, top);
                } else if F::FIFTH {
                    let m: __mmask64 = std::ptr::read_unaligned(masks.add(j));
                    let nib = _mm512_and_si512(*c, low4);
                    *c = _mm512_mask_add_epi8(nib, m, nib, _mm512_set1_epi8(0x10));
                } else if F::TABLE {
                    *c = _mm512_shuffle_epi8(iq4_nl_table(), _mm512_and_si512(*c, low4));
                } else {
                    *c = _mm512_and_si512(*c, low4);
                }
            }
        } else {
            for (k, c) in codes.iter_mut().enumerate() {
                *c = _mm512_loadu_si512(p.add(at + 64 * k) as *const _);
            }
        }
        let mins = if F::MIN {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i))
        } else {
            _mm512_setzero_ps()
        };
        (dw, mins, codes)
    }
}

/// One group of 16 rows against `T` tokens; token t's 16 results go to `out + t · ld`. With
/// `EXACT` (Q4_0 in ggml's order) each block's exact integer dot goes into the chain with one
/// fused multiply-add by `d_w · d_y`, as llama.cpp's repacked Q4_0 kernels add it; otherwise by
/// `d_w` after a product with `d_y`.
#[inline(always)]
unsafe fn group<F: Format, const T: usize, const EXACT: bool>(
    w: &[u8],
    a: &[&[BlockQ8x32]; T],
    out: *mut f32,
    ld: usize,
) {
    unsafe {
        let block_bytes = GROUP * F::BYTES;
        let nb = w.len() / block_bytes;
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let (dw, mins, codes) = block::<F>(w, b, nb);
            for t in 0..T {
                let blk = a[t].get_unchecked(b);
                let start = if F::OFFSET != 0 {
                    _mm512_set1_epi32(-F::OFFSET * blk.sum)
                } else {
                    _mm512_setzero_si512()
                };
                // Two chains of four, so the dot latency overlaps.
                let mut lo = _mm512_dpbusd_epi32(start, codes[0], y4(blk, 0));
                let mut hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[4], y4(blk, 4));
                for j in 1..4 {
                    lo = _mm512_dpbusd_epi32(lo, codes[j], y4(blk, j));
                    hi = _mm512_dpbusd_epi32(hi, codes[4 + j], y4(blk, 4 + j));
                }
                let s = _mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi));
                acc[t] = if EXACT {
                    _mm512_fmadd_ps(s, _mm512_mul_ps(dw, _mm512_set1_ps(blk.d)), acc[t])
                } else {
                    let sy = _mm512_mul_ps(s, _mm512_set1_ps(blk.d));
                    _mm512_fmadd_ps(sy, dw, acc[t])
                };
                if F::MIN {
                    acc[t] = _mm512_fmadd_ps(mins, _mm512_set1_ps(blk.s_f16), acc[t]);
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(t * ld), *acc);
        }
    }
}

/// A group in ggml's summation order (Q8_0, Q5_0, Q4_1, Q5_1), so that its products equal
/// llama.cpp's bit for bit: per row and token, eight float partial sums, lane j taking the exact
/// integer dot of codes 4j..4j+4 of every block, scaled by `d_w · d_y` (one f32 product) with a
/// fused multiply-add, block after block; then the tree `((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7))`,
/// plus, for the formats with mins, their own chain of `m · s_y` fused multiply-adds. That is
/// what ggml's AVX2 `vec_dot` routines compute, and for Q8_0 also llamafile's `tinyBLAS_Q0_AVX`
/// (prompts). Eight accumulators per token limit a call to two tokens.
#[inline(always)]
unsafe fn group_ggml<F: Format, const T: usize>(
    w: &[u8],
    a: &[&[BlockQ8x32]; T],
    out: *mut f32,
    ld: usize,
) {
    // `bias4` is −128·Σ y per four codes: the only offset this form takes (Q8_0's and Q5_0's
    // biased codes). One-chain formats (Q4_0) are compiled here but `rows` never sends them.
    const { assert!(!F::GGML_ORDER || F::ONE_CHAIN || F::OFFSET == 0 || F::OFFSET == 128) };
    unsafe {
        let nb = w.len() / (GROUP * F::BYTES);
        // (T, 8) lane accumulators and (T,) mins chains, 16 rows each.
        let mut acc = [[_mm512_setzero_ps(); 8]; T];
        let mut mins_acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let (dw, mins, codes) = block::<F>(w, b, nb);
            for t in 0..T {
                let blk = a[t].get_unchecked(b);
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(blk.d));
                for (j, code) in codes.iter().enumerate() {
                    // Σ (c + 128)·y − 128·Σ y over codes 4j..4j+4: the exact dot of Q8_0's
                    // signed codes, or of Q5_0's centred ones.
                    let start = if F::OFFSET != 0 {
                        _mm512_set1_epi32(*blk.bias4.get_unchecked(j))
                    } else {
                        _mm512_setzero_si512()
                    };
                    let s = _mm512_dpbusd_epi32(start, *code, y4(blk, j));
                    acc[t][j] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc[t][j]);
                }
                if F::MIN {
                    mins_acc[t] = _mm512_fmadd_ps(mins, _mm512_set1_ps(blk.s_f16), mins_acc[t]);
                }
            }
        }
        for (t, s) in acc.iter().enumerate() {
            let lo = _mm512_add_ps(_mm512_add_ps(s[0], s[4]), _mm512_add_ps(s[2], s[6]));
            let hi = _mm512_add_ps(_mm512_add_ps(s[1], s[5]), _mm512_add_ps(s[3], s[7]));
            let mut r = _mm512_add_ps(lo, hi);
            if F::MIN {
                r = _mm512_add_ps(r, mins_acc[t]);
            }
            _mm512_storeu_ps(out.add(t * ld), r);
        }
    }
}

/// Every group of `w` (whole groups of 16 rows of `row_bytes`) against the tile `a`; token
/// t's result for row r goes to `out + t · ld + r`, so the products land in their final
/// (tokens, rows) place with 64-byte stores.
///
/// # Safety
/// The CPU features of the entry points; `out` valid for writes at `t · ld + r` for every
/// token t of the tile and row r of `w`.
#[inline(always)]
unsafe fn rows<F: Format>(
    w: &[u8],
    row_bytes: usize,
    a: &[&[BlockQ8x32]],
    out: *mut f32,
    ld: usize,
) {
    let nt = a.len();
    let group_bytes = GROUP * row_bytes;
    assert!(
        crate::TILE_WIDTHS.contains(&nt)
            && row_bytes > 0
            && w.len().is_multiple_of(group_bytes)
            && ld >= w.len() / row_bytes
            && a.iter().all(|r| r.len() >= row_bytes / F::BYTES),
        "interleaved kernel tile shape"
    );
    let exact = F::GGML_ORDER && crate::ggml_sums();
    if exact && !F::ONE_CHAIN {
        for (g, gw) in w.chunks_exact(group_bytes).enumerate() {
            // Pairs of tokens, then a last one; the group's weights stay in L1 between them.
            let mut t = 0;
            while t < nt {
                let o = out.wrapping_add(t * ld + g * GROUP);
                // SAFETY: as for `tiles!` below.
                unsafe {
                    if t + 2 <= nt {
                        group_ggml::<F, 2>(gw, &[a[t], a[t + 1]], o, ld);
                        t += 2;
                    } else {
                        group_ggml::<F, 1>(gw, &[a[t]], o, ld);
                        t += 1;
                    }
                }
            }
        }
        return;
    }
    macro_rules! tiles {
        ($t:literal) => {
            for (g, gw) in w.chunks_exact(group_bytes).enumerate() {
                let tile: [&[BlockQ8x32]; $t] = std::array::from_fn(|i| a[i]);
                let o = out.wrapping_add(g * GROUP);
                // SAFETY: the callers' target features; `gw` is one whole group, every
                // activation row covers its blocks (checked above), and the caller vouches
                // for `out`.
                unsafe {
                    if exact {
                        group::<F, $t, true>(gw, &tile, o, ld)
                    } else {
                        group::<F, $t, false>(gw, &tile, o, ld)
                    }
                };
            }
        };
    }
    match nt {
        1 => tiles!(1),
        2 => tiles!(2),
        3 => tiles!(3),
        4 => tiles!(4),
        8 => tiles!(8),
        _ => unreachable!("tile widths are checked above"),
    }
}

/// `f(src, rows, row_bytes)`: standard rows → the interleaved copy (see [`repack`]).
type Repack = fn(&[u8], usize, usize) -> Lines;

/// `f(w_groups, row_bytes, activation rows, out, ld)`: see [`rows`].
pub(crate) type StridedKernel = unsafe fn(&[u8], usize, &[&[BlockQ8x32]], *mut f32, usize);

macro_rules! interleaved_kernel {
    ($name:ident, $f:ty, $what:literal) => {
        #[doc = concat!($what, " interleaved 16 rows at a time × a tile of 32-block rows (AVX-512 VNNI + BW).")]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        pub(crate) unsafe fn $name(
            w: &[u8],
            row_bytes: usize,
            a: &[&[BlockQ8x32]],
            out: *mut f32,
            ld: usize,
        ) {
            unsafe { rows::<$f>(w, row_bytes, a, out, ld) }
        }
    };
}

interleaved_kernel!(dot_q4_0_x16, Q4_0, "Q4_0");
interleaved_kernel!(dot_q4_1_x16, Q4_1, "Q4_1");
interleaved_kernel!(dot_q5_0_x16, Q5_0, "Q5_0");
interleaved_kernel!(dot_q5_1_x16, Q5_1, "Q5_1");
interleaved_kernel!(dot_q8_0_x16, Q8_0, "Q8_0");
interleaved_kernel!(dot_iq4_nl_x16, Iq4Nl, "IQ4_NL");

/// `rows` rows of `row_bytes` bytes of `ty` blocks interleaved, with their kernel; `None` when
/// `ty` has no interleaved form or the rows do not come in whole groups of 16.
pub(crate) fn interleave(
    ty: WeightType,
    src: &[u8],
    rows: usize,
    row_bytes: usize,
) -> Option<(Lines, StridedKernel)> {
    use WeightType as W;
    if rows == 0 || !rows.is_multiple_of(GROUP) {
        return None;
    }
    let (repack, kernel): (Repack, StridedKernel) = match ty {
        W::Q4_0 => (repack::<Q4_0>, dot_q4_0_x16),
        W::Q4_1 => (repack::<Q4_1>, dot_q4_1_x16),
        W::Q5_0 => (repack::<Q5_0>, dot_q5_0_x16),
        W::Q5_1 => (repack::<Q5_1>, dot_q5_1_x16),
        W::Q8_0 => (repack::<Q8_0>, dot_q8_0_x16),
        W::IQ4NL => (repack::<Iq4Nl>, dot_iq4_nl_x16),
        _ => return None,
    };
    Some((repack(src, rows, row_bytes), kernel))
}
