//! Perplexity the way llama.cpp's `llama-perplexity` computes it: the token stream is cut into
//! non-overlapping windows of `n_ctx`; each window runs from an empty context (its first token
//! replaced by BOS when the model adds one), and only the second half of each window is scored,
//! so every scored token sees at least `n_ctx / 2` tokens of context. Optionally the
//! KL divergence from a reference model's distribution is measured on the same tokens.

use crate::llama::{Llama, Logits, ModelError};

/// How to cut and score the text.
#[derive(Debug, Clone)]
pub struct PerplexityOptions {
    /// Window length in tokens.
    pub n_ctx: usize,
    /// Score at most this many windows (all when `None`).
    pub max_chunks: Option<usize>,
    /// The BOS token to put first in each window, if the model adds one.
    pub bos: Option<u32>,
}

/// KL divergence of the model's next-token distribution from a reference model's.
#[derive(Debug, Clone, PartialEq)]
pub struct KlReport {
    /// Mean KL(reference ‖ model) per scored token, in nats.
    pub mean: f64,
    /// Standard error of that mean.
    pub stderr: f64,
    /// Share of scored tokens where both models rank the same token first, in percent.
    pub same_top_percent: f64,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PerplexityReport {
    /// Windows scored.
    pub chunks: usize,
    /// Tokens scored.
    pub tokens: usize,
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Its standard error (delta method: ppl × stderr of the mean NLL).
    pub ppl_stderr: f64,
    /// Per window, the running perplexity after it (what llama-perplexity prints as `[i]x`).
    pub running: Vec<f64>,
    /// Against the reference model, when one was given.
    pub kl: Option<KlReport>,
}

/// log-softmax of one row of logits, in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = logits
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    logits.iter().map(|&v| v as f64 - lse).collect()
}

fn mean_stderr(sum: f64, sum_sq: f64, n: usize) -> (f64, f64) {
    let mean = sum / n as f64;
    let var = (sum_sq / n as f64 - mean * mean).max(0.0);
    (
        mean,
        if n > 1 {
            (var / (n - 1) as f64).sqrt()
        } else {
            0.0
        },
    )
}

/// All logits of one window, (n, n_vocab), computed in prompt-sized batches.
fn window_logits(model: &Llama, window: &[u32]) -> Result<Vec<f32>, ModelError> {
    let mut cache = model.new_cache(window.len());
    let mut all = Vec::with_capacity(window.len() * model.config.n_vocab);
    for part in window.chunks(crate::generate::PROMPT_BATCH) {
        all.extend(model.forward_batch(part, &mut cache, Logits::All)?);
    }
    Ok(all)
}

/// Scores `tokens` with `model` (and compares with `reference` if given); `on_chunk(i, n, ppl)`
/// reports progress after each window.
pub fn perplexity(
    model: &Llama,
    reference: Option<&Llama>,
    tokens: &[u32],
    opts: &PerplexityOptions,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport, ModelError> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 8 || n_ctx > model.config.n_ctx {
        return Err(ModelError::Unsupported(format!(
            "context {n_ctx} must be between 8 and the model's {}",
            model.config.n_ctx
        )));
    }
    if let Some(r) = reference
        && r.config.n_vocab != model.config.n_vocab
    {
        return Err(ModelError::Unsupported(format!(
            "the reference model has {} tokens, this one {}: KL needs the same vocabulary",
            r.config.n_vocab, model.config.n_vocab
        )));
    }
    let available = tokens.len() / n_ctx;
    let n_chunks = opts.max_chunks.map_or(available, |m| m.min(available));
    if n_chunks == 0 {
        return Err(ModelError::Unsupported(format!(
            "the text has {} tokens; at least one window of {n_ctx} is needed",
            tokens.len()
        )));
    }
    let vocab = model.config.n_vocab;
    // A token past the vocabulary (text tokenized for another model) cannot be scored.
    if let Some(&t) = tokens[..n_chunks * n_ctx]
        .iter()
        .find(|&&t| t as usize >= vocab)
    {
        return Err(ModelError::Unsupported(format!(
            "token id {t} is past the model's vocabulary of {vocab}: the text was tokenized \
             for another model"
        )));
    }
    let first = n_ctx / 2;
    let (mut nll, mut nll_sq, mut count) = (0f64, 0f64, 0usize);
    let (mut kl, mut kl_sq, mut same_top) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    for c in 0..n_chunks {
        let mut window = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(bos) = opts.bos {
            window[0] = bos;
        }
        let logits = window_logits(model, &window)?;
        let ref_logits = reference.map(|r| window_logits(r, &window)).transpose()?;
        // Position j predicts token j + 1 of the original stream.
        for j in first..n_ctx - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            let lp = log_softmax(row);
            let target = tokens[c * n_ctx + j + 1] as usize;
            let v = -lp[target];
            nll += v;
            nll_sq += v * v;
            count += 1;
            if let Some(rl) = &ref_logits {
                let rrow = &rl[j * vocab..(j + 1) * vocab];
                let lq = log_softmax(rrow);
                let d: f64 = lq.iter().zip(&lp).map(|(&q, &p)| q.exp() * (q - p)).sum();
                kl += d;
                kl_sq += d * d;
                if crate::sampler::argmax(row) == crate::sampler::argmax(rrow) {
                    same_top += 1;
                }
            }
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        on_chunk(c, n_chunks, ppl);
    }
    let (mean, se) = mean_stderr(nll, nll_sq, count);
    let kl = reference.map(|_| {
        let (m, s) = mean_stderr(kl, kl_sq, count);
        KlReport {
            mean: m,
            stderr: s,
            same_top_percent: 100.0 * same_top as f64 / count as f64,
        }
    });
    Ok(PerplexityReport {
        chunks: n_chunks,
        tokens: count,
        ppl: mean.exp(),
        ppl_stderr: mean.exp() * se,
        running,
        kl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let s: f64 = lp.iter().map(|v| v.exp()).sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!((lp[2] - lp[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mean_and_standard_error() {
        // Values 1, 2, 3: mean 2, sample sd 1, stderr 1/√3.
        let (m, s) = mean_stderr(6.0, 14.0, 3);
        assert!((m - 2.0).abs() < 1e-12);
        assert!((s - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
