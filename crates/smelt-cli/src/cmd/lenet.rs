//! `smelt lenet`: the LeNet-5 / MNIST pipeline — FP32 training, static and dynamic PTQ with
//! integer-only inference, QAT, evaluation, ONNX export and a report. Every step reads and
//! writes a work directory (`--dir`, default `lenet`), so steps can be run one by one.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use smelt_compress::ptq::{
    ActObserver, Calibration, FakeQuant, WeightGranularity, calibrate, quantize_static,
};
use smelt_compress::qat::QatHook;
use smelt_compress::train::{Images, TrainConfig, accuracy, init_params, train};
use smelt_models::cnn::dynamic::DynamicEngine;
use smelt_models::cnn::float::{FloatNet, NoHook};
use smelt_models::cnn::int8::{Int8Engine, QuantizedCnn};
use smelt_models::cnn::{CnnParams, CnnSpec, argmax_rows};

use crate::Context;

/// `smelt lenet` subcommands.
#[derive(clap::Subcommand)]
pub enum LenetCommand {
    /// Train the FP32 LeNet-5 on MNIST (seeded) and save it as safetensors.
    Train(TrainArgs),
    /// Static PTQ (INT8 per-tensor, INT8 per-channel, INT4 per-channel weights) with real integer
    /// inference, checked against its fake-quant simulation; also dynamic INT8.
    Quantize(QuantizeArgs),
    /// Quantization-aware fine-tuning (fake quant + straight-through estimator) from FP32.
    Qat(QatArgs),
    /// Accuracy, size, throughput and latency of every variant in the work directory.
    Eval(super::lenet_eval::EvalArgs),
    /// Write the FP32 network and the INT8 per-channel network (QDQ form) as ONNX, opset 13.
    Export(ExportArgs),
    /// Histograms with clipping ranges, and a Markdown report from the eval table.
    Report(super::lenet_report::ReportArgs),
}

/// Arguments of `smelt lenet export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Work directory (reads `<model>-fp32` and `<model>-int8-pc`, writes `.onnx` next to them).
    #[arg(long, default_value = "lenet")]
    dir: PathBuf,
    /// Network.
    #[arg(long, value_enum, default_value_t = ModelChoice::Lenet)]
    model: ModelChoice,
    /// Which quantized variant to export in QDQ form (8-bit ones only).
    #[arg(long, default_value = "int8-pc")]
    variant: String,
}

/// Which network: our LeNet-5 from the work directory, or the outside-trained MNIST CNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelChoice {
    /// `lenet5-fp32.safetensors` from `smelt lenet train`.
    Lenet,
    /// The pretrained CNN from PyPI `ccexam` (fetched as the asset ccexam-mnist-cnn).
    Ccexam,
}

impl ModelChoice {
    /// File-name prefix in the work directory.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Lenet => "lenet5",
            Self::Ccexam => "ccexam",
        }
    }
}

/// Arguments of `smelt lenet quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Work directory.
    #[arg(long, default_value = "lenet")]
    dir: PathBuf,
    /// Network to quantize.
    #[arg(long, value_enum, default_value_t = ModelChoice::Lenet)]
    model: ModelChoice,
    /// Calibration images, drawn with --seed from the training set.
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    calib: usize,
    /// Activation range observer: minmax, mse or percentile:P.
    #[arg(long, default_value = "minmax")]
    observer: String,
    /// Seed for the calibration sample.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Arguments of `smelt lenet qat`.
#[derive(clap::Args)]
pub struct QatArgs {
    /// Work directory.
    #[arg(long, default_value = "lenet")]
    dir: PathBuf,
    /// Weight bits (activations stay 8-bit).
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// Fine-tuning passes over the training images.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Fine-tune on the first N images only (quick runs).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Calibration images for the starting ranges.
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    calib: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write TensorBoard event files here: the loss every 10 steps, weight histograms before
    /// and after, activation histograms from calibration, accuracies.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
}

/// Arguments of `smelt lenet train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Work directory.
    #[arg(long, default_value = "lenet")]
    dir: PathBuf,
    /// Passes over the 60,000 training images.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: usize,
    /// Peak learning rate (AdamW, cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed for initialization and shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Train on the first N images only (quick runs).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// The MNIST dataset from the cache (fetched on first use).
