//! The mixture-of-experts feed-forward (Mixtral as `llama`, Qwen 3 MoE, Qwen 2 MoE), as
//! llama.cpp's `build_moe_ffn` runs it with softmax gating: the router's logits (n, count) go
//! through ggml's softmax ([`smelt_kernels::softmax`]); each token takes its `used` most
//! probable experts in descending order (ggml's `argsort`, which leaves ties to `std::sort`;
//! here the lower index first); their probabilities, divided by their sum (added in f64,
//! clamped below at f16's smallest normal 2^−14) unless the model keeps them (Qwen 2 MoE),
//! weight the experts' SwiGLU outputs, which are then added in that order in f32. Qwen 2 MoE
//! then adds a shared expert (a dense SwiGLU block) times a sigmoid gate computed as llama.cpp
//! computes it, `silu(g) / g` with `silu(g) = g / (1 + expf(−g))`.
//!
//! Each expert multiplies only the rows routed to it. Every row is its own one-token batch
//! (spans of 1): llama.cpp's `mul_mat_id` takes one `vec_dot` per (row, token) for matrices
//! it does not repack and one `gemv` per token for those it does, and those are the one-token
//! sums smelt's kernels reproduce. The experts are views of the three stacked tensors
//! (`ffn_{gate,up,down}_exps`: expert e is rows `e·rows .. (e+1)·rows`), kept as dense
//! matrices are: mapped, except that on AVX-512 VNNI the 32-block formats get the 16-row
//! interleaved copy every such matrix gets (as llama.cpp repacks at load).

use rayon::prelude::*;
use smelt_kernels::{Activations, QMatrix, matmul_each};
use smelt_trace as trace;

use crate::layer_io::{Tap, kinds};
use crate::ops;

/// One layer's experts and their router.
pub(super) struct MoeFfn {
    /// (count, n_embd) router (`ffn_gate_inp`).
    pub(super) router: QMatrix,
    /// count × (n_ff, n_embd) gate matrices.
    pub(super) gate: Vec<QMatrix>,
    /// count × (n_ff, n_embd) up matrices.
    pub(super) up: Vec<QMatrix>,
    /// count × (n_embd, n_ff) down matrices.
    pub(super) down: Vec<QMatrix>,
    /// Experts per token.
    pub(super) used: usize,
    /// Whether the chosen experts' weights are divided by their sum.
    pub(super) normalize: bool,
    /// The shared expert (Qwen 2 MoE), if any.
    pub(super) shared: Option<SharedExpert>,
}

/// A dense SwiGLU block every token runs beside its routed experts, scaled by a sigmoid gate.
pub(super) struct SharedExpert {
    /// (1, n_embd) the gate's weights (`ffn_gate_inp_shexp`).
    pub(super) gate_inp: QMatrix,
    /// (shared_ff, n_embd)
    pub(super) gate: QMatrix,
    /// (shared_ff, n_embd)
    pub(super) up: QMatrix,
    /// (n_embd, shared_ff)
    pub(super) down: QMatrix,
}

/// The caller's reusable buffers a mixture runs in: the activations and the (rows, n_ff)
/// gate and up products.
pub(super) struct MoeScratch<'s> {
    pub(super) acts: &'s mut Activations,
    pub(super) gate: &'s mut Vec<f32>,
    pub(super) up: &'s mut Vec<f32>,
}

/// A token's experts, most probable first, and their weights: the probabilities, divided by
/// their sum where `normalize`.
pub(crate) fn route(probs: &[f32], used: usize, normalize: bool) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Descending; `sort_by` is stable, so equal probabilities keep the lower index first.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    order.truncate(used);
    if !normalize {
        return order.into_iter().map(|e| (e, probs[e])).collect();
    }
    let sum = order.iter().map(|&e| probs[e] as f64).sum::<f64>() as f32;
    // ggml_clamp(sum, 6.103515625e-5, INFINITY) is MAX(MIN(x, max), min), which turns a NaN
    // into +∞ as f32::min/max do (`clamp` would keep the NaN).
    #[allow(clippy::manual_clamp)]
    let sum = sum.min(f32::INFINITY).max(6.103_515_6e-5);
    order.into_iter().map(|e| (e, probs[e] / sum)).collect()
}

impl MoeFfn {
    /// Weight bytes one token reads: the router and `used` experts (each expert's three
    /// matrices are the same size).
    pub(super) fn bytes_per_token(&self) -> usize {
        let one = self.gate[0].one_token_bytes()
            + self.up[0].one_token_bytes()
            + self.down[0].one_token_bytes();
        let shared: usize = self
            .shared
            .iter()
            .flat_map(|s| s.matrices())
            .map(|m| m.one_token_bytes())
            .sum();
        self.router.one_token_bytes() + self.used * one + shared
    }

