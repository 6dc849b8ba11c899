//! `smelt llm quantize` on SmolLM2 with a tiny calibration set: GPTQ (act-order, symmetric 4-bit,
//! group 128) runs end to end, the GGUF it writes holds Q4_0 layer matrices that gguf-py reads
//! and our runtime evaluates, and the Hugging Face GPTQ directory has its config. Bad settings
//! are clear errors before any work starts.

mod common;

use common::{oracle_python, run, shared_home, smelt, text};

#[test]
fn bad_settings_are_clear_errors() {
    let home = shared_home();
    for (args, want) in [
        (vec!["--calib", "12"], "expected WINDOWSxTOKENS"),
        (vec!["--calib", "0x512"], "positive integers"),
        (vec!["--method", "magic"], "unknown method \"magic\""),
        (vec!["--group", "0"], "group 0"),
        (vec!["--bits", "9"], "9 bits is not supported"),
        (vec!["--ctx", "0"], "at least 8 tokens"),
        (vec!["--damp", "0"], "must be a positive fraction"),
        (vec!["--awq-tokens", "0"], "at least one calibration row"),
        (
            vec!["--bits", "3", "--hf-dir", "x"],
            "do not pack into 32-bit words",
        ),
        // Windows past the context indexed past the cache in the layer-by-layer pass.
        (
            vec!["--method", "gptq", "--calib", "1x100000"],
            "do not fit the model's context",
        ),
    ] {
        let out = run(smelt(&home).args(["llm", "quantize"]).args(&args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
}

#[test]
fn gptq_writes_a_q4_0_gguf_and_a_hf_gptq_directory() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let (gguf, hf) = (dir.path().join("gptq.gguf"), dir.path().join("hf"));
    let out = run(smelt(&home)
        .args(["llm", "quantize", "--method", "gptq", "--bits", "4"])
        .args([
            "--group",
            "128",
            "--sym",
            "--act-order",
            "--calib",
            "4x64",
            "--eval-chunks",
            "1",
        ])
        .args(["--ctx", "128", "-o"])
        .arg(&gguf)
        .arg("--hf-dir")
        .arg(&hf));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("| gptq 4b g128 sym act-order |"), "{t}");
    assert!(t.contains("| 4.125 |"), "bits per parameter: {t}");

    let out = run(smelt(&home).args(["gguf", "inspect"]).arg(&gguf));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("q4_0") && t.contains("210"),
        "30 layers x 7 Q4_0 matrices: {t}"
    );

    let out = run(smelt(&home).arg("perplexity").arg(&gguf).args([
        "-f",
        "shakespeare",
        "--ctx",
        "128",
        "--chunks",
        "1",
    ]));
    assert!(out.status.success(), "{}", text(&out));

    let py = oracle_python();
    let script = "import sys, gguf\nr = gguf.GGUFReader(sys.argv[1])\nprint(sum(1 for t in r.tensors if t.tensor_type.name == 'Q4_0'))";
    if let Ok(o) = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(&gguf)
        .output()
        && o.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "210");
    } else {
        eprintln!(
            "gguf-py not available at {}; skipped the outside read",
            py.display()
        );
    }

    let qc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("quantize_config.json")).unwrap()).unwrap();
    assert_eq!(qc["bits"], 4);
    assert_eq!(qc["group_size"], 128);
    assert_eq!(qc["desc_act"], true);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["quant_method"], "gptq");
    assert!(hf.join("tokenizer.json").exists());
}

/// `smelt gguf quantize --method gptq`: the same Q4_K_M mix as plain rounding (every tensor the
/// same type, the file the same size) with different layer codes, and it runs.
#[test]
fn calibrated_q4_k_m_keeps_the_mix() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let (plain, calibrated) = (dir.path().join("rtn.gguf"), dir.path().join("gptq.gguf"));
    let out = run(smelt(&home)
        .args(["gguf", "quantize", "smollm2-135m"])
        .arg(&plain)
        .args(["Q4_K_M", "--allow-requantize"]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(smelt(&home)
        .args(["gguf", "quantize", "smollm2-135m"])
        .arg(&calibrated)
        .args(["Q4_K_M", "--allow-requantize", "--method", "gptq"])
        .args(["--calib", "2x64"]));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("GPTQ chose the codes of 210 layer matrices"),
        "{t}"
    );
    assert_eq!(
        std::fs::metadata(&plain).unwrap().len(),
        std::fs::metadata(&calibrated).unwrap().len()
    );
    let types = |p: &std::path::Path| {
        let out = run(smelt(&home).args(["gguf", "inspect", "--json"]).arg(p));
        assert!(out.status.success(), "{}", text(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        j["tensors"].as_array().unwrap().clone()
    };
    assert_eq!(
        types(&plain),
        types(&calibrated),
        "same types, shapes, sizes"
    );
    assert_ne!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&calibrated).unwrap(),
        "calibration changed no code"
    );
    let out = run(smelt(&home).arg("perplexity").arg(&calibrated).args([
        "-f",
        "shakespeare",
        "--ctx",
        "128",
        "--chunks",
        "1",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    for (args, want) in [
        (vec!["--method", "awesome"], "unknown --method"),
        (vec!["--method", "gptq", "--damp", "0"], "positive fraction"),
    ] {
        let out = run(smelt(&home)
            .args(["gguf", "quantize", "smollm2-135m"])
            .arg(dir.path().join("x.gguf"))
            .args(["Q4_K_M", "--allow-requantize"])
            .args(&args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
}

/// `smelt llm smoothquant` end to end on a tiny calibration set: three perplexity rows, the
/// speed table, its files; a bad α is refused.
#[test]
fn smoothquant_runs_and_times_both_paths() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(&home)
        .args([
            "llm",
            "smoothquant",
            "--calib",
            "2x64",
            "--eval-chunks",
            "1",
        ])
        .args(["--ctx", "128", "-p", "32", "-n", "4", "-r", "1", "--out"])
        .arg(dir.path()));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "| base (F32) |",
        "| W8A8 (no smoothing) |",
        "| SmoothQuant W8A8 α=0.5 |",
        "| W8A8 (int8 GEMM) |",
        "W8A8 / F32: prompt processing",
    ] {
        assert!(t.contains(want), "missing {want:?}: {t}");
    }
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("smoothquant.json")).unwrap())
            .unwrap();
    assert_eq!(j["rows"].as_array().unwrap().len(), 3);
    let out = run(smelt(&home).args(["llm", "smoothquant", "--alpha", "1.5"]));
    assert!(!out.status.success());
    assert!(text(&out).contains("must be in [0, 1]"), "{}", text(&out));
}
