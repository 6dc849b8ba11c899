//! Model definitions, tokenizers and (to come) the LLM runtime.
//!
//! So far: the GPT-2-style byte-level BPE tokenizer that llama-family GGUFs such as SmolLM2
//! carry, a reference llama decoder (f32 weights, plain dot products) with a KV cache, and
//! greedy / temperature generation.

#![deny(missing_docs)]

pub mod generate;
pub mod kv_cache;
pub mod llama;
pub mod tokenizer;
