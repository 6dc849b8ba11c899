//! `smelt llm quantize | compare`: post-training quantization of a llama GGUF's layer weights
//! (RTN, GPTQ, AWQ) from its F32-dequantized base, evaluated by perplexity on held-out Shakespeare
//! (the tragedies; calibration windows come from the other plays).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use smelt_compress::llm::calib::{sample_windows, split_plays};
use smelt_compress::llm::grid::WeightGrid;
use smelt_compress::llm::{CalibInputs, Method, PtqConfig, QuantizedModel, quantize_llama};
use smelt_models::llama::Llama;
use smelt_models::perplexity::{PerplexityOptions, perplexity};

use super::run::Loaded;
use crate::Context;

/// `smelt llm ...`.
#[derive(clap::Subcommand)]
pub enum LlmCommand {
    /// Quantize the layer weights with one method and grid; print held-out perplexity.
    ///
    /// Example: smelt llm quantize --method gptq --bits 4 --group 128
    Quantize(QuantizeArgs),
    /// Methods × grids → perplexity, Δ vs base, bits/param, time; a table, a plot and samples.
    ///
    /// Example: smelt llm compare --methods rtn,gptq,awq --grids 4:128,3:128
    Compare(CompareArgs),
    /// SmoothQuant W8A8: smooth, convert every layer matrix to int8 × per-token int8, and
    /// compare perplexity and speed against the F32 base in the same run.
    ///
    /// Example: smelt llm smoothquant --alpha 0.5 --calib 32x512
    Smoothquant(super::llm_smooth::SmoothArgs),
}

/// Settings shared by the verbs.
#[derive(clap::Args)]
pub(super) struct Common {
    /// A .gguf path or model asset; its weights are dequantized to F32 as the base.
    #[arg(long, default_value = "smollm2-135m")]
    pub(super) model: String,
    /// Calibration windows × tokens per window.
    #[arg(long, default_value = "128x512")]
    pub(super) calib: String,
    /// Seed for the calibration windows.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Held-out windows of `--ctx` tokens to score.
    #[arg(long, default_value_t = 40)]
    pub(super) eval_chunks: usize,
    /// Perplexity window.
    #[arg(long, default_value_t = 512)]
    pub(super) ctx: usize,
    /// GPTQ dampening, a fraction of the Hessian's mean diagonal.
    #[arg(long, default_value_t = 0.01)]
    damp: f64,
    /// GPTQ act-order (desc_act) with static groups.
    #[arg(long)]
    act_order: bool,
    /// GPTQ: fit each group's range by error search (AutoGPTQ's `mse`) instead of min/max.
    #[arg(long)]
    mse: bool,
    /// AWQ: calibration rows kept for the scale and clipping search.
    #[arg(long, default_value_t = 2048)]
    awq_tokens: usize,
    /// GPTQ, AWQ: calibrate each layer after the first on the outputs of the already-quantized
    /// layers (`quantized`, GPTQ's order) or on the float model's activations (`float`,
    /// AutoAWQ's order).
    #[arg(long, default_value = "quantized", value_parser = parse_calib_inputs)]
    calib_inputs: CalibInputs,
    /// Symmetric grid (zero point fixed at the middle code).
    #[arg(long)]
    sym: bool,
    /// Worker threads [default: all cores].
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Also write the calibration windows and the held-out tokens as JSON (`calib`: token-id
    /// lists; `eval`: one token-id list; `bos`: the id each window starts with, or null), so an
    /// outside tool (AutoAWQ, AutoGPTQ) can run on exactly this data; see
    /// benches/awq_vs_autoawq.sh.
    #[arg(long)]
    calib_out: Option<PathBuf>,
}

/// Arguments of `smelt llm quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    common: Common,
    /// rtn, gptq or awq.
    #[arg(long, default_value = "gptq")]
    method: String,
    /// Bits per weight, 2..=8.
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// Input columns per group; -1 for per-channel.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    group: i64,
    /// Write the quantized model here as GGUF (4-bit grids on 32-aligned groups pack into
    /// Q4_0/Q4_1 blocks that llama.cpp runs; other grids are stored as F32 values).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Also write a Hugging Face GPTQ-format directory (qweight/qzeros/scales/g_idx +
    /// quantize_config.json; 2, 4 or 8 bits).
    #[arg(long)]
    hf_dir: Option<PathBuf>,
}

