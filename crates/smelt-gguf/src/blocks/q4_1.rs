//! Q4_1: 32 weights, f16 scale and f16 minimum, 4-bit codes: `x ≈ d · q + m`,
//! `d = (max − min) / 15`, `m = min`. Nibbles as Q4_0.

use super::{f16_bits, f16_value, inverse, min_max};

/// Weights per block.
pub const QK: usize = 32;

/// One block, as ggml's `block_q4_1`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// Minimum, f16 bits.
    pub m: [u8; 2],
    /// (16,) packed codes.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    /// Quantizes 32 weights (ggml's `quantize_row_q4_1_ref`).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            qs[j] = q0 | (q1 << 4);
        }
        Self {
            d: f16_bits(d),
            m: f16_bits(min),
            qs,
        }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16_value(self.d), f16_value(self.m));
        for j in 0..QK / 2 {
            out[j] = (self.qs[j] & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (self.qs[j] >> 4) as f32 * d + m;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            m: [b[2], b[3]],
            qs: b[4..20].try_into().expect("20-byte block"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..4].copy_from_slice(&self.m);
        out[4..20].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(20)) {
        BlockQ4_1::quantize(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
        BlockQ4_1::read(bb).dequantize(ob);
    }
}
