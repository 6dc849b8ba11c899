//! ggml's `soft_max` of one f32 row, as llama.cpp's CPU build for AVX-512 computes it (the
//! mixture-of-experts router's probabilities): the maximum subtracted, e^x 16 values at a time
//! by ggml's vectorized `ggml_v_expf` ([`crate::silu::exp`]) with each 16's sum reduced as
//! `_mm512_reduce_add_ps` ([`crate::attention::reduce16`]) and added in f64, the last
//! `len % 16` values by the C library's `expf` and added one by one in f64 (the tail loop of
//! `ggml_vec_soft_max_f32`); then every value multiplied by `(float)(1.0 / sum)`.
//!
//! The attention's softmax (`attention.rs`) differs only in its last partial chunk, which
//! llama.cpp pads with masked positions and so takes through the vectorized e^x.

use crate::attention::reduce16;
use crate::silu;

/// `row ← softmax(row)` in ggml's order (module docs). An empty row is left empty; a row whose
/// maximum is not finite gives NaNs, as ggml's would.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let whole = row.len() / 16 * 16;
    let mut sum = 0f64;
    let (head, tail) = row.split_at_mut(whole);
    for chunk in head.chunks_exact_mut(16) {
        let mut lanes = [0f32; 16];
        for (l, v) in chunk.iter_mut().enumerate() {
            *v = silu::exp(*v - max);
            lanes[l] = *v;
        }
        sum += reduce16(&lanes) as f64;
    }
    for v in tail {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 softmax: every length across the chunk boundary, values up to ±20.
    #[test]
    fn close_to_an_f64_softmax() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 40.0 - 20.0
        };
        for n in [1, 7, 8, 15, 16, 17, 20, 31, 32, 64, 128, 130] {
            let x: Vec<f32> = (0..n).map(|_| next()).collect();
            let mut y = x.clone();
            softmax(&mut y);
            let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let s: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (a, b) in y.iter().zip(&x) {
                let want = (*b as f64 - m).exp() / s;
                assert!(
                    (*a as f64 - want).abs() <= 4e-7 * want + 1e-12,
                    "{n}: {a} vs {want}"
                );
            }
            let total: f64 = y.iter().map(|&v| v as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "{n}: sums to {total}");
        }
    }

    /// The tail takes the C library's `expf` and the chunks ggml's vectorized e^x: on values
    /// where the two differ even after the scaling, the result shows which one ran.
    #[test]
    fn chunks_use_ggml_exp_and_the_tail_expf() {
        let mut told_apart = 0;
        for x in (0..100_000).map(|i| -(i as f32) * 1e-4) {
            // 17 values: 16 in a chunk, 1 in the tail; the maximum 0 gives e^0 = 1 exactly.
            let mut row = vec![f32::NEG_INFINITY; 17];
            row[0] = 0.0;
            row[1] = x;
            row[16] = x;
            softmax(&mut row);
            // The chunk's lanes sum in f32 (the zeros add nothing), the tail in f64.
            let sum = (1.0f32 + silu::exp(x)) as f64 + x.exp() as f64;
            let inv = (1.0 / sum) as f32;
            assert_eq!(row[1], silu::exp(x) * inv, "x = {x}");
            assert_eq!(row[16], x.exp() * inv, "x = {x}");
            told_apart += usize::from(row[1] != row[16]);
        }
        // Values where the two exponentials give different results exist among these.
        assert!(told_apart > 0, "no x told ggml's e^x from expf");
    }
}
