//! GPT-2-style byte-level BPE, read from GGUF metadata (`tokenizer.ggml.model = "gpt2"`), as
//! llama.cpp runs it: special tokens are split out first, the rest is pre-tokenized by the
//! pre-tokenizer's regexes (`tokenizer.ggml.pre`), each piece's UTF-8 bytes are mapped to
//! GPT-2's printable byte alphabet, and merges are applied lowest rank first.
//!
//! Gemma 4's BPE (`tokenizer.ggml.model = "gemma4"`) runs the same merges on raw UTF-8
//! instead: spaces become `▁`, the text is cut only at line ends, and characters outside the
//! vocabulary fall back to `<0xXX>` byte tokens.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;
use smelt_gguf::Header;
use smelt_gguf::pretokenizer::PreTokenizer;

use super::{TokenizerError, strings};

/// GPT-2's pattern (llama.cpp's form: no trailing `\s+`; gaps between matches become pieces).
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's pattern (its tokenizer.json's, with llama.cpp's ASCII-only spelling of the
/// case-insensitive contractions): letters with one leading non-letter, digits in runs of up
/// to three, punctuation with its line ends, line ends with the spaces before them.
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's pattern: Llama 3's with one digit per piece.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 3.5's pattern: Qwen 2's with combining marks (`\p{M}`) kept with their letters.
const QWEN35_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's letter class (Hugging Face's tokenizer.json lists the ranges of cased
/// letters in Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee and more).
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{b5}\x{c0}-\x{d6}\x{d8}-\x{f6}\x{f8}-\x{1ba}\x{1bc}-\x{1bf}\x{1c4}-\x{293}\x{295}-\x{2af}\x{370}-\x{373}\x{376}\x{377}\x{37b}-\x{37d}\x{37f}\x{386}\x{388}-\x{38a}\x{38c}\x{38e}-\x{3a1}\x{3a3}-\x{3f5}\x{3f7}-\x{481}\x{48a}-\x{52f}\x{531}-\x{556}\x{10a0}-\x{10c5}\x{13a0}-\x{13f5}\x{13f8}-\x{13fd}\x{1c90}-\x{1cba}\x{1cbd}-\x{1cbf}\x{1d00}-\x{1d2b}\x{1d6b}-\x{1d77}\x{1d79}-\x{1d9a}\x{1e00}-\x{1f15}\x{1f18}-\x{1f1d}\x{1f20}-\x{1f45}\x{1f48}-\x{1f4d}\x{1f50}-\x{1f57}\x{1f59}\x{1f5b}\x{1f5d}\x{1f5f}-\x{1f7d}\x{1f80}-\x{1fb4}\x{1fb6}-\x{1fbc}\x{1fbe}\x{1fc2}-\x{1fc4}\x{1fc6}-\x{1fcc}\x{1fd0}-\x{1fd3}\x{1fd6}-\x{1fdb}\x{1fe0}-\x{1fec}\x{1ff2}-\x{1ff4}\x{1ff6}-\x{1ffc}\x{2102}\x{2107}\x{210a}-\x{2113}\x{2115}\x{2119}-\x{211d}\x{2124}\x{2126}\x{2128}\x{212a}-\x{212d}\x{212f}-\x{2134}\x{2139}\x{213c}-\x{213f}\x{2145}-\x{2149}\x{214e}\x{2183}\x{2184}\x{2c00}-\x{2c7b}\x{2c7e}-\x{2ce4}\x{2ceb}-\x{2cee}\x{2cf2}\x{2cf3}\x{a640}-\x{a66d}\x{a680}-\x{a69b}\x{a722}-\x{a76f}\x{a771}-\x{a787}\x{a78b}-\x{a78e}\x{ab70}-\x{abbf}\x{fb00}-\x{fb06}\x{fb13}-\x{fb17}\x{ff21}-\x{ff3a}\x{ff41}-\x{ff5a}\x{10400}-\x{1044f}\x{104b0}-\x{104d3}\x{104d8}-\x{104fb}\x{10c80}-\x{10cb2}\x{10cc0}-\x{10cf2}\x{118a0}-\x{118df}\x{1e900}-\x{1e943}]+";

/// DeepSeek's runs of CJK ideographs, other scripts from U+0800, and Hangul.
const CJK_RUNS: &str = r"[\x{4e00}-\x{9fa5}\x{800}-\x{4e00}\x{ac00}-\x{d7ff}]+";

