//! The engine actor: one thread that owns the model's KV pool, the scheduler's queues and every
//! sequence's sampling state, and runs continuous-batching steps. HTTP handlers reach it only
//! through [`EngineHandle`]: a bounded request channel in, a per-request bounded event channel
//! out (sized so the engine never blocks on a slow client). A closed event channel (client gone)
//! cancels the request at the next step; its blocks go back when its sequence is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smelt_models::generate::TextStream;
use smelt_models::kv_cache::{BlockTable, KvPool};
use smelt_models::llama::{Llama, Logits, SeqInput};
use smelt_models::sampler::{Sampler, SamplerConfig};
use smelt_models::tokenizer::Tokenizer;
use tokio::sync::mpsc;

use rayon::prelude::*;

use crate::blocks::{BlockManager, SharedBlocks, lock};
use crate::json_mode::{JsonState, TokenBytes};
use crate::json_schema::Grammar;
use crate::metrics::Metrics;
use crate::scheduler::{Scheduler, SchedulerConfig, Seq};

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Batch limits and block size.
    pub sched: SchedulerConfig,
    /// KV blocks in the pool.
    pub n_blocks: usize,
    /// Requests that may wait for admission (beyond them the request channel fills and new
    /// requests are refused).
    pub max_waiting: usize,
}

/// How to generate for one request.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling settings (the seed included).
    pub sampler: SamplerConfig,
    /// Strings that end the text (not included).
    pub stop_strings: Vec<String>,
    /// Tokens that end the text (end of sequence / turn).
    pub stop_tokens: Vec<u32>,
    /// Stop tokens cannot be drawn, and stop strings ending in the text do not count, before
    /// this many tokens are out (vLLM's `min_tokens`).
    pub min_tokens: usize,
    /// Keep the stop string that ends the text (vLLM's `include_stop_str_in_output`).
    pub keep_stop_string: bool,
    /// Report each token's log-probability.
    pub logprobs: bool,
    /// With `logprobs`, also the this many most likely tokens at each step (OpenAI's
    /// `top_logprobs`; at most [`MAX_TOP_LOGPROBS`]).
    pub top_logprobs: usize,
    /// Also the log-probability of each prompt token after the first, given the ones before
    /// (with `top_logprobs` alternatives), sent as one [`Event::Prompt`] once the prompt has
    /// run: what evaluation harnesses score (completions' `echo` with `logprobs`). The prompt
    /// then skips the prefix cache, and `max_tokens` may be 0.
    pub prompt_logprobs: bool,
    /// Constrain the text to one JSON object of this grammar (`response_format`
    /// `json_object` or `json_schema`), ending as it closes ([`crate::json_mode`]).
    pub grammar: Option<Arc<Grammar>>,
}

/// Most prompt tokens of a scored prompt ([`GenParams::prompt_logprobs`]) in one step: its
/// logits are (rows, n_vocab), 25 MB for 128 rows of a 49,152-token vocabulary.
pub const SCORED_CHUNK: usize = 128;

/// The most alternatives a request may ask for per token (OpenAI's limit for chat).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability under the model (before sampling settings), and the
/// most likely tokens of that step when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// log p of the generated token.
    pub logprob: f32,
    /// (top_logprobs,) the step's most likely tokens and their log p, most likely first
    /// (the lower id first on ties).
    pub top: Vec<(u32, f32)>,
}

/// Why a sequence ended (OpenAI's `finish_reason`, plus abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or string.
    Stop,
    /// `max_tokens` or the context.
    Length,
    /// Cancelled: the client went away or the server is shutting down.
    Abort,
    /// The model failed.
    Error,
}

impl Finish {
    /// The `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Abort => "abort",
            Finish::Error => "error",
        }
    }
}

/// Token counts of a finished sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (a final stop token not counted).
    pub completion_tokens: usize,
    /// Prompt tokens found in the prefix cache.
    pub cached_tokens: usize,
}

