//! Hugging Face llama directory → GGUF (and the tokenizer files both directions share).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::names::{hf_to_gguf, permute_qk, qk_heads, qwen3_only};
use super::rope::RopeScaling;
use super::{ARCHITECTURES, GGUF_METADATA_FILE, HfError, io_err};
use crate::pretokenizer::{self, PreTokenizer};
use crate::reader::{MetaType, MetaValue};
use crate::{GgmlType, GgufWriter, Header, blocks};

/// Type of the 2-D weights in the converted file (norms stay F32, as llama.cpp keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// 32-bit floats.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

impl OutType {
    fn ggml(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::BF16 => GgmlType::BF16,
        }
    }
}

/// A converted tensor: GGUF dims, type and encoded bytes.
type Converted = (Vec<u64>, GgmlType, Vec<u8>);

const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
/// Ids no token has (llama.cpp's converter names them `[PAD{id}]`).
const TOKEN_UNUSED: i32 = 5;
/// The largest vocabulary `convert` accepts: far above any real one (about 256k), low enough
/// that a corrupt id cannot ask for terabytes of token strings.
const MAX_VOCAB: u64 = 1 << 24;

fn read_json(path: &Path) -> Result<Value, HfError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| HfError::Invalid {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

fn write_json(path: &Path, v: &Value) -> Result<(), HfError> {
    let bytes = serde_json::to_vec_pretty(v).expect("JSON values serialize");
    smelt_files::write_atomic(path, &bytes).map_err(io_err(path))
}

/// Writes tokenizer.json and tokenizer_config.json for a GPT-2-style BPE tokenizer from GGUF
/// metadata.
pub fn write_tokenizer_files(h: &Header, tokens: &[&str], dir: &Path) -> Result<(), HfError> {
    let model = h
        .get("tokenizer.ggml.model")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if model != "gpt2" {
        return Err(HfError::Unsupported(format!(
            "exporting tokenizer model {model:?} is not supported yet (only GPT-2-style BPE)"
        )));
    }
    let types: Vec<i64> = match h.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(_, items)) => items
            .iter()
            .map(|v| v.as_f64().unwrap_or(1.0) as i64)
            .collect(),
        _ => vec![TOKEN_NORMAL as i64; tokens.len()],
    };
    let merges: Vec<&str> = match h.get("tokenizer.ggml.merges") {
        Some(MetaValue::Array(_, items)) => items.iter().filter_map(|m| m.as_str()).collect(),
        _ => Vec::new(),
    };
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&t) if t == TOKEN_CONTROL as i64 || t == TOKEN_USER_DEFINED as i64))
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                             "normalized": false, "special": types[i] == TOKEN_CONTROL as i64}))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_name = h.get("tokenizer.ggml.pre").and_then(|v| v.as_str());
    // No name is llama.cpp's default.
    let pre = match pre_name.map_or(("default", Some(PreTokenizer::Default)), |n| {
        (n, PreTokenizer::from_gguf_name(n))
    }) {
        (_, Some(PreTokenizer::Gpt2)) => byte_level.clone(),
        // llama.cpp's four regexes in turn, each match and each gap a piece.
        (_, Some(PreTokenizer::Default)) => {
            let split = |re: &str| {
                json!({"type": "Split", "pattern": {"Regex": re},
                                          "behavior": "Isolated", "invert": false})
            };
            json!({"type": "Sequence", "pretokenizers": [
                split(r"[\p{P}\$\+<=>\^~\|]+"),
                split(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"),
                split(r"\p{N}+"),
                split(r"[0-9][0-9][0-9]"),
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false}]})
        }
        (_, Some(PreTokenizer::DigitsApart)) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
        (name, kind) => match kind.and_then(PreTokenizer::split_regex) {
            Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
                 "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false}]}),
            None => {
                return Err(HfError::Unsupported(format!(
                    "exporting pre-tokenizer {name:?} is not supported yet (supported: default, \
                     gpt-2, smollm/starcoder, llama-bpe, qwen2 and their aliases)"
                )));
            }
        },
    };
    // Llama 3 takes a word that is a token whole, merges or not (llama.cpp: `ignore_merges`).
    let ignore_merges = pre_name.is_some_and(pretokenizer::ignores_merges);
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges},
    });
    write_json(&dir.join("tokenizer.json"), &tokenizer)?;
    let tok = |key: &str| {
        h.get(key)
            .and_then(|v| v.as_u64())
            .and_then(|id| tokens.get(id as usize))
            .map(|t| json!(t))
            .unwrap_or(Value::Null)
    };
    let mut cfg = json!({
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": tok("tokenizer.ggml.bos_token_id"),
        "eos_token": tok("tokenizer.ggml.eos_token_id"),
        "unk_token": tok("tokenizer.ggml.unknown_token_id"),
        "pad_token": tok("tokenizer.ggml.padding_token_id"),
        "clean_up_tokenization_spaces": false,
        "model_max_length": h
            .get("general.architecture")
            .and_then(|a| h.get(&format!("{}.context_length", a.as_str()?)))
            .and_then(|v| v.as_u64()),
    });
    if let Some(t) = h.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        cfg["chat_template"] = json!(t);
    }
    write_json(&dir.join("tokenizer_config.json"), &cfg)
}

