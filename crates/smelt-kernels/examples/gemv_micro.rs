//! Speed of smelt's matrix products for one token (the decode hot path) or a few, the
//! counterpart of `benches/ggml_gemv_speed.c` (run side by side by `benches/gemv_vs_ggml.sh`):
//! random weights (ROWS, COLS) quantized to each type, TOKENS tokens' activations quantized and
//! multiplied through `QMatrix::matmul` (as a model's layer does) on a pool of THREADS; the
//! best of ROUNDS batches of REPS products. One JSON line per type, time per row and token.
//!
//! `cargo run --release -p smelt-kernels --example gemv_micro THREADS ROWS COLS TOKENS REPS ROUNDS TYPE...`
//! (ggml type names: q4_K, q6_K, q8_0, ...)

use std::time::Instant;

use smelt_kernels::{Activations, QMatrix, WEIGHT_TYPES, WeightBytes};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gemv_micro THREADS ROWS COLS TOKENS REPS ROUNDS TYPE...";
    if args.len() < 7 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let num = |i: usize| -> usize {
        match args[i].parse() {
            Ok(v) if v > 0 => v,
            _ => {
                eprintln!("{usage}: {} is not a positive number", args[i]);
                std::process::exit(2)
            }
        }
    };
    let (threads, rows, cols, tokens) = (num(0), num(1), num(2), num(3));
    let (reps, rounds) = (num(4), num(5));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    // The same generator as the C side, so both see weights of the same spread.
    let mut state = 0x5eedu64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    };
    // (tokens, cols)
    let x: Vec<f32> = (0..tokens * cols)
        .map(|_| uniform() + uniform() + uniform() + uniform())
        .collect();
    // (rows, cols)
    let wf: Vec<f32> = (0..rows * cols).map(|_| uniform()).collect();
    for name in &args[6..] {
        let Some(ty) = WEIGHT_TYPES.into_iter().find(|t| t.ggml().name() == *name) else {
            eprintln!("unknown or unsupported type {name}");
            std::process::exit(2);
        };
        let bytes = match smelt_gguf::blocks::quantize(ty.ggml(), &wf) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(2);
            }
        };
        let w = match QMatrix::new(ty, rows, cols, WeightBytes::Owned(bytes)) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(2);
            }
        };
        let mut acts = Activations::new();
        let mut out = vec![0f32; tokens * rows]; // (tokens, rows)
        let best = pool.install(|| {
            let mut best = f64::MAX;
            for _ in 0..rounds {
                let t = Instant::now();
                for _ in 0..reps {
                    acts.set(&x, tokens, cols, w.act_kinds());
                    w.matmul(&acts, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            best
        });
        std::hint::black_box(&out);
        println!(
            "{{\"type\": \"{name}\", \"kernel\": \"{}\", \"ns_per_row\": {:.3}}}",
            smelt_kernels::variant().name(),
            best * 1e9 / (rows * tokens) as f64
        );
    }
}
