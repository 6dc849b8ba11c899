//! Times the prompt attention of one layer (a development aid): `ubatch` new tokens at the end
//! of a `context`-position sequence, `n_head` query heads over `n_kv` KV heads of width 64,
//! through `ops::attention` on the process's thread pool; the best of `reps`.
//! `prompt_attention [CONTEXT] [UBATCH] [N_HEAD] [N_KV] [REPS]`
use smelt_models::kv_cache::{BlockTable, KvPool};
use smelt_models::llama::Span;
use smelt_models::ops::{Heads, attention};

fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (context, ubatch, n_head, n_kv, reps) =
        (arg(1, 2048), arg(2, 512), arg(3, 16), arg(4, 8), arg(5, 5));
    let hd = 64;
    let kv_dim = n_kv * hd;
    let mut pool = KvPool::new(1, 1, context, kv_dim);
    let val = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 500.0;
    for p in 0..context {
        let k: Vec<f32> = (0..kv_dim).map(|d| val(p * kv_dim + d)).collect();
        let v: Vec<f32> = (0..kv_dim).map(|d| val(p * kv_dim + d + 17)).collect();
        pool.store(0, p, &k, &v);
    }
    // (ubatch, n_head · hd)
    let q: Vec<f32> = (0..ubatch * n_head * hd).map(|i| val(i + 3)).collect();
    let mut out = vec![0f32; q.len()];
    let table = [0u32];
    let spans = [Span {
        n: ubatch,
        pos0: context - ubatch,
        kv: BlockTable {
            table: &table,
            block: context,
        },
    }];
    let heads = Heads {
        n_head,
        n_head_kv: n_kv,
        head_dim: hd,
        scale: 0.125,
        window: None,
        softcap: None,
    };
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = std::time::Instant::now();
        attention(&q, &pool, 0, &spans, heads, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&out);
    println!("{:.2} ms", best * 1e3);
}
