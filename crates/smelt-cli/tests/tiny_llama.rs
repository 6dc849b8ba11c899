//! A llama-architecture GGUF unlike SmolLM2: SentencePiece vocabulary (scores, byte tokens, BOS
//! added), no grouped-query attention, untied output, F16/Q8_0/Q5_1/Q4_0 matrices, partial RoPE
//! with linear scaling. Built here with random weights (fixed seed) and run through `smelt run`
//! with every kernel variant: the greedy text must not depend on the variant. Also: an
//! unsupported RoPE scaling is a clear error.

mod common;

use std::path::Path;

use common::{run, smelt, text};
use smelt_gguf::{GgmlType, GgufWriter, MetaType, MetaValue, blocks};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn strings(v: &[String]) -> MetaValue {
    MetaValue::Array(
        MetaType::String,
        v.iter().map(|s| MetaValue::String(s.clone())).collect(),
    )
}

/// Writes the model; `scaling` is the value of `llama.rope.scaling.type`.
fn write_tiny_llama(path: &Path, scaling: &str) {
    let (e, ff, layers, heads) = (64u64, 128u64, 2, 4u32);
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend(std::iter::repeat_n(6, 256));
    let pieces = [
        "▁", "e", "l", "o", "h", "w", "r", "d", "▁h", "ll", "▁w", "or", "▁he", "llo", "▁hello",
        "▁wor", "ld", "▁world",
    ];
    let first_piece = tokens.len();
    for p in pieces {
        tokens.push(p.into());
        types.push(1);
    }
    let scores: Vec<MetaValue> = (0..tokens.len())
        .map(|i| {
            MetaValue::F32(if i >= first_piece {
                -((i - first_piece) as f32)
            } else {
                0.0
            })
        })
        .collect();
    let vocab = tokens.len() as u64;
    let mut w = GgufWriter::new();
    let meta = [
        ("general.architecture", MetaValue::String("llama".into())),
        ("llama.block_count", MetaValue::U32(layers)),
        ("llama.context_length", MetaValue::U32(256)),
        ("llama.embedding_length", MetaValue::U32(e as u32)),
        ("llama.feed_forward_length", MetaValue::U32(ff as u32)),
        ("llama.attention.head_count", MetaValue::U32(heads)),
        ("llama.attention.head_count_kv", MetaValue::U32(heads)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        ),
        ("llama.rope.freq_base", MetaValue::F32(10000.0)),
        ("llama.rope.dimension_count", MetaValue::U32(8)),
        ("llama.rope.scaling.type", MetaValue::String(scaling.into())),
        ("llama.rope.scaling.factor", MetaValue::F32(2.0)),
        ("tokenizer.ggml.model", MetaValue::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.scores",
            MetaValue::Array(MetaType::F32, scores),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(
                MetaType::I32,
                types.iter().map(|&t| MetaValue::I32(t)).collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id", MetaValue::U32(0)),
    ];
    for (k, v) in meta {
        w.meta(k, v).unwrap();
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut t = |w: &mut GgufWriter, name: &str, dims: &[u64], ty: GgmlType, scale: f32| {
        let n = dims.iter().product::<u64>() as usize;
        let x: Vec<f32> = (0..n).map(|_| rng.next() * scale).collect();
        w.tensor(name, dims, ty, blocks::quantize(ty, &x).unwrap())
            .unwrap();
    };
    t(&mut w, "token_embd.weight", &[e, vocab], GgmlType::F16, 1.0);
    t(&mut w, "output_norm.weight", &[e], GgmlType::F32, 1.0);
    t(&mut w, "output.weight", &[e, vocab], GgmlType::Q8_0, 0.3);
    for l in 0..layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        t(&mut w, &n("attn_norm"), &[e], GgmlType::F32, 1.0);
        t(&mut w, &n("attn_q"), &[e, e], GgmlType::F16, 0.3);
        t(&mut w, &n("attn_k"), &[e, e], GgmlType::F16, 0.3);
        t(&mut w, &n("attn_v"), &[e, e], GgmlType::Q5_1, 0.3);
        t(&mut w, &n("attn_output"), &[e, e], GgmlType::Q4_0, 0.3);
        t(&mut w, &n("ffn_norm"), &[e], GgmlType::F32, 1.0);
        t(&mut w, &n("ffn_gate"), &[e, ff], GgmlType::Q8_0, 0.3);
        t(&mut w, &n("ffn_up"), &[e, ff], GgmlType::Q8_0, 0.3);
        t(&mut w, &n("ffn_down"), &[ff, e], GgmlType::Q5_1, 0.3);
    }
    w.write(path).unwrap();
}

#[test]
fn a_sentencepiece_llama_runs_the_same_with_every_kernel_variant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, "linear");
    let out = run(smelt(dir.path())
        .args(["tokenize"])
        .arg(&path)
        .arg("hello world"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Two whole-word pieces (space prefix, score-ordered merges), shown decoded.
    assert!(
        t.contains("\" hello\"") && t.contains("\" world\"") && t.contains("2 tokens"),
        "{t}"
    );

    let mut texts = Vec::new();
    for kernel in ["reference", "avx2", "avx512-vnni", "avx-vnni"] {
        let out = run(smelt(dir.path())
            .env("SMELT_KERNEL", kernel)
            .args(["run"])
            .arg(&path)
            .args(["-p", "hello world", "-n", "24", "-t", "2"]));
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            stdout.starts_with("hello world") && stdout.len() > "hello world".len() + 4,
            "{stdout:?}"
        );
        texts.push(stdout);
    }
    assert!(
        texts.iter().all(|t| *t == texts[0]),
        "greedy text depends on the kernel: {texts:#?}"
    );
}

#[test]
fn unsupported_rope_scaling_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yarn.gguf");
    write_tiny_llama(&path, "yarn");
    let out = run(smelt(dir.path())
        .args(["run"])
        .arg(&path)
        .args(["-p", "hello", "-n", "2"]));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("RoPE scaling \"yarn\" is not supported"),
        "{}",
        text(&out)
    );
}
