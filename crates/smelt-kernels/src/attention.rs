//! One attention head for one query over an f16 KV cache: `out = softmax(q·Kᵀ · scale) · V`.
//!
//! Rounding follows llama.cpp's CPU path without flash attention: the query and the attention
//! weights are rounded to f16 before they meet the f16 keys and values; dot products, the
//! softmax and the weighted sum are in f32. The AVX2 variant (head widths 32–128) serves the
//! query heads of one KV head together: eight keys (or values) at a time are converted from
//! f16 once and read by every head, which scores eight positions per step and reduces them
//! with one horizontal-add tree; the reference is the plain loop.

use half::f16;

use crate::{Variant, available_variants};

/// Where one head's keys and values sit in a layer's cache slabs. The slabs hold rows of
/// `stride` elements grouped in blocks of `block` rows (a paged cache); `table` maps the
/// sequence's logical blocks to physical ones, so position p lives in row
/// `table[p / block] · block + p % block`, and its key is `keys[row · stride + offset ..][..head_dim]`
/// (likewise its value). A contiguous cache is one block: see [`HeadSlabs::contiguous`].
#[derive(Debug, Clone, Copy)]
pub struct HeadSlabs<'a> {
    /// (rows, stride) keys.
    pub keys: &'a [f16],
    /// (rows, stride) values.
    pub values: &'a [f16],
    /// Elements between consecutive rows.
    pub stride: usize,
    /// This head's first element within a row.
    pub offset: usize,
    /// Rows per block (≥ 1).
    pub block: usize,
    /// Physical block of each logical block of the sequence.
    pub table: &'a [u32],
}

impl<'a> HeadSlabs<'a> {
    /// Slabs where position p is row p (one unbounded block).
    pub fn contiguous(keys: &'a [f16], values: &'a [f16], stride: usize, offset: usize) -> Self {
        Self {
            keys,
            values,
            stride,
            offset,
            block: usize::MAX,
            table: &[0],
        }
    }

    /// Row of position `p`.
    pub fn row(&self, p: usize) -> usize {
        self.table[p / self.block] as usize * self.block + p % self.block
    }

