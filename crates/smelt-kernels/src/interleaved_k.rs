//! Row-interleaved k-quant weights for the batch orders on AVX-512 VNNI (prompts).
//!
//! llama.cpp sums the rows of a batch of a k-quant product in an order whose float work is
//! once per super-block (the tiled matmul: `r = S·d − dmin·M`, `acc = fma(r, d_y, acc)`) or
//! once per 64 or 128 weights (repacked Q4_K's and Q2_K's gemm); only exact integer sums
//! feed it. Here 16 rows are decoded at load into unsigned byte codes interleaved four at a
//! time, as `interleaved.rs` does for the 32-block formats, so one `vpdpbusd` against a
//! token's four activation bytes (broadcast from memory) adds four codes of 16 rows into one
//! lane per row; a 16-weight group's sum is then scaled by the 16 rows' group scales with one
//! `vpmulld`, and the float work runs on 16 rows at once. Repacked Q4_K's and Q2_K's gemv (one
//! token, and a batch's leftover rows) scale only whole super-blocks' sums too, so the copy
//! serves those rows as well; the one-token order of the other formats (ggml's eight lanes)
//! stays with the row-at-a-time kernels, which read the file's own bytes.
//!
//! Layout of a group of 16 rows, super-block by super-block ([`block_bytes`] each):
//! - codes: (64, 16, 4) bytes: dword k of each row's 256 unsigned codes u (w = d·sc·(u − bias)
//!   − dmin·m), row after row. Formats whose codes take 4 bits or fewer (Q2_K, Q3_K, Q4_K; and
//!   IQ4_XS, whose codes are 16 table values) keep them as nibbles instead, half the bytes:
//!   (32, 16, 4), where dwords 4g + i and 4g + i + 2 (i = 0, 1) of a 16-weight group g share
//!   one 64-byte line, the first in the low nibbles; IQ4_XS keeps the table index;
//! - scales: (G, 16) i8, group g of each row; mins: (G, 16) u8, where a group is 16 weights
//!   (G = 16), or 32 for the formats whose scales and mins cover 32 (Q4_K, Q5_K, IQ4_XS: G = 8,
//!   so a copy of Q4_K takes 152 bytes per row and super-block against the file's 144);
//! - d, dmin: (16,) f32 each.
//!
//! The copy takes 0.59 bytes per weight (Q4_K, IQ4_XS), 0.66 (Q2_K, Q3_K), 1.09 (Q5_K) or 1.16
//! (Q6_K) besides the file's own bytes (which single tokens of the formats other than Q4_K and
//! Q2_K still read); the copies of a process stay within a budget
//! (`SMELT_INTERLEAVE_BUDGET_MB`, default 1024), and `SMELT_NO_INTERLEAVE` switches them off.

use std::arch::x86_64::*;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use smelt_gguf::blocks::iq4_nl::KVALUES_U8;

use crate::WeightType;
use crate::act::BlockQ8K;
use crate::interleaved::{GROUP, Lines};

/// How a copy keeps its codes ([`group`]'s `CODES`).
mod codes {
    /// One byte per code.
    pub const BYTES: u8 = 0;
    /// Two codes per byte, the code itself.
    pub const NIBBLES: u8 = 1;
    /// Two per byte, an index into IQ4_NL's 16 values (as unsigned bytes).
    pub const TABLE: u8 = 2;
}

/// Bytes of the codes of one super-block of a 16-row group.
const fn code_bytes(codes: u8) -> usize {
    if codes == codes::BYTES {
        64 * 64
    } else {
        32 * 64
    }
}

/// Scale groups per super-block: 8 where scales and mins cover 32 weights (`pairs`), else 16.
const fn scale_groups(pairs: bool) -> usize {
    if pairs { 8 } else { 16 }
}

/// Bytes of one super-block of a 16-row group: codes, scales, mins, d, dmin.
const fn block_bytes(codes: u8, pairs: bool) -> usize {
    code_bytes(codes) + 2 * 16 * scale_groups(pairs) + 2 * 64
}

/// Whether `ty`'s scales (and mins) cover 32 weights.
fn pairs_of(ty: WeightType) -> bool {
    matches!(ty, WeightType::Q4K | WeightType::Q5K | WeightType::IQ4XS)
}

