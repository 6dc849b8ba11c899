//! Responses of the OpenAI-compatible API: a whole JSON body, or Server-Sent Events chunk by
//! chunk, from the engine's events; log-probabilities in each endpoint's shape.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use smelt_models::tokenizer::Tokenizer;
use tokio::sync::mpsc;

use super::tool_parsers::{AutoStream, Piece, read_answer};
use super::tools::{AutoCalls, Calls, call_json, calls_so_far, tool_calls};
use super::{ApiError, Kind};
use crate::engine::{Event, Finish, TokenLogprob, Usage};

/// What every response chunk repeats.
pub(super) struct Output {
    /// `chatcmpl-…` or `cmpl-…`.
    pub(super) id: String,
    /// Unix time of the request.
    pub(super) created: u64,
    /// The model's name.
    pub(super) model: String,
    /// Which endpoint.
    pub(super) kind: Kind,
    /// Whether log-probabilities were asked for.
    pub(super) logprobs: bool,
    /// For the tokens' texts and bytes.
    pub(super) tok: Arc<Tokenizer>,
    /// Choices per prompt: choice c answers prompt c / n.
    pub(super) n: usize,
    /// (prompts,) each prompt's tokens when they are scored (echo with logprobs), else empty.
    pub(super) prompt: Vec<Vec<u32>>,
    /// (prompts,) each prompt's text, put before its choices' texts (`echo`).
    pub(super) echo: Vec<Option<String>>,
    /// The answers are tool calls of this kind (chat).
    pub(super) calls: Option<Calls>,
    /// The answers may hold calls in the model's own format (`tool_choice: "auto"`, chat).
    pub(super) auto: Option<AutoCalls>,
}

/// A token and its log-probability (`None` for the prompt's first token, which has none).
type Scored = (u32, Option<TokenLogprob>);

impl Output {
    /// The echoed prompt tokens' entries of choice `c`, from the engine's scores of tokens
    /// 1.. (the first has none).
    fn prompt_entries(&self, c: usize, scores: Vec<TokenLogprob>) -> Vec<Scored> {
        let prompt = &self.prompt[c / self.n];
        let rest = prompt
            .iter()
            .skip(1)
            .zip(scores)
            .map(|(&t, l)| (t, Some(l)));
        prompt
            .first()
            .map(|&t| (t, None))
            .into_iter()
            .chain(rest)
            .collect()
    }

    /// The text choice `c` starts with (its prompt's, with `echo`).
    fn echo(&self, c: usize) -> &str {
        self.echo[c / self.n].as_deref().unwrap_or("")
    }

    /// A chat answer's message fields and finish reason: its tool calls when it is whole
    /// calls (with `calls`); cut by `max_tokens`, the calls begun (arguments cut, as OpenAI
    /// returns them), or its text if no call's name is whole.
    fn message(
        &self,
        c: usize,
        text: &str,
        finish: Option<Finish>,
    ) -> (Value, Option<&'static str>) {
        let reason = finish.map(Finish::as_str);
        if let Some(auto) = self.auto {
            return self.auto_message(c, text, finish, auto);
        }
        let Some(calls) = &self.calls else {
            return (json!({"content": text}), reason);
        };
        let id = format!("call-{}-{c}", self.id);
        let (list, whole) = tool_calls(calls, text, &id);
        if list.is_empty() {
            return (json!({"content": text}), reason);
        }
        let message = json!({"content": null, "tool_calls": list});
        if whole && finish == Some(Finish::Stop) {
            // OpenAI ends a named function's call with "stop", others with "tool_calls".
            let reason = match calls {
                Calls::Required => "tool_calls",
                Calls::Named(_) => "stop",
            };
            return (message, Some(reason));
        }
        (message, reason)
    }

