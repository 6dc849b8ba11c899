//! Llama-family decoder (LLaMA, SmolLM2, ...) loaded from GGUF: RMSNorm, rotary position
//! embeddings, grouped-query attention with a KV cache, SwiGLU feed-forward, tied or untied
//! output. Touvron et al., "LLaMA" (arXiv:2302.13971); reference: llama.cpp's `src/models/llama.cpp`.
//!
//! This first version is the plain reference: weights are dequantized to f32 at load and every
//! product is a straightforward dot product. Quantized kernels will replace the matrix-vector
//! products behind the same model code.

use smelt_gguf::{GgufFile, blocks};

use crate::kv_cache::KvCache;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file does not describe a supported model.
    #[error("{0}")]
    Unsupported(String),
    /// A tensor is missing or has the wrong shape.
    #[error("tensor {name}: {why}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The context is full.
    #[error("context of {0} tokens is full; shorten the prompt or generate fewer tokens")]
    ContextFull(usize),
}

/// Hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Model width.
    pub n_embd: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Maximum context.
    pub n_ctx: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Vocabulary size.
    pub n_vocab: usize,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// A matrix `(rows, cols)` row-major in f32: `y = W x` takes `cols` inputs to `rows` outputs.
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// `y = W x`, rows split across the rayon pool in blocks of 64 (each row's dot product is
    /// computed exactly as single-threaded, so results do not depend on the thread count).
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        use rayon::prelude::*;
        const ROWS: usize = 64;
        y[..self.rows]
            .par_chunks_mut(ROWS)
            .enumerate()
            .for_each(|(b, out)| {
                for (i, o) in out.iter_mut().enumerate() {
                    let r = b * ROWS + i;
                    *o = dot(&self.data[r * self.cols..(r + 1) * self.cols], x);
                }
            });
    }
}

/// Dot product with 8 independent accumulators (vectorizes; order is fixed, so deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// A llama model ready to run.
pub struct Llama {
    /// Hyper-parameters.
    pub config: LlamaConfig,
    /// (n_vocab, n_embd) token embeddings.
    tok_embd: Matrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// (n_vocab, n_embd) output projection; `None` when tied to the embeddings.
    output: Option<Matrix>,
}

fn load(file: &GgufFile, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
    let t = file
        .header
        .tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ModelError::Tensor {
            name: name.into(),
            why: "missing".into(),
        })?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if dims != shape {
        return Err(ModelError::Tensor {
            name: name.into(),
            why: format!("dims {dims:?}, expected {shape:?}"),
        });
    }
    blocks::dequantize(t.ggml_type, file.tensor_data(t), t.elements() as usize).map_err(|e| {
        ModelError::Tensor {
            name: name.into(),
            why: e.to_string(),
        }
    })
}

