//! RTN, GPTQ and AWQ over a whole (tiny, random, grouped-query) llama model: at 8 bits every
//! method leaves the logits close to the float model's (so AWQ's folded scales cancel exactly
//! in float), the 4-bit symmetric result packs into Q4_0 blocks that load back as the same
//! weights and norms, and the Hugging Face GPTQ export writes its tensors.

use std::path::Path;
use std::sync::Arc;

use smelt_compress::llm::grid::WeightGrid;
use smelt_compress::llm::sequential::{Capture, calibrate_sequential};
use smelt_compress::llm::{CalibInputs, Method, PtqConfig, quantize_llama};
use smelt_gguf::{GgmlType, GgufFile, GgufWriter, MetaType, MetaValue};
use smelt_kernels::QMatrix;
use smelt_models::llama::{Linear, Llama, Logits, ModelError};
use smelt_quant::rng::Rng;

const VOCAB: usize = 90;

/// A tiny random model of architecture `arch`: `llama`, `qwen2` (with q/k/v biases) or
/// `gemma3` (q/k norms, post-norms, GeGLU, a sliding window of 16 on layer 0) or `gemma2`
/// (post-norms, GeGLU, a window of 16 on layer 0, soft-capped scores and logits).
fn write_tiny_llama(path: &Path, seed: u64, arch: &str) {
    let (e, ff, layers) = (64u64, 128u64, 2u32);
    let mut w = GgufWriter::new();
    let key = |k: &str| format!("{arch}.{k}");
    for (k, v) in [
        (
            "general.architecture".to_string(),
            MetaValue::String(arch.into()),
        ),
        (key("block_count"), MetaValue::U32(layers)),
        (key("context_length"), MetaValue::U32(128)),
        (key("embedding_length"), MetaValue::U32(e as u32)),
        (key("feed_forward_length"), MetaValue::U32(ff as u32)),
        (key("attention.head_count"), MetaValue::U32(4)),
        (key("attention.head_count_kv"), MetaValue::U32(2)),
        (key("vocab_size"), MetaValue::U32(VOCAB as u32)),
        (
            "tokenizer.ggml.model".into(),
            MetaValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            MetaValue::Array(
                MetaType::String,
                (0..VOCAB)
                    .map(|i| MetaValue::String(char::from(b'!' + i as u8).to_string()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            MetaValue::Array(MetaType::String, vec![]),
        ),
    ] {
        w.meta(&k, v).unwrap();
    }
    if arch.starts_with("gemma") {
        w.meta(&key("attention.sliding_window"), MetaValue::U32(16))
            .unwrap();
        w.meta(&key("attention.sliding_window_pattern"), MetaValue::U32(2))
            .unwrap();
    }
    let mut rng = Rng::new(seed);
    let mut t = |w: &mut GgufWriter, name: &str, dims: &[u64], scale: f32, offset: f32| {
        let n = dims.iter().product::<u64>() as usize;
        // A few input channels much larger than the rest, as in real models.
        let x: Vec<f32> = rng
            .normals(n)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let big = if dims.len() == 1 && i % 17 == 3 {
                    6.0
                } else {
                    1.0
                };
                offset + v * scale * big
            })
            .collect();
        let bytes = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.tensor(name, dims, GgmlType::F32, bytes).unwrap();
    };
    let kv = e / 2;
    t(&mut w, "token_embd.weight", &[e, VOCAB as u64], 1.0, 0.0);
    t(&mut w, "output_norm.weight", &[e], 0.1, 1.0);
    for l in 0..layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        t(&mut w, &n("attn_norm"), &[e], 0.2, 1.0);
        t(&mut w, &n("attn_q"), &[e, e], 0.15, 0.0);
        t(&mut w, &n("attn_k"), &[e, kv], 0.15, 0.0);
        t(&mut w, &n("attn_v"), &[e, kv], 0.15, 0.0);
        t(&mut w, &n("attn_output"), &[e, e], 0.15, 0.0);
        t(&mut w, &n("ffn_norm"), &[e], 0.2, 1.0);
        t(&mut w, &n("ffn_gate"), &[e, ff], 0.15, 0.0);
        t(&mut w, &n("ffn_up"), &[e, ff], 0.15, 0.0);
        t(&mut w, &n("ffn_down"), &[ff, e], 0.1, 0.0);
        if arch == "qwen2" {
            for (name, rows) in [("attn_q", e), ("attn_k", kv), ("attn_v", kv)] {
                t(&mut w, &format!("blk.{l}.{name}.bias"), &[rows], 0.5, 0.0);
            }
        }
        if arch == "gemma3" {
            // Heads of 64 / 4.
            t(&mut w, &n("attn_q_norm"), &[16], 0.2, 1.0);
            t(&mut w, &n("attn_k_norm"), &[16], 0.2, 1.0);
        }
        if arch.starts_with("gemma") {
            t(&mut w, &n("post_attention_norm"), &[e], 0.2, 1.0);
            t(&mut w, &n("post_ffw_norm"), &[e], 0.2, 1.0);
        }
    }
    w.write(path).unwrap();
}

