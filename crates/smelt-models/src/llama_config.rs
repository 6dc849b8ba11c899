//! The llama decoder's hyper-parameters, read and checked from GGUF metadata, and the errors
//! loading or running a model can give. Qwen 2, Qwen 3 (dense and MoE), Phi-3, Gemma 2 and
//! Gemma 3 are llama's graph with small differences, so they share it: [`Arch`] says which, and
//! [`Experts`] whether the feed-forward is a mixture of experts (Mixtral, Qwen 3 MoE).

use crate::ops::{Rope, RopeLayout};

mod experts;
mod gemma;

pub use experts::Experts;
pub use gemma::SlidingWindow;
use gemma::{number, sliding_window};

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

/// The decoder families smelt runs (`general.architecture`), all llama's graph: Qwen 2 adds
/// biases to the query, key and value projections; Qwen 3 normalizes each query and key head
/// (RMSNorm) before RoPE, and its heads may be wider than `n_embd / n_head`; Phi-3 stores q/k/v
/// as one matrix and gate/up as another, and scales the queries before attention. All three
/// rotate NeoX-style (halves), where llama GGUFs rotate adjacent pairs. Gemma 3 adds Qwen 3's
/// q/k norms, a norm after attention and after the feed-forward, GELU for SiLU, embeddings
/// scaled by √n_embd, and local layers that see a sliding window of positions with their own
/// RoPE base ([`SlidingWindow`]). Gemma 2 is Gemma 3 without the q/k norms, with every other
/// layer local and soft-capped attention scores and logits. Qwen 3 MoE is Qwen 3 with a
/// mixture of experts in every layer; `llama` files with experts are Mixtral's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (LLaMA 1-3, SmolLM2, Mistral, ...).
    Llama,
    /// `qwen2` (Qwen 1.5, Qwen 2, Qwen 2.5).
    Qwen2,
    /// `qwen3` (Qwen 3 dense).
    Qwen3,
    /// `qwen3moe` (Qwen 3 30B-A3B, 235B-A22B): Qwen 3's attention, experts in every layer.
    Qwen3Moe,
    /// `qwen2moe` (Qwen 1.5 MoE A2.7B, Qwen 2 57B-A14B): Qwen 2's attention, experts whose
    /// weights are not renormalized, and a shared expert behind a sigmoid gate.
    Qwen2Moe,
    /// `phi3` (Phi-3 mini/medium, Phi-3.5 mini and Phi-4 mini with LongRoPE, Phi-4).
    Phi3,
    /// `gemma2` (Gemma 2 2B, 9B, 27B).
    Gemma2,
    /// `gemma3` (Gemma 3 270M, 1B, and the 4B-27B text towers).
    Gemma3,
}

impl Arch {
    /// The `general.architecture` name, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// Gemma 2 or 3: scaled embeddings, post-norms, GeGLU, queries scaled first, local layers.
    pub fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }

    /// Qwen 3, dense or MoE: per-head q/k RMSNorm before RoPE.
    pub fn is_qwen3(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Qwen3Moe)
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Qwen3,
            Arch::Qwen3Moe,
            Arch::Qwen2Moe,
            Arch::Phi3,
            Arch::Gemma2,
            Arch::Gemma3,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// The widest attention head accepted (real models: 64 to 256).
const MAX_HEAD_DIM: usize = 1 << 16;
/// The most query or key/value heads accepted.
const MAX_HEADS: usize = 1 << 16;
/// The most layers accepted: llama.cpp's `LLAMA_MAX_LAYERS` (per-layer tables are built from
/// the count before any tensor is looked at).
pub(crate) const MAX_LAYERS: usize = 512;

/// The linear RoPE factor the model was trained with, as llama.cpp reads it whatever the
/// scaling type: `rope.scaling.factor`, else the older `rope.scale_linear`; 0 or absent is 1.
/// (Gemma 2's local layers take it even where the type is `none`.)
pub(crate) fn trained_rope_scale(h: &smelt_gguf::Header, arch: Arch) -> f32 {
    let get = |k: &str| {
        h.get(&format!("{}.{k}", arch.name()))
            .and_then(|v| v.as_f64())
    };
    match get("rope.scaling.factor").or_else(|| get("rope.scale_linear")) {
        Some(v) if v != 0.0 => v as f32,
        _ => 1.0,
    }
}

/// Hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Which of llama's variants.
    pub arch: Arch,
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
    /// Width of one attention head (`attention.key_length`; `n_embd / n_head` when absent).
    pub n_embd_head: usize,
    /// Maximum context.
    pub n_ctx: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotary embedding settings.
    pub rope: Rope,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Local attention layers (Gemma 2, Gemma 3 with `attention.sliding_window`), if any.
    pub swa: Option<SlidingWindow>,
    /// `final_logit_softcapping`: logits become `c · tanh(logit / c)` (Gemma 2, by default
    /// 30; Gemma 3 where set).
    pub final_softcap: Option<f32>,
    /// `attn_logit_softcapping`: attention scores become `c · tanh(q·k / c)` before the
    /// softmax (Gemma 2, by default 50).
    pub attn_softcap: Option<f32>,
    /// The mixture of experts that replaces every layer's feed-forward (Mixtral, Qwen 3 MoE),
    /// if any.
    pub moe: Option<Experts>,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd_head
    }

    /// Width of all query heads together (`n_embd` unless `attention.key_length` says the
    /// heads are wider, as Qwen 3's are).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.n_embd_head
    }

    /// Width of the feed-forward block a token runs: `n_ff`, or one expert's width.
    pub fn ffn_width(&self) -> usize {
        self.moe.map_or(self.n_ff, |m| m.n_ff)
    }

    /// Whether the queries are scaled before attention, which then scales q·k by 1 (Phi-3 and
    /// Gemma, as llama.cpp runs them: the rounding differs from scaling q·k).
    pub fn prescaled_queries(&self) -> bool {
        self.arch == Arch::Phi3 || self.arch.is_gemma()
    }

    /// The factor on the queries or on q·k: 1/√head_dim, but for the 27B Gemmas (Gemma 2's 46
    /// layers, Gemma 3's 62), 1/√(n_embd / n_head), as llama.cpp (after gemma_pytorch's
    /// `query_pre_attn_scalar`).
    pub fn query_scale(&self) -> f32 {
        let is_27b = match self.arch {
            Arch::Gemma2 => self.n_layer == 46,
            Arch::Gemma3 => self.n_layer == 62,
            _ => false,
        };
        if is_27b {
            1.0 / ((self.n_embd / self.n_head) as f32).sqrt()
        } else {
            1.0 / (self.head_dim() as f32).sqrt()
        }
    }

    /// The factor on the token embeddings: √n_embd for Gemma (in f32, as llama.cpp's
    /// `sqrtf`), none elsewhere.
    pub fn embedding_scale(&self) -> Option<f32> {
        self.arch.is_gemma().then(|| (self.n_embd as f32).sqrt())
    }

    /// Reads and checks the hyper-parameters of a `llama`, `qwen2`, `qwen2moe`, `qwen3`,
    /// `qwen3moe`, `phi3`, `gemma2` or `gemma3` GGUF.
    pub fn from_gguf(h: &smelt_gguf::Header) -> Result<Self, ModelError> {
        let name = h
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let arch = Arch::from_name(name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "architecture {name:?} is not supported (supported: llama, qwen2, qwen2moe, \
                 qwen3, qwen3moe, phi3, gemma2, gemma3)"
            ))
        })?;
        let key = |k: &str| format!("{}.{k}", arch.name());
        let get_u = |k: &str| h.get(&key(k)).and_then(|v| v.as_u64()).map(|v| v as usize);
        let u = |k: &str| {
            get_u(k).ok_or_else(|| ModelError::Unsupported(format!("{} is missing", key(k))))
        };
        let f = |k: &str, d: f32| {
            h.get(&key(k))
                .and_then(|v| v.as_f64())
                .map_or(d, |v| v as f32)
        };
        let linear_scale = match h.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("linear") => trained_rope_scale(h, arch),
            // llama.cpp never scales the (global) rotation then.
            Some("none") => 1.0,
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
        // llama.cpp's defaults: both widths n_embd / n_head (0 where heads do not tile the
        // width, refused below); smelt runs equal ones only.
        let tiled = n_embd
            .checked_div(n_head)
            .filter(|_| n_embd.is_multiple_of(n_head))
            .unwrap_or(0);
        let key_len = get_u("attention.key_length").unwrap_or(tiled);
        let value_len = get_u("attention.value_length").unwrap_or(tiled);
        if key_len != value_len {
            return Err(ModelError::Unsupported(format!(
                "heads of {key_len} key and {value_len} value dimensions are not supported (only \
                 equal widths)"
            )));
        }
        let head_dim = key_len;
        let config = LlamaConfig {
            arch,
            n_layer: u("block_count")?,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_head,
            n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
            n_embd_head: head_dim,
            n_ctx: u("context_length")?,
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            rope: Rope {
                layout: match arch {
                    Arch::Llama => RopeLayout::Normal,
                    Arch::Qwen2
                    | Arch::Qwen3
                    | Arch::Qwen3Moe
                    | Arch::Qwen2Moe
                    | Arch::Phi3
                    | Arch::Gemma2
                    | Arch::Gemma3 => RopeLayout::Neox,
                },
                n_rot: u("rope.dimension_count").unwrap_or(head_dim),
                base: f("rope.freq_base", 10000.0),
                linear_scale,
                // `rope_freqs.weight`, `rope_factors_{long,short}.weight`: tensors that
                // `Llama::load` reads.
                freq_factors: None,
                long_rope: None,
                attn_factor: f("rope.scaling.attn_factor", 1.0),
            },
            n_vocab,
            swa: None,
            final_softcap: None,
            attn_softcap: None,
            moe: None,
        };
        if config.n_layer == 0
            || config.n_layer > MAX_LAYERS
            || config.n_head == 0
            || config.n_head_kv == 0
            || !config.n_head.is_multiple_of(config.n_head_kv)
            || head_dim == 0
            // Bounds that keep every product of them far from overflowing.
            || head_dim > MAX_HEAD_DIM
            || config.n_head > MAX_HEADS
            || config.n_head_kv > MAX_HEADS
            || config.rope.n_rot == 0
            || !config.rope.n_rot.is_multiple_of(2)
            || config.rope.n_rot > head_dim
            || config.rope.linear_scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || config.n_vocab == 0
            || config.n_ff == 0
            || config.n_ctx == 0
        {
            return Err(ModelError::Unsupported(format!(
                "inconsistent hyper-parameters: {} layers, {} heads, {} KV heads, width {}, heads of {}, {} rotated dims, RoPE scale {}, vocabulary {}, feed-forward width {}, context {}",
                config.n_layer,
                config.n_head,
                config.n_head_kv,
                config.n_embd,
                head_dim,
                config.rope.n_rot,
                config.rope.linear_scale,
                config.n_vocab,
                config.n_ff,
                config.n_ctx
            )));
        }
        // A negative or NaN epsilon turns rows into NaN (zero is allowed, as in llama.cpp); a base that is not
        // positive turns every angle into NaN (and every logit after it).
        if !(config.rms_eps.is_finite() && config.rms_eps >= 0.0) {
            return Err(ModelError::Unsupported(format!(
                "{} is {} (it must be finite and not negative)",
                key("attention.layer_norm_rms_epsilon"),
                config.rms_eps
            )));
        }
        // llama.cpp multiplies every angle's cos and sin by this factor (LongRoPE's magnitude
        // scaling): smelt does so for the architectures whose LongRoPE it runs.
        let attn_factor = config.rope.attn_factor;
        if !(attn_factor.is_finite() && attn_factor > 0.0) {
            return Err(ModelError::Unsupported(format!(
                "{} is {attn_factor} (it must be positive)",
                key("rope.scaling.attn_factor")
            )));
        }
        if attn_factor != 1.0 && !matches!(arch, Arch::Phi3 | Arch::Llama) {
            return Err(ModelError::Unsupported(format!(
                "{} is {attn_factor}: RoPE attention factors are supported for phi3 and llama",
                key("rope.scaling.attn_factor")
            )));
        }
        // llama.cpp's Phi-3 output matrix is n_embd × n_embd.
        if arch == Arch::Phi3 && config.q_dim() != n_embd {
            return Err(ModelError::Unsupported(format!(
                "phi3 with {} heads of {head_dim} (width {n_embd}): the heads must span the width",
                config.n_head
            )));
        }
        if !(config.rope.base.is_finite() && config.rope.base > 0.0) {
            return Err(ModelError::Unsupported(format!(
                "{} is {} (it must be positive)",
                key("rope.freq_base"),
                config.rope.base
            )));
        }
        let mut config = config;
        config.moe = experts::experts(h, &config)?;
        if arch.is_gemma() {
            config.swa = sliding_window(h, &config)?;
            // Gemma 2 always caps (llama.cpp's defaults 50 and 30); Gemma 3 caps logits only
            // where the key is set and not 0.
            let gemma2 = arch == Arch::Gemma2;
            let cap = |k: &str, default: f32| -> Result<Option<f32>, ModelError> {
                let v = number(h, &key(k))?.map(|v| v as f32);
                let v = if gemma2 {
                    v.or(Some(default))
                } else {
                    v.filter(|&c| c != 0.0)
                };
                match v {
                    Some(c) if !(c.is_finite() && c > 0.0) => Err(ModelError::Unsupported(
                        format!("{} is {c} (it must be positive)", key(k)),
                    )),
                    v => Ok(v),
                }
            };
            config.final_softcap = cap("final_logit_softcapping", 30.0)?;
            if gemma2 {
                config.attn_softcap = cap("attn_logit_softcapping", 50.0)?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_gguf::{Header, MetaValue};

    /// A small, consistent llama header with `key` set to `value`.
    pub(super) fn header_with(key: &str, value: MetaValue) -> Header {
        let mut metadata: Vec<(String, MetaValue)> = [
            ("general.architecture", MetaValue::String("llama".into())),
            ("llama.block_count", MetaValue::U32(2)),
            ("llama.context_length", MetaValue::U32(64)),
            ("llama.embedding_length", MetaValue::U32(32)),
            ("llama.feed_forward_length", MetaValue::U32(64)),
            ("llama.attention.head_count", MetaValue::U32(4)),
            ("llama.vocab_size", MetaValue::U32(100)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                MetaValue::F32(1e-5),
            ),
            ("llama.rope.freq_base", MetaValue::F32(10000.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        metadata.retain(|(k, _)| k != key);
        metadata.push((key.into(), value));
        Header {
            version: 3,
            metadata,
            tensors: Vec::new(),
            alignment: 32,
            data_offset: 0,
            file_len: 0,
        }
    }

    #[test]
    fn hyper_parameters_that_would_give_nan_or_a_panic_are_refused() {
        let ok = LlamaConfig::from_gguf(&header_with("llama.block_count", MetaValue::U32(2)));
        assert_eq!(ok.unwrap().head_dim(), 8);
        for (key, value, says) in [
            (
                "llama.feed_forward_length",
                MetaValue::U32(0),
                "feed-forward width 0",
            ),
            ("llama.context_length", MetaValue::U32(0), "context 0"),
            // Past llama.cpp's 512 layers (per-layer tables would be allocated first).
            (
                "llama.block_count",
                MetaValue::U64(1 << 40),
                "inconsistent hyper-parameters: 1099511627776 layers",
            ),
            (
                "llama.attention.layer_norm_rms_epsilon",
                MetaValue::F32(-1e-5),
                "layer_norm_rms_epsilon is -0.00001",
            ),
            (
                "llama.attention.layer_norm_rms_epsilon",
                MetaValue::F32(f32::NAN),
                "layer_norm_rms_epsilon is NaN",
            ),
            (
                "llama.rope.freq_base",
                MetaValue::F32(0.0),
                "freq_base is 0",
            ),
            (
                "llama.rope.freq_base",
                MetaValue::F32(f32::INFINITY),
                "freq_base is inf",
            ),
            (
                "llama.rope.scaling.attn_factor",
                MetaValue::F32(0.0),
                "attn_factor is 0 (it must be positive)",
            ),
        ] {
            let e = LlamaConfig::from_gguf(&header_with(key, value)).unwrap_err();
            assert!(e.to_string().contains(says), "{key}: {e}");
        }
    }

    /// Qwen 3's keys under its own prefix, heads wider than width / heads, NeoX RoPE.
    #[test]
    fn qwen_keys_heads_and_rope_layout() {
        let mut h = header_with("llama.attention.key_length", MetaValue::U32(16));
        h.metadata
            .push(("llama.attention.value_length".into(), MetaValue::U32(16)));
        for (k, v) in &mut h.metadata {
            if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("qwen3.{rest}");
            } else if k == "general.architecture" {
                *v = MetaValue::String("qwen3".into());
            }
        }
        let c = LlamaConfig::from_gguf(&h).unwrap();
        assert_eq!(c.arch, Arch::Qwen3);
        assert_eq!((c.head_dim(), c.q_dim(), c.rope.n_rot), (16, 64, 16));
        assert_eq!(c.rope.layout, RopeLayout::Neox);
        for (k, v) in &mut h.metadata {
            if k == "qwen3.attention.value_length" {
                *v = MetaValue::U32(8);
            }
        }
        let e = LlamaConfig::from_gguf(&h).unwrap_err();
        assert!(e.to_string().contains("heads of 16 key and 8 value"), "{e}");
        // llama keys do not count for qwen3.
        h.metadata
            .retain(|(k, _)| k != "qwen3.block_count" && k != "qwen3.attention.value_length");
        h.metadata
            .push(("qwen3.attention.value_length".into(), MetaValue::U32(16)));
        h.metadata
            .push(("llama.block_count".into(), MetaValue::U32(2)));
        let e = LlamaConfig::from_gguf(&h).unwrap_err();
        assert!(
            e.to_string().contains("qwen3.block_count is missing"),
            "{e}"
        );
        // key_length alone: value heads default to width / heads, as in llama.cpp.
        let e = LlamaConfig::from_gguf(&header_with(
            "llama.attention.key_length",
            MetaValue::U32(16),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("heads of 16 key and 8 value"), "{e}");
        // Widths whose products would overflow are refused, not wrapped.
        let mut huge = header_with("llama.attention.key_length", MetaValue::U64(1 << 63));
        huge.metadata.push((
            "llama.attention.value_length".into(),
            MetaValue::U64(1 << 63),
        ));
        let e = LlamaConfig::from_gguf(&huge).unwrap_err();
        assert!(
            e.to_string().contains("inconsistent hyper-parameters"),
            "{e}"
        );
        // A width that heads do not tile, without key_length, is refused.
        let e = LlamaConfig::from_gguf(&header_with(
            "llama.attention.head_count",
            MetaValue::U32(5),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("heads of 0"), "{e}");
    }
}
