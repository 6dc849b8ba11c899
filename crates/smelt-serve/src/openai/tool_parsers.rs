//! `tool_choice: "auto"`: the model decides whether to call tools, in its own format, and the
//! answer is read for calls afterwards, as vLLM's `--tool-call-parser` reads it. Two formats:
//!
//! - `hermes` (Hermes 2 Pro, Qwen 2.5 and other ChatML models): each call is
//!   `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`; the text before the first
//!   is the message's content.
//! - `llama3_json` (Llama 3.1–3.3): the answer is one or more `{"name": ..., "parameters":
//!   {...}}` objects (or `"arguments"`), separated by `;`, optionally after `<|python_tag|>`.
//!
//! What counts as calls: the calls in order while each parses (text between Hermes calls is
//! skipped, as vLLM skips it); with none, the whole text is content (a model that wrote a
//! malformed call is answered as text, as vLLM does). Unlike vLLM, a malformed later call
//! leaves the earlier ones standing (a stream has sent them by then), and an answer cut by
//! `max_tokens` ends with `finish_reason: length`, as OpenAI ends a cut call. A call left open
//! at the end is read if its JSON is whole. An object needs `name` and `arguments` (or
//! `parameters`) to be a call. [`AutoStream`]
//! streams the same answer: content as it is written (holding back what could start a call),
//! each call whole once it closes.

use super::tools::CallSoFar;
use crate::json_schema::Json;

/// A model's own tool-call format (vLLM's `--tool-call-parser` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolParser {
    /// `<tool_call>{...}</tool_call>` blocks after optional text.
    Hermes,
    /// JSON objects separated by `;`, optionally after `<|python_tag|>`.
    Llama3Json,
}

impl ToolParser {
    /// The parser of vLLM's name `name`, or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "hermes" => Some(Self::Hermes),
            "llama3_json" => Some(Self::Llama3Json),
            _ => None,
        }
    }

    /// The names [`ToolParser::from_name`] takes.
    pub const NAMES: &'static [&'static str] = &["hermes", "llama3_json"];
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// An answer read for calls: its content (`None` when it is only calls) and its calls.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AutoAnswer {
    pub content: Option<String>,
    pub calls: Vec<CallSoFar>,
}

/// One call's JSON object as a call: `name` and `arguments` (or Llama's `parameters`),
/// the arguments as compact JSON text in the model's key order (a string is taken as the
/// text itself).
fn call_of(v: &Json) -> Option<CallSoFar> {
    let Some(Json::String(name)) = v.get("name") else {
        return None;
    };
    // An object without either is other JSON (`{"name": "Alice", "age": 30}`), not a call.
    let arguments = match v.get("arguments").or_else(|| v.get("parameters"))? {
        Json::String(s) => s.clone(),
        a => a.to_text(),
    };
    Some(CallSoFar {
        name: name.clone(),
        arguments,
    })
}

/// A call's JSON text as a call, if it is one.
fn parse_call(text: &str) -> Option<CallSoFar> {
    call_of(&serde_json::from_str::<Json>(text.trim()).ok()?)
}

/// Reads a whole answer `text` for calls.
pub(super) fn read_answer(parser: ToolParser, text: &str) -> AutoAnswer {
    let calls = match parser {
        ToolParser::Hermes => hermes_calls(text),
        ToolParser::Llama3Json => llama3_calls(text),
    };
    match calls {
        Some((content, calls)) if !calls.is_empty() => AutoAnswer { content, calls },
        _ => AutoAnswer {
            content: Some(text.to_owned()),
            calls: Vec::new(),
        },
    }
}

/// Hermes: the content before the first `<tool_call>` (trailing whitespace dropped), and the
/// calls while they parse; `None` if there is no call.
fn hermes_calls(text: &str) -> Option<(Option<String>, Vec<CallSoFar>)> {
    let first = text.find(OPEN)?;
    let content = Some(text[..first].trim_end().to_owned()).filter(|c| !c.is_empty());
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(body) = rest.strip_prefix(OPEN) {
        let (inside, after) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""),
        };
        match parse_call(inside) {
            Some(call) => calls.push(call),
            None => break,
        }
        rest = match after.find(OPEN) {
            Some(next) => &after[next..],
            None => break,
        };
    }
    Some((content, calls))
}

/// Llama 3 JSON: every `;`-separated object of an answer that starts with `{` or
/// `<|python_tag|>` (after whitespace); `None` for any other text or any object that is not
/// a call.
fn llama3_calls(text: &str) -> Option<(Option<String>, Vec<CallSoFar>)> {
    let trimmed = text.trim_start();
    let mut rest = trimmed.strip_prefix(PYTHON_TAG).unwrap_or(trimmed);
    if !rest.trim_start().starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Json>();
        let v = values.next()?.ok()?;
        calls.push(call_of(&v)?);
        rest = rest[values.byte_offset()..].trim_start();
        rest = match rest.strip_prefix(';') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some((None, calls))
}

