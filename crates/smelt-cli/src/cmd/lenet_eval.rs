//! `smelt lenet eval`: every variant of a network in the work directory on the 10,000 MNIST
//! test images — accuracy, bytes on disk and in theory, throughput at batch 1 and 256, and
//! batch-1 latency — as a Markdown table and `<model>-eval.json` for the report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use smelt_compress::train::accuracy;
use smelt_models::cnn::dynamic::DynamicEngine;
use smelt_models::cnn::float::{FloatNet, NoHook};
use smelt_models::cnn::int8::{Int8Engine, QuantizedCnn};
use smelt_models::cnn::{CnnParams, argmax_rows};

use super::lenet::{ModelChoice, load_fp32, mnist, variant_path};
use crate::Context;

/// Arguments of `smelt lenet eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Work directory.
    #[arg(long, default_value = "lenet")]
    pub dir: PathBuf,
    /// Network.
    #[arg(long, value_enum, default_value_t = ModelChoice::Lenet)]
    pub model: ModelChoice,
    /// Images timed one at a time for the batch-1 numbers.
    #[arg(long, default_value_t = 500, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch1_images: usize,
    /// Measure only these variants (comma-separated, e.g. fp32,int8-pc); the table file is
    /// then `<model>-eval-only.json`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvalRow {
    /// File suffix (`fp32`, `int8-pc`, …).
    pub variant: String,
    /// Test accuracy, 0..1.
    pub accuracy: f64,
    /// Size of the file on disk (None when built at load time).
    pub disk_bytes: Option<u64>,
    /// Parameter bytes at the format's bit width.
    pub theoretical_bytes: usize,
    /// Images/s, one image per call.
    pub batch1_ips: f64,
    /// Images/s in batches of 256.
    pub batch256_ips: f64,
    /// Batch-1 latency percentiles, milliseconds.
    pub latency_ms_p50: f64,
    /// See above.
    pub latency_ms_p99: f64,
}

/// The comparison as a Markdown table; Δ and "× smaller" are relative to `fp`.
pub fn markdown_table(rows: &[EvalRow], fp: &EvalRow) -> String {
    let mut t = String::from(
        "| variant | accuracy | Δ (points) | on disk | theoretical | × smaller | img/s b=1 | img/s b=256 | p50 / p99 ms b=1 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        t += &format!(
            "| {} | {:.2} % | {:+.2} | {} | {} | {:.2} | {:.0} | {:.0} | {:.3} / {:.3} |\n",
            r.variant,
            r.accuracy * 100.0,
            (r.accuracy - fp.accuracy) * 100.0,
            r.disk_bytes
                .map(smelt_files::human_bytes)
                .unwrap_or_else(|| "built at load".into()),
            smelt_files::human_bytes(r.theoretical_bytes as u64),
            fp.theoretical_bytes as f64 / r.theoretical_bytes as f64,
            r.batch1_ips,
            r.batch256_ips,
            r.latency_ms_p50,
            r.latency_ms_p99
        );
    }
    t
}

type Runner<'a> = Box<dyn Fn(&[u8]) -> Result<Vec<f32>> + 'a>;

