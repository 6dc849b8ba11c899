//! The llama decoder's hyper-parameters, read and checked from GGUF metadata, and the errors
//! loading or running a model can give. Qwen 2, Qwen 3, Phi-3 and Gemma 3 are llama's graph
//! with small differences, so they share it: [`Arch`] says which.

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

/// The decoder families smelt runs (`general.architecture`), all llama's graph: Qwen 2 adds
/// biases to the query, key and value projections; Qwen 3 normalizes each query and key head
/// (RMSNorm) before RoPE, and its heads may be wider than `n_embd / n_head`; Phi-3 stores q/k/v
/// as one matrix and gate/up as another, and scales the queries before attention. All three
/// rotate NeoX-style (halves), where llama GGUFs rotate adjacent pairs. Gemma 3 adds Qwen 3's
/// q/k norms, a norm after attention and after the feed-forward, GELU for SiLU, embeddings
/// scaled by √n_embd, and local layers that see a sliding window of positions with their own
/// RoPE base ([`SlidingWindow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (LLaMA 1-3, SmolLM2, Mistral, ...).
    Llama,
    /// `qwen2` (Qwen 1.5, Qwen 2, Qwen 2.5).
    Qwen2,
    /// `qwen3` (Qwen 3 dense).
    Qwen3,
    /// `phi3` (Phi-3 mini/medium 4k, Phi-4; LongRoPE files such as Phi-3.5 and Phi-4 mini
    /// are refused).
    Phi3,
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
            Arch::Phi3 => "phi3",
            Arch::Gemma3 => "gemma3",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Qwen3,
            Arch::Phi3,
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

/// Gemma 3's local attention: most layers see only the last `window` positions and rotate
/// with their own base; every `pattern`-th layer (llama.cpp's default 6) sees the whole
/// context with the model's RoPE base and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Positions a local layer's query sees, its own included (`attention.sliding_window`):
    /// llama.cpp masks key position p0 for query position p1 when `p1 − p0 ≥ window`.
    pub window: usize,
    /// (n_layer,) whether each layer is local (`attention.sliding_window_pattern`: a period n,
    /// local unless `l % n == n − 1`, or one flag per layer).
    pub local: Vec<bool>,
    /// The local layers' rotation: base `rope.freq_base_swa` (llama.cpp's default 10000),
    /// unscaled.
    pub rope: Rope,
}

