//! JSON mode (OpenAI's `response_format: {"type": "json_object"}`): generation constrained,
//! token by token, to one JSON object (RFC 8259). A byte-level recognizer tracks how far the
//! text is through the grammar; before each draw, every token whose bytes would leave it is
//! masked out, and the sequence ends as the object closes. Strings must be valid UTF-8 with
//! legal escapes; nesting is bounded at [`MAX_DEPTH`] and runs of whitespace at
//! [`MAX_WHITESPACE`] (a constrained model otherwise can pad forever).

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

    /// The state after `b`, or `None` if `b` does not continue the number.
    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => E,
            (E, b'+' | b'-') => ESign,
            (E | ESign | Exp, b'0'..=b'9') => Exp,
            _ => return None,
        })
    }
}

/// What the recognizer expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the top-level object: `{` only.
    Start,
    /// A value (after `:`, or after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the container's close.
    AfterValue,
    /// Inside a string (a key when `key`); `escape`: 0 none, 1 after `\`, 2..=5 hex digits
    /// of `\u` left + 1; `utf8`: continuation bytes still due.
    Str { key: bool, escape: u8, utf8: u8 },
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: the word and how many bytes are matched.
    Literal { word: &'static [u8], at: u8 },
    /// The top-level object has closed.
    Done,
}

/// How far a text is through one JSON object. `Copy`, so a candidate token is tried on a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonState {
    /// (depth,) open containers, `{` or `[`, outermost first.
    stack: [u8; MAX_DEPTH],
    depth: u8,
    mode: Mode,
    /// Whitespace bytes in a row so far.
    whitespace: u8,
}

impl Default for JsonState {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonState {
    /// Before any text.
    pub fn new() -> Self {
        Self {
            stack: [0; MAX_DEPTH],
            depth: 0,
            mode: Mode::Start,
            whitespace: 0,
        }
    }

    /// Whether the top-level object has closed.
    pub fn done(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Whether the text is inside a string, between characters and escapes: then any run of
    /// whole characters without `"`, `\` or controls may follow ([`TokenBytes::plain`]).
    fn between_characters(&self) -> bool {
        matches!(
            self.mode,
            Mode::Str {
                escape: 0,
                utf8: 0,
                ..
            }
        )
    }

    /// Takes `bytes` in order; false (and the state is then meaningless) at the first byte the
    /// grammar does not allow.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.step(b))
    }

    /// Whether `bytes` may follow, without taking them.
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let mut s = *self;
        s.feed(bytes)
    }

    fn open(&mut self, container: u8) -> bool {
        if self.depth as usize == MAX_DEPTH {
            return false;
        }
        self.stack[self.depth as usize] = container;
        self.depth += 1;
        self.mode = if container == b'{' {
            Mode::KeyOrClose
        } else {
            Mode::ValueOrClose
        };
        true
    }

    fn close(&mut self, container: u8) -> bool {
        if self.depth == 0 || self.stack[self.depth as usize - 1] != container {
            return false;
        }
        self.depth -= 1;
        self.mode = if self.depth == 0 {
            Mode::Done
        } else {
            Mode::AfterValue
        };
        true
    }

    /// A value starting with `b`.
    fn value(&mut self, b: u8) -> bool {
        self.mode = match b {
            b'{' => return self.open(b'{'),
            b'[' => return self.open(b'['),
            b'"' => Mode::Str {
                key: false,
                escape: 0,
                utf8: 0,
            },
            b'-' => Mode::Number(Num::Minus),
            b'0' => Mode::Number(Num::Zero),
            b'1'..=b'9' => Mode::Number(Num::Int),
            b't' => Mode::Literal {
                word: b"true",
                at: 1,
            },
            b'f' => Mode::Literal {
                word: b"false",
                at: 1,
            },
            b'n' => Mode::Literal {
                word: b"null",
                at: 1,
            },
            _ => return false,
        };
        true
    }

    fn step(&mut self, b: u8) -> bool {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let between = !matches!(
            self.mode,
            Mode::Str { .. } | Mode::Number(_) | Mode::Literal { .. } | Mode::Done
        );
        if space && between {
            self.whitespace += 1;
            return self.whitespace <= MAX_WHITESPACE;
        }
        if !space {
            self.whitespace = 0;
        }
        match self.mode {
            Mode::Done => false,
            Mode::Start => b == b'{' && self.open(b'{'),
            Mode::Value => self.value(b),
            Mode::ValueOrClose => b == b']' && self.close(b'[') || b != b']' && self.value(b),
            Mode::KeyOrClose | Mode::Key => {
                if b == b'}' && self.mode == Mode::KeyOrClose {
                    return self.close(b'{');
                }
                if b != b'"' {
                    return false;
                }
                self.mode = Mode::Str {
                    key: true,
                    escape: 0,
                    utf8: 0,
                };
                true
            }
            Mode::Colon => {
                self.mode = Mode::Value;
                b == b':'
            }
            Mode::AfterValue => {
                let top = self.stack[self.depth as usize - 1];
                match b {
                    b',' => {
                        self.mode = if top == b'{' { Mode::Key } else { Mode::Value };
                        true
                    }
                    b'}' | b']' => self.close(if b == b'}' { b'{' } else { b'[' }),
                    _ => false,
                }
            }
            Mode::Str { key, escape, utf8 } => self.string(b, key, escape, utf8),
            Mode::Number(n) => match n.next(b) {
                Some(n) => {
                    self.mode = Mode::Number(n);
                    true
                }
                // The number ends; `b` belongs to what follows it.
                None if n.complete() => {
                    self.mode = Mode::AfterValue;
                    self.step(b)
                }
                None => false,
            },
            Mode::Literal { word, at } => {
                if word[at as usize] != b {
                    return false;
                }
                self.mode = if at as usize + 1 == word.len() {
                    Mode::AfterValue
                } else {
                    Mode::Literal { word, at: at + 1 }
                };
                true
            }
        }
    }

