//! The byte-level BPE pre-tokenizers smelt knows, named as llama.cpp names them in
//! `tokenizer.ggml.pre` (one place, read by the tokenizer and by the Hugging Face converter).

use serde_json::Value;

/// The byte-level BPE pre-tokenizers smelt reads and writes, by llama.cpp's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex (also MPT, OLMo).
    Gpt2,
    /// Each digit apart, then GPT-2's regex (SmolLM2, StarCoder, Refact).
    DigitsApart,
    /// Llama 3's regex (digits in runs of up to three).
    Llama3,
    /// Qwen 2's regex (Llama 3's with one digit per piece).
    Qwen2,
}

/// The two regexes as Hugging Face's tokenizer.json writes them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl PreTokenizer {
    /// The one llama.cpp's `tokenizer.ggml.pre` name stands for, if smelt knows it.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Some(match name {
            "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Self::DigitsApart,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" => Self::Qwen2,
            _ => return None,
        })
    }

    /// The name smelt's converter writes for it.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::DigitsApart => "smollm",
            Self::Llama3 => "llama-bpe",
            Self::Qwen2 => "qwen2",
        }
    }

    /// Its Split regex as Hugging Face's tokenizer.json writes it (Llama 3's and Qwen 2's).
    pub fn split_regex(self) -> &'static str {
        match self {
            Self::Qwen2 => QWEN2_SPLIT,
            _ => LLAMA3_SPLIT,
        }
    }

    /// Recognizes tokenizer.json's `pre_tokenizer` (`None` for anything else).
    pub fn from_tokenizer_json(pre: &Value) -> Option<Self> {
        let parts: Vec<&Value> = match pre["type"].as_str()? {
            "Sequence" => pre["pretokenizers"].as_array()?.iter().collect(),
            _ => vec![pre],
        };
        let kinds: Vec<&str> = parts.iter().filter_map(|p| p["type"].as_str()).collect();
        let split = parts
            .iter()
            .find(|p| p["type"] == "Split")
            .and_then(|p| p["pattern"]["Regex"].as_str());
        match (kinds.as_slice(), split) {
            (["ByteLevel"], _) if parts[0]["use_regex"] != false => Some(Self::Gpt2),
            (["Digits", "ByteLevel"], _) if parts[0]["individual_digits"] == true => {
                Some(Self::DigitsApart)
            }
            (["Split", "ByteLevel"], Some(LLAMA3_SPLIT)) => Some(Self::Llama3),
            (["Split", "ByteLevel"], Some(QWEN2_SPLIT)) => Some(Self::Qwen2),
            _ => None,
        }
    }
}
