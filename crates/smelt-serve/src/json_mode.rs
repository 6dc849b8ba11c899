//! Constrained decoding to JSON: OpenAI's `response_format` `json_object` (any one object, RFC
//! 8259) and `json_schema` (an instance of a schema, compiled by [`crate::json_schema`]). A
//! byte-level recognizer walks the schema's grammar and tracks how far the text is through it;
//! before each draw, every token whose bytes would leave it is masked out, and the sequence
//! ends as the top-level object closes. Strings must be valid UTF-8 with legal escapes; nesting
//! is bounded at [`MAX_DEPTH`] and runs of whitespace at [`MAX_WHITESPACE`] (a constrained
//! model otherwise can pad forever).

use crate::json_schema::{ANY_STRING, Grammar, Node, NodeId};

/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;

/// Longest run of whitespace between tokens of the grammar.
pub const MAX_WHITESPACE: u8 = 16;

/// Where a number is in `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::Exp)
    }

    /// The state after `b`, or `None` if `b` does not continue the number (an integer has
    /// no fraction or exponent).
    fn next(self, b: u8, integer: bool) -> Option<Num> {
        use Num::*;
        let n = match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => E,
            (E, b'+' | b'-') => ESign,
            (E | ESign | Exp, b'0'..=b'9') => Exp,
            _ => return None,
        };
        (!integer || matches!(n, Zero | Int)).then_some(n)
    }

    /// The state after a number's first byte.
    fn start(b: u8) -> Option<Num> {
        match b {
            b'-' => Some(Num::Minus),
            b'0' => Some(Num::Zero),
            b'1'..=b'9' => Some(Num::Int),
            _ => None,
        }
    }
}

/// Where an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    Open,
    /// After `,`: a key.
    Key,
    /// A key is being read (the frame above).
    InKey,
    /// After a key: `:`.
    Colon,
    /// A value is being read (the frame above).
    InValue,
    /// After a value: `,` or `}`.
    AfterValue,
}

/// Where an array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrPhase {
    /// After `[`: a value or `]`.
    Open,
    /// An item is being read (the frame above).
    InValue,
    /// After an item: `,` or `]`.
    AfterValue,
}

/// Where a string's lexer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between characters.
    Char,
    /// Inside a multi-byte UTF-8 character: `left` continuation bytes due, the next within
    /// `lo..=hi` (no overlong form, surrogate or code point past U+10FFFF).
    Utf8 { left: u8, lo: u8, hi: u8 },
    /// After `\`.
    Backslash,
    /// In `\uXXXX` with `left` hex digits due; `d`: the first was D; `high`: the digits make a
    /// high surrogate (D800–DBFF); `low`: this escape must be the low half (DC00–DFFF) of a
    /// pair, as a lone surrogate is refused by JSON readers (serde_json, Python's `json`).
    Hex {
        left: u8,
        d: bool,
        high: bool,
        low: bool,
    },
    /// After a high surrogate's escape: its low half's `\` (`at` 0), then `u` (`at` 1).
    Pair { at: u8 },
}

/// One level of what is being read; the top of [`JsonState`]'s stack is the innermost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A value of `node` is due; none of it read yet.
    Value { node: NodeId },
    /// Inside an object; `next`: the first listed property that may still come.
    Object {
        node: NodeId,
        next: u16,
        phase: ObjPhase,
    },
    /// Inside an array with `count` items so far.
    Array {
        node: NodeId,
        count: u32,
        phase: ArrPhase,
    },
    /// Inside a string of `node` (a [`Node::String`]) after its opening quote, `chars`
    /// characters (code points) in.
    Str { node: NodeId, chars: u32, lex: Lex },
    /// Inside a number.
    Number { num: Num, integer: bool },
    /// Inside one of the texts of literal set `set`: `alive` marks those still matching after
    /// `at` bytes.
    Literal { set: u16, alive: u64, at: u16 },
}

