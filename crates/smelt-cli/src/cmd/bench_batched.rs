//! `smelt bench MODEL --batch 1,8`: decode throughput of B sequences stepping together through
//! the paged KV pool, the way the server's continuous batching runs them (one
//! `Llama::forward_seqs` per step, one token per sequence), without the HTTP stack, the
//! sampler or the scheduler around it. llama.cpp's `llama-batched-bench` measures the same
//! thing (its S_TG column).

use std::time::Instant;

use anyhow::{Result, ensure};
use smelt_models::kv_cache::{BlockTable, KvPool};
use smelt_models::layer_io::SeqInput;
use smelt_models::llama::{Llama, Logits};

use super::bench_model::{Xorshift, mean_sd};

/// KV positions per block, the server's default.
const BLOCK: usize = 16;

/// Seconds for `steps` decode steps of `b` sequences that each start with `prompt` random
/// tokens already in the pool (the prompts run first, untimed).
pub(crate) fn time_batched_decode(
    model: &Llama,
    b: usize,
    prompt: usize,
    steps: usize,
    rng: &mut Xorshift,
) -> Result<f64> {
    let c = &model.config;
    let len = prompt + steps;
    ensure!(
        len <= c.n_ctx,
        "--batch-prompt {prompt} + -n {steps} exceeds the model's context of {}",
        c.n_ctx
    );
    let per_seq = len.div_ceil(BLOCK);
    let mut pool = KvPool::new(c.n_layer, b * per_seq, BLOCK, c.n_head_kv * c.head_dim())
        .with_seq_ctx(per_seq * BLOCK);
    // (b, per_seq) each sequence's own run of physical blocks.
    let tables: Vec<Vec<u32>> = (0..b)
        .map(|s| ((s * per_seq) as u32..((s + 1) * per_seq) as u32).collect())
        .collect();
    let table = |s: usize| BlockTable {
        table: &tables[s],
        block: BLOCK,
    };
    // (b, prompt) random prompt tokens.
    let prompts: Vec<Vec<u32>> = (0..b)
        .map(|_| (0..prompt).map(|_| rng.below(c.n_vocab)).collect())
        .collect();
    if prompt > 0 {
        for (s, p) in prompts.iter().enumerate() {
            for (i, chunk) in p.chunks(smelt_models::generate::PROMPT_BATCH).enumerate() {
                let seq = SeqInput {
                    tokens: chunk,
                    pos0: i * smelt_models::generate::PROMPT_BATCH,
                    kv: table(s),
                    want: Logits::Last,
                };
                model.forward_seqs(&[seq], &mut pool)?;
            }
        }
    }
    // (steps, b) the token each sequence feeds at each step.
    let feed: Vec<u32> = (0..steps * b).map(|_| rng.below(c.n_vocab)).collect();
    let t = Instant::now();
    for step in 0..steps {
        let seqs: Vec<SeqInput> = (0..b)
            .map(|s| SeqInput {
                tokens: std::slice::from_ref(&feed[step * b + s]),
                pos0: prompt + step,
                kv: table(s),
                want: Logits::Last,
            })
            .collect();
        model.forward_seqs(&seqs, &mut pool)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One row of the batched table: batch, total decode tokens/s (mean, sd).
pub(crate) struct BatchedRow {
    pub(crate) batch: usize,
    pub(crate) mean: f64,
    pub(crate) sd: f64,
}

/// For every batch size (1 is always measured too, first), one warm-up and `reps` timed runs,
/// alternating the sizes within each repetition so load from other work hits them alike.
pub(crate) fn measure(
    model: &Llama,
    batches: &[usize],
    prompt: usize,
    steps: usize,
    reps: usize,
    rng: &mut Xorshift,
) -> Result<Vec<BatchedRow>> {
    ensure!(steps > 0, "--batch needs -n > 0 decode steps");
    let mut sizes = vec![1];
    for &b in batches {
        ensure!(b >= 1, "--batch sizes must be at least 1");
        if !sizes.contains(&b) {
            sizes.push(b);
        }
    }
    for &b in &sizes {
        time_batched_decode(model, b, prompt, steps, rng)?; // warm-up
    }
    let mut rates = vec![Vec::with_capacity(reps); sizes.len()];
    for _ in 0..reps {
        for (i, &b) in sizes.iter().enumerate() {
            let _rep = smelt_trace::span_owned("phase", || format!("tg{steps} x{b}"));
            let secs = time_batched_decode(model, b, prompt, steps, rng)?;
            rates[i].push((b * steps) as f64 / secs);
        }
    }
    Ok(sizes
        .iter()
        .zip(&rates)
        .map(|(&batch, r)| {
            let (mean, sd) = mean_sd(r);
            BatchedRow { batch, mean, sd }
        })
        .collect())
}

/// Prints the batched table: total decode tokens/s per batch size and its ratio to one sequence.
pub(crate) fn print(rows: &[BatchedRow], model_name: &str, prompt: usize, steps: usize) {
    let one = rows
        .iter()
        .find(|r| r.batch == 1)
        .map_or(f64::NAN, |r| r.mean);
    println!(
        "\nbatched decode ({model_name}): each sequence starts from {prompt} prompt tokens, {steps} steps"
    );
    println!("| sequences | decode t/s (all sequences) | per sequence t/s | vs 1 sequence |");
    println!("| ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {:.2} ± {:.2} | {:.2} | {:.2}× |",
            r.batch,
            r.mean,
            r.sd,
            r.mean / r.batch as f64,
            r.mean / one
        );
    }
}
