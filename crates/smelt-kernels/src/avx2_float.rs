//! AVX2 + FMA float products (F32 and F16 weights × f32 activations), in ggml's orders where
//! llama.cpp's differ: `ggml_vec_dot_f32` for a token alone, llamafile's tinyBLAS chain for a
//! sequence's rows.

use std::arch::x86_64::*;

use super::{f16_at, hsum};
use crate::TILE_WIDTHS;

#[inline(always)]
unsafe fn tile_float<const HALF: bool, const T: usize>(w: &[u8], x: [&[f32]; T]) -> [f32; T] {
    unsafe {
        let n = x[0].len().min(w.len() / if HALF { 2 } else { 4 });
        let load_w = |i: usize| {
            if HALF {
                _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(2 * i) as *const __m128i))
            } else {
                _mm256_loadu_ps((w.as_ptr() as *const f32).add(i))
            }
        };
        let (mut a0, mut a1) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
        let mut i = 0;
        while i + 16 <= n {
            let (w0, w1) = (load_w(i), load_w(i + 8));
            for t in 0..T {
                a0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t].as_ptr().add(i)), a0[t]);
                a1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t].as_ptr().add(i + 8)), a1[t]);
            }
            i += 16;
        }
        let mut out = [0f32; T];
        for t in 0..T {
            out[t] = hsum(_mm256_add_ps(a0[t], a1[t]));
            for (j, &xj) in x[t].iter().enumerate().take(n).skip(i) {
                let wj = if HALF {
                    f16_at(w.as_ptr().add(2 * j))
                } else {
                    std::ptr::read_unaligned((w.as_ptr() as *const f32).add(j))
                };
                out[t] += wj * xj;
            }
        }
        out
    }
}

#[inline(always)]
unsafe fn tile_f32<const T: usize>(w: &[u8], x: [&[f32]; T]) -> [f32; T] {
    unsafe { tile_float::<false, T>(w, x) }
}

#[inline(always)]
unsafe fn tile_f16<const T: usize>(w: &[u8], x: [&[f32]; T]) -> [f32; T] {
    unsafe { tile_float::<true, T>(w, x) }
}

/// F32 weights × one f32 row as `ggml_vec_dot_f32` sums it (`reference::dot_f32`): four
/// 16-lane accumulators (each two 8-lane halves) over every 64 values, the leftovers after.
#[inline(always)]
unsafe fn dot_f32_vec_row(w: &[u8], x: &[f32]) -> f32 {
    unsafe {
        let n = x.len().min(w.len() / 4);
        let wp = w.as_ptr() as *const f32;
        let np = n / 64 * 64;
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i < np {
            for (h, a) in acc.iter_mut().enumerate() {
                let k = i + 8 * h;
                *a = _mm256_fmadd_ps(
                    _mm256_loadu_ps(wp.add(k)),
                    _mm256_loadu_ps(x.as_ptr().add(k)),
                    *a,
                );
            }
            i += 64;
        }
        // Accumulator j is halves 2j (lanes 0-7) and 2j + 1 (lanes 8-15).
        let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
        // hsum(lo + hi) is `_mm512_reduce_add_ps`'s tree (`attention::reduce16`).
        let mut sum = hsum(_mm256_add_ps(lo, hi));
        let rounded = np + (n - np) / 8 * 8;
        for (k, &xk) in x.iter().enumerate().take(rounded).skip(np) {
            sum += std::ptr::read_unaligned(wp.add(k)) * xk;
        }
        for (k, &xk) in x.iter().enumerate().take(n).skip(rounded) {
            sum = std::ptr::read_unaligned(wp.add(k)).mul_add(xk, sum);
        }
        sum
    }
}

#[inline(always)]
unsafe fn tile_f32_vec<const T: usize>(w: &[u8], x: [&[f32]; T]) -> [f32; T] {
    // A plain loop, not `array::from_fn`: its closure would not inherit the caller's target
    // features, and the intrinsics would become calls.
    let mut out = [0f32; T];
    for (o, xt) in out.iter_mut().zip(x) {
        *o = unsafe { dot_f32_vec_row(w, xt) };
    }
    out
}

/// F32 weights × a tile of f32 rows, each as `ggml_vec_dot_f32` sums it (a token alone).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(w: &[u8], row_bytes: usize, a: &[&[f32]], out: &mut [f32]) {
    unsafe { by_tokens!(tile_f32_vec, w, row_bytes, a, out) }
}

/// F32 weights × a tile of f32 rows as llamafile's tinyBLAS sums them for a sequence of two
/// tokens or more (`reference::dot_f32_chain`): one 16-lane chain (two 8-lane halves) per
/// output; rows that are not whole 16s as [`dot_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32_chain(w: &[u8], row_bytes: usize, a: &[&[f32]], out: &mut [f32]) {
    unsafe {
        if !(row_bytes / 4).is_multiple_of(16) {
            return dot_f32(w, row_bytes, a, out);
        }
        by_tokens!(tile_f32, w, row_bytes, a, out)
    }
}

/// F16 weights × a tile of f32 rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16(w: &[u8], row_bytes: usize, a: &[&[f32]], out: &mut [f32]) {
    unsafe { by_tokens!(tile_f16, w, row_bytes, a, out) }
}
