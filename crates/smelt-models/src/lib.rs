//! Model definitions, tokenizers and (to come) the LLM runtime.
//!
//! So far: the GPT-2-style byte-level BPE tokenizer that llama-family GGUFs such as SmolLM2
//! carry, reading vocabulary, merges, special tokens and the pre-tokenizer from the metadata.

#![deny(missing_docs)]

pub mod tokenizer;
