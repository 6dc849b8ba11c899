//! The non-matmul operations of a decoder layer, on batches of token rows: RMSNorm, rotary
//! position embeddings (both GGUF layouts), causal attention over the KV cache (whole or a
//! sliding window), SwiGLU and GeGLU.

use rayon::prelude::*;
use smelt_kernels::attention::{self, HeadSlabs};

use crate::kv_cache::KvPool;
use crate::llama::Span;

/// `out = x / rms(x) · w` for each row of `x` (rows of `w.len()`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let e = w.len();
    let rows = x.par_chunks_exact(e).zip(out.par_chunks_exact_mut(e));
    rows.with_min_len(16).for_each(|(xr, or)| {
        let s = rms_scale(xr, eps);
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * s * g;
        }
    });
}

/// [`rms_norm`] of each `w.len()`-wide row of `x` in place (Qwen 3's per-head q/k norm).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    x.par_chunks_exact_mut(w.len())
        .with_min_len(64)
        .for_each(|row| {
            let s = rms_scale(row, eps);
            row.iter_mut().zip(w).for_each(|(v, &g)| *v = *v * s * g);
        });
}

/// `1 / sqrt(mean(x²) + eps)`: squares in f32 summed in f64 in one chain, in order, as ggml
/// does (so the scale is ggml's float, not just close to it).
fn rms_scale(row: &[f32], eps: f32) -> f32 {
    let sum: f64 = row.iter().map(|v| (v * v) as f64).sum();
    let ms = (sum / row.len() as f64) as f32;
    1.0 / (ms + eps).sqrt()
}

/// How a head's dimensions are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(2i, 2i+1)` (llama in GGUF: the converter permuted q/k to make it so).
    Normal,
    /// Halves `(i, i + n_rot/2)` (GPT-NeoX, Qwen, Phi, ...).
    Neox,
}

/// Rotary embedding settings from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Pairing of dimensions.
    pub layout: RopeLayout,
    /// Dimensions rotated per head (the first `n_rot`; the rest pass through).
    pub n_rot: usize,
    /// Base frequency.
    pub base: f32,
    /// Linear position scaling: positions are divided by this factor (1 = none).
    pub linear_scale: f32,
    /// (n_rot / 2,) llama.cpp's `rope_freqs.weight`, when the model has one: pair i's angle
    /// is divided by factor i (how llama.cpp's converter encodes Llama 3.1's `llama3`
    /// long-context scaling).
    pub freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// (n_pos, n_rot / 2) cos and sin for positions `pos0..pos0 + n_pos`, computed as ggml
    /// does so the angles are the same floats: pair i's angle is `freq_scale · (θ_i / f_i)`,
    /// with θ starting at the position and multiplied by `base^(−2/n_rot)` from pair to pair
    /// (not a power per pair), and f_i the pair's frequency factor (1 without any).
    pub fn table(&self, pos0: usize, n_pos: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.n_rot / 2;
        let (mut cos, mut sin) = (
            Vec::with_capacity(n_pos * half),
            Vec::with_capacity(n_pos * half),
        );
        let theta_scale = self.base.powf(-2.0 / self.n_rot as f32);
        let freq_scale = 1.0 / self.linear_scale;
        for p in pos0..pos0 + n_pos {
            let mut theta = p as f32;
            for i in 0..half {
                let angle = match &self.freq_factors {
                    Some(f) => freq_scale * (theta / f[i]),
                    None => freq_scale * theta,
                };
                cos.push(angle.cos());
                sin.push(angle.sin());
                theta *= theta_scale;
            }
        }
        (cos, sin)
    }

    /// Rotates every head of each row of `x`, (n_pos, n_heads · head_dim), by its row's angles.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("fma") {
            // SAFETY: FMA was detected.
            return unsafe { self.apply_fma(x, head_dim, cos, sin) };
        }
        self.apply_plain(x, head_dim, cos, sin)
    }

    /// [`Rope::apply`] with hardware FMA (the same results as `mul_add`'s library call).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn apply_fma(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        self.apply_plain(x, head_dim, cos, sin)
    }

    #[inline(always)]
    fn apply_plain(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = self.n_rot / 2;
        assert!(
            half > 0 && cos.len().is_multiple_of(half),
            "angles are (n_pos, n_rot / 2)"
        );
        let row_len = x.len() * half / cos.len();
        for (t, row) in x.chunks_exact_mut(row_len).enumerate() {
            let (c, s) = (
                &cos[t * half..(t + 1) * half],
                &sin[t * half..(t + 1) * half],
            );
            for head in row.chunks_exact_mut(head_dim) {
                for i in 0..half {
                    let (ia, ib) = match self.layout {
                        RopeLayout::Normal => (2 * i, 2 * i + 1),
                        RopeLayout::Neox => (i, i + half),
                    };
                    let (a, b) = (head[ia], head[ib]);
                    // Fused as ggml's AVX-512 build contracts them: a·c − (b·s), a·s + (b·c).
                    head[ia] = a.mul_add(c[i], -(b * s[i]));
                    head[ib] = a.mul_add(s[i], b * c[i]);
                }
            }
        }
    }
}

