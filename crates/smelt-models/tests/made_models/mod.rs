//! Models the integration tests build: SmolLM2 as shipped and requantized, moved to Qwen 2,
//! Qwen 3 and Phi-3, and small made-up Qwen 3, Phi-3, Gemma 2 and 3, Qwen 3 MoE and
//! Mixtral-style models. `benches/llamacpp_golden.sh` builds
//! the same files for llama.cpp (its `as_arch` and `qwen3_wide`), from the same formulas.
#![allow(dead_code)]

use std::sync::Arc;

use smelt_gguf::mix::FileType;
use smelt_gguf::quantize::{QuantizeOptions, quantize_model};
use smelt_gguf::{GgmlType, GgufFile, GgufWriter};

/// SmolLM2-135M-Instruct as shipped (Q4_1), from the `smollm2-135m` asset.
pub fn shipped_smollm2() -> GgufFile {
    let path = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure_gguf(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    GgufFile::open(path).unwrap()
}

/// The shipped model requantized to `ftype` by smelt's quantizer, to be written.
pub fn requantized(ftype: FileType) -> GgufWriter {
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
pub fn written(writer: GgufWriter) -> Arc<GgufFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    writer.write(&path).unwrap();
    // The mapping outlives the directory's entry.
    Arc::new(GgufFile::open(path).unwrap())
}

/// The Q8_0 model moved to `arch` (its `llama.*` keys renamed) with the tensors `extra` adds
/// to each layer (called with the layer, head width, query width and key/value width), as
/// `benches/llamacpp_golden.sh`'s `as_arch` writes it.
pub fn as_arch(
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

/// `file` with one tensor's dims replaced, or the tensor left out (`None`).
pub fn edited(file: &GgufFile, name: &str, dims: Option<Vec<u64>>) -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    for (k, v) in &file.header.metadata {
        w.meta(k, v.clone()).unwrap();
    }
    for t in &file.header.tensors {
        if t.name != name {
            w.tensor(&t.name, &t.dims, t.ggml_type, file.tensor_data(t).to_vec())
                .unwrap();
        } else if let Some(d) = &dims {
            w.tensor(&t.name, d, t.ggml_type, file.tensor_data(t).to_vec())
                .unwrap();
        }
    }
    written(w)
}

/// The script's integer pattern: element i of extra tensor `which` in layer `layer`, an
/// integer in [-modulus/2, modulus/2] divided by `scale` (a power of two: exact in f32).
pub fn pattern(
    layer: usize,
    which: usize,
    n: usize,
    modulus: usize,
    scale: f32,
    base: f32,
) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let k = ((i * 7919 + layer * 104_729 + which * 31_337) % modulus) as i64
                - (modulus / 2) as i64;
            (base + k as f32 / scale).to_le_bytes()
        })
        .collect()
}

/// Qwen 2: the Q8_0 model with q/k/v biases from [`pattern`] (modulus 2001, over 4096).
pub fn qwen2() -> Arc<GgufFile> {
    as_arch("qwen2", |w, l, _, q, kv| {
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
    })
}

/// Qwen 3: the Q8_0 model with per-head q/k RMSNorm weights from [`pattern`] (1 + (modulus
/// 257) over 1024).
pub fn qwen3() -> Arc<GgufFile> {
    as_arch("qwen3", |w, l, hd, _, _| {
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
    })
}

