//! NF4, the 4-bit NormalFloat of QLoRA (Dettmers et al., 2023, arXiv:2305.14314): 16 values at
//! quantiles of a standard normal, rescaled to [-1, 1] with an exact zero, applied per block of
//! `block` weights after dividing by the block's absolute maximum.
//!
//! The table is bitsandbytes' (`csrc/kernels.cu`, the `nf4_dequantization_lut`); codes are packed
//! two per byte in smelt's order (see [`crate::int::pack_nibbles`]).

/// The 16 NF4 values, code = index.
pub const NF4_TABLE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Block size QLoRA uses for weights.
pub const DEFAULT_BLOCK: usize = 64;

/// NF4-quantized data: packed codes and one absmax per block.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4 {
    /// Number of values.
    pub len: usize,
    /// Values per block.
    pub block: usize,
    /// Per-block absolute maximum, `(len.div_ceil(block),)`.
    pub absmax: Vec<f32>,
    /// Codes, two per byte, `(len.div_ceil(2),)`.
    pub packed: Vec<u8>,
}

/// The 15 decision boundaries: midpoints between neighbouring table values, ascending.
pub fn midpoints() -> [f32; 15] {
    static MIDS: std::sync::OnceLock<[f32; 15]> = std::sync::OnceLock::new();
    *MIDS.get_or_init(|| std::array::from_fn(|i| 0.5 * (NF4_TABLE[i] + NF4_TABLE[i + 1])))
}

/// Index of the table value nearest to `x` (x in [-1, 1]); ties go to the lower code.
#[inline]
pub fn nearest_code(x: f32) -> u8 {
    midpoints().iter().filter(|&&m| x > m).count() as u8
}

/// Quantizes `x` in blocks of `block` values.
pub fn quantize(x: &[f32], block: usize) -> Nf4 {
    assert!(block > 0, "NF4 block size must be positive");
    let mut absmax = Vec::with_capacity(x.len().div_ceil(block));
    let mut packed = vec![0u8; x.len().div_ceil(2)];
    // Codes of one block; blocks of even size pack straight into place.
    let mut buf = vec![0i8; block + 1];
    let mut all_codes = Vec::new();
    for (b, chunk) in x.chunks(block).enumerate() {
        let mut mm = (f32::INFINITY, f32::NEG_INFINITY);
        crate::simd::min_max(chunk, &mut mm);
        let mut m = if mm.0 <= mm.1 {
            mm.0.abs().max(mm.1.abs())
        } else {
            0.0
        };
        if !m.is_finite() {
            // An infinity would make every code of the block decode to NaN (0 · inf): the
            // absmax is taken over finite values and the infinity saturates to ±absmax.
            m = chunk
                .iter()
                .filter(|v| v.is_finite())
                .fold(0f32, |a, v| a.max(v.abs()));
        }
        absmax.push(m);
        let inv = if m > 0.0 { 1.0 / m } else { 0.0 };
        let codes = &mut buf[..chunk.len()];
        crate::simd::nf4_codes(chunk, inv, codes);
        if block.is_multiple_of(2) {
            let start = b * block / 2;
            buf[chunk.len()] = 0;
            let even = chunk.len().next_multiple_of(2);
            crate::simd::pack_nibbles(&buf[..even], &mut packed[start..start + even / 2]);
        } else {
            all_codes.extend_from_slice(codes);
        }
    }
    if !block.is_multiple_of(2) {
        packed = crate::int::pack_nibbles(&all_codes);
    }
    Nf4 {
        len: x.len(),
        block,
        absmax,
        packed,
    }
}

/// Back to f32: `NF4_TABLE[code] * absmax[block]`.
pub fn dequantize(q: &Nf4) -> Vec<f32> {
    let mut out = vec![0f32; q.len];
    dequantize_into(q, &mut out);
    out
}

/// Back to f32 into a caller's buffer of length `q.len`.
pub fn dequantize_into(q: &Nf4, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        q.len,
        "NF4 dequantize_into needs a buffer of q.len values"
    );
    for (b, (chunk, &m)) in out.chunks_mut(q.block).zip(&q.absmax).enumerate() {
        // Scaled table for this block: one multiply per block instead of per value.
        let lut: [f32; 16] = std::array::from_fn(|i| NF4_TABLE[i] * m);
        let first = b * q.block;
        if first.is_multiple_of(2) {
            let bytes = &q.packed[first / 2..];
            for (pair, &byte) in chunk.chunks_mut(2).zip(bytes) {
                pair[0] = lut[(byte & 0x0f) as usize];
                if let Some(second) = pair.get_mut(1) {
                    *second = lut[(byte >> 4) as usize];
                }
            }
        } else {
            for (k, o) in chunk.iter_mut().enumerate() {
                let i = first + k;
                let byte = q.packed[i / 2];
                *o = lut[if i.is_multiple_of(2) {
                    byte & 0x0f
                } else {
                    byte >> 4
                } as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_with_exact_ends_and_zero() {
        assert!(NF4_TABLE.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            (NF4_TABLE[0], NF4_TABLE[7], NF4_TABLE[15]),
            (-1.0, 0.0, 1.0)
        );
    }

    #[test]
    fn nearest_code_is_nearest() {
        for i in 0..=2000 {
            let x = -1.0 + i as f32 / 1000.0;
            let c = nearest_code(x) as usize;
            let best = NF4_TABLE
                .iter()
                .map(|t| (t - x).abs())
                .fold(f32::INFINITY, f32::min);
            assert!(((NF4_TABLE[c] - x).abs() - best).abs() < 1e-7, "x={x}");
        }
    }

    #[test]
    fn block_max_is_exact_and_odd_lengths_work() {
        let x = [0.5, -2.0, 1.0, 0.0, 3.0];
        let q = quantize(&x, 4);
        let y = dequantize(&q);
        assert_eq!(y.len(), 5);
        assert_eq!((y[1], y[3], y[4]), (-2.0, 0.0, 3.0));
    }

    #[test]
    fn an_infinity_saturates_instead_of_turning_its_block_into_nan() {
        let x = [1.0, f32::INFINITY, -0.5, f32::NEG_INFINITY, 0.25, 2.0];
        let y = dequantize(&quantize(&x, 64));
        assert_eq!((y[1], y[3], y[5]), (2.0, -2.0, 2.0));
        assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    }
}
