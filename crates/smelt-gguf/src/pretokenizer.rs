//! The byte-level BPE pre-tokenizers smelt knows, named as llama.cpp names them in
//! `tokenizer.ggml.pre` (one place, read by the tokenizer and by the Hugging Face converter),
//! with llama.cpp's per-name switches (`ignore_merges`, BOS by default).

use serde_json::Value;

/// The byte-level BPE pre-tokenizers smelt reads, by llama.cpp's names (the regex sets of
/// `llama-vocab.cpp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's default (`default`, or no name): punctuation runs, GPT-2's regex, digit
    /// runs, then digits in threes.
    Default,
    /// GPT-2's regex (also MPT, OLMo).
    Gpt2,
    /// Each digit apart, then GPT-2's regex (SmolLM2, StarCoder, Refact, Command-R).
    DigitsApart,
    /// Llama 3's regex (digits in runs of up to three).
    Llama3,
    /// Qwen 2's regex (Llama 3's with one digit per piece).
    Qwen2,
    /// Qwen 3.5's regex (Qwen 2's with combining marks kept with their letters).
    Qwen35,
    /// DeepSeek LLM's: line ends, Latin/Greek/Cyrillic/... letters with one leading space,
    /// ASCII and full-width punctuation, trailing spaces, CJK runs, digit runs.
    DeepseekLlm,
    /// DeepSeek Coder's: line ends, letters, punctuation, CJK runs, each digit apart.
    DeepseekCoder,
    /// Falcon's: punctuation runs, GPT-2's regex, then digits in threes.
    Falcon,
}

/// llama.cpp's names for Llama 3's pre-tokenizer that also take a word that is a token whole
/// (`ignore_merges`) and add BOS by default.
const LLAMA3_NAMES: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
];

/// The two regexes as Hugging Face's tokenizer.json writes them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl PreTokenizer {
    /// The one llama.cpp's `tokenizer.ggml.pre` name stands for, if smelt knows it.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        if LLAMA3_NAMES.contains(&name) {
            return Some(Self::Llama3);
        }
        Some(match name {
            "default" => Self::Default,
            // "gpt2" is not llama.cpp's name, but smelt's converter wrote it until 2026-11.
            "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "phi-2" | "jina-es" | "jina-de"
            | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert"
            | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "exaone4" | "trillion"
            | "granite-docling" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" | "minerva-7b" | "mellum2" => Self::DigitsApart,
            "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" | "glm5" => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "kormo" | "f2llmv2" | "megrez"
            | "hunyuan" | "solar-open" | "grok-2" => Self::Qwen2,
            "qwen35" => Self::Qwen35,
            "deepseek-llm" => Self::DeepseekLlm,
            "deepseek-coder" => Self::DeepseekCoder,
            "falcon" => Self::Falcon,
            _ => return None,
        })
    }

    /// The name smelt's converter writes for it (one llama.cpp knows).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Gpt2 => "gpt-2",
            Self::DigitsApart => "smollm",
            Self::Llama3 => "llama-bpe",
            Self::Qwen2 => "qwen2",
            Self::Qwen35 => "qwen35",
            Self::DeepseekLlm => "deepseek-llm",
            Self::DeepseekCoder => "deepseek-coder",
            Self::Falcon => "falcon",
        }
    }

    /// Its Split regex as Hugging Face's tokenizer.json writes it, for the ones smelt's
    /// exporter writes that way (Llama 3's and Qwen 2's).
    pub fn split_regex(self) -> Option<&'static str> {
        match self {
            Self::Llama3 => Some(LLAMA3_SPLIT),
            Self::Qwen2 => Some(QWEN2_SPLIT),
            _ => None,
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

/// Whether llama.cpp takes a pre-tokenized word that is itself a token whole, without
/// merging (`ignore_merges`: Llama 3 and GLM 4 names), for this `tokenizer.ggml.pre` name.
pub fn ignores_merges(name: &str) -> bool {
    LLAMA3_NAMES.contains(&name) || matches!(name, "glm4" | "glm5")
}

/// Whether llama.cpp adds BOS to a prompt for this `tokenizer.ggml.pre` name when the file
/// has no `add_bos_token` (Llama 3's names; other byte-level vocabularies do not).
pub fn adds_bos_by_default(name: &str) -> bool {
    LLAMA3_NAMES.contains(&name)
}
