//! Q5_1: 32 weights, f16 scale and minimum, 5-bit codes: `x ≈ d · q + m`,
//! `d = (max − min) / 31`. Bit layout as Q5_0.

use super::{f16_bits, f16_value, inverse, min_max};

/// Weights per block.
pub const QK: usize = 32;

/// One block, as ggml's `block_q5_1`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// Minimum, f16 bits.
    pub m: [u8; 2],
    /// Fifth bits of the 32 codes, little-endian u32.
    pub qh: [u8; 4],
    /// (16,) packed low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl BlockQ5_1 {
    /// Quantizes 32 weights (ggml's `quantize_row_q5_1_ref`).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            // ggml casts (x0 + 0.5f) straight to uint8_t; values stay within [0, 31.5).
            let q0 = ((x[j] - min) * id + 0.5) as u8;
            let q1 = ((x[j + QK / 2] - min) * id + 0.5) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        Self {
            d: f16_bits(d),
            m: f16_bits(min),
            qh: qh.to_le_bytes(),
            qs,
        }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16_value(self.d), f16_value(self.m));
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            out[j] = ((self.qs[j] & 0x0f) as u32 | h0) as f32 * d + m;
            out[j + QK / 2] = ((self.qs[j] >> 4) as u32 | h1) as f32 * d + m;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            m: [b[2], b[3]],
            qh: [b[4], b[5], b[6], b[7]],
            qs: b[8..24].try_into().expect("24-byte block"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..4].copy_from_slice(&self.m);
        out[4..8].copy_from_slice(&self.qh);
        out[8..24].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(24)) {
        BlockQ5_1::quantize(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
        BlockQ5_1::read(bb).dequantize(ob);
    }
}
