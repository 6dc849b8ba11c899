//! Q8_0: 32 weights, f16 scale, int8 codes: `x ≈ d · q`, `d = amax / 127`,
//! `q = roundf(x / d)` (half away from zero, as C's `roundf`).

use super::{f16_bits, f16_value, inverse};

/// Weights per block.
pub const QK: usize = 32;

/// One block, as ggml's `block_q8_0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// (32,) codes.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockQ8_0 {
    /// Quantizes 32 weights (ggml's `quantize_row_q8_0_ref`).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = inverse(d);
        let qs = std::array::from_fn(|j| (x[j] * id).round() as i8);
        Self { d: f16_bits(d), qs }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            qs: std::array::from_fn(|j| b[2 + j] as i8),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        for (o, &q) in out[2..34].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
        BlockQ8_0::quantize(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
        BlockQ8_0::read(bb).dequantize(ob);
    }
}
