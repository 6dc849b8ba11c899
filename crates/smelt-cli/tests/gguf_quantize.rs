//! `smelt gguf quantize` on the real SmolLM2: requantizing needs the explicit flag, F16 → Q4_K_M
//! follows llama.cpp's mix rules (checked tensor by tensor), and the result validates.

mod common;

use common::{run, shared_home, smelt, text};
use smelt_gguf::{GgmlType, GgufFile};

#[test]
fn q4_k_m_mix_of_smollm2_follows_llama_cpp_rules() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("f16.gguf");
    let refused = run(smelt(&home)
        .args(["gguf", "quantize", "smollm2-135m"])
        .arg(&f16)
        .arg("F16"));
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--allow-requantize"));
    assert!(!f16.exists(), "nothing may be written on failure");
    // The calibrated path too, before its long run (it used to calibrate first, then
    // requantize the Q4_1 layer matrices without asking).
    let refused = run(smelt(&home)
        .args(["gguf", "quantize", "smollm2-135m"])
        .arg(dir.path().join("gptq.gguf"))
        .args(["Q4_K_M", "--method", "gptq"]));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--allow-requantize"),
        "{}",
        text(&refused)
    );
    assert!(
        !text(&refused).contains("calibration:"),
        "{}",
        text(&refused)
    );

    let out = run(smelt(&home)
        .env("SMELT_RUNS", dir.path().join("runs"))
        .args(["gguf", "quantize", "smollm2-135m"])
        .arg(&f16)
        .args(["F16", "--allow-requantize"]));
    assert!(out.status.success(), "{}", text(&out));
    let q = dir.path().join("q4km.gguf");
    let out = run(smelt(&home)
        .env("SMELT_RUNS", dir.path().join("runs"))
        .args(["gguf", "quantize"])
        .arg(&f16)
        .arg(&q)
        .arg("Q4_K_M"));
    assert!(out.status.success(), "{}", text(&out));

    let f = GgufFile::open(&q).unwrap();
    assert_eq!(
        f.header.get("general.file_type").and_then(|v| v.as_u64()),
        Some(15)
    );
    // 30 layers: use_more_bits picks 14 of them (0-2, 5, 8, ..., 23, 26-29).
    let more_bits = |i: usize| !(3..26).contains(&i) || (i - 3) % 3 == 2;
    for t in &f.header.tensors {
        let layer = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        let want = if t.dims.len() < 2 || t.name.contains("_norm") {
            GgmlType::F32
        } else if t.name == "token_embd.weight" {
            GgmlType::Q8_0 // tied output rule: Q6_K, but 576 columns do not fit 256-blocks
        } else if t.name.contains("ffn_down") {
            // 1536 columns fit 256-blocks: Q6_K on more-bits layers, else Q4_K.
            if more_bits(layer.unwrap()) {
                GgmlType::Q6_K
            } else {
                GgmlType::Q4_K
            }
        } else if t.name.contains("attn_v") {
            if more_bits(layer.unwrap()) {
                GgmlType::Q8_0
            } else {
                GgmlType::Q5_0
            }
        } else {
            GgmlType::Q5_0 // Q4_K falls back to Q5_0 on 576-column rows
        };
        assert_eq!(t.ggml_type, want, "{}", t.name);
    }
    let v = run(smelt(&home).args(["gguf", "validate"]).arg(&q));
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn smollm2_round_trips_through_hugging_face_format() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let out = run(smelt(&home)
        .args(["gguf", "export-hf", "smollm2-135m"])
        .arg(&hf));
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(hf.join(f).is_file(), "{f} missing");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_key_value_heads"], 3);
    assert_eq!(config["tie_word_embeddings"], true);
    let back = dir.path().join("back.gguf");
    let out = run(smelt(&home)
        .args(["gguf", "convert"])
        .arg(&hf)
        .arg(&back)
        .args(["--outtype", "f16"]));
    assert!(out.status.success(), "{}", text(&out));

    let src_path = home.join("assets/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (a, b) = (
        GgufFile::open(&src_path).unwrap(),
        GgufFile::open(&back).unwrap(),
    );
    // Metadata: identical except the file type (Q4_1 -> F16).
    let meta = |f: &GgufFile| -> std::collections::BTreeMap<String, smelt_gguf::MetaValue> {
        f.header
            .metadata
            .iter()
            .filter(|(k, _)| k != "general.file_type")
            .cloned()
            .collect()
    };
    assert_eq!(meta(&a), meta(&b));
    // Tensors: same names, shapes, and values within F16 rounding (norms exact, in F32).
    assert_eq!(a.header.tensors.len(), b.header.tensors.len());
    for ta in &a.header.tensors {
        let tb = b.header.tensors.iter().find(|t| t.name == ta.name).unwrap();
        assert_eq!(ta.dims, tb.dims, "{}", ta.name);
        let n = ta.elements() as usize;
        let xa = smelt_gguf::blocks::dequantize(ta.ggml_type, a.tensor_data(ta), n).unwrap();
        let xb = smelt_gguf::blocks::dequantize(tb.ggml_type, b.tensor_data(tb), n).unwrap();
        for (i, (p, q)) in xa.iter().zip(&xb).enumerate() {
            let want = if tb.ggml_type == GgmlType::F32 {
                *p
            } else {
                half::f16::from_f32(*p).to_f32()
            };
            assert_eq!(want.to_bits(), q.to_bits(), "{} [{i}]: {p} -> {q}", ta.name);
        }
    }
    // Llama 3's and Qwen's tokenizer.json list their special tokens only under added_tokens:
    // with SmolLM2's taken out of model.vocab the same tokens and types come back.
    let edit = |name: &str, file: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&hf).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(file)).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(d.join(file), serde_json::to_vec(&v).unwrap()).unwrap();
        d
    };
    let specials_apart = edit("hf-added", "tokenizer.json", &|v| {
        let added: Vec<String> = v["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["content"].as_str().unwrap().to_string())
            .collect();
        assert!(added.len() > 10, "{added:?}");
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        for a in &added {
            assert!(vocab.remove(a).is_some(), "{a}");
        }
    });
    let apart = dir.path().join("apart.gguf");
    let out = run(smelt(&home)
        .args(["gguf", "convert"])
        .arg(&specials_apart)
        .arg(&apart));
    assert!(out.status.success(), "{}", text(&out));
    let c = GgufFile::open(&apart).unwrap();
    for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type"] {
        assert_eq!(c.header.get(key), b.header.get(key), "{key}");
    }
    // Hermes 2 Pro's list of named templates keeps its `tool_use` one; Llama 3.1's `llama3`
    // RoPE scaling becomes llama.cpp's rope_freqs.weight (factors 1 for short wavelengths, 8
    // for long ones, blended between: `hf::rope` checks the formula).
    let named = edit("hf-named", "tokenizer_config.json", &|v| {
        let t = v["chat_template"].clone();
        v["chat_template"] = serde_json::json!([{"name": "default", "template": t},
                                                {"name": "tool_use", "template": "TOOLS"}]);
    });
    let scaled = dir.path().join("hf-llama3");
    std::fs::rename(&named, &scaled).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scaled.join("config.json")).unwrap()).unwrap();
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 256});
    std::fs::write(scaled.join("config.json"), config.to_string()).unwrap();
    let llama3 = dir.path().join("llama3.gguf");
    let out = run(smelt(&home)
        .args(["gguf", "convert"])
        .arg(&scaled)
        .arg(&llama3));
    assert!(out.status.success(), "{}", text(&out));
    let c = GgufFile::open(&llama3).unwrap();
    let s = |k: &str| c.header.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    assert_eq!(
        s("tokenizer.chat_template"),
        b.header
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    );
    assert_eq!(
        s("tokenizer.chat_template.tool_use").as_deref(),
        Some("TOOLS")
    );
    let t = c
        .header
        .tensors
        .iter()
        .find(|t| t.name == "rope_freqs.weight")
        .unwrap();
    assert_eq!((t.ggml_type, t.dims.clone()), (GgmlType::F32, vec![32]));
    let f = smelt_gguf::blocks::dequantize(t.ggml_type, c.tensor_data(t), 32).unwrap();
    assert_eq!((f[0], f[31]), (1.0, 8.0));
    assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "{f:?}");
    // smelt runs it (the factors slow the rotation: tests/llamacpp_golden.rs holds them to
    // llama.cpp's logits).
    let out = run(smelt(&home)
        .args(["run"])
        .arg(&llama3)
        .args(["-p", "Hello", "-n", "2"]));
    assert!(out.status.success(), "{}", text(&out));

    // Bad configurations are errors that say why, not panics (exit 1, not 101).
    for (name, file, why, f) in [
        (
            "hf-heads",
            "config.json",
            "num_attention_heads 0",
            &(|v: &mut serde_json::Value| v["num_attention_heads"] = 0.into())
                as &dyn Fn(&mut serde_json::Value),
        ),
        (
            "hf-id",
            "tokenizer.json",
            "at most 16777216",
            &|v: &mut serde_json::Value| v["model"]["vocab"]["hello"] = u64::MAX.into(),
        ),
        (
            "hf-yarn",
            "config.json",
            "rope_scaling type \"yarn\" is not supported",
            &|v: &mut serde_json::Value| {
                v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})
            },
        ),
    ] {
        let d = edit(name, file, f);
        let out = run(smelt(&home)
            .args(["gguf", "convert"])
            .arg(&d)
            .arg(dir.path().join(format!("{name}.gguf"))));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(text(&out).contains(why), "{name}: {}", text(&out));
    }
}