/// What the engine tells a request, tagged with the request's choice `index`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Newly final text (possibly empty while a stop string might be forming) and the token
    /// that produced it (`None` for text released at the end).
    Token {
        /// Choice index.
        index: usize,
        /// Text piece.
        text: String,
        /// Token id.
        token: Option<u32>,
        /// Its log-probability (and the step's most likely tokens), when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// The prompt's log-probabilities ([`GenParams::prompt_logprobs`]), before any token.
    Prompt {
        /// Choice index.
        index: usize,
        /// (prompt_len − 1,) of prompt tokens 1.., each given the tokens before it.
        logprobs: Vec<TokenLogprob>,
    },
    /// The sequence ended.
    Done {
        /// Choice index.
        index: usize,
        /// Why.
        finish: Finish,
        /// Token counts.
        usage: Usage,
    },
}

/// One sequence to generate.
pub struct Request {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// Settings.
    pub params: GenParams,
    /// Choice index reported in its events (for `n` > 1).
    pub index: usize,
    /// Where its events go; capacity should exceed `max_tokens` + 2.
    pub events: mpsc::Sender<Event>,
    /// When the HTTP request arrived.
    pub arrival: Instant,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full.
    #[error("the server is overloaded: the request queue is full")]
    QueueFull,
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// Prompt plus generation would not fit.
    #[error(
        "this model's maximum context length is {max} tokens; the request needs {prompt} prompt tokens plus {completion} to generate"
    )]
    TooLong {
        /// Context limit.
        max: usize,
        /// Prompt tokens.
        prompt: usize,
        /// Tokens to generate.
        completion: usize,
    },
    /// Empty prompt or bad sampling settings.
    #[error("{0}")]
    Invalid(String),
}

/// The handlers' side of the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Request>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// The block manager (for checks and tests).
    pub blocks: SharedBlocks,
    /// Longest prompt + generation a sequence may reach.
    pub max_context: usize,
    abort: Arc<AtomicBool>,
}

impl EngineHandle {
    /// Queues `r`, or says why not (immediately; never waits).
    pub fn submit(&self, r: Request) -> Result<(), SubmitError> {
        if r.prompt.is_empty() {
            return Err(SubmitError::Invalid("the prompt is empty".into()));
        }
        r.params.sampler.validate().map_err(SubmitError::Invalid)?;
        if r.params.max_tokens == 0 && !r.params.prompt_logprobs {
            return Err(SubmitError::Invalid(
                "max_tokens must be at least 1 (0 only to score the prompt)".into(),
            ));
        }
        if r.params.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(SubmitError::Invalid(format!(
                "{} alternatives per token asked for; at most {MAX_TOP_LOGPROBS}",
                r.params.top_logprobs
            )));
        }
        if r.prompt.len().saturating_add(r.params.max_tokens) > self.max_context {
            return Err(SubmitError::TooLong {
                max: self.max_context,
                prompt: r.prompt.len(),
                completion: r.params.max_tokens,
            });
        }
        self.tx.try_send(r).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.rejected.inc();
                SubmitError::QueueFull
            }
            mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
        })
    }

    /// Ends every queued and running request (shutdown after the grace period).
    pub fn abort_all(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }
}

/// Per-sequence state the scheduler carries for the engine.
struct Live {
    params: GenParams,
    sampler: Sampler,
    stream: TextStream,
    events: mpsc::Sender<Event>,
    index: usize,
    arrival: Instant,
    admitted: bool,
    last_token: Option<Instant>,
    finish: Option<Finish>,
    /// (positions scored,) prompt log-probabilities so far, of tokens 1.. (when asked).
    prompt_lps: Vec<TokenLogprob>,
    /// Whether [`Event::Prompt`] went out (or was not asked for).
    prompt_sent: bool,
    /// JSON output: how far the generated text is through [`GenParams::grammar`]'s object.
    json: Option<JsonState>,
    /// (bytes,) the generated tokens' text, appended token by token: decoding is
    /// concatenative, so the output is not decoded whole again at every token.
    out_bytes: Vec<u8>,
}

