//! 8-token tiles of 32-blocks on AVX-512 VNNI with two tokens per 512-bit register: the
//! batched-decode path of the serving engine.
//!
//! The 256-bit kernel spends a dot, a convert, a multiply and an FMA per block *per token*,
//! plus a scalar offset term. Here the tile's activations are paired per weight block
//! ([`PairedQ8x32`], done once per product by `Activations::set`, or per call as a fallback)
//! so that two tokens' codes sit in one 64-byte line (one `vpdpbusd` for both), each token's
//! scale is pre-broadcast next to them, and the offset terms of all 8 tokens are one 8-lane
//! multiply-add per block. Every lane does the same operations in the same order as the
//! 256-bit kernel, so results are bit-identical to it (and so to a token run alone).

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::{Block32, Offset, f16_table, half_bits, hsum};
use crate::act::{BlockQ8x32, PairedQ8x32};

thread_local! {
    /// (blocks,) repacked activations, reused between calls on a thread.
    static PACK: RefCell<Vec<PairedQ8x32>> = const { RefCell::new(Vec::new()) };
}

/// Every row of `w` (rows of `row_bytes`) against exactly 8 activation rows; `out` is
/// `(rows, 8)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn rows_x8<B: Block32>(
    w: &[u8],
    row_bytes: usize,
    a: &[&[BlockQ8x32]],
    out: &mut [f32],
) {
    let nb = row_bytes / B::BYTES;
    assert!(
        a.len() == 8
            && row_bytes > 0
            && out.len() >= w.len() / row_bytes * 8
            && a.iter().all(|r| r.len() >= nb),
        "kernel tile shape"
    );
    PACK.with(|cell| {
        let mut pack = cell.borrow_mut();
        pack.clear();
        pack.extend((0..nb).map(|i| PairedQ8x32::pack(std::array::from_fn(|t| &a[t][i]))));
        // SAFETY: the CPU features are this function's.
        unsafe { rows_paired::<B>(w, row_bytes, &pack, out) }
    })
}

/// Every row of `w` against 8 tokens already paired by [`crate::Activations`]; `out` is
/// `(rows, 8)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn rows_paired<B: Block32>(
    w: &[u8],
    row_bytes: usize,
    pack: &[PairedQ8x32],
    out: &mut [f32],
) {
    assert!(
        row_bytes > 0 && pack.len() >= row_bytes / B::BYTES && out.len() >= w.len() / row_bytes * 8,
        "kernel tile shape"
    );
    for (r, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(8)) {
        // SAFETY: the CPU features are this function's; `pack` covers every block of `r`.
        o.copy_from_slice(&unsafe { row_x8::<B>(r, pack) });
    }
}

/// One weight row against the packed tile.
#[inline(always)]
unsafe fn row_x8<B: Block32>(w: &[u8], pack: &[PairedQ8x32]) -> [f32; 8] {
    unsafe {
        let nb = w.len() / B::BYTES;
        debug_assert!(pack.len() >= nb);
        let lut = f16_table();
        let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); 4], [_mm512_setzero_ps(); 4]);
        let (mut off0, mut off1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // Two accumulator sets by block parity, exactly as the 256-bit kernel.
        while i + 2 <= nb {
            step::<B>(w, pack, lut, i, &mut acc0, &mut off0);
            step::<B>(w, pack, lut, i + 1, &mut acc1, &mut off1);
            i += 2;
        }
        if i < nb {
            step::<B>(w, pack, lut, i, &mut acc0, &mut off0);
        }
        let mut offs = [0f32; 8];
        _mm256_storeu_ps(offs.as_mut_ptr(), _mm256_add_ps(off0, off1));
        let mut out = [0f32; 8];
        for p in 0..4 {
            let sum = _mm512_add_ps(acc0[p], acc1[p]);
            let lo = _mm512_castps512_ps256(sum);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1));
            out[2 * p] = hsum(lo) + offs[2 * p];
            out[2 * p + 1] = hsum(hi) + offs[2 * p + 1];
        }
        out
    }
}

/// Block `i` for all 8 tokens (see `super::step32` for the arithmetic of each format).
#[inline(always)]
unsafe fn step<B: Block32>(
    w: &[u8],
    pack: &[PairedQ8x32],
    lut: &[f32; 65536],
    i: usize,
    acc: &mut [__m512; 4],
    off: &mut __m256,
) {
    unsafe {
        let p = w.as_ptr().add(i * B::BYTES);
        let q = _mm512_broadcast_i64x4(B::codes_bw(p));
        let dw = _mm512_set1_ps(*lut.get_unchecked(half_bits(p)));
        let blk = pack.get_unchecked(i);
        let zero = _mm512_setzero_si512();
        if B::OFFSET == Offset::Signed {
            // Signed codes c meet y + 128: Σ (y + 128)·c − 128·Σ c, the second term per block.
            let bias = _mm512_set1_epi8(-128);
            let start = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, q));
            for (pr, a) in acc.iter_mut().enumerate() {
                let y = _mm512_load_si512(blk.qs[pr].as_ptr() as *const _);
                let s =
                    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, _mm512_xor_si512(y, bias), q));
                let sy = _mm512_mul_ps(s, _mm512_load_ps(blk.d[pr].as_ptr()));
                *a = _mm512_fmadd_ps(sy, dw, *a);
            }
            return;
        }
        for (pr, a) in acc.iter_mut().enumerate() {
            let y = _mm512_load_si512(blk.qs[pr].as_ptr() as *const _);
            let s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, q, y));
            let sy = _mm512_mul_ps(s, _mm512_load_ps(blk.d[pr].as_ptr()));
            *a = _mm512_fmadd_ps(sy, dw, *a);
        }
        match B::OFFSET {
            Offset::Stored => {
                let m = _mm256_set1_ps(*lut.get_unchecked(half_bits(p.add(2))));
                let s = _mm256_loadu_ps(blk.s_f16.as_ptr());
                *off = _mm256_add_ps(*off, _mm256_mul_ps(m, s));
            }
            Offset::Centre(k) => {
                let kd = _mm256_set1_ps(k as f32 * *lut.get_unchecked(half_bits(p)));
                let s = _mm256_loadu_ps(blk.s.as_ptr());
                *off = _mm256_sub_ps(*off, _mm256_mul_ps(kd, s));
            }
            Offset::Signed => {}
        }
    }
}
