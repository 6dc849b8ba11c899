//! `smelt bench MODEL`: prompt-processing and generation speed the way llama-bench measures it
//! (random tokens, a fresh context per repetition, one warm-up run), plus the weight bytes read
//! per generated token and the bandwidth that implies, next to a read bandwidth measured in
//! the same run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use smelt_models::kv_cache::KvCache;
use smelt_models::llama::{Llama, Logits};

use crate::Context;

/// Arguments of `smelt bench MODEL`.
#[derive(clap::Args, Clone)]
pub struct ModelBenchArgs {
    /// A .gguf path, or a model asset name (e.g. smollm2-135m).
    pub model: Option<String>,
    /// Prompt tokens per prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens per generation test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Positions already in each test's context before it is timed (llama-bench's `-d`):
    /// `pp512 @ d2048` is 512 prompt tokens after 2048, `tg128 @ d2048` 128 generated ones.
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub depth: usize,
    /// Worker threads [default: all cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: usize,
    /// Print one JSON object per test instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Batched decode instead of pp/tg: for each size B (and 1, for the ratio), B sequences
    /// step together through the paged KV pool as the server batches them, `-n` steps each;
    /// prints total decode tokens/s and the ratio to one sequence.
    #[arg(short = 'b', long, value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// With --batch: prompt tokens each sequence holds before the timed steps.
    #[arg(long, default_value_t = 64)]
    pub batch_prompt: usize,
    /// Write a Chrome/Perfetto trace of every repetition (per layer, op and product) to FILE,
    /// and print the per-phase table and roofline.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
}

/// A small seeded generator for random benchmark tokens.
pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    pub(crate) fn below(&mut self, n: usize) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as u32
    }
}

pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// A fresh context for `depth + n` positions holding `depth` random tokens (untimed).
fn context_at(model: &Llama, depth: usize, n: usize, rng: &mut Xorshift) -> Result<KvCache> {
    let mut cache = model.new_cache(depth + n);
    ensure!(
        depth + n <= cache.capacity(),
        "{depth} + {n} positions do not fit the model's {}-position context",
        cache.capacity()
    );
    prompt(model, depth, &mut cache, rng)?;
    Ok(cache)
}

/// Runs `n` random prompt tokens through `cache` in batches of 512.
fn prompt(model: &Llama, n: usize, cache: &mut KvCache, rng: &mut Xorshift) -> Result<()> {
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(model.config.n_vocab)).collect();
    for chunk in tokens.chunks(smelt_models::generate::PROMPT_BATCH) {
        model.forward_batch(chunk, cache, Logits::Last)?;
    }
    Ok(())
}

/// llama-bench's two tests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Test {
    /// `n` random prompt tokens in batches of 512.
    Prompt,
    /// `n` tokens generated one at a time.
    Generate,
}

