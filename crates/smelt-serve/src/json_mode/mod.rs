//! Constrained decoding to JSON: OpenAI's `response_format` `json_object` (any one object, RFC
//! 8259) and `json_schema` (an instance of a schema, compiled by [`crate::json_schema`]). A
//! byte-level recognizer walks the schema's grammar and tracks how far the text is through it;
//! before each draw, every token whose bytes would leave it is masked out, and the sequence
//! ends as the top-level object closes. Strings must be valid UTF-8 with legal escapes; nesting
//! is bounded at [`MAX_DEPTH`] and runs of whitespace at [`MAX_WHITESPACE`] (a constrained
//! model otherwise can pad forever).

mod mask;
mod number;
mod reading;
mod string;

pub use mask::TokenBytes;
use reading::Reading;

use crate::json_schema::Grammar;

/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;

/// Longest run of whitespace between tokens of the grammar.
pub const MAX_WHITESPACE: u8 = 16;

/// Most readings kept at once (alternatives of unions that start alike and have not yet
/// parted: as many as the tools of a forced call); past it the latest are dropped, which
/// narrows the grammar but never widens it.
pub const MAX_READINGS: usize = 64;

/// How far a text is through one value of a [`Grammar`] (whose root is an object): every
/// reading of it still alive. Candidate tokens are tried on a copy ([`JsonState::allows_with`]
/// reuses one).
#[derive(Debug, PartialEq, Eq)]
pub struct JsonState {
    /// (readings,) at least one while the text is in the grammar.
    readings: Vec<Reading>,
    /// Readings forked by the byte being taken (kept to reuse its memory).
    forks: Vec<Reading>,
    /// (readings,) each reading's hash and index, for merging (kept to reuse its memory).
    keys: Vec<(u64, u32)>,
    /// (readings,) which readings a merge drops as copies of earlier ones (kept likewise).
    copies: Vec<bool>,
}

impl Clone for JsonState {
    fn clone(&self) -> Self {
        Self {
            readings: self.readings.clone(),
            forks: Vec::new(),
            keys: Vec::new(),
            copies: Vec::new(),
        }
    }

    /// Reuses the readings' memory: a mask copies the state for each byte it tries.
    fn clone_from(&mut self, source: &Self) {
        self.readings.clone_from(&source.readings);
    }
}

impl JsonState {
    /// Before any text of `g`.
    pub fn new(g: &Grammar) -> Self {
        Self {
            readings: vec![Reading::new(g)],
            forks: Vec::new(),
            keys: Vec::new(),
            copies: Vec::new(),
        }
    }

    /// Whether the text is over: the top-level value has closed (JSON's syntax is
    /// unambiguous, so the readings, which differ only in which schema each value meets, all
    /// close it at the same byte), or a whole-text pattern matches and nothing may follow.
    pub fn done(&self) -> bool {
        self.readings.iter().any(Reading::must_end)
    }

    /// Whether the text may stop here (the model's end of turn is then let through): it is
    /// over, or a whole-text pattern (`guided_regex`) matches it as it stands.
    pub fn may_end(&self) -> bool {
        self.readings.iter().any(Reading::may_end)
    }

    /// How many readings are alive.
    pub fn readings(&self) -> usize {
        self.readings.len()
    }

    /// Inside a string between characters and escapes (in every reading), how many more
    /// characters it may take (the most of any reading): then a run of whole characters
    /// without `"`, `\` or controls may follow if it fits ([`TokenBytes::plain`]).
    fn string_room(&self, g: &Grammar) -> Option<u32> {
        self.readings
            .iter()
            .map(|r| r.string_room(g))
            .try_fold(0, |most, room| room.map(|r| r.max(most)))
    }

    /// Takes `bytes` in order; false (and the state is then meaningless) at the first byte no
    /// reading allows.
    pub fn feed(&mut self, g: &Grammar, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.step(g, b))
    }

    /// Takes one byte; false (and the state is then meaningless) if no reading allows it.
    fn step(&mut self, g: &Grammar, b: u8) -> bool {
        let forks = &mut self.forks;
        forks.clear();
        self.readings.retain_mut(|r| r.step(g, b, forks));
        // Whitespace seldom brings readings together (between values it only counts), and
        // readings that meet stay alike, so the next other byte merges them.
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let forked = !forks.is_empty();
        self.readings.append(forks);
        if self.readings.len() > 1 && (forked || !space) {
            self.merge();
        }
        // Past the cap the latest forks are dropped (narrower, never wider).
        self.readings.truncate(MAX_READINGS);
        !self.readings.is_empty()
    }

    /// Readings that have come to the same state are one (an integer read both as integer
    /// and number, once the item closes): keeping both would double every step. The first of
    /// each is kept. Readings are grouped by a hash of their innermost frame (where readings
    /// of one text differ, if they do), so a forced call over 64 tools does not compare every
    /// pair at every byte.
    fn merge(&mut self) {
        let hasher = foldhash::fast::FixedState::with_seed(0x5eed);
        self.keys.clear();
        self.keys.extend(
            self.readings
                .iter()
                .enumerate()
                .map(|(i, r)| (r.key(&hasher), i as u32)),
        );
        self.keys.sort_unstable();
        self.copies.clear();
        self.copies.resize(self.readings.len(), false);
        let mut any = false;
        for (k, &(h, i)) in self.keys.iter().enumerate() {
            // Earlier readings of the same hash (in index order): a match makes this one a
            // copy. Hashes seldom collide, so this is almost always one comparison or none.
            let copy = self.keys[..k]
                .iter()
                .rev()
                .take_while(|&&(h2, _)| h2 == h)
                .any(|&(_, j)| {
                    !self.copies[j as usize]
                        && self.readings[j as usize].same(&self.readings[i as usize])
                });
            self.copies[i as usize] = copy;
            any |= copy;
        }
        if any {
            let mut i = 0;
            self.readings.retain(|_| {
                i += 1;
                !self.copies[i - 1]
            });
        }
    }

    /// Whether `bytes` may follow, without taking them.
    pub fn allows(&self, g: &Grammar, bytes: &[u8]) -> bool {
        let mut s = self.clone();
        s.feed(g, bytes)
    }

    /// [`JsonState::allows`], trying them on `scratch` (overwritten) so no memory is allocated.
    pub fn allows_with(&self, g: &Grammar, bytes: &[u8], scratch: &mut JsonState) -> bool {
        scratch.readings.clone_from(&self.readings);
        scratch.feed(g, bytes)
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
