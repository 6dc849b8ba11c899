//! One module per verb.

pub mod assets;
pub mod bench;
pub mod bench_batched;
pub mod bench_model;
pub mod bench_serve;
pub mod chat;
pub mod gguf;
pub mod gguf_calibrated;
pub mod gpu;
pub mod lenet;
pub mod lenet_eval;
pub mod lenet_report;
pub mod llm;
pub mod llm_smooth;
pub mod perplexity;
pub mod profile;
pub mod quant;
pub mod run;
pub mod serve;
pub mod tokenize;
pub mod tour;
pub mod tour_serve;

/// `1 file`, `5 files`.
pub fn count_files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}