fn measure(
    variant: &str,
    run: &Runner<'_>,
    test: &smelt_data::mnist::Split,
    b1: usize,
) -> Result<(f64, f64, f64, f64, f64)> {
    let t = Instant::now();
    let mut logits = Vec::with_capacity(test.len() * 10);
    for chunk in test.images.chunks(256 * 784) {
        logits.extend(run(chunk)?);
    }
    let b256 = test.len() as f64 / t.elapsed().as_secs_f64();
    let acc = accuracy(&argmax_rows(&logits, 10), &test.labels);
    let mut lat = Vec::with_capacity(b1);
    for i in 0..b1.min(test.len()) {
        let t = Instant::now();
        std::hint::black_box(run(test.image(i))?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    tracing::debug!("{variant}: {acc}");
    Ok((acc, 1e3 / mean, b256, pct(0.5), pct(0.99)))
}

/// `smelt lenet eval`.
pub fn run(ctx: &Context, a: &EvalArgs) -> Result<()> {
    let ds = mnist(ctx)?;
    let tag = a.model.tag();
    let p: CnnParams = load_fp32(ctx, &a.dir, a.model)?;
    let mut rows = Vec::new();
    let fp32_path = variant_path(&a.dir, tag, "fp32");
    let disk = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| m.len());
    let mut engines = Vec::new();
    for suffix in [
        "int8-pt", "int8-pc", "int4-pt", "int4-pc", "qat-int8", "qat-int4",
    ] {
        let path = variant_path(&a.dir, tag, suffix);
        if path.exists() {
            let q = QuantizedCnn::load(&path)?;
            engines.push((
                suffix,
                disk(&path),
                q.theoretical_bytes(),
                Int8Engine::new(&q, smelt_kernels::variant())?,
            ));
        }
    }
    let dynq = DynamicEngine::new(&p, smelt_kernels::variant())?;
    // FP32 on candle (its gemm-based matmul, all cores).
    let net = FloatNet::from_params(&p, &candle_core::Device::Cpu)?;
    let mut cands: Vec<(String, Option<u64>, usize, Runner<'_>)> = vec![(
        "fp32".into(),
        disk(&fp32_path),
        p.f32_bytes(),
        Box::new(|x: &[u8]| Ok(net.logits(x, 256, &mut NoHook)?)),
    )];
    let n_params = p.spec.param_count();
    let n_bias: usize = p
        .spec
        .param_shapes()
        .iter()
        .filter(|(n, _)| n.ends_with(".bias"))
        .map(|(_, s)| s[0])
        .sum();
    // int8 weights + f32 per-channel scales + f32 biases.
    let dyn_bytes = (n_params - n_bias) + n_bias * 8;
    cands.push((
        "int8-dynamic".into(),
        None,
        dyn_bytes,
        Box::new(|x: &[u8]| Ok(dynq.logits(x))),
    ));
    for (suffix, d, th, e) in &engines {
        cands.push((
            suffix.to_string(),
            *d,
            *th,
            Box::new(move |x: &[u8]| Ok(e.logits(x))),
        ));
    }
    if !a.only.is_empty() {
        cands.retain(|c| a.only.contains(&c.0));
        if cands.is_empty() {
            anyhow::bail!(
                "--only {:?} matches no variant in {}",
                a.only,
                a.dir.display()
            );
        }
    }
    let bar = crate::progress::bar(cands.len() as u64, "variants", ctx.quiet);
    for (name, disk_bytes, th, run) in &cands {
        bar.set_message(name.clone());
        let (acc, b1, b256, p50, p99) = measure(name, run, &ds.test, a.batch1_images)?;
        rows.push(EvalRow {
            variant: name.clone(),
            accuracy: acc,
            disk_bytes: *disk_bytes,
            theoretical_bytes: *th,
            batch1_ips: b1,
            batch256_ips: b256,
            latency_ms_p50: p50,
            latency_ms_p99: p99,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let fp = rows
        .iter()
        .find(|r| r.variant == "fp32")
        .unwrap_or(&rows[0])
        .clone();
    println!(
        "{} on the 10,000 MNIST test images (kernel {}, {} threads)",
        p.spec.name,
        smelt_kernels::variant().name(),
        rayon::current_num_threads()
    );
    print!("{}", markdown_table(&rows, &fp));
    let out = a.dir.join(if a.only.is_empty() {
        format!("{tag}-eval.json")
    } else {
        format!("{tag}-eval-only.json")
    });
    smelt_files::write_atomic(&out, serde_json::to_string_pretty(&rows)?.as_bytes())?;
    let mut rec = ctx.record("lenet eval");
    rec.input("model", tag)
        .setting("kernel", smelt_kernels::variant().name())
        .metric("rows", &rows)
        .output(&out);
    let rp = rec.write(&ctx.runs_dir)?;
    eprintln!("table: {}; run record: {}", out.display(), rp.display());
    Ok(())
}
