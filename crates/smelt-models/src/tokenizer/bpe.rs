//! GPT-2-style byte-level BPE, read from GGUF metadata (`tokenizer.ggml.model = "gpt2"`), as
//! llama.cpp runs it: special tokens are split out first, the rest is pre-tokenized by the
//! pre-tokenizer's regexes (`tokenizer.ggml.pre`), each piece's UTF-8 bytes are mapped to
//! GPT-2's printable byte alphabet, and merges are applied lowest rank first.

use std::collections::HashMap;

use fancy_regex::Regex;
use smelt_gguf::Header;

use super::{TokenizerError, strings};

/// GPT-2's pattern (llama.cpp's form: no trailing `\s+`; gaps between matches become pieces).
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// A byte-level BPE tokenizer.
pub struct BpeTokenizer {
    /// Token strings by id.
    tokens: Vec<String>,
    /// Token string → id.
    ids: HashMap<String, u32>,
    /// (left, right) → merge rank.
    ranks: HashMap<(String, String), usize>,
    /// Pre-tokenizer regexes, applied in sequence.
    splitters: Vec<Regex>,
    /// Control and user-defined tokens matched literally in the input, longest first.
    specials: Vec<(String, u32)>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the other 68 to U+0100 onwards.
fn byte_alphabet() -> [char; 256] {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("latin-1 code point")
        } else {
            let c = char::from_u32(next).expect("U+0100.. are chars");
            next += 1;
            c
        };
    }
    table
}

impl BpeTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(h: &Header) -> Result<Self, TokenizerError> {
        let tokens = strings(h, "tokenizer.ggml.tokens")?;
        let merges = strings(h, "tokenizer.ggml.merges")?;
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                TokenizerError::Metadata(format!("merge {rank} {m:?} has no space"))
            })?;
            ranks.insert((a.to_string(), b.to_string()), rank);
        }
        let pre = h
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let patterns: Vec<&str> = match pre {
            "smollm" | "codeshell" | "exaone" | "minerva" => vec![r"\p{N}", GPT2_PATTERN],
            "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => vec![GPT2_PATTERN],
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "pre-tokenizer {other:?} is not supported yet (supported: smollm, gpt2)"
                )));
            }
        };
        let splitters = patterns
            .into_iter()
            .map(|p| {
                Regex::new(p).map_err(|e| TokenizerError::Metadata(format!("regex {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let specials = super::specials_from_gguf(h)?;
        let byte_to_char = byte_alphabet();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Self {
            tokens,
            ids,
            ranks,
            splitters,
            specials,
            byte_to_char,
            char_to_byte,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids of `text`; special tokens written literally in the text are recognized when
    /// `parse_special` (as llama.cpp's `tokenize(..., parse_special)`).
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        super::split_specials(text, &self.specials, parse_special, |piece| match piece {
            Ok(plain) => self.encode_plain(plain, &mut out),
            Err(id) => out.push(id),
        });
        out
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut pieces = vec![text.to_string()];
        for re in &self.splitters {
            let mut next = Vec::new();
            for p in &pieces {
                let mut last = 0;
                for m in re.find_iter(p).flatten() {
                    if m.start() > last {
                        next.push(p[last..m.start()].to_string());
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str().to_string());
                    }
                    last = m.end();
                }
                if last < p.len() {
                    next.push(p[last..].to_string());
                }
            }
            pieces = next;
        }
        for p in pieces {
            let mapped: String = p.bytes().map(|b| self.byte_to_char[b as usize]).collect();
            self.bpe(&mapped, out);
        }
    }

    /// Merges one pre-tokenized, byte-mapped word, lowest rank first (leftmost on ties).
    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self.ids.get(word) {
            out.push(id);
            return;
        }
        let mut syms: Vec<String> = word.chars().map(String::from).collect();
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", syms[i], syms[i + 1]);
            syms.splice(i..i + 2, [merged]);
        }
        for s in syms {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                // Not in the vocabulary: fall back to one token per character.
                None => out.extend(
                    s.chars()
                        .filter_map(|c| self.ids.get(&c.to_string()).copied()),
                ),
            }
        }
    }

    /// Text of `ids` (control tokens included as written); invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The bytes of `ids`, which may end inside a character.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else {
                continue;
            };
            if self.specials.iter().any(|(_, s)| *s == id) {
                bytes.extend(t.as_bytes());
                continue;
            }
            for c in t.chars() {
                match self.char_to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend(c.to_string().as_bytes()),
                }
            }
        }
        bytes
    }

    /// Whether `id` is a control or user-defined token (matched literally, not by merges).
    pub fn is_special(&self, id: u32) -> bool {
        self.specials.iter().any(|(_, s)| *s == id)
    }

    /// The string of one token.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}
