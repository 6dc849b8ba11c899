//! Hugging Face llama, Qwen 2 and Qwen 3 checkpoints ↔ GGUF: `export` dequantizes a GGUF into a Hugging Face
//! directory (safetensors, config.json, tokenizer.json, tokenizer_config.json) and `convert`
//! builds a GGUF from such a directory with the metadata llama.cpp expects. GGUF-only metadata
//! (general.*, the pre-tokenizer name, ...) travels in `gguf_metadata.json` so a round trip keeps it.

mod convert;
pub mod export;
pub mod names;
mod rope;

pub use convert::{OutType, convert, write_tokenizer_files};
pub use export::{ExportDtype, export};

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The input is not what the conversion supports.
    #[error("{0}")]
    Unsupported(String),
    /// A file's content is invalid.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> HfError + '_ {
    move |source| HfError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Name of the file that carries GGUF-only metadata through a Hugging Face directory.
pub const GGUF_METADATA_FILE: &str = "gguf_metadata.json";

/// The architectures `convert` and `export` handle (`general.architecture`, also config.json's
/// `model_type`), with their Hugging Face class names.
pub(crate) const ARCHITECTURES: &[(&str, &str)] = &[
    ("llama", "LlamaForCausalLM"),
    ("qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "Qwen3ForCausalLM"),
];

/// Metadata keys that `convert` derives from config.json and the tokenizer files; everything
/// else goes to [`GGUF_METADATA_FILE`].
pub(crate) fn is_derived_key(key: &str) -> bool {
    const DERIVED_ARCH: &[&str] = &[
        "block_count",
        "context_length",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.key_length",
        "attention.value_length",
        "rope.freq_base",
        "attention.layer_norm_rms_epsilon",
        "vocab_size",
        "rope.dimension_count",
    ];
    let arch_key = ARCHITECTURES.iter().any(|(arch, _)| {
        key.strip_prefix(arch)
            .and_then(|k| k.strip_prefix('.'))
            .is_some_and(|k| DERIVED_ARCH.contains(&k))
    });
    const DERIVED: &[&str] = &[
        "general.architecture",
        "general.file_type",
        "general.quantization_version",
        "general.alignment",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.chat_template",
    ];
    arch_key || DERIVED.contains(&key)
}