/// How far a text is through one value of a [`Grammar`] (whose root is an object). Candidate
/// tokens are tried on a copy ([`JsonState::allows_with`] reuses one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonState {
    /// (levels,) outermost first; empty once the root has closed.
    stack: Vec<Frame>,
    /// Whitespace bytes in a row so far.
    whitespace: u8,
}

impl JsonState {
    /// Before any text of `g`.
    pub fn new(g: &Grammar) -> Self {
        Self {
            stack: vec![Frame::Value { node: g.root }],
            whitespace: 0,
        }
    }

    /// Whether the top-level object has closed.
    pub fn done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Inside a string between characters and escapes, how many more characters it may take:
    /// then any run of whole characters without `"`, `\` or controls up to that many may
    /// follow ([`TokenBytes::plain`]).
    fn string_room(&self, g: &Grammar) -> Option<u32> {
        match self.stack.last() {
            Some(&Frame::Str {
                node,
                chars,
                lex: Lex::Char,
            }) => match g.nodes[node as usize] {
                Node::String { max, .. } => Some(max - chars),
                _ => None,
            },
            _ => None,
        }
    }

    /// Takes `bytes` in order; false (and the state is then meaningless) at the first byte the
    /// grammar does not allow.
    pub fn feed(&mut self, g: &Grammar, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.step(g, b))
    }

    /// Whether `bytes` may follow, without taking them.
    pub fn allows(&self, g: &Grammar, bytes: &[u8]) -> bool {
        let mut s = self.clone();
        s.feed(g, bytes)
    }

    /// [`JsonState::allows`], trying them on `scratch` (overwritten) so no memory is allocated.
    pub fn allows_with(&self, g: &Grammar, bytes: &[u8], scratch: &mut JsonState) -> bool {
        scratch.clone_from(self);
        scratch.feed(g, bytes)
    }

    /// The top frame ended a value (or key, with the listed property `key` it matched): pop
    /// it and move its container on.
    fn finish(&mut self, key: Option<u16>) {
        self.stack.pop();
        match self.stack.last_mut() {
            Some(Frame::Object { next, phase, .. }) => {
                if let Some(k) = key {
                    *next = k + 1;
                }
                *phase = if *phase == ObjPhase::InKey {
                    ObjPhase::Colon
                } else {
                    ObjPhase::AfterValue
                };
            }
            Some(Frame::Array { count, phase, .. }) => {
                *count += 1;
                *phase = ArrPhase::AfterValue;
            }
            // The root closed, or (not reached) a leaf under a leaf.
            _ => {}
        }
    }

    fn step(&mut self, g: &Grammar, b: u8) -> bool {
        let Some(&top) = self.stack.last() else {
            return false;
        };
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let between = match top {
            Frame::Value { .. } => true,
            Frame::Object { phase, .. } => !matches!(phase, ObjPhase::InKey | ObjPhase::InValue),
            Frame::Array { phase, .. } => phase != ArrPhase::InValue,
            _ => false,
        };
        if space && between {
            self.whitespace += 1;
            return self.whitespace <= MAX_WHITESPACE;
        }
        if !space {
            self.whitespace = 0;
        }
        match top {
            Frame::Value { node } => self.value(g, node, b),
            Frame::Object { node, next, phase } => self.object(g, node, next, phase, b),
            Frame::Array { node, count, phase } => {
                let Node::Array { items, min, max } = g.nodes[node as usize] else {
                    return false;
                };
                let close = b == b']' && count >= min;
                match phase {
                    _ if close && phase != ArrPhase::InValue => {
                        self.finish(None);
                        true
                    }
                    ArrPhase::Open if count < max => {
                        self.set_array_phase(ArrPhase::InValue);
                        self.stack.push(Frame::Value { node: items });
                        self.step(g, b)
                    }
                    ArrPhase::AfterValue if b == b',' && count < max => {
                        self.set_array_phase(ArrPhase::InValue);
                        self.stack.push(Frame::Value { node: items });
                        true
                    }
                    _ => false,
                }
            }
            Frame::Str { node, chars, lex } => self.string(g, node, chars, lex, b),
            Frame::Number { num, integer } => match num.next(b, integer) {
                Some(num) => {
                    self.stack.pop();
                    self.stack.push(Frame::Number { num, integer });
                    true
                }
                // The number ends; `b` belongs to what follows it.
                None if num.complete() => {
                    self.finish(None);
                    self.step(g, b)
                }
                None => false,
            },
            Frame::Literal { set, alive, at } => self.literal(g, set, alive, at, b),
        }
    }

    fn set_array_phase(&mut self, to: ArrPhase) {
        if let Some(Frame::Array { phase, .. }) = self.stack.last_mut() {
            *phase = to;
        }
    }

    /// The first byte of a value of `node`: picks the union alternative it starts, then
    /// replaces the [`Frame::Value`] with that value's own frame.
    fn value(&mut self, g: &Grammar, node: NodeId, b: u8) -> bool {
        let mut n = node;
        while let Node::Union { alts } = &g.nodes[n as usize] {
            match alts.iter().find(|&&a| g.starts(a, b)) {
                Some(&a) => n = a,
                None => return false,
            }
        }
        if !g.starts(n, b) {
            return false;
        }
        let frame = match g.nodes[n as usize] {
            Node::Object { .. } | Node::Array { .. } if self.stack.len() > MAX_DEPTH => {
                return false;
            }
            Node::Object { .. } => Frame::Object {
                node: n,
                next: 0,
                phase: ObjPhase::Open,
            },
            Node::Array { .. } => Frame::Array {
                node: n,
                count: 0,
                phase: ArrPhase::Open,
            },
            Node::String { .. } => Frame::Str {
                node: n,
                chars: 0,
                lex: Lex::Char,
            },
            Node::Number { integer } => match Num::start(b) {
                Some(num) => Frame::Number { num, integer },
                None => return false,
            },
            Node::Literals { set } => {
                let count = g.literals[set as usize].len();
                self.stack.pop();
                self.stack.push(Frame::Literal {
                    set,
                    alive: u64::MAX >> (64 - count.max(1)),
                    at: 0,
                });
                return self.step(g, b);
            }
            Node::Union { .. } => return false,
        };
        self.stack.pop();
        self.stack.push(frame);
        true
    }

    fn object(&mut self, g: &Grammar, node: NodeId, next: u16, phase: ObjPhase, b: u8) -> bool {
        let Node::Object { props, keys, extra } = &g.nodes[node as usize] else {
            return false;
        };
        let set_phase = |s: &mut Self, to: ObjPhase| {
            if let Some(Frame::Object { phase, .. }) = s.stack.last_mut() {
                *phase = to;
            }
        };
        let rest = &props[(next as usize).min(props.len())..];
        match (phase, b) {
            (ObjPhase::Open | ObjPhase::AfterValue, b'}') if !rest.iter().any(|p| p.required) => {
                self.finish(None);
                true
            }
            (ObjPhase::AfterValue, b',') if !rest.is_empty() || extra.is_some() => {
                set_phase(self, ObjPhase::Key);
                true
            }
            (ObjPhase::Open | ObjPhase::Key, b'"') => {
                set_phase(self, ObjPhase::InKey);
                if props.is_empty() {
                    if extra.is_none() {
                        return false;
                    }
                    // Any key: a string.
                    self.stack.push(Frame::Str {
                        node: ANY_STRING,
                        chars: 0,
                        lex: Lex::Char,
                    });
                    return true;
                }
                // The keys that may come: the next ones up to and including the first
                // required one.
                let upto = rest
                    .iter()
                    .position(|p| p.required)
                    .map_or(rest.len(), |i| i + 1);
                if upto == 0 {
                    return false;
                }
                let alive = (u64::MAX >> (64 - upto)) << next;
                self.stack.push(Frame::Literal {
                    set: *keys,
                    alive,
                    at: 0,
                });
                self.step(g, b)
            }
            (ObjPhase::Colon, b':') => {
                // The matched property's value, or any key's.
                let value = if props.is_empty() {
                    extra.unwrap_or(ANY_STRING)
                } else {
                    match (next as usize).checked_sub(1).and_then(|i| props.get(i)) {
                        Some(p) => p.node,
                        None => return false,
                    }
                };
                set_phase(self, ObjPhase::InValue);
                self.stack.push(Frame::Value { node: value });
                true
            }
            _ => false,
        }
    }

    fn literal(&mut self, g: &Grammar, set: u16, alive: u64, at: u16, b: u8) -> bool {
        let texts = &g.literals[set as usize];
        let at_ = at as usize;
        let mut still = 0u64;
        let mut ended = None;
        for (i, t) in texts.iter().enumerate() {
            if alive >> i & 1 == 0 {
                continue;
            }
            if t.len() > at_ && t[at_] == b {
                still |= 1 << i;
            } else if t.len() == at_ {
                ended = Some(i as u16);
            }
        }
        let is_key = |s: &Self| {
            s.stack.len() >= 2
                && matches!(
                    s.stack[s.stack.len() - 2],
                    Frame::Object {
                        phase: ObjPhase::InKey,
                        ..
                    }
                )
        };
        if still == 0 {
            // A text ended at the byte before; `b` belongs to what follows it.
            return match ended {
                Some(i) => {
                    let key = is_key(self).then_some(i);
                    self.finish(key);
                    self.step(g, b)
                }
                None => false,
            };
        }
        let at = at + 1;
        // One text left and it is whole: end it now (keys end at their closing quote).
        if still.count_ones() == 1 {
            let i = still.trailing_zeros() as u16;
            if texts[i as usize].len() == at as usize {
                let key = is_key(self).then_some(i);
                self.finish(key);
                return true;
            }
        }
        if let Some(top) = self.stack.last_mut() {
            *top = Frame::Literal {
                set,
                alive: still,
                at,
            };
        }
        true
    }

    fn string(&mut self, g: &Grammar, node: NodeId, chars: u32, lex: Lex, b: u8) -> bool {
        let Node::String { min, max } = g.nodes[node as usize] else {
            return false;
        };
        let utf8 = |left, lo, hi| (chars + 1, Lex::Utf8 { left, lo, hi });
        let (chars, lex) = match lex {
            Lex::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return false;
                }
                let lex = if left == 1 {
                    Lex::Char
                } else {
                    Lex::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    }
                };
                (chars, lex)
            }
            Lex::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => (chars, Lex::Char),
                b'u' => (
                    chars,
                    Lex::Hex {
                        left: 4,
                        d: false,
                        high: false,
                        low: false,
                    },
                ),
                _ => return false,
            },
            Lex::Pair { at: 0 } if b == b'\\' => (chars, Lex::Pair { at: 1 }),
            Lex::Pair { at: 1 } if b == b'u' => (
                chars,
                Lex::Hex {
                    left: 4,
                    d: false,
                    high: false,
                    low: true,
                },
            ),
            Lex::Pair { .. } => return false,
            Lex::Hex { left, d, high, low } => {
                let Some(v) = (b as char).to_digit(16) else {
                    return false;
                };
                let (d, high) = match left {
                    4 if low && v != 0xd => return false,
                    4 => (v == 0xd, false),
                    3 if d => match v {
                        0x8..=0xb if !low => (true, true),
                        0xc..=0xf if low => (true, false),
                        0x0..=0x7 if !low => (true, false),
                        _ => return false,
                    },
                    _ => (d, high),
                };
                let lex = if left > 1 {
                    Lex::Hex {
                        left: left - 1,
                        d,
                        high,
                        low,
                    }
                } else if high {
                    Lex::Pair { at: 0 }
                } else {
                    Lex::Char
                };
                (chars, lex)
            }
            Lex::Char => match b {
                b'"' => {
                    if chars < min {
                        return false;
                    }
                    self.finish(None);
                    return true;
                }
                _ if chars >= max => return false,
                b'\\' => (chars + 1, Lex::Backslash),
                0..0x20 => return false,
                0x20..0x80 => (chars + 1, Lex::Char),
                // Lead bytes, and the range of the byte after each (RFC 3629's table).
                0xc2..=0xdf => utf8(1, 0x80, 0xbf),
                0xe0 => utf8(2, 0xa0, 0xbf),
                0xed => utf8(2, 0x80, 0x9f),
                0xe1..=0xef => utf8(2, 0x80, 0xbf),
                0xf0 => utf8(3, 0x90, 0xbf),
                0xf4 => utf8(3, 0x80, 0x8f),
                0xf1..=0xf3 => utf8(3, 0x80, 0xbf),
                _ => return false,
            },
        };
        if let Some(top) = self.stack.last_mut() {
            *top = Frame::Str { node, chars, lex };
        }
        true
    }
}