/// What an [`AutoStream`] lets out.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    /// More of the content.
    Content(String),
    /// A whole call.
    Call(CallSoFar),
}

/// Where an [`AutoStream`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No call seen yet: content, holding back what could start one.
    Before,
    /// Reading calls; the next starts at or after this byte.
    Calls(usize),
    /// Plain text to the end (no call can come, or the first was malformed).
    Text,
    /// Nothing more goes out (text after the calls, or a malformed later call).
    Over,
}

/// An auto answer read as it is written: the pieces it lets out add up to [`read_answer`] of
/// the whole text (content pieces joined, calls in order).
pub(super) struct AutoStream {
    parser: ToolParser,
    mode: Mode,
    /// The answer so far.
    text: String,
    /// Bytes of `text` gone out as content.
    sent: usize,
    /// Calls gone out.
    calls: usize,
}

impl AutoStream {
    /// Before any text.
    pub(super) fn new(parser: ToolParser) -> Self {
        Self {
            parser,
            mode: Mode::Before,
            text: String::new(),
            sent: 0,
            calls: 0,
        }
    }

    /// Takes more of the answer; returns what may go out now.
    pub(super) fn push(&mut self, more: &str) -> Vec<Piece> {
        self.text.push_str(more);
        self.step(false)
    }

    /// The answer has ended; returns the rest.
    pub(super) fn end(&mut self) -> Vec<Piece> {
        self.step(true)
    }

    /// Whether calls went out (the answer's finish reason is then `tool_calls`).
    pub(super) fn called(&self) -> bool {
        self.calls > 0
    }

    /// Content up to byte `to` (if more than has gone out).
    fn content_to(&mut self, to: usize, out: &mut Vec<Piece>) {
        if to > self.sent {
            out.push(Piece::Content(self.text[self.sent..to].to_owned()));
            self.sent = to;
        }
    }

    fn step(&mut self, ended: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        match (self.parser, self.mode) {
            (_, Mode::Over) => {}
            (_, Mode::Text) => self.content_to(self.text.len(), &mut out),
            (ToolParser::Hermes, _) => self.hermes(ended, &mut out),
            (ToolParser::Llama3Json, _) => self.llama3(ended, &mut out),
        }
        out
    }

    fn hermes(&mut self, ended: bool, out: &mut Vec<Piece>) {
        if self.mode == Mode::Before {
            // What went out holds no call's start, so the search starts there.
            match self.text[self.sent..].find(OPEN).map(|p| p + self.sent) {
                None if ended => return self.content_to(self.text.len(), out),
                None => {
                    // Hold back what could start `<tool_call>`, and trailing whitespace
                    // (dropped if a call follows).
                    let cut = self.text.len() - partial_suffix(&self.text, OPEN);
                    let to = self.text[..cut].trim_end().len();
                    return self.content_to(to, out);
                }
                Some(first) => {
                    let to = self.text[..first].trim_end().len();
                    self.content_to(to, out);
                    self.mode = Mode::Calls(first);
                }
            }
        }
        let Mode::Calls(mut at) = self.mode else {
            return;
        };
        loop {
            // Text between and after calls is skipped (not sent).
            let Some(start) = self.text[at..].find(OPEN).map(|p| p + at) else {
                if ended {
                    self.mode = Mode::Over;
                }
                return;
            };
            let body = &self.text[start + OPEN.len()..];
            let (inside, end) = match body.find(CLOSE) {
                Some(e) => (&body[..e], start + OPEN.len() + e + CLOSE.len()),
                None if ended => (body, self.text.len()),
                None => return,
            };
            match parse_call(inside) {
                Some(call) => {
                    out.push(Piece::Call(call));
                    self.calls += 1;
                    at = end;
                    self.mode = Mode::Calls(at);
                }
                None if self.calls == 0 => {
                    // A malformed first call: the whole answer is text, what was held back
                    // before it included.
                    self.mode = Mode::Text;
                    return self.content_to(self.text.len(), out);
                }
                None => {
                    self.mode = Mode::Over;
                    return;
                }
            }
        }
    }

    fn llama3(&mut self, ended: bool, out: &mut Vec<Piece>) {
        let lead = self.text.trim_start();
        let could_call = lead.is_empty()
            || lead.starts_with('{')
            || lead.starts_with(PYTHON_TAG)
            || PYTHON_TAG.starts_with(lead);
        if !could_call {
            self.mode = Mode::Text;
            return self.content_to(self.text.len(), out);
        }
        // Calls are read whole, at the end.
        if ended {
            let answer = read_answer(ToolParser::Llama3Json, &self.text);
            match answer.content {
                Some(_) => self.content_to(self.text.len(), out),
                None => {
                    self.calls = answer.calls.len();
                    out.extend(answer.calls.into_iter().map(Piece::Call));
                }
            }
            self.mode = Mode::Over;
        }
    }
}

