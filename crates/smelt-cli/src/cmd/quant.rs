//! `smelt quant ...`: the quantization-core exercises, each printing a table, writing a PNG
//! chart and a run record.

use std::path::PathBuf;

use anyhow::Result;
use smelt_plot::{BarGroup, GroupedBars};
use smelt_quant::rng::Rng;
use smelt_quant::{
    Granularity, INT4, INT8, IntFormat, QParams, QuantSpec, QuantizedTensor, Scheme, error_stats,
};

use crate::Context;

/// Quantization exercises.
#[derive(clap::Subcommand)]
pub enum QuantCommand {
    /// Symmetric vs asymmetric INT8 on normal, uniform, ReLU-skewed and heavy-tailed data.
    ///
    /// Example: smelt quant schemes --samples 1000000
    Schemes {
        /// Samples per distribution.
        #[arg(long, default_value_t = 1_000_000)]
        samples: usize,
        /// Seed of the draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the chart [default: <runs-dir>/quant-schemes.png].
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Per-tensor vs per-channel vs group-wise vs 2-D blocks on a weight matrix with 1 % outliers.
    ///
    /// Example: smelt quant granularity --rows 1024 --cols 1024
    Granularity {
        /// Rows (output features).
        #[arg(long, default_value_t = 1024)]
        rows: usize,
        /// Columns (input features, the reduction axis).
        #[arg(long, default_value_t = 1024)]
        cols: usize,
        /// Fraction of weights replaced by outliers.
        #[arg(long, default_value_t = 0.01)]
        outliers: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the chart [default: <runs-dir>/quant-granularity.png].
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// NF4 with double quantization (QLoRA storage): bits per parameter stored, next to the
    /// formula 4 + 8/block + 32/(block·dq_block), and the error against plain NF4.
    ///
    /// Example: smelt quant nf4-dq --elements 4194304
    Nf4Dq {
        /// Normal(0, 1) weights to quantize.
        #[arg(long, default_value_t = 1 << 22)]
        elements: usize,
        /// Weights per NF4 block.
        #[arg(long, default_value_t = 64)]
        block: usize,
        /// Absmax values per second-level block.
        #[arg(long, default_value_t = 256)]
        dq_block: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Runs a `smelt quant` verb.
pub fn run(ctx: &Context, cmd: QuantCommand) -> Result<()> {
    match cmd {
        QuantCommand::Schemes {
            samples,
            seed,
            plot,
        } => schemes(ctx, samples, seed, plot),
        QuantCommand::Granularity {
            rows,
            cols,
            outliers,
            seed,
            plot,
        } => granularity(ctx, rows, cols, outliers, seed, plot),
        QuantCommand::Nf4Dq {
            elements,
            block,
            dq_block,
            seed,
        } => nf4_dq(ctx, elements, block, dq_block, seed),
    }
}

fn nf4_dq(ctx: &Context, elements: usize, block: usize, dq_block: usize, seed: u64) -> Result<()> {
    use smelt_quant::{nf4, nf4_dq};
    anyhow::ensure!(
        elements > 0 && block > 0 && dq_block > 0,
        "sizes must be positive"
    );
    let x = smelt_quant::rng::Rng::new(seed).normals(elements);
    let single = nf4::quantize(&x, block);
    let double = nf4_dq::quantize(&x, block, dq_block);
    let mse = |y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / x.len() as f64
    };
    let (e1, e2) = (
        mse(&nf4::dequantize(&single)),
        mse(&nf4_dq::dequantize(&double)),
    );
    let single_bits = (single.packed.len() * 8 + single.absmax.len() * 32) as f64 / elements as f64;
    let formula = nf4_dq::bits_per_param_formula(block, dq_block);
    println!(
        "{elements} N(0,1) weights, NF4 block {block}, absmax quantized to INT8 in blocks of {dq_block}"
    );
    println!("  NF4, f32 absmax:        {single_bits:.4} bits/param   MSE {e1:.6e}");
    println!(
        "  NF4 + double quant:     {:.4} bits/param   MSE {e2:.6e} ({:+.2} %)",
        double.bits_per_param(),
        100.0 * (e2 / e1 - 1.0)
    );
    println!(
        "  formula 4 + 8/{block} + 32/({block}·{dq_block}) = {formula:.4} bits/param (stored: the same plus one f32 offset, 32/{elements} bits)"
    );
    let mut record = ctx.record("quant nf4-dq");
    record
        .setting("elements", elements)
        .setting("block", block)
        .setting("dq_block", dq_block)
        .setting("seed", seed)
        .metric("bits_per_param", double.bits_per_param())
        .metric("bits_per_param_formula", formula)
        .metric("bits_per_param_nf4", single_bits)
        .metric("mse_nf4", e1)
        .metric("mse_nf4_dq", e2);
    let path = record.write(&ctx.runs_dir)?;
    if !ctx.quiet {
        eprintln!("run record: {}", path.display());
    }
    Ok(())
}

/// Writes the chart and the run record (with `results` and the chart as an output).
fn finish(
    ctx: &Context,
    mut record: smelt_runs::RunRecord,
    results: Vec<serde_json::Value>,
    chart: &GroupedBars,
    path: &std::path::Path,
) -> Result<()> {
    chart.write_png(path)?;
    println!("chart: {}", path.display());
    record.metric("results", results).output(path);
    let rec = record.write(&ctx.runs_dir)?;
    println!("run record: {}", rec.display());
    Ok(())
}

/// The distributions of exercise 1, drawn with one seed.
fn distributions(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let mut r = Rng::new(seed);
    vec![
        ("normal N(0,1)", r.normals(n)),
        (
            "uniform U(-1,1)",
            (0..n).map(|_| (2.0 * r.uniform() - 1.0) as f32).collect(),
        ),
        (
            "ReLU(N(0,1))",
            (0..n).map(|_| r.normal().max(0.0) as f32).collect(),
        ),
        (
            "Student-t(3)",
            (0..n).map(|_| r.student_t(3) as f32).collect(),
        ),
    ]
}

fn schemes(ctx: &Context, samples: usize, seed: u64, plot: Option<PathBuf>) -> Result<()> {
    let mut record = ctx.record("quant schemes");
    record
        .setting("samples", samples)
        .setting("seed", seed)
        .setting("format", "int8");
    let schemes = [
        Scheme::Symmetric { restricted: true },
        Scheme::Symmetric { restricted: false },
        Scheme::Asymmetric,
    ];
    println!("INT8, per-tensor min-max range, {samples} samples per distribution (seed {seed})\n");
    println!(
        "{:<16} {:<23} {:>9} {:>9} {:>11} {:>5} {:>12} {:>9}",
        "distribution", "scheme", "min", "max", "scale", "zp", "MSE", "SQNR dB"
    );
    let mut groups = Vec::new();
    let mut rows = Vec::new();
    for (name, x) in distributions(samples, seed) {
        let mut sqnrs = Vec::new();
        for scheme in schemes {
            let spec = QuantSpec {
                format: INT8,
                scheme,
                granularity: Granularity::PerTensor,
            };
            let q = QuantizedTensor::quantize(&x, &[x.len()], spec)?;
            let e = error_stats(&x, &q.dequantize());
            let p = q.params[0];
            let (lo, hi) =
                smelt_quant::granularity::group_ranges(&x, &[x.len()], Granularity::PerTensor)?[0];
            println!(
                "{name:<16} {:<23} {lo:>9.3} {hi:>9.3} {:>11.3e} {:>5} {:>12.3e} {:>9.2}",
                scheme.name(),
                p.scale,
                p.zero_point,
                e.mse,
                e.sqnr_db
            );
            sqnrs.push(e.sqnr_db);
            rows.push(
                serde_json::json!({"distribution": name, "scheme": scheme.name(),
                "min": lo, "max": hi, "scale": p.scale, "zero_point": p.zero_point,
                "mse": e.mse, "sqnr_db": e.sqnr_db, "max_abs": e.max_abs, "cosine": e.cosine}),
            );
        }
        groups.push(BarGroup {
            label: name.to_string(),
            values: sqnrs,
        });
    }
    println!("\nasymmetric minus symmetric (restricted), SQNR:");
    for g in &groups {
        println!("  {:<16} {:+6.2} dB", g.label, g.values[2] - g.values[0]);
    }
    println!(
        "A symmetric grid spends half its codes on negative values that one-sided (ReLU) data never has;\n\
         an asymmetric grid spends them all on the observed range. Heavy tails stretch the range for every scheme."
    );
    let series: Vec<String> = schemes.iter().map(|s| s.name().to_string()).collect();
    let chart = GroupedBars {
        title: "INT8 per-tensor: SQNR by scheme and distribution (higher is better)",
        y_label: "SQNR (dB)",
        series: &series,
        groups: &groups,
        log_y: false,
    };
    let path = plot.unwrap_or_else(|| ctx.runs_dir.join("quant-schemes.png"));
    finish(ctx, record, rows, &chart, &path)
}

/// A `(rows, cols)` N(0, 0.02²) matrix with a fraction of entries replaced by outliers of
/// 8–16 σ; returns the matrix and the outlier mask.
pub fn weights_with_outliers(
    rows: usize,
    cols: usize,
    frac: f64,
    seed: u64,
) -> (Vec<f32>, Vec<bool>) {
    let mut r = Rng::new(seed);
    let sigma = 0.02f32;
    let mut w: Vec<f32> = (0..rows * cols)
        .map(|_| sigma * r.normal() as f32)
        .collect();
    let mut mask = vec![false; w.len()];
    for (v, m) in w.iter_mut().zip(mask.iter_mut()) {
        if r.uniform() < frac {
            let sign = if r.uniform() < 0.5 { -1.0 } else { 1.0 };
            *v = sign * sigma * (8.0 + 8.0 * r.uniform() as f32);
            *m = true;
        }
    }
    (w, mask)
}

fn granularity(
    ctx: &Context,
    rows: usize,
    cols: usize,
    outliers: f64,
    seed: u64,
    plot: Option<PathBuf>,
) -> Result<()> {
    let mut record = ctx.record("quant granularity");
    record
        .setting("rows", rows)
        .setting("cols", cols)
        .setting("outlier_fraction", outliers)
        .setting("seed", seed)
        .setting("scheme", "symmetric restricted");
    let (w, mask) = weights_with_outliers(rows, cols, outliers, seed);
    let n_out = mask.iter().filter(|&&m| m).count();
    println!(
        "weights {rows}x{cols} ~ N(0, 0.02^2) with {n_out} outliers ({:.2} %) of 8-16 sigma; symmetric (restricted) min-max\n",
        100.0 * n_out as f64 / w.len() as f64
    );
    let grans = [
        Granularity::PerTensor,
        Granularity::PerChannel { axis: 0 },
        Granularity::Group { axis: 1, size: 128 },
        Granularity::Group { axis: 1, size: 32 },
        Granularity::Block2D { rows: 32, cols: 32 },
    ];
    let formats: [IntFormat; 2] = [INT8, INT4];
    println!(
        "{:<22} {:<5} {:>10} {:>8} {:>11} {:>11} {:>9} {:>10} {:>6}",
        "granularity",
        "fmt",
        "MSE",
        "SQNR dB",
        "MSE inlier",
        "MSE outlier",
        "err@outl",
        "inl->0",
        "bits/w"
    );
    let mut groups = Vec::new();
    let mut rows_json = Vec::new();
    for g in grans {
        let mut mses = Vec::new();
        for f in formats {
            let spec = QuantSpec {
                format: f,
                scheme: Scheme::Symmetric { restricted: true },
                granularity: g,
            };
            let q = QuantizedTensor::quantize(&w, &[rows, cols], spec)?;
            let y = q.dequantize();
            let e = error_stats(&w, &y);
            let (mut se_in, mut se_out, mut zero_in) = (0f64, 0f64, 0usize);
            for ((&a, &b), &m) in w.iter().zip(&y).zip(&mask) {
                let d = ((a - b) as f64).powi(2);
                if m {
                    se_out += d;
                } else {
                    se_in += d;
                    zero_in += (b == 0.0) as usize;
                }
            }
            let n_in = w.len() - n_out;
            let share_out = se_out / (se_in + se_out).max(f64::MIN_POSITIVE);
            let bits = q.storage_bytes() as f64 * 8.0 / w.len() as f64;
            println!(
                "{:<22} {:<5} {:>10.3e} {:>8.2} {:>11.3e} {:>11.3e} {:>8.1}% {:>9.1}% {:>6.2}",
                g.name(),
                f.name(),
                e.mse,
                e.sqnr_db,
                se_in / n_in.max(1) as f64,
                se_out / n_out.max(1) as f64,
                100.0 * share_out,
                100.0 * zero_in as f64 / n_in.max(1) as f64,
                bits
            );
            mses.push(e.mse);
            rows_json.push(serde_json::json!({"granularity": g.name(), "format": f.name(),
                "mse": e.mse, "sqnr_db": e.sqnr_db, "mse_inliers": se_in / n_in.max(1) as f64,
                "mse_outliers": se_out / n_out.max(1) as f64, "error_share_outliers": share_out,
                "inliers_rounded_to_zero": zero_in as f64 / n_in.max(1) as f64, "bits_per_weight": bits}));
        }
        groups.push(BarGroup {
            label: g.name(),
            values: mses,
        });
    }
    let per_tensor = QParams::from_range(
        -w.iter().fold(0f32, |m, v| m.max(v.abs())),
        w.iter().fold(0f32, |m, v| m.max(v.abs())),
        INT4,
        Scheme::Symmetric { restricted: true },
    )?;
    println!(
        "\nWhere the error comes from: with one scale per tensor the largest outlier sets the INT4 step to {:.4}\n\
         (~{:.1} sigma of the inliers), so most inlier weights round to 0 and the inliers carry almost all of the\n\
         error (err@outl = share of squared error on outlier weights; inl->0 = inliers that became 0). Smaller groups\n\
         confine each outlier's damage to its own group; the price is one f32 scale per group (bits/w).",
        per_tensor.scale,
        per_tensor.scale / 0.02
    );
    let series: Vec<String> = formats.iter().map(|f| f.name()).collect();
    let chart = GroupedBars {
        title: "Weight MSE by granularity, 1 % outliers (lower is better, log scale)",
        y_label: "MSE",
        series: &series,
        groups: &groups,
        log_y: true,
    };
    let path = plot.unwrap_or_else(|| ctx.runs_dir.join("quant-granularity.png"));
    finish(ctx, record, rows_json, &chart, &path)
}
