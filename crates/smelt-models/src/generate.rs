//! Text generation: run the prompt in batches, then sample one token at a time until a stop
//! token, a stop string or the token limit, streaming the text as it becomes final.

use std::time::Instant;

use crate::kv_cache::KvCache;
use crate::llama::{Llama, Logits, ModelError};
use crate::sampler::{Sampler, SamplerConfig};

/// Prompt tokens per forward pass (llama.cpp's default micro-batch).
pub const PROMPT_BATCH: usize = 512;

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampler: SamplerConfig,
    /// Tokens that end generation (end of sequence, end of turn); not part of the output.
    pub stop_tokens: Vec<u32>,
    /// Strings that end generation; the text is cut before the first one.
    pub stop_strings: Vec<String>,
}

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The token limit.
    Length,
    /// A stop token or stop string.
    Stop,
}

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated tokens (without a final stop token).
    pub tokens: Vec<u32>,
    /// Their text, cut before a stop string.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Seconds spent on the prompt (to the first sampled token).
    pub prompt_seconds: f64,
    /// Seconds spent generating after the first token.
    pub generate_seconds: f64,
}

/// Runs the prompt tokens that are not already in `cache` (it must hold a prefix of `prompt`,
/// e.g. the previous turn of a chat) and returns the last token's logits.
pub fn prefill(model: &Llama, cache: &mut KvCache, prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Unsupported("the prompt is empty".into()));
    }
    if prompt.len() > cache.capacity() {
        return Err(ModelError::ContextFull(cache.capacity()));
    }
    // Always recompute at least the last prompt token to get its logits.
    cache.truncate(cache.len().min(prompt.len() - 1));
    let mut logits = Vec::new();
    for chunk in prompt[cache.len()..].chunks(PROMPT_BATCH) {
        logits = model.forward_batch(chunk, cache, Logits::Last)?;
    }
    Ok(logits)
}

/// Generates after `prompt`, calling `on_text` with each piece of final text (held back while it
/// could still be the start of a stop string or an incomplete UTF-8 character). `decode` turns
/// token ids into text. `cache` may already hold a prefix of `prompt`.
pub fn generate(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    decode: &dyn Fn(&[u32]) -> String,
    on_text: impl FnMut(&str),
) -> Result<Generation, ModelError> {
    generate_observed(model, cache, prompt, opts, decode, on_text, |_, _| {})
}

/// [`generate`], also calling `on_step(logits, chosen)` at every sampled step (for debugging
/// and for comparing with other runtimes).
pub fn generate_observed(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    decode: &dyn Fn(&[u32]) -> String,
    mut on_text: impl FnMut(&str),
    mut on_step: impl FnMut(&[f32], u32),
) -> Result<Generation, ModelError> {
    opts.sampler.validate().map_err(ModelError::Unsupported)?;
    let t0 = Instant::now();
    let prefill_span = smelt_trace::span("phase", "prefill").arg("tokens", prompt.len() as f64);
    let mut logits = prefill(model, cache, prompt)?;
    drop(prefill_span);
    let mut prompt_seconds = None;
    let mut history = prompt.to_vec();
    let mut sampler = Sampler::new(opts.sampler.clone());
    let mut stream = TextStream::new(&opts.stop_strings);
    let mut tokens = Vec::new();
    let mut finish = FinishReason::Length;
    for i in 0..opts.max_tokens {
        let sample_span = smelt_trace::span("phase", "sample");
        let next = sampler.sample(&logits, &history);
        drop(sample_span);
        on_step(&logits, next);
        prompt_seconds.get_or_insert_with(|| t0.elapsed().as_secs_f64());
        if opts.stop_tokens.contains(&next) {
            finish = FinishReason::Stop;
            break;
        }
        tokens.push(next);
        history.push(next);
        let (piece, stopped) = stream.update(decode(&tokens));
        if !piece.is_empty() {
            on_text(&piece);
        }
        if stopped {
            finish = FinishReason::Stop;
            break;
        }
        if i + 1 == opts.max_tokens {
            break;
        }
        let _decode = smelt_trace::span("phase", "decode");
        logits = model.forward(next, cache)?;
    }
    let rest = stream.finish();
    if !rest.is_empty() {
        on_text(&rest);
    }
    let text = stream.text().to_string();
    let prompt_seconds = prompt_seconds.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    Ok(Generation {
        tokens,
        text,
        finish,
        prompt_seconds,
        generate_seconds: t0.elapsed().as_secs_f64() - prompt_seconds,
    })
}

/// Turns the text of the tokens generated so far into final pieces for streaming: text that
/// could still be the start of a stop string, or an incomplete UTF-8 character, is held back;
/// the text is cut before the first stop string.
#[derive(Debug, Clone)]
pub struct TextStream {
    stop_strings: Vec<String>,
    /// Bytes held back: the longest stop string less one.
    hold: usize,
    text: String,
    emitted: usize,
    stopped: bool,
}

impl TextStream {
    /// A stream that stops at any of `stop_strings` (empty ones are ignored).
    pub fn new(stop_strings: &[String]) -> Self {
        let stop_strings: Vec<String> = stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let hold = stop_strings.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
        Self {
            stop_strings,
            hold,
            text: String::new(),
            emitted: 0,
            stopped: false,
        }
    }

    /// Takes the full text of every token so far; returns the newly final piece and whether a
    /// stop string ended the text.
    pub fn update(&mut self, text: String) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text = text;
        // A stop string that began in the emitted text would have ended inside the text of
        // an earlier call (the hold is its length less one) and been found then.
        let from = self.emitted;
        let found = self
            .stop_strings
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| from + p))
            .min();
        if let Some(at) = found {
            self.text.truncate(at);
            self.stopped = true;
            return (self.finish(), true);
        }
        let mut safe = self.text.len().saturating_sub(self.hold);
        if self.text.ends_with('\u{fffd}') {
            safe = safe.min(self.text.len() - '\u{fffd}'.len_utf8());
        }
        while !self.text.is_char_boundary(safe) {
            safe -= 1;
        }
        if safe > self.emitted {
            let piece = self.text[self.emitted..safe].to_string();
            self.emitted = safe;
            (piece, false)
        } else {
            (String::new(), false)
        }
    }

    /// Everything not yet emitted (call when generation ends).
    pub fn finish(&mut self) -> String {
        let rest = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        rest
    }

    /// The whole text so far (cut before a stop string).
    pub fn text(&self) -> &str {
        &self.text
    }
}