    /// An auto answer's message: its content and the calls it holds, if any (finish reason
    /// `tool_calls` when it ended by itself).
    fn auto_message(
        &self,
        c: usize,
        text: &str,
        finish: Option<Finish>,
        auto: AutoCalls,
    ) -> (Value, Option<&'static str>) {
        let mut answer = read_answer(auto.parser, text);
        if auto.one {
            answer.calls.truncate(1);
        }
        if answer.calls.is_empty() {
            return (json!({"content": text}), finish.map(Finish::as_str));
        }
        let list: Vec<Value> = answer
            .calls
            .iter()
            .enumerate()
            .map(|(k, call)| {
                let id = format!("call-{}-{c}-{k}", self.id);
                call_json(&id, &call.name, &call.arguments)
            })
            .collect();
        let reason = match finish {
            Some(Finish::Stop) => Some("tool_calls"),
            f => f.map(Finish::as_str),
        };
        (
            json!({"content": answer.content, "tool_calls": list}),
            reason,
        )
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id, "object": self.object(chunk), "created": self.created,
            "model": self.model, "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    /// Log-probabilities of `tokens` in the endpoint's shape; `offset` is where the first
    /// token's text starts, in characters of the choice's tokens' texts (legacy completions'
    /// `text_offset`, as vLLM counts it).
    fn logprobs_json(&self, tokens: &[Scored], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let text = |t: u32| self.tok.decode(&[t]);
        match self.kind {
            Kind::Completion => {
                let offsets = tokens.iter().scan(offset, |at, (t, _)| {
                    let here = *at;
                    *at += text(*t).chars().count();
                    Some(here)
                });
                json!({
                    "tokens": tokens.iter().map(|(t, _)| text(*t)).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|(_, l)| l.as_ref().map(|l| l.logprob))
                        .collect::<Vec<_>>(),
                    "top_logprobs": tokens.iter().map(|(_, l)| l.as_ref().map(|l| {
                        l.top.iter().map(|&(a, p)| (text(a), json!(p))).collect::<serde_json::Map<_, _>>()
                    })).collect::<Vec<_>>(),
                    "text_offset": offsets.collect::<Vec<_>>(),
                })
            }
            Kind::Chat => {
                let entry = |t: u32, l: f32| json!({"token": text(t), "logprob": l, "bytes": self.tok.decode_bytes(&[t])});
                json!({"content": tokens.iter().filter_map(|(t, l)| {
                    let l = l.as_ref()?;
                    let mut e = entry(*t, l.logprob);
                    e["top_logprobs"] = l.top.iter().map(|&(a, p)| entry(a, p)).collect();
                    Some(e)
                }).collect::<Vec<_>>()})
            }
        }
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// A request's token counts over its choices.
struct UsageSum {
    total: Usage,
    /// (prompts,) whether a choice of the prompt was counted.
    counted: Vec<bool>,
    n: usize,
}

impl UsageSum {
    fn new(out: &Output) -> Self {
        Self {
            total: Usage::default(),
            counted: vec![false; out.echo.len()],
            n: out.n,
        }
    }

    fn add(&mut self, choice: usize, u: Usage) {
        // The n choices of a prompt share it: count it once, as OpenAI does.
        if !std::mem::replace(&mut self.counted[choice / self.n], true) {
            self.total.prompt_tokens += u.prompt_tokens;
            self.total.cached_tokens += u.cached_tokens;
        }
        self.total.completion_tokens += u.completion_tokens;
    }
}

/// The whole response of `out`'s choices (prompts × n), once every one has ended.
pub(super) async fn collect_response(
    out: Output,
    mut rx: mpsc::Receiver<Event>,
) -> Result<Response, ApiError> {
    let n = out.echo.len() * out.n;
    let mut text = vec![String::new(); n];
    // (n, generated) each choice's tokens and their log-probabilities.
    let mut lps: Vec<Vec<Scored>> = vec![Vec::new(); n];
    let mut finish = vec![None; n];
    let mut usage = UsageSum::new(&out);
    let mut done = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token {
                index,
                text: t,
                token,
                logprob,
            } => {
                text[index].push_str(&t);
                if let (Some(tk), Some(l)) = (token, logprob) {
                    lps[index].push((tk, Some(l)));
                }
            }
            Event::Prompt { index, logprobs } => {
                let mut entries = out.prompt_entries(index, logprobs);
                entries.append(&mut lps[index]);
                lps[index] = entries;
            }
            Event::Done {
                index,
                finish: f,
                usage: u,
            } => {
                usage.add(index, u);
                finish[index] = Some(f);
                done += 1;
            }
        }
    }
    if done < n
        || finish
            .iter()
            .any(|f| matches!(f, Some(Finish::Abort | Finish::Error)))
    {
        return Err(ApiError::with(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "aborted",
            "the request was aborted (the server is shutting down or the model failed)".into(),
        ));
    }
    let choices = (0..n)
        .map(|i| {
            let reason = finish[i].map(Finish::as_str);
            let lp = out.logprobs_json(&lps[i], 0);
            let text = format!("{}{}", out.echo(i), text[i]);
            match out.kind {
                Kind::Completion => json!({
                    "index": i, "text": text, "finish_reason": reason, "logprobs": lp,
                }),
                Kind::Chat => {
                    let (mut message, reason) = out.message(i, &text, finish[i]);
                    message["role"] = json!("assistant");
                    json!({"index": i, "finish_reason": reason, "logprobs": lp, "message": message})
                }
            }
        })
        .collect();
    let usage = usage_json(usage.total);
    Ok(axum::Json(out.envelope(false, choices, Some(usage))).into_response())
}