/// Starts the engine thread for `model`; it runs until every handle is dropped. Fails only if
/// the thread cannot be spawned.
pub fn start(
    model: Arc<Llama>,
    tok: Arc<Tokenizer>,
    config: EngineConfig,
) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(config.max_waiting.max(1));
    let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(config.n_blocks)));
    let metrics = Arc::new(Metrics::new());
    let max_context = model
        .config
        .n_ctx
        .min(config.n_blocks * config.sched.block_size);
    let handle = EngineHandle {
        tx,
        metrics: metrics.clone(),
        blocks: blocks.clone(),
        max_context,
        abort: Arc::new(AtomicBool::new(false)),
    };
    let abort = handle.abort.clone();
    let thread = std::thread::Builder::new()
        .name("smelt-engine".into())
        .spawn(move || {
            let mut e = EngineLoop {
                pool: KvPool::new(
                    model.config.n_layer,
                    config.n_blocks,
                    config.sched.block_size,
                    model.config.n_head_kv * model.config.head_dim(),
                )
                .with_seq_ctx(max_context),
                sched: Scheduler::new(config.sched, blocks.clone()),
                model,
                tok,
                blocks,
                metrics,
                config,
                abort,
                next_id: 0,
                last_stats: (0, 0),
                token_bytes: None,
            };
            e.run(rx)
        })?;
    Ok((handle, thread))
}

struct EngineLoop {
    model: Arc<Llama>,
    tok: Arc<Tokenizer>,
    pool: KvPool,
    sched: Scheduler<Live>,
    blocks: SharedBlocks,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    abort: Arc<AtomicBool>,
    next_id: u64,
    /// Prefix-cache (queries, hits) already added to the metrics.
    last_stats: (u64, u64),
    /// Every token's bytes, read at the first JSON-mode request.
    token_bytes: Option<TokenBytes>,
}

