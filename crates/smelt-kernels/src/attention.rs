//! One attention head for one query over an f16 KV cache: `out = softmax(score(q·Kᵀ)) · V`,
//! each score scaled and, for Gemma 2, soft-capped ([`Score`]).
//!
//! The arithmetic is llama.cpp's CPU path without flash attention, operation for operation, so
//! that the results are the same floats (`docs/design.md`, "Why ggml's rounding"):
//! - the query and the attention weights are rounded to f16 before they meet the f16 keys and
//!   values;
//! - both products sum in the order of the ggml routine llama.cpp uses for them ([`Order`]):
//!   with one new token, `ggml_vec_dot_f16` (AVX-512: four 16-lane accumulators over every 64
//!   values, the leftovers added in f64); with several, llamafile's `tinyBLAS` (one 16-lane
//!   accumulator chain), when the length is a multiple of 16. Sixteen lanes then reduce in
//!   GCC's `_mm512_reduce_add_ps` tree ([`reduce16`]);
//! - the softmax is ggml's: e^x by `silu::exp` over 16-position chunks aligned to position 0,
//!   each chunk's sum added in f64, and the weights scaled by `(float)(1.0 / sum)`.
//!
//! The weighted sum over positions runs lane by lane: position p feeds lane `p % 16` of chunk
//! `p / 16`. The AVX2 variant (head widths that are multiples of 16, up to 128) keeps each
//! lane's chain over positions in registers across the head's dimensions, serves the query
//! heads of one KV head together, and computes every head exactly as the reference does.
//!
//! A prompt's consecutive tokens attend prefixes of the same keys and values: [`attend_rows`]
//! serves several query rows, each over its own positions, converting and loading each key
//! and value once for all of them; a row's extra terms (positions past its own end) have
//! weight +0 and change no chain.
//!
//! A sliding window (Gemma's local layers) attends positions `first..n_pos`: the positions
//! before `first` are llama.cpp's masked ones, scores of −∞ and weights of exactly 0, so
//! skipping them changes no sum as long as the lanes stay aligned to position 0; whole
//! 16-position chunks (and 128-position blocks of the weighted sum) before the window are
//! skipped, which is where the window saves work.

use std::ops::Range;

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

/// How a q·k dot product becomes the softmax's input, in llama.cpp's operations: with a soft
/// cap c (Gemma 2), `c · tanh(dot · (1/c))` (`ggml_scale`, `tanhf`, `ggml_scale`), then times
/// `scale` (the softmax's `kq_scale`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The factor on the (capped) dot product: 1/√head_dim, or 1 where the queries were
    /// scaled before.
    pub scale: f32,
    /// The soft cap, if any.
    pub softcap: Option<f32>,
}

/// `c · tanh(x · (1/c))` as llama.cpp computes a soft cap (`ggml_scale` by the f32 `1/c`,
/// `tanhf`, `ggml_scale` by c): Gemma 2's attention scores, Gemma's final logits.
pub fn softcap(x: f32, c: f32) -> f32 {
    (x * (1.0 / c)).tanh() * c
}

impl Score {
    /// `dot · scale`, uncapped.
    pub fn scaled(scale: f32) -> Self {
        Self {
            scale,
            softcap: None,
        }
    }

    /// The softmax input for dot product `dot`.
    pub fn of(self, dot: f32) -> f32 {
        let capped = match self.softcap {
            Some(c) => softcap(dot, c),
            None => dot,
        };
        capped * self.scale
    }
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Which of llama.cpp's two f16 products an attention step's sums follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// A sequence's single new token (decode): `ggml_vec_dot_f16`.
    Single,
    /// Several new tokens of a sequence (a prompt): llamafile's `tinyBLAS`, which llama.cpp
    /// uses for products over more than one token when the summed length is a multiple of 16
    /// (otherwise it falls back to `ggml_vec_dot_f16`, and so does this).
    Batch,
}

impl Order {
    /// The order llama.cpp uses when a sequence runs `n_new` tokens in one pass.
    pub fn for_tokens(n_new: usize) -> Self {
        if n_new >= 2 {
            Order::Batch
        } else {
            Order::Single
        }
    }

    /// Whether a length-`n` product sums as one 16-lane chain.
    fn chained(self, n: usize) -> bool {
        self == Order::Batch && n.is_multiple_of(16)
    }
}