    fn string(&mut self, b: u8, key: bool, escape: u8, utf8: u8) -> bool {
        let set = |escape, utf8| Mode::Str { key, escape, utf8 };
        if utf8 > 0 {
            // A continuation byte of a multi-byte character.
            if b & 0xc0 != 0x80 {
                return false;
            }
            self.mode = set(0, utf8 - 1);
            return true;
        }
        match escape {
            1 => {
                self.mode = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => set(0, 0),
                    b'u' => set(5, 0),
                    _ => return false,
                };
                true
            }
            2..=5 => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                self.mode = set(if escape == 2 { 0 } else { escape - 1 }, 0);
                true
            }
            _ => {
                self.mode = match b {
                    b'"' if key => Mode::Colon,
                    b'"' => Mode::AfterValue,
                    b'\\' => set(1, 0),
                    0..0x20 => return false,
                    0x20..0x80 => set(0, 0),
                    // Lead bytes of 2, 3 and 4-byte characters (no overlong 0xc0/0xc1, none
                    // past U+10FFFF).
                    0xc2..=0xdf => set(0, 1),
                    0xe0..=0xef => set(0, 2),
                    0xf0..=0xf4 => set(0, 3),
                    _ => return false,
                };
                true
            }
        }
    }
}

/// Every token's bytes, and which are special (never allowed inside JSON), read once from
/// the tokenizer so a mask is one pass over the vocabulary.
pub struct TokenBytes {
    /// (n_vocab,) the bytes each token decodes to.
    pub bytes: Vec<Vec<u8>>,
    /// (n_vocab,) control and special tokens.
    pub special: Vec<bool>,
    /// (n_vocab,) tokens that are whole characters with no `"`, `\` or control character:
    /// allowed anywhere between a string's characters, without trying them.
    pub plain: Vec<bool>,
}

impl TokenBytes {
    /// From a tokenizer.
    pub fn new(tok: &smelt_models::tokenizer::Tokenizer) -> Self {
        let n = tok.vocab_size() as u32;
        let bytes: Vec<Vec<u8>> = (0..n).map(|t| tok.decode_bytes(&[t])).collect();
        let plain = bytes
            .iter()
            .map(|b| {
                !b.is_empty()
                    && std::str::from_utf8(b).is_ok()
                    && b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\')
            })
            .collect();
        Self {
            bytes,
            special: (0..n).map(|t| tok.is_special(t)).collect(),
            plain,
        }
    }

    /// Sets to −∞ the logits of every token `state` does not allow next; returns how many
    /// remain. `logits`: (n_vocab,).
    pub fn mask(&self, state: &JsonState, logits: &mut [f32]) -> usize {
        let mut left = 0;
        let in_string = state.between_characters();
        for (t, l) in logits.iter_mut().enumerate() {
            let ok = t < self.bytes.len()
                && !self.special[t]
                && !self.bytes[t].is_empty()
                && (in_string && self.plain[t] || state.allows(&self.bytes[t]));
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
        let mut s = JsonState::new();
        s.feed(text.as_bytes()) && s.done()
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
        let mut s = JsonState::new();
        for (i, b) in text.bytes().enumerate() {
            assert!(!s.done(), "done before byte {i}");
            assert!(s.feed(&[b]), "byte {i} of {text}");
        }
        assert!(s.done());
        assert!(!s.allows(b" "), "nothing follows the object");
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
        let mut s = JsonState::new();
        assert!(s.feed(b"{\"a\":"));
        assert!(s.feed(&[b' '; MAX_WHITESPACE as usize]));
        assert!(!s.allows(b" "));
        assert!(s.allows(b"1"));
        let deep = "[".repeat(MAX_DEPTH - 1);
        assert!(JsonState::new().allows(format!("{{\"a\":{deep}").as_bytes()));
        assert!(!JsonState::new().allows(format!("{{\"a\":{deep}[").as_bytes()));
    }
}