/// Turns engine events into SSE chunks; ends with the usage chunk (if asked) and `[DONE]`.
struct ChunkStream {
    out: Output,
    rx: mpsc::Receiver<Event>,
    queue: VecDeque<SseEvent>,
    opened: Vec<bool>,
    /// (n,) characters of each choice's tokens' texts so far (for `text_offset`).
    offset: Vec<usize>,
    /// (n,) with tool calls, each choice's text so far (its calls are read from it).
    held: Vec<String>,
    /// (n, calls so far) with tool calls, how many bytes of each call's arguments have gone
    /// out (its id and name went with the first piece).
    sent: Vec<Vec<usize>>,
    /// (n,) with `tool_choice: "auto"`, each choice's answer read for calls as it comes.
    auto: Vec<AutoStream>,
    include_usage: bool,
    usage: UsageSum,
    ended: bool,
}

impl ChunkStream {
    fn chunk(&mut self, index: usize, text: Option<String>, finish: Option<Finish>, lp: Value) {
        let choice = match self.out.kind {
            Kind::Completion => json!({
                "index": index, "text": text.unwrap_or_default(),
                "finish_reason": finish.map(Finish::as_str), "logprobs": lp,
            }),
            Kind::Chat => {
                let mut delta = json!({});
                if !self.opened[index] {
                    self.opened[index] = true;
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({"index": index, "delta": delta,
                       "finish_reason": finish.map(Finish::as_str), "logprobs": lp})
            }
        };
        let mut v = self.out.envelope(true, vec![choice], None);
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        self.queue
            .push_back(SseEvent::default().data(v.to_string()));
    }

    fn on(&mut self, ev: Event) {
        match ev {
            Event::Token {
                index,
                text,
                token,
                logprob,
            } => {
                if self.out.calls.is_some() && self.out.kind == Kind::Chat {
                    self.held[index].push_str(&text);
                    self.stream_calls(index);
                    return;
                }
                if text.is_empty() && !(self.out.logprobs && token.is_some()) {
                    return;
                }
                let lp = match (token, logprob) {
                    (Some(t), Some(l)) => {
                        let lp = self.out.logprobs_json(&[(t, Some(l))], self.offset[index]);
                        self.offset[index] += self.out.tok.decode(&[t]).chars().count();
                        lp
                    }
                    _ => Value::Null,
                };
                if !self.auto.is_empty() {
                    let pieces = self.auto[index].push(&text);
                    self.auto_pieces(index, pieces, lp);
                    return;
                }
                self.chunk(index, Some(text), None, lp);
            }
            Event::Prompt { index, logprobs } => {
                // Echo with logprobs: the prompt's text goes out with its scores.
                let entries = self.out.prompt_entries(index, logprobs);
                let lp = self.out.logprobs_json(&entries, 0);
                self.offset[index] = entries
                    .iter()
                    .map(|(t, _)| self.out.tok.decode(&[*t]).chars().count())
                    .sum();
                let text = self.out.echo(index).to_string();
                self.chunk(index, Some(text), None, lp);
            }
            Event::Done {
                index,
                finish,
                usage,
            } => {
                self.usage.add(index, usage);
                if self.out.calls.is_some() && self.out.kind == Kind::Chat {
                    self.end_calls(index, finish);
                } else if !self.auto.is_empty() {
                    let pieces = self.auto[index].end();
                    self.auto_pieces(index, pieces, Value::Null);
                    let reason = match finish {
                        Finish::Stop if self.auto[index].called() => "tool_calls",
                        f => f.as_str(),
                    };
                    self.calls_chunk(index, json!({}), Some(reason), Value::Null);
                } else {
                    self.chunk(index, None, Some(finish), Value::Null);
                }
            }
        }
    }

    /// Sends what is new in a tool-call answer's calls: a call's id and name once its name
    /// is whole, then its arguments as they grow, as OpenAI streams them.
    fn stream_calls(&mut self, index: usize) {
        let Some(calls) = &self.out.calls else {
            return;
        };
        let mut entries = Vec::new();
        for (k, call) in calls_so_far(calls, &self.held[index]).iter().enumerate() {
            let sent = &mut self.sent[index];
            if k == sent.len() {
                sent.push(call.arguments.len());
                let id = format!("call-{}-{index}-{k}", self.out.id);
                let mut entry = call_json(&id, &call.name, &call.arguments);
                entry["index"] = json!(k);
                entries.push(entry);
            } else if call.arguments.len() > sent[k] {
                let piece = &call.arguments[sent[k]..];
                entries.push(json!({"index": k, "function": {"arguments": piece}}));
                sent[k] = call.arguments.len();
            }
        }
        if !entries.is_empty() {
            self.calls_chunk(index, json!({"tool_calls": entries}), None, Value::Null);
        }
    }

    /// Sends an auto answer's pieces: content as it is, each call whole (id, name and
    /// arguments in one entry); with `parallel_tool_calls: false`, the first call only. The
    /// token's log-probabilities `lp` ride on the first chunk, or on an empty one if the
    /// token let nothing out yet, so the stream carries every token's, as the whole answer
    /// does.
    fn auto_pieces(&mut self, index: usize, pieces: Vec<Piece>, mut lp: Value) {
        let one = self.out.auto.is_some_and(|a| a.one);
        for piece in pieces {
            match piece {
                Piece::Content(text) => {
                    let lp = std::mem::take(&mut lp);
                    self.calls_chunk(index, json!({"content": text}), None, lp);
                }
                Piece::Call(call) => {
                    let k = self.sent[index].len();
                    if one && k > 0 {
                        continue;
                    }
                    self.sent[index].push(call.arguments.len());
                    let id = format!("call-{}-{index}-{k}", self.out.id);
                    let mut entry = call_json(&id, &call.name, &call.arguments);
                    entry["index"] = json!(k);
                    let lp = std::mem::take(&mut lp);
                    self.calls_chunk(index, json!({"tool_calls": [entry]}), None, lp);
                }
            }
        }
        if !lp.is_null() {
            self.calls_chunk(index, json!({}), None, lp);
        }
    }

    /// One chunk of a tool-call answer: `delta` (with the role, if first) and a finish
    /// reason.
    fn calls_chunk(&mut self, index: usize, mut delta: Value, reason: Option<&str>, lp: Value) {
        if !self.opened[index] {
            self.opened[index] = true;
            delta["role"] = json!("assistant");
        }
        let choice =
            json!({"index": index, "delta": delta, "finish_reason": reason, "logprobs": lp});
        let mut v = self.out.envelope(true, vec![choice], None);
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        self.queue
            .push_back(SseEvent::default().data(v.to_string()));
    }

    /// The end of a tool-call answer: its finish reason, as the whole message would have it;
    /// an answer cut before any call's name is whole goes out as text instead.
    fn end_calls(&mut self, index: usize, finish: Finish) {
        let text = std::mem::take(&mut self.held[index]);
        let (message, reason) = self.out.message(index, &text, Some(finish));
        if self.sent[index].is_empty() {
            self.calls_chunk(index, message, reason, Value::Null);
        } else {
            self.calls_chunk(index, json!({}), reason, Value::Null);
        }
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.rx.recv().await {
                Some(ev) => self.on(ev),
                None => {
                    self.ended = true;
                    if self.include_usage {
                        let v = self
                            .out
                            .envelope(true, vec![], Some(usage_json(self.usage.total)));
                        self.queue
                            .push_back(SseEvent::default().data(v.to_string()));
                    }
                    self.queue.push_back(SseEvent::default().data("[DONE]"));
                }
            }
        }
    }
}