    /// Every matrix, the router first.
    pub(super) fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        std::iter::once(&self.router)
            .chain(&self.gate)
            .chain(&self.up)
            .chain(&self.down)
            .chain(self.shared.iter().flat_map(|s| s.matrices()))
    }

    /// Every matrix, editable.
    pub(super) fn matrices_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let shared = self
            .shared
            .iter_mut()
            .flat_map(|s| [&mut s.gate_inp, &mut s.gate, &mut s.up, &mut s.down]);
        std::iter::once(&mut self.router)
            .chain(&mut self.gate)
            .chain(&mut self.up)
            .chain(&mut self.down)
            .chain(shared)
    }

    /// `out (n, n_embd) = MoE(h)` for the (n, n_embd) normed rows `h`, `lens[i]` of them from
    /// sequence i (the router's product sums as llama.cpp's for each sequence's batch).
    /// `s.gate` and `s.up` are resized to (n · used, n_ff). The active experts' gate and up
    /// products run in one parallel region, their down products in another.
    pub(super) fn forward(
        &self,
        l: usize,
        h: &[f32],
        lens: &[usize],
        s: MoeScratch,
        out: &mut [f32],
        tap: &mut dyn Tap,
    ) {
        let MoeScratch { acts, gate, up } = s;
        let e = self.router.cols;
        let n = h.len() / e;
        let count = self.router.rows;
        let op = trace::span("op", "moe_router");
        acts.set_spans(h, lens, e, self.router.act_kinds());
        // (n, count) router logits, then probabilities.
        let mut probs = vec![0f32; n * count];
        self.router.matmul(acts, &mut probs);
        tap.tensor(l, "ffn_moe_logits", &probs, n);
        probs
            .chunks_exact_mut(count)
            .for_each(smelt_kernels::softmax::softmax);
        tap.tensor(l, "ffn_moe_probs", &probs, n);
        // (n, used) each token's (expert, weight), most probable first.
        let routes: Vec<Vec<(usize, f32)>> = probs
            .chunks_exact(count)
            .map(|p| route(p, self.used, self.normalize))
            .collect();
        // Per expert, the (token, slot) pairs routed to it, in token order.
        let mut rows_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); count];
        for (t, r) in routes.iter().enumerate() {
            for (j, &(x, _)) in r.iter().enumerate() {
                rows_of[x].push((t, j));
            }
        }
        drop(op);
        let _op = trace::span("op", "moe_experts");
        let active: Vec<usize> = (0..count).filter(|&x| !rows_of[x].is_empty()).collect();
        let ff = self.gate[0].rows;
        // Row offsets of each active expert's rows in the stacked buffers below.
        let mut at = Vec::with_capacity(active.len() + 1);
        at.push(0);
        for &x in &active {
            at.push(at.last().copied().unwrap_or(0) + rows_of[x].len());
        }
        let m_all = at.last().copied().unwrap_or(0);
        // Each active expert's routed rows, quantized as one-token products (spans of 1).
        let mut x_acts: Vec<Activations> = active
            .par_iter()
            .map(|&x| {
                // (m, n_embd) the rows routed to expert x.
                let rows: Vec<f32> = rows_of[x]
                    .iter()
                    .flat_map(|&(t, _)| h[t * e..(t + 1) * e].iter().copied())
                    .collect();
                let mut a = Activations::new();
                a.set_spans(
                    &rows,
                    &vec![1; rows_of[x].len()],
                    e,
                    kinds(&[&self.gate[x], &self.up[x]]),
                );
                a
            })
            .collect();
        // (m_all, n_ff) gate, then SwiGLU's output, and up: every active expert's rows stacked.
        gate.resize(m_all * ff, 0.0);
        up.resize(m_all * ff, 0.0);
        {
            let mut jobs = Vec::with_capacity(2 * active.len());
            let mut outs: Vec<&mut [f32]> = Vec::with_capacity(2 * active.len());
            let mut g_rest = &mut gate[..];
            let mut u_rest = &mut up[..];
            for (i, &x) in active.iter().enumerate() {
                let m = at[i + 1] - at[i];
                let (g, gr) = std::mem::take(&mut g_rest).split_at_mut(m * ff);
                let (u, ur) = std::mem::take(&mut u_rest).split_at_mut(m * ff);
                (g_rest, u_rest) = (gr, ur);
                jobs.push((&self.gate[x], &x_acts[i]));
                jobs.push((&self.up[x], &x_acts[i]));
                outs.push(g);
                outs.push(u);
            }
            matmul_each(&jobs, &mut outs);
        }
        ops::swiglu(&mut gate[..m_all * ff], &up[..m_all * ff], ff);
        x_acts
            .par_iter_mut()
            .zip(&active)
            .enumerate()
            .for_each(|(i, (a, &x))| {
                let rows = &gate[at[i] * ff..at[i + 1] * ff];
                a.set_spans(
                    rows,
                    &vec![1; rows.len() / ff],
                    ff,
                    self.down[x].act_kinds(),
                );
            });
        // (m_all, n_embd) every active expert's output rows, stacked.
        let mut y = vec![0f32; m_all * e];
        {
            let jobs: Vec<(&QMatrix, &Activations)> = active
                .iter()
                .enumerate()
                .map(|(i, &x)| (&self.down[x], &x_acts[i]))
                .collect();
            let mut outs: Vec<&mut [f32]> = Vec::with_capacity(active.len());
            let mut rest = &mut y[..];
            for i in 0..active.len() {
                let (o, r) = std::mem::take(&mut rest).split_at_mut((at[i + 1] - at[i]) * e);
                outs.push(o);
                rest = r;
            }
            matmul_each(&jobs, &mut outs);
        }
        // (n, used) where each slot's expert output sits among the stacked rows of `y`.
        let mut pos = vec![0usize; n * self.used];
        for (i, &x) in active.iter().enumerate() {
            for (r, &(t, j)) in rows_of[x].iter().enumerate() {
                pos[t * self.used + j] = at[i] + r;
            }
        }
        // Each slot's output times its weight (rounded, as ggml_mul), the slots added in
        // order: ((s0 + s1) + s2) + ...
        let used = self.used;
        out[..n * e]
            .par_chunks_mut(e)
            .with_min_len(16)
            .enumerate()
            .for_each(|(t, o)| {
                for (j, &(_, w)) in routes[t].iter().enumerate() {
                    let src = &y[pos[t * used + j] * e..][..e];
                    if j == 0 {
                        o.iter_mut().zip(src).for_each(|(a, &v)| *a = v * w);
                    } else {
                        o.iter_mut().zip(src).for_each(|(a, &v)| *a += v * w);
                    }
                }
            });
        tap.tensor(l, "ffn_moe_out", &out[..n * e], n);
        if let Some(sh) = &self.shared {
            let s = MoeScratch { acts, gate, up };
            sh.add(l, h, lens, s, &mut out[..n * e], tap);
        }
    }
}

