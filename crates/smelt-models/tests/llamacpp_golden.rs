//! smelt's logits equal llama.cpp's bit for bit on SmolLM2 as shipped (Q4_1) and in Q8_0, Q5_0,
//! Q4_0, Q4_K_M and Q5_K_S, without flash attention; and on its Q8_0 weights run as Qwen 2
//! (q/k/v biases), Qwen 3 (per-head q/k RMSNorm) and Phi-3 (fused matrices, queries scaled
//! first), all with NeoX RoPE; and on small made-up Qwen 3, Phi-3, Gemma 2, Gemma 3, Qwen 3 MoE
//! and Mixtral-style models.
//!
//! The golden data (`data/llamacpp_{q4_1,q8_0,q5_0,q4_0,q4_k_m,q5_k_s}_greedy.json`) are
//! llama.cpp's own logits along its greedy path for three prompts, written by
//! `benches/llamacpp_golden.sh` (the source is named in each file): per step the top five
//! (token, f32 bits) and an FNV-1a hash of the whole row. The requantized models are the shipped
//! one requantized by smelt's quantizer, as there.
//!
//! The equality holds on every kernel variant: the products, attention, RoPE, SiLU and the
//! softmax all follow the operations of llama.cpp's x86 AVX-512 build (`docs/design.md`).

mod made_models;

use std::sync::Arc;

use made_models::{
    edited, gemma2, gemma3, longrope_phi3, mixtral, phi3, qwen2, qwen2moe, qwen3, qwen3moe,
    qwen3moe_q4_k_m, requantized, shipped_smollm2, wide_phi3, wide_qwen3, written,
};
use smelt_gguf::mix::FileType;
use smelt_gguf::{GgmlType, GgufFile};
use smelt_models::llama::{Arch, Experts, Llama, Logits};
use smelt_models::tokenizer;

fn fnv1a64(row: &[f32]) -> u64 {
    row.iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Asserts that two golden files' runs (the same prompts) differ at their first step: what
/// one model adds to the other changes llama.cpp's logits from the start.
fn first_steps_differ(without: &str, with: &str) {
    let parse = |j: &str| serde_json::from_str::<serde_json::Value>(j).unwrap();
    let (a, b) = (parse(without), parse(with));
    let (a, b) = (a["runs"].as_array().unwrap(), b["runs"].as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a["prompt"], b["prompt"]);
        let first = |r: &serde_json::Value| r["steps"][0]["fnv1a64"].clone();
        assert_ne!(first(a), first(b), "{}", a["prompt"]);
    }
}

/// [`check`] on the shipped model requantized to `ftype` by smelt's quantizer.
fn check_requantized(ftype: FileType, json: &str) {
    check(&written(requantized(ftype)), json);
}

