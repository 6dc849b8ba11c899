//! GGUF → Hugging Face directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::names::{gguf_to_hf, permute_qk, qk_heads, qwen3_only};
use super::{ARCHITECTURES, GGUF_METADATA_FILE, HfError, io_err, is_derived_key};
use crate::reader::MetaValue;
use crate::{GgufFile, blocks};

/// Element type of the exported safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// Exact for every GGUF type.
    F32,
    /// Half the size; rounds.
    F16,
    /// Hugging Face's usual type for llama checkpoints; rounds.
    BF16,
}

/// A metadata value as tagged JSON, so its exact GGUF type survives the trip.
pub(crate) fn meta_to_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::Array(t, items) => json!({
            "type": "array", "elem": t.name(),
            "value": items.iter().map(meta_to_json).collect::<Vec<_>>()
        }),
        MetaValue::String(s) => json!({"type": "string", "value": s}),
        MetaValue::Bool(b) => json!({"type": "bool", "value": b}),
        MetaValue::F32(f) => json!({"type": "float32", "value": f}),
        MetaValue::F64(f) => json!({"type": "float64", "value": f}),
        MetaValue::I8(x) => json!({"type": "int8", "value": x}),
        MetaValue::I16(x) => json!({"type": "int16", "value": x}),
        MetaValue::I32(x) => json!({"type": "int32", "value": x}),
        MetaValue::I64(x) => json!({"type": "int64", "value": x}),
        MetaValue::U8(x) => json!({"type": "uint8", "value": x}),
        MetaValue::U16(x) => json!({"type": "uint16", "value": x}),
        MetaValue::U32(x) => json!({"type": "uint32", "value": x}),
        MetaValue::U64(x) => json!({"type": "uint64", "value": x}),
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), HfError> {
    let bytes = serde_json::to_vec_pretty(v).expect("JSON values serialize");
    smelt_files::write_atomic(path, &bytes).map_err(io_err(path))
}

/// Writes `file` (llama, Qwen 2 or Qwen 3) as a Hugging Face directory in `dir` (created if
/// needed).
pub fn export(file: &GgufFile, dir: &Path, dtype: ExportDtype) -> Result<(), HfError> {
    export_with(file, dir, dtype, &|_, _| None, None)
}

/// A tensor to write instead of a dequantized one: name, element type, shape, bytes.
pub type HfTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Supplies replacement tensors for a GGUF tensor name (and its q/k head count).
pub type ReplaceFn<'a> = &'a dyn Fn(&str, Option<usize>) -> Option<Vec<HfTensor>>;