/// Every token's bytes, and which are special (never allowed inside JSON), read once from
/// the tokenizer so a mask is one pass over the vocabulary.
pub struct TokenBytes {
    /// (n_vocab,) the bytes each token decodes to.
    pub bytes: Vec<Vec<u8>>,
    /// (n_vocab,) control and special tokens.
    pub special: Vec<bool>,
    /// (n_vocab,) for tokens that are whole characters with no `"`, `\` or control character,
    /// how many characters (else 0): allowed between a string's characters while it has room
    /// for them, without trying them.
    pub plain: Vec<u32>,
}

impl TokenBytes {
    /// From a tokenizer.
    pub fn new(tok: &smelt_models::tokenizer::Tokenizer) -> Self {
        let n = tok.vocab_size() as u32;
        let bytes: Vec<Vec<u8>> = (0..n).map(|t| tok.decode_bytes(&[t])).collect();
        let plain = bytes
            .iter()
            .map(|b| match std::str::from_utf8(b) {
                Ok(s) if b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') => {
                    s.chars().count() as u32
                }
                _ => 0,
            })
            .collect();
        Self {
            bytes,
            special: (0..n).map(|t| tok.is_special(t)).collect(),
            plain,
        }
    }

    /// Sets to −∞ the logits of every token `state` (of grammar `g`) does not allow next;
    /// returns how many remain. `logits`: (n_vocab,).
    pub fn mask(&self, g: &Grammar, state: &JsonState, logits: &mut [f32]) -> usize {
        let mut left = 0;
        let room = state.string_room(g);
        let mut scratch = state.clone();
        for (t, l) in logits.iter_mut().enumerate() {
            let ok = t < self.bytes.len()
                && !self.special[t]
                && !self.bytes[t].is_empty()
                && match room {
                    // A plain token cannot close the string: it fits or it does not.
                    Some(r) if self.plain[t] > 0 => self.plain[t] <= r,
                    _ => state.allows_with(g, &self.bytes[t], &mut scratch),
                };
            if ok {
                left += 1;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use smelt_quant::rng::Rng;

    use super::*;

    fn whole(text: &str) -> bool {
        let g = Grammar::json_object();
        let mut s = JsonState::new(&g);
        s.feed(&g, text.as_bytes()) && s.done()
    }

    #[test]
    fn objects_are_recognised_and_everything_else_refused() {
        for ok in [
            "{}",
            " {\"a\": 1}",
            "{\"a\":[1,-2.5e+3,0,true,false,null,\"x\\u00e9\\n\"],\"b\":{\"c\":{}}}",
            "{\"é\": \"日本\", \"s\": \"\\\"q\\\"\"}",
            "{\"n\": -0.0E-0}",
        ] {
            assert!(whole(ok), "{ok}");
        }
        for bad in [
            "[]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{} {}",
            "{\"a\":[1,2}",
            "{\"a\":1]",
            "{'a':1}",
        ] {
            assert!(!whole(bad), "{bad}");
        }
    }

    #[test]
    fn every_prefix_of_an_object_is_allowed_and_it_ends_where_it_closes() {
        let text = "{\"k\": [1, 2.5, {\"x\": null}], \"s\": \"a\\u0041é\"}";
        let g = Grammar::json_object();
        let mut s = JsonState::new(&g);
        for (i, b) in text.bytes().enumerate() {
            assert!(!s.done(), "done before byte {i}");
            assert!(s.feed(&g, &[b]), "byte {i} of {text}");
        }
        assert!(s.done());
        assert!(!s.allows(&g, b" "), "nothing follows the object");
    }

    /// Small random values: objects, arrays, strings with escapes and non-ASCII, numbers.
    fn random_value(rng: &mut Rng, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        let pick = rng.next_u64() % if depth >= 3 { 5 } else { 7 };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(rng.next_u64().is_multiple_of(2)),
            2 => serde_json::json!((rng.next_u64() % 2001) as i64 - 1000),
            3 => serde_json::json!(((rng.next_u64() % 100_000) as f64 - 50_000.0) / 64.0),
            4 => Value::String(
                ["", "a", "é", "日本", "q\"t", "tab\t", "\u{7}", "/"]
                    [(rng.next_u64() % 8) as usize]
                    .into(),
            ),
            5 => Value::Array(
                (0..rng.next_u64() % 4)
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.next_u64() % 4)
                    .map(|i| (format!("k{i}"), random_value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn agrees_with_serde_json_on_random_texts() {
        let alphabet = b"{}[]:,\"a10-.e+ \\ut\n";
        let mut rng = Rng::new(smelt_quant::rng::test_seed());
        let (mut objects, mut total) = (0, 0);
        for _ in 0..50_000 {
            // A random object, written compact or pretty, then sometimes one byte changed.
            let entries =
                (0..rng.next_u64() % 4).map(|i| (format!("f{i}"), random_value(&mut rng, 1)));
            let v = serde_json::Value::Object(entries.collect());
            let mut text = if rng.next_u64().is_multiple_of(2) {
                serde_json::to_string(&v).unwrap()
            } else {
                serde_json::to_string_pretty(&v).unwrap()
            }
            .into_bytes();
            let at = (rng.next_u64() % text.len() as u64) as usize;
            let byte = alphabet[(rng.next_u64() % alphabet.len() as u64) as usize];
            match rng.next_u64() % 4 {
                0 => text[at] = byte,
                1 => {
                    text.remove(at);
                }
                2 => text.insert(at, byte),
                _ => {}
            }
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            // serde_json takes trailing whitespace; generation ends as the object closes.
            let ours = whole(text.trim_end_matches([' ', '\t', '\n', '\r']));
            let theirs = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => v.is_object(),
                // A limit of f64, not of the grammar: JSON has no range.
                Err(e) if e.to_string().starts_with("number out of range") => continue,
                Err(_) => false,
            };
            assert_eq!(ours, theirs, "{text:?}");
            objects += usize::from(ours);
            total += 1;
        }
        assert!(
            objects > total / 4 && objects < total,
            "{objects} of {total} were objects"
        );
    }

    #[test]
    fn whitespace_runs_and_nesting_are_bounded() {
        let g = Grammar::json_object();
        let mut s = JsonState::new(&g);
        assert!(s.feed(&g, b"{\"a\":"));
        assert!(s.feed(&g, &[b' '; MAX_WHITESPACE as usize]));
        assert!(!s.allows(&g, b" "));
        assert!(s.allows(&g, b"1"));
        let deep = "[".repeat(MAX_DEPTH - 1);
        let fresh = JsonState::new(&g);
        assert!(fresh.allows(&g, format!("{{\"a\":{deep}").as_bytes()));
        assert!(!fresh.allows(&g, format!("{{\"a\":{deep}[").as_bytes()));
    }
}