/// A tagged JSON value from [`super::export`] back to a metadata value.
fn meta_from_json(v: &Value) -> Option<MetaValue> {
    let val = &v["value"];
    Some(match v["type"].as_str()? {
        "string" => MetaValue::String(val.as_str()?.to_string()),
        "bool" => MetaValue::Bool(val.as_bool()?),
        "float32" => MetaValue::F32(val.as_f64()? as f32),
        "float64" => MetaValue::F64(val.as_f64()?),
        "int8" => MetaValue::I8(val.as_i64()? as i8),
        "int16" => MetaValue::I16(val.as_i64()? as i16),
        "int32" => MetaValue::I32(val.as_i64()? as i32),
        "int64" => MetaValue::I64(val.as_i64()?),
        "uint8" => MetaValue::U8(val.as_u64()? as u8),
        "uint16" => MetaValue::U16(val.as_u64()? as u16),
        "uint32" => MetaValue::U32(val.as_u64()? as u32),
        "uint64" => MetaValue::U64(val.as_u64()?),
        "array" => {
            let items = val
                .as_array()?
                .iter()
                .map(meta_from_json)
                .collect::<Option<Vec<_>>>()?;
            let elem = items.first().map(|i| i.meta_type()).unwrap_or(MetaType::U8);
            MetaValue::Array(elem, items)
        }
        _ => return None,
    })
}

/// `tokenizer_config.json`'s `chat_template`: one template (named `default` here), or a list
/// of `{"name", "template"}` entries (Hermes 2 Pro's `default` and `tool_use`).
fn chat_templates(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::String(t) => vec![("default".into(), t.clone())],
        Value::Array(items) => items
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["template"].as_str()?.into())))
            .collect(),
        _ => Vec::new(),
    }
}

