//! Times the attention kernel for one KV head's group of query heads (a development aid).
use smelt_kernels::attention::{HeadSlabs, Order, Score, attend_group};
fn main() {
    let hd = 64;
    let g = 3;
    let n_pos: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(256);
    let stride = 3 * hd;
    let keys: Vec<half::f16> = (0..n_pos * stride)
        .map(|i| half::f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5))
        .collect();
    let values = keys.clone();
    let q: Vec<f32> = (0..g * hd).map(|i| (i as f32 * 0.37).sin()).collect();
    let kv = HeadSlabs::contiguous(&keys, &values, stride, hd);
    let mut out = vec![0f32; g * hd];
    for order in [Order::Batch, Order::Single] {
        let reps = 20000;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            attend_group(&q, g, kv, 0..n_pos, Score::scaled(0.125), order, &mut out);
        }
        let ns = t.elapsed().as_nanos() as f64 / reps as f64;
        println!(
            "{order:?} n_pos {n_pos}: {ns:.0} ns per call, {:.2} ns per (position, head)",
            ns / (n_pos * g) as f64
        );
    }
}
