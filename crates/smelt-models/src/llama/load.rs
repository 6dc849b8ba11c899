//! Loading a model from its GGUF: the hyper-parameters, every layer's weights (mapped in
//! place, or split into row ranges where Phi-3 stores matrices stacked and a mixture stores
//! its experts) and the check that no tensor is left unread.

use std::sync::Arc;

use smelt_gguf::{GgufFile, blocks};
use smelt_kernels::{QMatrix, WeightBytes, WeightType};

use super::moe::{MoeFfn, SharedExpert};
use super::{Arch, Experts, Ffn, Layer, Linear, Llama, LlamaConfig, ModelError};
use crate::ops::LongRope;

fn tensor<'a>(
    file: &'a GgufFile,
    name: &str,
    shape: &[usize],
) -> Result<&'a smelt_gguf::TensorInfo, ModelError> {
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
    Ok(t)
}

fn load_f32(file: &GgufFile, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
    let t = tensor(file, name, shape)?;
    blocks::dequantize(t.ggml_type, file.tensor_data(t), t.elements() as usize).map_err(|e| {
        ModelError::Tensor {
            name: name.into(),
            why: e.to_string(),
        }
    })
}

/// A weight matrix as stored: its mapped blocks when a kernel reads that format, else f32.
/// `new` wraps the blocks: [`QMatrix::new`], or [`QMatrix::new_one_row`] for the output head
/// (its own or the tied embedding), which sees one row per sequence.
fn matrix(
    file: &Arc<GgufFile>,
    name: &str,
    cols: usize,
    rows: usize,
    new: fn(WeightType, usize, usize, WeightBytes) -> Result<QMatrix, String>,
) -> Result<QMatrix, ModelError> {
    let t = tensor(file, name, &[cols, rows])?;
    let err = |why: String| ModelError::Tensor {
        name: name.into(),
        why,
    };
    match WeightType::from_ggml(t.ggml_type).filter(|ty| cols.is_multiple_of(ty.block().0)) {
        Some(ty) => {
            let bytes = file.tensor_data(t);
            let start = bytes.as_ptr() as usize - (**file).as_ref().as_ptr() as usize;
            let data = WeightBytes::Shared {
                data: file.clone(),
                start,
                len: bytes.len(),
            };
            new(ty, rows, cols, data).map_err(err)
        }
        None => {
            let w = load_f32(file, name, &[cols, rows])?;
            let bytes = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            QMatrix::new(WeightType::F32, rows, cols, WeightBytes::Owned(bytes)).map_err(err)
        }
    }
}

/// Consecutive row ranges of one stored tensor of `shape` (`[cols, rows...]`, the rows
/// `parts` add up to) as matrices of their own, each over its part of the mapped blocks, made
/// by `new`: Phi-3's fused `attn_qkv` and gate/up `ffn_up` (llama.cpp runs the whole matrix and
/// takes views of the product: each row's dot product is the same, and the kernel choice that
/// depends on the row count, ggml's repacking of rows in eights, is the same while every part
/// is a multiple of 8 rows, as in every Phi-3 model), and a mixture's stacked experts (ggml
/// decides the repacking by one expert's row count, as here).
fn split_rows(
    file: &Arc<GgufFile>,
    name: &str,
    shape: &[usize],
    parts: &[usize],
    new: fn(WeightType, usize, usize, WeightBytes) -> Result<QMatrix, String>,
) -> Result<Vec<QMatrix>, ModelError> {
    let cols = shape[0];
    let rows: usize = parts.iter().sum();
    debug_assert_eq!(
        rows,
        shape[1..].iter().product::<usize>(),
        "parts cover the rows"
    );
    let t = tensor(file, name, shape)?;
    let err = |why: String| ModelError::Tensor {
        name: name.into(),
        why,
    };
    let ty = WeightType::from_ggml(t.ggml_type).filter(|ty| cols.is_multiple_of(ty.block().0));
    let Some(ty) = ty else {
        // No kernel for the format: f32 rows.
        let w = load_f32(file, name, shape)?;
        let mut at = 0;
        return parts
            .iter()
            .map(|&n| {
                let bytes = w[at * cols..(at + n) * cols]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                at += n;
                QMatrix::new(WeightType::F32, n, cols, WeightBytes::Owned(bytes)).map_err(err)
            })
            .collect();
    };
    let bytes = file.tensor_data(t);
    let row_bytes = bytes.len() / rows.max(1);
    let start = bytes.as_ptr() as usize - (**file).as_ref().as_ptr() as usize;
    let mut at = 0;
    parts
        .iter()
        .map(|&n| {
            let data = WeightBytes::Shared {
                data: file.clone(),
                start: start + at * row_bytes,
                len: n * row_bytes,
            };
            at += n;
            new(ty, n, cols, data).map_err(err)
        })
        .collect()
}