/// Shape of multi-head attention with grouped key/value heads.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// The factor on q·k: 1/√head_dim, or 1 where the queries were scaled before (Phi-3,
    /// Gemma, as llama.cpp runs them).
    pub scale: f32,
    /// The positions a query sees, its own included, in a local layer (Gemma's sliding
    /// window); `None`: every earlier position.
    pub window: Option<usize>,
    /// The soft cap on q·k before the softmax (Gemma 2), if any.
    pub softcap: Option<f32>,
}

/// The first position a query at `pos` sees: 0, or in a sliding window of `window` positions
/// (its own included) `pos + 1 − window`, as llama.cpp masks key p0 for query p1 when
/// `p1 − p0 ≥ window`.
pub fn first_visible(window: Option<usize>, pos: usize) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// Largest head-by-head copy of the rows a call's prompts attend ([`attention`]), keys and
/// values together, in bytes; past it (contexts of many thousand positions) the tasks read
/// the cache itself, with the same results.
const HEAD_ROWS_MAX_BYTES: usize = 64 << 20;

thread_local! {
    /// (rows · kv_dim) f16 keys and values copied head by head by [`attention`], kept
    /// between calls so that a prompt's layers reuse one allocation.
    static HEAD_ROWS: std::cell::RefCell<(Vec<half::f16>, Vec<half::f16>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Causal attention for the new tokens of each span (a sequence's `n` tokens at positions
/// `pos0..pos0 + n`, one after another in `q`) whose keys and values are already in `pool`
/// (layer `layer`), read through each span's block table: `q` and `out` are
/// (Σn, n_head · head_dim). Each (token, KV head) pair is one parallel task; the kernel
/// (and its rounding, which follows llama.cpp's) is `smelt_kernels::attention`.
pub fn attention(
    q: &[f32],
    pool: &KvPool,
    layer: usize,
    spans: &[Span],
    h: Heads,
    out: &mut [f32],
) {
    let hd = h.head_dim;
    let group = h.n_head / h.n_head_kv;
    let score = attention::Score {
        scale: h.scale,
        softcap: h.softcap,
    };
    let (keys, values) = pool.layer(layer);
    let kv_dim = pool.kv_dim();
    // (Σn,) each token's span (by index) and position.
    let tokens: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(i, sp)| (sp.pos0..sp.pos0 + sp.n).map(move |p| (i, p)))
        .collect();
    // Prompts (spans of 2 new tokens or more) read a copy of their rows head by head:
    // (n_head_kv, n_pos, head_dim) per span, keys and values, from `copy_at[span]` on. The
    // cache's rows are kv_dim apart, a power of two in bytes for most models, so one head's
    // rows fall into few cache sets and evict each other long before the cache is full; the
    // copy's are contiguous, and a thread's run of tasks (head by head, below) finds its
    // head's rows in its cache query after query. The same values, so the same results.
    let mut copy_at = Vec::with_capacity(spans.len());
    let mut copied = 0;
    for sp in spans {
        let n_pos = sp.pos0 + sp.n;
        if sp.n >= 2 && (copied + n_pos) * kv_dim * 4 <= HEAD_ROWS_MAX_BYTES {
            copy_at.push(Some(copied * kv_dim));
            copied += n_pos;
        } else {
            copy_at.push(None);
        }
    }
    let (mut k_heads, mut v_heads) = HEAD_ROWS.with(|c| c.take());
    if copied > 0 {
        // Sized, not cleared: every element is written below.
        for buf in [&mut k_heads, &mut v_heads] {
            buf.resize(copied * kv_dim, half::f16::ZERO);
        }
        for (sp, at) in spans.iter().zip(&copy_at) {
            let Some(at) = *at else { continue };
            let n_pos = sp.pos0 + sp.n;
            let len = n_pos * kv_dim;
            for (slab, dst) in [(keys, &mut k_heads), (values, &mut v_heads)] {
                dst[at..at + len]
                    .par_chunks_exact_mut(n_pos * hd)
                    .enumerate()
                    .for_each(|(head, d)| {
                        for (p, row) in d.chunks_exact_mut(hd).enumerate() {
                            let src = sp.kv.row(p) * kv_dim + head * hd;
                            row.copy_from_slice(&slab[src..src + hd]);
                        }
                    });
            }
        }
    }
    // Tasks: (token, KV head) pairs, each serving the KV head's `group` query heads at once
    // (they share the keys' and values' f16 conversion); per query head when that would
    // leave too few tasks to spread over the threads. Either way each head's result is the
    // same, bit for bit.
    let threads = rayon::current_num_threads();
    let per_task = if tokens.len() * h.n_head_kv >= 2 * threads {
        group
    } else {
        1
    };
    let tasks_per_token = h.n_head / per_task;
    let one = |(task, o): (usize, &mut [f32])| {
        let (span, pos) = tokens[task / tasks_per_token];
        let sp = &spans[span];
        let head = (task % tasks_per_token) * per_task;
        let kv_head = head / group;
        let kv = match copy_at[span] {
            Some(at) => {
                let n_pos = sp.pos0 + sp.n;
                let r = at + kv_head * n_pos * hd..at + (kv_head + 1) * n_pos * hd;
                HeadSlabs::contiguous(&k_heads[r.clone()], &v_heads[r], hd, 0)
            }
            None => HeadSlabs {
                keys,
                values,
                stride: kv_dim,
                offset: kv_head * hd,
                block: sp.kv.block,
                table: sp.kv.table,
            },
        };
        let q = &q[task * per_task * hd..(task + 1) * per_task * hd];
        let order = attention::Order::for_tokens(sp.n);
        let first = first_visible(h.window, pos);
        attention::attend_group(q, per_task, kv, first..pos + 1, score, order, o);
    };
    // Multiply-adds (scores and weighted sum, every head): below ~256 K (one token's decode
    // step at a context of a few hundred) a parallel region costs more than it saves.
    let work: usize = spans
        .iter()
        .map(|sp| 2 * sp.n * (sp.pos0 + sp.n).min(h.window.unwrap_or(usize::MAX)) * hd * h.n_head)
        .sum();
    if work < 1 << 18 {
        out.chunks_mut(per_task * hd).enumerate().for_each(one);
    } else {
        // Head by head (then token by token), so that a thread's run of tasks stays on one
        // KV head.
        let mut tasks: Vec<(usize, &mut [f32])> =
            out.chunks_mut(per_task * hd).enumerate().collect();
        tasks.sort_by_key(|&(task, _)| (task % tasks_per_token, task / tasks_per_token));
        tasks.into_par_iter().for_each(one);
    }
    HEAD_ROWS.with(|c| c.replace((k_heads, v_heads)));
}

/// `gate = SiLU(gate) · up` for rows of `row` values (n_ff), in parallel chunks of whole rows
/// (`smelt_kernels::silu`, which follows ggml's e^x and its per-row tail).
pub fn swiglu(gate: &mut [f32], up: &[f32], row: usize) {
    assert!(row > 0, "SwiGLU rows of zero values");
    let per_chunk = row * 4096usize.div_ceil(row);
    if gate.len() <= per_chunk {
        smelt_kernels::silu::silu_mul(gate, up, row);
        return;
    }
    gate.par_chunks_mut(per_chunk)
        .zip(up.par_chunks(per_chunk))
        .for_each(|(gs, us)| smelt_kernels::silu::silu_mul(gs, us, row));
}

/// `gate = GELU(gate) · up` (Gemma's GeGLU) with llama.cpp's f16 GELU table
/// (`smelt_kernels::gelu`), in parallel chunks.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    const CHUNK: usize = 1 << 14;
    if gate.len() <= CHUNK {
        smelt_kernels::gelu::gelu_mul(gate, up);
        return;
    }
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(gs, us)| smelt_kernels::gelu::gelu_mul(gs, us));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(layout: RopeLayout, n_rot: usize) -> Rope {
        Rope {
            layout,
            n_rot,
            base: 10000.0,
            linear_scale: 1.0,
            freq_factors: None,
        }
    }

    #[test]
    fn normal_rope_rotates_adjacent_pairs() {
        let r = rope(RopeLayout::Normal, 4);
        let (c, s) = r.table(1, 1);
        let mut x = vec![1.0, 0.0, 0.0, 1.0];
        r.apply(&mut x, 4, &c, &s);
        // pair 0 rotates by 1 rad, pair 1 by 1/100 rad.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] + 0.01f32.sin()).abs() < 1e-6 && (x[3] - 0.01f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn neox_rope_equals_normal_rope_on_interleaved_dimensions() {
        // NeoX pairs (i, i + d/2); moving dimension i to 2i and i + d/2 to 2i + 1 turns it
        // into the normal layout.
        let d = 8;
        let x: Vec<f32> = (0..2 * d).map(|i| (i as f32 * 0.7).sin()).collect();
        let (normal, neox) = (rope(RopeLayout::Normal, d), rope(RopeLayout::Neox, d));
        let (c, s) = normal.table(5, 1);
        let mut a = x.clone();
        neox.apply(&mut a, d, &c, &s);
        let perm = |v: &[f32]| -> Vec<f32> {
            v.chunks(d)
                .flat_map(|h| (0..d / 2).flat_map(move |i| [h[i], h[i + d / 2]]))
                .collect()
        };
        let mut b = perm(&x);
        normal.apply(&mut b, d, &c, &s);
        for (p, q) in perm(&a).iter().zip(&b) {
            assert!((p - q).abs() < 1e-6);
        }
    }

    #[test]
    fn partial_rotation_and_linear_scaling() {
        let mut r = rope(RopeLayout::Normal, 2);
        r.linear_scale = 2.0;
        let (c, s) = r.table(2, 1); // position 2 / 2 = 1
        let mut x = vec![1.0, 0.0, 5.0, 6.0];
        r.apply(&mut x, 4, &c, &s);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(&x[2..], &[5.0, 6.0]);
    }

    #[test]
    fn frequency_factors_divide_each_pairs_angle() {
        // Pair 0 turns by pos / 1, pair 1 by pos / 100; factors 2 and 8 slow them down.
        let mut r = rope(RopeLayout::Normal, 4);
        let (c0, s0) = r.table(3, 1);
        r.freq_factors = Some(vec![2.0, 8.0]);
        let (c, s) = r.table(3, 1);
        for (i, want) in [3.0f32 / 2.0, 3.0 / 100.0 / 8.0].into_iter().enumerate() {
            assert!((c[i] - want.cos()).abs() < 1e-6 && (s[i] - want.sin()).abs() < 1e-6);
        }
        // Factors of one change no bit.
        r.freq_factors = Some(vec![1.0, 1.0]);
        assert_eq!(r.table(3, 1), (c0, s0));
    }

    #[test]
    fn rms_norm_scales_by_the_root_mean_square() {
        let mut out = vec![0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }
}
