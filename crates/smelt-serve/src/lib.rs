//! smelt's serving engine (vLLM's ideas on smelt's runtime): an OpenAI-compatible HTTP server
//! whose handlers talk over bounded channels to an engine actor that owns the batch — waiting
//! and running queues, a paged KV pool with per-sequence block tables and a prefix cache — and
//! runs one continuous-batching step at a time.

#![deny(missing_docs)]

pub mod bench;
pub mod blocks;
pub mod engine;
pub mod json_mode;
pub mod json_schema;
pub mod metrics;
pub mod openai;
pub mod scheduler;
pub mod server;
