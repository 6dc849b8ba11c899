//! `smelt run`: generate text from a prompt with a GGUF llama model, streaming it.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use smelt_models::generate::{GenerateOptions, generate_observed};
use smelt_models::llama::Llama;
use smelt_models::sampler::SamplerConfig;
use smelt_models::tokenizer::Tokenizer;

use crate::Context;

/// Sampling settings shared by `run` and `chat` (llama.cpp's names and meanings).
#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 picks the most likely token (greedy).
    #[arg(long)]
    pub temp: Option<f32>,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this cumulative probability (1 = all).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best token's probability (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise recently seen tokens by this factor (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty considers.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the text contains this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Worker threads [default: all cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

impl SamplingArgs {
    /// The sampler settings, with `default_temp` when `--temp` is not given.
    pub fn config(&self, default_temp: f32) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temp.unwrap_or(default_temp),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
            ..SamplerConfig::default()
        }
    }
}

/// Arguments of `smelt run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A .gguf path, or a model asset name (e.g. smollm2-135m).
    model: String,
    /// The prompt (special tokens such as <|im_start|> are recognized).
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 64)]
    tokens: usize,
    /// Context length [default: prompt + tokens].
    #[arg(long)]
    ctx: Option<usize>,
    /// Print the N highest logits of every step to stderr as JSON lines (for comparisons).
    #[arg(long, value_name = "N")]
    logits_top: Option<usize>,
    /// Write a Chrome/Perfetto trace of load, tokenize, prefill, decode, sample and every
    /// layer's ops to FILE, and print the per-phase table and roofline.
    #[arg(long, value_name = "FILE")]
    trace: Option<std::path::PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// A loaded model with its tokenizer and end-of-turn tokens.
pub struct Loaded {
    /// The mapped file.
    pub file: Arc<smelt_gguf::GgufFile>,
    /// The model.
    pub model: Llama,
    /// Its tokenizer.
    pub tok: Tokenizer,
    /// Tokens that end a generation (EOS, end of turn).
    pub stop_tokens: Vec<u32>,
    /// The BOS token prompts start with, if the model wants one.
    pub bos: Option<u32>,
    /// Seconds to load.
    pub load_seconds: f64,
}

impl Loaded {
    /// Token ids of a prompt (special tokens recognized), with BOS first if the model wants it
    /// and the text does not already start with it.
    pub fn prompt_ids(&self, text: &str) -> Vec<u32> {
        let ids = self.tok.encode(text, true);
        match self.bos {
            Some(b) if ids.first() != Some(&b) => std::iter::once(b).chain(ids).collect(),
            _ => ids,
        }
    }
}

/// Sets the worker threads (once per process) and loads `model` (path or asset name).
pub fn load(ctx: &Context, model: &str, threads: Option<usize>) -> Result<Loaded> {
    if let Some(t) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .context("setting up the worker threads")?;
    }
    let path = super::gguf::resolve_model(ctx, model)?;
    let t = Instant::now();
    let file = Arc::new(smelt_gguf::GgufFile::open(&path)?);
    let tok = smelt_models::tokenizer::from_gguf(&file.header)?;
    let model = Llama::load(&file).context("loading the model")?;
    let stop_tokens = smelt_models::tokenizer::end_of_generation(&file.header);
    let bos = smelt_models::tokenizer::bos_to_add(&file.header);
    Ok(Loaded {
        bos,
        file,
        model,
        tok,
        stop_tokens,
        load_seconds: t.elapsed().as_secs_f64(),
    })
}

/// `smelt run`.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    super::profile::start(args.trace.as_deref());
    let load_span = smelt_trace::span("phase", "load");
    let l = load(ctx, &args.model, args.sampling.threads)?;
    drop(load_span);
    let tokenize_span = smelt_trace::span("phase", "tokenize");
    let prompt = l.prompt_ids(&args.prompt);
    drop(tokenize_span);
    let n_ctx = args.ctx.unwrap_or(prompt.len() + args.tokens);
    let mut cache = l.model.new_cache(n_ctx);
    anyhow::ensure!(!prompt.is_empty(), "the prompt is empty");
    anyhow::ensure!(
        prompt.len() <= cache.capacity(),
        "the prompt has {} tokens but the context holds {}; raise --ctx",
        prompt.len(),
        cache.capacity()
    );
    // The last token drawn is never fed back, so a full context still yields one more. Past
    // that the answer ends with `length`, as llama.cpp's does, not with an error.
    let room = cache.capacity() + 1 - prompt.len();
    if args.tokens > room {
        eprintln!(
            "note: the context holds {} tokens; generating at most {room} after the {}-token prompt",
            cache.capacity(),
            prompt.len()
        );
    }
    let opts = GenerateOptions {
        max_tokens: args.tokens.min(room),
        sampler: args.sampling.config(0.0),
        stop_tokens: l.stop_tokens.clone(),
        stop_strings: args.sampling.stop.clone(),
    };
    print!("{}", args.prompt);
    std::io::stdout().flush()?;
    let mut step = 0usize;
    let g = generate_observed(
        &l.model,
        &mut cache,
        &prompt,
        &opts,
        &|ids| l.tok.decode_bytes(ids),
        |piece| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        },
        |logits, chosen| {
            if let Some(n) = args.logits_top {
                let mut idx: Vec<usize> = (0..logits.len()).collect();
                idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
                let top: Vec<(usize, f32)> = idx.iter().take(n).map(|&i| (i, logits[i])).collect();
                eprintln!(
                    "{}",
                    serde_json::json!({"step": step, "token": chosen,
                        "text": l.tok.decode(&[chosen]), "top": top})
                );
            }
            step += 1;
        },
    )?;
    println!();
    eprintln!(
        "load {:.2} s; prompt {} tokens in {:.2} s ({:.1} t/s); generated {} tokens in {:.2} s ({:.1} t/s); kernels: {}; stop: {:?}",
        l.load_seconds,
        prompt.len(),
        g.prompt_seconds,
        prompt.len() as f64 / g.prompt_seconds.max(1e-9),
        g.tokens.len(),
        g.generate_seconds,
        g.tokens.len().saturating_sub(1) as f64 / g.generate_seconds.max(1e-9),
        smelt_kernels::variant().name(),
        g.finish
    );
    super::profile::finish(args.trace.as_deref(), rayon::current_num_threads())
}
