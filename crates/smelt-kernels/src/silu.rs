//! SwiGLU's elementwise step, `gate ← SiLU(gate) · up = gate / (1 + e^(−gate)) · up`, and the
//! vectorized e^x it shares with the attention softmax.
//!
//! Both follow llama.cpp's CPU build for AVX-512 bit for bit, so that smelt's activations are
//! the same floats as llama.cpp's: e^x is ggml's `ggml_v_expf` (ARM's optimized-routines
//! algorithm: x = n·ln2 + b with n from the round-to-integer shift trick and ln2 split in two,
//! a degree-5 polynomial for e^b that includes the leading 1, then `scalef` by 2^n; |n| > 192
//! gives 0 or ∞). A row is taken 16 values at a time through that e^x, and its last `len % 16`
//! values through the C library's `expf`, as `ggml_vec_swiglu_f32` does.
//!
//! [`exp`] is the scalar definition; the AVX2 form computes the same operations eight lanes
//! at a time (`scalef` becomes two exact multiplications by powers of two, which round once,
//! as `scalef` does, where the result is subnormal). The harness checks they agree exactly.

use crate::{Variant, available_variants};

/// ggml's e^x constants (bit patterns of its hexadecimal float literals).
mod c {
    /// 0x1.8p23: adding it rounds to an integer.
    pub const SHIFT: u32 = 0x4b40_0000;
    /// 0x1.715476p+0: log2(e).
    pub const LOG2E: u32 = 0x3fb8_aa3b;
    /// 0x1.62e4p-1: ln 2, high part.
    pub const LN2_HI: u32 = 0x3f31_7200;
    /// 0x1.7f7d1cp-20: ln 2, low part.
    pub const LN2_LO: u32 = 0x35bf_be8e;
    /// Polynomial coefficients of b⁵ … b¹.
    pub const P: [u32; 5] = [
        0x3c07_2010,
        0x3d2b_9f17,
        0x3e2a_af33,
        0x3eff_fedb,
        0x3f7f_fff6,
    ];
}

