//! Llama-family decoder (LLaMA, SmolLM2, Mixtral, Qwen 2/2.5, Qwen 3 dense and MoE, Phi-3,
//! Gemma 2/3, ...) loaded from GGUF: RMSNorm, rotary position embeddings, grouped-query
//! attention with a KV cache, SwiGLU feed-forward or a mixture of SwiGLU experts, tied or
//! untied output; Qwen 2's q/k/v biases, Qwen 3's per-head q/k RMSNorm, Phi-3's stacked
//! matrices and pre-scaled queries, Gemma's post-norms, GeGLU, scaled embeddings,
//! sliding-window layers and soft caps ([`Arch`]). Touvron et al., "LLaMA" (arXiv:2302.13971);
//! reference: llama.cpp's `src/models/llama.cpp`, `qwen2.cpp`, `qwen3.cpp`, `qwen3moe.cpp`,
//! `phi3.cpp`, `gemma2.cpp` and `gemma3.cpp`.
//!
//! Weights stay in their GGUF block format (mapped, not copied) and every product runs through
//! `smelt-kernels` with 8-bit-block activations; formats without a kernel are dequantized to f32
//! at load. A batch of tokens (a prompt) goes through each layer together, so the weights are
//! read once per batch.

use smelt_gguf::blocks;
use smelt_kernels::{Activations, QMatrix, matmul_multi};
use smelt_trace as trace;

use crate::kv_cache::{KvCache, KvPool};
use crate::layer_io::kinds;
pub use crate::layer_io::{Linear, LinearInput, NoTap, Scratch, SeqInput, Span, Tap};
pub use crate::llama_config::{Arch, Experts, LlamaConfig, ModelError, SlidingWindow};
use crate::ops::{self, Heads};

mod load;
mod moe;

struct Layer {
    /// (n_embd,)
    attn_norm: Vec<f32>,
    /// (q_dim, n_embd)
    wq: QMatrix,
    /// (kv_dim, n_embd)
    wk: QMatrix,
    /// (kv_dim, n_embd)
    wv: QMatrix,
    /// (n_embd, q_dim)
    wo: QMatrix,
    /// (q_dim,), (kv_dim,), (kv_dim,) biases of the q/k/v projections (Qwen 2), if any.
    qkv_bias: Option<[Vec<f32>; 3]>,
    /// (head_dim,) RMSNorm weights of each query head and key head (Qwen 3, Gemma 3), if any.
    qk_norm: Option<[Vec<f32>; 2]>,
    /// (n_embd,), (n_embd,) RMSNorm weights of the attention output and of the feed-forward
    /// output before each residual add (Gemma), if any.
    post_norms: Option<[Vec<f32>; 2]>,
    /// (n_embd,)
    ffn_norm: Vec<f32>,
    ffn: Ffn,
}

/// A layer's feed-forward: one gated block, or a mixture of experts.
// One per layer, built once: the dense variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
enum Ffn {
    Dense {
        /// (n_ff, n_embd)
        gate: QMatrix,
        /// (n_ff, n_embd)
        up: QMatrix,
        /// (n_embd, n_ff)
        down: QMatrix,
    },
    Experts(Box<moe::MoeFfn>),
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

/// A llama model ready to run.
pub struct Llama {
    /// Hyper-parameters.
    pub config: LlamaConfig,
    /// (n_vocab, n_embd) token embeddings.
    tok_embd: QMatrix,
    layers: Vec<Layer>,
    /// (n_embd,)
    output_norm: Vec<f32>,
    /// (n_vocab, n_embd) output projection; `None` when tied to the embeddings.
    output: Option<QMatrix>,
}

impl Llama {
    /// A KV cache for this model holding up to `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layer, n_ctx.min(c.n_ctx), c.n_head_kv * c.head_dim())
    }

    fn output_matrix(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }

