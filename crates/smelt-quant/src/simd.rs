//! Slice kernels for the hot loops of quantization, each with a plain reference and a fast
//! variant picked at run time.
//!
//! The fast variants are the *same scalar code* compiled with AVX2/FMA enabled
//! (`#[target_feature]`), so the compiler vectorizes division, `round_ties_even` (`vroundps`) and
//! the compares; IEEE arithmetic makes them bit-identical to the reference, which the tests
//! check on fresh random inputs. Baseline x86-64 has no SSE4.1 rounding instruction, which is
//! why the reference build calls a library function per element and is slow.
//! `SMELT_KERNEL=reference` forces the reference everywhere.

use std::sync::OnceLock;

use crate::int::QParams;

/// Which implementation the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain Rust for the baseline target.
    Reference,
    /// Compiled for AVX2 + FMA.
    Avx2,
}

/// The variant chosen for this process (CPU features, `SMELT_KERNEL`).
pub fn variant() -> Variant {
    static V: OnceLock<Variant> = OnceLock::new();
    *V.get_or_init(|| {
        if std::env::var("SMELT_KERNEL").is_ok_and(|v| v == "reference") {
            return Variant::Reference;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Variant::Avx2;
        }
        Variant::Reference
    })
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $reference:ident, $avx2:ident, ($($arg:ident : $ty:ty),*)) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            match variant() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `variant()` returns Avx2 only after detecting AVX2 and FMA.
                Variant::Avx2 => unsafe { $avx2($($arg),*) },
                _ => $reference($($arg),*),
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $reference($($arg),*)
        }
    };
}

/// Reference: integer codes of `x` under `p`, stored as bytes (two's complement when signed).
#[inline(always)]
pub fn quantize_ref(p: &QParams, x: &[f32], out: &mut [i8]) {
    let (inv, zp, lo, hi) = (
        p.inv_scale(),
        p.zero_point as f32,
        p.qmin as f32,
        p.qmax as f32,
    );
    for (o, &v) in out.iter_mut().zip(x) {
        // Same arithmetic as QParams::quantize (multiply by 1/scale; float clamp; NaN -> qmin).
        let q = ((v * inv).round_ties_even() + zp).max(lo).min(hi);
        // SAFETY: `max` maps NaN to `lo`, so q is finite and within [qmin, qmax] ⊂ i32; the
        // unchecked conversion is what lets this loop use vcvttps2dq instead of scalar code.
        *o = unsafe { q.to_int_unchecked::<i32>() } as u8 as i8;
    }
}

/// Reference: reals of `codes` under `p` (codes signed when `signed`).
#[inline(always)]
pub fn dequantize_ref(p: &QParams, codes: &[i8], signed: bool, out: &mut [f32]) {
    let (s, zp) = (p.scale, p.zero_point);
    if signed {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = (c as i32 - zp) as f32 * s;
        }
    } else {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = (c as u8 as i32 - zp) as f32 * s;
        }
    }
}

/// Reference: NF4 codes of `x * inv_absmax` (count of decision midpoints below the value).
#[inline(always)]
pub fn nf4_codes_ref(x: &[f32], inv_absmax: f32, out: &mut [i8]) {
    let mids = crate::nf4::midpoints();
    for (o, &v) in out.iter_mut().zip(x) {
        let y = v * inv_absmax;
        // Counted in f32 (compare + blend + add per midpoint) so it stays in float vectors.
        let mut c = 0f32;
        for m in mids {
            c += if y > m { 1.0 } else { 0.0 };
        }
        *o = c as i8;
    }
}

/// Reference: `(min, max)` of the non-NaN values (`(+inf, -inf)` when there are none).
/// Sixteen independent lanes so the loop vectorizes without reassociating a reduction.
#[inline(always)]
pub fn min_max_ref(x: &[f32], out: &mut (f32, f32)) {
    let mut lo = [f32::INFINITY; 16];
    let mut hi = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..16 {
            // `v < lo ? v : lo` is one vminps and skips NaN (the comparison is false).
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
        }
    }
    for &v in tail {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    *out = (
        lo.iter().copied().fold(out.0, f32::min),
        hi.iter().copied().fold(out.1, f32::max),
    );
}

/// Reference: packs codes two per byte, low nibble first (`codes.len()` even,
/// `out.len() == codes.len() / 2`).
#[inline(always)]
pub fn pack_nibbles_ref(codes: &[i8], out: &mut [u8]) {
    for (o, p) in out.iter_mut().zip(codes.chunks_exact(2)) {
        *o = (p[0] as u8 & 0x0f) | ((p[1] as u8) << 4);
    }
}

/// Reference: unpacks `2 * packed.len()` codes, sign-extended when `signed`.
#[inline(always)]
pub fn unpack_nibbles_ref(packed: &[u8], signed: bool, out: &mut [i8]) {
    let shift = if signed { 4 } else { 0 };
    for (p, &b) in out.chunks_exact_mut(2).zip(packed) {
        // Shift the nibble to the top, then arithmetic (signed) or logical (unsigned) back down.
        let lo = b << 4;
        let hi = b & 0xf0;
        if shift == 4 {
            p[0] = (lo as i8) >> 4;
            p[1] = (hi as i8) >> 4;
        } else {
            p[0] = (lo >> 4) as i8;
            p[1] = (hi >> 4) as i8;
        }
    }
}