/// Llama 3.1's RoPE scaling as llama.cpp's converter stores it: the Q8_0 model with a
/// `rope_freqs.weight` tensor, whose factors (the golden file holds their bits) divide each
/// pair's angle.
#[test]
fn rope_freqs_logits_equal_llamacpp_bit_for_bit() {
    let json = include_str!("data/llamacpp_q8_0_rope_freqs_greedy.json");
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let bytes: Vec<u8> = doc["rope_freqs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| (b.as_u64().unwrap() as u32).to_le_bytes())
        .collect();
    let mut writer = requantized(FileType::Q8_0);
    writer
        .tensor(
            "rope_freqs.weight",
            &[bytes.len() as u64 / 4],
            GgmlType::F32,
            bytes,
        )
        .unwrap();
    check(&written(writer), json);
    // The factors change the logits: without them llama.cpp's first step differs.
    first_steps_differ(include_str!("data/llamacpp_q8_0_greedy.json"), json);
}

/// Qwen 2: q/k/v biases and NeoX RoPE on the Q8_0 model's weights.
#[test]
fn qwen2_logits_equal_llamacpp_bit_for_bit() {
    let file = qwen2();
    let model = Llama::load(&file).unwrap();
    assert_eq!(model.config.arch, smelt_models::llama::Arch::Qwen2);
    check(&file, include_str!("data/llamacpp_qwen2_greedy.json"));
}

/// Qwen 3: per-head q/k RMSNorm and NeoX RoPE on the Q8_0 model's weights.
#[test]
fn qwen3_logits_equal_llamacpp_bit_for_bit() {
    let file = qwen3();
    check(&file, include_str!("data/llamacpp_qwen3_greedy.json"));
}

/// A small Qwen 3 whose heads (4 of 32) are wider than width / heads (64 / 4), as real Qwen 3
/// models' are ([`made_models::wide_qwen3`]).
#[test]
fn wide_headed_qwen3_logits_equal_llamacpp_bit_for_bit() {
    let q8 = wide_qwen3();
    let c = Llama::load(&q8).unwrap().config;
    assert_eq!((c.head_dim(), c.q_dim(), c.n_embd), (32, 128, 64));
    check(&q8, include_str!("data/llamacpp_qwen3_wide_greedy.json"));
}

/// Phi-3: fused q/k/v and gate/up matrices, queries scaled before attention, NeoX RoPE.
#[test]
fn phi3_logits_equal_llamacpp_bit_for_bit() {
    let file = phi3();
    assert!(
        file.header
            .tensors
            .iter()
            .any(|t| t.name == "blk.0.attn_qkv.weight")
    );
    check(&file, include_str!("data/llamacpp_phi3_greedy.json"));
}

/// A small Phi-3 with heads of 96 ([`made_models::wide_phi3`]): 1/√96 is not a power of two,
/// so only scaling the queries before attention, as llama.cpp does, gives its bits.
#[test]
fn wide_headed_phi3_logits_equal_llamacpp_bit_for_bit() {
    let file = wide_phi3();
    assert_eq!(Llama::load(&file).unwrap().config.head_dim(), 96);
    check(&file, include_str!("data/llamacpp_phi3_wide_greedy.json"));
}

/// Phi-3.5's LongRoPE ([`made_models::longrope_phi3`]): an attention factor on every cos and
/// sin, and the long frequency factors, since the sequence's context (prompt + tokens, as
/// llama.cpp's 1024) is past the original 64 positions.
#[test]
fn longrope_phi3_logits_equal_llamacpp_bit_for_bit() {
    let file = longrope_phi3();
    let c = Llama::load(&file).unwrap().config;
    let lr = c.rope.long_rope.as_ref().unwrap();
    assert_eq!((lr.original_ctx, c.rope.attn_factor), (64, 1.190_238_1));
    let json = include_str!("data/llamacpp_phi3_longrope_greedy.json");
    check(&file, json);
    // LongRoPE changes the logits: the same weights without it give other first steps.
    first_steps_differ(include_str!("data/llamacpp_phi3_wide_greedy.json"), json);
    // One set alone is an error that names the missing one, not a silent half.
    let half = edited(&file, "rope_factors_short.weight", None);
    let e = Llama::load(&half).err().unwrap().to_string();
    assert!(
        e.contains("rope_factors_short.weight") && e.contains("both"),
        "{e}"
    );
}

/// A small Gemma 3 ([`made_models::gemma3`]): scaled embeddings, q/k norms, post-norms,
/// GeGLU through ggml's f16 GELU table, heads of 256, queries scaled first, local layers that
/// see 8 positions and rotate with their own base beside a global one scaled linearly, and
/// soft-capped logits. 160 steps, so the windows slide past whole 128-position blocks.
#[test]
fn gemma3_logits_equal_llamacpp_bit_for_bit() {
    let file = gemma3();
    let c = Llama::load(&file).unwrap().config;
    let swa = c.swa.as_ref().unwrap();
    assert_eq!(
        (swa.window, swa.local.clone()),
        (8, vec![true, false, true])
    );
    assert_eq!(
        (swa.rope.base, c.rope.base, c.rope.linear_scale),
        (10000.0, 1e6, 8.0)
    );
    assert_eq!(c.final_softcap, Some(30.0));
    check(&file, include_str!("data/llamacpp_gemma3_greedy.json"));
}

/// A small Gemma 2 ([`made_models::gemma2`]): Gemma 3's graph without q/k norms, llama.cpp's
/// Gemma 2 defaults (every other layer local, one RoPE for all layers — here base 1e6 scaled
/// by 8 — logits capped at 30), a window of 8 and attention scores soft-capped at 5 before the
/// softmax.
#[test]
fn gemma2_logits_equal_llamacpp_bit_for_bit() {
    let file = gemma2();
    let c = Llama::load(&file).unwrap().config;
    let swa = c.swa.as_ref().unwrap();
    assert_eq!(
        (swa.window, swa.local.clone()),
        (8, vec![true, false, true])
    );
    assert_eq!((c.attn_softcap, c.final_softcap), (Some(5.0), Some(30.0)));
    assert_eq!((swa.rope.base, swa.rope.linear_scale), (1e6, 8.0));
    check(&file, include_str!("data/llamacpp_gemma2_greedy.json"));
}

/// A small Qwen 3 MoE ([`made_models::qwen3moe`]): 20 experts per layer, 4 per token, chosen
/// by an F32 router through ggml's softmax (16 values by its vectorized e^x, 4 by `expf`),
/// weights normalized to sum 1, Q8_0 experts each multiplying only the rows routed to it.
#[test]
fn qwen3moe_logits_equal_llamacpp_bit_for_bit() {
    let file = qwen3moe();
    let model = Llama::load(&file).unwrap();
    assert_eq!(model.config.arch, Arch::Qwen3Moe);
    assert_eq!(
        model.config.moe,
        Some(Experts {
            count: 20,
            used: 4,
            n_ff: 64,
            normalized: true,
            shared_ff: None,
        })
    );
    check(&file, include_str!("data/llamacpp_qwen3moe_greedy.json"));
}

/// The same in Q4_K_M at rows of 256 ([`made_models::qwen3moe_q4_k_m`]): Q4_K experts, which
/// llama.cpp repacks and multiplies by one gemv per routed token, Q6_K and Q5_0 elsewhere.
#[test]
fn qwen3moe_q4_k_m_logits_equal_llamacpp_bit_for_bit() {
    let file = qwen3moe_q4_k_m();
    let kinds: Vec<_> = file
        .header
        .tensors
        .iter()
        .filter(|t| t.name.contains("_exps"))
        .map(|t| t.ggml_type)
        .collect();
    assert!(kinds.contains(&GgmlType::Q4_K) && kinds.contains(&GgmlType::Q6_K));
    check(
        &file,
        include_str!("data/llamacpp_qwen3moe_q4_k_m_greedy.json"),
    );
}

/// A small Qwen 2 MoE ([`made_models::qwen2moe`]): 12 experts, 4 per token, weights left as
/// the probabilities, and a shared expert of width 96 whose output is scaled by
/// `silu(g) / g` of its own gate before it joins the routed experts' sum.
#[test]
fn qwen2moe_logits_equal_llamacpp_bit_for_bit() {
    let file = qwen2moe();
    let model = Llama::load(&file).unwrap();
    assert_eq!(model.config.arch, Arch::Qwen2Moe);
    let m = model.config.moe.unwrap();
    assert_eq!(
        (m.count, m.used, m.normalized, m.shared_ff),
        (12, 4, false, Some(96))
    );
    check(&file, include_str!("data/llamacpp_qwen2moe_greedy.json"));
}

/// A small Mixtral-style `llama` with 8 experts, 2 per token (the router's softmax all by
/// `expf`), F32 router, Q8_0 experts.
#[test]
fn mixtral_logits_equal_llamacpp_bit_for_bit() {
    let file = mixtral();
    let model = Llama::load(&file).unwrap();
    assert_eq!(model.config.arch, Arch::Llama);
    assert_eq!(model.config.moe.map(|m| (m.count, m.used)), Some((8, 2)));
    check(&file, include_str!("data/llamacpp_mixtral_greedy.json"));
}

#[test]
fn q8_0_logits_equal_llamacpp_bit_for_bit() {
    check_requantized(
        FileType::Q8_0,
        include_str!("data/llamacpp_q8_0_greedy.json"),
    );
}

#[test]
fn q5_0_logits_equal_llamacpp_bit_for_bit() {
    check_requantized(
        FileType::Q5_0,
        include_str!("data/llamacpp_q5_0_greedy.json"),
    );
}

#[test]
fn q4_0_logits_equal_llamacpp_bit_for_bit() {
    check_requantized(
        FileType::Q4_0,
        include_str!("data/llamacpp_q4_0_greedy.json"),
    );
}

/// Q4_K (repacked by llama.cpp: gemm for the prompt's groups of 4 rows, gemv for the rest and
/// for each token) and Q6_K (`vec_dot` for 5- and 6-token prompts and each token, the tiled
/// matmul for the 13-token prompt), besides Q5_0 and Q8_0.
#[test]
fn q4_k_m_logits_equal_llamacpp_bit_for_bit() {
    check_requantized(
        FileType::Q4_K_M,
        include_str!("data/llamacpp_q4_k_m_greedy.json"),
    );
}

/// Q5_K (`vec_dot` and tiled), besides Q5_1 and Q8_0.
#[test]
fn q5_k_s_logits_equal_llamacpp_bit_for_bit() {
    check_requantized(
        FileType::Q5_K_S,
        include_str!("data/llamacpp_q5_k_s_greedy.json"),
    );
}

#[test]
fn shipped_q4_1_logits_equal_llamacpp_bit_for_bit() {
    let file = Arc::new(shipped_smollm2());
    check(&file, include_str!("data/llamacpp_q4_1_greedy.json"));
}

/// Runs every path of the golden document `json` on `file`: the prompt in one batch, then one
/// token at a time, as llama.cpp ran them; each step's logits must hash to llama.cpp's.
fn check(file: &Arc<GgufFile>, json: &str) {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    let model = Llama::load(file).unwrap();
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    let bos = tokenizer::bos_to_add(&file.header);
    assert_eq!(doc["n_vocab"].as_u64(), Some(model.config.n_vocab as u64));
    for run in doc["runs"].as_array().unwrap() {
        let prompt = run["prompt"].as_str().unwrap();
        let tokens: Vec<u32> = run["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tok.encode(prompt, true));
        let mut cache = model.new_cache(ids.len() + tokens.len());
        let mut logits = model.forward_batch(&ids, &mut cache, Logits::Last).unwrap();
        for (k, step) in run["steps"].as_array().unwrap().iter().enumerate() {
            let want_hash = step["fnv1a64"].as_str().unwrap();
            let got_hash = format!("{:016x}", fnv1a64(&logits));
            if got_hash != want_hash {
                let top: Vec<(u64, f32, f32)> = step["top"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let t = e[0].as_u64().unwrap();
                        let want = f32::from_bits(e[1].as_u64().unwrap() as u32);
                        (t, want, logits[t as usize])
                    })
                    .collect();
                let why = if smelt_kernels::ggml_sums() {
                    ""
                } else {
                    " (SMELT_FAST_SUMS is set: products sum in smelt's own order, not ggml's)"
                };
                panic!(
                    "{prompt:?} step {k}: the logits differ from llama.cpp's{why} \
                     (token, llama.cpp, smelt) for its top five: {top:?}"
                );
            }
            logits = model.forward(tokens[k], &mut cache).unwrap();
        }
    }
}