impl EngineLoop {
    /// Waits for work on the engine's own thread, then serves until idle on a pool thread.
    fn run(&mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            match rx.blocking_recv() {
                Some(r) => self.add(r),
                None => return,
            }
            // Busy, the loop runs on a pool thread, so between parallel products (sampling,
            // bookkeeping) only the other pool threads wait for work, not this one as well:
            // on a 2-core machine a third busy thread costs a third of the throughput. Idle,
            // it must not hold that thread: a forward pass outside the engine (or a second
            // engine) would wait for it forever.
            rayon::scope(|_| self.serve_until_idle(&mut rx));
        }
    }

    /// Admits, schedules and steps until no sequence is left.
    fn serve_until_idle(&mut self, rx: &mut mpsc::Receiver<Request>) {
        loop {
            if self.sched.is_idle() {
                return;
            }
            while self.sched.waiting.len() < self.config.max_waiting {
                match rx.try_recv() {
                    Ok(r) => self.add(r),
                    Err(_) => break,
                }
            }
            if self.abort.load(Ordering::SeqCst) {
                for s in self.sched.running.iter_mut() {
                    s.payload.finish.get_or_insert(Finish::Abort);
                }
                for s in self.sched.waiting.iter_mut() {
                    s.payload.finish.get_or_insert(Finish::Abort);
                }
            }
            self.retire();
            let work = self.sched.schedule();
            self.update_gauges();
            if work.is_empty() {
                if !self.sched.is_idle() {
                    // Not expected (an empty batch frees every block, and a request must fit
                    // the pool alone); do not spin if it happens.
                    std::thread::sleep(Duration::from_millis(2));
                }
                continue;
            }
            self.step(&work);
        }
    }

    fn add(&mut self, r: Request) {
        let live = Live {
            sampler: Sampler::with_prompt(r.params.sampler.clone(), r.prompt.len()),
            stream: TextStream::with_stop_kept(&r.params.stop_strings, r.params.keep_stop_string),
            events: r.events,
            index: r.index,
            arrival: r.arrival,
            admitted: false,
            last_token: None,
            finish: None,
            prompt_lps: Vec::new(),
            prompt_sent: !r.params.prompt_logprobs,
            json: r.params.grammar.as_deref().map(JsonState::new),
            out_bytes: Vec::new(),
            params: r.params,
        };
        self.next_id += 1;
        let mut seq = Seq::new(self.next_id, r.prompt, &self.blocks, live);
        seq.reuse_prefix = seq.payload.prompt_sent;
        if !seq.payload.prompt_sent {
            seq.max_chunk = SCORED_CHUNK;
        }
        self.sched.waiting.push_back(seq);
    }

    /// Drops finished and cancelled sequences (their blocks return) and tells the clients
    /// that are still there.
    fn retire(&mut self) {
        let done = self
            .sched
            .retire(|s| s.payload.finish.is_some() || s.payload.events.is_closed());
        for mut s in done {
            // Blocks go back before the client hears the end.
            s.blocks.clear();
            let finish = s.payload.finish.unwrap_or(Finish::Abort);
            let rest = s.payload.stream.finish();
            let index = s.payload.index;
            if !rest.is_empty() {
                let _ = s.payload.events.try_send(Event::Token {
                    index,
                    text: rest,
                    token: None,
                    logprob: None,
                });
            }
            let usage = Usage {
                prompt_tokens: s.prompt_len,
                completion_tokens: s.tokens.len() - s.prompt_len,
                cached_tokens: s.cached_tokens.unwrap_or(0),
            };
            let _ = s.payload.events.try_send(Event::Done {
                index,
                finish,
                usage,
            });
            self.metrics
                .finished
                .with_label_values(&[finish.as_str()])
                .inc();
            if matches!(finish, Finish::Stop | Finish::Length) {
                self.metrics
                    .e2e
                    .observe(s.payload.arrival.elapsed().as_secs_f64());
            }
        }
    }

    fn step(&mut self, work: &[crate::scheduler::Work]) {
        let bs = self.config.sched.block_size;
        let now = Instant::now();
        let mut prompt_tokens = 0;
        for w in work {
            let s = &mut self.sched.running[w.seq];
            if !s.payload.admitted {
                s.payload.admitted = true;
                self.metrics
                    .queue_time
                    .observe((now - s.payload.arrival).as_secs_f64());
            }
            prompt_tokens += w.end.min(s.prompt_len).saturating_sub(w.start);
        }
        let inputs: Vec<SeqInput> = work
            .iter()
            .map(|w| {
                let s = &self.sched.running[w.seq];
                SeqInput {
                    tokens: &s.tokens[w.start..w.end],
                    pos0: w.start,
                    kv: BlockTable {
                        table: s.blocks.table(),
                        block: bs,
                    },
                    want: if s.payload.prompt_sent || w.start >= s.prompt_len {
                        Logits::Last
                    } else {
                        Logits::All
                    },
                }
            })
            .collect();
        let step_span = smelt_trace::span("phase", "engine_step")
            .arg("sequences", work.len() as f64)
            .arg(
                "tokens",
                work.iter().map(|w| w.end - w.start).sum::<usize>() as f64,
            );
        let result = self.model.forward_seqs(&inputs, &mut self.pool);
        drop(step_span);
        self.metrics.steps.inc();
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("engine step failed: {e}");
                for w in work {
                    self.sched.running[w.seq].payload.finish = Some(Finish::Error);
                }
                return;
            }
        };
        self.sched.complete(work);
        for (w, logits) in work.iter().zip(logits) {
            let s = &mut self.sched.running[w.seq];
            let vocab = self.model.config.n_vocab;
            if !s.payload.prompt_sent && w.start < s.prompt_len {
                // (end − start, n_vocab): every row of a prompt chunk (`Logits::All` above).
                score_prompt(s, w, &logits, vocab);
            }
            // A sequence already ended (its client left while its prompt was scored) keeps
            // its reason.
            if w.end == s.tokens.len() && s.payload.finish.is_none() {
                let last = &logits[logits.len() - vocab..];
                if s.payload.params.max_tokens == 0 {
                    s.payload.finish = Some(Finish::Length);
                } else {
                    let json = s.payload.json.is_some().then(|| {
                        &*self
                            .token_bytes
                            .get_or_insert_with(|| TokenBytes::new(&self.tok))
                    });
                    let n_ctx = self.model.config.n_ctx;
                    sample(s, last, &self.tok, n_ctx, &self.metrics, json);
                }
            }
        }
        let (mut allocated, mut unused) = (0u64, 0u64);
        for s in &self.sched.running {
            let slots = (s.blocks.len() * bs) as u64;
            allocated += slots;
            unused += slots - s.computed.min(slots as usize) as u64;
        }
        self.metrics.kv_slots_allocated.inc_by(allocated);
        self.metrics.kv_slots_unused.inc_by(unused);
    }

    fn update_gauges(&mut self) {
        let m = &self.metrics;
        m.running.set(self.sched.running.len() as i64);
        m.waiting.set(self.sched.waiting.len() as i64);
        let st = lock(&self.blocks).stats();
        m.kv_usage_perc.set(st.used as f64 / st.total.max(1) as f64);
        let bs = self.config.sched.block_size as u64;
        m.prefix_queries
            .inc_by((st.queries - self.last_stats.0) * bs);
        m.prefix_hits.inc_by((st.hits - self.last_stats.1) * bs);
        self.last_stats = (st.queries, st.hits);
        let pre = self.sched.preemptions;
        m.preemptions.inc_by(pre - m.preemptions.get());
        let waits = self.sched.deferred;
        m.prefix_waits.inc_by(waits - m.prefix_waits.get());
    }
}

