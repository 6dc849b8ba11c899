//! Q4_0: 32 weights, one f16 scale, 4-bit codes with an implicit offset of 8.
//! `x ≈ d · (q − 8)`, `d = max / −8` where `max` is the signed value of largest magnitude.
//! Nibbles: byte `j` holds weight `j` (low) and weight `j + 16` (high).

use super::{f16_bits, f16_value, inverse, signed_absmax};

/// Weights per block.
pub const QK: usize = 32;

/// One block, as ggml's `block_q4_0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// (16,) packed codes.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    /// Quantizes 32 weights (ggml's `quantize_row_q4_0_ref`).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            // x·id ∈ [-8, 8], so +8.5 is positive and truncation is floor; cap at 15.
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            qs[j] = q0 | (q1 << 4);
        }
        Self { d: f16_bits(d), qs }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        for j in 0..QK / 2 {
            out[j] = ((self.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((self.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            qs: b[2..18].try_into().expect("18-byte block"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..18].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
        BlockQ4_0::quantize(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        BlockQ4_0::read(bb).dequantize(ob);
    }
}