fn k(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// 2^n for an integer `n` in [−126, 127].
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// e^x as ggml's AVX-512 `ggml_v_expf` computes it (its stated error: 1.45 ulp plus 0.5 ulp).
pub fn exp(x: f32) -> f32 {
    let shift = k(c::SHIFT);
    let z = x.mul_add(k(c::LOG2E), shift);
    let n = z - shift;
    let b = (-n).mul_add(k(c::LN2_LO), (-n).mul_add(k(c::LN2_HI), x));
    let u = b * b;
    let p = &c::P;
    let j = k(p[0])
        .mul_add(b, k(p[1]))
        .mul_add(u, k(p[2]).mul_add(b, k(p[3])))
        .mul_add(u, k(p[4]).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // scalef(j, n): the first product is exact, the second rounds once. A NaN n casts to 0,
    // leaving j, which is then NaN, as in the SIMD form.
    let n = n as i32;
    let n1 = n >> 1;
    j * pow2(n1) * pow2(n - n1)
}

/// Reference: each row of `row` values (the last may be shorter), `gate[i] = gate[i] /
/// (1 + e^(−gate[i])) · up[i]`, with [`exp`] on the row's first `16·⌊row/16⌋` values and the C
/// library's `expf` on the rest.
pub fn silu_mul_reference(gate: &mut [f32], up: &[f32], row: usize) {
    for (gr, ur) in gate.chunks_mut(row).zip(up.chunks(row)) {
        let body = gr.len() - gr.len() % 16;
        for (i, (g, u)) in gr.iter_mut().zip(ur).enumerate() {
            let e = if i < body { exp(0.0 - *g) } else { (-*g).exp() };
            *g = *g / (1.0 + e) * u;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{c, k};

    /// [`super::exp`] for each lane.
    #[inline(always)]
    pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
        unsafe {
            let shift = _mm256_set1_ps(k(c::SHIFT));
            let z = _mm256_fmadd_ps(x, _mm256_set1_ps(k(c::LOG2E)), shift);
            let n = _mm256_sub_ps(z, shift);
            let b = _mm256_fnmadd_ps(
                n,
                _mm256_set1_ps(k(c::LN2_LO)),
                _mm256_fnmadd_ps(n, _mm256_set1_ps(k(c::LN2_HI)), x),
            );
            let u = _mm256_mul_ps(b, b);
            let p = |i: usize| _mm256_set1_ps(k(c::P[i]));
            let j = _mm256_fmadd_ps(
                _mm256_fmadd_ps(
                    _mm256_fmadd_ps(p(0), b, p(1)),
                    u,
                    _mm256_fmadd_ps(p(2), b, p(3)),
                ),
                u,
                _mm256_fmadd_ps(p(4), b, _mm256_set1_ps(1.0)),
            );
            // scalef(j, n) for |n| ≤ 192 as j · 2^⌊n/2⌋ · 2^(n − ⌊n/2⌋).
            let ni = _mm256_cvtps_epi32(n);
            let n1 = _mm256_srai_epi32::<1>(ni);
            let n2 = _mm256_sub_epi32(ni, n1);
            let bias = _mm256_set1_epi32(127);
            let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
            let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
            let res = _mm256_mul_ps(_mm256_mul_ps(j, p1), p2);
            let big = _mm256_cmp_ps::<_CMP_GT_OQ>(
                _mm256_andnot_ps(_mm256_set1_ps(-0.0), n),
                _mm256_set1_ps(192.0),
            );
            let alt = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(n, _mm256_setzero_ps()),
                _mm256_set1_ps(f32::INFINITY),
            );
            // NaN lanes: `big` is false and `res` is NaN.
            _mm256_blendv_ps(res, alt, big)
        }
    }

    /// [`exp8`] 16 lanes wide, the same operations lane by lane.
    #[inline(always)]
    pub(crate) unsafe fn exp16(x: __m512) -> __m512 {
        unsafe {
            let shift = _mm512_set1_ps(k(c::SHIFT));
            let z = _mm512_fmadd_ps(x, _mm512_set1_ps(k(c::LOG2E)), shift);
            let n = _mm512_sub_ps(z, shift);
            let b = _mm512_fnmadd_ps(
                n,
                _mm512_set1_ps(k(c::LN2_LO)),
                _mm512_fnmadd_ps(n, _mm512_set1_ps(k(c::LN2_HI)), x),
            );
            let u = _mm512_mul_ps(b, b);
            let p = |i: usize| _mm512_set1_ps(k(c::P[i]));
            let j = _mm512_fmadd_ps(
                _mm512_fmadd_ps(
                    _mm512_fmadd_ps(p(0), b, p(1)),
                    u,
                    _mm512_fmadd_ps(p(2), b, p(3)),
                ),
                u,
                _mm512_fmadd_ps(p(4), b, _mm512_set1_ps(1.0)),
            );
            let ni = _mm512_cvtps_epi32(n);
            let n1 = _mm512_srai_epi32::<1>(ni);
            let n2 = _mm512_sub_epi32(ni, n1);
            let bias = _mm512_set1_epi32(127);
            let p1 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n1, bias)));
            let p2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n2, bias)));
            let res = _mm512_mul_ps(_mm512_mul_ps(j, p1), p2);
            let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
            let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(n, _mm512_setzero_ps());
            let alt = _mm512_maskz_mov_ps(pos, _mm512_set1_ps(f32::INFINITY));
            // NaN lanes: `big` is false and `res` is NaN.
            _mm512_mask_blend_ps(big, res, alt)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_mul(gate: &mut [f32], up: &[f32], row: usize) {
        unsafe {
            let one = _mm256_set1_ps(1.0);
            for (gr, ur) in gate.chunks_mut(row).zip(up.chunks(row)) {
                let body = gr.len() - gr.len() % 16;
                for i in (0..body).step_by(8) {
                    let g = _mm256_loadu_ps(gr.as_ptr().add(i));
                    let u = _mm256_loadu_ps(ur.as_ptr().add(i));
                    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                    let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
                    _mm256_storeu_ps(gr.as_mut_ptr().add(i), _mm256_mul_ps(s, u));
                }
                for (g, u) in gr[body..].iter_mut().zip(&ur[body..]) {
                    *g = *g / (1.0 + (-*g).exp()) * u;
                }
            }
        }
    }
}

/// [`silu_mul_reference`] with variant `v` (the reference without AVX2).
pub fn silu_mul_with(v: Variant, gate: &mut [f32], up: &[f32], row: usize) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in length");
    assert!(row > 0, "rows of zero values");
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && available_variants().contains(&Variant::Avx2) {
        // SAFETY: AVX2 and FMA were detected (every variant but the reference implies them).
        return unsafe { x86::silu_mul(gate, up, row) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
    silu_mul_reference(gate, up, row)
}

/// [`silu_mul_with`] with the process's kernel variant.
pub fn silu_mul(gate: &mut [f32], up: &[f32], row: usize) {
    silu_mul_with(crate::variant(), gate, up, row)
}