pub fn mnist(ctx: &Context) -> Result<smelt_data::mnist::Dataset> {
    let asset = smelt_data::assets::find("mnist").expect("catalogued");
    let dir = ctx.fetcher().ensure(asset)?;
    smelt_data::mnist::load_idx_dir(&dir).map_err(anyhow::Error::msg)
}

/// Test accuracy of float parameters.
pub fn float_accuracy(p: &CnnParams, test: &smelt_data::mnist::Split) -> Result<f64> {
    let net = FloatNet::from_params(p, &candle_core::Device::Cpu)?;
    let logits = net.logits(&test.images, 500, &mut NoHook)?;
    Ok(accuracy(&argmax_rows(&logits, 10), &test.labels))
}

/// Where a variant of a network lives in the work directory.
pub fn variant_path(dir: &Path, tag: &str, variant: &str) -> PathBuf {
    dir.join(format!("{tag}-{variant}.safetensors"))
}

fn fp32_path(dir: &Path) -> PathBuf {
    variant_path(dir, "lenet5", "fp32")
}

/// The FP32 network: ours from the work directory, or ccexam's state dict (converted and saved
/// next to ours so every later step finds it the same way).
pub fn load_fp32(ctx: &Context, dir: &Path, model: ModelChoice) -> Result<CnnParams> {
    match model {
        ModelChoice::Lenet => {
            let path = fp32_path(dir);
            if !path.exists() {
                anyhow::bail!(
                    "{} not found: run `smelt lenet train --dir {}` first",
                    path.display(),
                    dir.display()
                );
            }
            Ok(CnnParams::load(&path)?)
        }
        ModelChoice::Ccexam => {
            let asset = smelt_data::assets::find("ccexam-mnist-cnn").expect("catalogued");
            let file = ctx.fetcher().ensure(asset)?.join("mnist.pth");
            let tensors = smelt_data::torch_state_dict::load_state_dict(&file)?
                .into_iter()
                .map(|t| (t.name, (t.shape, t.data)))
                .collect();
            let p = CnnParams::new(CnnSpec::ccexam(), tensors)
                .with_context(|| format!("{} does not match the ccexam network", file.display()))?;
            std::fs::create_dir_all(dir)?;
            p.save(&variant_path(dir, "ccexam", "fp32"))?;
            Ok(p)
        }
    }
}

/// `n` training images drawn without replacement with `seed`: `[n][784]` pixels.
pub fn calibration_images(train: &smelt_data::mnist::Split, n: usize, seed: u64) -> Vec<u8> {
    let mut rng = smelt_quant::rng::Rng::new(seed ^ 0xca1b);
    let mut idx: Vec<usize> = (0..train.len()).collect();
    let n = n.min(idx.len());
    for i in 0..n {
        let j = i + rng.below(idx.len() - i);
        idx.swap(i, j);
    }
    idx[..n]
        .iter()
        .flat_map(|&i| train.image(i).iter().copied())
        .collect()
}

/// `smelt lenet ...`.
pub fn run(ctx: &Context, command: LenetCommand) -> Result<()> {
    match command {
        LenetCommand::Train(a) => train_cmd(ctx, &a),
        LenetCommand::Quantize(a) => quantize_cmd(ctx, &a),
        LenetCommand::Qat(a) => qat_cmd(ctx, &a),
        LenetCommand::Eval(a) => super::lenet_eval::run(ctx, &a),
        LenetCommand::Export(a) => export_cmd(ctx, &a),
        LenetCommand::Report(a) => super::lenet_report::run(ctx, &a),
    }
}

