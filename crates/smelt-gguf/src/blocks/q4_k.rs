//! Q4_K: 256-weight super-blocks of eight 32-weight sub-blocks; each sub-block has a 6-bit
//! scale and 6-bit min (packed into 12 bytes), the super-block f16 factors `d` and `dmin`:
//! `x ≈ d·sc·q − dmin·m`, q ∈ [0, 15]. 4.5 bits per weight.

use super::f16_value;
use super::kquant::{QK_K, Qkx2, quantize_scale_min_superblock, scale_min_k4};

/// One super-block, as ggml's `block_q4_K`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales, f16 bits.
    pub d: [u8; 2],
    /// Super-block scale of the sub-block mins, f16 bits.
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit mins, packed (see `scale_min_k4`).
    pub scales: [u8; 12],
    /// (128,) codes: bytes 32k..32k+32 hold weights 64k+l (low nibble) and 64k+32+l (high).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

const SEARCH: Qkx2 = Qkx2 {
    nmax: 15,
    rmin: -1.0,
    rdelta: 0.1,
    nstep: 20,
    use_mad: false,
};

impl BlockQ4K {
    /// Quantizes 256 weights (ggml's `quantize_row_q4_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        let (d, dmin, scales, l) = quantize_scale_min_superblock(x, &SEARCH);
        let mut qs = [0u8; QK_K / 2];
        for (k, chunk) in qs.chunks_exact_mut(32).enumerate() {
            for (i, q) in chunk.iter_mut().enumerate() {
                *q = l[64 * k + i] | (l[64 * k + 32 + i] << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
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
            let q = &self.qs[32 * k..32 * k + 32];
            for l in 0..32 {
                out[64 * k + l] = d1 * (q[l] & 0x0f) as f32 - m1;
                out[64 * k + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            dmin: [b[2], b[3]],
            scales: b[4..16].try_into().expect("12 scale bytes"),
            qs: b[16..144].try_into().expect("128 code bytes"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..4].copy_from_slice(&self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..144].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(144)) {
        BlockQ4K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ4K::read(bb).dequantize(ob);
    }
}