    /// Weight bytes read to generate one token (every layer matrix, only the experts a token
    /// runs of a mixture, and the output; one embedding row is negligible).
    pub fn weight_bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                let attn: usize = [&l.wq, &l.wk, &l.wv, &l.wo]
                    .iter()
                    .map(|m| m.one_token_bytes())
                    .sum();
                attn + match &l.ffn {
                    Ffn::Dense { gate, up, down } => {
                        gate.one_token_bytes() + up.one_token_bytes() + down.one_token_bytes()
                    }
                    Ffn::Experts(x) => x.bytes_per_token(),
                }
            })
            .sum();
        layers + self.output_matrix().one_token_bytes()
    }

    /// Counts of weight matrices by kernel format, e.g. `[("Q5_0", 166), ...]` (each expert's
    /// matrices count one by one).
    pub fn weight_formats(&self) -> Vec<(String, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for l in &self.layers {
            for w in l.matrices() {
                *m.entry(w.type_name()).or_insert(0) += 1;
            }
        }
        *m.entry(self.output_matrix().type_name()).or_insert(0) += 1;
        m.into_iter().collect()
    }

    /// Runs one token at the cache's next position and returns the (n_vocab,) logits.
    pub fn forward(&self, token: u32, cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        self.forward_batch(&[token], cache, Logits::Last)
    }

    /// Runs `tokens` at the cache's next positions (causal within the batch) and returns the
    /// logits: (n_vocab,) for [`Logits::Last`], (n, n_vocab) for [`Logits::All`].
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        want: Logits,
    ) -> Result<Vec<f32>, ModelError> {
        // Run the whole pass on a pool thread: its parallel products then fork and join
        // between pool threads instead of waking the caller's thread for every product.
        rayon::scope(|_| self.forward_on_pool(tokens, cache, want))
    }

    fn forward_on_pool(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        want: Logits,
    ) -> Result<Vec<f32>, ModelError> {
        let (n, pos0) = (tokens.len(), cache.len());
        if n == 0 {
            return Err(ModelError::Unsupported("no tokens to run".into()));
        }
        if pos0 + n > cache.capacity() {
            return Err(ModelError::ContextFull(cache.capacity()));
        }
        let (pool, kv) = cache.paged();
        let seq = SeqInput {
            tokens,
            pos0,
            kv,
            want,
        };
        let logits = self.forward_seqs_on_pool(&[seq], pool)?.pop();
        cache.advance(n);
        Ok(logits.unwrap_or_default())
    }

    /// Runs several sequences' tokens in one pass (continuous batching): every linear product
    /// takes all their rows at once, attention reads each sequence's positions through its block
    /// table in `pool`. Each sequence's keys and values for `pos0..pos0 + n` are stored through
    /// its table, which must already address them. Returns each sequence's logits as its
    /// `want` says. A sequence's rows are computed exactly as when it runs alone.
    pub fn forward_seqs(
        &self,
        seqs: &[SeqInput],
        pool: &mut KvPool,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        rayon::scope(|_| self.forward_seqs_on_pool(seqs, pool))
    }

    fn forward_seqs_on_pool(
        &self,
        seqs: &[SeqInput],
        pool: &mut KvPool,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tokens = Vec::new();
        let mut spans = Vec::with_capacity(seqs.len());
        for s in seqs {
            if s.tokens.is_empty() {
                return Err(ModelError::Unsupported("no tokens to run".into()));
            }
            let end = s.pos0 + s.tokens.len();
            if s.kv.block != pool.block_size() || end > s.kv.capacity() {
                return Err(ModelError::ContextFull(s.kv.capacity()));
            }
            if end > self.config.n_ctx {
                return Err(ModelError::ContextFull(self.config.n_ctx));
            }
            if let Some(b) = s.kv.table.iter().find(|&&b| b as usize >= pool.n_blocks()) {
                return Err(ModelError::Unsupported(format!(
                    "block {b} is outside the pool of {} blocks",
                    pool.n_blocks()
                )));
            }
            tokens.extend_from_slice(s.tokens);
            spans.push(Span {
                n: s.tokens.len(),
                pos0: s.pos0,
                kv: s.kv,
            });
        }
        // (n, n_embd) residual stream of every sequence's tokens, one after another.
        let mut x = self.embed(&tokens)?;
        let mut scratch = Scratch::default();
        for l in 0..self.layers.len() - 1 {
            self.run_layer_spans(l, &mut x, &spans, pool, &mut scratch, &mut NoTap);
        }
        // How many rows' logits each sequence wants; only those finish the last layer.
        let counts: Vec<usize> = seqs
            .iter()
            .map(|s| match s.want {
                Logits::Last => 1,
                Logits::All => s.tokens.len(),
            })
            .collect();
        let rows =
            self.run_last_layer_spans(&mut x, &spans, &counts, pool, &mut scratch, &mut NoTap);
        let logits = self.head_rows(&rows, &counts);
        let v = self.config.n_vocab;
        let mut out = Vec::with_capacity(seqs.len());
        let mut from = 0;
        for c in counts {
            out.push(logits[from * v..(from + c) * v].to_vec());
            from += c;
        }
        Ok(out)
    }

    /// The (n, n_embd) embeddings of `tokens` (ids past the vocabulary are clamped), scaled
    /// where the model scales them (Gemma): the first layer's input.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let e = c.n_embd;
        // (n, n_embd)
        let mut x = vec![0f32; tokens.len() * e];
        for (row, &tok) in x.chunks_exact_mut(e).zip(tokens) {
            let id = (tok as usize).min(c.n_vocab - 1);
            let b = self.tok_embd.row(id);
            let v = blocks::dequantize(self.tok_embd.ty.ggml(), b, e).map_err(|err| {
                ModelError::Tensor {
                    name: "token_embd.weight".into(),
                    why: err.to_string(),
                }
            })?;
            row.copy_from_slice(&v);
        }
        if let Some(scale) = c.embedding_scale() {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(x)
    }

    /// Runs layer `l` on the (n, n_embd) residual stream `x` in place, for positions
    /// `pos0..pos0 + n`: stores their keys and values in `cache` (which must have room; the
    /// caller advances it after the last layer) and shows every linear input to `tap`.
    pub fn run_layer(
        &self,
        l: usize,
        x: &mut [f32],
        pos0: usize,
        cache: &mut KvCache,
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) {
        let n = x.len() / self.config.n_embd;
        let (pool, kv) = cache.paged();
        self.run_layer_spans(l, x, &[Span { n, pos0, kv }], pool, s, tap);
    }

    /// [`Llama::run_layer`] for the rows of several sequences: `spans` cut `x` into each
    /// sequence's consecutive rows, whose keys and values go to `pool` through its block table.
    pub fn run_layer_spans(
        &self,
        l: usize,
        x: &mut [f32],
        spans: &[Span],
        pool: &mut KvPool,
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) {
        let _layer = trace::span("layer", "layer");
        let lens = span_lens(spans);
        self.attention_block(l, x, spans, &lens, pool, s, tap);
        self.ffn_block(l, x, &lens, s, tap);
    }

    /// [`Llama::run_layer_spans`] for a pass's last layer, as llama.cpp runs it: attention for
    /// every row, then only the rows whose logits are wanted (the last `keep[i]` of sequence i)
    /// go on through the feed-forward block, which saves that block's work for the rest of a
    /// prompt and gives its k-quant products the batch llama.cpp gives them. Returns those
    /// (Σ keep, n_embd) rows; `x` is left holding the stream after attention.
    ///
    /// # Panics
    ///
    /// If `keep` and `spans` differ in length or a count exceeds its sequence's rows.
    pub fn run_last_layer_spans(
        &self,
        x: &mut [f32],
        spans: &[Span],
        keep: &[usize],
        pool: &mut KvPool,
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) -> Vec<f32> {
        assert_eq!(spans.len(), keep.len(), "one count per sequence");
        let l = self.layers.len() - 1;
        let _layer = trace::span("layer", "layer");
        self.attention_block(l, x, spans, &span_lens(spans), pool, s, tap);
        let e = self.config.n_embd;
        // (Σ keep, n_embd)
        let mut rows = Vec::with_capacity(keep.iter().sum::<usize>() * e);
        let mut at = 0;
        for (sp, &k) in spans.iter().zip(keep) {
            assert!(k <= sp.n, "keeps more rows than the sequence has");
            rows.extend_from_slice(&x[(at + sp.n - k) * e..(at + sp.n) * e]);
            at += sp.n;
        }
        self.ffn_block(l, &mut rows, keep, s, tap);
        rows
    }

    /// The attention half of layer `l` (norm, q/k/v, rope, KV store, attention, output
    /// projection and residual) on the (n, n_embd) stream `x` in place; `lens` is
    /// [`span_lens`] of `spans`.
    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        l: usize,
        x: &mut [f32],
        spans: &[Span],
        lens: &[usize],
        pool: &mut KvPool,
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) {
        let c = &self.config;
        let layer = &self.layers[l];
        let (e, hd, ff, qd) = (c.n_embd, c.head_dim(), c.ffn_width(), c.q_dim());
        let n = x.len() / e;
        let kv_dim = c.n_head_kv * hd;
        // Phi-3's and Gemma's queries are scaled before attention, which then scales by 1
        // (llama.cpp's order: the rounding differs from scaling q·k).
        let q_scale = c.query_scale();
        let prescale = c.prescaled_queries();
        // A local layer (Gemma) sees a window of positions and rotates with its own RoPE.
        let (window, rope) = match &c.swa {
            Some(w) if w.local[l] => (Some(w.window), &w.rope),
            _ => (None, &c.rope),
        };
        let heads = Heads {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: hd,
            scale: if prescale { 1.0 } else { q_scale },
            window,
            softcap: c.attn_softcap,
        };
        s.size(n, e, qd, kv_dim, ff);
        let mm = |name, mats: &[&QMatrix]| matmul_span(name, mats, n);
        // (n, n_rot / 2) rotation angles, each row at its sequence's position: built by the
        // first layer of a pass, reused by the rest.
        let table = match window {
            Some(_) => &mut s.rope_swa,
            None => &mut s.rope,
        };
        table.fill(&rope.for_context(pool.seq_ctx()), spans);
        let op = trace::span("op", "attn_norm+quantize");
        ops::rms_norm(x, &layer.attn_norm, c.rms_eps, &mut s.h);
        tap.input(l, LinearInput::Attn, &s.h, n);
        s.acts
            .set_spans(&s.h, lens, e, kinds(&[&layer.wq, &layer.wk, &layer.wv]));
        drop(op);
        let op = mm("qkv", &[&layer.wq, &layer.wk, &layer.wv]);
        matmul_multi(
            &[&layer.wq, &layer.wk, &layer.wv],
            &s.acts,
            &mut [&mut s.q, &mut s.k, &mut s.v],
        );
        drop(op);
        if let Some([bq, bk, bv]) = &layer.qkv_bias {
            let _op = trace::span("op", "qkv_bias");
            for (out, bias) in [(&mut s.q, bq), (&mut s.k, bk), (&mut s.v, bv)] {
                for row in out.chunks_exact_mut(bias.len()) {
                    row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
                }
            }
        }
        tap.tensor(l, "Qcur", &s.q, n);
        tap.tensor(l, "Kcur", &s.k, n);
        tap.tensor(l, "Vcur", &s.v, n);
        if let Some([q_norm, k_norm]) = &layer.qk_norm {
            // Each head's row normalized on its own (llama.cpp's `Qcur_normed`).
            let _op = trace::span("op", "qk_norm");
            ops::rms_norm_in_place(&mut s.q, q_norm, c.rms_eps);
            ops::rms_norm_in_place(&mut s.k, k_norm, c.rms_eps);
            tap.tensor(l, "Qcur_normed", &s.q, n);
            tap.tensor(l, "Kcur_normed", &s.k, n);
        }
        let op = trace::span("op", "rope+kv_store");
        let table = if window.is_some() {
            &s.rope_swa
        } else {
            &s.rope
        };
        rope.apply(&mut s.q, hd, &table.cos, &table.sin);
        rope.apply(&mut s.k, hd, &table.cos, &table.sin);
        tap.tensor(l, "Qrope", &s.q, n);
        tap.tensor(l, "Krope", &s.k, n);
        if prescale {
            s.q.iter_mut().for_each(|v| *v *= q_scale);
        }
        let mut t = 0;
        for sp in spans {
            for p in sp.pos0..sp.pos0 + sp.n {
                let r = t * kv_dim..(t + 1) * kv_dim;
                pool.store(l, sp.kv.row(p), &s.k[r.clone()], &s.v[r]);
                t += 1;
            }
        }
        drop(op);
        let op = trace::span("op", "attention");
        ops::attention(&s.q, pool, l, spans, heads, &mut s.att);
        tap.input(l, LinearInput::AttnOut, &s.att, n);
        s.acts.set_spans(&s.att, lens, qd, layer.wo.act_kinds());
        drop(op);
        let op = mm("attn_output", &[&layer.wo]);
        layer.wo.matmul(&s.acts, &mut s.tmp);
        tap.tensor(l, "attn_out", &s.tmp, n);
        if let Some([post, _]) = &layer.post_norms {
            ops::rms_norm_in_place(&mut s.tmp, post, c.rms_eps);
            tap.tensor(l, "attn_post_norm", &s.tmp, n);
        }
        x.iter_mut().zip(&s.tmp).for_each(|(a, b)| *a += b);
        drop(op);
    }

    /// The feed-forward half of layer `l` on the (n, n_embd) stream `x` in place, `lens[i]`
    /// rows from sequence i (see [`Llama::attention_block`]).
    fn ffn_block(
        &self,
        l: usize,
        x: &mut [f32],
        lens: &[usize],
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) {
        let c = &self.config;
        let layer = &self.layers[l];
        let (e, ff) = (c.n_embd, c.ffn_width());
        let n = x.len() / e;
        s.size(n, e, c.q_dim(), c.n_head_kv * c.head_dim(), ff);
        let op = trace::span("op", "ffn_norm+quantize");
        ops::rms_norm(x, &layer.ffn_norm, c.rms_eps, &mut s.h);
        tap.input(l, LinearInput::Ffn, &s.h, n);
        if let Ffn::Dense { gate, up, .. } = &layer.ffn {
            s.acts.set_spans(&s.h, lens, e, kinds(&[gate, up]));
        }
        drop(op);
        match &layer.ffn {
            Ffn::Dense { gate, up, down } => self.dense_ffn(l, [gate, up, down], lens, s, tap),
            Ffn::Experts(moe) => {
                let scratch = moe::MoeScratch {
                    acts: &mut s.acts,
                    gate: &mut s.gate,
                    up: &mut s.up,
                };
                moe.forward(l, &s.h, lens, scratch, &mut s.tmp, tap)
            }
        }
        // (A mixture's output is `ffn_moe_out`; llama.cpp's llama graph names the sum after the
        // residual add `ffn_out` there.)
        if matches!(layer.ffn, Ffn::Dense { .. }) {
            tap.tensor(l, "ffn_out", &s.tmp, n);
        }
        if let Some([_, post]) = &layer.post_norms {
            ops::rms_norm_in_place(&mut s.tmp, post, c.rms_eps);
            tap.tensor(l, "ffn_post_norm", &s.tmp, n);
        }
        x.iter_mut().zip(&s.tmp).for_each(|(a, b)| *a += b);
    }

    /// A gated feed-forward block (gate, up, down) on the normed rows in `s.h`, already in
    /// `s.acts`, into `s.tmp`.
    fn dense_ffn(
        &self,
        l: usize,
        [gate, up, down]: [&QMatrix; 3],
        lens: &[usize],
        s: &mut Scratch,
        tap: &mut dyn Tap,
    ) {
        let c = &self.config;
        let (e, ff) = (c.n_embd, c.n_ff);
        let n = s.h.len() / e;
        let mm = |name, mats: &[&QMatrix]| matmul_span(name, mats, n);
        let op = mm("gate+up", &[gate, up]);
        matmul_multi(&[gate, up], &s.acts, &mut [&mut s.gate, &mut s.up]);
        drop(op);
        tap.tensor(l, "ffn_gate", &s.gate, n);
        tap.tensor(l, "ffn_up", &s.up, n);
        let op = if c.arch.is_gemma() {
            let op = trace::span("op", "geglu+quantize");
            ops::geglu(&mut s.gate, &s.up);
            op
        } else {
            let op = trace::span("op", "swiglu+quantize");
            ops::swiglu(&mut s.gate, &s.up, ff);
            op
        };
        tap.input(l, LinearInput::FfnDown, &s.gate, n);
        s.acts.set_spans(&s.gate, lens, ff, down.act_kinds());
        drop(op);
        let _op = mm("ffn_down", &[down]);
        down.matmul(&s.acts, &mut s.tmp);
    }

    /// Final norm and output projection of the (n, n_embd) stream `x`: (n_vocab,) logits of
    /// the last row for [`Logits::Last`], (n, n_vocab) for [`Logits::All`].
    pub fn head(&self, x: &[f32], want: Logits) -> Vec<f32> {
        let c = &self.config;
        let e = c.n_embd;
        let n = x.len() / e;
        if n == 0 {
            return Vec::new();
        }
        let rows = match want {
            Logits::Last => &x[(n - 1) * e..],
            Logits::All => x,
        };
        self.head_rows(rows, &[rows.len() / e])
    }

    /// Final norm and output projection of (n_out, n_embd) `rows`, `spans[i]` of them from
    /// sequence i: (n_out, n_vocab) logits.
    fn head_rows(&self, rows: &[f32], spans: &[usize]) -> Vec<f32> {
        let c = &self.config;
        let e = c.n_embd;
        let n_out = rows.len() / e;
        let out = self.output_matrix();
        let _span = trace::span("matmul", "output_head")
            .arg("bytes", out.nbytes() as f64)
            .arg("flops", (2 * out.rows * out.cols * n_out) as f64);
        // (n_out, n_embd)
        let mut normed = vec![0f32; rows.len()];
        ops::rms_norm(rows, &self.output_norm, c.rms_eps, &mut normed);
        let mut acts = Activations::new();
        acts.set_spans(&normed, spans, e, out.act_kinds());
        // (n_out, n_vocab)
        let mut logits = vec![0f32; n_out * c.n_vocab];
        out.matmul(&acts, &mut logits);
        if let Some(cap) = c.final_softcap {
            logits
                .iter_mut()
                .for_each(|v| *v = smelt_kernels::attention::softcap(*v, cap));
        }
        logits
    }

    /// Layer `l`'s weight matrix `which`.
    ///
    /// # Panics
    ///
    /// For the feed-forward matrices of a mixture of experts, which has no single gate, up or
    /// down ([`Llama::is_moe`]; post-training quantization refuses such models in
    /// [`Llama::dequantize_to_f32`]).
    pub fn linear(&self, l: usize, which: Linear) -> &QMatrix {
        let y = &self.layers[l];
        match (which, &y.ffn) {
            (Linear::Q, _) => &y.wq,
            (Linear::K, _) => &y.wk,
            (Linear::V, _) => &y.wv,
            (Linear::O, _) => &y.wo,
            (Linear::Gate, Ffn::Dense { gate, .. }) => gate,
            (Linear::Up, Ffn::Dense { up, .. }) => up,
            (Linear::Down, Ffn::Dense { down, .. }) => down,
            (_, Ffn::Experts(_)) => panic!("layer {l} is a mixture of experts: no {which:?}"),
        }
    }

    /// Whether the feed-forward blocks are mixtures of experts (Mixtral, Qwen 3 MoE).
    pub fn is_moe(&self) -> bool {
        self.config.moe.is_some()
    }

    /// An error for a mixture of experts, which the post-training quantization methods (they
    /// read and replace [`Llama::linear`]'s seven matrices per layer) do not handle yet.
    pub fn dense_ffn_only(&self) -> Result<(), ModelError> {
        match self.config.moe {
            Some(m) => Err(ModelError::Unsupported(format!(
                "{} has {} experts per layer: post-training quantization (RTN, GPTQ, AWQ, \
                 SmoothQuant, calibrated mixes) handles dense feed-forwards only so far; \
                 `smelt gguf quantize` with a plain mix rounds the experts as llama.cpp does",
                self.config.arch.name(),
                m.count
            ))),
            None => Ok(()),
        }
    }

    /// Replaces layer `l`'s matrix `which` (e.g. with a quantized one) of the same shape.
    pub fn set_linear(&mut self, l: usize, which: Linear, m: QMatrix) -> Result<(), ModelError> {
        if matches!(which, Linear::Gate | Linear::Up | Linear::Down) {
            self.dense_ffn_only()?;
        }
        let old = self.linear(l, which);
        if (old.rows, old.cols) != (m.rows, m.cols) {
            return Err(ModelError::Tensor {
                name: format!("blk.{l}.{}", which.gguf_name()),
                why: format!(
                    "replacement is {}x{}, expected {}x{}",
                    m.rows, m.cols, old.rows, old.cols
                ),
            });
        }
        *self.linear_mut(l, which) = m;
        Ok(())
    }

    fn linear_mut(&mut self, l: usize, which: Linear) -> &mut QMatrix {
        let y = &mut self.layers[l];
        match (which, &mut y.ffn) {
            (Linear::Q, _) => &mut y.wq,
            (Linear::K, _) => &mut y.wk,
            (Linear::V, _) => &mut y.wv,
            (Linear::O, _) => &mut y.wo,
            (Linear::Gate, Ffn::Dense { gate, .. }) => gate,
            (Linear::Up, Ffn::Dense { up, .. }) => up,
            (Linear::Down, Ffn::Dense { down, .. }) => down,
            (_, Ffn::Experts(_)) => panic!("layer {l} is a mixture of experts: no {which:?}"),
        }
    }

    /// Layer `l`'s (n_embd,) RMSNorm weight before attention (`attn`) or the feed-forward.
    pub fn norm(&self, l: usize, attn: bool) -> &[f32] {
        let y = &self.layers[l];
        if attn { &y.attn_norm } else { &y.ffn_norm }
    }

    /// Layer `l`'s (n_embd,) RMSNorm weight before attention (`attn`) or the feed-forward,
    /// editable so scales can be folded into it (AWQ, SmoothQuant).
    pub fn norm_mut(&mut self, l: usize, attn: bool) -> &mut [f32] {
        let y = &mut self.layers[l];
        if attn {
            &mut y.attn_norm
        } else {
            &mut y.ffn_norm
        }
    }

    /// Layer `l`'s bias of projection `which` (q, k or v; Qwen 2), if the model has one.
    pub fn bias(&self, l: usize, which: Linear) -> Option<&[f32]> {
        let [q, k, v] = self.layers[l].qkv_bias.as_ref()?;
        match which {
            Linear::Q => Some(q),
            Linear::K => Some(k),
            Linear::V => Some(v),
            _ => None,
        }
    }

    /// [`Llama::bias`], editable: a scale divided out of v's rows must divide v's bias too
    /// (AWQ's v → o step).
    pub fn bias_mut(&mut self, l: usize, which: Linear) -> Option<&mut [f32]> {
        let [q, k, v] = self.layers[l].qkv_bias.as_mut()?;
        match which {
            Linear::Q => Some(q),
            Linear::K => Some(k),
            Linear::V => Some(v),
            _ => None,
        }
    }

    /// Replaces every weight matrix with its values dequantized to F32, with the GEMM path on:
    /// the "full precision" base that post-training quantization starts from. Refused for a
    /// mixture of experts, whose quantization smelt's PTQ methods do not handle yet.
    pub fn dequantize_to_f32(&mut self) -> Result<(), ModelError> {
        self.dense_ffn_only()?;
        let conv = |m: &mut QMatrix, name: &str| -> Result<(), ModelError> {
            let mut f = QMatrix::from_f32(m.rows, m.cols, &m.to_f32()).map_err(|why| {
                ModelError::Tensor {
                    name: name.into(),
                    why,
                }
            })?;
            f.set_float_gemm(true);
            *m = f;
            Ok(())
        };
        for l in 0..self.layers.len() {
            for which in Linear::ALL {
                conv(
                    self.linear_mut(l, which),
                    &format!("blk.{l}.{}", which.gguf_name()),
                )?;
            }
        }
        conv(&mut self.tok_embd, "token_embd.weight")?;
        if let Some(o) = &mut self.output {
            conv(o, "output.weight")?;
        }
        Ok(())
    }

    /// Sends F32 matrices' batched products through a GEMM (see
    /// [`QMatrix::set_float_gemm`]): faster prompt processing, no batch invariance.
    pub fn use_float_gemm(&mut self) {
        let take = |m: &mut QMatrix| m.set_float_gemm(true);
        for y in &mut self.layers {
            y.matrices_mut().for_each(take);
        }
        take(&mut self.tok_embd);
        if let Some(o) = &mut self.output {
            take(o);
        }
    }
}

