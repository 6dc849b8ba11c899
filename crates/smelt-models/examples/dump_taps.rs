//! smelt's intermediate tensors along a token path, in the record format of
//! `benches/llamacpp_dump.c` and under llama.cpp's graph names, so that
//! `benches/numerics_vs_llamacpp.sh` can compare the two runtimes op by op.
//!
//! Usage: dump_taps MODEL.gguf PROMPT_TOKENS FORCED_TOKENS OUT.bin (tokens comma-separated; the
//! prompt runs as one batch, each forced token alone, as llama.cpp runs them).

use std::sync::Arc;

use smelt_models::layer_io::{LinearInput, Scratch, Span, Tap};
use smelt_models::llama::{Llama, Logits};

/// Appends one record: a 64-byte name, four i64 dims (ne0 = row length), the f32 values.
fn record(out: &mut Vec<u8>, name: &str, row: usize, rows: usize, x: &[f32]) {
    let mut padded = [0u8; 64];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    out.extend_from_slice(&padded);
    for v in [row as i64, rows as i64, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    x.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
}

/// Records every tensor the layer shows it.
struct Dump<'a>(&'a mut Vec<u8>);

impl Tap for Dump<'_> {
    fn input(&mut self, layer: usize, at: LinearInput, x: &[f32], n: usize) {
        let name = match at {
            LinearInput::Attn => "attn_norm",
            LinearInput::AttnOut => "kqv_out",
            LinearInput::Ffn => "ffn_norm",
            LinearInput::FfnDown => "ffn_swiglu",
        };
        record(self.0, &format!("{name}-{layer}"), x.len() / n, n, x);
    }

    fn tensor(&mut self, layer: usize, name: &'static str, x: &[f32], n: usize) {
        record(self.0, &format!("{name}-{layer}"), x.len() / n, n, x);
    }
}

fn ids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().map_err(|e| format!("token {t:?}: {e}")))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, prompt, forced, out_path] = &args[..] else {
        return Err("usage: dump_taps MODEL.gguf PROMPT_TOKENS FORCED_TOKENS OUT.bin".into());
    };
    let file = Arc::new(smelt_gguf::GgufFile::open(model)?);
    let model = Llama::load(&file)?;
    let mut steps = vec![ids(prompt)?];
    steps.extend(ids(forced)?.into_iter().map(|t| vec![t]));
    let mut cache = model.new_cache(steps.iter().map(Vec::len).sum());
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    for (i, tokens) in steps.iter().enumerate() {
        record(&mut out, &format!("STEP {i}"), 0, 0, &[]);
        let mut x = model.embed(tokens)?;
        let pos0 = cache.len();
        let last = model.config.n_layer - 1;
        for l in 0..last {
            model.run_layer(
                l,
                &mut x,
                pos0,
                &mut cache,
                &mut scratch,
                &mut Dump(&mut out),
            );
        }
        // The last layer finishes only the row whose logits are wanted, as in a generation
        // pass (and in llama.cpp's graph).
        let (pool, kv) = cache.paged();
        let span = Span {
            n: tokens.len(),
            pos0,
            kv,
        };
        let row = model.run_last_layer_spans(
            &mut x,
            &[span],
            &[1],
            pool,
            &mut scratch,
            &mut Dump(&mut out),
        );
        cache.advance(tokens.len());
        let logits = model.head(&row, Logits::All);
        record(&mut out, "result_output", model.config.n_vocab, 1, &logits);
    }
    let tmp = format!("{out_path}.tmp");
    std::fs::write(&tmp, &out)?;
    std::fs::rename(&tmp, out_path)?;
    Ok(())
}