fn matrix(file: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Matrix, ModelError> {
    Ok(Matrix {
        rows,
        cols,
        data: load(file, name, &[cols, rows])?,
    })
}

impl Llama {
    /// Loads a llama-architecture GGUF.
    pub fn load(file: &GgufFile) -> Result<Self, ModelError> {
        let h = &file.header;
        let arch = h
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if arch != "llama" {
            return Err(ModelError::Unsupported(format!(
                "architecture {arch:?} is not supported (supported: llama)"
            )));
        }
        let u = |k: &str| {
            h.get(&format!("llama.{k}"))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::Unsupported(format!("llama.{k} is missing")))
        };
        let f = |k: &str, d: f32| {
            h.get(&format!("llama.{k}"))
                .and_then(|v| v.as_f64())
                .map_or(d, |v| v as f32)
        };
        if h.get("llama.rope.scaling.type").is_some() {
            return Err(ModelError::Unsupported(
                "RoPE scaling is not supported yet".into(),
            ));
        }
        let n_head = u("attention.head_count")?;
        let n_vocab = match h.get("tokenizer.ggml.tokens") {
            Some(smelt_gguf::MetaValue::Array(_, items)) => items.len(),
            _ => u("vocab_size")?,
        };
        let config = LlamaConfig {
            n_layer: u("block_count")?,
            n_embd: u("embedding_length")?,
            n_ff: u("feed_forward_length")?,
            n_head,
            n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
            n_ctx: u("context_length")?,
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: f("rope.freq_base", 10000.0),
            n_vocab,
        };
        if config.n_head == 0
            || config.n_head_kv == 0
            || !config.n_head.is_multiple_of(config.n_head_kv)
            || !config.n_embd.is_multiple_of(config.n_head)
            || !config.head_dim().is_multiple_of(2)
            || config.n_vocab == 0
        {
            return Err(ModelError::Unsupported(format!(
                "inconsistent hyper-parameters: {} heads, {} KV heads, width {}, vocabulary {}",
                config.n_head, config.n_head_kv, config.n_embd, config.n_vocab
            )));
        }
        let (e, ff, kv) = (
            config.n_embd,
            config.n_ff,
            config.head_dim() * config.n_head_kv,
        );
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: load(file, &n("attn_norm"), &[e])?,
                wq: matrix(file, &n("attn_q"), e, e)?,
                wk: matrix(file, &n("attn_k"), e, kv)?,
                wv: matrix(file, &n("attn_v"), e, kv)?,
                wo: matrix(file, &n("attn_output"), e, e)?,
                ffn_norm: load(file, &n("ffn_norm"), &[e])?,
                w_gate: matrix(file, &n("ffn_gate"), e, ff)?,
                w_up: matrix(file, &n("ffn_up"), e, ff)?,
                w_down: matrix(file, &n("ffn_down"), ff, e)?,
            });
        }
        let output = if h.tensors.iter().any(|t| t.name == "output.weight") {
            Some(matrix(file, "output.weight", e, config.n_vocab)?)
        } else {
            None
        };
        Ok(Self {
            tok_embd: matrix(file, "token_embd.weight", e, config.n_vocab)?,
            output_norm: load(file, "output_norm.weight", &[e])?,
            output,
            layers,
            config,
        })
    }

    /// A KV cache for this model holding up to `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layer, n_ctx.min(c.n_ctx), c.n_head_kv * c.head_dim())
    }

    /// Runs one token at the cache's next position and returns the (n_vocab,) logits.
    pub fn forward(&self, token: u32, cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let pos = cache.len();
        if pos >= cache.capacity() {
            return Err(ModelError::ContextFull(cache.capacity()));
        }
        let (e, hd) = (c.n_embd, c.head_dim());
        let kv_dim = c.n_head_kv * hd;
        let group = c.n_head / c.n_head_kv;
        let tok = (token as usize).min(c.n_vocab - 1);
        // (n_embd,) residual stream.
        let mut x = self.tok_embd.data[tok * e..(tok + 1) * e].to_vec();
        let mut h = vec![0f32; e];
        let (mut q, mut k, mut v) = (vec![0f32; e], vec![0f32; kv_dim], vec![0f32; kv_dim]);
        let mut att = vec![0f32; e];
        let mut tmp = vec![0f32; e];
        let (mut gate, mut up) = (vec![0f32; c.n_ff], vec![0f32; c.n_ff]);
        let mut scores = vec![0f32; pos + 1];
        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut h);
            layer.wq.matvec(&h, &mut q);
            layer.wk.matvec(&h, &mut k);
            layer.wv.matvec(&h, &mut v);
            rope(&mut q, hd, pos, c.rope_base);
            rope(&mut k, hd, pos, c.rope_base);
            cache.store(l, pos, &k, &v);
            let scale = 1.0 / (hd as f32).sqrt();
            for head in 0..c.n_head {
                let kvh = head / group;
                let qh = &q[head * hd..(head + 1) * hd];
                for (p, s) in scores.iter_mut().enumerate() {
                    *s = dot(qh, &cache.key(l, p)[kvh * hd..(kvh + 1) * hd]) * scale;
                }
                softmax(&mut scores);
                let out = &mut att[head * hd..(head + 1) * hd];
                out.iter_mut().for_each(|o| *o = 0.0);
                for (p, &w) in scores.iter().enumerate() {
                    let vp = &cache.value(l, p)[kvh * hd..(kvh + 1) * hd];
                    for (o, &vv) in out.iter_mut().zip(vp) {
                        *o += w * vv;
                    }
                }
            }
            layer.wo.matvec(&att, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut h);
            layer.w_gate.matvec(&h, &mut gate);
            layer.w_up.matvec(&h, &mut up);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u; // SiLU(gate) · up
            }
            layer.w_down.matvec(&gate, &mut tmp);
            x.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
        }
        cache.advance();
        rms_norm(&x.clone(), &self.output_norm, c.rms_eps, &mut x);
        let out = self.output.as_ref().unwrap_or(&self.tok_embd);
        let mut logits = vec![0f32; c.n_vocab];
        out.matvec(&x, &mut logits);
        Ok(logits)
    }
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * s * g;
    }
}

/// RoPE in GGUF's "normal" layout: each head's adjacent pairs `(2i, 2i+1)` rotate by
/// `pos · base^(−2i/head_dim)` (llama.cpp's converter permuted the q/k rows to make it so).
fn rope(x: &mut [f32], head_dim: usize, pos: usize, base: f32) {
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let theta = pos as f32 * base.powf(-2.0 * i as f32 / head_dim as f32);
            let (s, c) = theta.sin_cos();
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_pairs_and_keeps_norms() {
        let mut x = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut x, 4, 0, 10000.0);
        assert_eq!(x, vec![1.0, 0.0, 0.0, 1.0]);
        rope(&mut x, 4, 1, 10000.0);
        // pair 0 rotates by 1 rad, pair 1 by 1/100 rad.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] + 0.01f32.sin()).abs() < 1e-6 && (x[3] - 0.01f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn softmax_and_rms_norm() {
        let mut s = vec![0.0, (2f32).ln()];
        softmax(&mut s);
        assert!((s[0] - 1.0 / 3.0).abs() < 1e-6 && (s[1] - 2.0 / 3.0).abs() < 1e-6);
        let mut out = vec![0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
