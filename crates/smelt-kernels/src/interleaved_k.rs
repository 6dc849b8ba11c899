//! Row-interleaved k-quant weights for the batch orders on AVX-512 VNNI (prompts).
//!
//! llama.cpp sums the rows of a batch of a k-quant product in an order whose float work is
//! once per super-block (the tiled matmul: `r = S·d − dmin·M`, `acc = fma(r, d_y, acc)`) or
//! once per 64 or 128 weights (repacked Q4_K's and Q2_K's gemm); only exact integer sums
//! feed it. Here 16 rows are decoded at load into unsigned byte codes interleaved four at a
//! time, as `interleaved.rs` does for the 32-block formats, so one `vpdpbusd` against a
//! token's four activation bytes (broadcast from memory) adds four codes of 16 rows into one
//! lane per row; a 16-weight group's sum is then scaled by the 16 rows' group scales with one
//! `vpmulld`, and the float work runs on 16 rows at once. The row-at-a-time kernels keep the
//! one-token orders (ggml's eight lanes; repacked Q4_K's and Q2_K's gemv) and read the file's
//! own bytes.
//!
//! Layout of a group of 16 rows, super-block by super-block ([`BLOCK_BYTES`] each):
//! - codes: (64, 16, 4) bytes: dword k of each row's 256 unsigned codes u (w = d·sc·(u − bias)
//!   − dmin·m), row after row;
//! - scales: (16, 16) i8, 16-weight group g of each row; mins: (16, 16) u8;
//! - d, dmin: (16,) f32 each.
//!
//! The copy takes 1.16 bytes per weight besides the file's own bytes (which single tokens
//! still read); the copies of a process stay within a budget (`SMELT_INTERLEAVE_BUDGET_MB`,
//! default 1024), and `SMELT_NO_INTERLEAVE` switches them off.

use std::arch::x86_64::*;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::WeightType;
use crate::act::BlockQ8K;
use crate::interleaved::{GROUP, Lines};

/// Bytes of one super-block of a 16-row group.
const BLOCK_BYTES: usize = 64 * 64 + 2 * 256 + 2 * 64;

/// `rows` rows of `row_bytes` bytes of `ty` super-blocks → the interleaved layout.
fn repack(ty: WeightType, src: &[u8], rows: usize, row_bytes: usize) -> Lines {
    let bb = ty.block().1;
    let nb = row_bytes / bb;
    let mut buf = Lines::zeroed(rows / GROUP * nb * BLOCK_BYTES);
    buf.bytes_mut()
        .par_chunks_mut(nb * BLOCK_BYTES)
        .enumerate()
        .for_each(|(g, out)| {
            for b in 0..nb {
                let dst = &mut out[b * BLOCK_BYTES..][..BLOCK_BYTES];
                for r in 0..GROUP {
                    let row = &src[(g * GROUP + r) * row_bytes..][..row_bytes];
                    let x = crate::kdecode::decode(ty, &row[b * bb..][..bb]);
                    for k in 0..64 {
                        dst[(k * GROUP + r) * 4..][..4].copy_from_slice(&x.u[4 * k..4 * k + 4]);
                    }
                    for grp in 0..16 {
                        dst[4096 + grp * GROUP + r] = x.sc[grp] as u8;
                        dst[4096 + 256 + grp * GROUP + r] = x.m[grp];
                    }
                    dst[4608 + 4 * r..][..4].copy_from_slice(&x.d.to_le_bytes());
                    dst[4672 + 4 * r..][..4].copy_from_slice(&x.dmin.to_le_bytes());
                }
            }
        });
    buf
}

/// llama.cpp's batch orders ([`group`]'s `ORDER`).
mod order {
    /// The tiled matmul: per super-block `r = S·d` (− dmin·M, fused), `acc = fma(r, d_y, acc)`.
    pub const TILED: u8 = 0;
    /// Repacked Q4_K's gemm: `fma(S, d·d_y)` and `fma(M, dmin·d_y)` per 64 weights.
    pub const GEMM_64: u8 = 1;
    /// Repacked Q2_K's gemm: the same per 128 weights.
    pub const GEMM_128: u8 = 2;
}

