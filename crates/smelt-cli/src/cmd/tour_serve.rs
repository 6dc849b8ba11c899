//! The tour's serving step: `smelt serve` in-process on a free local port, a few concurrent chat
//! requests through its OpenAI-compatible HTTP API, and what `/metrics` says afterwards.

use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use smelt_serve::bench::metric;

/// What the step measured.
pub struct ServeDemo {
    /// (question, answer) per request.
    pub answers: Vec<(String, String)>,
    /// Tokens generated in all.
    pub tokens: u64,
    /// Wall seconds for all requests together.
    pub seconds: f64,
    /// Mean time to first token, seconds (from the server's histogram).
    pub mean_ttft: f64,
    /// KV blocks in use once every request is done (0 expected).
    pub kv_usage_after: f64,
}

/// Starts the server on 127.0.0.1:0, asks `questions` concurrently (each with the JSON schema
/// its answer is held to, if any), stops it.
pub fn run(
    l: super::run::Loaded,
    questions: &[(&str, Option<&str>)],
    max_tokens: usize,
) -> Result<ServeDemo> {
    let mut args = super::serve::default_args("smollm2-135m");
    args.max_num_seqs = questions.len().max(1);
    args.served_model_name = Some("smollm2-135m".into());
    let (state, engine_thread) = super::serve::start_engine(l, &args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let demo = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(smelt_serve::server::serve(
            listener,
            state,
            async {
                let _ = stop_rx.await;
            },
            std::time::Duration::from_secs(5),
        ));
        let client = reqwest::Client::new();
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, &(q, schema)) in questions.iter().enumerate() {
            // With a schema, room for the object to close.
            let tokens = if schema.is_some() { max_tokens * 3 } else { max_tokens };
            let body = json!({
                "model": "smollm2-135m", "max_tokens": tokens, "temperature": 0,
                "messages": [{"role": "user", "content": q}],
            })
            .to_string();
            let body = match schema {
                // The schema's text as written: its property order is the answer's, and
                // serde_json's `Value` would sort the keys.
                Some(schema) => {
                    serde_json::from_str::<serde::de::IgnoredAny>(schema)
                        .context("the tour's schema")?;
                    format!(
                        r#"{{"response_format": {{"type": "json_schema", "json_schema": {{"name": "answer", "schema": {schema}}}}}, {}"#,
                        &body[1..]
                    )
                }
                None => body,
            };
            let (client, url) = (client.clone(), format!("{base}/v1/chat/completions"));
            tasks.spawn(async move {
                let r = client.post(url).body(body).send().await?;
                anyhow::Ok((i, r.text().await?))
            });
        }
        let mut answers = vec![(String::new(), String::new()); questions.len()];
        let mut tokens = 0;
        while let Some(r) = tasks.join_next().await {
            let (i, text) = r??;
            let v: Value = serde_json::from_str(&text).context("the server's answer")?;
            let answer = v["choices"][0]["message"]["content"]
                .as_str()
                .with_context(|| format!("no answer in {text}"))?;
            tokens += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            let (q, schema) = questions[i];
            let q = if schema.is_some() {
                format!("{q} (json_schema)")
            } else {
                q.to_string()
            };
            answers[i] = (q, answer.to_string());
        }
        let seconds = t.elapsed().as_secs_f64();
        let page = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let _ = stop_tx.send(());
        server.await??;
        let ttft = |n: &str| metric(&page, &format!("smelt:time_to_first_token_seconds_{n}"));
        anyhow::Ok(ServeDemo {
            answers,
            tokens,
            seconds,
            mean_ttft: ttft("sum").unwrap_or(0.0) / ttft("count").unwrap_or(1.0).max(1.0),
            kv_usage_after: metric(&page, "smelt:gpu_cache_usage_perc").unwrap_or(f64::NAN),
        })
    })?;
    drop(runtime);
    let _ = engine_thread.join();
    Ok(demo)
}
