//! `smelt llm smoothquant`: SmoothQuant W8A8 on the F32-dequantized model. Evaluates the base,
//! plain W8A8 (no smoothing) and SmoothQuant W8A8 on held-out Shakespeare, then times prompt
//! processing and generation of the F32 path against the int8 path, alternating in one run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use serde::Serialize;
use smelt_compress::llm::smooth::{SmoothConfig, smoothquant_llama};
use smelt_models::llama::Llama;

use super::bench_model::{Test, Xorshift, mean_sd, time_test};
use super::llm::{Common, Row, Setup, fresh_base, write_atomic};
use crate::Context;

/// Arguments of `smelt llm smoothquant`.
#[derive(clap::Args)]
pub struct SmoothArgs {
    #[command(flatten)]
    common: Common,
    /// Migration strength α in [0, 1]; a comma-separated list evaluates each (a sweep; the
    /// speed comparison uses the first).
    #[arg(long, default_value = "0.5")]
    alpha: String,
    /// Also smooth up → down (the feed-forward's inner activations).
    #[arg(long)]
    smooth_down: bool,
    /// Prompt tokens per prompt-processing timing (0 skips the speed comparison).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Tokens per generation timing.
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    n_gen: usize,
    /// Timed repetitions of each test per model (after one warm-up).
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// Where the table goes (`smoothquant.md`, `smoothquant.json`).
    #[arg(long, default_value = "llm-ptq")]
    out: PathBuf,
}

/// Speed of one model: tokens/s (mean, sd) for prompt processing and generation.
#[derive(Debug, Clone, Serialize)]
struct Speed {
    name: String,
    pp: (f64, f64),
    tg: (f64, f64),
    weight_mb: f64,
}

/// The int8 model: `alpha` None for plain W8A8.
fn convert(
    ctx: &Context,
    setup: &Setup,
    alpha: Option<f32>,
    smooth_down: bool,
) -> Result<(Llama, f64)> {
    let mut m = fresh_base(&setup.loaded)?;
    let n_layer = m.config.n_layer;
    let bar = crate::progress::bar(n_layer as u64, "layers", ctx.quiet);
    bar.set_message("W8A8");
    let t = Instant::now();
    let cfg = SmoothConfig { alpha, smooth_down };
    let rep = smoothquant_llama(&mut m, &cfg, &setup.calib, |_| bar.inc(1))?;
    bar.finish_and_clear();
    if let (Some(b), Some(a)) = (
        rep.outlier_ratio_before.first(),
        rep.outlier_ratio_after.first(),
    ) && alpha.is_some()
    {
        eprintln!(
            "layer 0 attention input: largest/median channel max {:.1} -> {:.1} after smoothing",
            b[0], a[0]
        );
    }
    Ok((m, t.elapsed().as_secs_f64()))
}

/// Held-out perplexity of `model` under `name`, evaluated in `setup`'s place.
fn evaluate(ctx: &Context, setup: &mut Setup, model: Llama, name: &str) -> Result<(Row, Llama)> {
    let base = std::mem::replace(&mut setup.loaded.model, model);
    let row = setup.evaluate(ctx, name, None);
    let model = std::mem::replace(&mut setup.loaded.model, base);
    Ok((row?, model))
}