/// Builds a GGUF from a Hugging Face llama, Qwen 2 or Qwen 3 directory (config.json,
/// *.safetensors, tokenizer.json, tokenizer_config.json; `gguf_metadata.json` if present).
pub fn convert(dir: &Path, out: OutType) -> Result<GgufWriter, HfError> {
    let config = read_json(&dir.join("config.json"))?;
    let arch = config["model_type"].as_str().unwrap_or("");
    if !ARCHITECTURES.iter().any(|(a, _)| *a == arch) {
        return Err(HfError::Unsupported(format!(
            "convert supports llama, qwen2 and qwen3 checkpoints; model_type is {arch:?}"
        )));
    }
    // (the architecture's key `k`)
    let ak = |k: &str| format!("{arch}.{k}");
    let cu = |k: &str| config[k].as_u64();
    let bad = |why: String| HfError::Invalid {
        path: dir.join("config.json").display().to_string(),
        why,
    };
    let hidden = cu("hidden_size").ok_or_else(|| bad("hidden_size missing".into()))? as usize;
    let n_head = cu("num_attention_heads")
        .ok_or_else(|| bad("num_attention_heads missing".into()))? as usize;
    let n_head_kv = cu("num_key_value_heads").unwrap_or(n_head as u64) as usize;
    // Qwen 3 names its head width (wider than hidden_size / heads); others split hidden_size.
    let head_dim = cu("head_dim").map(|d| d as usize);
    if n_head == 0
        || n_head_kv == 0
        || head_dim == Some(0)
        || (head_dim.is_none() && !hidden.is_multiple_of(n_head))
        || !n_head.is_multiple_of(n_head_kv)
    {
        return Err(bad(format!(
            "hidden_size {hidden}, num_attention_heads {n_head}, num_key_value_heads \
             {n_head_kv}, head_dim {head_dim:?}: there must be at least one head of each, \
             the heads must split hidden_size evenly (or head_dim be given) and the query \
             heads must group evenly over the key/value heads"
        )));
    }
    let head_dim = head_dim.unwrap_or(hidden / n_head);

    let scaling = super::rope::rope_scaling(&config, head_dim).map_err(bad)?;

    // Tokenizer.
    let tj = read_json(&dir.join("tokenizer.json"))?;
    let tpath = dir.join("tokenizer.json").display().to_string();
    let vocab = tj["model"]["vocab"]
        .as_object()
        .ok_or_else(|| HfError::Invalid {
            path: tpath.clone(),
            why: "no model.vocab".into(),
        })?;
    // Added tokens (specials): Llama 3's and Qwen's files list theirs only here, outside
    // model.vocab. (content, id, special).
    let added: Vec<(&str, u64, bool)> = tj["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let special = a["special"].as_bool() == Some(true);
            Some((a["content"].as_str()?, a["id"].as_u64()?, special))
        })
        .collect();
    // As llama.cpp's converter: config.json's vocab_size (the embedding's rows) is the
    // vocabulary, ids no token has are "[PAD{id}]".
    let ids = vocab
        .values()
        .filter_map(|v| v.as_u64())
        .chain(added.iter().map(|a| a.1));
    let n_vocab = ids
        .map(|m| m.saturating_add(1))
        .chain(cu("vocab_size"))
        .max()
        .unwrap_or(0);
    if n_vocab > MAX_VOCAB {
        return Err(HfError::Invalid {
            path: tpath,
            why: format!(
                "a vocabulary of {n_vocab} tokens (config.json's vocab_size or the largest \
                 token id); at most {MAX_VOCAB} are accepted"
            ),
        });
    }
    let n_vocab = n_vocab as usize;
    let mut tokens: Vec<String> = (0..n_vocab).map(|i| format!("[PAD{i}]")).collect();
    let mut types = vec![TOKEN_UNUSED; n_vocab];
    for (t, id) in vocab {
        if let Some(id) = id.as_u64() {
            tokens[id as usize] = t.clone();
            types[id as usize] = TOKEN_NORMAL;
        }
    }
    for &(content, id, special) in &added {
        tokens[id as usize] = content.to_string();
        types[id as usize] = if special {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
    }
    let merges: Vec<MetaValue> = tj["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Value::String(s) => Some(MetaValue::String(s.clone())),
            Value::Array(p) => Some(MetaValue::String(format!(
                "{} {}",
                p.first()?.as_str()?,
                p.get(1)?.as_str()?
            ))),
            _ => None,
        })
        .collect();
    let tc = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let id_of = |key: &str| -> Option<u32> {
        let t = match &tc[key] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("content")?.as_str()?.to_string(),
            _ => return None,
        };
        tokens.iter().position(|x| *x == t).map(|i| i as u32)
    };

    let named_templates = chat_templates(&tc["chat_template"]);
    let mut w = GgufWriter::new();
    let werr = |e: crate::WriteError| HfError::Unsupported(e.to_string());
    let extra = read_json(&dir.join(GGUF_METADATA_FILE)).ok();
    w.meta("general.architecture", MetaValue::String(arch.into()))
        .map_err(werr)?;
    let put = |w: &mut GgufWriter, k: &str, v: MetaValue| w.meta(k, v).map(|_| ()).map_err(werr);
    if let Some(Value::Object(m)) = &extra {
        for (k, v) in m {
            if let Some(mv) = meta_from_json(v) {
                put(&mut w, k, mv)?;
            }
        }
    } else {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        put(&mut w, "general.name", MetaValue::String(name))?;
    }
    let u32v = |k: &str| cu(k).map(|v| MetaValue::U32(v as u32));
    // Written as llama.cpp's converter writes them (`head_dim` as key/value lengths).
    let head_dims = cu("head_dim").map(|d| MetaValue::U32(d as u32));
    for (key, val) in [
        (ak("block_count"), u32v("num_hidden_layers")),
        (ak("context_length"), u32v("max_position_embeddings")),
        (ak("embedding_length"), Some(MetaValue::U32(hidden as u32))),
        (ak("feed_forward_length"), u32v("intermediate_size")),
        (
            ak("attention.head_count"),
            Some(MetaValue::U32(n_head as u32)),
        ),
        (
            ak("attention.head_count_kv"),
            Some(MetaValue::U32(n_head_kv as u32)),
        ),
        (ak("attention.key_length"), head_dims.clone()),
        (ak("attention.value_length"), head_dims),
        (
            ak("rope.freq_base"),
            Some(MetaValue::F32(super::rope::rope_theta(&config) as f32)),
        ),
        (
            ak("attention.layer_norm_rms_epsilon"),
            Some(MetaValue::F32(
                config["rms_norm_eps"].as_f64().unwrap_or(1e-5) as f32,
            )),
        ),
        (
            "general.file_type".into(),
            Some(MetaValue::U32(match out {
                OutType::F32 => 0,
                OutType::F16 => 1,
                OutType::BF16 => 32,
            })),
        ),
        (ak("vocab_size"), Some(MetaValue::U32(n_vocab as u32))),
        (
            ak("rope.dimension_count"),
            Some(MetaValue::U32(head_dim as u32)),
        ),
        (
            "tokenizer.ggml.model".into(),
            Some(MetaValue::String("gpt2".into())),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Some(MetaValue::Array(
                MetaType::String,
                tokens
                    .iter()
                    .map(|t| MetaValue::String(t.clone()))
                    .collect(),
            )),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Some(MetaValue::Array(
                MetaType::I32,
                types.iter().map(|&t| MetaValue::I32(t)).collect(),
            )),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Some(MetaValue::Array(MetaType::String, merges)),
        ),
        (
            "tokenizer.ggml.bos_token_id".into(),
            id_of("bos_token").map(MetaValue::U32),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            id_of("eos_token").map(MetaValue::U32),
        ),
        (
            "tokenizer.ggml.unknown_token_id".into(),
            id_of("unk_token").map(MetaValue::U32),
        ),
        (
            "tokenizer.ggml.padding_token_id".into(),
            id_of("pad_token").map(MetaValue::U32),
        ),
        (
            "tokenizer.chat_template".into(),
            named_templates
                .iter()
                .find(|(name, _)| name == "default")
                .map(|(_, t)| MetaValue::String(t.clone())),
        ),
        (
            "general.quantization_version".into(),
            Some(MetaValue::U32(2)),
        ),
    ] {
        if let Some(v) = val {
            put(&mut w, &key, v)?;
        }
    }
    // The other named templates (Hermes 2 Pro's `tool_use`) and linear RoPE scaling, as
    // llama.cpp's converter writes them (unless gguf_metadata.json has them already).
    let kept = |key: &str| matches!(&extra, Some(Value::Object(m)) if m.contains_key(key));
    let mut more: Vec<(String, MetaValue)> = named_templates
        .iter()
        .filter(|(name, _)| name != "default")
        .map(|(name, t)| {
            (
                format!("tokenizer.chat_template.{name}"),
                MetaValue::String(t.clone()),
            )
        })
        .collect();
    // The pre-tokenizer, recognized from tokenizer.json (llama.cpp's converter hashes the
    // tokenizer's output instead), and whether BOS is added.
    if let Some(pre) = PreTokenizer::from_tokenizer_json(&tj["pre_tokenizer"]) {
        more.push((
            "tokenizer.ggml.pre".into(),
            MetaValue::String(pre.gguf_name().into()),
        ));
    }
    if let Some(add) = tc["add_bos_token"].as_bool() {
        more.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(add)));
    }
    if let RopeScaling::Linear(factor) = scaling {
        more.push((ak("rope.scaling.type"), MetaValue::String("linear".into())));
        more.push((ak("rope.scaling.factor"), MetaValue::F32(factor)));
    }
    for (key, v) in more {
        if !kept(&key) {
            put(&mut w, &key, v)?;
        }
    }

    // Tensors from every *.safetensors file, written in llama.cpp's order (layer, then name).
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(HfError::Unsupported(format!(
            "no .safetensors files in {}",
            dir.display()
        )));
    }
    let mut pending: BTreeMap<(i64, String), Converted> = BTreeMap::new();
    if let RopeScaling::FreqFactors(f) = &scaling {
        let bytes = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        pending.insert(
            (-1, "rope_freqs.weight".into()),
            (vec![f.len() as u64], GgmlType::F32, bytes),
        );
    }
    for path in &files {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| HfError::Invalid {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            let gname = hf_to_gguf(&name).filter(|g| arch == "qwen3" || !qwen3_only(g));
            let Some(gname) = gname else {
                if name.ends_with("rotary_emb.inv_freq") {
                    continue;
                }
                return Err(HfError::Unsupported(format!(
                    "{}: tensor {name} is not part of a {arch} model",
                    path.display()
                )));
            };
            let mut x: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| blocks::bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                other => {
                    return Err(HfError::Unsupported(format!(
                        "tensor {name}: dtype {other:?} is not supported"
                    )));
                }
            };
            let shape = view.shape().to_vec();
            if let (Some(heads), [rows, cols]) =
                (qk_heads(arch, &gname, n_head, n_head_kv), shape.as_slice())
            {
                if !super::names::permutable(*rows, heads) {
                    return Err(HfError::Unsupported(format!(
                        "tensor {}: {rows} rows do not split into {heads} heads of even width",
                        name
                    )));
                }
                x = permute_qk(&x, *rows, *cols, heads, false);
            }
            let ty = if shape.len() < 2 {
                GgmlType::F32
            } else {
                out.ggml()
            };
            let data = blocks::quantize(ty, &x)
                .map_err(|e| HfError::Unsupported(format!("tensor {name}: {e}")))?;
            let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            let layer = gname
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1);
            pending.insert((layer, gname), (dims, ty, data));
        }
    }
    for ((_, name), (dims, ty, data)) in pending {
        w.tensor(&name, &dims, ty, data).map_err(werr)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizers_are_recognized_in_the_tokenizer_json_they_export_to() {
        // Each kind written as export writes it (via a header naming it) reads back the same.
        for name in ["gpt2", "smollm", "llama-bpe", "qwen2", "starcoder"] {
            let dir = tempfile::tempdir().unwrap();
            let mut h = Header {
                version: 3,
                metadata: vec![
                    (
                        "tokenizer.ggml.model".into(),
                        MetaValue::String("gpt2".into()),
                    ),
                    ("tokenizer.ggml.pre".into(), MetaValue::String(name.into())),
                ],
                tensors: Vec::new(),
                alignment: 32,
                data_offset: 0,
                file_len: 0,
            };
            write_tokenizer_files(&h, &["a", "b"], dir.path()).unwrap();
            let tj = read_json(&dir.path().join("tokenizer.json")).unwrap();
            let pre = PreTokenizer::from_tokenizer_json(&tj["pre_tokenizer"]).unwrap();
            assert_eq!(Some(pre), PreTokenizer::from_gguf_name(name), "{name}");
            h.metadata[1].1 = MetaValue::String("falcon".into());
            assert!(write_tokenizer_files(&h, &["a", "b"], dir.path()).is_err());
        }
    }
}
