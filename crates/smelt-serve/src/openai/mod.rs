//! The OpenAI-compatible API: `/v1/completions`, `/v1/chat/completions` (Server-Sent Events
//! ending in `data: [DONE]` when `stream` is set, usage with `stream_options.include_usage`),
//! `/v1/models`; errors in OpenAI's JSON shape. Request bodies are parsed by the handlers
//! ([`request`], not by an extractor) so every malformed body gets that shape and a 400.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smelt_models::chat::{ChatMessage, ChatTemplate};
use smelt_models::sampler::SamplerConfig;
use smelt_models::tokenizer::Tokenizer;
use tokio::sync::mpsc;

mod request;
mod response;
pub mod tool_parsers;
mod tools;

use request::{ChatBody, Common, CompletionBody, OneOrMany, PromptInput, grammar, parse};
use response::{Output, collect_response, stream_response};
use tool_parsers::ToolParser;
use tools::{AutoCalls, Calls, Plan};

use crate::engine::{EngineHandle, GenParams, MAX_TOP_LOGPROBS, Request, SubmitError};

/// What the handlers share.
pub struct AppState {
    /// The engine.
    pub engine: EngineHandle,
    /// The model's tokenizer.
    pub tok: Arc<Tokenizer>,
    /// The model's chat template.
    pub template: ChatTemplate,
    /// The name clients must ask for (`model`).
    pub model_name: String,
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// BOS token prompts start with, if the model wants one.
    pub bos: Option<u32>,
    /// End-of-sequence / end-of-turn tokens.
    pub stop_tokens: Vec<u32>,
    /// Set once shutdown begins: new requests get 503.
    pub shutting_down: AtomicBool,
    /// Unix time the server started (`created` of the model).
    pub started: u64,
    /// How answers to `tool_choice: "auto"` are read for calls (`--tool-call-parser`); without
    /// one, `"auto"` is a 400.
    pub tool_parser: Option<ToolParser>,
}

/// An error response in OpenAI's shape.
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: Option<&'static str>,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            code: None,
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            code: None,
        }
    }

    fn with(status: StatusCode, kind: &'static str, code: &'static str, m: String) -> Self {
        Self {
            status,
            message: m,
            kind,
            code: Some(code),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message, "type": self.kind, "param": null, "code": self.code,
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let m = e.to_string();
        match e {
            SubmitError::QueueFull => Self::with(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded",
                m,
            ),
            SubmitError::Stopped => Self::with(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "shutting_down",
                m,
            ),
            SubmitError::TooLong { .. } => Self::with(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
                m,
            ),
            SubmitError::Invalid(_) => Self::bad_request(m),
        }
    }
}

/// Checks the bearer token and that the server is still taking requests.
pub fn admit(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(key) = &state.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return Err(ApiError::with(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                "missing or wrong API key (send `Authorization: Bearer KEY`)".into(),
            ));
        }
    }
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(SubmitError::Stopped.into());
    }
    Ok(())
}

/// Most choices (prompts × n) one request may ask for.
const MAX_CHOICES: usize = 64;
/// Most stop strings a request may give (OpenAI takes 4; evaluation harnesses a handful).
const MAX_STOP_STRINGS: usize = 64;
/// Longest stop string, in bytes.
const MAX_STOP_BYTES: usize = 1024;
/// Most `stop_token_ids` a request may give.
const MAX_STOP_TOKENS: usize = 1024;

/// Which endpoint a generation answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

/// One prompt of a request: its tokens, and its text when echoed.
struct Prompt {
    tokens: Vec<u32>,
    echo: Option<String>,
}