/// The response of `out`'s choices (prompts × n) as Server-Sent Events.
pub(super) fn stream_response(
    out: Output,
    rx: mpsc::Receiver<Event>,
    include_usage: bool,
) -> Response {
    let n = out.echo.len() * out.n;
    // Echo without scores: each choice starts with its prompt's text.
    let echo_now: Vec<Option<String>> = (0..n)
        .map(|c| {
            let p = c / out.n;
            (out.prompt[p].is_empty() && out.echo[p].is_some()).then(|| out.echo(c).to_string())
        })
        .collect();
    let usage = UsageSum::new(&out);
    let auto = match (out.auto, out.kind) {
        (Some(a), Kind::Chat) => (0..n).map(|_| AutoStream::new(a.parser)).collect(),
        _ => Vec::new(),
    };
    let mut s = ChunkStream {
        out,
        rx,
        queue: VecDeque::new(),
        opened: vec![false; n],
        offset: vec![0; n],
        held: vec![String::new(); n],
        sent: vec![Vec::new(); n],
        auto,
        include_usage,
        usage,
        ended: false,
    };
    for (index, text) in echo_now.into_iter().enumerate() {
        if let Some(text) = text {
            s.chunk(index, Some(text), None, Value::Null);
        }
    }
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        s.next()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), s))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
