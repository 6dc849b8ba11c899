//! Q5_K: Q4_K's layout plus a fifth bit per weight in `qh`: `x ≈ d·sc·q − dmin·m`, q ∈ [0, 31].
//! 5.5 bits per weight.

use super::f16_value;
use super::kquant::{QK_K, Qkx2, quantize_scale_min_superblock, scale_min_k4};

/// One super-block, as ggml's `block_q5_K`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales, f16 bits.
    pub d: [u8; 2],
    /// Super-block scale of the sub-block mins, f16 bits.
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and mins, packed as in Q4_K.
    pub scales: [u8; 12],
    /// (32,) high bits: bit 2k of byte l is weight 64k+l's, bit 2k+1 weight 64k+32+l's.
    pub qh: [u8; QK_K / 8],
    /// (128,) low nibbles, laid out as Q4_K's codes.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

const SEARCH: Qkx2 = Qkx2 {
    nmax: 31,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: false,
};

impl BlockQ5K {
    /// Quantizes 256 weights (ggml's `quantize_row_q5_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        let (d, dmin, scales, l) = quantize_scale_min_superblock(x, &SEARCH);
        let mut qh = [0u8; QK_K / 8];
        let mut qs = [0u8; QK_K / 2];
        for k in 0..4 {
            let (m1, m2) = (1u8 << (2 * k), 2u8 << (2 * k));
            for j in 0..32 {
                let (mut l1, mut l2) = (l[64 * k + j], l[64 * k + 32 + j]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                qs[32 * k + j] = l1 | (l2 << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }

    /// The 256 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let (d, min) = (f16_value(self.d), f16_value(self.dmin));
        for k in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * k, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * k + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
            let ql = &self.qs[32 * k..32 * k + 32];
            for l in 0..32 {
                let h1 = if self.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if self.qh[l] & u2 != 0 { 16 } else { 0 };
                out[64 * k + l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
                out[64 * k + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            dmin: [b[2], b[3]],
            scales: b[4..16].try_into().expect("12 scale bytes"),
            qh: b[16..48].try_into().expect("32 high-bit bytes"),
            qs: b[48..176].try_into().expect("128 code bytes"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..4].copy_from_slice(&self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..176].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(176)) {
        BlockQ5K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ5K::read(bb).dequantize(ob);
    }
}