/// splitmix64 of `(t << 32) + i`, as `benches/llamacpp_golden.sh`'s `qwen3_wide` computes it.
pub fn mix(t: u64, i: u64) -> u64 {
    let mut z = (t << 32)
        .wrapping_add(i)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small Qwen 3 whose heads (4 of 32) are wider than width / heads (64 / 4), as real Qwen 3
/// models' are: the script's made-up model (2 layers, SmolLM2's vocabulary), F32 weights from
/// [`mix`], quantized to Q8_0 by smelt's quantizer as the script quantizes it.
pub fn wide_qwen3() -> Arc<GgufFile> {
    made_up("qwen3", (2, 64, 4, 2, 32, 128))
}

/// A small Phi-3 made up the same way, with heads of 96 (1/√96 is not a power of two, so
/// scaling the queries first rounds otherwise than scaling q·k), q/k/v and gate/up stacked.
pub fn wide_phi3() -> Arc<GgufFile> {
    made_up("phi3", (2, 192, 2, 1, 96, 256))
}

/// [`wide_phi3`] with LongRoPE as Phi-3.5's GGUF files carry it: an attention factor of
/// 1.1902381 on every cos and sin, an original context of 64 positions, and two sets of 48
/// frequency factors, long 1 + i/2 and short 1 + i/64 (the script's `phi3_longrope`).
pub fn longrope_phi3() -> Arc<GgufFile> {
    made_up("phi3_longrope", (2, 192, 2, 1, 96, 256))
}

/// A small Gemma 3 made up the same way (3 layers, width 128, 2 heads and 1 KV head of 256,
/// q/k norms and post-norms, GeGLU): a sliding window of 8 on layers 0 and 2 (pattern 2, the
/// default local base), layer 1 global with base 1e6 scaled linearly by 8, final logits
/// soft-capped at 30 (the script's `gemma3`).
pub fn gemma3() -> Arc<GgufFile> {
    made_up("gemma3", (3, 128, 2, 1, 256, 256))
}

/// A small Gemma 2 made up the same way: Gemma 3's shapes without the q/k norms, with llama.cpp's
/// Gemma 2 defaults (layers 0 and 2 local, one RoPE for all layers, final logits capped at 30),
/// RoPE base 1e6 scaled linearly by 8, a window of 8 and attention scores capped at 5 (the
/// script's `gemma2`).
pub fn gemma2() -> Arc<GgufFile> {
    made_up("gemma2", (3, 128, 2, 1, 256, 256))
}

/// A small Qwen 3 MoE made up the same way (2 layers, width 128, 4 query heads and 2 KV heads
/// of 32, q/k norms): 20 experts of width 64 per layer, 4 per token (the router's softmax
/// takes 16 values through ggml's vectorized e^x and 4 through `expf`); the router stays F32,
/// as llama.cpp's quantizer leaves `ffn_gate_inp` (the script's `qwen3moe`).
pub fn qwen3moe() -> Arc<GgufFile> {
    made_up_moe(
        "qwen3moe",
        (2, 128, 4, 2, 32, 64),
        Some((20, 4)),
        FileType::Q8_0,
    )
}

/// A small Qwen 3 MoE with rows of 256 (2 layers, 4 query heads and 2 KV heads of 64, 16
/// experts of width 256, 4 per token) quantized to Q4_K_M: Q4_K experts, which llama.cpp
/// repacks, Q6_K down experts and V where its rule says (the script's `qwen3moe_q4_k_m`).
pub fn qwen3moe_q4_k_m() -> Arc<GgufFile> {
    made_up_moe(
        "qwen3moe",
        (2, 256, 4, 2, 64, 256),
        Some((16, 4)),
        FileType::Q4_K_M,
    )
}

/// A small Qwen 2 MoE made up the same way (Qwen 3 MoE's shapes without q/k norms): 12
/// experts of width 64, 4 per token, weights not renormalized, and a shared expert of width 96
/// behind a sigmoid gate (the script's `qwen2moe`).
pub fn qwen2moe() -> Arc<GgufFile> {
    made_up_moe(
        "qwen2moe",
        (2, 128, 4, 2, 32, 64),
        Some((12, 4)),
        FileType::Q8_0,
    )
}

/// A small Mixtral-style model made up the same way: architecture `llama` (adjacent-pair RoPE,
/// no q/k norms) with 8 experts of width 64 per layer, 2 per token, F32 router (the script's
/// `mixtral`).
pub fn mixtral() -> Arc<GgufFile> {
    made_up_moe(
        "llama",
        (2, 128, 4, 2, 32, 64),
        Some((8, 2)),
        FileType::Q8_0,
    )
}

/// The script's `made_up`: architecture `arch` with (layers, width, heads, KV heads, head
/// width, feed-forward width).
fn made_up(arch: &str, dims: (usize, usize, usize, usize, usize, usize)) -> Arc<GgufFile> {
    made_up_moe(arch, dims, None, FileType::Q8_0)
}

/// [`made_up`] with (experts, experts per token) in place of the dense feed-forward, each
/// expert as wide as the feed-forward, quantized to `ftype`.
fn made_up_moe(
    arch: &str,
    dims: (usize, usize, usize, usize, usize, usize),
    experts: Option<(usize, usize)>,
    ftype: FileType,
) -> Arc<GgufFile> {
    use smelt_gguf::MetaValue;
    let shipped = shipped_smollm2();
    let (l_n, e, h, kv, hd, ff) = dims;
    let (arch, long_rope) = match arch {
        "phi3_longrope" => ("phi3", true),
        other => (other, false),
    };
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String(arch.into()))
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
        w.meta(&format!("{arch}.{k}"), MetaValue::U32(v as u32))
            .unwrap();
    }
    w.meta(&format!("{arch}.rope.freq_base"), MetaValue::F32(1e6))
        .unwrap();
    // Qwen 2 MoE's shared expert width.
    let sff = if arch == "qwen2moe" { 96 } else { 0 };
    if let Some((count, used)) = experts {
        for (k, v) in [
            ("expert_count", count),
            ("expert_used_count", used),
            ("expert_feed_forward_length", ff),
            ("expert_shared_feed_forward_length", sff),
        ] {
            let arch_only = match k {
                "expert_feed_forward_length" => matches!(arch, "qwen3moe" | "qwen2moe"),
                "expert_shared_feed_forward_length" => sff > 0,
                _ => true,
            };
            if arch_only {
                w.meta(&format!("{arch}.{k}"), MetaValue::U32(v as u32))
                    .unwrap();
            }
        }
    }
    w.meta(
        &format!("{arch}.attention.layer_norm_rms_epsilon"),
        MetaValue::F32(1e-6),
    )
    .unwrap();
    if arch == "gemma3" {
        for (k, v) in [
            ("attention.sliding_window", MetaValue::U32(8)),
            ("attention.sliding_window_pattern", MetaValue::U32(2)),
            ("rope.scaling.type", MetaValue::String("linear".into())),
            ("rope.scaling.factor", MetaValue::F32(8.0)),
            ("final_logit_softcapping", MetaValue::F32(30.0)),
        ] {
            w.meta(&format!("{arch}.{k}"), v).unwrap();
        }
    }
    if arch == "gemma2" {
        for (k, v) in [
            ("attention.sliding_window", MetaValue::U32(8)),
            ("attn_logit_softcapping", MetaValue::F32(5.0)),
            ("rope.scaling.type", MetaValue::String("linear".into())),
            ("rope.scaling.factor", MetaValue::F32(8.0)),
        ] {
            w.meta(&format!("{arch}.{k}"), v).unwrap();
        }
    }
    if long_rope {
        w.meta(
            &format!("{arch}.rope.scaling.attn_factor"),
            MetaValue::F32(1.190_238_1),
        )
        .unwrap();
        w.meta(
            &format!("{arch}.rope.scaling.original_context_length"),
            MetaValue::U32(64),
        )
        .unwrap();
    }
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
        let (q, k, v) = (
            matrix(t + 1, h * hd, e),
            matrix(t + 2, kv * hd, e),
            matrix(t + 3, kv * hd, e),
        );
        // Experts: matrix t + 8, t + 9, t + 10 stacked (count · rows, cols), stored as
        // (cols, rows, count); the router is t + 13.
        let n_x = experts.map_or(1, |x| x.0);
        let (gate, up) = (matrix(t + 8, n_x * ff, e), matrix(t + 9, n_x * ff, e));
        tensors.push((name("attn_norm"), norm(t, e)));
        if arch == "phi3" {
            // Rows stacked (row-major f32: the byte strings one after another).
            let stack = |parts: &[&(Vec<u64>, Vec<u8>)]| {
                let rows = parts.iter().map(|p| p.0[1]).sum();
                let bytes = parts.iter().flat_map(|p| p.1.clone()).collect();
                (vec![e as u64, rows], bytes)
            };
            tensors.push((name("attn_qkv"), stack(&[&q, &k, &v])));
            tensors.push((name("ffn_up"), stack(&[&gate, &up])));
        } else {
            tensors.extend([
                (name("attn_q"), q),
                (name("attn_k"), k),
                (name("attn_v"), v),
            ]);
            if matches!(arch, "qwen3" | "qwen3moe" | "gemma3") {
                tensors.push((name("attn_q_norm"), norm(t + 5, hd)));
                tensors.push((name("attn_k_norm"), norm(t + 6, hd)));
            }
            if experts.is_some() {
                let dims3 = |m: (Vec<u64>, Vec<u8>), rows: usize| {
                    (vec![m.0[0], rows as u64, n_x as u64], m.1)
                };
                tensors.extend([
                    (name("ffn_gate_exps"), dims3(gate, ff)),
                    (name("ffn_up_exps"), dims3(up, ff)),
                    (name("ffn_down_exps"), dims3(matrix(t + 10, n_x * e, ff), e)),
                    (name("ffn_gate_inp"), matrix(t + 13, n_x, e)),
                ]);
                if sff > 0 {
                    let (_, gate_inp) = matrix(t + 12, 1, e);
                    tensors.extend([
                        (name("ffn_gate_shexp"), matrix(t + 5, sff, e)),
                        (name("ffn_up_shexp"), matrix(t + 6, sff, e)),
                        (name("ffn_down_shexp"), matrix(t + 11, e, sff)),
                        (name("ffn_gate_inp_shexp"), (vec![e as u64], gate_inp)),
                    ]);
                }
            } else {
                tensors.extend([(name("ffn_gate"), gate), (name("ffn_up"), up)]);
            }
        }
        if arch.starts_with("gemma") {
            tensors.push((name("post_attention_norm"), norm(t + 11, e)));
            tensors.push((name("post_ffw_norm"), norm(t + 12, e)));
        }
        tensors.extend([
            (name("attn_output"), matrix(t + 4, e, h * hd)),
            (name("ffn_norm"), norm(t + 7, e)),
        ]);
        if experts.is_none() {
            tensors.push((name("ffn_down"), matrix(t + 10, e, ff)));
        }
    }
    // llama.cpp's Qwen 2 MoE needs its own output matrix (tensor 2 + 16 L).
    if arch == "qwen2moe" {
        tensors.push((
            "output.weight".into(),
            matrix(2 + 16 * l_n as u64, n_vocab, e),
        ));
    }
    if long_rope {
        let factors = |step: f32| -> (Vec<u64>, Vec<u8>) {
            let data = (0..hd / 2)
                .flat_map(|i| (1.0 + i as f32 * step).to_le_bytes())
                .collect();
            (vec![hd as u64 / 2], data)
        };
        tensors.push(("rope_factors_long.weight".into(), factors(0.5)));
        tensors.push(("rope_factors_short.weight".into(), factors(1.0 / 64.0)));
    }
    for (name, (dims, data)) in tensors {
        w.tensor(&name, &dims, GgmlType::F32, data).unwrap();
    }
    let f32_model = written(w);
    let opts = QuantizeOptions {
        ftype,
        allow_requantize: false,
        threads: 2,
    };
    written(quantize_model(&f32_model, opts, |_, _| {}).unwrap().0)
}

