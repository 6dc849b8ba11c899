//! NF4 with double quantization, QLoRA's storage format (Dettmers et al., 2023, §3): the f32
//! absmax of every 64-weight block is itself quantized to 8 bits in blocks of 256 absmax values,
//! after subtracting their mean (the absmax values are all positive, so centring them uses the
//! 8-bit range better). Cost per parameter: 4 + 8/64 + 32/(64·256) ≈ 4.127 bits, against
//! 4 + 32/64 = 4.5 for plain NF4 with f32 absmax.
//!
//! bitsandbytes stores the second level with its "dynamic" 8-bit float map; smelt uses symmetric
//! INT8 with one f32 scale per 256-block (documented difference; the bit count is the same).

use crate::nf4::{self, Nf4};

/// Absmax values per second-level block (QLoRA's 256).
pub const DEFAULT_DQ_BLOCK: usize = 256;

/// NF4 codes with their block absmax stored in 8 bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Dq {
    /// Number of values.
    pub len: usize,
    /// Weights per NF4 block.
    pub block: usize,
    /// Absmax values per second-level block.
    pub dq_block: usize,
    /// Codes, two per byte, `(len.div_ceil(2),)`.
    pub packed: Vec<u8>,
    /// (n_blocks,) 8-bit codes of `absmax − offset`.
    pub absmax_codes: Vec<i8>,
    /// (n_blocks.div_ceil(dq_block),) f32 scale of each second-level block.
    pub absmax_scales: Vec<f32>,
    /// Mean of all absmax values, subtracted before the second quantization.
    pub offset: f32,
}

/// Bits per parameter of the format for large tensors (QLoRA's formula; the one f32 offset per
/// tensor is left out, as in the paper).
pub fn bits_per_param_formula(block: usize, dq_block: usize) -> f64 {
    4.0 + 8.0 / block as f64 + 32.0 / (block * dq_block) as f64
}

impl Nf4Dq {
    /// Bits actually stored per parameter: codes, absmax codes, scales and the offset.
    pub fn bits_per_param(&self) -> f64 {
        let bits = self.packed.len() * 8
            + self.absmax_codes.len() * 8
            + self.absmax_scales.len() * 32
            + 32;
        bits as f64 / self.len as f64
    }

    /// The absmax values as the second level gives them back.
    pub fn absmax(&self) -> Vec<f32> {
        self.absmax_codes
            .chunks(self.dq_block)
            .zip(&self.absmax_scales)
            .flat_map(|(codes, &s)| codes.iter().map(move |&c| c as f32 * s + self.offset))
            .collect()
    }
}

/// Quantizes `x` to NF4 in blocks of `block`, then its absmax values to INT8 in blocks of
/// `dq_block`.
pub fn quantize(x: &[f32], block: usize, dq_block: usize) -> Nf4Dq {
    assert!(dq_block > 0, "second-level block size must be positive");
    let first = nf4::quantize(x, block);
    let n = first.absmax.len();
    let offset = if n > 0 {
        (first.absmax.iter().map(|&a| a as f64).sum::<f64>() / n as f64) as f32
    } else {
        0.0
    };
    let mut absmax_codes = Vec::with_capacity(n);
    let mut absmax_scales = Vec::with_capacity(n.div_ceil(dq_block));
    for chunk in first.absmax.chunks(dq_block) {
        let amax = chunk.iter().fold(0f32, |m, &a| m.max((a - offset).abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        absmax_scales.push(scale);
        absmax_codes.extend(
            chunk
                .iter()
                .map(|&a| ((a - offset) * inv).round().clamp(-127.0, 127.0) as i8),
        );
    }
    Nf4Dq {
        len: first.len,
        block,
        dq_block,
        packed: first.packed,
        absmax_codes,
        absmax_scales,
        offset,
    }
}

/// Back to f32 (NF4 table value × the doubly-quantized absmax of its block).
pub fn dequantize(q: &Nf4Dq) -> Vec<f32> {
    let single = Nf4 {
        len: q.len,
        block: q.block,
        absmax: q.absmax(),
        packed: q.packed.clone(),
    };
    nf4::dequantize(&single)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn stored_bits_match_the_formula() {
        assert!((bits_per_param_formula(64, 256) - 4.127).abs() < 5e-4);
        let n = 64 * 256 * 4;
        let q = quantize(&Rng::new(7).normals(n), 64, 256);
        // The only extra is the one f32 offset.
        let extra = 32.0 / n as f64;
        assert!((q.bits_per_param() - bits_per_param_formula(64, 256) - extra).abs() < 1e-12);
    }

    #[test]
    fn second_level_error_is_small_next_to_nf4_error() {
        let x = Rng::new(11).normals(64 * 256 * 2);
        let single = nf4::dequantize(&nf4::quantize(&x, 64));
        let double = dequantize(&quantize(&x, 64, 256));
        let mse = |y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                / x.len() as f64
        };
        let (e1, e2) = (mse(&single), mse(&double));
        assert!(
            e2 >= e1 * 0.99 && e2 < e1 * 1.02,
            "NF4 mse {e1}, with double quantization {e2}"
        );
        // Each absmax is within half an 8-bit step of its true value.
        let q = quantize(&x, 64, 256);
        let exact = nf4::quantize(&x, 64).absmax;
        for (i, (a, b)) in q.absmax().iter().zip(&exact).enumerate() {
            let step = q.absmax_scales[i / 256];
            assert!((a - b).abs() <= 0.5 * step + 1e-6, "block {i}: {a} vs {b}");
        }
    }

    #[test]
    fn tiny_and_constant_inputs() {
        let q = quantize(&[0.0; 10], 4, 2);
        assert_eq!(dequantize(&q), vec![0.0; 10]);
        let q = quantize(&[], 64, 256);
        assert_eq!((q.len, q.absmax_codes.len()), (0, 0));
    }
}