    /// The runs of positions `0..n_pos` that sit in consecutive rows:
    /// (first position, its row, length).
    pub fn runs(&self, n_pos: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let block = self.block;
        (0..n_pos.div_ceil(block)).map(move |b| {
            let p0 = b * block;
            (p0, self.table[b] as usize * block, block.min(n_pos - p0))
        })
    }
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

fn softmax_f16_weights(scores: &mut [f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in scores.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in scores.iter_mut() {
        *v = f16_round(*v / sum);
    }
}

/// Reference: `out (head_dim,) = softmax(q·Kᵀ · scale) · V` over positions `0..n_pos`.
pub fn attend_reference(q: &[f32], kv: HeadSlabs, n_pos: usize, scale: f32, out: &mut [f32]) {
    let hd = q.len();
    let q16: Vec<f32> = q.iter().map(|&v| f16_round(v)).collect();
    let mut scores: Vec<f32> = (0..n_pos)
        .map(|p| {
            let k = &kv.keys[kv.row(p) * kv.stride + kv.offset..][..hd];
            q16.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() * scale
        })
        .collect();
    softmax_f16_weights(&mut scores);
    out[..hd].iter_mut().for_each(|o| *o = 0.0);
    for (p, &w) in scores.iter().enumerate() {
        let v = &kv.values[kv.row(p) * kv.stride + kv.offset..][..hd];
        for (o, x) in out.iter_mut().zip(v) {
            *o += w * x.to_f32();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{HeadSlabs, f16, f16_round};
    use crate::silu::x86::exp8;

    /// [`super::softmax_f16_weights`] eight lanes at a time: the same max, the vectorized exp
    /// of the SiLU kernel (within 4 ulp of libm), sums in 8 lanes, and the f16 rounding of
    /// the weights by `vcvtps2ph` (round to nearest even, as `half` does).
    #[inline(always)]
    unsafe fn softmax_f16_weights(scores: &mut [f32]) {
        unsafe {
            let n = scores.len();
            let body = n - n % 8;
            let ptr = scores.as_mut_ptr();
            let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..body).step_by(8) {
                mv = _mm256_max_ps(mv, _mm256_loadu_ps(ptr.add(i)));
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), mv);
            let max = lanes
                .iter()
                .chain(&scores[body..])
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let maxv = _mm256_set1_ps(max);
            let mut sv = _mm256_setzero_ps();
            for i in (0..body).step_by(8) {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(i)), maxv));
                _mm256_storeu_ps(ptr.add(i), e);
                sv = _mm256_add_ps(sv, e);
            }
            // The tail through the same exp, in a padded copy.
            let mut tail = [0f32; 8];
            tail[..n - body].copy_from_slice(&scores[body..]);
            _mm256_storeu_ps(
                tail.as_mut_ptr(),
                exp8(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), maxv)),
            );
            scores[body..].copy_from_slice(&tail[..n - body]);
            _mm256_storeu_ps(lanes.as_mut_ptr(), sv);
            let sum: f32 = lanes.iter().sum::<f32>() + scores[body..].iter().sum::<f32>();
            let sumv = _mm256_set1_ps(sum);
            for i in (0..body).step_by(8) {
                let w = _mm256_div_ps(_mm256_loadu_ps(ptr.add(i)), sumv);
                let w = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(w));
                _mm256_storeu_ps(ptr.add(i), w);
            }
            for v in &mut scores[body..] {
                *v = f16_round(*v / sum);
            }
        }
    }

    #[inline(always)]
    unsafe fn load_h(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    thread_local! {
        /// (scores (g, n_pos), rounded queries (g, 8C), keys or values of 8 positions
        /// (8, 8C), outputs (g, 8C)) reused between calls on a thread.
        static SCRATCH: std::cell::RefCell<[Vec<f32>; 4]> =
            const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()]) };
    }

    /// `g` query heads of width 8·C that share one KV head: `q` and `out` are (g, 8C). Each
    /// run of 8 keys (and of 8 values) is converted from f16 once into a small f32 buffer
    /// and read by every head; per head, the operations and their order are those of a
    /// single head, so the result equals `g` separate calls bit for bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn attend_group<const C: usize>(
        q: &[f32],
        g: usize,
        kv: HeadSlabs,
        n_pos: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let w = 8 * C;
        assert!(g > 0 && q.len() == g * w && out.len() >= g * w && n_pos > 0);
        assert!(n_pos.div_ceil(kv.block) <= kv.table.len());
        for (_, row, len) in kv.runs(n_pos) {
            assert!(
                kv.keys.len().min(kv.values.len()) >= (row + len - 1) * kv.stride + kv.offset + w
            );
        }
        SCRATCH.with(|cell| {
            let mut bufs = cell.borrow_mut();
            let [scores, qr, rows8, o] = &mut *bufs;
            scores.clear();
            scores.resize(g * n_pos, 0.0);
            qr.clear();
            qr.resize(g * w, 0.0);
            rows8.clear();
            rows8.resize(8 * w, 0.0);
            o.clear();
            o.resize(g * w, 0.0);
            // SAFETY: the CPU features are this function's; every slab read was bounds-checked
            // above and every buffer is sized here.
            unsafe { group_body::<C>(q, g, kv, n_pos, scale, scores, qr, rows8, o) };
            out[..g * w].copy_from_slice(o);
        })
    }

    /// Rows `j0..j0 + m` of a run starting at slab row `row0` (keys or values, from `base`),
    /// this head's 8·C elements each, into `rows8` as (m, 8C) f32.
    #[inline(always)]
    unsafe fn convert_rows<const C: usize>(
        base: *const f16,
        kv: &HeadSlabs,
        row0: usize,
        j0: usize,
        m: usize,
        rows8: *mut f32,
    ) {
        unsafe {
            for j in 0..m {
                let src = base.add((row0 + j0 + j) * kv.stride + kv.offset);
                for c in 0..C {
                    _mm256_storeu_ps(rows8.add(j * 8 * C + 8 * c), load_h(src.add(8 * c)));
                }
            }
        }
    }

    /// The body of [`attend_group`], compiled with its features (not inside a closure, whose
    /// code would not get them).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group_body<const C: usize>(
        q: &[f32],
        g: usize,
        kv: HeadSlabs,
        n_pos: usize,
        scale: f32,
        scores: &mut [f32],
        qr: &mut [f32],
        rows8: &mut [f32],
        o: &mut [f32],
    ) {
        unsafe {
            let w = 8 * C;
            // The queries, rounded to f16 and back (vcvtps2ph/vcvtph2ps round to nearest even).
            for i in (0..g * w).step_by(8) {
                let x = _mm256_loadu_ps(q.as_ptr().add(i));
                let r = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
                _mm256_storeu_ps(qr.as_mut_ptr().add(i), r);
            }
            let rb = rows8.as_mut_ptr();
            for (p0, row0, len) in kv.runs(n_pos) {
                let mut p = 0;
                while p + 8 <= len {
                    convert_rows::<C>(kv.keys.as_ptr(), &kv, row0, p, 8, rb);
                    for h in 0..g {
                        let qh = qr.as_ptr().add(h * w);
                        let mut acc = [_mm256_setzero_ps(); 8];
                        for (j, a) in acc.iter_mut().enumerate() {
                            for c in 0..C {
                                let qc = _mm256_loadu_ps(qh.add(8 * c));
                                *a =
                                    _mm256_fmadd_ps(qc, _mm256_loadu_ps(rb.add(j * w + 8 * c)), *a);
                            }
                        }
                        let t0 = _mm256_hadd_ps(acc[0], acc[1]);
                        let t1 = _mm256_hadd_ps(acc[2], acc[3]);
                        let t2 = _mm256_hadd_ps(acc[4], acc[5]);
                        let t3 = _mm256_hadd_ps(acc[6], acc[7]);
                        let u0 = _mm256_hadd_ps(t0, t1);
                        let u1 = _mm256_hadd_ps(t2, t3);
                        let sums = _mm256_add_ps(
                            _mm256_permute2f128_ps(u0, u1, 0x20),
                            _mm256_permute2f128_ps(u0, u1, 0x31),
                        );
                        _mm256_storeu_ps(
                            scores.as_mut_ptr().add(h * n_pos + p0 + p),
                            _mm256_mul_ps(sums, _mm256_set1_ps(scale)),
                        );
                    }
                    p += 8;
                }
                while p < len {
                    convert_rows::<C>(kv.keys.as_ptr(), &kv, row0, p, 1, rb);
                    for h in 0..g {
                        let qh = qr.as_ptr().add(h * w);
                        let mut a = _mm256_setzero_ps();
                        for c in 0..C {
                            let qc = _mm256_loadu_ps(qh.add(8 * c));
                            a = _mm256_fmadd_ps(qc, _mm256_loadu_ps(rb.add(8 * c)), a);
                        }
                        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                        scores[h * n_pos + p0 + p] =
                            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s))) * scale;
                    }
                    p += 1;
                }
            }
            for h in 0..g {
                softmax_f16_weights(&mut scores[h * n_pos..(h + 1) * n_pos]);
            }
            for (p0, row0, len) in kv.runs(n_pos) {
                for j0 in (0..len).step_by(8) {
                    let m = 8.min(len - j0);
                    convert_rows::<C>(kv.values.as_ptr(), &kv, row0, j0, m, rb);
                    for h in 0..g {
                        let oh = o.as_mut_ptr().add(h * w);
                        let mut acc = [_mm256_setzero_ps(); C];
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_loadu_ps(oh.add(8 * c));
                        }
                        for j in 0..m {
                            let wv = _mm256_set1_ps(scores[h * n_pos + p0 + j0 + j]);
                            for (c, a) in acc.iter_mut().enumerate() {
                                *a =
                                    _mm256_fmadd_ps(wv, _mm256_loadu_ps(rb.add(j * w + 8 * c)), *a);
                            }
                        }
                        for (c, a) in acc.iter().enumerate() {
                            _mm256_storeu_ps(oh.add(8 * c), *a);
                        }
                    }
                }
            }
        }
    }
}