/// A validated generation: prompts, settings, choices, streaming.
struct Job {
    kind: Kind,
    prompts: Vec<Prompt>,
    params: GenParams,
    n: usize,
    stream: bool,
    include_usage: bool,
    /// Log-probabilities asked for: `Some(k)` with k alternatives per token.
    logprobs: Option<usize>,
    /// The answers are tool calls of this kind.
    calls: Option<Calls>,
    /// The answers may hold calls in the model's format (`tool_choice: "auto"`).
    auto: Option<AutoCalls>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    fn job(
        &self,
        kind: Kind,
        prompts: Vec<Prompt>,
        c: Common,
        logprobs: Option<usize>,
    ) -> Result<Job, ApiError> {
        // Scoring the prompt: echo with log-probabilities (what evaluation harnesses send,
        // often with max_tokens 0).
        let echo = prompts.iter().any(|p| p.echo.is_some());
        let prompt_logprobs = echo && logprobs.is_some();
        if let Some(k) = logprobs
            && k > MAX_TOP_LOGPROBS
        {
            return Err(ApiError::bad_request(format!(
                "{k} alternatives per token asked for; at most {MAX_TOP_LOGPROBS}"
            )));
        }
        if let Some(t) = c.temperature
            && t < 0.0
        {
            return Err(ApiError::bad_request(format!(
                "temperature {t} is negative (0 is greedy)"
            )));
        }
        self.check_model(&c.model)?;
        let n = c.n.unwrap_or(1);
        if !(1..=16).contains(&n) {
            return Err(ApiError::bad_request(format!("n = {n} is outside 1..=16")));
        }
        if let Some(b) = c.best_of
            && b != n
        {
            return Err(ApiError::bad_request(format!(
                "best_of {b} other than n ({n}) is not supported"
            )));
        }
        if prompts.len() * n > MAX_CHOICES {
            return Err(ApiError::bad_request(format!(
                "{} prompts × n = {n} is {} choices; at most {MAX_CHOICES} per request",
                prompts.len(),
                prompts.len() * n
            )));
        }
        let longest = prompts.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
        let room = self.engine.max_context.saturating_sub(longest);
        let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
            Some(0) if !prompt_logprobs => {
                return Err(ApiError::bad_request(
                    "max_tokens must be at least 1 (0 only with echo and logprobs)",
                ));
            }
            Some(m) => m,
            // OpenAI's legacy completions default to 16; chat to "as long as fits".
            None if kind == Kind::Completion => 16.min(room.max(1)),
            None => room.max(1),
        };
        if let Some(m) = c.min_tokens
            && m > max_tokens
        {
            return Err(ApiError::bad_request(format!(
                "min_tokens {m} is over max_tokens {max_tokens}"
            )));
        }
        let seed = c.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        let sampler = SamplerConfig {
            temperature: c.temperature.unwrap_or(1.0),
            top_k: c.top_k.filter(|&k| k > 0).unwrap_or(0) as usize,
            top_p: c.top_p.unwrap_or(1.0),
            min_p: c.min_p.unwrap_or(0.0),
            // vLLM's repetition_penalty looks at the whole prompt and output.
            repeat_penalty: c.repetition_penalty.unwrap_or(1.0),
            repeat_last_n: usize::MAX,
            presence_penalty: c.presence_penalty.unwrap_or(0.0),
            frequency_penalty: c.frequency_penalty.unwrap_or(0.0),
            logit_bias: self.token_map(c.logit_bias.as_ref())?,
            seed,
        };
        sampler.validate().map_err(ApiError::bad_request)?;
        let vocab = self.tok.vocab_size();
        let extra_stops = c.stop_token_ids.clone().unwrap_or_default();
        if extra_stops.len() > MAX_STOP_TOKENS {
            return Err(ApiError::bad_request(format!(
                "stop_token_ids: {} ids; at most {MAX_STOP_TOKENS}",
                extra_stops.len()
            )));
        }
        if let Some(t) = extra_stops.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::bad_request(format!(
                "stop_token_ids: {t} is not a token (vocabulary {vocab})"
            )));
        }
        if kind == Kind::Completion && (c.tools.is_some() || c.tool_choice.is_some()) {
            return Err(ApiError::bad_request("tools are for chat completions"));
        }
        let (calls, auto, grammar) = match tools::plan(
            c.tools.as_deref(),
            c.tool_choice.as_ref(),
            c.parallel_tool_calls.unwrap_or(true),
            self.tool_parser,
        )? {
            Plan::Forced(..) if grammar(&c)?.is_some() => {
                return Err(ApiError::bad_request(
                    "a forced tool call and guided decoding cannot both hold the answer",
                ));
            }
            Plan::Forced(calls, g) => (Some(calls), None, Some(g)),
            Plan::Auto(auto) => (None, Some(auto), grammar(&c)?),
            Plan::Text => (None, None, grammar(&c)?),
        };
        let stop_strings = match c.stop {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        // Every token's text is searched for each stop string, and as much text as the
        // longest one is held back: both are bounded (OpenAI takes 4 strings).
        if stop_strings.len() > MAX_STOP_STRINGS {
            return Err(ApiError::bad_request(format!(
                "stop: {} strings; at most {MAX_STOP_STRINGS}",
                stop_strings.len()
            )));
        }
        if let Some(long) = stop_strings.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::bad_request(format!(
                "stop: a string of {} bytes; at most {MAX_STOP_BYTES}",
                long.len()
            )));
        }
        Ok(Job {
            kind,
            prompts,
            params: GenParams {
                max_tokens,
                sampler,
                stop_strings,
                stop_tokens: if c.ignore_eos {
                    extra_stops
                } else {
                    [self.stop_tokens.clone(), extra_stops].concat()
                },
                min_tokens: c.min_tokens.unwrap_or(0),
                keep_stop_string: c.include_stop_str_in_output,
                logprobs: logprobs.is_some(),
                top_logprobs: logprobs.unwrap_or(0),
                prompt_logprobs,
                grammar,
            },
            n,
            stream: c.stream,
            include_usage: c.stream_options.unwrap_or_default().include_usage,
            logprobs,
            calls,
            auto,
        })
    }

    /// OpenAI's `logit_bias` map (token ids as strings) as (token, bias) pairs.
    fn token_map(
        &self,
        bias: Option<&std::collections::HashMap<String, f32>>,
    ) -> Result<Vec<(u32, f32)>, ApiError> {
        let vocab = self.tok.vocab_size();
        bias.into_iter()
            .flatten()
            .map(|(k, &b)| match k.parse::<u32>() {
                Ok(t) if (t as usize) < vocab => Ok((t, b)),
                _ => Err(ApiError::bad_request(format!(
                    "logit_bias: {k:?} is not a token id (vocabulary {vocab})"
                ))),
            })
            .collect()
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let ids = self.tok.encode(text, true);
        match self.bos {
            Some(b) if ids.first() != Some(&b) => std::iter::once(b).chain(ids).collect(),
            _ => ids,
        }
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    let st = state.0.clone();
    let job = off_runtime(move || completion_job(&st, &body)).await?;
    run(state.0, job).await
}