/// The length of the longest proper prefix of `tag` that `text` ends with.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&k| text.ends_with(&tag[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use smelt_quant::rng::Rng;

    use super::*;

    fn call(name: &str, arguments: &str) -> CallSoFar {
        CallSoFar {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// Answers with what [`read_answer`] must make of them.
    fn cases() -> Vec<(ToolParser, &'static str, AutoAnswer)> {
        use ToolParser::*;
        let answer = |content: Option<&str>, calls: Vec<CallSoFar>| AutoAnswer {
            content: content.map(String::from),
            calls,
        };
        let text = |t: &str| answer(Some(t), vec![]);
        let weather = call("get_weather", r#"{"city":"Paris"}"#);
        vec![
            (
                Hermes,
                "Just text, no <tool_ call>.",
                text("Just text, no <tool_ call>."),
            ),
            (
                Hermes,
                "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                answer(Some("Let me check."), vec![weather.clone()]),
            ),
            (
                Hermes,
                "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}</tool_call>",
                answer(None, vec![call("a", "{}"), call("b", r#"{"x":[1,2]}"#)]),
            ),
            // Left open at the end, but whole JSON: read.
            (
                Hermes,
                "  <tool_call>{\"name\": \"a\", \"arguments\": {\"k\": \"v\"}}",
                answer(None, vec![call("a", r#"{"k":"v"}"#)]),
            ),
            // A malformed first call: all text.
            (
                Hermes,
                "Hi <tool_call>{\"name\": \"a\", \"argu</tool_call>",
                text("Hi <tool_call>{\"name\": \"a\", \"argu</tool_call>"),
            ),
            // A malformed second call (after text): the first stands.
            (
                Hermes,
                "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call> and <tool_call>{oops}</tool_call>",
                answer(None, vec![call("a", "{}")]),
            ),
            // Text between calls is skipped.
            (
                Hermes,
                "Both.\n<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\nNow b:\n<tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"n\\\": 2}\"}</tool_call>\nDone.",
                answer(
                    Some("Both."),
                    vec![call("a", "{}"), call("b", r#"{"n": 2}"#)],
                ),
            ),
            // JSON with a name but no arguments is not a call.
            (
                Hermes,
                "<tool_call>{\"name\": \"a\"}</tool_call>",
                text("<tool_call>{\"name\": \"a\"}</tool_call>"),
            ),
            (
                Llama3Json,
                "{\"name\": \"Alice\", \"age\": 30}",
                text("{\"name\": \"Alice\", \"age\": 30}"),
            ),
            (
                Llama3Json,
                "The weather is fine.",
                text("The weather is fine."),
            ),
            (
                Llama3Json,
                " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                answer(None, vec![weather.clone()]),
            ),
            (
                Llama3Json,
                "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": {\"n\": 1}}",
                answer(None, vec![call("a", "{}"), call("b", r#"{"n":1}"#)]),
            ),
            (
                Llama3Json,
                "{\"name\": \"a\", \"param",
                text("{\"name\": \"a\", \"param"),
            ),
            (
                Llama3Json,
                "{\"city\": \"Paris\"}",
                text("{\"city\": \"Paris\"}"),
            ),
            // The arguments keep the model's key order.
            (
                Hermes,
                "<tool_call>{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": {\"y\": 2, \"b\": 3}}}</tool_call>",
                answer(None, vec![call("f", r#"{"z":1,"a":{"y":2,"b":3}}"#)]),
            ),
        ]
    }

    #[test]
    fn answers_are_read_for_calls_as_vllm_reads_them() {
        for (parser, text, want) in cases() {
            assert_eq!(read_answer(parser, text), want, "{parser:?}: {text:?}");
        }
    }

    #[test]
    fn streamed_pieces_add_up_to_the_whole_answer() {
        let mut rng = Rng::new(7);
        for (parser, text, want) in cases() {
            for _ in 0..50 {
                // Random cuts, on character boundaries.
                let mut stream = AutoStream::new(parser);
                let mut pieces = Vec::new();
                let mut at = 0;
                while at < text.len() {
                    let mut to = (at + 1 + (rng.next_u64() % 6) as usize).min(text.len());
                    while !text.is_char_boundary(to) {
                        to += 1;
                    }
                    pieces.extend(stream.push(&text[at..to]));
                    at = to;
                }
                pieces.extend(stream.end());
                let content: String = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Content(c) => Some(c.as_str()),
                        Piece::Call(_) => None,
                    })
                    .collect();
                let calls: Vec<CallSoFar> = pieces
                    .into_iter()
                    .filter_map(|p| match p {
                        Piece::Call(c) => Some(c),
                        Piece::Content(_) => None,
                    })
                    .collect();
                assert_eq!(calls, want.calls, "{parser:?}: {text:?}");
                assert_eq!(stream.called(), !want.calls.is_empty());
                assert_eq!(
                    content,
                    want.content.clone().unwrap_or_default(),
                    "{text:?}"
                );
            }
        }
    }
}