impl SharedExpert {
    fn matrices(&self) -> [&QMatrix; 4] {
        [&self.gate_inp, &self.gate, &self.up, &self.down]
    }

    /// `out += SwiGLU(h) · σ(g)` for the (n, n_embd) rows `h` (products summed per sequence,
    /// `lens`), with σ(g) = silu(g) / g as ggml computes it for a row of one value.
    fn add(
        &self,
        l: usize,
        h: &[f32],
        lens: &[usize],
        s: MoeScratch,
        out: &mut [f32],
        tap: &mut dyn Tap,
    ) {
        let MoeScratch { acts, gate, up } = s;
        let _op = trace::span("op", "moe_shared_expert");
        let e = self.gate_inp.cols;
        let n = h.len() / e;
        let ff = self.gate.rows;
        acts.set_spans(h, lens, e, kinds(&[&self.gate_inp, &self.gate, &self.up]));
        // (n, 1) the gate's logits.
        let mut g = vec![0f32; n];
        gate.resize(n * ff, 0.0);
        up.resize(n * ff, 0.0);
        smelt_kernels::matmul_multi(
            &[&self.gate_inp, &self.gate, &self.up],
            acts,
            &mut [&mut g, &mut gate[..], &mut up[..]],
        );
        ops::swiglu(gate, up, ff);
        acts.set_spans(gate, lens, ff, self.down.act_kinds());
        // (n, n_embd) the shared expert's output.
        let mut y = vec![0f32; n * e];
        self.down.matmul(acts, &mut y);
        tap.tensor(l, "ffn_shexp", &y, n);
        for ((o, ys), &gt) in out.chunks_exact_mut(e).zip(y.chunks_exact(e)).zip(&g) {
            let sigma = gt / (1.0 + (-gt).exp()) / gt;
            o.iter_mut().zip(ys).for_each(|(a, &v)| *a += v * sigma);
        }
        tap.tensor(l, "ffn_out", out, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_the_most_probable_and_normalize() {
        let p = [0.1f32, 0.4, 0.2, 0.3];
        let r = route(&p, 2, true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        let s = (0.4f32 as f64 + 0.3f32 as f64) as f32;
        assert_eq!(r[0].1, 0.4 / s);
        assert_eq!(r[1].1, 0.3 / s);
        // Ties: the lower index first.
        let r = route(&[0.25, 0.25, 0.25, 0.25], 3, true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // Tiny probabilities are divided by the clamp, not by their sum.
        let r = route(&[1e-6, 1.0 - 2e-6, 1e-6], 1, true);
        assert_eq!(r[0].0, 1);
        let r = route(&[1e-6, 0.0, 2e-6], 2, true);
        assert_eq!(r[0], (2, 2e-6 / 6.103_515_6e-5));
        // Qwen 2 MoE keeps the probabilities.
        assert_eq!(route(&p, 2, false), vec![(1, 0.4), (3, 0.3)]);
    }
}
