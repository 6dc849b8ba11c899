//! `smelt bench serve`: load a running OpenAI-compatible server (smelt's or another) with
//! Shakespeare prompts of set token lengths and report vLLM's serving metrics; from smelt's
//! `/metrics` also the KV waste and the prefix-cache hit rate over the run.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use smelt_quant::rng::Rng;
use smelt_serve::bench::{Dist, LoadSpec, Report, metric, run_load};

use crate::Context;

/// `smelt bench serve` settings.
#[derive(clap::Args, Clone)]
pub struct ServeBenchArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// `model` to request [default: the first from /v1/models].
    #[arg(long)]
    pub model: Option<String>,
    /// Tokenizer for the prompts: a .gguf path or model asset (the served model's).
    #[arg(long, default_value = "smollm2-135m")]
    pub tokenizer: String,
    /// Prompt text: a file, or `shakespeare`.
    #[arg(long, default_value = "shakespeare")]
    pub text: String,
    /// Requests to send.
    #[arg(long, default_value_t = 64)]
    pub num_prompts: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Mean request arrivals per second (Poisson); `inf` sends all at once.
    #[arg(long, default_value_t = f64::INFINITY)]
    pub rate: f64,
    /// Prompt tokens per request (after the shared prefix).
    #[arg(long, default_value_t = 128)]
    pub input_len: usize,
    /// Tokens to generate per request.
    #[arg(long, default_value_t = 64)]
    pub output_len: usize,
    /// Spread of both lengths: each is drawn uniformly from len·(1 ± ratio), as vLLM's
    /// random dataset does.
    #[arg(long, default_value_t = 0.0)]
    pub range_ratio: f64,
    /// Tokens of a shared prefix (a system prompt) in front of every prompt.
    #[arg(long, default_value_t = 0)]
    pub prefix_len: usize,
    /// Seed of the prompts, lengths and arrival times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bearer token for the server.
    #[arg(long, env = "SMELT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A length drawn uniformly from `len·(1 ± ratio)` (at least 1), as vLLM's random dataset does.
fn around(rng: &mut Rng, len: usize, ratio: f64) -> usize {
    let lo = ((len as f64) * (1.0 - ratio)).round().max(1.0) as usize;
    let hi = ((len as f64) * (1.0 + ratio)).round().max(lo as f64) as usize;
    lo + rng.below(hi - lo + 1)
}

