//! Mixtures of experts beyond the golden tests (`llamacpp_golden.rs`): sequences batched
//! together give each one's logits alone, bit for bit (every expert row is its own one-token
//! product, the router's rows sum per sequence); a token reads only its experts' bytes;
//! post-training quantization and malformed expert tensors are refused with clear errors.

mod made_models;

use made_models::{edited, mixtral, qwen2moe, qwen3moe};
use smelt_gguf::GgufFile;
use smelt_models::llama::{Llama, ModelError};
use smelt_models::tokenizer;

fn prompts(file: &GgufFile) -> Vec<Vec<u32>> {
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    [
        "To be, or not to be",
        "Now is the winter of our discontent made glorious summer by this sun of York",
        "A",
    ]
    .iter()
    .map(|p| tok.encode(p, true))
    .collect()
}

#[test]
fn batched_sequences_equal_each_alone() {
    for file in [qwen3moe(), mixtral(), qwen2moe()] {
        let model = Llama::load(&file).unwrap();
        made_models::assert_batched_equals_alone(&model, &prompts(&file));
    }
}

#[test]
fn a_token_reads_the_router_and_its_experts_only() {
    let file = qwen3moe();
    let model = Llama::load(&file).unwrap();
    let c = &model.config;
    let m = c.moe.unwrap();
    // Q8_0: 34 bytes per 32 weights; the router stays F32.
    let q8 = |rows: usize, cols: usize| rows * cols / 32 * 34;
    let attn = q8(c.q_dim(), c.n_embd) * 2 + q8(c.n_head_kv * c.head_dim(), c.n_embd) * 2;
    let router = m.count * c.n_embd * 4;
    let expert = 3 * q8(m.n_ff, c.n_embd);
    let output = q8(c.n_vocab, c.n_embd);
    assert_eq!(
        model.weight_bytes_per_token(),
        c.n_layer * (attn + router + m.used * expert) + output
    );
    // Every expert's three matrices count in the formats.
    let formats = model.weight_formats();
    let count = |name: &str| formats.iter().find(|(n, _)| n == name).map_or(0, |x| x.1);
    assert_eq!(count("f32"), c.n_layer);
    assert_eq!(count("q8_0"), c.n_layer * (4 + 3 * m.count) + 1);
}

#[test]
fn post_training_quantization_is_refused() {
    let mut model = Llama::load(&mixtral()).unwrap();
    assert!(model.is_moe());
    let e = model.dequantize_to_f32().unwrap_err();
    assert!(
        e.to_string().contains("llama has 8 experts per layer"),
        "{e}"
    );
}

#[test]
fn malformed_expert_tensors_are_errors() {
    let file = qwen3moe();
    let down = file
        .header
        .tensors
        .iter()
        .find(|t| t.name == "blk.1.ffn_down_exps.weight")
        .unwrap()
        .dims
        .clone();
    let missing = edited(&file, "blk.1.ffn_gate_exps.weight", None);
    // The same bytes seen as 10 experts of twice the width, and as a 2-D stack.
    let (a, b, n) = (down[0], down[1], down[2]);
    for (f, says) in [
        (missing, "blk.1.ffn_gate_exps.weight: missing"),
        (
            edited(
                &file,
                "blk.1.ffn_down_exps.weight",
                Some(vec![a, 2 * b, n / 2]),
            ),
            "blk.1.ffn_down_exps.weight: dims [64, 256, 10], expected [64, 128, 20]",
        ),
        (
            edited(&file, "blk.1.ffn_down_exps.weight", Some(vec![a, b * n])),
            "expected [64, 128, 20]",
        ),
    ] {
        let e = match Llama::load(&f) {
            Err(e) => e,
            Ok(_) => panic!("loaded a model with {says}"),
        };
        assert!(matches!(e, ModelError::Tensor { .. }), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}
