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
    /// LongRoPE (Phi-3.5, Phi-4 mini, 128k Phi-3): two sets of frequency factors, of which a
    /// sequence's context picks one ([`Rope::for_context`]).
    pub long_rope: Option<LongRope>,
    /// The factor on every angle's cos and sin (`rope.scaling.attn_factor`, LongRoPE's
    /// magnitude scaling; 1 = none), as ggml's `rope_yarn` applies it.
    pub attn_factor: f32,
}

/// LongRoPE's frequency factors (`rope_factors_long.weight`, `rope_factors_short.weight`).
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    /// (n_rot / 2,) for contexts past `original_ctx`.
    pub long: Vec<f32>,
    /// (n_rot / 2,) for contexts up to `original_ctx`.
    pub short: Vec<f32>,
    /// `rope.scaling.original_context_length` (else the training context).
    pub original_ctx: usize,
}

impl Rope {
    /// The rotation for a sequence that may hold `n_ctx_seq` positions: with LongRoPE the long
    /// factors if that is more than the original context, else the short ones, as llama.cpp
    /// chooses by its context size (`llama_model::get_rope_factors`); otherwise this one.
    pub fn for_context(&self, n_ctx_seq: usize) -> std::borrow::Cow<'_, Rope> {
        match &self.long_rope {
            Some(lr) => {
                let f = if n_ctx_seq > lr.original_ctx {
                    &lr.long
                } else {
                    &lr.short
                };
                std::borrow::Cow::Owned(Rope {
                    freq_factors: Some(f.clone()),
                    long_rope: None,
                    ..self.clone()
                })
            }
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// (n_pos, n_rot / 2) cos and sin for positions `pos0..pos0 + n_pos`, computed as ggml
    /// does so the angles are the same floats: pair i's angle is `freq_scale · (θ_i / f_i)`,
    /// with θ starting at the position and multiplied by `base^(−2/n_rot)` from pair to pair
    /// (not a power per pair), and f_i the pair's frequency factor (1 without any); cos and
    /// sin then times the attention factor.
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
                cos.push(angle.cos() * self.attn_factor);
                sin.push(angle.sin() * self.attn_factor);
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

/// Query rows one attention task serves ([`attention`]): up to this many (a span's
/// consecutive new tokens times their KV head's query heads; at least one token) share
/// every key and value the task converts and loads. 32 rows of 2048 weights and 16 lanes of
/// 64 sums take 384 KB, within a core's L2.
const ROWS_PER_TASK: usize = 32;

/// One task of [`attention`]: `n_tok` tokens (from index `tok0` of the call's tokens, all of
/// one span) for the query heads from `head0` on (all of one KV head's).
struct Task {
    tok0: usize,
    n_tok: usize,
    head0: usize,
}

thread_local! {
    /// A task's gathered query rows (rows, head_dim) and their position ranges (rows,).
    static TASK_ROWS: std::cell::RefCell<(Vec<f32>, Vec<std::ops::Range<usize>>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    /// (Σn · n_head, head_dim) the tasks' rows, task by task, before they go to `out`.
    static TILED_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
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
    // Tasks: (tokens, KV head) pairs, each serving the KV head's `group` query heads for
    // consecutive tokens of a span at once (they share the keys' and
    // values' f16 conversion and loads); one token, or one query head, per task when that
    // would leave too few tasks to spread over the threads. Either way each row's result is
    // the same, bit for bit.
    let threads = rayon::current_num_threads();
    let tokens_per_task = (ROWS_PER_TASK / group).max(1);
    let tiles: usize = spans.iter().map(|sp| sp.n.div_ceil(tokens_per_task)).sum();
    let (tile, per_task) = if tiles * h.n_head_kv >= 2 * threads {
        (tokens_per_task, group)
    } else if tokens.len() * h.n_head_kv >= 2 * threads {
        (1, group)
    } else {
        (1, 1)
    };
    // (tasks,) in `out`'s order when tile is 1 (each task's rows are one piece of it).
    let mut tasks = Vec::with_capacity(tokens.len().div_ceil(tile) * h.n_head / per_task);
    let mut tok0 = 0;
    for sp in spans {
        for t0 in (0..sp.n).step_by(tile) {
            for head0 in (0..h.n_head).step_by(per_task) {
                tasks.push(Task {
                    tok0: tok0 + t0,
                    n_tok: tile.min(sp.n - t0),
                    head0,
                });
            }
        }
        tok0 += sp.n;
    }
    let one = |(task, o): (&Task, &mut [f32])| {
        let (span, _) = tokens[task.tok0];
        let sp = &spans[span];
        let kv_head = task.head0 / group;
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
        let order = attention::Order::for_tokens(sp.n);
        let row_q = |t: usize| {
            let at = (task.tok0 + t) * h.n_head * hd + task.head0 * hd;
            &q[at..at + per_task * hd]
        };
        let range = |t: usize| {
            let pos = tokens[task.tok0 + t].1;
            first_visible(h.window, pos)..pos + 1
        };
        if task.n_tok == 1 {
            return attention::attend_group(row_q(0), per_task, kv, range(0), score, order, o);
        }
        TASK_ROWS.with(|c| {
            let (rows_q, ranges) = &mut *c.borrow_mut();
            rows_q.clear();
            ranges.clear();
            for t in 0..task.n_tok {
                rows_q.extend_from_slice(row_q(t));
                ranges.extend(std::iter::repeat_n(range(t), per_task));
            }
            attention::attend_rows(rows_q, ranges, kv, score, order, o);
        });
    };
    // Multiply-adds (scores and weighted sum, every head): below ~256 K (one token's decode
    // step at a context of a few hundred) a parallel region costs more than it saves.
    let work: usize = spans
        .iter()
        .map(|sp| 2 * sp.n * (sp.pos0 + sp.n).min(h.window.unwrap_or(usize::MAX)) * hd * h.n_head)
        .sum();
    let rows_of = |t: &Task| t.n_tok * per_task * hd;
    if tile == 1 && work < 1 << 18 {
        tasks
            .iter()
            .zip(out.chunks_mut(per_task * hd))
            .for_each(one);
    } else if tile == 1 {
        // Head by head (then token by token), so that a thread's run of tasks stays on one
        // KV head.
        let mut pairs: Vec<_> = tasks.iter().zip(out.chunks_mut(per_task * hd)).collect();
        pairs.sort_by_key(|(t, _)| (t.head0, t.tok0));
        pairs.into_par_iter().for_each(one);
    } else {
        // Each task's rows (token-major) into its own piece of `tiled`, then to `out`.
        let mut tiled = TILED_OUT.with(|c| c.take());
        tiled.resize(out.len(), 0.0);
        let mut rest = &mut tiled[..];
        let mut pairs = Vec::with_capacity(tasks.len());
        for t in &tasks {
            let (piece, tail) = rest.split_at_mut(rows_of(t));
            pairs.push((t, piece));
            rest = tail;
        }
        pairs.sort_by_key(|(t, _)| (t.head0, t.tok0));
        pairs.into_par_iter().for_each(one);
        let mut at = 0;
        for t in &tasks {
            for i in 0..t.n_tok {
                let dst = (t.tok0 + i) * h.n_head * hd + t.head0 * hd;
                let n = per_task * hd;
                out[dst..dst + n].copy_from_slice(&tiled[at..at + n]);
                at += n;
            }
        }
        TILED_OUT.with(|c| c.replace(tiled));
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
            long_rope: None,
            attn_factor: 1.0,
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

    #[test]
    fn long_rope_takes_its_factors_by_the_context_and_scales_cos_and_sin() {
        let mut r = rope(RopeLayout::Neox, 4);
        r.attn_factor = 1.25;
        r.long_rope = Some(LongRope {
            long: vec![4.0, 8.0],
            short: vec![1.0, 2.0],
            original_ctx: 64,
        });
        let with = |f: Vec<f32>| Rope {
            freq_factors: Some(f),
            long_rope: None,
            ..r.clone()
        };
        // Up to the original context the short factors, past it the long ones.
        assert_eq!(*r.for_context(64), with(vec![1.0, 2.0]));
        assert_eq!(*r.for_context(65), with(vec![4.0, 8.0]));
        let (c, s) = r.for_context(65).table(3, 1);
        let angle0 = 3.0f32 / 4.0;
        assert_eq!((c[0], s[0]), (angle0.cos() * 1.25, angle0.sin() * 1.25));
        // Without LongRoPE the rotation is the model's own.
        let plain = rope(RopeLayout::Neox, 4);
        assert_eq!(*plain.for_context(1 << 20), plain);
    }

    #[test]
    fn attention_tasks_give_each_token_the_reference_bits() {
        use crate::kv_cache::BlockTable;
        // A prompt (37 tokens after 5 cached, paged, shuffled blocks) and a decode step of
        // another sequence in one call; 4 query heads over 2 KV heads of 64.
        let (hd, n_head, n_kv, block) = (64, 4, 2, 8);
        let kv_dim = n_kv * hd;
        let mut pool = KvPool::new(1, 8, block, kv_dim);
        let mut seed = 0x9e37_79b9u32;
        let mut val = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 23) as f32 - 1.0
        };
        for row in 0..8 * block {
            let k: Vec<f32> = (0..kv_dim).map(|_| val()).collect();
            let v: Vec<f32> = (0..kv_dim).map(|_| 2.0 * val()).collect();
            pool.store(0, row, &k, &v);
        }
        let tables: [&[u32]; 2] = [&[3, 0, 5, 1, 6, 2], &[4, 7]];
        let spans = [(5, 37, tables[0]), (9, 1, tables[1])].map(|(pos0, n, table)| Span {
            n,
            pos0,
            kv: BlockTable { table, block },
        });
        let q: Vec<f32> = (0..38 * n_head * hd).map(|_| 4.0 * val()).collect();
        for window in [None, Some(9)] {
            let h = Heads {
                n_head,
                n_head_kv: n_kv,
                head_dim: hd,
                scale: 0.125,
                window,
                softcap: None,
            };
            let (keys, values) = pool.layer(0);
            let mut want = vec![0f32; q.len()];
            let tokens = spans
                .iter()
                .flat_map(|sp| (sp.pos0..sp.pos0 + sp.n).map(move |p| (sp, p)));
            for (t, (sp, pos)) in tokens.enumerate() {
                for head in 0..n_head {
                    let kv = HeadSlabs {
                        keys,
                        values,
                        stride: kv_dim,
                        offset: head / 2 * hd,
                        block,
                        table: sp.kv.table,
                    };
                    let at = (t * n_head + head) * hd;
                    attention::attend_reference(
                        &q[at..at + hd],
                        kv,
                        first_visible(window, pos)..pos + 1,
                        attention::Score::scaled(0.125),
                        attention::Order::for_tokens(sp.n),
                        &mut want[at..at + hd],
                    );
                }
            }
            // One thread and two: tasks of several tokens; 64: a task per token and head.
            for threads in [1, 2, 64] {
                let pool_threads = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![f32::NAN; q.len()];
                pool_threads.install(|| attention(&q, &pool, 0, &spans, h, &mut out));
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{window:?} {threads} threads [{i}]"
                    );
                }
            }
        }
    }
}
