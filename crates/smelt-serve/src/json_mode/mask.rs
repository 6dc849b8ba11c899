//! Token masks: which tokens of the vocabulary may come next in a [`JsonState`].
//!
//! The vocabulary is walked in sorted byte order, so tokens that share a prefix are next to
//! each other: the state after each prefix byte is kept on a stack and reused by the tokens
//! after it, and when a prefix is refused every token under it is refused without a trial (a
//! trie walk without the trie). Inside a string, tokens of whole plain characters are decided
//! by their length alone.

use super::JsonState;
use crate::json_schema::Grammar;

/// Every token's bytes, and which are special (never allowed inside JSON), read once from
/// the tokenizer and sorted, so a mask is one walk over the vocabulary.
pub struct TokenBytes {
    /// (n_vocab,) the bytes each token decodes to.
    pub bytes: Vec<Vec<u8>>,
    /// (n_vocab,) control and special tokens.
    pub special: Vec<bool>,
    /// (n_vocab,) for tokens that are whole characters with no `"`, `\` or control character,
    /// how many characters (else 0): allowed between a string's characters while it has room
    /// for them, without trying them.
    pub plain: Vec<u32>,
    /// (n_vocab,) token ids in the order of their bytes.
    order: Vec<u32>,
    /// (n_vocab,) how many leading bytes `order[k]`'s token shares with `order[k - 1]`'s
    /// (0 for k = 0).
    shared: Vec<u32>,
}

impl TokenBytes {
    /// From a tokenizer.
    pub fn new(tok: &smelt_models::tokenizer::Tokenizer) -> Self {
        let n = tok.vocab_size() as u32;
        Self::from_tokens(
            (0..n).map(|t| tok.decode_bytes(&[t])).collect(),
            (0..n).map(|t| tok.is_special(t)).collect(),
        )
    }

    /// From each token's bytes and whether it is special. `bytes`, `special`: (n_vocab,).
    pub fn from_tokens(bytes: Vec<Vec<u8>>, special: Vec<bool>) -> Self {
        let plain = bytes
            .iter()
            .map(|b| match std::str::from_utf8(b) {
                Ok(s) if b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') => {
                    s.chars().count() as u32
                }
                _ => 0,
            })
            .collect();
        let mut order: Vec<u32> = (0..bytes.len() as u32).collect();
        order.sort_by(|&a, &b| bytes[a as usize].cmp(&bytes[b as usize]));
        let shared = (0..order.len())
            .map(|k| match k {
                0 => 0,
                _ => {
                    let (a, b) = (&bytes[order[k - 1] as usize], &bytes[order[k] as usize]);
                    a.iter().zip(b).take_while(|(x, y)| x == y).count() as u32
                }
            })
            .collect();
        Self {
            bytes,
            special,
            plain,
            order,
            shared,
        }
    }

    /// Sets to −∞ the logits of every token `state` (of grammar `g`) does not allow next;
    /// returns how many remain. `logits`: (n_vocab,); ids past the vocabulary are refused.
    pub fn mask(&self, g: &Grammar, state: &JsonState, logits: &mut [f32]) -> usize {
        let room = state.string_room(g);
        let mut allowed = vec![false; self.bytes.len()];
        // (depth + 1,) states[d]: `state` after the first d bytes of the token last tried;
        // `valid`: how many of those bytes the states still stand for.
        let mut states: Vec<JsonState> = vec![state.clone()];
        let mut valid = 0usize;
        let mut k = 0;
        while k < self.order.len() {
            let t = self.order[k] as usize;
            valid = valid.min(self.shared[k] as usize);
            k += 1;
            let bytes = &self.bytes[t];
            if self.special[t] || bytes.is_empty() {
                continue;
            }
            if let (Some(r), p) = (room, self.plain[t])
                && p > 0
            {
                // A plain token cannot close the string: it fits or it does not.
                allowed[t] = p <= r;
                continue;
            }
            let mut dead = None;
            for (d, &b) in bytes.iter().enumerate().skip(valid) {
                if states.len() <= d + 1 {
                    states.push(states[d].clone());
                } else {
                    let (done, next) = states.split_at_mut(d + 1);
                    next[0].clone_from(&done[d]);
                }
                if !states[d + 1].step(g, b) {
                    dead = Some(d);
                    break;
                }
                valid = d + 1;
            }
            match dead {
                None => allowed[t] = true,
                // Its first d + 1 bytes are refused, and so is every token that starts with
                // them: those follow it in the order.
                Some(d) => {
                    valid = d;
                    while k < self.order.len() && self.shared[k] as usize > d {
                        k += 1;
                    }
                }
            }
        }
        let mut left = 0;
        for (t, l) in logits.iter_mut().enumerate() {
            if allowed.get(t).copied().unwrap_or(false) {
                left += 1;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        left
    }
}