/// One group of 16 rows against `T` tokens; token t's 16 results go to `out + t · ld`.
#[inline(always)]
unsafe fn group<const BIAS: i32, const MINS: bool, const ORDER: u8, const T: usize>(
    w: &[u8],
    a: &[&[BlockQ8K]; T],
    out: *mut f32,
    ld: usize,
) {
    use order::*;
    unsafe {
        let nb = w.len() / BLOCK_BYTES;
        let (mut acc, mut macc) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
        for b in 0..nb {
            let p = w.as_ptr().add(b * BLOCK_BYTES);
            if b + 1 < nb {
                let ahead = p.add(BLOCK_BYTES);
                for line in (0..BLOCK_BYTES).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(line) as *const i8);
                }
            }
            let d = _mm512_loadu_ps(p.add(4608) as *const f32);
            let dmin = _mm512_loadu_ps(p.add(4672) as *const f32);
            // (T,) per-row integer sums S and M of the current span.
            let (mut s, mut m) = ([_mm512_setzero_si512(); T], [_mm512_setzero_si512(); T]);
            for g in 0..16 {
                let codes: [__m512i; 4] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(p.add((4 * g + i) * 64) as *const _),
                    );
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(4096 + 16 * g) as *const _));
                let mn = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(4352 + 16 * g) as *const _));
                for t in 0..T {
                    let y = a[t].get_unchecked(b);
                    let bsum = *y.bsums.get_unchecked(g) as i32;
                    let mut tg = _mm512_set1_epi32(-BIAS * bsum);
                    for (i, code) in codes.iter().enumerate() {
                        let y4 = std::ptr::read_unaligned(
                            y.qs.as_ptr().add(16 * g + 4 * i) as *const i32
                        );
                        tg = _mm512_dpbusd_epi32(tg, *code, _mm512_set1_epi32(y4));
                    }
                    s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(tg, sc));
                    if MINS {
                        let mb = _mm512_mullo_epi32(mn, _mm512_set1_epi32(bsum));
                        m[t] = _mm512_add_epi32(m[t], mb);
                    }
                }
                let span_end = match ORDER {
                    GEMM_64 => g % 4 == 3,
                    GEMM_128 => g % 8 == 7,
                    _ => false,
                };
                if span_end {
                    for t in 0..T {
                        let dy = _mm512_set1_ps(a[t].get_unchecked(b).d);
                        let (dd, dm) = (_mm512_mul_ps(d, dy), _mm512_mul_ps(dmin, dy));
                        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), dd, acc[t]);
                        macc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m[t]), dm, macc[t]);
                        s[t] = _mm512_setzero_si512();
                        m[t] = _mm512_setzero_si512();
                    }
                }
            }
            if ORDER == TILED {
                for t in 0..T {
                    let dy = _mm512_set1_ps(a[t].get_unchecked(b).d);
                    let sd = _mm512_mul_ps(_mm512_cvtepi32_ps(s[t]), d);
                    let r = if MINS {
                        _mm512_fnmadd_ps(dmin, _mm512_cvtepi32_ps(m[t]), sd)
                    } else {
                        sd
                    };
                    acc[t] = _mm512_fmadd_ps(r, dy, acc[t]);
                }
            }
        }
        for t in 0..T {
            let r = if ORDER == TILED {
                acc[t]
            } else {
                _mm512_sub_ps(acc[t], macc[t])
            };
            _mm512_storeu_ps(out.add(t * ld), r);
        }
    }
}

/// `f(groups, group_bytes, activation rows, out, ld)`: every group of 16 rows in `groups`
/// against the tile; token t's result for row r goes to `out + t · ld + r`.
pub(crate) type KGroupKernel = unsafe fn(&[u8], usize, &[&[BlockQ8K]], *mut f32, usize);

