//! smelt's logits equal llama.cpp's bit for bit on SmolLM2 as shipped (Q4_1) and in Q8_0, Q5_0,
//! Q4_0, Q4_K_M and Q5_K_S, without flash attention; and on its Q8_0 weights run as Qwen 2
//! (q/k/v biases) and Qwen 3 (per-head q/k RMSNorm), both with NeoX RoPE.
//!
//! The golden data (`data/llamacpp_{q4_1,q8_0,q5_0,q4_0,q4_k_m,q5_k_s}_greedy.json`) are
//! llama.cpp's own logits along its greedy path for three prompts, written by
//! `benches/llamacpp_golden.sh` (the source is named in each file): per step the top five
//! (token, f32 bits) and an FNV-1a hash of the whole row. The requantized models are the shipped
//! one requantized by smelt's quantizer, as there.
//!
//! The equality holds on every kernel variant: the products, attention, RoPE, SiLU and the
//! softmax all follow the operations of llama.cpp's x86 AVX-512 build (`docs/design.md`).

use std::sync::Arc;

use smelt_gguf::mix::FileType;
use smelt_gguf::quantize::{QuantizeOptions, quantize_model};
use smelt_gguf::{GgmlType, GgufFile, GgufWriter};
use smelt_models::llama::{Llama, Logits};
use smelt_models::tokenizer;

fn fnv1a64(row: &[f32]) -> u64 {
    row.iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

fn shipped_smollm2() -> GgufFile {
    let path = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure_gguf(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    GgufFile::open(path).unwrap()
}

/// The shipped model requantized to `ftype` by smelt's quantizer, to be written.
fn requantized(ftype: FileType) -> GgufWriter {
    let opts = QuantizeOptions {
        ftype,
        allow_requantize: true,
        threads: 2,
    };
    quantize_model(&shipped_smollm2(), opts, |_, _| {})
        .unwrap()
        .0
}

/// `writer`'s model, written to a temporary directory and opened.
fn written(writer: GgufWriter) -> Arc<GgufFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    writer.write(&path).unwrap();
    // The mapping outlives the directory's entry.
    Arc::new(GgufFile::open(path).unwrap())
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
    let plain: serde_json::Value =
        serde_json::from_str(include_str!("data/llamacpp_q8_0_greedy.json")).unwrap();
    for (a, b) in plain["runs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(doc["runs"].as_array().unwrap())
    {
        assert_ne!(
            a["steps"][0]["fnv1a64"], b["steps"][0]["fnv1a64"],
            "{}",
            a["prompt"]
        );
    }
}

/// The Q8_0 model moved to `arch` (its `llama.*` keys renamed) with the tensors `extra` adds
/// to each layer (called with the layer, head width, query width and key/value width), as
/// `benches/llamacpp_golden.sh`'s `as_arch` writes it.
fn as_arch(
    arch: &str,
    extra: impl Fn(&mut GgufWriter, usize, usize, usize, usize),
) -> Arc<GgufFile> {
    let shipped = shipped_smollm2();
    let h = &shipped.header;
    let meta = |k: &str| h.get(&format!("llama.{k}")).unwrap().as_u64().unwrap() as usize;
    let (n_layer, e, n_head, n_kv) = (
        meta("block_count"),
        meta("embedding_length"),
        meta("attention.head_count"),
        meta("attention.head_count_kv"),
    );
    let hd = e / n_head;
    let mut writer = requantized(FileType::Q8_0);
    writer
        .map_meta(|k, v| {
            if k == "general.architecture" {
                *v = smelt_gguf::MetaValue::String(arch.into());
            } else if let Some(rest) = k.strip_prefix("llama.") {
                *k = format!("{arch}.{rest}");
            }
        })
        .unwrap();
    for l in 0..n_layer {
        extra(&mut writer, l, hd, n_head * hd, n_kv * hd);
    }
    written(writer)
}

/// The script's integer pattern: element i of extra tensor `which` in layer `layer`, an
/// integer in [-modulus/2, modulus/2] divided by `scale` (a power of two: exact in f32).
fn pattern(layer: usize, which: usize, n: usize, modulus: usize, scale: f32, base: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let k = ((i * 7919 + layer * 104_729 + which * 31_337) % modulus) as i64
                - (modulus / 2) as i64;
            (base + k as f32 / scale).to_le_bytes()
        })
        .collect()
}

/// Qwen 2: q/k/v biases and NeoX RoPE on the Q8_0 model's weights.
#[test]
fn qwen2_logits_equal_llamacpp_bit_for_bit() {
    let file = as_arch("qwen2", |w, l, _, q, kv| {
        for (j, (name, n)) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)]
            .into_iter()
            .enumerate()
        {
            let bytes = pattern(l, j, n, 2001, 4096.0, 0.0);
            w.tensor(
                &format!("blk.{l}.{name}.bias"),
                &[n as u64],
                GgmlType::F32,
                bytes,
            )
            .unwrap();
        }
    });
    let model = Llama::load(&file).unwrap();
    assert_eq!(model.config.arch, smelt_models::llama::Arch::Qwen2);
    check(&file, include_str!("data/llamacpp_qwen2_greedy.json"));
}

