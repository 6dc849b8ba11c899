//! Text generation: feed the prompt, then pick tokens one at a time until a stop condition.

use crate::kv_cache::KvCache;
use crate::llama::{Llama, Logits, ModelError};

/// Prompt tokens per forward pass (llama.cpp's default micro-batch).
pub const PROMPT_BATCH: usize = 512;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Always the most likely token.
    Greedy,
    /// Softmax at `temperature`, restricted to the `top_k` most likely (0 = all), drawn with `seed`.
    Temperature {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep only this many candidates (0 keeps all).
        top_k: usize,
        /// Seed of the draws.
        seed: u64,
    },
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

struct SplitMix(u64);

impl SplitMix {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Generates up to `n` tokens after `prompt`, calling `on_token` for each one; stops early at
/// `stop` tokens (e.g. end of sequence). Returns the generated ids.
pub fn generate(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    n: usize,
    sampling: Sampling,
    stop: &[u32],
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Unsupported("the prompt is empty".into()));
    }
    if prompt.len() > cache.capacity() {
        return Err(ModelError::ContextFull(cache.capacity()));
    }
    let mut logits = Vec::new();
    for chunk in prompt.chunks(PROMPT_BATCH) {
        logits = model.forward_batch(chunk, cache, Logits::Last)?;
    }
    let mut rng = match sampling {
        Sampling::Temperature { seed, .. } => SplitMix(seed),
        Sampling::Greedy => SplitMix(0),
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let next = match sampling {
            Sampling::Greedy => argmax(&logits),
            Sampling::Temperature {
                temperature, top_k, ..
            } => {
                let mut idx: Vec<usize> = (0..logits.len()).collect();
                idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
                if top_k > 0 {
                    idx.truncate(top_k);
                }
                let m = logits[idx[0]];
                let w: Vec<f64> = idx
                    .iter()
                    .map(|&j| (((logits[j] - m) / temperature) as f64).exp())
                    .collect();
                let mut r = rng.uniform() * w.iter().sum::<f64>();
                let mut pick = idx[idx.len() - 1];
                for (&j, &wj) in idx.iter().zip(&w) {
                    r -= wj;
                    if r <= 0.0 {
                        pick = j;
                        break;
                    }
                }
                pick as u32
            }
        };
        out.push(next);
        on_token(next);
        if stop.contains(&next) || i + 1 == n {
            break;
        }
        logits = model.forward(next, cache)?;
    }
    Ok(out)
}