fn logits(model: &Llama, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(tokens.len());
    model
        .forward_batch(tokens, &mut cache, Logits::All)
        .unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// A fresh seed (printed), a temporary directory holding a tiny model of architecture `arch`
/// written with it, and the mapped file.
fn tiny(arch: &str) -> (u64, tempfile::TempDir, Arc<GgufFile>) {
    let seed = smelt_quant::rng::test_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, seed, arch);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    (seed, dir, file)
}

/// With `float_inputs` every layer is calibrated on the float model's hidden states, whatever
/// the caller did to the layers before; without it, on what the changed layers produce.
#[test]
fn float_inputs_calibrate_every_layer_on_the_float_model() {
    let (seed, _dir, file) = tiny("llama");
    let mut rng = Rng::new(seed ^ 2);
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|_| (0..24).map(|_| rng.below(VOCAB) as u32).collect())
        .collect();
    // Per layer, the first window's hidden states entering it; `wreck` zeroes each layer's
    // down projection once its statistics are taken, as a (very bad) quantizer would.
    let entering = |float_inputs: bool, wreck: bool| {
        let mut m = Llama::load(&file).unwrap();
        m.dequantize_to_f32().unwrap();
        let capture = Capture {
            keep_windows: 1,
            float_inputs,
            ..Capture::default()
        };
        let mut seen = Vec::new();
        calibrate_sequential(
            &mut m,
            &windows,
            capture,
            |model, l, stats| -> Result<(), ModelError> {
                seen.push(stats.windows[0].clone());
                if wreck {
                    let d = model.linear(l, Linear::Down);
                    let zero =
                        QMatrix::from_f32(d.rows, d.cols, &vec![0.0; d.rows * d.cols]).unwrap();
                    model.set_linear(l, Linear::Down, zero)?;
                }
                Ok(())
            },
            |_| {},
        )
        .unwrap();
        seen
    };
    let float = entering(false, false);
    assert_eq!(
        entering(true, true),
        float,
        "float inputs must not see the wrecked layers"
    );
    let quantized = entering(false, true);
    assert_eq!(quantized[0], float[0]);
    for l in 1..float.len() {
        assert_ne!(
            quantized[l], float[l],
            "layer {l} should see the wrecked layers before it"
        );
    }
}

/// Every method on llama and on Qwen 2, whose q/k/v biases AWQ's v → o step must scale with
/// v (and the packed file must carry them as scaled).
#[test]
fn every_method_runs_end_to_end_and_packs() {
    every_method_end_to_end("llama");
    every_method_end_to_end("qwen2");
}

/// Gemma 2 and 3: AWQ's feed-forward search runs GELU, the post-norms, sliding window and
/// soft caps ride along.
#[test]
fn every_method_runs_end_to_end_on_gemma() {
    every_method_end_to_end("gemma3");
    every_method_end_to_end("gemma2");
}

fn every_method_end_to_end(arch: &str) {
    let (seed, dir, file) = tiny(arch);
    let load = || {
        let mut m = Llama::load(&file).unwrap();
        m.dequantize_to_f32().unwrap();
        m
    };
    let base = load();
    let mut rng = Rng::new(seed ^ 1);
    let windows: Vec<Vec<u32>> = (0..8)
        .map(|_| (0..48).map(|_| rng.below(VOCAB) as u32).collect())
        .collect();
    let probe: Vec<u32> = (0..40).map(|_| rng.below(VOCAB) as u32).collect();
    let want = logits(&base, &probe);
    for method in Method::ALL {
        let cfg = |bits, sym| PtqConfig {
            method,
            grid: WeightGrid {
                bits,
                sym,
                group: Some(32),
            },
            damp: 0.01,
            act_order: method == Method::Gptq,
            mse: method == Method::Gptq,
            awq_tokens: 256,
            inputs: if method == Method::Awq {
                CalibInputs::Float
            } else {
                CalibInputs::Quantized
            },
        };
        // 8 bits: close to the float model whatever the method did to the norms.
        let mut m8 = load();
        quantize_llama(&mut m8, &cfg(8, false), &windows, |_| {}).unwrap();
        let e8 = rel_err(&logits(&m8, &probe), &want);
        eprintln!(
            "{arch} {} 8-bit: relative logit error {e8:.2e}",
            method.name()
        );
        assert!(
            e8 < 0.02,
            "{arch} {}: 8-bit logits off by {e8}",
            method.name()
        );

        // 4-bit symmetric: Q4_0 blocks that load back as the same weights and norms.
        let mut m4 = load();
        let q = quantize_llama(&mut m4, &cfg(4, true), &windows, |_| {}).unwrap();
        let e4 = rel_err(&logits(&m4, &probe), &want);
        eprintln!("{} 4-bit: relative logit error {e4:.2e}", method.name());
        assert!(e4 > e8, "{}: 4 bits should cost more than 8", method.name());
        let out = dir.path().join(format!("{}.gguf", method.name()));
        smelt_compress::llm::pack::gguf_with(&file, &m4, &q)
            .unwrap()
            .write(&out)
            .unwrap();
        let back_file = Arc::new(GgufFile::open(&out).unwrap());
        let back = Llama::load(&back_file).unwrap();
        for l in 0..2 {
            for k in Linear::ALL {
                assert_eq!(
                    back.linear(l, k).ty.ggml(),
                    GgmlType::Q4_0,
                    "{} {l} {k:?}",
                    method.name()
                );
                assert_eq!(
                    back.linear(l, k).to_f32(),
                    m4.linear(l, k).to_f32(),
                    "{} {l} {k:?}",
                    method.name()
                );
            }
            for attn in [true, false] {
                assert_eq!(back.norm(l, attn), m4.norm(l, attn));
            }
            for k in [Linear::Q, Linear::K, Linear::V] {
                assert_eq!(back.bias(l, k), m4.bias(l, k), "{arch} {l} {k:?}");
                assert_eq!(back.bias(l, k).is_some(), arch == "qwen2");
            }
        }
        let hf = dir.path().join(format!("{}-hf", method.name()));
        let exported = smelt_compress::llm::hf_gptq::export_hf_gptq(&file, &m4, &q, &hf);
        if arch.starts_with("gemma") {
            // Hugging Face export knows llama and Qwen only: a clear refusal.
            let e = exported.unwrap_err();
            assert!(e.contains(&format!("\"{arch}\"")), "{e}");
            continue;
        }
        exported.unwrap();
        let st = std::fs::read(hf.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        let qw = st.tensor("model.layers.1.mlp.down_proj.qweight").unwrap();
        assert_eq!(qw.shape(), &[128 / 8, 64]);
        assert_eq!(
            st.tensor("model.layers.0.self_attn.k_proj.g_idx")
                .unwrap()
                .shape(),
            &[64]
        );
        assert!(st.tensor("model.layers.0.self_attn.k_proj.weight").is_err());
        let qc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("quantize_config.json")).unwrap())
                .unwrap();
        assert_eq!(qc["bits"], 4);
        assert_eq!(qc["group_size"], 32);
    }
}