/// Phi-3's layout: the Q8_0 model's q/k/v rows stacked into one `attn_qkv` matrix and
/// gate/up into one `ffn_up` (gate first), the blocks copied as they are, keys `phi3.*`
/// (`benches/llamacpp_golden.sh`'s `as_phi3`).
pub fn phi3() -> Arc<GgufFile> {
    let q8 = written(requantized(FileType::Q8_0));
    let h = &q8.header;
    let mut w = GgufWriter::new();
    for (k, v) in &h.metadata {
        let k = match k.strip_prefix("llama.") {
            Some(rest) => format!("phi3.{rest}"),
            None => k.clone(),
        };
        let v = match k.as_str() {
            "general.architecture" => smelt_gguf::MetaValue::String("phi3".into()),
            _ => v.clone(),
        };
        w.meta(&k, v).unwrap();
    }
    let find = |name: &str| h.tensors.iter().find(|t| t.name == name).unwrap();
    for t in &h.tensors {
        let fused = t.name.strip_prefix("blk.").and_then(|rest| {
            let (l, suffix) = rest.split_once('.')?;
            match suffix {
                "attn_q.weight" => Some((l, "attn_qkv", &["attn_q", "attn_k", "attn_v"][..])),
                "ffn_gate.weight" => Some((l, "ffn_up", &["ffn_gate", "ffn_up"][..])),
                _ => None,
            }
        });
        if let Some((l, name, members)) = fused {
            let parts: Vec<_> = members
                .iter()
                .map(|m| find(&format!("blk.{l}.{m}.weight")))
                .collect();
            assert!(
                parts.iter().all(|p| p.ggml_type == t.ggml_type),
                "one block type"
            );
            let rows: u64 = parts.iter().map(|p| p.dims[1]).sum();
            let bytes = parts
                .iter()
                .flat_map(|p| q8.tensor_data(p).to_vec())
                .collect();
            w.tensor(
                &format!("blk.{l}.{name}.weight"),
                &[t.dims[0], rows],
                t.ggml_type,
                bytes,
            )
            .unwrap();
        } else if !["attn_k.weight", "attn_v.weight", "ffn_up.weight"]
            .iter()
            .any(|s| t.name.ends_with(s))
        {
            w.tensor(&t.name, &t.dims, t.ggml_type, q8.tensor_data(t).to_vec())
                .unwrap();
        }
    }
    written(w)
}