/// Runs the load against `args.url` and prints the report.
pub fn run(ctx: &Context, args: &ServeBenchArgs) -> Result<()> {
    if args.num_prompts == 0 || args.concurrency == 0 || args.input_len == 0 || args.output_len == 0
    {
        bail!("--num-prompts, --concurrency, --input-len and --output-len must be at least 1");
    }
    if !(0.0..1.0).contains(&args.range_ratio) {
        bail!("--range-ratio must be in [0, 1)");
    }
    let path = super::gguf::resolve_model(ctx, &args.tokenizer)?;
    let file = smelt_gguf::GgufFile::open(&path)?;
    let tok = smelt_models::tokenizer::from_gguf(&file.header)?;
    let text = super::perplexity::read_text(ctx, &args.text)?;
    // Enough text for the windows: the first ~600 KB.
    let mut end = text.len().min(600_000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let ids = tok.encode(&text[..end], false);
    let longest =
        args.prefix_len + ((args.input_len as f64) * (1.0 + args.range_ratio)) as usize + 1;
    if ids.len() < 2 * longest {
        bail!(
            "the text has only {} tokens; shorten --input-len/--prefix-len",
            ids.len()
        );
    }
    let mut rng = Rng::new(args.seed);
    let prefix = &ids[..args.prefix_len];
    let requests: Vec<(Vec<u32>, usize)> = (0..args.num_prompts)
        .map(|_| {
            let n = around(&mut rng, args.input_len, args.range_ratio);
            let at = args.prefix_len + rng.below(ids.len() - longest - args.prefix_len);
            let prompt = [prefix, &ids[at..at + n]].concat();
            (prompt, around(&mut rng, args.output_len, args.range_ratio))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let get = |p: &str| {
            let mut r = client.get(format!("{}{p}", args.url));
            if let Some(k) = &args.api_key {
                r = r.header("authorization", format!("Bearer {k}"));
            }
            r.send()
        };
        let model = match &args.model {
            Some(m) => m.clone(),
            None => {
                let v: serde_json::Value = serde_json::from_str(
                    &get("/v1/models")
                        .await
                        .with_context(|| format!("reaching {}", args.url))?
                        .text()
                        .await?,
                )?;
                v["data"][0]["id"]
                    .as_str()
                    .context("the server lists no model at /v1/models")?
                    .to_string()
            }
        };
        let scrape = || async {
            match get("/metrics").await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        };
        println!(
            "smelt bench serve: {} `{model}`: {} prompts, input {} + prefix {}, output {}, range ±{:.0}%, concurrency {}, rate {}, seed {}",
            args.url,
            args.num_prompts,
            args.input_len,
            args.prefix_len,
            args.output_len,
            args.range_ratio * 100.0,
            args.concurrency,
            args.rate,
            args.seed
        );
        let before = scrape().await;
        let spec = LoadSpec {
            url: args.url.clone(),
            model,
            api_key: args.api_key.clone(),
            concurrency: args.concurrency,
            rate: args.rate,
            seed: args.seed,
            requests,
        };
        let report = run_load(&spec).await.context("building the HTTP client")?;
        let after = scrape().await;
        print_report(&report, &before, &after);
        if report.completed == 0 {
            bail!(
                "no request completed: {}",
                report.first_error.unwrap_or_default()
            );
        }
        Ok(())
    })
}

fn print_report(r: &Report, before: &str, after: &str) {
    let line = |k: &str, v: String| println!("{k:<40}{v:>12}");
    println!("{:=^52}", " Serving Benchmark Result ");
    line("Successful requests:", r.completed.to_string());
    line("Failed requests:", r.failed.to_string());
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
    line("Benchmark duration (s):", format!("{:.2}", r.duration));
    line("Total input tokens:", r.input_tokens.to_string());
    line("Total generated tokens:", r.output_tokens.to_string());
    line(
        "Request throughput (req/s):",
        format!("{:.2}", r.request_throughput()),
    );
    line(
        "Output token throughput (tok/s):",
        format!("{:.2}", r.output_throughput()),
    );
    line(
        "Total token throughput (tok/s):",
        format!(
            "{:.2}",
            (r.input_tokens + r.output_tokens) as f64 / r.duration
        ),
    );
    let dist = |title: &str, short: &str, d: Dist| {
        println!("{:-^52}", format!(" {title} "));
        line(&format!("Mean {short} (ms):"), format!("{:.2}", d.mean));
        line(&format!("Median {short} (ms):"), format!("{:.2}", d.p50));
        line(&format!("P90 {short} (ms):"), format!("{:.2}", d.p90));
        line(&format!("P99 {short} (ms):"), format!("{:.2}", d.p99));
    };
    dist("Time to First Token", "TTFT", r.ttft);
    dist("Time per Output Token (excl. 1st token)", "TPOT", r.tpot);
    dist("Inter-token Latency", "ITL", r.itl);
    dist("End-to-end Latency", "E2EL", r.e2e);
    let delta = |name: &str| Some(metric(after, name)? - metric(before, name)?);
    if let (Some(alloc), Some(unused)) = (
        delta("smelt:kv_slots_allocated_total"),
        delta("smelt:kv_slots_unused_total"),
    ) {
        println!("{:-^52}", " Server (smelt /metrics) ");
        if alloc > 0.0 {
            line(
                "KV waste (unused / allocated slots):",
                format!("{:.2}%", 100.0 * unused / alloc),
            );
        }
        if let (Some(q), Some(h)) = (
            delta("smelt:prefix_cache_queries_total"),
            delta("smelt:prefix_cache_hits_total"),
        ) && q > 0.0
        {
            line(
                "Prefix cache hit rate (tokens):",
                format!("{:.2}%", 100.0 * h / q),
            );
        }
        if let Some(p) = delta("smelt:num_preemptions_total") {
            line("Preemptions:", format!("{p:.0}"));
        }
    }
    println!("{}", "=".repeat(52));
}
