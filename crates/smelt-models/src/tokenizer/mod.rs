//! Tokenizers read from GGUF metadata. Token ids must equal llama.cpp's for the same file.

mod bpe;
mod spm;

pub use bpe::BpeTokenizer;
pub use spm::SpmTokenizer;

use std::collections::HashMap;

use smelt_gguf::{Header, MetaValue};

/// Token types of GGUF's `tokenizer.ggml.token_type` that are matched literally in input text.
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;
/// Token type of byte-fallback tokens (`<0xXX>`).
const TOKEN_BYTE: i64 = 6;

/// Why a tokenizer could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    /// The metadata is missing or inconsistent.
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    /// A tokenizer kind smelt does not implement yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A tokenizer of either kind llama-family GGUFs carry.
pub enum Tokenizer {
    /// GPT-2-style byte-level BPE (`gpt2`: SmolLM2, Llama 3, Qwen, ...).
    Bpe(Box<BpeTokenizer>),
    /// SentencePiece-style BPE with scores and byte fallback (`llama`: Llama 1/2, Mistral, ...).
    Spm(Box<SpmTokenizer>),
}

impl Tokenizer {
    /// Token ids of `text`, without BOS (see [`Tokenizer::bos_to_add`]).
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        match self {
            Self::Bpe(t) => t.encode(text, parse_special),
            Self::Spm(t) => t.encode(text, parse_special),
        }
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Self::Bpe(t) => t.decode(ids),
            Self::Spm(t) => t.decode(ids),
        }
    }

    /// The bytes of `ids`, which may end inside a character (a byte-level token can hold
    /// part of one), as OpenAI's `logprobs.content[].bytes` gives them.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        match self {
            Self::Bpe(t) => t.decode_bytes(ids),
            Self::Spm(t) => t.decode_bytes(ids),
        }
    }

    /// Whether `id` is a control or user-defined token (`<|im_end|>` and the like).
    pub fn is_special(&self, id: u32) -> bool {
        match self {
            Self::Bpe(t) => t.is_special(id),
            Self::Spm(t) => t.is_special(id),
        }
    }

    /// The string of one token.
    pub fn token(&self, id: u32) -> Option<&str> {
        match self {
            Self::Bpe(t) => t.token(id),
            Self::Spm(t) => t.token(id),
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Bpe(t) => t.vocab_size(),
            Self::Spm(t) => t.vocab_size(),
        }
    }
}

/// The BOS token to put before a prompt, if the GGUF asks for one (`add_bos_token`; llama.cpp's
/// default is yes for SentencePiece vocabularies and Llama 3's, no for other GPT-2 ones).
pub fn bos_to_add(h: &Header) -> Option<u32> {
    // llama.cpp's defaults when the file does not say: SentencePiece, Gemma 4 and Llama 3
    // add BOS.
    let model = h.get("tokenizer.ggml.model").and_then(|v| v.as_str());
    let by_name = h
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .is_some_and(smelt_gguf::pretokenizer::adds_bos_by_default);
    let add = match h.get("tokenizer.ggml.add_bos_token") {
        Some(MetaValue::Bool(b)) => *b,
        _ => model == Some("llama") || by_name,
    };
    // llama.cpp adds BOS for Gemma 4 whatever the file says.
    let add = add || model == Some("gemma4");
    let bos = h
        .get("tokenizer.ggml.bos_token_id")
        .and_then(|v| v.as_u64());
    bos.filter(|_| add).map(|b| b as u32)
}

/// The tokens that end a generation, as llama.cpp's end-of-generation set: the file's EOS,
/// EOT and EOM ids, and the tokens whose text marks the end of a turn in common chat formats
/// (`<|eot_id|>` of Llama 3, whose base files name `<|end_of_text|>` as EOS; `<|im_end|>`,
/// `<end_of_turn>`, ...). Sorted, without repeats.
pub fn end_of_generation(h: &Header) -> Vec<u32> {
    const TEXTS: &[&str] = &[
        "<|eot_id|>",
        "<|eom_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<EOT>",
        "<end_of_utterance>",
    ];
    let mut ids: Vec<u32> = [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ]
    .iter()
    .filter_map(|k| h.get(k).and_then(|v| v.as_u64()))
    .filter_map(|id| u32::try_from(id).ok())
    .collect();
    if let Ok(tokens) = strings(h, "tokenizer.ggml.tokens") {
        ids.extend(
            tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| TEXTS.contains(&t.as_str()))
                .map(|(i, _)| i as u32),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The `<0xXX>` byte-fallback tokens of a vocabulary: byte → token and token → byte. With
/// GGUF token types, only tokens typed as bytes count; without, any token so spelled.
pub(crate) fn byte_fallback_tokens(
    tokens: &[String],
    types: &[i64],
) -> ([Option<u32>; 256], HashMap<u32, u8>) {
    let mut byte_tokens = [None; 256];
    let mut token_bytes = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        let is_byte = types.get(i) == Some(&TOKEN_BYTE);
        if let Some(hex) = t.strip_prefix("<0x").and_then(|r| r.strip_suffix('>'))
            && hex.len() == 2
            && let Ok(b) = u8::from_str_radix(hex, 16)
            && (is_byte || types.is_empty())
        {
            byte_tokens[b as usize] = Some(i as u32);
            token_bytes.insert(i as u32, b);
        }
    }
    (byte_tokens, token_bytes)
}

/// GGUF's `tokenizer.ggml.token_type` as integers (empty when absent; a non-number reads as
/// a normal token).
pub(crate) fn token_types(h: &Header) -> Vec<i64> {
    match h.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(_, v)) => v
            .iter()
            .map(|t| t.as_f64().map_or(1, |f| f as i64))
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn strings(h: &Header, key: &str) -> Result<Vec<String>, TokenizerError> {
    match h.get(key) {
        Some(MetaValue::Array(_, items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| TokenizerError::Metadata(format!("{key} holds a non-string")))
            })
            .collect(),
        _ => Err(TokenizerError::Metadata(format!("{key} is missing"))),
    }
}