impl SlidingWindow {
    /// The first position layer `l`'s query at `pos` sees (0 for a global layer).
    pub fn first_visible(&self, l: usize, pos: usize) -> usize {
        if self.local[l] {
            (pos + 1).saturating_sub(self.window)
        } else {
            0
        }
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
    /// Local attention layers (Gemma 3 with `attention.sliding_window`), if any.
    pub swa: Option<SlidingWindow>,
    /// `final_logit_softcapping`: logits become `c · tanh(logit / c)` (Gemma), if set.
    pub final_softcap: Option<f32>,
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

    /// Whether the queries are scaled before attention, which then scales q·k by 1 (Phi-3 and
    /// Gemma 3, as llama.cpp runs them: the rounding differs from scaling q·k).
    pub fn prescaled_queries(&self) -> bool {
        matches!(self.arch, Arch::Phi3 | Arch::Gemma3)
    }

    /// The factor on the queries or on q·k: 1/√head_dim, but for Gemma 3 27B (62 layers),
    /// 1/√(n_embd / n_head), as llama.cpp (after gemma_pytorch's `query_pre_attn_scalar`).
    pub fn query_scale(&self) -> f32 {
        if self.arch == Arch::Gemma3 && self.n_layer == 62 {
            1.0 / ((self.n_embd / self.n_head) as f32).sqrt()
        } else {
            1.0 / (self.head_dim() as f32).sqrt()
        }
    }

    /// The factor on the token embeddings: √n_embd for Gemma 3 (in f32, as llama.cpp's
    /// `sqrtf`), none elsewhere.
    pub fn embedding_scale(&self) -> Option<f32> {
        (self.arch == Arch::Gemma3).then(|| (self.n_embd as f32).sqrt())
    }

    /// Reads and checks the hyper-parameters of a `llama`, `qwen2`, `qwen3`, `phi3` or
    /// `gemma3` GGUF.
    pub fn from_gguf(h: &smelt_gguf::Header) -> Result<Self, ModelError> {
        let name = h
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let arch = Arch::from_name(name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "architecture {name:?} is not supported (supported: llama, qwen2, qwen3, phi3, \
                 gemma3)"
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
                    Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 | Arch::Gemma3 => RopeLayout::Neox,
                },
                n_rot: u("rope.dimension_count").unwrap_or(head_dim),
                base: f("rope.freq_base", 10000.0),
                linear_scale,
                // `rope_freqs.weight`, a tensor: `Llama::load` reads it.
                freq_factors: None,
            },
            n_vocab,
            swa: None,
            final_softcap: None,
        };
        if config.n_layer == 0
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
        // llama.cpp multiplies every angle's cos and sin by this factor (YaRN, LongRoPE).
        let attn_factor = f("rope.scaling.attn_factor", 1.0);
        if attn_factor != 1.0 {
            return Err(ModelError::Unsupported(format!(
                "{} is {attn_factor}: RoPE attention factors are not supported yet",
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
        if arch == Arch::Gemma3 {
            config.swa = sliding_window(h, &config)?;
            config.final_softcap = h
                .get(&key("final_logit_softcapping"))
                .and_then(|v| v.as_f64())
                .map(|v| v as f32)
                .filter(|&c| c != 0.0);
            if let Some(c) = config.final_softcap
                && !(c.is_finite() && c > 0.0)
            {
                return Err(ModelError::Unsupported(format!(
                    "{} is {c} (it must be positive)",
                    key("final_logit_softcapping")
                )));
            }
        }
        Ok(config)
    }
}

/// Gemma 3's local layers from `attention.sliding_window` (absent or 0: every layer global),
/// `attention.sliding_window_pattern` (a period, default 6, or one flag per layer) and
/// `rope.freq_base_swa` (default 10000), as llama.cpp reads them.
fn sliding_window(
    h: &smelt_gguf::Header,
    c: &LlamaConfig,
) -> Result<Option<SlidingWindow>, ModelError> {
    let key = |k: &str| format!("{}.{k}", c.arch.name());
    let window = h
        .get(&key("attention.sliding_window"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as usize;
    if window == 0 {
        return Ok(None);
    }
    let pattern_key = key("attention.sliding_window_pattern");
    let local = match h.get(&pattern_key) {
        Some(smelt_gguf::MetaValue::Array(_, flags)) => {
            let flags: Option<Vec<bool>> = flags
                .iter()
                .map(|f| match f {
                    smelt_gguf::MetaValue::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect();
            match flags {
                Some(f) if f.len() == c.n_layer => f,
                _ => {
                    return Err(ModelError::Unsupported(format!(
                        "{pattern_key} must hold one boolean per layer ({})",
                        c.n_layer
                    )));
                }
            }
        }
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                ModelError::Unsupported(format!("{pattern_key} is neither a count nor flags"))
            })? as usize;
            // llama.cpp: a period of 0 makes every layer local.
            (0..c.n_layer).map(|l| n == 0 || l % n < n - 1).collect()
        }
        None => (0..c.n_layer).map(|l| l % 6 < 5).collect(),
    };
    let base = h
        .get(&key("rope.freq_base_swa"))
        .and_then(|v| v.as_f64())
        .map_or(10000.0, |v| v as f32);
    if !(base.is_finite() && base > 0.0) {
        return Err(ModelError::Unsupported(format!(
            "{} is {base} (it must be positive)",
            key("rope.freq_base_swa")
        )));
    }
    Ok(Some(SlidingWindow {
        window,
        local,
        rope: Rope {
            base,
            linear_scale: 1.0,
            ..c.rope.clone()
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_gguf::{Header, MetaValue};

    /// A small, consistent llama header with `key` set to `value`.
    fn header_with(key: &str, value: MetaValue) -> Header {
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
                MetaValue::F32(1.19),
                "RoPE attention factors are not supported",
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

    /// Gemma 3's local layers as llama.cpp reads them: a period (default 6, 0 = all local)
    /// or one flag per layer, the local base, and refusals of what cannot run.
    #[test]
    fn gemma3_sliding_window_keys() {
        let gemma = |extra: &[(&str, MetaValue)]| {
            let mut h = header_with("llama.block_count", MetaValue::U32(7));
            for (k, v) in &mut h.metadata {
                if let Some(rest) = k.strip_prefix("llama.") {
                    *k = format!("gemma3.{rest}");
                } else if k == "general.architecture" {
                    *v = MetaValue::String("gemma3".into());
                }
            }
            h.metadata.extend(
                extra
                    .iter()
                    .map(|(k, v)| (format!("gemma3.{k}"), v.clone())),
            );
            LlamaConfig::from_gguf(&h)
        };
        let c = gemma(&[]).unwrap();
        assert_eq!((&c.swa, c.final_softcap), (&None, None));
        assert_eq!(c.embedding_scale(), Some(32f32.sqrt()));
        let w = MetaValue::U32(512);
        let c = gemma(&[("attention.sliding_window", w.clone())]).unwrap();
        let swa = c.swa.unwrap();
        assert_eq!(swa.local, [true, true, true, true, true, false, true]);
        assert_eq!(
            (swa.window, swa.rope.base, c.rope.base),
            (512, 10000.0, 10000.0)
        );
        assert_eq!(
            (swa.first_visible(0, 600), swa.first_visible(5, 600)),
            (89, 0)
        );
        let c = gemma(&[
            ("attention.sliding_window", w.clone()),
            ("attention.sliding_window_pattern", MetaValue::U32(0)),
            ("rope.freq_base_swa", MetaValue::F32(5e4)),
        ])
        .unwrap();
        let swa = c.swa.unwrap();
        assert!(swa.local.iter().all(|&b| b));
        assert_eq!(swa.rope.base, 5e4);
        let flags = |n: usize| {
            MetaValue::Array(
                smelt_gguf::MetaType::Bool,
                (0..n).map(|l| MetaValue::Bool(l % 2 == 0)).collect(),
            )
        };
        let c = gemma(&[
            ("attention.sliding_window", w.clone()),
            ("attention.sliding_window_pattern", flags(7)),
        ])
        .unwrap();
        assert_eq!(
            c.swa.unwrap().local,
            [true, false, true, false, true, false, true]
        );
        for (extra, says) in [
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("attention.sliding_window_pattern", flags(6)),
                ],
                "one boolean per layer (7)",
            ),
            (
                vec![
                    ("attention.sliding_window", w.clone()),
                    ("rope.freq_base_swa", MetaValue::F32(-1.0)),
                ],
                "freq_base_swa is -1",
            ),
            (
                vec![("final_logit_softcapping", MetaValue::F32(-30.0))],
                "final_logit_softcapping is -30",
            ),
        ] {
            let e = gemma(&extra).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