/// A completion request's job: its prompts tokenized, its options checked.
fn completion_job(state: &AppState, body: &[u8]) -> Result<Job, ApiError> {
    let b: CompletionBody = parse(body)?;
    b.ignored.warn("/v1/completions");
    if b.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request(
            "suffix (text after an insertion point) is not supported",
        ));
    }
    let echo = b.echo;
    let text = |t: String| Prompt {
        tokens: state.encode(&t),
        echo: echo.then_some(t),
    };
    let ids = |tokens: Vec<u32>| Prompt {
        echo: echo.then(|| state.tok.decode(&tokens)),
        tokens,
    };
    // One prompt, or several (each with its n choices, numbered prompt by prompt).
    let prompts: Vec<Prompt> = match b.prompt {
        PromptInput::Text(t) => vec![text(t)],
        PromptInput::Texts(v) => v.into_iter().map(text).collect(),
        PromptInput::Tokens(t) => vec![ids(t)],
        PromptInput::TokenLists(v) => v.into_iter().map(ids).collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::bad_request("prompt is an empty list"));
    }
    if let Some(i) = prompts.iter().position(|p| p.tokens.is_empty()) {
        return Err(ApiError::bad_request(format!("prompt {i} is empty")));
    }
    if let Some(&bad) = prompts
        .iter()
        .flat_map(|p| &p.tokens)
        .find(|&&t| t as usize >= state.tok.vocab_size())
    {
        return Err(ApiError::bad_request(format!(
            "token id {bad} is outside the vocabulary"
        )));
    }
    // Legacy `logprobs: k`: the chosen tokens' log-probabilities and k alternatives each.
    let lp = b.logprobs.map(|k| k as usize);
    state.job(Kind::Completion, prompts, b.common, lp)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    let st = state.0.clone();
    let job = off_runtime(move || chat_job(&st, &body)).await?;
    run(state.0, job).await
}

/// A chat request's job: its messages rendered and tokenized, its options checked.
fn chat_job(state: &AppState, body: &[u8]) -> Result<Job, ApiError> {
    let b: ChatBody = parse(body)?;
    b.ignored.warn("/v1/chat/completions");
    if b.messages.is_empty() {
        return Err(ApiError::bad_request("messages is empty"));
    }
    let text = state
        .template
        .render_with_tools(&b.messages, b.common.tools.as_ref(), true)
        .map_err(ApiError::bad_request)?;
    let prompt = Prompt {
        tokens: state.encode(&text),
        echo: None,
    };
    let lp = match (b.logprobs, b.top_logprobs) {
        (false, Some(_)) => {
            return Err(ApiError::bad_request("top_logprobs needs logprobs: true"));
        }
        (false, None) => None,
        (true, k) => Some(k.unwrap_or(0)),
    };
    state.job(Kind::Chat, vec![prompt], b.common, lp)
}

/// Runs `f` (tokenizing, rendering, compiling a schema: work that grows with the request) on
/// tokio's blocking pool, so a long prompt does not hold a runtime worker that other
/// requests' streams need.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::with(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            format!("preparing the request failed: {e}"),
        ))
    })
}

