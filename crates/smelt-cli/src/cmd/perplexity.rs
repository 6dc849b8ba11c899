//! `smelt perplexity`: llama-perplexity's measurement (windows of `--ctx`, second half scored),
//! with ± standard error, and KL divergence against a reference model's logits.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use smelt_models::perplexity::{PerplexityOptions, perplexity};

use crate::Context;

/// Arguments of `smelt perplexity`.
#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// A .gguf path, or a model asset name (e.g. smollm2-135m).
    model: String,
    /// The text: a file, or `shakespeare` for the Shakespeare asset.
    #[arg(short = 'f', long)]
    file: String,
    /// Window length in tokens.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Score only the first N windows.
    #[arg(long)]
    chunks: Option<usize>,
    /// Also report KL divergence from this reference model (same vocabulary).
    #[arg(long)]
    kl_base: Option<String>,
    /// Worker threads [default: all cores].
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

pub(crate) fn read_text(ctx: &Context, what: &str) -> Result<String> {
    let path = if what == "shakespeare" {
        let asset = smelt_data::assets::find("shakespeare").expect("catalogued");
        ctx.fetcher().ensure(asset)?.join("shakespeare.txt")
    } else {
        PathBuf::from(what)
    };
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `smelt perplexity`.
pub fn run(ctx: &Context, args: &PerplexityArgs) -> Result<()> {
    // Perplexity needs no batch invariance: F32 weights may take the GEMM path.
    let mut l = super::run::load(ctx, &args.model, args.threads)?;
    l.model.use_float_gemm();
    let mut reference = args
        .kl_base
        .as_deref()
        .map(|m| super::run::load(ctx, m, None))
        .transpose()?;
    if let Some(r) = &mut reference {
        r.model.use_float_gemm();
    }
    // Checked here, before `windows` below divides by the context.
    if args.ctx < 8 {
        bail!("--ctx {}: windows need at least 8 tokens", args.ctx);
    }
    if args.chunks == Some(0) {
        bail!("--chunks 0: score at least one window");
    }
    if let Some(r) = &reference {
        // Same vocabulary size is not enough: KL compares token i with token i.
        let key = "tokenizer.ggml.tokens";
        if r.file.header.get(key) != l.file.header.get(key) {
            bail!(
                "--kl-base: the reference model's tokens differ from this model's; KL needs the same tokenizer"
            );
        }
        if r.model.config.n_ctx < args.ctx {
            bail!(
                "--kl-base: the reference model's context is {} tokens, under --ctx {}",
                r.model.config.n_ctx,
                args.ctx
            );
        }
    }
    let text = read_text(ctx, &args.file)?;
    let bos = l.bos;
    let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
    tokens.extend(bos);
    tokens.extend(l.tok.encode(&text, false));
    let opts = PerplexityOptions {
        n_ctx: args.ctx,
        max_chunks: args.chunks,
        bos,
    };
    let windows = opts
        .max_chunks
        .map_or(tokens.len() / args.ctx, |c| c.min(tokens.len() / args.ctx));
    eprintln!(
        "{} tokens; scoring {windows} windows of {} (second half of each){}",
        tokens.len(),
        args.ctx,
        if bos.is_some() { ", BOS first" } else { "" }
    );
    let mut record = ctx.record("perplexity");
    record
        .input("model", l.file.path.display().to_string())
        .input("text", &args.file)
        .setting("ctx", args.ctx)
        .setting("chunks", windows)
        .setting("kernel", smelt_kernels::variant().name());
    let t = std::time::Instant::now();
    let bar = crate::progress::bar(windows as u64, "windows", ctx.quiet);
    let report = perplexity(
        &l.model,
        reference.as_ref().map(|r| &r.model),
        &tokens,
        &opts,
        |_, _, ppl| {
            bar.set_message(format!("ppl {ppl:.4}"));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let running: Vec<String> = report
        .running
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}]{p:.4}", i + 1))
        .collect();
    println!("{}", running.join(","));
    println!(
        "Final estimate: PPL = {:.4} +/- {:.5}  ({} windows, {} scored tokens, {:.1} s)",
        report.ppl, report.ppl_stderr, report.chunks, report.tokens, secs
    );
    record
        .metric("ppl", report.ppl)
        .metric("ppl_stderr", report.ppl_stderr)
        .metric("scored_tokens", report.tokens);
    if let Some(kl) = &report.kl {
        println!(
            "KL divergence from {}: {:.6} ± {:.6} nats per token; same top token {:.2}%",
            args.kl_base.as_deref().unwrap_or(""),
            kl.mean,
            kl.stderr,
            kl.same_top_percent
        );
        record
            .metric("kl_mean", kl.mean)
            .metric("kl_stderr", kl.stderr)
            .metric("same_top_percent", kl.same_top_percent);
    }
    record.timing("perplexity", t.elapsed());
    let rec = record.write(&ctx.runs_dir)?;
    if !ctx.quiet {
        eprintln!("run record: {}", rec.display());
    }
    Ok(())
}
