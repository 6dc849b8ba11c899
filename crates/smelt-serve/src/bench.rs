//! The serving load generator behind `smelt bench serve`: streamed completion requests with
//! Poisson arrivals (seeded) under a concurrency cap, timed per token on the client. The
//! definitions are vLLM's `benchmark_serving`: TTFT = arrival of the first non-empty text chunk;
//! TPOT = (E2E − TTFT) / (output tokens − 1); ITL = gaps between consecutive text chunks;
//! output tokens from the server's usage report. Any OpenAI-compatible server that accepts
//! token-id prompts and `ignore_eos` (smelt, llama-server, vLLM) can be measured the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smelt_quant::rng::Rng;
use tokio::sync::Semaphore;

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server base URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// `model` sent with each request.
    pub model: String,
    /// Bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Mean arrivals per second (Poisson); infinite sends them all at once.
    pub rate: f64,
    /// Seed of the arrival times.
    pub seed: u64,
    /// Prompt token ids and tokens to generate, one per request.
    pub requests: Vec<(Vec<u32>, usize)>,
}

/// What one request measured.
#[derive(Debug, Clone, Default)]
pub struct RequestResult {
    /// Error text if it failed.
    pub error: Option<String>,
    /// Prompt tokens sent.
    pub prompt_tokens: usize,
    /// Tokens generated (the server's usage, else text chunks).
    pub output_tokens: usize,
    /// Seconds to the first text.
    pub ttft: f64,
    /// Seconds to the end.
    pub e2e: f64,
    /// Seconds between consecutive text chunks.
    pub itl: Vec<f64>,
}