/// Greedy decoding of every prompt for `steps` steps through a paged pool (each sequence in 3
/// blocks of 16, scattered over the pool), the sequences either `together` in one
/// `forward_seqs` pass per step or each in its own: every step's logits per sequence.
pub fn paged_greedy(
    model: &smelt_models::llama::Llama,
    prompts: &[Vec<u32>],
    steps: usize,
    together: bool,
) -> Vec<Vec<Vec<f32>>> {
    use smelt_models::kv_cache::{BlockTable, KvPool};
    use smelt_models::llama::{Logits, SeqInput};
    let c = &model.config;
    let block = 16;
    let n_blocks = 3 * prompts.len() + 2;
    let mut order: Vec<u32> = (0..n_blocks as u32).collect();
    order.reverse();
    order.swap(1, 5);
    let tables: Vec<Vec<u32>> = (0..prompts.len())
        .map(|i| order[3 * i..3 * i + 3].to_vec())
        .collect();
    let kv_dim = c.n_head_kv * c.head_dim();
    let mut pool = KvPool::new(c.n_layer, n_blocks, block, kv_dim);
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let mut pos: Vec<usize> = vec![0; prompts.len()];
    let mut logits: Vec<Vec<Vec<f32>>> = vec![vec![]; prompts.len()];
    for _ in 0..steps {
        let inputs: Vec<SeqInput> = (0..seqs.len())
            .map(|i| SeqInput {
                tokens: &seqs[i][pos[i]..],
                pos0: pos[i],
                kv: BlockTable {
                    table: &tables[i],
                    block,
                },
                want: Logits::Last,
            })
            .collect();
        let out: Vec<Vec<f32>> = if together {
            model.forward_seqs(&inputs, &mut pool).unwrap()
        } else {
            inputs
                .iter()
                .map(|s| model.forward_seqs(&[*s], &mut pool).unwrap().remove(0))
                .collect()
        };
        for (i, l) in out.into_iter().enumerate() {
            pos[i] = seqs[i].len();
            seqs[i].push(smelt_models::sampler::argmax(&l));
            logits[i].push(l);
        }
    }
    logits
}

/// Asserts that [`paged_greedy`] gives the same logits, bit for bit, batched and alone.
pub fn assert_batched_equals_alone(model: &smelt_models::llama::Llama, prompts: &[Vec<u32>]) {
    let (alone, together) = (
        paged_greedy(model, prompts, 6, false),
        paged_greedy(model, prompts, 6, true),
    );
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        for (step, (x, y)) in a.iter().zip(b).enumerate() {
            let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "sequence {i} step {step}: batched logits differ");
        }
    }
}
