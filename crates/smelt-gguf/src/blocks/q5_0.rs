//! Q5_0: 32 weights, f16 scale, 5-bit codes with an implicit offset of 16:
//! `x ≈ d · (q − 16)`, `d = max / −16`. Low 4 bits as Q4_0's nibbles; the fifth bits of all 32
//! codes form the little-endian u32 `qh` (bit `j` belongs to weight `j`).

use super::{f16_bits, f16_value, inverse, signed_absmax};

/// Weights per block.
pub const QK: usize = 32;

/// One block, as ggml's `block_q5_0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// Fifth bits of the 32 codes, little-endian u32.
    pub qh: [u8; 4],
    /// (16,) packed low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

impl BlockQ5_0 {
    /// Quantizes 32 weights (ggml's `quantize_row_q5_0_ref`).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = inverse(d);
        let mut qs = [0u8; QK / 2];
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let q0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
            let q1 = ((x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
            qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        Self {
            d: f16_bits(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            out[j] = (((self.qs[j] & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
            out[j + QK / 2] = (((self.qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            qh: [b[2], b[3], b[4], b[5]],
            qs: b[6..22].try_into().expect("22-byte block"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..6].copy_from_slice(&self.qh);
        out[6..22].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(22)) {
        BlockQ5_0::quantize(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
        BlockQ5_0::read(bb).dequantize(ob);
    }
}