/// Folds the `(min, max)` of `x` into `out`, ignoring NaN.
pub fn min_max(x: &[f32], out: &mut (f32, f32)) {
    match variant() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `variant()` returns Avx2 only after detecting AVX2 and FMA.
        Variant::Avx2 => unsafe { min_max_avx2(x, out) },
        _ => min_max_ref(x, out),
    }
}

/// [`min_max_ref`] with explicit AVX2: the same 16 lanes (two registers), the same
/// `v < acc ? v : acc` per lane (`vminps v, acc` returns `acc` when `v` is NaN), the same tail
/// and final fold, so the result is bit-identical. Written out because the compiler turned the
/// lane arrays into byte-mask shuffles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn min_max_avx2(x: &[f32], out: &mut (f32, f32)) {
    use std::arch::x86_64::*;
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    let mut lo = [_mm256_set1_ps(f32::INFINITY); 2];
    let mut hi = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
    for c in chunks {
        for h in 0..2 {
            // SAFETY: `c` has 16 values, so both 8-wide unaligned loads are in bounds.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * h)) };
            lo[h] = _mm256_min_ps(v, lo[h]);
            hi[h] = _mm256_max_ps(v, hi[h]);
        }
    }
    let mut lo_l = [0f32; 16];
    let mut hi_l = [0f32; 16];
    for h in 0..2 {
        // SAFETY: each destination slice holds 8 floats.
        unsafe {
            _mm256_storeu_ps(lo_l.as_mut_ptr().add(8 * h), lo[h]);
            _mm256_storeu_ps(hi_l.as_mut_ptr().add(8 * h), hi[h]);
        }
    }
    for &v in tail {
        lo_l[0] = if v < lo_l[0] { v } else { lo_l[0] };
        hi_l[0] = if v > hi_l[0] { v } else { hi_l[0] };
    }
    *out = (
        lo_l.iter().copied().fold(out.0, f32::min),
        hi_l.iter().copied().fold(out.1, f32::max),
    );
}
dispatch!(
    /// Packs codes two per byte (see [`pack_nibbles_ref`]).
    pack_nibbles,
    pack_nibbles_ref,
    pack_nibbles_avx2,
    (codes: &[i8], out: &mut [u8])
);
dispatch!(
    /// Unpacks codes (see [`unpack_nibbles_ref`]).
    unpack_nibbles,
    unpack_nibbles_ref,
    unpack_nibbles_avx2,
    (packed: &[u8], signed: bool, out: &mut [i8])
);

/// Integer codes of `x` under `p` into `out` (same length).
pub fn quantize(p: &QParams, x: &[f32], out: &mut [i8]) {
    match variant() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `variant()` returns Avx2 only after detecting AVX2 and FMA.
        Variant::Avx2 => unsafe { quantize_avx2(p, x, out) },
        _ => quantize_ref(p, x, out),
    }
}

/// [`quantize_ref`] in AVX2 intrinsics, 32 values a step. `vmaxps q, lo` returns `lo` when
/// q is NaN, exactly like `f32::max`, so no NaN fix-up is needed; the codes are packed with
/// saturating packs (signed, or unsigned for codes up to 255) that never saturate here
/// because the values are already clamped. Bit-identical to the reference.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(p: &QParams, x: &[f32], out: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(out.len());
    let inv = _mm256_set1_ps(p.inv_scale());
    let zp = _mm256_set1_ps(p.zero_point as f32);
    let lo = _mm256_set1_ps(p.qmin as f32);
    let hi = _mm256_set1_ps(p.qmax as f32);
    let unsigned = p.qmax > 127;
    let fix_lanes = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut i = 0;
    while i + 32 <= n {
        let mut q = [_mm256_setzero_si256(); 4];
        for (k, qk) in q.iter_mut().enumerate() {
            // SAFETY: i + 32 <= n, so the 8 values at i + 8k are in bounds.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i + 8 * k)) };
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(v, inv),
            );
            let c = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, zp), lo), hi);
            *qk = _mm256_cvttps_epi32(c);
        }
        let ab = _mm256_packs_epi32(q[0], q[1]);
        let cd = _mm256_packs_epi32(q[2], q[3]);
        let bytes = if unsigned {
            _mm256_packus_epi16(ab, cd)
        } else {
            _mm256_packs_epi16(ab, cd)
        };
        let ordered = _mm256_permutevar8x32_epi32(bytes, fix_lanes);
        // SAFETY: 32 bytes at i are in bounds of `out`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, ordered) };
        i += 32;
    }
    quantize_ref(p, &x[i..n], &mut out[i..n]);
}
dispatch!(
    /// Reals of `codes` under `p` into `out` (same length).
    dequantize,
    dequantize_ref,
    dequantize_avx2,
    (p: &QParams, codes: &[i8], signed: bool, out: &mut [f32])
);
/// NF4 codes of one block.
pub fn nf4_codes(x: &[f32], inv_absmax: f32, out: &mut [i8]) {
    match variant() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `variant()` returns Avx2 only after detecting AVX2 and FMA.
        Variant::Avx2 => unsafe { nf4_codes_avx2(x, inv_absmax, out) },
        _ => nf4_codes_ref(x, inv_absmax, out),
    }
}