/// Layer `l`'s mixture of experts: the router and the three stacked expert tensors, each
/// expert a view of its rows. The experts take [`QMatrix::new_one_row`]: every row they see
/// is its own one-token product (see `moe.rs`), so k-quant batch copies would be unused.
fn experts(file: &Arc<GgufFile>, l: usize, e: usize, x: Experts) -> Result<MoeFfn, ModelError> {
    let n = |s: &str| format!("blk.{l}.{s}.weight");
    let (count, ff) = (x.count, x.n_ff);
    let stack = |name: &str, cols: usize, rows: usize| {
        split_rows(
            file,
            &n(name),
            &[cols, rows, count],
            &vec![rows; count],
            QMatrix::new_one_row,
        )
    };
    let shared =
        match x.shared_ff {
            Some(sff) => {
                // A one-dimensional (n_embd,) tensor: one row.
                let g = load_f32(file, &n("ffn_gate_inp_shexp"), &[e])?;
                let bytes = g.iter().flat_map(|v| v.to_le_bytes()).collect();
                let gate_inp = QMatrix::new(WeightType::F32, 1, e, WeightBytes::Owned(bytes))
                    .map_err(|why| ModelError::Tensor {
                        name: n("ffn_gate_inp_shexp"),
                        why,
                    })?;
                Some(SharedExpert {
                    gate_inp,
                    gate: matrix(file, &n("ffn_gate_shexp"), e, sff, QMatrix::new)?,
                    up: matrix(file, &n("ffn_up_shexp"), e, sff, QMatrix::new)?,
                    down: matrix(file, &n("ffn_down_shexp"), sff, e, QMatrix::new)?,
                })
            }
            None => None,
        };
    Ok(MoeFfn {
        router: matrix(file, &n("ffn_gate_inp"), e, count, QMatrix::new)?,
        gate: stack("ffn_gate_exps", e, ff)?,
        up: stack("ffn_up_exps", e, ff)?,
        down: stack("ffn_down_exps", ff, e)?,
        used: x.used,
        normalize: x.normalized,
        shared,
    })
}

/// llama.cpp's per-pair RoPE frequency factors (Llama 3.1's long-context scaling).
const ROPE_FREQS: &str = "rope_freqs.weight";
/// LongRoPE's two sets of factors (Phi-3.5, Phi-4 mini, 128k Phi-3).
const ROPE_LONG: &str = "rope_factors_long.weight";
const ROPE_SHORT: &str = "rope_factors_short.weight";

/// Frequency factors `name` (n_rot / 2,), each positive and finite.
fn rope_factors(file: &GgufFile, name: &str, n_rot: usize) -> Result<Vec<f32>, ModelError> {
    let f = load_f32(file, name, &[n_rot / 2])?;
    match f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        Some(bad) => Err(ModelError::Tensor {
            name: name.into(),
            why: format!("a frequency factor of {bad} (each must be positive)"),
        }),
        None => Ok(f),
    }
}