/// Seconds `test` takes for `n` tokens in a fresh context after `depth` others.
pub(crate) fn time_test(
    model: &Llama,
    test: Test,
    n: usize,
    depth: usize,
    rng: &mut Xorshift,
) -> Result<f64> {
    let mut cache = context_at(model, depth, n, rng)?;
    let t = Instant::now();
    match test {
        Test::Prompt => prompt(model, n, &mut cache, rng)?,
        Test::Generate => {
            for _ in 0..n {
                model.forward(rng.below(model.config.n_vocab), &mut cache)?;
            }
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One warm-up and one timed run of each test: (prompt tokens/s, generation tokens/s).
pub fn quick(model: &Llama, n_prompt: usize, n_gen: usize) -> Result<(f64, f64)> {
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    time_test(model, Test::Prompt, n_prompt, 0, &mut rng)?;
    let pp = n_prompt as f64 / time_test(model, Test::Prompt, n_prompt, 0, &mut rng)?;
    time_test(model, Test::Generate, n_gen, 0, &mut rng)?;
    let tg = n_gen as f64 / time_test(model, Test::Generate, n_gen, 0, &mut rng)?;
    Ok((pp, tg))
}

/// `smelt bench MODEL`.
pub fn run(ctx: &Context, args: &ModelBenchArgs) -> Result<()> {
    let name = args
        .model
        .as_deref()
        .context("which model? e.g. smelt bench smollm2-135m")?;
    ensure!(args.reps >= 1, "--reps must be at least 1");
    if args.batch.is_empty() {
        ensure!(
            args.n_prompt + args.n_gen > 0,
            "nothing to measure: give -p (prompt tokens) or -n (generated tokens) above 0"
        );
    } else {
        ensure!(
            args.n_gen > 0,
            "nothing to measure: --batch times generation; give -n above 0"
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("setting up the worker threads")?;
    let path = super::gguf::resolve_model(ctx, name)?;
    let file = Arc::new(smelt_gguf::GgufFile::open(&path)?);
    let model = Llama::load(&file).context("loading the model")?;
    let size = std::fs::metadata(&path)?.len();
    let params = file.parameter_count();
    let kernel = smelt_kernels::variant().name();
    let formats: Vec<String> = model
        .weight_formats()
        .iter()
        .map(|(f, n)| format!("{n}×{f}"))
        .collect();
    let mut record = ctx.record("bench model");
    record
        .input("model", path.display().to_string())
        .setting("threads", threads)
        .setting("reps", args.reps)
        .setting("kernel", kernel)
        .setting("weight_formats", &formats);
    let model_name = path
        .file_name()
        .map_or(name.into(), |f| f.to_string_lossy().to_string());
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    if !args.batch.is_empty() {
        super::profile::start(args.trace.as_deref());
        let rows = super::bench_batched::measure(
            &model,
            &args.batch,
            args.batch_prompt,
            args.n_gen,
            args.reps,
            &mut rng,
        )?;
        smelt_trace::pause();
        record.setting("batch_prompt", args.batch_prompt);
        for r in &rows {
            record.metric(
                &format!("tg{}_x{}_tokens_per_s", args.n_gen, r.batch),
                r.mean,
            );
        }
        super::bench_batched::print(&rows, &model_name, args.batch_prompt, args.n_gen);
        let rec = record.write(&ctx.runs_dir)?;
        if !ctx.quiet {
            eprintln!("run record: {}", rec.display());
        }
        return super::profile::finish(args.trace.as_deref(), threads);
    }
    let mut rows = Vec::new();
    let depth = args.depth;
    record.setting("depth", depth);
    for (test, n, kind) in [
        ("pp", args.n_prompt, Test::Prompt),
        ("tg", args.n_gen, Test::Generate),
    ] {
        if n == 0 {
            continue;
        }
        let once = |rng: &mut Xorshift| time_test(&model, kind, n, depth, rng);
        // llama-bench's names: "pp512", or "pp512 @ d2048" after 2048 positions.
        let name = match depth {
            0 => format!("{test}{n}"),
            d => format!("{test}{n} @ d{d}"),
        };
        once(&mut rng)?; // warm-up, as llama-bench does
        super::profile::start(args.trace.as_deref());
        let mut rates = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            let _rep = smelt_trace::span_owned("phase", || name.clone());
            rates.push(n as f64 / once(&mut rng)?);
        }
        smelt_trace::pause();
        let (m, sd) = mean_sd(&rates);
        let key = name.replace(" @ ", "_");
        record.metric(&format!("{key}_tokens_per_s"), m);
        record.metric(&format!("{key}_sd"), sd);
        rows.push((name, m, sd));
    }
    let weight_bytes = model.weight_bytes_per_token();
    let bw = super::bench::read_bandwidth_gbs(threads);
    record.metric("weight_bytes_per_token", weight_bytes);
    record.metric("read_bandwidth_gbs", bw);
    for (test, m, sd) in &rows {
        let achieved = if test.starts_with("tg") {
            Some(weight_bytes as f64 * m / 1e9)
        } else {
            None
        };
        if args.json {
            println!(
                "{}",
                serde_json::json!({"model": model_name, "size": size, "params": params,
                    "threads": threads, "kernel": kernel, "test": test, "avg_ts": m, "stddev_ts": sd,
                    "weight_bytes_per_token": weight_bytes, "achieved_gbs": achieved,
                    "read_bandwidth_gbs": bw})
            );
        }
    }
    if !args.json {
        println!("| model | size | params | kernel | threads | test | t/s |");
        println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        for (test, m, sd) in &rows {
            println!(
                "| {model_name} | {} | {:.2} M | {kernel} | {threads} | {test} | {m:.2} ± {sd:.2} |",
                smelt_files::human_bytes(size),
                params as f64 / 1e6
            );
        }
        println!(
            "\nweights read per generated token: {}",
            smelt_files::human_bytes(weight_bytes as u64)
        );
        if let Some((_, m, _)) = rows.iter().find(|r| r.0.starts_with("tg")) {
            let achieved = weight_bytes as f64 * m / 1e9;
            println!(
                "generation moves {achieved:.1} GB/s of weights; memory read bandwidth measured now: {bw:.1} GB/s ({:.0}%)",
                100.0 * achieved / bw
            );
        }
        println!("weight formats: {}", formats.join(", "));
    }
    let rec = record.write(&ctx.runs_dir)?;
    if !ctx.quiet && !args.json {
        eprintln!("run record: {}", rec.display());
    }
    super::profile::finish(args.trace.as_deref(), threads)
}