fn train_cmd(ctx: &Context, a: &TrainArgs) -> Result<()> {
    let ds = mnist(ctx)?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        seed: a.seed,
        limit: a.limit,
        ..Default::default()
    };
    let spec = CnnSpec::lenet5();
    let start = init_params(&spec, a.seed)?;
    let n = if a.limit > 0 {
        a.limit.min(ds.train.len())
    } else {
        ds.train.len()
    };
    eprintln!(
        "training {} ({} parameters) on {n} MNIST images: {} epochs, batch {}, lr {}, seed {}",
        spec.name,
        spec.param_count(),
        a.epochs,
        a.batch,
        a.lr,
        a.seed
    );
    let steps = n.div_ceil(a.batch);
    let bar = crate::progress::bar((steps * a.epochs) as u64, "steps", ctx.quiet);
    let t = std::time::Instant::now();
    let images = Images {
        pixels: &ds.train.images,
        labels: &ds.train.labels,
    };
    let (params, loss) = train(&start, &images, &cfg, &mut NoHook, &mut |e, s, n, l| {
        bar.set_position((e * n + s) as u64);
        bar.set_message(format!("epoch {} loss {l:.4}", e + 1));
    })?;
    bar.finish_and_clear();
    let train_s = t.elapsed();
    let acc = float_accuracy(&params, &ds.test)?;
    let path = fp32_path(&a.dir);
    params.save(&path)?;
    println!(
        "FP32 {}: test accuracy {:.2} % (10,000 images), final loss {loss:.4}, trained in {:.1} s -> {}",
        spec.name,
        acc * 100.0,
        train_s.as_secs_f64(),
        path.display()
    );
    let mut rec = ctx.record("lenet train");
    rec.setting("config", &cfg)
        .metric("test_accuracy", acc)
        .metric("final_loss", loss)
        .timing("train", train_s)
        .output(&path);
    let rp = rec.write(&ctx.runs_dir)?;
    eprintln!("run record: {}", rp.display());
    Ok(())
}

/// The static PTQ variants: (file suffix, label, weight bits, granularity).
pub const PTQ_VARIANTS: [(&str, &str, u8, WeightGranularity); 4] = [
    (
        "int8-pt",
        "INT8 per-tensor (PTQ)",
        8,
        WeightGranularity::PerTensor,
    ),
    (
        "int8-pc",
        "INT8 per-channel (PTQ)",
        8,
        WeightGranularity::PerChannel,
    ),
    (
        "int4-pt",
        "INT4 weights per-tensor, INT8 act. (PTQ)",
        4,
        WeightGranularity::PerTensor,
    ),
    (
        "int4-pc",
        "INT4 weights per-channel, INT8 act. (PTQ)",
        4,
        WeightGranularity::PerChannel,
    ),
];

/// Accuracy of the integer engine and its agreement with the fake-quant simulation.
pub fn check_quantized(
    q: &QuantizedCnn,
    test: &smelt_data::mnist::Split,
) -> Result<(f64, f64, f64)> {
    let engine = Int8Engine::new(q, smelt_kernels::variant())?;
    let int_pred = argmax_rows(&engine.logits(&test.images), engine.classes());
    let fq_pred = argmax_rows(&FakeQuant::new(q).logits(&test.images)?, engine.classes());
    let agree = int_pred
        .iter()
        .zip(&fq_pred)
        .filter(|(a, b)| a == b)
        .count() as f64
        / int_pred.len() as f64;
    Ok((
        accuracy(&int_pred, &test.labels),
        accuracy(&fq_pred, &test.labels),
        agree,
    ))
}