/// Samples the next token of `s` from its last position's `logits` and tells the client.
/// With `json` (JSON mode), tokens that would leave the grammar are masked out first; the
/// log-probabilities reported stay the model's own.
fn sample(
    s: &mut Seq<Live>,
    logits: &[f32],
    tok: &Tokenizer,
    n_ctx: usize,
    m: &Metrics,
    json: Option<&TokenBytes>,
) {
    let live = &mut s.payload;
    // Before `min_tokens`, the stop tokens are held back.
    let held = (s.tokens.len() - s.prompt_len < live.params.min_tokens).then(|| {
        let mut l = logits.to_vec();
        for &t in &live.params.stop_tokens {
            if let Some(v) = l.get_mut(t as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        l
    });
    let drawn_from = held.as_deref().unwrap_or(logits);
    let next = match (live.json.as_mut(), live.params.grammar.as_deref(), json) {
        (Some(state), Some(g), Some(table)) => {
            let mut masked = drawn_from.to_vec();
            let mut left = table.mask(g, state, &mut masked);
            if state.may_end() {
                // A whole-text pattern matches: the end of turn may come.
                for &t in &live.params.stop_tokens {
                    if let (Some(m), Some(&l)) =
                        (masked.get_mut(t as usize), drawn_from.get(t as usize))
                    {
                        left += usize::from(*m == f32::NEG_INFINITY && l > f32::NEG_INFINITY);
                        *m = l;
                    }
                }
            }
            if left == 0 {
                // Not expected: every state but the end allows some byte, and some token is
                // that byte; end the text rather than break the grammar.
                live.finish = Some(Finish::Stop);
                return;
            }
            let next = live.sampler.sample(&masked, &s.tokens);
            if !live.params.stop_tokens.contains(&next) {
                let fed = state.feed(g, &table.bytes[next as usize]);
                debug_assert!(fed, "a masked token was drawn");
            }
            next
        }
        _ => live.sampler.sample(drawn_from, &s.tokens),
    };
    let now = Instant::now();
    match live.last_token {
        None => m.ttft.observe((now - live.arrival).as_secs_f64()),
        Some(t) => m.itl.observe((now - t).as_secs_f64()),
    }
    live.last_token = Some(now);
    if live.params.stop_tokens.contains(&next) {
        live.finish = Some(Finish::Stop);
        return;
    }
    s.tokens.push(next);
    m.generation_tokens.inc();
    // As vLLM, stop strings count once more than `min_tokens` tokens are out.
    let generated = s.tokens.len() - s.prompt_len;
    live.out_bytes.extend(tok.decode_bytes(&[next]));
    let (text, stopped) = live.stream.update_checking(
        String::from_utf8_lossy(&live.out_bytes).into_owned(),
        generated > live.params.min_tokens,
    );
    let logprob = live
        .params
        .logprobs
        .then(|| token_logprob(logits, next, live.params.top_logprobs));
    let sent = live.events.try_send(Event::Token {
        index: live.index,
        text,
        token: Some(next),
        logprob,
    });
    if sent.is_err() {
        live.finish = Some(Finish::Abort);
    } else if stopped || live.json.as_ref().is_some_and(|j| j.done()) {
        live.finish = Some(Finish::Stop);
    } else if generated >= live.params.max_tokens || s.tokens.len() >= n_ctx {
        live.finish = Some(Finish::Length);
    }
}

/// Prompt log-probabilities from the rows of a chunk, `logits` (end − start, n_vocab): row r
/// scores token start + r + 1. Positions scored before a preemption are not scored again; the
/// event goes out once the whole prompt is scored.
fn score_prompt(s: &mut Seq<Live>, w: &crate::scheduler::Work, logits: &[f32], vocab: usize) {
    let live = &mut s.payload;
    debug_assert_eq!(logits.len(), (w.end - w.start) * vocab);
    // Targets start + 1.., the first not yet scored, up to the prompt's end.
    let first = (w.start + 1).max(live.prompt_lps.len() + 1);
    let last = w.end.min(s.prompt_len - 1);
    if first <= last {
        let k = live.params.top_logprobs;
        let tokens = &s.tokens;
        let scored: Vec<TokenLogprob> = (first..=last)
            .into_par_iter()
            .map(|t| {
                let row = &logits[(t - 1 - w.start) * vocab..][..vocab];
                token_logprob(row, tokens[t], k)
            })
            .collect();
        live.prompt_lps.extend(scored);
    }
    if w.end >= s.prompt_len {
        live.prompt_sent = true;
        // Scored: a recompute after preemption may start from cached blocks again, in
        // chunks of any size.
        s.reuse_prefix = true;
        s.max_chunk = usize::MAX;
        let logprobs = std::mem::take(&mut live.prompt_lps);
        let sent = live.events.try_send(Event::Prompt {
            index: live.index,
            logprobs,
        });
        if sent.is_err() {
            live.finish = Some(Finish::Abort);
        }
    }
}

/// `log softmax(logits)` at token `i`, and the `k` most likely tokens with theirs.
fn token_logprob(logits: &[f32], i: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let norm = max + sum.ln() as f32;
    TokenLogprob {
        logprob: logits[i as usize] - norm,
        top: top_k(logits, k)
            .into_iter()
            .map(|t| (t, logits[t as usize] - norm))
            .collect(),
    }
}

/// The ids of the `k` largest logits, largest first, the lower id first on ties (k is small:
/// one pass keeping a sorted list).
fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    // (k,) (logit, id), largest first.
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    for (id, &v) in logits.iter().enumerate() {
        // NaN logits are never kept.
        if v.is_nan() || (best.len() == k && v <= best[k - 1].0) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b >= v);
        best.insert(at, (v, id as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::{token_logprob, top_k};

    #[test]
    fn top_k_is_the_largest_first_lower_id_on_ties() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0, f32::NEG_INFINITY];
        assert_eq!(top_k(&logits, 0), Vec::<u32>::new());
        assert_eq!(top_k(&logits, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&logits, 10), vec![1, 3, 4, 0, 2, 5]);
    }

    #[test]
    fn log_probabilities_are_a_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let lp = token_logprob(&logits, 0, 2);
        let z: f64 = logits.iter().map(|&v| (v as f64).exp()).sum();
        let want = |i: usize| (logits[i] as f64 - z.ln()) as f32;
        assert!((lp.logprob - want(0)).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((lp.top[0].1 - want(2)).abs() < 1e-6 && (lp.top[1].1 - want(1)).abs() < 1e-6);
    }
}
