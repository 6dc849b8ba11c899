//! Single-thread kernel micro-benchmark: a weight matrix that fits in L2, multiplied again and
//! again, so the numbers show instruction cost rather than memory speed.
//! `cargo run --release -p smelt-kernels --example kernel_micro [tokens]`

use std::time::Instant;

use smelt_kernels::{Activations, DotFn, WEIGHT_TYPES, WeightType, available_variants};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cols: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(768);
    let rows = 1536usize * 768 / cols;
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
        .collect();
    let a: Vec<f32> = (0..n * cols)
        .map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 300.0)
        .collect();
    println!("{rows}x{cols} weights, {n} token(s); ns per weight row per token, GB/s of weights");
    for ty in WEIGHT_TYPES {
        let w = smelt_gguf::blocks::quantize(ty.ggml(), &x).unwrap();
        let row_bytes = w.len() / rows;
        let mut acts = Activations::new();
        acts.set(&a, n, cols, ty.act_kinds());
        for &v in available_variants() {
            let f = DotFn::new(ty, v, rows);
            let mut out = vec![0f32; 8];
            let reps = if v == smelt_kernels::Variant::Reference {
                3
            } else {
                30
            };
            let mut best = f64::MAX;
            for _ in 0..reps {
                let t = Instant::now();
                for r in 0..rows {
                    for t0 in (0..n).step_by(4) {
                        let nt = (n - t0).min(4);
                        f.dot_tokens(
                            &w[r * row_bytes..(r + 1) * row_bytes],
                            &acts,
                            t0,
                            &mut out[..nt],
                        );
                    }
                }
                best = best.min(t.elapsed().as_secs_f64());
                std::hint::black_box(&out);
            }
            println!(
                "{:>6} {:>9}: {:8.1} ns/row/token  {:6.2} GB/s",
                format!("{ty:?}"),
                v.name(),
                best * 1e9 / (rows * n) as f64,
                (rows * row_bytes) as f64 / best / 1e9
            );
        }
    }
    let _ = WeightType::F32;
}
