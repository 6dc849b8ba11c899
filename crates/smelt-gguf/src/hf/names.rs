//! Tensor names and layouts between Hugging Face llama, Qwen 2 and Qwen 3 checkpoints and GGUF.
//!
//! GGUF lists dims innermost first, safetensors outermost first, so shapes are reversed. For
//! llama, llama.cpp's converter also permutes the rows of `q_proj` and `k_proj` (per head, from
//! HF's "rotate half" RoPE layout to interleaved pairs); exporting undoes it. Qwen models keep
//! HF's layout (llama.cpp rotates them NeoX-style).

/// `(GGUF suffix after "blk.N.", HF suffix after "model.layers.N.")` for per-layer tensors.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
    // Qwen 2's q/k/v biases (llama.cpp reads them for llama too).
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    // Qwen 3's per-head q/k norms ([`qwen3_only`]).
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
];

/// Whether a GGUF tensor belongs to Qwen 3 alone (its q/k norms: a llama or Qwen 2 model
/// would not use them, so converting or exporting them under that architecture is refused).
pub fn qwen3_only(gguf_name: &str) -> bool {
    gguf_name.ends_with("attn_q_norm.weight") || gguf_name.ends_with("attn_k_norm.weight")
}

/// `(GGUF, HF)` names of the tensors outside the layers.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The Hugging Face name of a GGUF tensor, if it is one of a llama model's.
pub fn gguf_to_hf(name: &str) -> Option<String> {
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == name) {
        return Some(hf.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The GGUF name of a Hugging Face tensor, if it is one of a llama model's.
pub fn hf_to_gguf(name: &str) -> Option<String> {
    if let Some((g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == name) {
        return Some(g.to_string());
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// Row permutation of llama.cpp's converter for q/k projections: a `(rows, cols)` matrix with
/// `rows = heads · head_dim` is viewed as `(heads, 2, head_dim/2, cols)` and the two middle axes
/// are swapped. `inverse` undoes it. (rows, cols) row-major in and out.
pub fn permute_qk(w: &[f32], rows: usize, cols: usize, heads: usize, inverse: bool) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for a in 0..2 {
            for b in 0..half {
                // HF row (h, a, b) becomes GGUF row (h, b, a).
                let hf = h * 2 * half + a * half + b;
                let gg = h * 2 * half + b * 2 + a;
                let (src, dst) = if inverse { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Whether a `(rows, _)` q/k matrix splits into `heads` heads of an even width, as the
/// permutation needs.
pub fn permutable(rows: usize, heads: usize) -> bool {
    heads > 0 && rows.is_multiple_of(2 * heads)
}

/// Number of heads a q/k tensor is permuted with (`None` for other tensors, and for every
/// tensor of an architecture other than llama).
pub fn qk_heads(arch: &str, gguf_name: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    if arch != "llama" {
        None
    } else if gguf_name.ends_with("attn_q.weight") {
        Some(n_head)
    } else if gguf_name.ends_with("attn_k.weight") {
        Some(n_head_kv)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for g in [
            "token_embd.weight",
            "blk.12.attn_q.weight",
            "blk.0.ffn_norm.weight",
            "output.weight",
        ] {
            let h = gguf_to_hf(g).unwrap();
            assert_eq!(hf_to_gguf(&h).as_deref(), Some(g));
        }
        assert_eq!(
            gguf_to_hf("blk.3.attn_k.weight").unwrap(),
            "model.layers.3.self_attn.k_proj.weight"
        );
        assert_eq!(gguf_to_hf("rope_freqs.weight"), None);
    }

    #[test]
    fn permutation_matches_llama_cpp_and_inverts() {
        // 2 heads of head_dim 4, one column: HF rows [h0: 0 1 2 3 | h1: 4 5 6 7]; llama.cpp's
        // reshape(2, 2, 2).swapaxes(1, 2) gives [0 2 1 3 | 4 6 5 7].
        let w: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let p = permute_qk(&w, 8, 1, 2, false);
        assert_eq!(p, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(permute_qk(&p, 8, 1, 2, true), w);
    }
}