/// Control and user-defined tokens (matched literally in input text), longest first.
pub(crate) fn specials_from_gguf(h: &Header) -> Result<Vec<Special>, TokenizerError> {
    let tokens = strings(h, "tokenizer.ggml.tokens")?;
    let mut specials: Vec<Special> = match h.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(_, types)) => types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let control = match t.as_f64().map(|f| f as i64) {
                    Some(TOKEN_CONTROL) => true,
                    Some(TOKEN_USER_DEFINED) => false,
                    _ => return None,
                };
                let text = tokens.get(i).filter(|s| !s.is_empty())?.clone();
                Some(Special {
                    text,
                    id: i as u32,
                    control,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
    Ok(specials)
}

/// A token matched literally in the input rather than built by the model's algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Special {
    /// Its text.
    pub text: String,
    /// Its id.
    pub id: u32,
    /// A control token (`<|im_end|>`), recognized only when special tokens are parsed; a
    /// user-defined one (MPT's runs of spaces) is recognized always, as llama.cpp does.
    pub control: bool,
}

/// Cuts `text` at special tokens (control ones only when `parse_special`, user-defined ones
/// always), calling `f(Ok(plain text))` and
/// `f(Err(special id))` in order, as llama.cpp's tokenizer does before running the model's
/// algorithm on the plain parts. Each special's next occurrence is remembered and searched
/// for again only once the cut has passed it, so the text is scanned once per special, not
/// once per special per cut.
pub(crate) fn split_specials(
    text: &str,
    specials: &[Special],
    parse_special: bool,
    mut f: impl FnMut(Result<&str, u32>),
) {
    // Control tokens only when asked; user-defined ones always.
    let specials: Vec<&Special> = specials
        .iter()
        .filter(|s| parse_special || !s.control)
        .collect();
    if specials.is_empty() {
        if !text.is_empty() {
            f(Ok(text));
        }
        return;
    }
    // (specials,) where each special next occurs at or after `cut` (None: nowhere).
    let mut next: Vec<Option<usize>> = specials.iter().map(|s| text.find(&s.text)).collect();
    let mut cut = 0;
    while cut < text.len() {
        for (at, s) in next.iter_mut().zip(&specials) {
            if at.is_some_and(|a| a < cut) {
                *at = text[cut..].find(s.text.as_str()).map(|a| a + cut);
            }
        }
        // The earliest special token in what is left (the longest one at that position).
        let hit = next
            .iter()
            .zip(&specials)
            .filter_map(|(at, s)| at.map(|a| (a, s.text.len(), s.id)))
            .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
        match hit {
            Some((at, len, id)) => {
                if at > cut {
                    f(Ok(&text[cut..at]));
                }
                f(Err(id));
                cut = at + len;
            }
            None => {
                f(Ok(&text[cut..]));
                break;
            }
        }
    }
}

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(h: &Header) -> Result<Tokenizer, TokenizerError> {
    match h.get("tokenizer.ggml.model").and_then(|v| v.as_str()) {
        Some("gpt2") => Ok(Tokenizer::Bpe(Box::new(BpeTokenizer::from_gguf(h, true)?))),
        // Gemma 4: BPE over raw UTF-8 with `▁` for spaces and `<0xXX>` byte fallback.
        Some("gemma4") => Ok(Tokenizer::Bpe(Box::new(BpeTokenizer::from_gguf(h, false)?))),
        Some("llama") => Ok(Tokenizer::Spm(Box::new(SpmTokenizer::from_gguf(h)?))),
        Some(other) => Err(TokenizerError::Unsupported(format!(
            "tokenizer model {other:?} is not supported yet (supported: gpt2 byte-level BPE, gemma4 BPE, llama SentencePiece)"
        ))),
        None => Err(TokenizerError::Metadata(
            "tokenizer.ggml.model is missing".into(),
        )),
    }
}