/// The regexes a pre-tokenizer applies in sequence (llama.cpp's `llama-vocab.cpp` sets).
fn patterns(pre: PreTokenizer) -> Vec<&'static str> {
    match pre {
        PreTokenizer::Default => vec![
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_PATTERN,
            r"\p{N}+",
            r"[0-9][0-9][0-9]",
        ],
        PreTokenizer::Gpt2 => vec![GPT2_PATTERN],
        PreTokenizer::DigitsApart => vec![r"\p{N}", GPT2_PATTERN],
        PreTokenizer::Llama3 => vec![LLAMA3_PATTERN],
        PreTokenizer::Qwen2 => vec![QWEN2_PATTERN],
        PreTokenizer::Qwen35 => vec![QWEN35_PATTERN],
        PreTokenizer::DeepseekLlm => vec![
            r"[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            r"\s?[!-/:-~\x{ff01}-\x{ff0f}\x{ff1a}-\x{ff5e}\x{2018}-\x{201f}\x{3000}-\x{3002}]+",
            r"\s+$",
            CJK_RUNS,
            r"\p{N}+",
        ],
        PreTokenizer::DeepseekCoder => {
            vec![r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_RUNS, r"\p{N}"]
        }
        PreTokenizer::Falcon => vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2_PATTERN, r"[0-9][0-9][0-9]"],
    }
}

/// One symbol of a word being merged: a span of the word, linked to its neighbours.
struct Span {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbol `left` with the next one, `right`: lowest rank first, then
/// leftmost; `len` is the pair's bytes when queued (a stale pair no longer adds up to it).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    rank: usize,
    start: usize,
    left: usize,
    right: usize,
    len: usize,
}

