//! `smelt run`: generate text from a prompt with a GGUF llama model.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};
use smelt_models::generate::{Sampling, generate};

use crate::Context;

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
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Keep only the k most likely tokens when sampling (0 = all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Context length [default: prompt + tokens].
    #[arg(long)]
    ctx: Option<usize>,
}

/// `smelt run`.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    let path = super::gguf::resolve_model(ctx, &args.model)?;
    let file = std::sync::Arc::new(smelt_gguf::GgufFile::open(&path)?);
    let t_load = Instant::now();
    let tok = smelt_models::tokenizer::from_gguf(&file.header)?;
    let model = smelt_models::llama::Llama::load(&file).context("loading the model")?;
    let load_s = t_load.elapsed().as_secs_f64();
    let prompt = tok.encode(&args.prompt, true);
    let n_ctx = args.ctx.unwrap_or(prompt.len() + args.tokens);
    let mut cache = model.new_cache(n_ctx);
    let eos: Vec<u32> = file
        .header
        .get("tokenizer.ggml.eos_token_id")
        .and_then(|v| v.as_u64())
        .map(|id| vec![id as u32])
        .unwrap_or_default();
    let sampling = if args.temp <= 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Temperature {
            temperature: args.temp,
            top_k: args.top_k,
            seed: args.seed,
        }
    };
    print!("{}", args.prompt);
    std::io::stdout().flush()?;
    let t0 = Instant::now();
    let mut ids: Vec<u32> = Vec::new();
    let mut shown = String::new();
    let mut first_token_s = 0.0;
    let out = generate(
        &model,
        &mut cache,
        &prompt,
        args.tokens,
        sampling,
        &eos,
        |id| {
            if ids.is_empty() {
                first_token_s = t0.elapsed().as_secs_f64();
            }
            ids.push(id);
            // Decode everything so far and print the new suffix, so multi-byte characters split
            // across tokens appear once they are complete.
            let text = tok.decode(&ids);
            if let Some(new) = text
                .strip_prefix(shown.as_str())
                .filter(|n| !n.ends_with('\u{fffd}'))
            {
                print!("{new}");
                let _ = std::io::stdout().flush();
                shown = text;
            }
        },
    )?;
    let total_s = t0.elapsed().as_secs_f64();
    println!();
    let gen_s = (total_s - first_token_s).max(1e-9);
    eprintln!(
        "load {load_s:.2} s; prompt {} tokens in {first_token_s:.2} s ({:.1} t/s); generated {} tokens in {gen_s:.2} s ({:.1} t/s) [reference f32 kernels]",
        prompt.len(),
        prompt.len() as f64 / first_token_s.max(1e-9),
        out.len(),
        out.len().saturating_sub(1) as f64 / gen_s
    );
    Ok(())
}
