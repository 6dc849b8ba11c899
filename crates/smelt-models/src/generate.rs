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
/// could still be the start of a stop string or an incomplete UTF-8 character). `token_bytes`
/// gives the bytes of token ids; the text's bytes are those of each new token appended in turn
/// (both tokenizers decode concatenatively), so a long generation does not re-decode its whole
/// output at every token. `cache` may already hold a prefix of `prompt`.
pub fn generate(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    token_bytes: &dyn Fn(&[u32]) -> Vec<u8>,
    on_text: impl FnMut(&str),
) -> Result<Generation, ModelError> {
    generate_observed(model, cache, prompt, opts, token_bytes, on_text, |_, _| {})
}

/// [`generate`], also calling `on_step(logits, chosen)` at every sampled step (for debugging
/// and for comparing with other runtimes).
pub fn generate_observed(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    token_bytes: &dyn Fn(&[u32]) -> Vec<u8>,
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
    // Presence and frequency penalties count the output only, as the server's do.
    let mut sampler = Sampler::with_prompt(opts.sampler.clone(), prompt.len());
    let mut stream = TextStream::new(&opts.stop_strings);
    let mut tokens = Vec::new();
    let mut out_bytes = Vec::new();
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
        out_bytes.extend(token_bytes(&[next]));
        let (piece, stopped) = stream.update(String::from_utf8_lossy(&out_bytes).into_owned());
        if !piece.is_empty() {
            on_text(&piece);
        }
        if stopped {
            finish = FinishReason::Stop;
            break;
        }
        // A full context ends the answer as `max_tokens` does (llama.cpp stops there too),
        // keeping what was generated.
        if i + 1 == opts.max_tokens || cache.len() >= cache.capacity() {
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
/// the text is cut before the first stop string (or after it, when asked to keep it).
#[derive(Debug, Clone)]
pub struct TextStream {
    stop_strings: Vec<String>,
    /// Bytes held back: the longest stop string less one.
    hold: usize,
    text: String,
    emitted: usize,
    stopped: bool,
    /// Keep the stop string that ends the text (vLLM's `include_stop_str_in_output`).
    keep_stop: bool,
    /// Stop strings ending at or before this byte do not count (the text of vLLM's
    /// `min_tokens`).
    floor: usize,
}

impl TextStream {
    /// A stream that stops at any of `stop_strings` (empty ones are ignored), keeping the stop
    /// string in the text when `keep_stop`.
    pub fn with_stop_kept(stop_strings: &[String], keep_stop: bool) -> Self {
        Self {
            keep_stop,
            ..Self::new(stop_strings)
        }
    }

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
            keep_stop: false,
            floor: 0,
        }
    }

    /// Takes the full text of every token so far; returns the newly final piece and whether a
    /// stop string ended the text.
    pub fn update(&mut self, text: String) -> (String, bool) {
        self.update_checking(text, true)
    }

    /// [`TextStream::update`], where `check_stops` false (too few tokens are out yet) makes
    /// every stop string ending within this text not count, now or later, as vLLM's
    /// `min_tokens` does; text is still held back as usual.
    pub fn update_checking(&mut self, text: String, check_stops: bool) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text = text;
        if !check_stops {
            // A character cut by the last unchecked token (decoded as U+FFFD until its last
            // byte comes) belongs to the token that completes it, as in vLLM's detokenizer.
            self.floor = self.text.len();
            if self.text.ends_with('\u{fffd}') {
                self.floor -= '\u{fffd}'.len_utf8();
            }
        }
        // A stop string that began in the emitted text would have ended inside the text of
        // an earlier call (the hold is its length less one) and been found then. One that
        // counts ends past the floor, so it starts at `floor + 1 - len` or later.
        let found = self
            .stop_strings
            .iter()
            .filter_map(|s| {
                let mut from = self.emitted.max((self.floor + 1).saturating_sub(s.len()));
                while from < self.text.len() && !self.text.is_char_boundary(from) {
                    from += 1;
                }
                let p = from + self.text.get(from..)?.find(s.as_str())?;
                Some((p, p + s.len()))
            })
            .min();
        if let Some((at, end)) = found {
            self.text.truncate(if self.keep_stop { end } else { at });
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

#[cfg(test)]
mod tests {
    use super::TextStream;

    /// Feeds `pieces` as successive tokens' text (the first `unchecked` without checking stop
    /// strings); returns the pieces emitted (the rest included) and whether a stop ended it.
    fn run(stream: &mut TextStream, pieces: &[&str], unchecked: usize) -> (Vec<String>, bool) {
        let (mut out, mut text) = (Vec::new(), String::new());
        for (i, p) in pieces.iter().enumerate() {
            text.push_str(p);
            let (piece, stopped) = stream.update_checking(text.clone(), i >= unchecked);
            out.push(piece);
            if stopped {
                return (out, true);
            }
        }
        out.push(stream.finish());
        (out, false)
    }

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stop_strings_cut_the_text_across_pieces_and_nothing_emitted_is_taken_back() {
        let mut s = TextStream::new(&stops(&["END", "\n\n"]));
        let (out, stopped) = run(&mut s, &["Hello E", "N", "D there"], 0);
        assert!(stopped);
        assert_eq!(out.concat(), "Hello ");
        assert_eq!(s.text(), "Hello ");
        // Held back while it could start a stop string, let out once it cannot.
        let mut s = TextStream::new(&stops(&["END"]));
        let (out, stopped) = run(&mut s, &["ab E", "Nx", "y"], 0);
        assert!(!stopped);
        assert_eq!(out, ["ab", " E", "N", "xy"]);
        // The earliest stop string wins, whatever the list order.
        let mut s = TextStream::new(&stops(&["b", "a"]));
        assert_eq!(run(&mut s, &["xab"], 0).0.concat(), "x");
    }

    #[test]
    fn a_kept_stop_string_ends_the_text() {
        let mut s = TextStream::with_stop_kept(&stops(&["END"]), true);
        let (out, stopped) = run(&mut s, &["Hello E", "ND there"], 0);
        assert!(stopped);
        assert_eq!(out.concat(), "Hello END");
        assert_eq!(s.text(), "Hello END");
    }

    #[test]
    fn stop_strings_ending_before_min_tokens_do_not_count() {
        // Tokens 1 and 2 are not checked: "END" ends inside them; the next one counts, even
        // where it began in the unchecked text.
        let mut s = TextStream::new(&stops(&["END"]));
        let (out, stopped) = run(&mut s, &["a END b E", "N", "D c"], 2);
        assert!(stopped);
        assert_eq!(out.concat(), "a END b ");
        let mut s = TextStream::new(&stops(&["END"]));
        let (out, stopped) = run(&mut s, &["END", "x", "y"], 1);
        assert!(!stopped);
        assert_eq!(out.concat(), "ENDxy");
        // Past the floor, a later copy of the same stop string still counts.
        let mut s = TextStream::new(&stops(&["END"]));
        let (out, stopped) = run(&mut s, &["END", "END"], 1);
        assert!(stopped);
        assert_eq!(out.concat(), "END");
        // Multi-byte text before the floor: the search starts on a character boundary.
        let mut s = TextStream::new(&stops(&["éé"]));
        let (out, stopped) = run(&mut s, &["aéé", "é"], 1);
        assert!(stopped);
        assert_eq!(out.concat(), "aé");
    }

    #[test]
    fn a_character_completed_after_min_tokens_counts_for_stop_strings() {
        // The unchecked token ends inside "é" (lossy-decoded as U+FFFD); the next one finishes
        // it, so a stop string ending there ends in a checked token.
        let mut s = TextStream::new(&stops(&["é"]));
        let (first, stopped) = s.update_checking("a\u{fffd}".to_string(), false);
        assert!(!stopped);
        let (second, stopped) = s.update_checking("aé".to_string(), true);
        assert!(stopped);
        assert_eq!(first + &second, "a");
    }
}
