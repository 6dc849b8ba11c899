//! Model definitions, tokenizers and the LLM runtime.
//!
//! So far: the GPT-2-style byte-level BPE tokenizer that llama-family GGUFs such as SmolLM2
//! carry, the llama decoder on quantized kernels (`smelt-kernels`) with a KV cache, batched
//! prompt processing, and generation.

#![deny(missing_docs)]

pub mod chat;
mod chat_env;
pub mod cnn;
pub mod generate;
pub mod kv_cache;
pub mod layer_io;
pub mod llama;
mod llama_config;
pub mod ops;
pub mod perplexity;
pub mod sampler;
pub mod tokenizer;
