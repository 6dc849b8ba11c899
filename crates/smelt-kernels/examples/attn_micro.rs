//! Times the attention kernel for one KV head's group of query heads (a development aid):
//! `attn_micro [N_POS] [HEAD_DIM] [WINDOW]` (a window of 0 attends every position).
use smelt_kernels::attention::{HeadSlabs, Order, Score, attend_group};
fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (n_pos, hd, window) = (arg(1, 256), arg(2, 64), arg(3, 0));
    let g = 3;
    let first = if window == 0 {
        0
    } else {
        n_pos.saturating_sub(window)
    };
    let stride = 3 * hd;
    let keys: Vec<half::f16> = (0..n_pos * stride)
        .map(|i| half::f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5))
        .collect();
    let values = keys.clone();
    let q: Vec<f32> = (0..g * hd).map(|i| (i as f32 * 0.37).sin()).collect();
    let kv = HeadSlabs::contiguous(&keys, &values, stride, hd);
    let mut out = vec![0f32; g * hd];
    let score = Score::scaled(1.0 / (hd as f32).sqrt());
    for order in [Order::Batch, Order::Single] {
        let reps = (5_000_000 / (n_pos * hd)).max(10);
        let t = std::time::Instant::now();
        for _ in 0..reps {
            attend_group(&q, g, kv, first..n_pos, score, order, &mut out);
        }
        let ns = t.elapsed().as_nanos() as f64 / reps as f64;
        println!(
            "{order:?} n_pos {n_pos} head_dim {hd} positions {first}..{n_pos}: {:.1} µs per call",
            ns / 1e3
        );
    }
}
