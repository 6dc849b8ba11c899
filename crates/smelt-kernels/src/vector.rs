//! Float vector primitives for attention (q·k and the weighted sum of values, over f32 or f16
//! keys and values), with the same reference/SIMD split as the matrix kernels.

use half::f16;

use crate::{Variant, variant};

/// Reference: Σ aᵢ·bᵢ with 8 running sums (fixed order).
pub fn dot_reference(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Reference: y += a·x.
pub fn axpy_reference(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                acc,
            );
            i += 8;
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let mut s = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    unsafe {
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let p = y.as_mut_ptr().add(i);
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)),
            );
            i += 8;
        }
        while i < n {
            y[i] += a * x[i];
            i += 1;
        }
    }
}

/// Σ aᵢ·bᵢ with the process's kernel variant.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with(variant(), a, b)
}

/// Σ aᵢ·bᵢ with variant `v` (the reference if this CPU cannot run `v`).
pub fn dot_with(v: Variant, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && crate::available_variants().contains(&v) {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { dot_avx2(a, b) };
    }
    let _ = v;
    dot_reference(a, b)
}

/// y += a·x with the process's kernel variant.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_with(variant(), a, x, y)
}

/// y += a·x with variant `v` (the reference if this CPU cannot run `v`).
pub fn axpy_with(v: Variant, a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && crate::available_variants().contains(&v) {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { axpy_avx2(a, x, y) };
    }
    let _ = v;
    axpy_reference(a, x, y)
}

/// Reference: Σ aᵢ·bᵢ over f16 `b`, with 8 running sums (fixed order).
pub fn dot_f16_reference(a: &[f32], b: &[f16]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k].to_f32();
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y.to_f32();
    }
    s
}

/// Reference: y += a·x over f16 `x`.
pub fn axpy_f16_reference(a: f32, x: &[f16], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v.to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(a: &[f32], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let k = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), k, acc);
            i += 8;
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let mut s = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_avx2(a: f32, x: &[f16], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    unsafe {
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let p = y.as_mut_ptr().add(i);
            let v = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
            _mm256_storeu_ps(p, _mm256_fmadd_ps(av, v, _mm256_loadu_ps(p)));
            i += 8;
        }
        while i < n {
            y[i] += a * x[i].to_f32();
            i += 1;
        }
    }
}

/// Σ aᵢ·bᵢ over f16 `b` with variant `v` (the reference if this CPU cannot run `v`).
pub fn dot_f16_with(v: Variant, a: &[f32], b: &[f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && crate::available_variants().contains(&v) {
        // SAFETY: AVX2, FMA and F16C were detected.
        return unsafe { dot_f16_avx2(a, b) };
    }
    let _ = v;
    dot_f16_reference(a, b)
}

/// y += a·x over f16 `x` with variant `v` (the reference if this CPU cannot run `v`).
pub fn axpy_f16_with(v: Variant, a: f32, x: &[f16], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && crate::available_variants().contains(&v) {
        // SAFETY: AVX2, FMA and F16C were detected.
        return unsafe { axpy_f16_avx2(a, x, y) };
    }
    let _ = v;
    axpy_f16_reference(a, x, y)
}

/// Σ aᵢ·bᵢ over f16 `b` with the process's kernel variant.
#[inline]
pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    dot_f16_with(variant(), a, b)
}

/// y += a·x over f16 `x` with the process's kernel variant.
#[inline]
pub fn axpy_f16(a: f32, x: &[f16], y: &mut [f32]) {
    axpy_f16_with(variant(), a, x, y)
}