/// How `ty`'s copy keeps its codes.
fn codes_of(ty: WeightType) -> u8 {
    match ty {
        WeightType::Q2K | WeightType::Q3K | WeightType::Q4K => codes::NIBBLES,
        WeightType::IQ4XS => codes::TABLE,
        _ => codes::BYTES,
    }
}

/// `rows` rows of `row_bytes` bytes of `ty` super-blocks → the interleaved layout.
fn repack(ty: WeightType, src: &[u8], rows: usize, row_bytes: usize) -> Lines {
    let bb = ty.block().1;
    let nb = row_bytes / bb;
    let (kind, pairs) = (codes_of(ty), pairs_of(ty));
    let (cb, blk, ng) = (
        code_bytes(kind),
        block_bytes(kind, pairs),
        scale_groups(pairs),
    );
    // The nibble that stands for code u.
    let nibble = |u: u8| -> u8 {
        match kind {
            codes::TABLE => KVALUES_U8
                .iter()
                .position(|&v| v == u)
                .expect("an IQ4 value") as u8,
            _ => {
                debug_assert!(u < 16);
                u
            }
        }
    };
    let mut buf = Lines::zeroed(rows / GROUP * nb * blk);
    buf.bytes_mut()
        .par_chunks_mut(nb * blk)
        .enumerate()
        .for_each(|(g, out)| {
            for b in 0..nb {
                let dst = &mut out[b * blk..][..blk];
                for r in 0..GROUP {
                    let row = &src[(g * GROUP + r) * row_bytes..][..row_bytes];
                    let x = crate::kdecode::decode(ty, &row[b * bb..][..bb]);
                    for k in 0..64 {
                        let four = &x.u[4 * k..4 * k + 4];
                        if kind == codes::BYTES {
                            dst[(k * GROUP + r) * 4..][..4].copy_from_slice(four);
                            continue;
                        }
                        // Line 2·(k / 4) + k % 2, the low nibbles for k % 4 < 2.
                        let (line, shift) = (2 * (k / 4) + k % 2, 4 * (k % 4 / 2));
                        for (e, &u) in four.iter().enumerate() {
                            dst[line * 64 + r * 4 + e] |= nibble(u) << shift;
                        }
                    }
                    for k in 0..ng {
                        let grp = k * 16 / ng;
                        debug_assert!(
                            !pairs || (x.sc[grp], x.m[grp]) == (x.sc[grp + 1], x.m[grp + 1])
                        );
                        dst[cb + k * GROUP + r] = x.sc[grp] as u8;
                        dst[cb + 16 * ng + k * GROUP + r] = x.m[grp];
                    }
                    let dd = cb + 32 * ng;
                    dst[dd + 4 * r..][..4].copy_from_slice(&x.d.to_le_bytes());
                    dst[dd + 64 + 4 * r..][..4].copy_from_slice(&x.dmin.to_le_bytes());
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
    /// Repacked Q4_K's and Q2_K's gemv (one token, and the rows a batch leaves over after its
    /// groups of 4): the same per super-block.
    pub const GEMV: u8 = 3;
}

/// One group of 16 rows against `T` tokens; token t's 16 results go to `out + t · ld`.
#[inline(always)]
unsafe fn group<
    const BIAS: i32,
    const MINS: bool,
    const PAIRS: bool,
    const ORDER: u8,
    const CODES: u8,
    const T: usize,
>(
    w: &[u8],
    a: &[&[BlockQ8K]; T],
    out: *mut f32,
    ld: usize,
) {
    use order::*;
    let (cb, blk, ng) = (
        code_bytes(CODES),
        block_bytes(CODES, PAIRS),
        scale_groups(PAIRS),
    );
    unsafe {
        let nb = w.len() / blk;
        let low = _mm512_set1_epi8(0x0f);
        let table = _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES_U8.as_ptr() as *const _));
        let (mut acc, mut macc) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
        for b in 0..nb {
            let p = w.as_ptr().add(b * blk);
            if b + 1 < nb {
                let ahead = p.add(blk);
                for line in (0..blk).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(line) as *const i8);
                }
            }
            let d = _mm512_loadu_ps(p.add(cb + 32 * ng) as *const f32);
            let dmin = _mm512_loadu_ps(p.add(cb + 32 * ng + 64) as *const f32);
            // (T,) per-row integer sums S and M of the current span.
            let (mut s, mut m) = ([_mm512_setzero_si512(); T], [_mm512_setzero_si512(); T]);
            // Scales that cover 32 weights (PAIRS) scale two groups' sums at once.
            let step = if PAIRS { 2 } else { 1 };
            for g in (0..16).step_by(step) {
                // (step · 4,) code vectors: dword i of group g + i / 4, 16 rows. (Loops, not
                // closures: a closure does not inherit the entry point's target features.)
                let mut codes = [_mm512_setzero_si512(); 8];
                for h in 0..step {
                    let q = &mut codes[4 * h..4 * h + 4];
                    let gg = g + h;
                    if CODES == codes::BYTES {
                        for (i, c) in q.iter_mut().enumerate() {
                            *c = _mm512_loadu_si512(p.add((4 * gg + i) * 64) as *const _);
                        }
                        continue;
                    }
                    let x0 = _mm512_loadu_si512(p.add(2 * gg * 64) as *const _);
                    let x1 = _mm512_loadu_si512(p.add((2 * gg + 1) * 64) as *const _);
                    q[0] = _mm512_and_si512(x0, low);
                    q[1] = _mm512_and_si512(x1, low);
                    q[2] = _mm512_and_si512(_mm512_srli_epi16::<4>(x0), low);
                    q[3] = _mm512_and_si512(_mm512_srli_epi16::<4>(x1), low);
                    if CODES == codes::TABLE {
                        for c in q.iter_mut() {
                            *c = _mm512_shuffle_epi8(table, *c);
                        }
                    }
                }
                // The scale group of group g.
                let k = g / step;
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(cb + 16 * k) as *const _));
                // Mins two scale groups at a time (k − 1 and k, at odd k): i16 lane pairs
                // (m_{k−1}, m_k) of each row, so one `vpdpwssd` per token adds both groups'
                // m·Σy. The spans end after odd k, so M is whole at every span's end.
                let mins_now = MINS && k % 2 == 1;
                let mn_pairs = if mins_now {
                    let mins = p.add(cb + 16 * ng);
                    let prev = _mm_loadu_si128(mins.add(16 * (k - 1)) as *const _);
                    let this = _mm_loadu_si128(mins.add(16 * k) as *const _);
                    let rows = _mm256_set_m128i(
                        _mm_unpackhi_epi8(prev, this),
                        _mm_unpacklo_epi8(prev, this),
                    );
                    _mm512_cvtepu8_epi16(rows)
                } else {
                    _mm512_setzero_si512()
                };
                for t in 0..T {
                    let y = a[t].get_unchecked(b);
                    let mut bsum = *y.bsums.get_unchecked(g) as i32;
                    if PAIRS {
                        bsum += *y.bsums.get_unchecked(g + 1) as i32;
                    }
                    // Two chains of `vpdpbusd` (even and odd code dwords), half as long.
                    let mut tg = [_mm512_set1_epi32(-BIAS * bsum), _mm512_setzero_si512()];
                    for (i, code) in codes[..4 * step].iter().enumerate() {
                        let y4 = std::ptr::read_unaligned(
                            y.qs.as_ptr().add(16 * g + 4 * i) as *const i32
                        );
                        tg[i % 2] = _mm512_dpbusd_epi32(tg[i % 2], *code, _mm512_set1_epi32(y4));
                    }
                    let tg = _mm512_add_epi32(tg[0], tg[1]);
                    s[t] = _mm512_add_epi32(s[t], _mm512_mullo_epi32(tg, sc));
                    if mins_now {
                        // Σy over scale group k − 1 (the groups just before g).
                        let mut before = 0i32;
                        for j in g - step..g {
                            before += *y.bsums.get_unchecked(j) as i32;
                        }
                        // Both sums are below 2^13 in magnitude (32 bytes of at most 128).
                        let both = (before as u16 as u32 | (bsum as u16 as u32) << 16) as i32;
                        m[t] = _mm512_dpwssd_epi32(m[t], mn_pairs, _mm512_set1_epi32(both));
                    }
                }
                // The last group taken.
                let g = g + step - 1;
                let span_end = match ORDER {
                    GEMM_64 => g % 4 == 3,
                    GEMM_128 => g % 8 == 7,
                    GEMV => g == 15,
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
unsafe fn rows<
    const BIAS: i32,
    const MINS: bool,
    const PAIRS: bool,
    const ORDER: u8,
    const CODES: u8,
>(
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
            && group_bytes.is_multiple_of(block_bytes(CODES, PAIRS))
            && a.iter()
                .all(|r| r.len() >= group_bytes / block_bytes(CODES, PAIRS)),
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
                    1 => group::<BIAS, MINS, PAIRS, ORDER, CODES, 1>(gw, &[a[t]], o, ld),
                    2 => group::<BIAS, MINS, PAIRS, ORDER, CODES, 2>(gw, &[a[t], a[t + 1]], o, ld),
                    3 => group::<BIAS, MINS, PAIRS, ORDER, CODES, 3>(
                        gw,
                        &[a[t], a[t + 1], a[t + 2]],
                        o,
                        ld,
                    ),
                    _ => group::<BIAS, MINS, PAIRS, ORDER, CODES, 4>(
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
    ($name:ident, $bias:literal, $mins:literal, $pairs:literal, $order:ident, $codes:ident) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        unsafe fn $name(w: &[u8], group_bytes: usize, a: &[&[BlockQ8K]], out: *mut f32, ld: usize) {
            unsafe {
                rows::<$bias, $mins, $pairs, { order::$order }, { codes::$codes }>(
                    w,
                    group_bytes,
                    a,
                    out,
                    ld,
                )
            }
        }
    };
}

// Kernel, BIAS, MINS, PAIRS (scales per 32 weights), order, codes.
kgroup_kernel!(tiled_mins, 0, true, true, TILED, BYTES); // Q5_K
kgroup_kernel!(tiled_bias4, 4, false, false, TILED, NIBBLES); // Q3_K
kgroup_kernel!(tiled_bias32, 32, false, false, TILED, BYTES); // Q6_K
kgroup_kernel!(tiled_bias128, 128, false, true, TILED, TABLE); // IQ4_XS
kgroup_kernel!(gemm_64, 0, true, true, GEMM_64, NIBBLES); // Q4_K
kgroup_kernel!(gemm_128, 0, true, false, GEMM_128, NIBBLES); // Q2_K
kgroup_kernel!(gemv_q4_k, 0, true, true, GEMV, NIBBLES); // Q4_K
kgroup_kernel!(gemv_q2_k, 0, true, false, GEMV, NIBBLES); // Q2_K

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

/// A matrix's interleaved copy and the kernels that read it.
pub(crate) struct KGroups {
    /// (rows / 16, super-blocks per row, [`block_bytes`]) the interleaved groups.
    pub lines: Lines,
    /// The rows of a batch, in llama.cpp's batch order for the matrix.
    pub batch: KGroupKernel,
    /// The other rows (a token alone, a batch's leftovers), where the copy can sum them in
    /// llama.cpp's order for those (repacked Q4_K's and Q2_K's gemv); else the row kernels
    /// take them from the file's bytes.
    pub alone: Option<KGroupKernel>,
    /// Bytes of one group of 16 rows.
    pub group_bytes: usize,
    /// The copy's share of the budget.
    _reserved: Reserved,
}

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
    let (batch, alone): (KGroupKernel, Option<KGroupKernel>) = match ty {
        W::Q4K => (gemm_64, Some(gemv_q4_k)),
        W::Q2K => (gemm_128, Some(gemv_q2_k)),
        W::Q5K => (tiled_mins, None),
        W::Q3K => (tiled_bias4, None),
        W::Q6K => (tiled_bias32, None),
        W::IQ4XS => (tiled_bias128, None),
        _ => return None,
    };
    let group_bytes = row_bytes / ty.block().1 * block_bytes(codes_of(ty), pairs_of(ty));
    let reserved = Reserved::take(rows / GROUP * group_bytes)?;
    Some(KGroups {
        lines: repack(ty, src, rows, row_bytes),
        batch,
        alone,
        group_bytes,
        _reserved: reserved,
    })
}