/// Qwen 3: per-head q/k RMSNorm and NeoX RoPE on the Q8_0 model's weights.
#[test]
fn qwen3_logits_equal_llamacpp_bit_for_bit() {
    let file = as_arch("qwen3", |w, l, hd, _, _| {
        for (j, name) in ["attn_q_norm", "attn_k_norm"].into_iter().enumerate() {
            let bytes = pattern(l, j, hd, 257, 1024.0, 1.0);
            w.tensor(
                &format!("blk.{l}.{name}.weight"),
                &[hd as u64],
                GgmlType::F32,
                bytes,
            )
            .unwrap();
        }
    });
    check(&file, include_str!("data/llamacpp_qwen3_greedy.json"));
}

/// splitmix64 of `(t << 32) + i`, as `benches/llamacpp_golden.sh`'s `qwen3_wide` computes it.
fn mix(t: u64, i: u64) -> u64 {
    let mut z = (t << 32)
        .wrapping_add(i)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small Qwen 3 whose heads (4 of 32) are wider than width / heads (64 / 4), as real Qwen 3
/// models' are: the script's made-up model, F32 weights from [`mix`], quantized to Q8_0 by
/// smelt's quantizer as the script quantizes it.
#[test]
fn wide_headed_qwen3_logits_equal_llamacpp_bit_for_bit() {
    use smelt_gguf::MetaValue;
    let shipped = shipped_smollm2();
    let (l_n, e, h, kv, hd, ff) = (2usize, 64usize, 4usize, 2usize, 32usize, 128usize);
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("qwen3".into()))
        .unwrap();
    for (k, v) in &shipped.header.metadata {
        if k.starts_with("tokenizer.") {
            w.meta(k, v.clone()).unwrap();
        }
    }
    for (k, v) in [
        ("block_count", l_n),
        ("context_length", 256),
        ("embedding_length", e),
        ("feed_forward_length", ff),
        ("attention.head_count", h),
        ("attention.head_count_kv", kv),
        ("attention.key_length", hd),
        ("attention.value_length", hd),
        ("rope.dimension_count", hd),
    ] {
        w.meta(&format!("qwen3.{k}"), MetaValue::U32(v as u32))
            .unwrap();
    }
    w.meta("qwen3.rope.freq_base", MetaValue::F32(1e6)).unwrap();
    w.meta(
        "qwen3.attention.layer_norm_rms_epsilon",
        MetaValue::F32(1e-6),
    )
    .unwrap();
    let n_vocab = match shipped.header.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(_, items)) => items.len(),
        _ => unreachable!("SmolLM2 has a vocabulary"),
    };
    // (rows, cols) matrices: 24-bit integers less 2^23, over 2^25; norms 1 + (8 bits - 128)/1024.
    let matrix = |t: u64, rows: usize, cols: usize| -> (Vec<u64>, Vec<u8>) {
        let data = (0..(rows * cols) as u64)
            .flat_map(|i| {
                (((mix(t, i) >> 40) as i64 - (1 << 23)) as f32 / (1u64 << 25) as f32).to_le_bytes()
            })
            .collect();
        (vec![cols as u64, rows as u64], data)
    };
    let norm = |t: u64, n: usize| -> (Vec<u64>, Vec<u8>) {
        let data = (0..n as u64)
            .flat_map(|i| (1.0 + ((mix(t, i) >> 56) as i64 - 128) as f32 / 1024.0).to_le_bytes())
            .collect();
        (vec![n as u64], data)
    };
    let mut tensors = vec![
        ("token_embd.weight".to_string(), matrix(0, n_vocab, e)),
        ("output_norm.weight".to_string(), norm(1, e)),
    ];
    for l in 0..l_n {
        let t = 2 + 16 * l as u64;
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        tensors.extend([
            (name("attn_norm"), norm(t, e)),
            (name("attn_q"), matrix(t + 1, h * hd, e)),
            (name("attn_k"), matrix(t + 2, kv * hd, e)),
            (name("attn_v"), matrix(t + 3, kv * hd, e)),
            (name("attn_output"), matrix(t + 4, e, h * hd)),
            (name("attn_q_norm"), norm(t + 5, hd)),
            (name("attn_k_norm"), norm(t + 6, hd)),
            (name("ffn_norm"), norm(t + 7, e)),
            (name("ffn_gate"), matrix(t + 8, ff, e)),
            (name("ffn_up"), matrix(t + 9, ff, e)),
            (name("ffn_down"), matrix(t + 10, e, ff)),
        ]);
    }
    for (name, (dims, data)) in tensors {
        w.tensor(&name, &dims, GgmlType::F32, data).unwrap();
    }
    let f32_model = written(w);
    let opts = QuantizeOptions {
        ftype: FileType::Q8_0,
        allow_requantize: false,
        threads: 2,
    };
    let q8 = written(quantize_model(&f32_model, opts, |_, _| {}).unwrap().0);
    let c = Llama::load(&q8).unwrap().config;
    assert_eq!((c.head_dim(), c.q_dim(), c.n_embd), (32, 128, 64));
    check(&q8, include_str!("data/llamacpp_qwen3_wide_greedy.json"));
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