fn quantize_cmd(ctx: &Context, a: &QuantizeArgs) -> Result<()> {
    let ds = mnist(ctx)?;
    let observer = ActObserver::parse(&a.observer).map_err(anyhow::Error::msg)?;
    let p = load_fp32(ctx, &a.dir, a.model)?;
    let tag = a.model.tag();
    let calib = calibration_images(&ds.train, a.calib, a.seed);
    let fp32 = float_accuracy(&p, &ds.test)?;
    println!(
        "{} FP32: {:.2} % test accuracy; calibrating on {} training images ({})",
        p.spec.name,
        fp32 * 100.0,
        a.calib,
        a.observer
    );
    let mut rec = ctx.record("lenet quantize");
    rec.input("model", tag)
        .setting("calibration_images", a.calib)
        .setting("observer", &a.observer)
        .setting("seed", a.seed);
    rec.metric("fp32_accuracy", fp32);
    let t = std::time::Instant::now();
    let cal = calibrate(&p, &calib, observer)?;
    rec.timing("calibrate", t.elapsed());
    save_ranges(&a.dir, tag, &cal)?;
    println!(
        "| variant | integer engine | fake-quant sim. | same predictions | Δ vs FP32 (points) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (suffix, label, bits, gran) in PTQ_VARIANTS {
        let q = quantize_static(&p, &cal.ranges, bits, gran)?;
        let path = variant_path(&a.dir, tag, suffix);
        q.save(&path)?;
        let (acc, fq, agree) = check_quantized(&q, &ds.test)?;
        println!(
            "| {label} | {:.2} % | {:.2} % | {:.2} % | {:+.2} |",
            acc * 100.0,
            fq * 100.0,
            agree * 100.0,
            (acc - fp32) * 100.0
        );
        rec.metric(&format!("{suffix}_accuracy"), acc)
            .metric(&format!("{suffix}_fakequant_accuracy"), fq)
            .metric(&format!("{suffix}_agreement"), agree)
            .output(&path);
    }
    let dynq = DynamicEngine::new(&p, smelt_kernels::variant())?;
    let dacc = accuracy(
        &argmax_rows(&dynq.logits(&ds.test.images), 10),
        &ds.test.labels,
    );
    println!(
        "| INT8 dynamic (weights per-channel, activations per batch of 10,000) | {:.2} % | — | — | {:+.2} |",
        dacc * 100.0,
        (dacc - fp32) * 100.0
    );
    rec.metric("dynamic_accuracy", dacc);
    let rp = rec.write(&ctx.runs_dir)?;
    eprintln!(
        "quantized models in {}; run record: {}",
        a.dir.display(),
        rp.display()
    );
    Ok(())
}

/// Keeps the calibration ranges and value samples for the report's histograms.
fn save_ranges(dir: &Path, tag: &str, cal: &Calibration) -> Result<()> {
    let pts: Vec<serde_json::Value> = cal
        .ranges
        .iter()
        .zip(&cal.samples)
        .map(|(r, s)| {
            let v: Vec<f32> = s
                .samples()
                .iter()
                .step_by((s.samples().len() / 20000).max(1))
                .copied()
                .collect();
            serde_json::json!({"range": [r.0, r.1], "samples": v})
        })
        .collect();
    let j = serde_json::json!({"observer": cal.observer, "points": pts});
    smelt_files::write_atomic(
        dir.join(format!("{tag}-calibration.json")),
        serde_json::to_string(&j)?.as_bytes(),
    )?;
    Ok(())
}

