//! Tokenizers read from GGUF metadata. Token ids must equal llama.cpp's for the same file.

mod bpe;

pub use bpe::BpeTokenizer;

use smelt_gguf::Header;

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

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(h: &Header) -> Result<BpeTokenizer, TokenizerError> {
    match h.get("tokenizer.ggml.model").and_then(|v| v.as_str()) {
        Some("gpt2") => BpeTokenizer::from_gguf(h),
        Some(other) => Err(TokenizerError::Unsupported(format!(
            "tokenizer model {other:?} is not supported yet (supported: gpt2 byte-level BPE)"
        ))),
        None => Err(TokenizerError::Metadata(
            "tokenizer.ggml.model is missing".into(),
        )),
    }
}