/// `smelt llm smoothquant`.
pub fn run(ctx: &Context, a: &SmoothArgs) -> Result<()> {
    let alphas = a
        .alpha
        .split(',')
        .map(|v| match v.trim().parse::<f32>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => bail!("--alpha {v:?}: must be in [0, 1]"),
        })
        .collect::<Result<Vec<f32>>>()?;
    if a.n_prompt > 0 && (a.reps == 0 || a.n_gen == 0) {
        bail!("--reps and --n-gen must be at least 1 (or --n-prompt 0 to skip timing)");
    }
    let mut setup = Setup::new(ctx, &a.common)?;
    let base_row = setup.evaluate(ctx, "base (F32)", None)?;
    let (plain, plain_s) = convert(ctx, &setup, None, false)?;
    let (plain_row, plain) = evaluate(ctx, &mut setup, plain, "W8A8 (no smoothing)")?;
    drop(plain);
    // (row, seconds) per α; the first α's model is kept for timing.
    let mut sq_rows = Vec::new();
    let mut first = None;
    for &alpha in &alphas {
        let name = format!(
            "SmoothQuant W8A8 α={alpha}{}",
            if a.smooth_down { " +down" } else { "" }
        );
        let (m, secs) = convert(ctx, &setup, Some(alpha), a.smooth_down)?;
        let (row, m) = evaluate(ctx, &mut setup, m, &name)?;
        sq_rows.push((row, secs));
        if first.is_none() {
            first = Some(m);
        }
    }
    let sq = first.expect("at least one alpha");

    let base_mb = setup.loaded.model.weight_bytes_per_token() as f64 / 1e6;
    let sq_mb = sq.weight_bytes_per_token() as f64 / 1e6;
    let mut table = String::from(
        "| model | perplexity | Δ vs base | weight MB read per token | convert s |\n|---|---|---|---|---|\n",
    );
    let rows: Vec<(&Row, f64, f64)> = [(&base_row, base_mb, 0.0), (&plain_row, sq_mb, plain_s)]
        .into_iter()
        .chain(sq_rows.iter().map(|(r, s)| (r, sq_mb, *s)))
        .collect();
    for (r, mb, secs) in rows {
        let d = r.ppl - base_row.ppl;
        table.push_str(&format!(
            "| {} | {:.3} ± {:.3} | {:+.3} ({:+.2}%) | {mb:.1} | {secs:.0} |\n",
            r.name,
            r.ppl,
            r.ppl_stderr,
            d,
            100.0 * d / base_row.ppl
        ));
    }
    println!("{table}");

    let mut speeds = Vec::new();
    if a.n_prompt > 0 {
        speeds = race(
            ctx,
            &[
                ("F32 (GEMM path)", &setup.loaded.model, base_mb),
                ("W8A8 (int8 GEMM)", &sq, sq_mb),
            ],
            a,
        )?;
        let mut t = format!(
            "| path | pp{} t/s | tg{} t/s | weight MB/token |\n|---|---|---|---|\n",
            a.n_prompt, a.n_gen
        );
        for s in &speeds {
            t.push_str(&format!(
                "| {} | {:.1} ± {:.1} | {:.1} ± {:.1} | {:.1} |\n",
                s.name, s.pp.0, s.pp.1, s.tg.0, s.tg.1, s.weight_mb
            ));
        }
        t.push_str(&format!(
            "\nW8A8 / F32: prompt processing {:.2}x, generation {:.2}x ({} threads, kernel {})\n",
            speeds[1].pp.0 / speeds[0].pp.0,
            speeds[1].tg.0 / speeds[0].tg.0,
            rayon::current_num_threads(),
            smelt_kernels::variant().name()
        ));
        println!("{t}");
        table.push('\n');
        table.push_str(&t);
    }
    std::fs::create_dir_all(&a.out)?;
    let all_rows: Vec<&Row> = [&base_row, &plain_row]
        .into_iter()
        .chain(sq_rows.iter().map(|(r, _)| r))
        .collect();
    let mut md = format!(
        "# SmoothQuant W8A8: {}\n\nHeld-out perplexity (Shakespeare tragedies, {} windows of {}), calibration {} (seed {}).\n\n{table}\n## Greedy samples\n\n",
        setup.loaded.file.path.display(),
        a.common.eval_chunks,
        a.common.ctx,
        a.common.calib,
        a.common.seed,
    );
    for r in &all_rows {
        md.push_str(&format!("- **{}**: {}\n", r.name, r.sample));
    }
    write_atomic(&a.out.join("smoothquant.md"), md.as_bytes())?;
    write_atomic(
        &a.out.join("smoothquant.json"),
        &serde_json::to_vec_pretty(&serde_json::json!({
            "rows": all_rows,
            "speed": speeds,
            "alpha": alphas,
            "smooth_down": a.smooth_down,
        }))?,
    )?;
    let mut rec = ctx.record("llm-smoothquant");
    rec.input("model", setup.loaded.file.path.display().to_string())
        .setting("alpha", &alphas)
        .setting("smooth_down", a.smooth_down)
        .setting("calib", &a.common.calib)
        .metric("ppl_base", base_row.ppl)
        .metric("ppl_w8a8_plain", plain_row.ppl)
        .metric("ppl_smoothquant", sq_rows[0].0.ppl);
    rec.write(&ctx.runs_dir)?;
    eprintln!("wrote {}/smoothquant.{{md,json}}", a.out.display());
    Ok(())
}

/// Times every model on the same random tokens, alternating models within each repetition
/// so that load from other work falls on all of them alike.
fn race(ctx: &Context, models: &[(&str, &Llama, f64)], a: &SmoothArgs) -> Result<Vec<Speed>> {
    let bar = crate::progress::bar((models.len() * (a.reps + 1)) as u64, "timing", ctx.quiet);
    let mut pp = vec![Vec::new(); models.len()];
    let mut tg = vec![Vec::new(); models.len()];
    for rep in 0..=a.reps {
        for (i, (_, m, _)) in models.iter().enumerate() {
            let mut rng = Xorshift(0x2545_f491_4f6c_dd1d ^ rep as u64);
            let p = a.n_prompt as f64 / time_test(m, Test::Prompt, a.n_prompt, 0, &mut rng)?;
            let g = a.n_gen as f64 / time_test(m, Test::Generate, a.n_gen, 0, &mut rng)?;
            // Repetition 0 warms up.
            if rep > 0 {
                pp[i].push(p);
                tg[i].push(g);
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(models
        .iter()
        .enumerate()
        .map(|(i, (name, _, mb))| Speed {
            name: name.to_string(),
            pp: mean_sd(&pp[i]),
            tg: mean_sd(&tg[i]),
            weight_mb: *mb,
        })
        .collect())
}