/// The tile through [`group`], at most 4 tokens a call (the accumulators stay in registers).
#[inline(always)]
unsafe fn rows<const BIAS: i32, const MINS: bool, const ORDER: u8>(
    w: &[u8],
    group_bytes: usize,
    a: &[&[BlockQ8K]],
    out: *mut f32,
    ld: usize,
) {
    assert!(
        crate::TILE_WIDTHS.contains(&a.len())
            && group_bytes > 0
            && w.len().is_multiple_of(group_bytes)
            && ld >= w.len() / group_bytes * GROUP
            && a.iter().all(|r| r.len() >= group_bytes / BLOCK_BYTES),
        "interleaved k-quant tile shape"
    );
    for (g, gw) in w.chunks_exact(group_bytes).enumerate() {
        let mut t = 0;
        while t < a.len() {
            let o = out.wrapping_add(t * ld + g * GROUP);
            let left = a.len() - t;
            // SAFETY: the entry point's target features; `gw` is one whole group, every
            // activation row covers its blocks (checked above), and the caller vouches for
            // `out` at (token, row) of the tile.
            unsafe {
                match left {
                    1 => group::<BIAS, MINS, ORDER, 1>(gw, &[a[t]], o, ld),
                    2 => group::<BIAS, MINS, ORDER, 2>(gw, &[a[t], a[t + 1]], o, ld),
                    3 => group::<BIAS, MINS, ORDER, 3>(gw, &[a[t], a[t + 1], a[t + 2]], o, ld),
                    _ => group::<BIAS, MINS, ORDER, 4>(
                        gw,
                        &[a[t], a[t + 1], a[t + 2], a[t + 3]],
                        o,
                        ld,
                    ),
                }
            }
            t += left.min(4);
        }
    }
}

macro_rules! kgroup_kernel {
    ($name:ident, $bias:literal, $mins:literal, $order:ident) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        unsafe fn $name(w: &[u8], group_bytes: usize, a: &[&[BlockQ8K]], out: *mut f32, ld: usize) {
            unsafe { rows::<$bias, $mins, { order::$order }>(w, group_bytes, a, out, ld) }
        }
    };
}

kgroup_kernel!(tiled_mins, 0, true, TILED); // Q5_K
kgroup_kernel!(tiled_bias4, 4, false, TILED);
kgroup_kernel!(tiled_bias32, 32, false, TILED);
kgroup_kernel!(tiled_bias128, 128, false, TILED);
kgroup_kernel!(gemm_64, 0, true, GEMM_64);
kgroup_kernel!(gemm_128, 0, true, GEMM_128);

/// Bytes of interleaved k-quant copies alive in this process, against [`budget`].
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The most bytes the copies may take together: `SMELT_INTERLEAVE_BUDGET_MB` (default 1024).
/// Matrices past it keep the row-at-a-time kernels (same results, slower prompts), so a large
/// model does not grow by its k-quant bytes again.
fn budget() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var("SMELT_INTERLEAVE_BUDGET_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1024)
            << 20
    })
}

/// A matrix's share of [`IN_USE`], given back when the copy is dropped.
pub(crate) struct Reserved(usize);

impl Reserved {
    fn take(bytes: usize) -> Option<Self> {
        IN_USE
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= budget()).then_some(used + bytes)
            })
            .ok()
            .map(|_| Self(bytes))
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        IN_USE.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// A matrix's interleaved copy: the groups, their kernel, the bytes of one group of 16 rows,
/// and its share of the budget.
pub(crate) type KGroups = (Lines, KGroupKernel, usize, Reserved);

/// The interleaved copy of a `ty` matrix and the kernel for the rows of a batch, when `ty` is
/// a k-quant, the rows come in whole groups of 16 and the budget has room. Such a matrix is
/// one llama.cpp repacks where it repacks the format (Q4_K, Q2_K: then the order of its gemm),
/// and takes the tiled matmul's order otherwise.
pub(crate) fn interleave(
    ty: WeightType,
    src: &[u8],
    rows: usize,
    row_bytes: usize,
) -> Option<KGroups> {
    use WeightType as W;
    if rows == 0 || !rows.is_multiple_of(GROUP) {
        return None;
    }
    debug_assert!(!matches!(ty, W::Q4K | W::Q2K) || crate::ggml_repacks(ty, rows));
    let kernel: KGroupKernel = match ty {
        W::Q4K => gemm_64,
        W::Q2K => gemm_128,
        W::Q5K => tiled_mins,
        W::Q3K => tiled_bias4,
        W::Q6K => tiled_bias32,
        W::IQ4XS => tiled_bias128,
        _ => return None,
    };
    let group_bytes = row_bytes / ty.block().1 * BLOCK_BYTES;
    let reserved = Reserved::take(rows / GROUP * group_bytes)?;
    Some((
        repack(ty, src, rows, row_bytes),
        kernel,
        group_bytes,
        reserved,
    ))
}
