//! llama.cpp's quantization mixes ("file types" such as Q4_K_M): which ggml type each tensor of
//! a llama-style model gets. Follows `llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp`
//! for non-Falcon models without an importance matrix:
//!
//! - only tensors with 2+ dims whose name ends in `weight` (not `_norm.weight`, not
//!   `ffn_gate_inp`, position or token-type embeddings) are quantized; the rest are copied;
//! - `output.weight` (or `token_embd.weight` when the embeddings are tied) gets Q6_K, or Q8_0 when
//!   the mix is Q8_0 or its row length does not fit the block;
//! - attention-V tensors and `ffn_down` get more bits on some layers (`use_more_bits`: the first
//!   and last eighth of the layers and every third in between), `attn_output` on Q2_K/Q3_K_M;
//! - with 8 experts (Mixtral's count), attention K and V get Q8_0 and `attn_output` Q5_K on the
//!   k-quant and IQ4 mixes; an expert tensor's layer is read from its name;
//! - a type whose block does not divide the row length falls back (Q4_K→Q5_0, Q5_K→Q5_1,
//!   Q6_K→Q8_0, Q2_K/Q3_K→Q4_0), and F16 if even that does not fit.

use crate::reader::Header;
use crate::types::GgmlType;

/// A whole-model quantization recipe, named as llama-quantize names them.
#[allow(missing_docs, non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_M,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

/// Every mix, for help texts.
pub const ALL_FILE_TYPES: &[FileType] = {
    use FileType::*;
    &[
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_M, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M,
        Q6_K, IQ4_NL, IQ4_XS,
    ]
};