impl Layer {
    /// Every weight matrix of the layer (a mixture's router and experts one by one).
    fn matrices(&self) -> Box<dyn Iterator<Item = &QMatrix> + '_> {
        let attn = [&self.wq, &self.wk, &self.wv, &self.wo].into_iter();
        match &self.ffn {
            Ffn::Dense { gate, up, down } => Box::new(attn.chain([gate, up, down])),
            Ffn::Experts(x) => Box::new(attn.chain(x.matrices())),
        }
    }

    /// [`Layer::matrices`], editable.
    fn matrices_mut(&mut self) -> Box<dyn Iterator<Item = &mut QMatrix> + '_> {
        let attn = [&mut self.wq, &mut self.wk, &mut self.wv, &mut self.wo].into_iter();
        match &mut self.ffn {
            Ffn::Dense { gate, up, down } => Box::new(attn.chain([gate, up, down])),
            Ffn::Experts(x) => Box::new(attn.chain(x.matrices_mut())),
        }
    }
}

/// Each sequence's row count, which the activations take so that k-quant products sum as
/// llama.cpp would for that sequence's batch.
fn span_lens(spans: &[Span]) -> Vec<usize> {
    spans.iter().map(|sp| sp.n).collect()
}

/// A trace span for one product of `mats` over `n` rows, with its bytes and flops for the
/// profile's roofline columns.
fn matmul_span(name: &'static str, mats: &[&QMatrix], n: usize) -> trace::Span {
    let span = trace::span("matmul", name);
    if !trace::enabled() {
        return span;
    }
    let bytes: usize = mats
        .iter()
        .map(|m| {
            if n == 1 {
                m.one_token_bytes()
            } else {
                m.nbytes()
            }
        })
        .sum();
    let flops: usize = mats.iter().map(|m| 2 * m.rows * m.cols * n).sum();
    span.arg("bytes", bytes as f64).arg("flops", flops as f64)
}
