//! SentencePiece-style BPE as llama models carry it in GGUF (`tokenizer.ggml.model = "llama"`),
//! run the way llama.cpp runs it: spaces become `▁` (with one prepended at the start and after
//! each special token when `add_space_prefix`), the text starts as single characters, and the
//! adjacent pair whose concatenation is the highest-scoring vocabulary entry is merged first
//! (leftmost on ties) until none is left; characters outside the vocabulary fall back to
//! `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use smelt_gguf::{Header, MetaValue};

use super::{TokenizerError, specials_from_gguf, strings};

/// A SentencePiece-style tokenizer.
pub struct SpmTokenizer {
    tokens: Vec<String>,
    scores: Vec<f32>,
    ids: HashMap<String, u32>,
    /// Byte value → its `<0xXX>` token.
    byte_tokens: [Option<u32>; 256],
    /// Token id → the byte it stands for, for byte tokens.
    token_bytes: HashMap<u32, u8>,
    specials: Vec<super::Special>,
    unk: Option<u32>,
    add_space_prefix: bool,
}

/// A candidate merge: symbols `left` and `right` (adjacent) would become a token of `score`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Higher score first; on ties the leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// One symbol of the linked list being merged: bytes `start..start + len` of the text.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpmTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(h: &Header) -> Result<Self, TokenizerError> {
        let tokens = strings(h, "tokenizer.ggml.tokens")?;
        let scores: Vec<f32> = match h.get("tokenizer.ggml.scores") {
            Some(MetaValue::Array(_, v)) if v.len() == tokens.len() => v
                .iter()
                .map(|s| s.as_f64().map(|f| f as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    TokenizerError::Metadata("tokenizer.ggml.scores holds a non-number".into())
                })?,
            Some(_) => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.scores must hold one score per token ({})",
                    tokens.len()
                )));
            }
            None => {
                return Err(TokenizerError::Metadata(
                    "tokenizer.ggml.scores is missing".into(),
                ));
            }
        };
        // No types: `new` recognises byte tokens by their text.
        let types = super::token_types(h);
        let flag = |key: &str, default: bool| match h.get(key) {
            Some(MetaValue::Bool(b)) => *b,
            _ => default,
        };
        Ok(Self::new(
            tokens,
            scores,
            &types,
            specials_from_gguf(h)?,
            h.get("tokenizer.ggml.unknown_token_id")
                .and_then(|v| v.as_u64())
                .map(|v| v as u32),
            flag("tokenizer.ggml.add_space_prefix", true),
        ))
    }

    /// Builds the tokenizer from its parts (tokens, scores, GGUF token types, special tokens).
    pub fn new(
        tokens: Vec<String>,
        scores: Vec<f32>,
        types: &[i64],
        specials: Vec<super::Special>,
        unk: Option<u32>,
        add_space_prefix: bool,
    ) -> Self {
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let (byte_tokens, token_bytes) = super::byte_fallback_tokens(&tokens, types);
        Self {
            tokens,
            scores,
            ids,
            byte_tokens,
            token_bytes,
            specials,
            unk,
            add_space_prefix,
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids of `text` (no BOS); control tokens written in the text are recognized when
    /// `parse_special`, user-defined ones always.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let mut after_special = true;
        super::split_specials(text, &self.specials, parse_special, |piece| match piece {
            Ok(plain) => {
                let mut t = String::new();
                if self.add_space_prefix && after_special {
                    t.push(' ');
                }
                t.push_str(plain);
                self.encode_plain(&t.replace(' ', "\u{2581}"), &mut out);
                after_special = false;
            }
            Err(id) => {
                out.push(id);
                after_special = true;
            }
        });
        out
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut syms: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let i = syms.len();
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                syms[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Bigram>, syms: &[Symbol], left: usize, right: usize| {
            let (l, r) = (syms[left], syms[right]);
            let s = &text[l.start..r.start + r.len];
            if let Some(&id) = self.ids.get(s) {
                queue.push(Bigram {
                    score: self.scores[id as usize],
                    left,
                    right,
                    len: s.len(),
                });
            }
        };
        for i in 1..syms.len() {
            push(&mut queue, &syms, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Stale: one side was merged away or grew since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != Some(b.right) {
                continue;
            }
            syms[b.left].len += r.len;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(b.left);
            }
            if let Some(p) = syms[b.left].prev {
                push(&mut queue, &syms, p, b.left);
            }
            if let Some(n) = syms[b.left].next {
                push(&mut queue, &syms, b.left, n);
            }
        }
        let mut i = Some(0);
        while let Some(k) = i {
            let s = syms[k];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.extend(self.byte_tokens[b as usize].or(self.unk));
                    }
                }
            }
            i = s.next;
        }
    }

    /// Text of `ids`: `▁` becomes a space, byte tokens their byte, special tokens their text;
    /// invalid UTF-8 is replaced. (No leading space is removed, so pieces concatenate.)
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The bytes of `ids`, which may end inside a character.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(&b) = self.token_bytes.get(&id) {
                bytes.push(b);
            } else if let Some(t) = self.tokens.get(id as usize) {
                if self.specials.iter().any(|s| s.id == id) {
                    bytes.extend(t.as_bytes());
                } else {
                    bytes.extend(t.replace('\u{2581}', " ").as_bytes());
                }
            }
        }
        bytes
    }

    /// Whether `id` is a control or user-defined token (matched literally, not by merges).
    pub fn is_special(&self, id: u32) -> bool {
        self.specials.iter().any(|s| s.id == id)
    }

    /// The string of one token.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> SpmTokenizer {
        // ids: 0 <unk>, 1 <s>, 2..4 bytes for 'x' 'y' 0xC3, then pieces with scores.
        let mut tokens: Vec<String> = vec![
            "<unk>".into(),
            "<s>".into(),
            "<0x78>".into(),
            "<0xC3>".into(),
            "<0xA9>".into(),
        ];
        let mut types = vec![2, 3, 6, 6, 6];
        let pieces = [
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("ab", -4.0),
            ("▁ab", -5.0),
            ("ba", -0.5),
        ];
        let mut scores = vec![0.0; tokens.len()];
        for (p, s) in pieces {
            tokens.push(p.into());
            types.push(1);
            scores.push(s);
        }
        SpmTokenizer::new(
            tokens,
            scores,
            &types,
            vec![super::super::Special {
                text: "<s>".into(),
                id: 1,
                control: true,
            }],
            Some(0),
            true,
        )
    }

    #[test]
    fn highest_score_merges_first_and_bytes_fall_back() {
        let t = toy();
        let id = |s: &str| t.ids[s];
        // "aba": "ba" (−0.5) beats "ab" (−4): a + ba.
        assert_eq!(t.encode("aba", false), vec![id("▁"), id("a"), id("ba")]);
        // "ab" alone: ▁ab via ▁ + ab.
        assert_eq!(t.encode("ab", false), vec![id("▁ab")]);
        // 'x' has a byte token; 'é' (C3 A9) too; 'z' has none and becomes <unk>.
        assert_eq!(t.encode("xéz", false), vec![id("▁"), 2, 3, 4, 0]);
        assert_eq!(t.decode(&t.encode("ab xé", false)), " ab xé");
    }

    #[test]
    fn space_prefix_after_specials() {
        let t = toy();
        let id = |s: &str| t.ids[s];
        assert_eq!(t.encode("<s>ab", true), vec![1, id("▁ab")]);
        assert_ne!(t.encode("<s>ab", false)[0], 1);
    }
}