impl FileType {
    /// Parses `Q4_K_M`, `q4_k_m`, `f16`, ...
    pub fn parse(s: &str) -> Option<Self> {
        ALL_FILE_TYPES
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The name llama-quantize uses.
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` number.
    pub fn llama_ftype(self) -> u32 {
        use FileType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q3_K_M => 12,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
            IQ4_NL => 25,
            IQ4_XS => 30,
            BF16 => 32,
        }
    }

    /// The type most tensors get.
    pub fn base_type(self) -> GgmlType {
        use FileType::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2_K => GgmlType::Q2_K,
            Q3_K_M => GgmlType::Q3_K,
            Q4_K_S | Q4_K_M => GgmlType::Q4_K,
            Q5_K_S | Q5_K_M => GgmlType::Q5_K,
            Q6_K => GgmlType::Q6_K,
            IQ4_NL => GgmlType::IQ4_NL,
            IQ4_XS => GgmlType::IQ4_XS,
        }
    }

    fn is_quantized(self) -> bool {
        !matches!(self, FileType::F32 | FileType::F16 | FileType::BF16)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    // attn_qkv and attn_kv_b count as V-like, as in llama.cpp's category_is_attn_v.
    for (pat, cat) in [
        ("attn_qkv.weight", AttnV),
        ("attn_kv_b.weight", AttnV),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ] {
        if name.contains(pat) {
            return cat;
        }
    }
    Other
}

fn allows_quantization(name: &str, n_dims: usize) -> bool {
    n_dims >= 2
        && name.ends_with("weight")
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight")
        && !name.contains("altup")
        && !name.contains("laurel")
        && !name.contains("per_layer_model_proj")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !name.contains("ssm_conv1d")
}

fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// ggml's fallback when a type's block does not divide the row length.
fn fallback(ty: GgmlType, ncols: u64) -> GgmlType {
    if ncols.is_multiple_of(ty.block().0) {
        return ty;
    }
    let alt = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        other => other,
    };
    if ncols.is_multiple_of(alt.block().0) {
        alt
    } else {
        GgmlType::F16
    }
}

/// The N of a `blk.N.` tensor name.
fn block_number(name: &str) -> Option<i64> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Tensor indices in llama.cpp's processing (and output) order: by block number (tensors outside
/// `blk.N.` first), then by name. The layer counters of the mix rules follow this order.
pub fn llama_order(header: &Header) -> Vec<usize> {
    let layer = |name: &str| block_number(name).unwrap_or(-1);
    let mut idx: Vec<usize> = (0..header.tensors.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ta, tb) = (&header.tensors[a].name, &header.tensors[b].name);
        (layer(ta), ta).cmp(&(layer(tb), tb))
    });
    idx
}

/// The type each tensor of `header` gets under `ftype` (`None`: copied unchanged), indexed like
/// `header.tensors`.
pub fn plan(header: &Header, ftype: FileType) -> Vec<Option<GgmlType>> {
    let arch = header
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("llama")
        .to_string();
    let meta = |k: &str| header.get(&format!("{arch}.{k}")).and_then(|v| v.as_u64());
    let n_head = meta("attention.head_count").unwrap_or(1).max(1);
    let n_head_kv = meta("attention.head_count_kv").unwrap_or(n_head).max(1);
    let n_gqa = n_head / n_head_kv;
    let n_expert = meta("expert_count").unwrap_or(0);
    // Without the key (llama.cpp would refuse to load such a file), the layers the tensor
    // names number: 0 would make every layer count as one of the first and last.
    let n_layer = meta("block_count").map(|n| n as i64).unwrap_or_else(|| {
        header
            .tensors
            .iter()
            .filter_map(|t| {
                t.name
                    .strip_prefix("blk.")?
                    .split('.')
                    .next()?
                    .parse::<i64>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
    });
    let tied = !header.tensors.iter().any(|t| t.name == "output.weight");
    let n_attention_wv = header
        .tensors
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count() as i64;
    let (mut i_attention_wv, mut i_ffn_down) = (0i64, 0i64);
    let base = ftype.base_type();
    let mut out = vec![None; header.tensors.len()];
    for i in llama_order(header) {
        let t = &header.tensors[i];
        out[i] = (|| {
            if !allows_quantization(&t.name, t.dims.len()) {
                return None;
            }
            if !ftype.is_quantized() {
                return Some(base);
            }
            let cat = category(&t.name);
            let ncols = t.dims[0];
            use FileType as F;
            let mut ty = base;
            if cat == Category::Output || (tied && cat == Category::TokenEmbd) {
                if !ncols.is_multiple_of(ty.block().0) {
                    ty = GgmlType::Q8_0;
                } else if ty != GgmlType::Q8_0 {
                    ty = GgmlType::Q6_K;
                }
            } else if cat == Category::AttnV {
                match ftype {
                    F::Q2_K => {
                        ty = if n_gqa >= 4 {
                            GgmlType::Q4_K
                        } else {
                            GgmlType::Q3_K
                        }
                    }
                    F::Q3_K_M => {
                        ty = if i_attention_wv < 2 {
                            GgmlType::Q5_K
                        } else {
                            GgmlType::Q4_K
                        }
                    }
                    F::IQ4_NL | F::IQ4_XS if n_gqa >= 4 => ty = GgmlType::Q5_K,
                    F::Q4_K_M | F::Q5_K_M if use_more_bits(i_attention_wv, n_attention_wv) => {
                        ty = GgmlType::Q6_K
                    }
                    F::Q4_K_S if i_attention_wv < 4 => ty = GgmlType::Q5_K,
                    _ => {}
                }
                // "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
                if n_expert == 8 {
                    ty = GgmlType::Q8_0;
                }
                i_attention_wv += 1;
            } else if cat == Category::AttnK {
                if n_expert == 8 {
                    ty = GgmlType::Q8_0;
                }
            } else if cat == Category::FfnDown {
                // With experts llama.cpp reads the layer from the name (their tensors need
                // not come in layer order).
                let i = if n_expert > 1 {
                    block_number(&t.name).unwrap_or(i_ffn_down)
                } else {
                    i_ffn_down
                };
                let n = n_layer;
                match ftype {
                    F::Q2_K => ty = GgmlType::Q3_K,
                    F::Q3_K_M => {
                        ty = if i < n / 16 {
                            GgmlType::Q5_K
                        } else {
                            GgmlType::Q4_K
                        }
                    }
                    F::Q4_K_M if use_more_bits(i, n) => ty = GgmlType::Q6_K,
                    F::IQ4_NL | F::IQ4_XS if i < n / 8 => ty = GgmlType::Q5_K,
                    F::Q5_K_M if use_more_bits(i, n) => ty = GgmlType::Q6_K,
                    F::Q4_K_S if i < n / 8 => ty = GgmlType::Q5_K,
                    _ => {}
                }
                i_ffn_down += 1;
            } else if cat == Category::AttnOutput {
                match ftype {
                    F::Q2_K | F::Q3_K_M | F::IQ4_NL | F::Q4_K_S | F::Q4_K_M | F::IQ4_XS
                        if n_expert == 8 =>
                    {
                        ty = GgmlType::Q5_K
                    }
                    _ if n_expert == 8 => {}
                    F::Q2_K => ty = GgmlType::Q3_K,
                    F::Q3_K_M => ty = GgmlType::Q4_K,
                    _ => {}
                }
            }
            Some(fallback(ty, ncols))
        })();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_on_30_layers() {
        let picked: Vec<i64> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        // n/8 = 3, 7n/8 = 26: layers 0-2, 26-29, and 3 + 3k + 2 = 5, 8, ..., 23.
        assert_eq!(
            picked,
            vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
        );
    }

    #[test]
    fn fallbacks_follow_ggml() {
        assert_eq!(fallback(GgmlType::Q4_K, 576), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q6_K, 576), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::Q4_K, 1536), GgmlType::Q4_K);
        assert_eq!(fallback(GgmlType::Q4_0, 40), GgmlType::F16);
    }

    /// Mixtral's count of 8 experts: attention K and V get Q8_0, `attn_output` Q5_K, and the
    /// expert tensors' layer comes from their names (checked against llama-quantize on a made-up
    /// 8-expert model by `benches/gguf_quantize_vs_llamacpp.sh MIX 1 SOURCE`).
    #[test]
    fn eight_experts_take_llama_cpp_s_moe_rules() {
        use crate::MetaValue;
        use crate::reader::{Header, TensorInfo};
        let header = |experts: u32| {
            let mut tensors = Vec::new();
            for l in 0..4 {
                for (name, dims) in [
                    ("attn_k", vec![256, 256]),
                    ("attn_v", vec![256, 256]),
                    ("attn_output", vec![256, 256]),
                    ("ffn_down_exps", vec![256, 256, experts as u64]),
                    ("ffn_gate_inp", vec![256, experts as u64]),
                ] {
                    tensors.push(TensorInfo {
                        name: format!("blk.{l}.{name}.weight"),
                        dims,
                        ggml_type: GgmlType::F32,
                        offset: 0,
                        size: 0,
                    });
                }
            }
            Header {
                version: 3,
                metadata: vec![
                    (
                        "general.architecture".into(),
                        MetaValue::String("llama".into()),
                    ),
                    ("llama.block_count".into(), MetaValue::U32(4)),
                    ("llama.expert_count".into(), MetaValue::U32(experts)),
                ],
                tensors,
                alignment: 32,
                data_offset: 0,
                file_len: 0,
            }
        };
        let types = |experts: u32, ftype: FileType| -> Vec<(String, Option<GgmlType>)> {
            let h = header(experts);
            let names = h.tensors.iter().map(|t| t.name.clone());
            names.zip(plan(&h, ftype)).collect()
        };
        let get = |v: &[(String, Option<GgmlType>)], name: &str| {
            v.iter().find(|(n, _)| n == name).unwrap().1
        };
        let moe = types(8, FileType::Q4_K_M);
        assert_eq!(get(&moe, "blk.1.attn_k.weight"), Some(GgmlType::Q8_0));
        assert_eq!(get(&moe, "blk.1.attn_v.weight"), Some(GgmlType::Q8_0));
        assert_eq!(get(&moe, "blk.1.attn_output.weight"), Some(GgmlType::Q5_K));
        // use_more_bits(3, 4): the last layer's down experts get Q6_K, the second's Q4_K.
        assert_eq!(
            get(&moe, "blk.3.ffn_down_exps.weight"),
            Some(GgmlType::Q6_K)
        );
        assert_eq!(
            get(&moe, "blk.1.ffn_down_exps.weight"),
            Some(GgmlType::Q4_K)
        );
        // The router is never quantized.
        assert_eq!(get(&moe, "blk.1.ffn_gate_inp.weight"), None);
        // Q2_K with 8 experts: attn_output Q5_K, not Q3_K.
        let q2 = types(8, FileType::Q2_K);
        assert_eq!(get(&q2, "blk.0.attn_output.weight"), Some(GgmlType::Q5_K));
        // Other counts keep the dense rules.
        let other = types(4, FileType::Q4_K_M);
        assert_eq!(get(&other, "blk.1.attn_k.weight"), Some(GgmlType::Q4_K));
        assert_eq!(
            get(&other, "blk.1.attn_output.weight"),
            Some(GgmlType::Q4_K)
        );
        assert_eq!(
            get(&types(4, FileType::Q2_K), "blk.0.attn_output.weight"),
            Some(GgmlType::Q3_K)
        );
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(FileType::parse("q4_k_m"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q8_0").map(FileType::llama_ftype), Some(7));
        assert_eq!(FileType::parse("q9"), None);
    }
}