fn qat_cmd(ctx: &Context, a: &QatArgs) -> Result<()> {
    if !matches!(a.bits, 4 | 8) {
        anyhow::bail!("--bits {}: QAT supports 8 or 4", a.bits);
    }
    let ds = mnist(ctx)?;
    let p = load_fp32(ctx, &a.dir, ModelChoice::Lenet)?;
    let calib = calibration_images(&ds.train, a.calib, a.seed);
    let cal = calibrate(&p, &calib, ActObserver::MinMax)?;
    let before = quantize_static(&p, &cal.ranges, a.bits, WeightGranularity::PerChannel)?;
    let (ptq_acc, _, _) = check_quantized(&before, &ds.test)?;
    let mut hook = QatHook::new(&p.spec, a.bits, cal.ranges.clone());
    let mut tb = match &a.tensorboard {
        Some(dir) => {
            let mut w = smelt_trace::tensorboard::EventWriter::create(dir)
                .with_context(|| format!("creating event files in {}", dir.display()))?;
            for (name, (_, values)) in &p.tensors {
                w.histogram(&format!("weights/{name}"), values, 0)?;
            }
            for (i, r) in cal.samples.iter().enumerate() {
                w.histogram(&format!("activations/point{i}"), r.samples(), 0)?;
            }
            w.scalar("accuracy/ptq_int", ptq_acc as f32, 0)?;
            Some(w)
        }
        None => None,
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        lr: a.lr,
        seed: a.seed,
        limit: a.limit,
        ..Default::default()
    };
    let n = if a.limit > 0 {
        a.limit.min(ds.train.len())
    } else {
        ds.train.len()
    };
    let steps = n.div_ceil(cfg.batch);
    eprintln!(
        "QAT INT{} (per-channel weights, u8 activations): {} epoch(s) on {n} images, lr {}",
        a.bits, a.epochs, a.lr
    );
    let bar = crate::progress::bar((steps * a.epochs) as u64, "steps", ctx.quiet);
    let t = std::time::Instant::now();
    let images = Images {
        pixels: &ds.train.images,
        labels: &ds.train.labels,
    };
    let mut tb_error = None;
    let (tuned, loss) = train(&p, &images, &cfg, &mut hook, &mut |e, s, n, l| {
        bar.set_position((e * n + s) as u64);
        bar.set_message(format!("loss {l:.4}"));
        if let Some(w) = tb.as_mut()
            && s % 10 == 0
            && let Err(err) = w.scalar("train/loss", l, (e * n + s) as i64)
        {
            tb_error.get_or_insert(err);
        }
    })?;
    if let Some(err) = tb_error {
        return Err(err).context("writing the TensorBoard events");
    }
    bar.finish_and_clear();
    let q = hook.convert(&tuned)?;
    let path = variant_path(&a.dir, "lenet5", &format!("qat-int{}", a.bits));
    q.save(&path)?;
    let (acc, fq, agree) = check_quantized(&q, &ds.test)?;
    if let Some(w) = tb.as_mut() {
        let step = (steps * a.epochs) as i64;
        for (name, (_, values)) in &tuned.tensors {
            w.histogram(&format!("weights/{name}"), values, step)?;
        }
        w.scalar("accuracy/qat_int", acc as f32, step)?;
        w.scalar("accuracy/qat_fakequant", fq as f32, step)?;
        eprintln!("TensorBoard events: {}", w.path().display());
    }
    println!(
        "INT{} per-channel: PTQ {:.2} % -> QAT {:.2} % (integer engine; fake-quant {:.2} %, {:.2} % same predictions), {:.0} s -> {}",
        a.bits,
        ptq_acc * 100.0,
        acc * 100.0,
        fq * 100.0,
        agree * 100.0,
        t.elapsed().as_secs_f64(),
        path.display()
    );
    let mut rec = ctx.record("lenet qat");
    rec.setting("bits", a.bits)
        .setting("config", &cfg)
        .metric("ptq_accuracy", ptq_acc)
        .metric("qat_accuracy", acc)
        .metric("fakequant_accuracy", fq)
        .metric("agreement", agree)
        .metric("final_loss", loss)
        .timing("qat", t.elapsed())
        .output(&path);
    let rp = rec.write(&ctx.runs_dir)?;
    eprintln!("run record: {}", rp.display());
    Ok(())
}

fn export_cmd(ctx: &Context, a: &ExportArgs) -> Result<()> {
    let tag = a.model.tag();
    let p = load_fp32(ctx, &a.dir, a.model)?;
    let qpath = variant_path(&a.dir, tag, &a.variant);
    if !qpath.exists() {
        anyhow::bail!(
            "{} not found: run `smelt lenet quantize --dir {}` first",
            qpath.display(),
            a.dir.display()
        );
    }
    let q = QuantizedCnn::load(&qpath)?;
    let mut rec = ctx.record("lenet export");
    for (model, file) in [
        (
            smelt_models::cnn::onnx::export_fp32(&p)?,
            format!("{tag}-fp32.onnx"),
        ),
        (
            smelt_models::cnn::onnx::export_qdq(&q)?,
            format!("{tag}-{}-qdq.onnx", a.variant),
        ),
    ] {
        let path = a.dir.join(file);
        smelt_onnx::write_model(&path, &model)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} ({} nodes, opset {}, batch axis N) -> {}",
            model
                .graph
                .as_ref()
                .and_then(|g| g.name.clone())
                .unwrap_or_default(),
            model.graph.as_ref().map_or(0, |g| g.node.len()),
            smelt_models::cnn::onnx::OPSET,
            path.display()
        );
        rec.output(&path);
    }
    rec.write(&ctx.runs_dir)?;
    Ok(())
}