/// [`export`], except that `replace(gguf_name, qk_heads)` may supply the tensors written in
/// place of a GGUF tensor (e.g. GPTQ's `qweight`/`qzeros`/`scales`/`g_idx`; `qk_heads` is
/// `Some` for q/k, whose rows the Hugging Face layout orders differently), and
/// `quantization_config` is added to `config.json` when given.
pub fn export_with(
    file: &GgufFile,
    dir: &Path,
    dtype: ExportDtype,
    replace: ReplaceFn<'_>,
    quantization_config: Option<Value>,
) -> Result<(), HfError> {
    let h = &file.header;
    let arch = h
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let Some(&(_, class)) = ARCHITECTURES.iter().find(|(a, _)| *a == arch) else {
        return Err(HfError::Unsupported(format!(
            "export-hf supports llama, qwen2 and qwen3 models; this one is {arch:?}"
        )));
    };
    let u = |k: &str| h.get(k).and_then(|v| v.as_u64());
    let f = |k: &str| h.get(k).and_then(|v| v.as_f64());
    // (the architecture's key `k`)
    let ak = |k: &str| format!("{arch}.{k}");
    if let Some(n) = u(&ak("expert_count")).filter(|&n| n > 0) {
        return Err(HfError::Unsupported(format!(
            "export-hf: this {arch} model has {n} experts per layer (Mixtral's layout); \
             mixtures of experts are not exported yet"
        )));
    }
    let n_head = u(&ak("attention.head_count")).unwrap_or(1) as usize;
    let n_head_kv = u(&ak("attention.head_count_kv")).unwrap_or(n_head as u64) as usize;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;

    // Tensors, dequantized, with Hugging Face names, shapes and q/k row order.
    let st_dtype = match dtype {
        ExportDtype::F32 => safetensors::Dtype::F32,
        ExportDtype::F16 => safetensors::Dtype::F16,
        ExportDtype::BF16 => safetensors::Dtype::BF16,
    };
    let mut tensors: Vec<HfTensor> = Vec::new();
    for t in &h.tensors {
        let Some(name) = gguf_to_hf(&t.name).filter(|_| arch == "qwen3" || !qwen3_only(&t.name))
        else {
            return Err(HfError::Unsupported(format!(
                "tensor {} has no Hugging Face {arch} name",
                t.name
            )));
        };
        let heads = qk_heads(arch, &t.name, n_head, n_head_kv);
        if let Some(parts) = replace(&t.name, heads) {
            tensors.extend(parts);
            continue;
        }
        let mut x = blocks::dequantize(t.ggml_type, file.tensor_data(t), t.elements() as usize)
            .map_err(|e| HfError::Unsupported(format!("tensor {}: {e}", t.name)))?;
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        if let (Some(heads), [rows, cols]) = (heads, shape.as_slice()) {
            if !super::names::permutable(*rows, heads) {
                return Err(HfError::Unsupported(format!(
                    "tensor {}: {rows} rows do not split into {heads} heads of even width",
                    t.name
                )));
            }
            x = permute_qk(&x, *rows, *cols, heads, true);
        }
        let bytes: Vec<u8> = match dtype {
            ExportDtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ExportDtype::F16 => x
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            ExportDtype::BF16 => x
                .iter()
                .flat_map(|&v| blocks::f32_to_bf16(v).to_le_bytes())
                .collect(),
        };
        tensors.push((name, st_dtype, shape, bytes));
    }
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HfError::Unsupported(format!("safetensors: {e}")))?;
    let st = safetensors::serialize(views, None)
        .map_err(|e| HfError::Unsupported(format!("safetensors: {e}")))?;
    let st_path = dir.join("model.safetensors");
    smelt_files::write_atomic(&st_path, &st).map_err(io_err(&st_path))?;

    let tied = !h.tensors.iter().any(|t| t.name == "output.weight");
    let tokens: Vec<&str> = match h.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(_, items)) => items.iter().filter_map(|t| t.as_str()).collect(),
        _ => Vec::new(),
    };
    let mut config = json!({
        "architectures": [class],
        "model_type": arch,
        "hidden_act": "silu",
        "hidden_size": u(&ak("embedding_length")),
        "intermediate_size": u(&ak("feed_forward_length")),
        "num_hidden_layers": u(&ak("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "max_position_embeddings": u(&ak("context_length")),
        "rms_norm_eps": f(&ak("attention.layer_norm_rms_epsilon")),
        "rope_theta": f(&ak("rope.freq_base")),
        "vocab_size": u(&ak("vocab_size")).unwrap_or(tokens.len() as u64),
        "tie_word_embeddings": tied,
        "torch_dtype": match dtype { ExportDtype::F32 => "float32", ExportDtype::F16 => "float16", ExportDtype::BF16 => "bfloat16" },
    });
    // Heads wider than width / heads (Qwen 3) need `head_dim`; llama and Qwen 3 say whether
    // q/k/v have biases (Qwen 2's always have).
    if let Some(hd) = u(&ak("attention.key_length")) {
        config["head_dim"] = json!(hd);
    }
    if arch != "qwen2" {
        config["attention_bias"] = json!(h.tensors.iter().any(|t| t.name.ends_with("attn_q.bias")));
    }
    for (k, key) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
    ] {
        if let Some(id) = u(key) {
            config[k] = json!(id);
        }
    }
    if let Some(q) = quantization_config {
        config["quantization_config"] = q;
    }
    write_json(&dir.join("config.json"), &config)?;

    super::convert::write_tokenizer_files(h, &tokens, dir)?;

    let extra: BTreeMap<&str, Value> = h
        .metadata
        .iter()
        .filter(|(k, _)| !is_derived_key(k))
        .map(|(k, v)| (k.as_str(), meta_to_json(v)))
        .collect();
    write_json(&dir.join(GGUF_METADATA_FILE), &json!(extra))?;
    Ok(())
}