/// A byte-level BPE tokenizer.
pub struct BpeTokenizer {
    /// Token strings by id.
    tokens: Vec<String>,
    /// Token string → id.
    ids: HashMap<String, u32>,
    /// "left right" (the merge as GGUF writes it) → merge rank; byte-mapped tokens hold no
    /// space, so the first space splits it.
    ranks: HashMap<String, usize>,
    /// Pre-tokenizer regexes, applied in sequence.
    splitters: Vec<Regex>,
    /// A word that is a token whole is taken without merging (llama.cpp's `ignore_merges`,
    /// set for Llama 3); otherwise merges decide even then.
    ignore_merges: bool,
    /// GPT-2's byte alphabet (`gpt2`); false: raw UTF-8 with `▁` spaces (`gemma4`).
    byte_level: bool,
    /// Byte → its `<0xXX>` token, for characters outside a `gemma4` vocabulary.
    byte_tokens: [Option<u32>; 256],
    /// `<0xXX>` token → its byte.
    token_bytes: HashMap<u32, u8>,
    /// Control and user-defined tokens matched literally in the input, longest first.
    specials: Vec<super::Special>,
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
    /// Builds the tokenizer from GGUF metadata: GPT-2's byte alphabet (`byte_level`) or Gemma
    /// 4's raw UTF-8.
    pub fn from_gguf(h: &Header, byte_level: bool) -> Result<Self, TokenizerError> {
        let tokens = strings(h, "tokenizer.ggml.tokens")?;
        let merges = strings(h, "tokenizer.ggml.merges")?;
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            if !m.contains(' ') {
                return Err(TokenizerError::Metadata(format!(
                    "merge {rank} {m:?} has no space"
                )));
            }
            // The first of equal merges wins, as the rank of a pair is its first line.
            ranks.entry(m.clone()).or_insert(rank);
        }
        let pre = h
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        // Gemma 4 cuts the text only at line ends (its merges hold no line end).
        let patterns = if byte_level {
            match PreTokenizer::from_gguf_name(pre) {
                Some(kind) => patterns(kind),
                None => {
                    return Err(TokenizerError::Unsupported(format!(
                        "pre-tokenizer {pre:?} is not supported yet (supported: default, gpt-2, smollm, \
                         starcoder, command-r, llama-bpe (Llama 3), qwen2, qwen35, \
                         deepseek-llm, deepseek-coder, falcon and their aliases)"
                    )));
                }
            }
        } else {
            vec![r"[^\n]+|[\n]+"]
        };
        let splitters = patterns
            .into_iter()
            .map(|p| {
                Regex::new(p).map_err(|e| TokenizerError::Metadata(format!("regex {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Encoding falls back to `<0xXX>` tokens by their text, as llama.cpp looks them up;
        // decoding reads a token as a byte where the file types it so.
        let (byte_tokens, token_bytes) = if byte_level {
            ([None; 256], HashMap::new())
        } else {
            let by_text = super::byte_fallback_tokens(&tokens, &[]).0;
            let typed = super::byte_fallback_tokens(&tokens, &super::token_types(h)).1;
            (by_text, typed)
        };
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
            ignore_merges: byte_level && smelt_gguf::pretokenizer::ignores_merges(pre),
            byte_level,
            byte_tokens,
            token_bytes,
            specials,
            byte_to_char,
            char_to_byte,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids of `text`; control tokens written literally in the text are recognized when
    /// `parse_special`, user-defined ones always (as llama.cpp's `tokenize(..., parse_special)`).
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
        let mut pieces = vec![if self.byte_level {
            text.to_string()
        } else {
            text.replace(' ', "\u{2581}")
        }];
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
            if self.byte_level {
                let mapped: String = p.bytes().map(|b| self.byte_to_char[b as usize]).collect();
                self.bpe(&mapped, out);
            } else if p.bytes().all(|b| b == b'\n')
                && let Some(&id) = self.ids.get(&p)
            {
                // Gemma 4's runs of line ends are tokens whole (llama.cpp does so).
                out.push(id);
            } else {
                self.bpe(&p, out);
            }
        }
    }

    /// Merges one pre-tokenized, byte-mapped word, lowest rank first (leftmost on ties).
    /// Symbols are linked spans of `word` and candidate pairs wait in a min-heap, so a word
    /// of n characters takes O(n log n), not a rescan of every pair per merge (a prompt of
    /// 100,000 letters is one word).
    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges
            && let Some(&id) = self.ids.get(word)
        {
            out.push(id);
            return;
        }
        // (chars,) each symbol's span [start, start + len) in `word`, and its neighbours;
        // a symbol merged into its left neighbour keeps len 0.
        let mut syms: Vec<Span> = Vec::with_capacity(word.len());
        for (i, (at, c)) in word.char_indices().enumerate() {
            syms.push(Span {
                start: at,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = None;
        }
        let mut key = String::new();
        let mut heap = BinaryHeap::new();
        let mut push = |heap: &mut BinaryHeap<Reverse<Pair>>, syms: &[Span], left: usize| {
            let Some(right) = syms[left].next else { return };
            let (l, r) = (&syms[left], &syms[right]);
            key.clear();
            key.push_str(&word[l.start..l.start + l.len]);
            key.push(' ');
            key.push_str(&word[r.start..r.start + r.len]);
            if let Some(&rank) = self.ranks.get(key.as_str()) {
                heap.push(Reverse(Pair {
                    rank,
                    start: l.start,
                    left,
                    right,
                    len: l.len + r.len,
                }));
            }
        };
        for i in 0..syms.len() {
            push(&mut heap, &syms, i);
        }
        while let Some(Reverse(p)) = heap.pop() {
            // Stale: either side has merged since the pair was queued.
            let (l, r) = (&syms[p.left], &syms[p.right]);
            if l.len == 0 || r.len == 0 || l.next != Some(p.right) || l.len + r.len != p.len {
                continue;
            }
            let after = syms[p.right].next;
            syms[p.left].len = p.len;
            syms[p.left].next = after;
            syms[p.right].len = 0;
            if let Some(a) = after {
                syms[a].prev = Some(p.left);
            }
            if let Some(b) = syms[p.left].prev {
                push(&mut heap, &syms, b);
            }
            push(&mut heap, &syms, p.left);
        }
        let mut at = (!syms.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = &word[syms[i].start..syms[i].start + syms[i].len];
            self.push_symbol(s, out);
            at = syms[i].next;
        }
    }

    /// The id of one merged symbol, or (not in the vocabulary) one token per character:
    /// its byte-mapped character, or (`gemma4`) its bytes' `<0xXX>` tokens.
    fn push_symbol(&self, s: &str, out: &mut Vec<u32>) {
        match self.ids.get(s) {
            Some(&id) => out.push(id),
            None if self.byte_level => out.extend(
                s.chars()
                    .filter_map(|c| self.ids.get(c.to_string().as_str()).copied()),
            ),
            None => out.extend(s.bytes().filter_map(|b| self.byte_tokens[b as usize])),
        }
    }

    /// The plain merge loop [`Self::bpe`] replaces (every pair rescanned per merge): the
    /// reference its tests compare against.
    #[cfg(test)]
    fn bpe_reference(&self, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges
            && let Some(&id) = self.ids.get(word)
        {
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
                        .get(format!("{} {}", w[0], w[1]).as_str())
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", syms[i], syms[i + 1]);
            syms.splice(i..i + 2, [merged]);
        }
        for s in syms {
            self.push_symbol(&s, out);
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
            if self.specials.iter().any(|s| s.id == id) {
                bytes.extend(t.as_bytes());
                continue;
            }
            if !self.byte_level {
                match self.token_bytes.get(&id) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend(t.replace('\u{2581}', " ").as_bytes()),
                }
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
    use smelt_quant::rng::{Rng, test_seed};

    /// A toy vocabulary over "abcĠ" with random merges of existing tokens (some results left
    /// out of the vocabulary, so the per-character fallback runs too).
    fn toy(rng: &mut Rng) -> BpeTokenizer {
        let mut tokens: Vec<String> = "abcĠ".chars().map(String::from).collect();
        let mut ranks = HashMap::new();
        let mut known = tokens.clone();
        for _ in 0..60 {
            let a = known[rng.next_u64() as usize % known.len()].clone();
            let b = known[rng.next_u64() as usize % known.len()].clone();
            let m = format!("{a} {b}");
            if ranks.contains_key(&m) || a.len() + b.len() > 12 {
                continue;
            }
            ranks.insert(m, ranks.len());
            known.push(format!("{a}{b}"));
            if !rng.next_u64().is_multiple_of(8) {
                tokens.push(format!("{a}{b}"));
            }
        }
        tokens.dedup();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let byte_to_char = byte_alphabet();
        BpeTokenizer {
            tokens,
            ids,
            ranks,
            splitters: Vec::new(),
            ignore_merges: rng.next_u64().is_multiple_of(2),
            byte_level: true,
            byte_tokens: [None; 256],
            token_bytes: HashMap::new(),
            specials: Vec::new(),
            byte_to_char,
            char_to_byte: HashMap::new(),
        }
    }

    #[test]
    fn heap_merges_equal_the_plain_merge_loop() {
        let mut rng = Rng::new(test_seed());
        let alphabet: Vec<char> = "abcĠ".chars().collect();
        for _ in 0..50 {
            let t = toy(&mut rng);
            for _ in 0..40 {
                let n = rng.next_u64() as usize % 80;
                // Runs of one character now and then: equal-rank pairs that overlap.
                let word: String = if rng.next_u64().is_multiple_of(4) {
                    alphabet[rng.next_u64() as usize % 4].to_string().repeat(n)
                } else {
                    (0..n)
                        .map(|_| alphabet[rng.next_u64() as usize % 4])
                        .collect()
                };
                let (mut fast, mut plain) = (Vec::new(), Vec::new());
                t.bpe(&word, &mut fast);
                t.bpe_reference(&word, &mut plain);
                assert_eq!(fast, plain, "{word:?} with merges {:?}", t.ranks);
            }
        }
    }

    /// A word that is a token but not a merge result: merges decide (llama.cpp and Hugging
    /// Face for most vocabularies), or the whole token wins with `ignore_merges` (Llama 3).
    #[test]
    fn ignore_merges_takes_a_whole_word_token() {
        let tokens: Vec<String> = ["a", "b", "c", "bc", "abc"].map(String::from).into();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut t = BpeTokenizer {
            tokens,
            ids,
            ranks: HashMap::from([("b c".to_string(), 0)]),
            splitters: Vec::new(),
            ignore_merges: false,
            byte_level: true,
            byte_tokens: [None; 256],
            token_bytes: HashMap::new(),
            specials: Vec::new(),
            byte_to_char: byte_alphabet(),
            char_to_byte: HashMap::new(),
        };
        let mut out = Vec::new();
        t.bpe("abc", &mut out);
        assert_eq!(out, [0, 3]);
        t.ignore_merges = true;
        out.clear();
        t.bpe("abc", &mut out);
        assert_eq!(out, [4]);
    }
}
