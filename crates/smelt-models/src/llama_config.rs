//! The llama decoder's hyper-parameters, read and checked from GGUF metadata, and the errors
//! loading or running a model can give.

use crate::ops::{Rope, RopeLayout};

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
    /// Rotary embedding settings.
    pub rope: Rope,
    /// Vocabulary size.
    pub n_vocab: usize,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Reads and checks the hyper-parameters of a `llama` GGUF.
    pub fn from_gguf(h: &smelt_gguf::Header) -> Result<Self, ModelError> {
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
        let linear_scale = match h.get("llama.rope.scaling.type").and_then(|v| v.as_str()) {
            None | Some("none") => f("rope.scale_linear", 1.0),
            Some("linear") => f("rope.scaling.factor", 1.0),
            Some(other) => {
                return Err(ModelError::Unsupported(format!(
                    "RoPE scaling {other:?} is not supported (supported: none, linear)"
                )));
            }
        };
        let n_head = u("attention.head_count")?;
        let n_vocab = match h.get("tokenizer.ggml.tokens") {
            Some(smelt_gguf::MetaValue::Array(_, items)) => items.len(),
            _ => u("vocab_size")?,
        };
        let n_embd = u("embedding_length")?;
        let head_dim = n_embd.checked_div(n_head).unwrap_or(0);
        let config = LlamaConfig {
            n_layer: u("block_count")?,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_head,
            n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
            n_ctx: u("context_length")?,
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            rope: Rope {
                layout: RopeLayout::Normal,
                n_rot: u("rope.dimension_count").unwrap_or(head_dim),
                base: f("rope.freq_base", 10000.0),
                linear_scale,
                // `rope_freqs.weight`, a tensor: `Llama::load` reads it.
                freq_factors: None,
            },
            n_vocab,
        };
        if config.n_layer == 0
            || config.n_head == 0
            || config.n_head_kv == 0
            || !config.n_head.is_multiple_of(config.n_head_kv)
            || !config.n_embd.is_multiple_of(config.n_head)
            || config.rope.n_rot == 0
            || !config.rope.n_rot.is_multiple_of(2)
            || config.rope.n_rot > head_dim
            || config.rope.linear_scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || config.n_vocab == 0
        {
            return Err(ModelError::Unsupported(format!(
                "inconsistent hyper-parameters: {} layers, {} heads, {} KV heads, width {}, {} rotated dims, RoPE scale {}, vocabulary {}",
                config.n_layer,
                config.n_head,
                config.n_head_kv,
                config.n_embd,
                config.rope.n_rot,
                config.rope.linear_scale,
                config.n_vocab
            )));
        }
        Ok(config)
    }
}
