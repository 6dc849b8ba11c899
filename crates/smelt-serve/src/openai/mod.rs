//! The OpenAI-compatible API: `/v1/completions`, `/v1/chat/completions` (Server-Sent Events
//! ending in `data: [DONE]` when `stream` is set, usage with `stream_options.include_usage`),
//! `/v1/models`; errors in OpenAI's JSON shape. Request bodies are parsed here (not by an
//! extractor) so every malformed body gets that shape and a 400.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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

mod response;
mod tools;

use response::{Output, collect_response, stream_response};
use tools::{Calls, Tool, ToolChoice};

use crate::engine::{EngineHandle, GenParams, MAX_TOP_LOGPROBS, Request, SubmitError};
use crate::json_schema::{self, Grammar, Json};

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

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// Most choices (prompts × n) one request may ask for.
const MAX_CHOICES: usize = 64;

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Fields both endpoints share.
#[derive(Deserialize)]
struct Common {
    model: Option<String>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    ignore_eos: bool,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    /// Token id (as a string, OpenAI's map keys) → bias.
    logit_bias: Option<std::collections::HashMap<String, f32>>,
    /// vLLM's: llama.cpp's multiplicative penalty over prompt and output.
    repetition_penalty: Option<f32>,
    /// vLLM's: stop tokens are held back until this many tokens are out.
    min_tokens: Option<usize>,
    /// vLLM's: more tokens that end the text.
    stop_token_ids: Option<Vec<u32>>,
    response_format: Option<ResponseFormat>,
    /// vLLM's older spelling of a JSON schema constraint (a schema, or its text).
    guided_json: Option<Json>,
    /// vLLM's: the answer is exactly one of these strings.
    guided_choice: Option<Vec<String>>,
    /// vLLM's: the whole answer matches this regular expression.
    guided_regex: Option<String>,
    /// vLLM's newer spelling of both.
    structured_outputs: Option<StructuredOutputs>,
    tools: Option<Vec<Tool>>,
    tool_choice: Option<ToolChoice>,
    /// OpenAI's: `false` allows one call at most.
    parallel_tool_calls: Option<bool>,
}

/// OpenAI's `response_format`.
#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`: a named schema (`strict` is accepted; smelt always holds
/// the model to the schema).
#[derive(Deserialize)]
struct JsonSchemaFormat {
    schema: Option<Json>,
}

/// vLLM's `structured_outputs` (its newer spelling of `guided_json` / `guided_choice` /
/// `guided_regex`).
#[derive(Deserialize)]
struct StructuredOutputs {
    json: Option<Json>,
    choice: Option<Vec<String>>,
    regex: Option<String>,
}

/// The grammar the answer is held to, if any: from `response_format`, or vLLM's `guided_json`,
/// `guided_choice`, `guided_regex` or `structured_outputs` (at most one of them); compiled
/// once per request.
fn grammar(c: &Common) -> Result<Option<Arc<Grammar>>, ApiError> {
    static JSON_OBJECT: OnceLock<Arc<Grammar>> = OnceLock::new();
    let bad = |e: json_schema::SchemaError| ApiError::bad_request(e.to_string());
    let schema = |j: &Json| -> Result<Grammar, ApiError> {
        match j {
            // A schema may come as its text.
            Json::String(text) => {
                let parsed: Json = serde_json::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("json schema text: {e}")))?;
                json_schema::compile(&parsed).map_err(bad)
            }
            j => json_schema::compile(j).map_err(bad),
        }
    };
    let format = c.response_format.as_ref().filter(|f| f.kind != "text");
    let so = c.structured_outputs.as_ref();
    let given = [
        format.is_some(),
        c.guided_json.is_some(),
        c.guided_choice.is_some(),
        so.is_some_and(|s| s.json.is_some()),
        so.is_some_and(|s| s.choice.is_some()),
        c.guided_regex.is_some(),
        so.is_some_and(|s| s.regex.is_some()),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(ApiError::bad_request(
            "give at most one of response_format, guided_json, guided_choice, guided_regex, \
             structured_outputs",
        ));
    }
    let g = if let Some(f) = format {
        match f.kind.as_str() {
            "json_object" => {
                return Ok(Some(
                    JSON_OBJECT
                        .get_or_init(|| Arc::new(Grammar::json_object()))
                        .clone(),
                ));
            }
            "json_schema" => match f.json_schema.as_ref().and_then(|j| j.schema.as_ref()) {
                Some(j) => schema(j)?,
                None => {
                    return Err(ApiError::bad_request(
                        "response_format json_schema needs json_schema.schema",
                    ));
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "response_format {other:?} is not one of text, json_object, json_schema"
                )));
            }
        }
    } else if let Some(j) = c.guided_json.as_ref().or(so.and_then(|s| s.json.as_ref())) {
        schema(j)?
    } else if let Some(choices) = c
        .guided_choice
        .as_ref()
        .or(so.and_then(|s| s.choice.as_ref()))
    {
        json_schema::compile_choice(choices).map_err(bad)?
    } else if let Some(regex) = c
        .guided_regex
        .as_ref()
        .or(so.and_then(|s| s.regex.as_ref()))
    {
        json_schema::compile_regex(regex).map_err(bad)?
    } else {
        return Ok(None);
    };
    Ok(Some(Arc::new(g)))
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: PromptInput,
    logprobs: Option<u32>,
    /// Put the prompt before the completion (and, with `logprobs`, score its tokens).
    #[serde(default)]
    echo: bool,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
    #[serde(flatten)]
    common: Common,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

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
        if let Some(t) = extra_stops.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::bad_request(format!(
                "stop_token_ids: {t} is not a token (vocabulary {vocab})"
            )));
        }
        if kind == Kind::Completion && (c.tools.is_some() || c.tool_choice.is_some()) {
            return Err(ApiError::bad_request("tools are for chat completions"));
        }
        let (calls, grammar) = match tools::plan(
            c.tools.as_deref(),
            c.tool_choice.as_ref(),
            c.parallel_tool_calls.unwrap_or(true),
        )? {
            Some(_) if grammar(&c)?.is_some() => {
                return Err(ApiError::bad_request(
                    "a forced tool call and guided decoding cannot both hold the answer",
                ));
            }
            Some((calls, g)) => (Some(calls), Some(g)),
            None => (None, grammar(&c)?),
        };
        let stop_strings = match c.stop {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
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
    let b: CompletionBody = parse(&body)?;
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
    let job = state.job(Kind::Completion, prompts, b.common, lp)?;
    run(state.0, job).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    state: axum::extract::State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &headers)?;
    let b: ChatBody = parse(&body)?;
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
    let job = state.job(Kind::Chat, vec![prompt], b.common, lp)?;
    run(state.0, job).await
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
    let b: TokenizeBody = parse(&body)?;
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
        .find(|p| p.tokens.len() + job.params.max_tokens > max)
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