impl Llama {
    /// Loads a llama (with or without experts), Qwen 2, Qwen 2 MoE, Qwen 3, Qwen 3 MoE, Phi-3,
    /// Gemma 2 or Gemma 3 GGUF.
    pub fn load(file: &Arc<GgufFile>) -> Result<Self, ModelError> {
        let mut config = LlamaConfig::from_gguf(&file.header)?;
        // llama.cpp reads the factors for llama only (elsewhere they are an unused tensor).
        let present = |name: &str| file.header.tensors.iter().any(|t| t.name == name);
        if config.arch == Arch::Llama && present(ROPE_FREQS) {
            config.rope.freq_factors = Some(rope_factors(file, ROPE_FREQS, config.rope.n_rot)?);
        }
        // LongRoPE (llama.cpp reads both sets for phi3 and llama; `rope_freqs` wins over
        // them): the long factors for contexts past the original one, else the short.
        let long_rope =
            matches!(config.arch, Arch::Phi3 | Arch::Llama) && config.rope.freq_factors.is_none();
        if long_rope && (present(ROPE_LONG) || present(ROPE_SHORT)) {
            let missing = [ROPE_LONG, ROPE_SHORT].into_iter().find(|n| !present(n));
            if let Some(name) = missing {
                return Err(ModelError::Tensor {
                    name: name.into(),
                    why: "LongRoPE needs both factor sets, long and short".into(),
                });
            }
            let key = format!(
                "{}.rope.scaling.original_context_length",
                config.arch.name()
            );
            let original_ctx = match file.header.get(&key).and_then(|v| v.as_u64()) {
                Some(0) => {
                    return Err(ModelError::Unsupported(format!("{key} is 0")));
                }
                Some(n) => n as usize,
                None => config.n_ctx,
            };
            config.rope.long_rope = Some(LongRope {
                long: rope_factors(file, ROPE_LONG, config.rope.n_rot)?,
                short: rope_factors(file, ROPE_SHORT, config.rope.n_rot)?,
                original_ctx,
            });
        }
        let (e, ff, kv, qd, hd) = (
            config.n_embd,
            config.n_ff,
            config.head_dim() * config.n_head_kv,
            config.q_dim(),
            config.head_dim(),
        );
        let has = |name: &str| file.header.tensors.iter().any(|t| t.name == name);
        // block_count comes from the file: a huge one must meet a missing tensor, not an
        // allocation of that many layers first.
        let mut layers = Vec::with_capacity(config.n_layer.min(file.header.tensors.len()));
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            // Biases: all three or none (llama.cpp reads each if present; Qwen 2 has all).
            let qkv_bias = if has(&b("attn_q")) || has(&b("attn_k")) || has(&b("attn_v")) {
                Some([
                    load_f32(file, &b("attn_q"), &[qd])?,
                    load_f32(file, &b("attn_k"), &[kv])?,
                    load_f32(file, &b("attn_v"), &[kv])?,
                ])
            } else {
                None
            };
            let qk_norm = if config.arch.is_qwen3() || config.arch == Arch::Gemma3 {
                Some([
                    load_f32(file, &n("attn_q_norm"), &[hd])?,
                    load_f32(file, &n("attn_k_norm"), &[hd])?,
                ])
            } else {
                None
            };
            let post_norms = if config.arch.is_gemma() {
                Some([
                    load_f32(file, &n("post_attention_norm"), &[e])?,
                    load_f32(file, &n("post_ffw_norm"), &[e])?,
                ])
            } else {
                None
            };
            // Phi-3 stores q/k/v as one matrix and gate/up as another (gate first).
            let (wq, wk, wv, ffn) = if config.arch == Arch::Phi3 {
                let [wq, wk, wv]: [QMatrix; 3] = split_rows(
                    file,
                    &n("attn_qkv"),
                    &[e, qd + 2 * kv],
                    &[qd, kv, kv],
                    QMatrix::new,
                )?
                .try_into()
                .ok()
                .expect("three parts");
                let [gate, up]: [QMatrix; 2] =
                    split_rows(file, &n("ffn_up"), &[e, 2 * ff], &[ff, ff], QMatrix::new)?
                        .try_into()
                        .ok()
                        .expect("two parts");
                let down = matrix(file, &n("ffn_down"), ff, e, QMatrix::new)?;
                (wq, wk, wv, Ffn::Dense { gate, up, down })
            } else {
                let ffn = match config.moe {
                    Some(x) => Ffn::Experts(Box::new(experts(file, i, e, x)?)),
                    None => Ffn::Dense {
                        gate: matrix(file, &n("ffn_gate"), e, ff, QMatrix::new)?,
                        up: matrix(file, &n("ffn_up"), e, ff, QMatrix::new)?,
                        down: matrix(file, &n("ffn_down"), ff, e, QMatrix::new)?,
                    },
                };
                (
                    matrix(file, &n("attn_q"), e, qd, QMatrix::new)?,
                    matrix(file, &n("attn_k"), e, kv, QMatrix::new)?,
                    matrix(file, &n("attn_v"), e, kv, QMatrix::new)?,
                    ffn,
                )
            };
            layers.push(Layer {
                attn_norm: load_f32(file, &n("attn_norm"), &[e])?,
                wq,
                wk,
                wv,
                wo: matrix(file, &n("attn_output"), qd, e, QMatrix::new)?,
                qkv_bias,
                qk_norm,
                post_norms,
                ffn_norm: load_f32(file, &n("ffn_norm"), &[e])?,
                ffn,
            });
        }
        // Gemma 2 always ties the output (an `output.weight` is refused as unused).
        let output = if config.arch != Arch::Gemma2
            && file
                .header
                .tensors
                .iter()
                .any(|t| t.name == "output.weight")
        {
            Some(matrix(
                file,
                "output.weight",
                e,
                config.n_vocab,
                QMatrix::new_one_row,
            )?)
        } else {
            None
        };
        let model = Self {
            tok_embd: matrix(
                file,
                "token_embd.weight",
                e,
                config.n_vocab,
                QMatrix::new_one_row,
            )?,
            output_norm: load_f32(file, "output_norm.weight", &[e])?,
            output,
            layers,
            config,
        };
        model.refuse_unused(file)?;
        Ok(model)
    }

    /// A tensor the graph does not read (an output bias, a fused qkv matrix outside Phi-3, q/k
    /// norms outside Qwen 3, LongRoPE factors, ...) would change llama.cpp's result but not
    /// smelt's: refused, as llama.cpp refuses a file with tensors it did not load.
    fn refuse_unused(&self, file: &GgufFile) -> Result<(), ModelError> {
        let mut used: Vec<String> = ["token_embd.weight", "output_norm.weight"]
            .map(String::from)
            .into();
        if self.output.is_some() {
            used.push("output.weight".into());
        }
        if self.config.rope.freq_factors.is_some() {
            used.push(ROPE_FREQS.into());
        }
        if self.config.rope.long_rope.is_some() {
            used.extend([ROPE_LONG.into(), ROPE_SHORT.into()]);
        }
        for (i, y) in self.layers.iter().enumerate() {
            let mut names = vec!["attn_norm", "ffn_norm"];
            if self.config.arch == Arch::Phi3 {
                names.extend(["attn_qkv", "attn_output", "ffn_up", "ffn_down"]);
            } else {
                let attn = &Linear::ALL[..4];
                names.extend(
                    attn.iter()
                        .map(|w| w.gguf_name().trim_end_matches(".weight")),
                );
                names.extend(match y.ffn {
                    Ffn::Dense { .. } => ["ffn_gate", "ffn_up", "ffn_down"],
                    Ffn::Experts(_) => ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"],
                });
                if let Ffn::Experts(x) = &y.ffn {
                    names.push("ffn_gate_inp");
                    if x.shared.is_some() {
                        names.extend([
                            "ffn_gate_inp_shexp",
                            "ffn_gate_shexp",
                            "ffn_up_shexp",
                            "ffn_down_shexp",
                        ]);
                    }
                }
            }
            if y.qk_norm.is_some() {
                names.extend(["attn_q_norm", "attn_k_norm"]);
            }
            if y.post_norms.is_some() {
                names.extend(["post_attention_norm", "post_ffw_norm"]);
            }
            used.extend(names.iter().map(|n| format!("blk.{i}.{n}.weight")));
            if y.qkv_bias.is_some() {
                used.extend(["attn_q", "attn_k", "attn_v"].map(|n| format!("blk.{i}.{n}.bias")));
            }
        }
        match file.header.tensors.iter().find(|t| !used.contains(&t.name)) {
            Some(t) => Err(ModelError::Unsupported(format!(
                "tensor {} is not part of smelt's {} graph; refusing the file rather than \
                 running it without that tensor",
                t.name,
                self.config.arch.name()
            ))),
            None => Ok(()),
        }
    }
}