/// Sixteen lanes summed as GCC's `_mm512_reduce_add_ps` does: halves, quarters, then pairs.
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let t8: [f32; 8] = std::array::from_fn(|i| a[i] + a[i + 8]);
    let t4: [f32; 4] = std::array::from_fn(|i| t8[i] + t8[i + 4]);
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// `Σ x_k·y_k` over `k < n` (a multiple of 16) as llamafile's `tinyBLAS` sums it: one 16-lane
/// FMA chain, then [`reduce16`]. `xy(k)` gives the k-th pair.
pub(crate) fn chain16(n: usize, xy: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut acc = [0f32; 16];
    for k in 0..n {
        let (x, y) = xy(k);
        acc[k % 16] = x.mul_add(y, acc[k % 16]);
    }
    reduce16(&acc)
}

/// `Σ x_k·y_k` over `k < np` (a multiple of 64) as ggml's AVX-512 `vec_dot` for f16 and f32
/// sums it: four 16-lane FMA accumulators over each 64, added as (a0 + a2) + (a1 + a3), then
/// [`reduce16`]. The callers add the leftovers past `np` their own way.
pub(crate) fn four_lanes64(np: usize, xy: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    for k in 0..np {
        let (x, y) = xy(k);
        let s = &mut acc[k % 64 / 16][k % 16];
        *s = x.mul_add(y, *s);
    }
    let a0: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    reduce16(&a0)
}

/// `Σ x·y` in `order`'s summation order (see the module docs).
pub fn dot_in_order(order: Order, x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot of unequal lengths");
    let n = x.len();
    let xy = |k: usize| (x[k], y[k]);
    if order.chained(n) {
        return chain16(n, xy);
    }
    let np = n - n % 64;
    let mut sum = four_lanes64(np, xy) as f64;
    for k in np..n {
        sum += (x[k] * y[k]) as f64;
    }
    sum as f32
}

/// Positions padded for the weighted sum: whole 64-position steps for [`Order::Single`] (its
/// four accumulators), whole 16-position chunks for [`Order::Batch`]. The padding has zero
/// weight, so it adds nothing; llama.cpp's own padding (to 256 positions) is a multiple of both.
fn padded(order: Order, n_pos: usize) -> usize {
    match order {
        Order::Single => n_pos.div_ceil(64) * 64,
        Order::Batch => n_pos.div_ceil(16) * 16,
    }
}