#[derive(Deserialize)]
struct TokenizeBody {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    /// Whether a BOS the model wants goes first (prompts), as vLLM's `add_special_tokens`.
    #[serde(default = "yes")]
    add_special_tokens: bool,
    /// With `messages`, end with the assistant turn's opening.
    #[serde(default = "yes")]
    add_generation_prompt: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct DetokenizeBody {
    model: Option<String>,
    tokens: Vec<u32>,
}

impl AppState {
    fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != &self.model_name => Err(ApiError::with(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "the model `{m}` does not exist; this server has `{}`",
                    self.model_name
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// `POST /tokenize` (vLLM's): the token ids a prompt, or chat messages through the model's
/// template, would run as.
pub async fn tokenize(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    let st = state.0.clone();
    off_runtime(move || tokenize_body(&st, &body)).await
}

/// `/tokenize`'s answer to `body`.
fn tokenize_body(state: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let b: TokenizeBody = parse(body)?;
    state.check_model(&b.model)?;
    let tokens = match (b.prompt, b.messages) {
        (Some(p), None) if b.add_special_tokens => state.encode(&p),
        (Some(p), None) => state.tok.encode(&p, true),
        (None, Some(m)) => {
            let text = state
                .template
                .render(&m, b.add_generation_prompt)
                .map_err(ApiError::bad_request)?;
            state.encode(&text)
        }
        _ => return Err(ApiError::bad_request("give one of prompt and messages")),
    };
    Ok(axum::Json(json!({
        "tokens": tokens, "count": tokens.len(), "max_model_len": state.engine.max_context,
    }))
    .into_response())
}

/// `POST /detokenize` (vLLM's): the text of token ids.
pub async fn detokenize(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    let b: DetokenizeBody = parse(&body)?;
    state.check_model(&b.model)?;
    if let Some(&bad) = b
        .tokens
        .iter()
        .find(|&&t| t as usize >= state.tok.vocab_size())
    {
        return Err(ApiError::bad_request(format!(
            "token id {bad} is outside the vocabulary"
        )));
    }
    Ok(axum::Json(json!({"prompt": state.tok.decode(&b.tokens)})).into_response())
}

/// `GET /v1/models`.
pub async fn models(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    Ok(axum::Json(json!({"object": "list", "data": [{
        "id": state.model_name, "object": "model", "created": state.started,
        "owned_by": "smelt", "max_model_len": state.engine.max_context,
    }]}))
    .into_response())
}

/// Submits the job's sequences (n per prompt) and answers with JSON or an event stream.
async fn run(state: Arc<AppState>, job: Job) -> Result<Response, ApiError> {
    let choices = job.prompts.len() * job.n;
    // Every prompt is checked before any is queued, so a bad one in a list leaves nothing
    // running behind the error.
    let max = state.engine.max_context;
    if let Some(p) = job
        .prompts
        .iter()
        .find(|p| p.tokens.len().saturating_add(job.params.max_tokens) > max)
    {
        return Err(SubmitError::TooLong {
            max,
            prompt: p.tokens.len(),
            completion: job.params.max_tokens,
        }
        .into());
    }
    let cap = choices * (job.params.max_tokens + 4);
    let (tx, rx) = mpsc::channel(cap);
    let arrival = Instant::now();
    for index in 0..choices {
        let mut params = job.params.clone();
        params.sampler.seed = params.sampler.seed.wrapping_add(index as u64);
        state.engine.submit(Request {
            prompt: job.prompts[index / job.n].tokens.clone(),
            params,
            index,
            events: tx.clone(),
            arrival,
        })?;
    }
    drop(tx);
    let out = Output {
        id: format!(
            "{}-{:x}",
            if job.kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            unix_now() ^ (arrival.elapsed().as_nanos() as u64) ^ rand_bits()
        ),
        created: unix_now(),
        model: state.model_name.clone(),
        kind: job.kind,
        logprobs: job.logprobs.is_some(),
        tok: state.tok.clone(),
        n: job.n,
        prompt: job
            .prompts
            .iter()
            .map(|p| {
                if job.params.prompt_logprobs {
                    p.tokens.clone()
                } else {
                    Vec::new()
                }
            })
            .collect(),
        echo: job.prompts.into_iter().map(|p| p.echo).collect(),
        calls: job.calls,
        auto: job.auto,
    };
    if job.stream {
        Ok(stream_response(out, rx, job.include_usage))
    } else {
        collect_response(out, rx).await
    }
}

fn rand_bits() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}
