//! SwiGLU's elementwise step, `gate ← SiLU(gate) · up = gate / (1 + e^(−gate)) · up`.
//!
//! The reference uses the C library's `expf`. The AVX2 form computes e^x eight lanes at a
//! time the way Cephes' `expf` does (and ggml's vectorized SiLU in spirit): x = n·ln2 + r with
//! ln2 split in two for an exact reduction, a degree-6 polynomial for e^r on |r| ≤ ln2/2, and
//! 2^n built in the exponent bits; inputs are clamped to ±88.37 so 2^n stays finite. It agrees
//! with the reference to a few ulp (the harness bounds the relative difference).

use crate::{Variant, available_variants};

/// Reference: `gate[i] = gate[i] / (1 + e^(−gate[i])) · up[i]`.
pub fn silu_mul_reference(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// e^x for each lane (|x| clamped to 88.37).
    #[inline(always)]
    pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
        unsafe {
            let x = _mm256_min_ps(
                _mm256_max_ps(x, _mm256_set1_ps(-88.37)),
                _mm256_set1_ps(88.37),
            );
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            );
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
            let mut p = _mm256_set1_ps(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5, // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
            ] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let r2 = _mm256_mul_ps(r, r);
            let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
            let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            )));
            _mm256_mul_ps(y, pow2n)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        unsafe {
            let n = gate.len().min(up.len());
            let mut i = 0;
            let one = _mm256_set1_ps(1.0);
            while i + 8 <= n {
                let g = _mm256_loadu_ps(gate.as_ptr().add(i));
                let u = _mm256_loadu_ps(up.as_ptr().add(i));
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
                _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(s, u));
                i += 8;
            }
            super::silu_mul_reference(&mut gate[i..n], &up[i..n]);
        }
    }
}

/// [`silu_mul_reference`] with variant `v` (the reference without AVX2).
pub fn silu_mul_with(v: Variant, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in length");
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && available_variants().contains(&Variant::Avx2) {
        // SAFETY: AVX2 and FMA were detected (every variant but the reference implies them).
        return unsafe { x86::silu_mul(gate, up) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
    silu_mul_reference(gate, up)
}

/// [`silu_mul_with`] with the process's kernel variant.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    silu_mul_with(crate::variant(), gate, up)
}