/// ggml's softmax of `scores` (n_pos,), in place, then each weight rounded to f16.
fn softmax_f16_weights(scores: &mut [f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    for chunk in scores.chunks_mut(16) {
        let mut lanes = [0f32; 16];
        for (l, v) in chunk.iter_mut().enumerate() {
            *v = crate::silu::exp(*v - max);
            lanes[l] = *v;
        }
        sum += reduce16(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in scores.iter_mut() {
        *v = f16_round(*v * inv);
    }
}

/// Reference: `out (head_dim,) = softmax(score(q·Kᵀ)) · V` over the positions `pos`
/// (`first..n_pos`, not empty), summed in `order` with lanes aligned to position 0.
pub fn attend_reference(
    q: &[f32],
    kv: HeadSlabs,
    pos: Range<usize>,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    assert!(pos.start < pos.end, "attention over no positions");
    let (first, n_pos) = (pos.start, pos.end);
    let hd = q.len();
    // (hd,) the query rounded to f16.
    let q16: Vec<f32> = q.iter().map(|&v| f16_round(v)).collect();
    let row = |slab: &[f16], p: usize| -> Vec<f32> {
        slab[kv.row(p) * kv.stride + kv.offset..][..hd]
            .iter()
            .map(|v| v.to_f32())
            .collect()
    };
    // (n_pos,) scores (−∞ before the window, llama.cpp's mask), then weights; padded to
    // (n_pad,) with zeros below.
    let mut w: Vec<f32> = (0..n_pos)
        .map(|p| {
            if p < first {
                f32::NEG_INFINITY
            } else {
                score.of(dot_in_order(order, &row(kv.keys, p), &q16))
            }
        })
        .collect();
    softmax_f16_weights(&mut w);
    let n_pad = padded(order, n_pos);
    w.resize(n_pad, 0.0);
    // (n_pad, hd) values, zero past n_pos.
    let mut v = vec![0f32; n_pad * hd];
    for p in first..n_pos {
        v[p * hd..(p + 1) * hd].copy_from_slice(&row(kv.values, p));
    }
    for (d, o) in out[..hd].iter_mut().enumerate() {
        let col: Vec<f32> = (0..n_pad).map(|p| v[p * hd + d]).collect();
        *o = dot_in_order(order, &col, &w);
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "attention_x86.rs"]
mod x86;

/// Whether the SIMD form takes heads of width `hd` (multiples of 16 up to 128, and Gemma's
/// 256).
fn simd_width(hd: usize) -> bool {
    hd.is_multiple_of(16) && (16..=128).contains(&hd) || hd == 256
}

/// `out (g, head_dim) = softmax(score(q·Kᵀ)) · V` for `g` query heads, `q` (g, head_dim),
/// that share one KV head (grouped-query attention), over the positions `pos` (`0..n_pos`
/// causally, `first..n_pos` in a sliding window; not empty), with variant `v` (the reference
/// for head widths without a SIMD form, or if this CPU cannot run `v`). Each head's result
/// equals its own [`attend_with`] call bit for bit; the group shares the conversion of the
/// f16 keys and values.
#[allow(clippy::too_many_arguments)]
pub fn attend_group_with(
    v: Variant,
    q: &[f32],
    g: usize,
    kv: HeadSlabs,
    pos: Range<usize>,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_any(v, q, g, std::slice::from_ref(&pos), kv, score, order, out)
}

/// `out (rows, head_dim) = softmax(score(q·Kᵀ)) · V` for query rows `q` (rows, head_dim) that
/// share one KV head, row r over the positions `ranges[r]` (rows = `ranges.len()`, none
/// empty), with variant `v`. A prompt's consecutive tokens are such rows: each reads a
/// prefix of the same keys and values, and together they convert and load each key and value
/// once. Each row's result equals its own [`attend_with`] call bit for bit.
pub fn attend_rows_with(
    v: Variant,
    q: &[f32],
    ranges: &[Range<usize>],
    kv: HeadSlabs,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_any(v, q, ranges.len(), ranges, kv, score, order, out)
}

/// [`attend_rows_with`] with the process's kernel variant.
pub fn attend_rows(
    q: &[f32],
    ranges: &[Range<usize>],
    kv: HeadSlabs,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_rows_with(crate::variant(), q, ranges, kv, score, order, out)
}

/// `g` rows over `ranges` (one per row, or one for all).
#[allow(clippy::too_many_arguments)]
fn attend_any(
    v: Variant,
    q: &[f32],
    g: usize,
    ranges: &[Range<usize>],
    kv: HeadSlabs,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    assert!(g > 0 && q.len().is_multiple_of(g) && out.len() >= q.len());
    assert!(
        ranges.len() == 1 || ranges.len() == g,
        "one range, or one per row"
    );
    let hd = q.len() / g;
    #[cfg(target_arch = "x86_64")]
    if v != Variant::Reference && available_variants().contains(&v) && simd_width(hd) {
        // SAFETY: AVX2, FMA and F16C were detected (and AVX-512 for `wide`); `attend_group`
        // checks the slab bounds.
        let wide = v == Variant::Avx512Vnni;
        return unsafe { x86::attend_group(q, g, hd, kv, ranges, score, order, wide, out) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
    for (r, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
        let pos = ranges[if ranges.len() == 1 { 0 } else { r }].clone();
        attend_reference(qh, kv, pos, score, order, oh);
    }
}

/// [`attend_group_with`] with the process's kernel variant.
pub fn attend_group(
    q: &[f32],
    g: usize,
    kv: HeadSlabs,
    pos: Range<usize>,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_group_with(crate::variant(), q, g, kv, pos, score, order, out)
}

/// `out (head_dim,) = softmax(score(q·Kᵀ)) · V` over the positions `pos`, with variant `v`
/// (the reference for head widths without a SIMD form, or if this CPU cannot run `v`).
pub fn attend_with(
    v: Variant,
    q: &[f32],
    kv: HeadSlabs,
    pos: Range<usize>,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_group_with(v, q, 1, kv, pos, score, order, out)
}

/// [`attend_with`] with the process's kernel variant.
pub fn attend(
    q: &[f32],
    kv: HeadSlabs,
    pos: Range<usize>,
    score: Score,
    order: Order,
    out: &mut [f32],
) {
    attend_with(crate::variant(), q, kv, pos, score, order, out)
}