/// SmoothQuant: a channel made 100× larger in the attention norm (and 100× smaller in q/k/v's
/// columns, so the float model is unchanged) ruins per-token int8 activations; smoothing
/// moves it back into the weights.
#[test]
fn smoothquant_w8a8_tames_an_outlier_channel() {
    use smelt_compress::llm::smooth::{SmoothConfig, smoothquant_llama};
    use smelt_kernels::QMatrix;
    let (seed, _dir, file) = tiny("llama");
    let load = || {
        let mut m = Llama::load(&file).unwrap();
        m.dequantize_to_f32().unwrap();
        for l in 0..2 {
            // Exactly 100 (not 100× a random norm that may sit near 0), with q/k/v's columns
            // scaled by old/100 so the float model is unchanged.
            let old = std::mem::replace(&mut m.norm_mut(l, true)[5], 100.0);
            for k in [Linear::Q, Linear::K, Linear::V] {
                let w = m.linear(l, k);
                let (rows, cols) = (w.rows, w.cols);
                let mut v = w.to_f32();
                v.chunks_exact_mut(cols).for_each(|r| r[5] *= old / 100.0);
                m.set_linear(l, k, QMatrix::from_f32(rows, cols, &v).unwrap())
                    .unwrap();
            }
        }
        m
    };
    let base = load();
    let mut rng = Rng::new(seed ^ 1);
    let windows: Vec<Vec<u32>> = (0..8)
        .map(|_| (0..48).map(|_| rng.below(VOCAB) as u32).collect())
        .collect();
    let probe: Vec<u32> = (0..40).map(|_| rng.below(VOCAB) as u32).collect();
    let want = logits(&base, &probe);
    let run = |alpha, smooth_down| {
        let mut m = load();
        let cfg = SmoothConfig { alpha, smooth_down };
        let rep = smoothquant_llama(&mut m, &cfg, &windows, |_| {}).unwrap();
        assert_eq!(rep.outlier_ratio_before.len(), 2);
        assert!(m.linear(1, Linear::Down).is_w8a8());
        (rel_err(&logits(&m, &probe), &want), rep)
    };
    let (plain, rep) = run(None, false);
    let (smooth, rep_s) = run(Some(0.5), true);
    eprintln!("W8A8 relative logit error: plain {plain:.2e}, smoothed {smooth:.2e}");
    assert!(rep.outlier_ratio_before[0][0] > 20.0, "{rep:?}");
    assert!(rep_s.outlier_ratio_after[0][0] < rep_s.outlier_ratio_before[0][0] / 5.0);
    assert!(smooth < 0.06, "smoothed W8A8 logits off by {smooth}");
    assert!(
        smooth < plain / 4.0,
        "smoothing should help: {smooth} vs {plain}"
    );
    let mut m = load();
    let bad = SmoothConfig {
        alpha: Some(1.5),
        smooth_down: false,
    };
    assert!(smoothquant_llama(&mut m, &bad, &windows, |_| {}).is_err());
}