/// `--calib-inputs`: `quantized` or `float`.
fn parse_calib_inputs(s: &str) -> Result<CalibInputs, String> {
    CalibInputs::parse(s).ok_or_else(|| format!("{s:?}: expected `quantized` or `float`"))
}

/// Arguments of `smelt llm compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Comma-separated methods: rtn, gptq, awq (per grid) and nf4 (QLoRA's NF4 with double
    /// quantization, block 64 / 256; one row, independent of the grids).
    #[arg(long, default_value = "rtn,gptq,awq")]
    methods: String,
    /// Comma-separated BITS:GROUP grids (GROUP -1 = per-channel).
    #[arg(long, default_value = "4:128,3:128")]
    grids: String,
    /// Where the table, plot and samples go.
    #[arg(long, default_value = "llm-ptq")]
    out: PathBuf,
}

/// `smelt llm`.
pub fn run(ctx: &Context, command: LlmCommand) -> Result<()> {
    match command {
        LlmCommand::Quantize(a) => {
            let method = parse_method(&a.method)?;
            let grid = parse_grid(a.bits, a.group, a.common.sym)?;
            if a.hf_dir.is_some() && !32u8.is_multiple_of(grid.bits) {
                bail!(
                    "--hf-dir: {} bits do not pack into 32-bit words (use 2, 4 or 8)",
                    grid.bits
                );
            }
            let mut setup = Setup::new(ctx, &a.common)?;
            // Before the long run: a phi3 result cannot be written yet, nor a Hugging Face
            // Gemma (the exporter knows llama and Qwen).
            let arch = setup.loaded.model.config.arch;
            if arch == smelt_models::llama::Arch::Phi3 && (a.output.is_some() || a.hf_dir.is_some())
            {
                bail!(
                    "-o/--hf-dir: writing a quantized phi3 model is not supported yet (its q/k/v \
                     and gate/up matrices are stored stacked); `smelt llm compare` measures it"
                );
            }
            if arch.is_gemma() && a.hf_dir.is_some() {
                bail!(
                    "--hf-dir: exporting {} to Hugging Face is not supported yet (llama, \
                     qwen2 and qwen3 are); -o writes the quantized GGUF",
                    arch.name()
                );
            }
            let base = setup.evaluate(ctx, "base (F32)", None)?;
            let (row, q, model) = setup.run_one(ctx, method, grid)?;
            println!("{}", table(&[base, row]));
            if let Some(out) = &a.output {
                let w = smelt_compress::llm::pack::gguf_with(&setup.loaded.file, &model, &q)
                    .map_err(anyhow::Error::msg)?;
                w.write(out)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
            if let Some(dir) = &a.hf_dir {
                smelt_compress::llm::hf_gptq::export_hf_gptq(&setup.loaded.file, &model, &q, dir)
                    .map_err(anyhow::Error::msg)?;
                eprintln!("wrote {}", dir.display());
            }
            Ok(())
        }
        LlmCommand::Compare(a) => compare(ctx, &a),
        LlmCommand::Smoothquant(a) => super::llm_smooth::run(ctx, &a),
    }
}

fn parse_method(s: &str) -> Result<Method> {
    Method::parse(s.trim()).with_context(|| {
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        format!("unknown method {s:?} (known: {})", all.join(", "))
    })
}

fn parse_grid(bits: u8, group: i64, sym: bool) -> Result<WeightGrid> {
    let group = match group {
        -1 => None,
        g if g > 0 => Some(g as usize),
        g => bail!("group {g}: use a positive size or -1 for per-channel"),
    };
    let grid = WeightGrid { bits, sym, group };
    grid.validate().map_err(anyhow::Error::msg)?;
    Ok(grid)
}

pub(super) fn parse_calib(s: &str) -> Result<(usize, usize)> {
    let (n, l) = s
        .split_once('x')
        .with_context(|| format!("--calib {s:?}: expected WINDOWSxTOKENS, e.g. 128x512"))?;
    let p = |v: &str| v.trim().parse::<usize>().ok().filter(|&v| v > 0);
    match (p(n), p(l)) {
        (Some(n), Some(l)) => Ok((n, l)),
        _ => bail!("--calib {s:?}: both numbers must be positive integers"),
    }
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `base (F32)`, `gptq 4b g128 asym`, ...
    pub name: String,
    /// The grid (`4b g128 asym`), empty for the base.
    pub grid: String,
    /// Held-out perplexity.
    pub ppl: f64,
    /// Its standard error.
    pub ppl_stderr: f64,
    /// Layer-weight bits per parameter (32 for the base).
    pub bits_per_param: f64,
    /// Layer weights' size in MB at that width.
    pub layer_mb: f64,
    /// Seconds spent quantizing (0 for the base).
    pub quant_seconds: f64,
    /// Greedy continuation of the sample prompt.
    pub sample: String,
}

pub(super) struct Setup {
    pub(super) loaded: Loaded,
    pub(super) calib: Vec<Vec<u32>>,
    eval_tokens: Vec<u32>,
    common_ctx: usize,
    eval_chunks: usize,
    damp: f64,
    act_order: bool,
    mse: bool,
    awq_tokens: usize,
    calib_inputs: CalibInputs,
    layer_params: usize,
}

const SAMPLE_PROMPT: &str = "To be, or not to be, that is the question:";

impl Setup {
    pub(super) fn new(ctx: &Context, c: &Common) -> Result<Self> {
        let (n, len) = parse_calib(&c.calib)?;
        if c.ctx < 8 || c.eval_chunks == 0 {
            bail!(
                "--ctx {} --eval-chunks {}: the window needs at least 8 tokens and one chunk",
                c.ctx,
                c.eval_chunks
            );
        }
        if c.awq_tokens == 0 {
            bail!("--awq-tokens 0: AWQ's search needs at least one calibration row");
        }
        if !(c.damp.is_finite() && c.damp > 0.0) {
            bail!(
                "--damp {}: must be a positive fraction such as 0.01",
                c.damp
            );
        }
        let mut loaded = super::run::load(ctx, &c.model, c.threads)?;
        loaded.model.dequantize_to_f32()?;
        let (calib, calib_count, eval_tokens) = calibration(ctx, &loaded, n, len, c.seed)?;
        if let Some(path) = &c.calib_out {
            let json =
                serde_json::json!({ "calib": calib, "eval": eval_tokens, "bos": loaded.bos });
            write_atomic(path, json.to_string().as_bytes())?;
        }
        let cfg = &loaded.model.config;
        let kv = cfg.head_dim() * cfg.n_head_kv;
        let layer_params = cfg.n_layer
            * (2 * cfg.q_dim() * cfg.n_embd + 2 * kv * cfg.n_embd + 3 * cfg.n_embd * cfg.n_ff);
        eprintln!(
            "calibration: {n} windows x {len} tokens (seed {}) from {} tokens of non-tragedy plays; evaluation: {} windows of {} from {} tokens of the tragedies",
            c.seed,
            calib_count,
            c.eval_chunks,
            c.ctx,
            eval_tokens.len()
        );
        Ok(Self {
            loaded,
            calib,
            eval_tokens,
            common_ctx: c.ctx,
            eval_chunks: c.eval_chunks,
            damp: c.damp,
            act_order: c.act_order,
            mse: c.mse,
            awq_tokens: c.awq_tokens,
            calib_inputs: c.calib_inputs,
            layer_params,
        })
    }

    /// Held-out perplexity and a greedy sample of the model as it stands.
    pub(super) fn evaluate(
        &self,
        ctx: &Context,
        name: &str,
        q: Option<(&QuantizedModel, f64)>,
    ) -> Result<Row> {
        let opts = PerplexityOptions {
            n_ctx: self.common_ctx,
            max_chunks: Some(self.eval_chunks),
            bos: self.loaded.bos,
        };
        let windows = (self.eval_tokens.len() / self.common_ctx).min(self.eval_chunks);
        let bar = crate::progress::bar(windows as u64, "eval windows", ctx.quiet);
        bar.set_message(name.to_string());
        let rep = perplexity(
            &self.loaded.model,
            None,
            &self.eval_tokens,
            &opts,
            |_, _, _| bar.inc(1),
        )?;
        bar.finish_and_clear();
        let sample = self.sample()?;
        let (bits_per_param, quant_seconds) = match q {
            Some((q, secs)) => {
                let (n, bits) = q.size();
                (bits / n as f64, secs)
            }
            None => (32.0, 0.0),
        };
        let row = Row {
            name: name.to_string(),
            grid: q.map(|(q, _)| q.config.grid.name()).unwrap_or_default(),
            ppl: rep.ppl,
            ppl_stderr: rep.ppl_stderr,
            bits_per_param,
            layer_mb: self.layer_params as f64 * bits_per_param / 8e6,
            quant_seconds,
            sample,
        };
        eprintln!("{name}: perplexity {:.4} ± {:.4}", row.ppl, row.ppl_stderr);
        Ok(row)
    }

    fn sample(&self) -> Result<String> {
        let l = &self.loaded;
        let prompt = l.prompt_ids(SAMPLE_PROMPT);
        let mut cache = l.model.new_cache(prompt.len() + 32);
        let opts = smelt_models::generate::GenerateOptions {
            max_tokens: 24,
            sampler: smelt_models::sampler::SamplerConfig::greedy(),
            stop_tokens: l.stop_tokens.clone(),
            stop_strings: vec![],
        };
        let g = smelt_models::generate::generate(
            &l.model,
            &mut cache,
            &prompt,
            &opts,
            &|ids| l.tok.decode_bytes(ids),
            |_| {},
        )?;
        Ok(g.text.replace('\n', " / "))
    }

    /// Quantizes a fresh copy of the base with `method` and `grid`, then evaluates it.
    fn run_one(
        &mut self,
        ctx: &Context,
        method: Method,
        grid: WeightGrid,
    ) -> Result<(Row, QuantizedModel, Llama)> {
        let cfg = PtqConfig {
            method,
            grid,
            damp: self.damp,
            act_order: self.act_order && method == Method::Gptq,
            mse: self.mse && method == Method::Gptq,
            awq_tokens: self.awq_tokens,
            inputs: self.calib_inputs,
        };
        // The calibration order is named only where it is not the default.
        let inputs = match cfg.inputs {
            CalibInputs::Float if method != Method::Rtn => " float-inputs",
            _ => "",
        };
        let name = format!(
            "{} {}{}{}{inputs}",
            method.name(),
            grid.name(),
            if cfg.act_order { " act-order" } else { "" },
            if cfg.mse { " mse" } else { "" }
        );
        let fresh = fresh_base(&self.loaded)?;
        let base_model = std::mem::replace(&mut self.loaded.model, fresh);
        let n_layer = self.loaded.model.config.n_layer;
        let bar = crate::progress::bar(n_layer as u64, "layers", ctx.quiet);
        bar.set_message(name.clone());
        let t = Instant::now();
        let q = quantize_llama(&mut self.loaded.model, &cfg, &self.calib, |_| bar.inc(1))?;
        let secs = t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let row = self.evaluate(ctx, &name, Some((&q, secs)));
        let quantized = std::mem::replace(&mut self.loaded.model, base_model);
        let mut row = row?;
        row.quant_seconds = secs;
        let mut rec = ctx.record("llm-quantize");
        rec.input("model", self.loaded.file.path.display().to_string())
            .setting("config", cfg)
            .setting("calib_windows", self.calib.len())
            .metric("ppl", row.ppl)
            .metric("ppl_stderr", row.ppl_stderr)
            .metric("bits_per_param", row.bits_per_param)
            .timing("quantize", t.elapsed());
        rec.write(&ctx.runs_dir)?;
        Ok((row, q, quantized))
    }
}

/// Calibration windows (`n` × `len` tokens, seeded) from every play but the tragedies, the
/// number of tokens they were drawn from, and the held-out tragedies' tokens (BOS first).
pub(super) fn calibration(
    ctx: &Context,
    loaded: &Loaded,
    n: usize,
    len: usize,
    seed: u64,
) -> Result<(Vec<Vec<u32>>, usize, Vec<u32>)> {
    let n_ctx = loaded.model.config.n_ctx;
    if len > n_ctx {
        bail!(
            "--calib {n}x{len}: windows of {len} tokens do not fit the model's context of {n_ctx}"
        );
    }
    let asset = smelt_data::assets::find("shakespeare").expect("catalogued");
    let dir = ctx.fetcher().ensure(asset)?;
    let text =
        std::fs::read_to_string(dir.join("shakespeare.txt")).context("reading shakespeare.txt")?;
    let plays: Vec<smelt_data::shakespeare::PlayIndex> = serde_json::from_slice(
        &std::fs::read(dir.join("plays.json")).context("reading plays.json")?,
    )
    .context("parsing plays.json")?;
    let (calib_text, eval_text) = split_plays(&text, &plays).map_err(anyhow::Error::msg)?;
    let calib_tokens = loaded.tok.encode(&calib_text, false);
    let calib =
        sample_windows(&calib_tokens, n, len, seed, loaded.bos).map_err(anyhow::Error::msg)?;
    let eval_tokens: Vec<u32> = loaded
        .bos
        .into_iter()
        .chain(loaded.tok.encode(&eval_text, false))
        .collect();
    Ok((calib, calib_tokens.len(), eval_tokens))
}

impl Setup {
    /// QLoRA's storage: every layer matrix (flattened row-major) in NF4 blocks of 64 with the
    /// absmax values quantized again to 8 bits in blocks of 256; evaluated on the dequantized
    /// values. Prints the stored bits per parameter next to QLoRA's formula.
    fn run_nf4(&mut self, ctx: &Context) -> Result<Row> {
        use smelt_quant::nf4_dq;
        let (block, dq_block) = (64, nf4_dq::DEFAULT_DQ_BLOCK);
        let fresh = fresh_base(&self.loaded)?;
        let base_model = std::mem::replace(&mut self.loaded.model, fresh);
        let t = Instant::now();
        let (mut n, mut bits) = (0usize, 0f64);
        for l in 0..self.loaded.model.config.n_layer {
            for which in smelt_models::llama::Linear::ALL {
                let w = self.loaded.model.linear(l, which);
                let (rows, cols) = (w.rows, w.cols);
                let q = nf4_dq::quantize(&w.to_f32(), block, dq_block);
                n += rows * cols;
                bits += q.bits_per_param() * (rows * cols) as f64;
                let mut m = smelt_kernels::QMatrix::from_f32(rows, cols, &nf4_dq::dequantize(&q))
                    .map_err(anyhow::Error::msg)?;
                m.set_float_gemm(true);
                self.loaded.model.set_linear(l, which, m)?;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let bpp = bits / n as f64;
        eprintln!(
            "NF4 double quantization: {bpp:.4} bits/param stored (codes, 8-bit absmax, f32 scale per {dq_block} absmax, one f32 offset per matrix); QLoRA's formula 4 + 8/{block} + 32/({block}·{dq_block}) = {:.4}",
            nf4_dq::bits_per_param_formula(block, dq_block)
        );
        let row = self.evaluate(ctx, &format!("nf4-dq b{block} dq{dq_block}"), None);
        self.loaded.model = base_model;
        let mut row = row?;
        row.grid = "nf4".into();
        row.bits_per_param = bpp;
        row.layer_mb = self.layer_params as f64 * bpp / 8e6;
        row.quant_seconds = secs;
        Ok(row)
    }
}

/// The base model again (F32-dequantized from the mapped file).
pub(super) fn fresh_base(l: &Loaded) -> Result<Llama> {
    let mut m = Llama::load(&l.file)?;
    m.dequantize_to_f32()?;
    Ok(m)
}

fn table(rows: &[Row]) -> String {
    let base = &rows[0];
    let mut s = String::from(
        "| model | perplexity | Δ vs base | gap closed vs RTN | layer bits/param | layer MB | quantize s |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let d = r.ppl - base.ppl;
        // RTN of the same grid, when it is in the table.
        let rtn = rows
            .iter()
            .find(|o| o.name.starts_with("rtn ") && o.grid == r.grid && !r.grid.is_empty());
        let closed = match rtn {
            Some(o) if !r.name.starts_with("rtn") && o.ppl > base.ppl => {
                format!("{:.0}%", 100.0 * (o.ppl - r.ppl) / (o.ppl - base.ppl))
            }
            _ => "".into(),
        };
        s.push_str(&format!(
            "| {} | {:.3} ± {:.3} | {}{:.3} ({:+.2}%) | {closed} | {:.3} | {:.1} | {:.0} |\n",
            r.name,
            r.ppl,
            r.ppl_stderr,
            if d >= 0.0 { "+" } else { "" },
            d,
            100.0 * d / base.ppl,
            r.bits_per_param,
            r.layer_mb,
            r.quant_seconds
        ));
    }
    s
}

fn compare(ctx: &Context, a: &CompareArgs) -> Result<()> {
    let with_nf4 = a.methods.split(',').any(|m| m.trim() == "nf4");
    let methods: Vec<Method> = a
        .methods
        .split(',')
        .filter(|m| m.trim() != "nf4")
        .map(parse_method)
        .collect::<Result<_>>()?;
    let grids: Vec<WeightGrid> = a
        .grids
        .split(',')
        .map(|g| {
            let (b, s) = g
                .split_once(':')
                .with_context(|| format!("--grids {g:?}: expected BITS:GROUP, e.g. 4:128"))?;
            let bits = b.trim().parse().with_context(|| format!("bits in {g:?}"))?;
            let group = s
                .trim()
                .parse()
                .with_context(|| format!("group in {g:?}"))?;
            parse_grid(bits, group, a.common.sym)
        })
        .collect::<Result<_>>()?;
    let mut setup = Setup::new(ctx, &a.common)?;
    let base = setup.evaluate(ctx, "base (F32)", None)?;
    let mut rows = vec![base.clone()];
    for &grid in &grids {
        for &m in &methods {
            rows.push(setup.run_one(ctx, m, grid)?.0);
        }
    }
    if with_nf4 {
        rows.push(setup.run_nf4(ctx)?);
    }
    let t = table(&rows);
    println!("{t}");
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut md = format!(
        "# LLM weight PTQ: {}\n\nHeld-out perplexity (Shakespeare tragedies, {} windows of {}), calibration {} (seed {}).\n\n{t}\n## Greedy samples\n\nPrompt: `{SAMPLE_PROMPT}`\n\n",
        setup.loaded.file.path.display(),
        a.common.eval_chunks,
        a.common.ctx,
        a.common.calib,
        a.common.seed
    );
    for r in &rows {
        md.push_str(&format!("- **{}**: {}\n", r.name, r.sample));
    }
    write_atomic(&a.out.join("compare.md"), md.as_bytes())?;
    write_atomic(
        &a.out.join("compare.json"),
        &serde_json::to_vec_pretty(&rows)?,
    )?;
    plot(&a.out.join("compare.png"), &rows, &methods, &grids, &base)?;
    eprintln!("wrote {}/compare.{{md,json,png}}", a.out.display());
    Ok(())
}

fn plot(
    path: &Path,
    rows: &[Row],
    methods: &[Method],
    grids: &[WeightGrid],
    base: &Row,
) -> Result<()> {
    let series: Vec<String> = methods.iter().map(|m| m.name().to_string()).collect();
    let groups: Vec<smelt_plot::BarGroup> = grids
        .iter()
        .map(|g| smelt_plot::BarGroup {
            label: g.name(),
            values: methods
                .iter()
                .map(|m| {
                    rows.iter()
                        .find(|r| r.name.starts_with(m.name()) && r.grid == g.name())
                        .map_or(f64::NAN, |r| r.ppl - base.ppl)
                })
                .collect(),
        })
        .collect();
    smelt_plot::GroupedBars {
        title: &format!("Perplexity increase over the F32 base ({:.2})", base.ppl),
        y_label: "Δ perplexity (held-out)",
        series: &series,
        groups: &groups,
        log_y: false,
    }
    .write_png(path)?;
    Ok(())
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    smelt_files::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}