/// `out (g, head_dim) = softmax(q·Kᵀ · scale) · V` for `g` query heads, `q` (g, head_dim),
/// that share one KV head (grouped-query attention), over positions `0..n_pos`, with variant
/// `v` (the reference for head widths without a SIMD form, or if this CPU cannot run `v`).
/// Each head's result equals its own [`attend_with`] call bit for bit; the group shares the
/// conversion of the f16 keys and values.
#[allow(clippy::too_many_arguments)]
pub fn attend_group_with(
    v: Variant,
    q: &[f32],
    g: usize,
    kv: HeadSlabs,
    n_pos: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(g > 0 && q.len().is_multiple_of(g) && out.len() >= q.len());
    let hd = q.len() / g;
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && available_variants().contains(&v) {
        // SAFETY: AVX2, FMA and F16C were detected; `attend_group` checks the slab bounds.
        unsafe {
            match hd {
                32 => return x86::attend_group::<4>(q, g, kv, n_pos, scale, out),
                64 => return x86::attend_group::<8>(q, g, kv, n_pos, scale, out),
                80 => return x86::attend_group::<10>(q, g, kv, n_pos, scale, out),
                96 => return x86::attend_group::<12>(q, g, kv, n_pos, scale, out),
                128 => return x86::attend_group::<16>(q, g, kv, n_pos, scale, out),
                _ => {}
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
    for (qh, oh) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
        attend_reference(qh, kv, n_pos, scale, oh);
    }
}

/// [`attend_group_with`] with the process's kernel variant.
pub fn attend_group(q: &[f32], g: usize, kv: HeadSlabs, n_pos: usize, scale: f32, out: &mut [f32]) {
    attend_group_with(crate::variant(), q, g, kv, n_pos, scale, out)
}

/// `out (head_dim,) = softmax(q·Kᵀ · scale) · V` over positions `0..n_pos`, with variant `v`
/// (the reference for head widths without a SIMD form, or if this CPU cannot run `v`).
pub fn attend_with(
    v: Variant,
    q: &[f32],
    kv: HeadSlabs,
    n_pos: usize,
    scale: f32,
    out: &mut [f32],
) {
    attend_group_with(v, q, 1, kv, n_pos, scale, out)
}

/// [`attend_with`] with the process's kernel variant.
pub fn attend(q: &[f32], kv: HeadSlabs, n_pos: usize, scale: f32, out: &mut [f32]) {
    attend_with(crate::variant(), q, kv, n_pos, scale, out)
}
