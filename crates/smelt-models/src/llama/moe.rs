//! The mixture-of-experts feed-forward (Mixtral as `llama`, Qwen 3 MoE), as llama.cpp's
//! `build_moe_ffn` runs it with softmax gating and normalized weights: the router's logits
//! (n, count) go through ggml's softmax ([`smelt_kernels::softmax`]); each token takes its
//! `used` most probable experts in descending order (ggml's `argsort`, which leaves ties to
//! `std::sort`; here the lower index first); their probabilities, divided by their sum (added
//! in f64, clamped below at f16's smallest normal 2^−14), weight the experts' SwiGLU outputs,
//! which are then added in that order in f32.
//!
//! Each expert multiplies only the rows routed to it. Every row is its own one-token batch
//! (spans of 1): llama.cpp's `mul_mat_id` takes one `vec_dot` per (row, token) for matrices
//! it does not repack and one `gemv` per token for those it does, and those are the one-token
//! sums smelt's kernels reproduce. The experts are views of the three stacked tensors
//! (`ffn_{gate,up,down}_exps`: expert e is rows `e·rows .. (e+1)·rows`), mapped, not copied.

use smelt_kernels::{Activations, QMatrix, matmul_multi};
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
}

/// A token's experts, most probable first, and their normalized weights.
pub(crate) fn route(probs: &[f32], used: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    // Descending; `sort_by` is stable, so equal probabilities keep the lower index first.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    order.truncate(used);
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
        let one = self.gate[0].nbytes() + self.up[0].nbytes() + self.down[0].nbytes();
        self.router.nbytes() + self.used * one
    }

    /// Every matrix, the router first.
    pub(super) fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        std::iter::once(&self.router)
            .chain(&self.gate)
            .chain(&self.up)
            .chain(&self.down)
    }

    /// Every matrix, editable.
    pub(super) fn matrices_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        std::iter::once(&mut self.router)
            .chain(&mut self.gate)
            .chain(&mut self.up)
            .chain(&mut self.down)
    }

    /// `out (n, n_embd) = MoE(h)` for the (n, n_embd) normed rows `h`, `lens[i]` of them from
    /// sequence i (the router's product sums as llama.cpp's for each sequence's batch).
    /// `gate` and `up` are scratch of at least (n · used, n_ff).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &self,
        l: usize,
        h: &[f32],
        lens: &[usize],
        acts: &mut Activations,
        gate: &mut Vec<f32>,
        up: &mut Vec<f32>,
        out: &mut [f32],
        tap: &mut dyn Tap,
    ) {
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
            .map(|p| route(p, self.used))
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
        // (n, used, n_embd) each slot's weighted expert output.
        let mut slots = vec![0f32; n * self.used * e];
        // (m, n_embd) the rows routed to one expert, then its (m, n_embd) output.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (xi, rows) in rows_of.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let m = rows.len();
            let (wg, wu, wd) = (&self.gate[xi], &self.up[xi], &self.down[xi]);
            let ff = wg.rows;
            x.clear();
            for &(t, _) in rows {
                x.extend_from_slice(&h[t * e..(t + 1) * e]);
            }
            let ones = vec![1; m];
            acts.set_spans(&x, &ones, e, kinds(&[wg, wu]));
            gate.resize(m * ff, 0.0);
            up.resize(m * ff, 0.0);
            matmul_multi(&[wg, wu], acts, &mut [&mut gate[..], &mut up[..]]);
            ops::swiglu(&mut gate[..m * ff], &up[..m * ff], ff);
            acts.set_spans(&gate[..m * ff], &ones, ff, wd.act_kinds());
            y.resize(m * e, 0.0);
            wd.matmul(acts, &mut y);
            for (r, &(t, j)) in rows.iter().enumerate() {
                let w = routes[t][j].1;
                let dst = &mut slots[(t * self.used + j) * e..][..e];
                dst.iter_mut()
                    .zip(&y[r * e..(r + 1) * e])
                    .for_each(|(d, &v)| *d = v * w);
            }
        }
        // Slots added in order: ((s0 + s1) + s2) + ...
        for (t, o) in out.chunks_exact_mut(e).enumerate().take(n) {
            let first = &slots[t * self.used * e..][..e];
            o.copy_from_slice(first);
            for j in 1..self.used {
                let s = &slots[(t * self.used + j) * e..][..e];
                o.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
            }
        }
        tap.tensor(l, "ffn_moe_out", &out[..n * e], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_the_most_probable_and_normalize() {
        let p = [0.1f32, 0.4, 0.2, 0.3];
        let r = route(&p, 2);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        let s = (0.4f32 as f64 + 0.3f32 as f64) as f32;
        assert_eq!(r[0].1, 0.4 / s);
        assert_eq!(r[1].1, 0.3 / s);
        // Ties: the lower index first.
        let r = route(&[0.25, 0.25, 0.25, 0.25], 3);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // Tiny probabilities are divided by the clamp, not by their sum.
        let r = route(&[1e-6, 1.0 - 2e-6, 1e-6], 1);
        assert_eq!(r[0].0, 1);
        let r = route(&[1e-6, 0.0, 2e-6], 2);
        assert_eq!(r[0], (2, 2e-6 / 6.103_515_6e-5));
    }
}
