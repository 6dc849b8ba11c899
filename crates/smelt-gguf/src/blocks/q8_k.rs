//! Q8_K: the intermediate type k-quant dot products use for activations: 256 int8 codes, an f32
//! scale and 16 partial sums: `x ≈ d·q`, `d = max / −127` (signed extreme).

use super::kquant::{QK_K, nearest_int};

/// One super-block, as ggml's `block_q8_K`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale (f32).
    pub d: f32,
    /// (256,) codes.
    pub qs: [i8; QK_K],
    /// (16,) sums of each group of 16 codes.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    /// Quantizes 256 values (ggml's `quantize_row_q8_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        let max = super::signed_absmax(x);
        let amax = max.abs();
        let mut b = Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        };
        if amax == 0.0 {
            return b;
        }
        let iscale = -127.0f32 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
        b
    }

    /// The 256 values.
    pub fn dequantize(&self, out: &mut [f32]) {
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = self.d * q as f32;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            qs: std::array::from_fn(|i| b[4 + i] as i8),
            bsums: std::array::from_fn(|i| i16::from_le_bytes([b[260 + 2 * i], b[261 + 2 * i]])),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in out[4..260].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
        for (o, s) in out[260..292].chunks_exact_mut(2).zip(&self.bsums) {
            o.copy_from_slice(&s.to_le_bytes());
        }
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
        BlockQ8K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(292).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ8K::read(bb).dequantize(ob);
    }
}