/// [`nf4_codes_ref`] in AVX2: the count of midpoints below each value, as integer lanes
/// (a true compare is all ones, i.e. -1, so subtracting it adds 1). Bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nf4_codes_avx2(x: &[f32], inv_absmax: f32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(out.len());
    let mids = crate::nf4::midpoints().map(|m| _mm256_set1_ps(m));
    let inv = _mm256_set1_ps(inv_absmax);
    let fix_lanes = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut i = 0;
    while i + 32 <= n {
        let mut c = [_mm256_setzero_si256(); 4];
        for (k, ck) in c.iter_mut().enumerate() {
            // SAFETY: i + 32 <= n, so the 8 values at i + 8k are in bounds.
            let y = _mm256_mul_ps(unsafe { _mm256_loadu_ps(x.as_ptr().add(i + 8 * k)) }, inv);
            for m in &mids {
                let gt = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(y, *m));
                *ck = _mm256_sub_epi32(*ck, gt);
            }
        }
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(c[0], c[1]),
            _mm256_packs_epi32(c[2], c[3]),
        );
        let ordered = _mm256_permutevar8x32_epi32(bytes, fix_lanes);
        // SAFETY: 32 bytes at i are in bounds of `out`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, ordered) };
        i += 32;
    }
    nf4_codes_ref(&x[i..n], inv_absmax, &mut out[i..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int::{INT4, INT8, Scheme, UINT8};
    use crate::rng::Rng;

    #[test]
    fn fast_kernels_equal_reference_on_random_inputs() {
        let mut r = Rng::new(std::process::id() as u64);
        for case in 0..200 {
            let n = 1 + r.below(5000);
            let spread = 10f32.powf(r.uniform() as f32 * 8.0 - 4.0);
            let mut x: Vec<f32> = (0..n).map(|_| spread * r.normal() as f32).collect();
            if case % 10 == 0 {
                x[0] = f32::NAN;
                x[n - 1] = f32::INFINITY;
            }
            let format = [INT8, UINT8, INT4][case % 3];
            let scheme = if format.signed && case % 2 == 0 {
                Scheme::Symmetric { restricted: true }
            } else {
                Scheme::Asymmetric
            };
            let p = QParams::from_range(-spread * 2.0, spread * 1.5, format, scheme).unwrap();
            let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
            quantize_ref(&p, &x, &mut a);
            quantize(&p, &x, &mut b);
            assert_eq!(a, b, "quantize case {case}");
            for (i, &v) in x.iter().enumerate() {
                let want = p.quantize(v);
                let got = if format.signed {
                    a[i] as i32
                } else {
                    a[i] as u8 as i32
                };
                assert_eq!(got, want, "case {case}: reference kernel vs QParams at {v}");
            }
            let (mut da, mut db) = (vec![0f32; n], vec![0f32; n]);
            dequantize_ref(&p, &a, format.signed, &mut da);
            dequantize(&p, &a, format.signed, &mut db);
            assert_eq!(
                da.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                db.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let (mut ma, mut mb) = (
                (f32::INFINITY, f32::NEG_INFINITY),
                (f32::INFINITY, f32::NEG_INFINITY),
            );
            min_max_ref(&x, &mut ma);
            min_max(&x, &mut mb);
            let finite = x.iter().copied().filter(|v| !v.is_nan());
            let want = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            assert_eq!((ma, mb), (want, want), "min_max case {case}");
            let even = &a[..n & !1];
            let (mut pa, mut pb) = (vec![0u8; even.len() / 2], vec![0u8; even.len() / 2]);
            pack_nibbles_ref(even, &mut pa);
            pack_nibbles(even, &mut pb);
            assert_eq!(pa, pb);
            assert_eq!(pa, crate::int::pack_nibbles(even));
            for signed in [false, true] {
                let (mut ua, mut ub) = (vec![0i8; even.len()], vec![0i8; even.len()]);
                unpack_nibbles_ref(&pa, signed, &mut ua);
                unpack_nibbles(&pa, signed, &mut ub);
                assert_eq!(ua, ub);
                assert_eq!(ua, crate::int::unpack_nibbles(&pa, even.len(), signed));
            }
            let (mut na, mut nb) = (vec![0i8; n], vec![0i8; n]);
            nf4_codes_ref(&x, 1.0 / (3.0 * spread), &mut na);
            nf4_codes(&x, 1.0 / (3.0 * spread), &mut nb);
            assert_eq!(na, nb, "nf4 case {case}");
        }
    }
}