/// Mean and percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dist {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Dist {
    /// Of `seconds` (linear interpolation between ranks, as numpy's percentile).
    pub fn of(seconds: &[f64]) -> Self {
        if seconds.is_empty() {
            return Self::default();
        }
        let mut v: Vec<f64> = seconds.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let x = p / 100.0 * (v.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
        };
        Self {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Wall seconds from the first send to the last answer.
    pub duration: f64,
    /// Requests that finished.
    pub completed: usize,
    /// Requests that failed (first error kept in `first_error`).
    pub failed: usize,
    /// The first failure's text.
    pub first_error: Option<String>,
    /// Prompt tokens of completed requests.
    pub input_tokens: usize,
    /// Generated tokens of completed requests.
    pub output_tokens: usize,
    /// Time to first token.
    pub ttft: Dist,
    /// Time per output token after the first.
    pub tpot: Dist,
    /// Inter-token latency.
    pub itl: Dist,
    /// End-to-end latency.
    pub e2e: Dist,
}

impl Report {
    /// Completed requests per second.
    pub fn request_throughput(&self) -> f64 {
        self.completed as f64 / self.duration
    }

    /// Generated tokens per second.
    pub fn output_throughput(&self) -> f64 {
        self.output_tokens as f64 / self.duration
    }
}

/// Runs the load and gathers the results; fails only if no HTTP client can be built.
pub async fn run_load(spec: &LoadSpec) -> Result<Report, reqwest::Error> {
    // A fresh connection per request: servers that close kept-alive connections after a few
    // requests (cpp-httplib in llama-server does after 5) would otherwise race the reuse.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(0)
        .build()?;
    let limit = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let mut rng = Rng::new(spec.seed);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (prompt, max_tokens) in spec.requests.iter().cloned() {
        if spec.rate.is_finite() && spec.rate > 0.0 {
            let gap = -(1.0 - rng.uniform()).ln() / spec.rate;
            tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        }
        let permit = limit.clone().acquire_owned().await.expect("open semaphore");
        let (client, spec) = (client.clone(), spec.clone());
        tasks.spawn(async move {
            let r = one_request(&client, &spec, prompt, max_tokens).await;
            drop(permit);
            r
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.unwrap_or_else(|e| RequestResult {
            error: Some(format!("task failed: {e}")),
            ..Default::default()
        }));
    }
    Ok(summarize(&results, start.elapsed().as_secs_f64()))
}

/// Folds per-request results into the report.
pub fn summarize(results: &[RequestResult], duration: f64) -> Report {
    let ok: Vec<&RequestResult> = results.iter().filter(|r| r.error.is_none()).collect();
    let tpot: Vec<f64> = ok
        .iter()
        .filter(|r| r.output_tokens > 1)
        .map(|r| (r.e2e - r.ttft) / (r.output_tokens - 1) as f64)
        .collect();
    let itl: Vec<f64> = ok.iter().flat_map(|r| r.itl.iter().copied()).collect();
    Report {
        duration,
        completed: ok.len(),
        failed: results.len() - ok.len(),
        first_error: results.iter().find_map(|r| r.error.clone()),
        input_tokens: ok.iter().map(|r| r.prompt_tokens).sum(),
        output_tokens: ok.iter().map(|r| r.output_tokens).sum(),
        ttft: Dist::of(&ok.iter().map(|r| r.ttft).collect::<Vec<_>>()),
        tpot: Dist::of(&tpot),
        itl: Dist::of(&itl),
        e2e: Dist::of(&ok.iter().map(|r| r.e2e).collect::<Vec<_>>()),
    }
}

async fn one_request(
    client: &reqwest::Client,
    spec: &LoadSpec,
    prompt: Vec<u32>,
    max_tokens: usize,
) -> RequestResult {
    let mut r = RequestResult {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let body = json!({
        "model": spec.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    });
    let t0 = Instant::now();
    let mut req = client
        .post(format!("{}/v1/completions", spec.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = &spec.api_key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let mut resp = match req.send().await {
        Ok(resp) if resp.status().is_success() => resp,
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            r.error = Some(format!("HTTP {status}: {text}"));
            return r;
        }
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let (mut buf, mut last, mut chunks, mut usage) = (String::new(), None::<Instant>, 0, None);
    loop {
        let bytes = match resp.chunk().await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                r.error = Some(e.to_string());
                return r;
            }
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    r.error = Some(format!("not JSON: {data}"));
                    return r;
                };
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    usage = Some(n as usize);
                }
                let text = v["choices"][0]["text"].as_str().unwrap_or("");
                if !text.is_empty() {
                    let now = Instant::now();
                    match last {
                        None => r.ttft = (now - t0).as_secs_f64(),
                        Some(t) => r.itl.push((now - t).as_secs_f64()),
                    }
                    last = Some(now);
                    chunks += 1;
                }
            }
        }
    }
    r.e2e = t0.elapsed().as_secs_f64();
    r.output_tokens = usage.unwrap_or(chunks);
    if last.is_none() {
        r.error = Some("no text came back".into());
    }
    r
}

/// Reads one un-labelled sample `name` from a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let d = Dist::of(&[0.001, 0.002, 0.003, 0.004]);
        assert!((d.mean - 2.5).abs() < 1e-9 && (d.p50 - 2.5).abs() < 1e-9);
        assert!((d.p90 - 3.7).abs() < 1e-9 && (d.p99 - 3.97).abs() < 1e-9);
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        let r = RequestResult {
            output_tokens: 5,
            ttft: 0.1,
            e2e: 0.5,
            itl: vec![0.1; 4],
            ..Default::default()
        };
        let rep = summarize(&[r], 1.0);
        assert!((rep.tpot.mean - 100.0).abs() < 1e-9);
        assert_eq!((rep.completed, rep.output_tokens), (1, 5));
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let page = "# HELP x\nsmelt:a_total 3\nsmelt:a 7\n";
        assert_eq!(metric(page, "smelt:a"), Some(7.0));
        assert_eq!(metric(page, "smelt:a_total"), Some(3.0));
        assert_eq!(metric(page, "smelt:b"), None);
    }
}
