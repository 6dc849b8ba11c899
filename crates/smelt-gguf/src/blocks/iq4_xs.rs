//! IQ4_XS: IQ4_NL's non-linear levels in 256-weight super-blocks: eight 32-weight blocks with
//! 6-bit scales (low 4 bits in `scales_l`, high 2 bits in `scales_h`) and one f16 super-scale:
//! `x ≈ d·(ls − 32)·K[q]`. 4.25 bits per weight.

use super::iq4_nl::{KVALUES, best_index};
use super::kquant::{GROUP_MAX_EPS, QK_K, nearest_int};
use super::{f16_bits, f16_value};

/// One super-block, as ggml's `block_iq4_xs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIq4Xs {
    /// Super-block scale, f16 bits.
    pub d: [u8; 2],
    /// High 2 bits of the eight block scales (bits 2b..2b+1 for block b), little-endian u16.
    pub scales_h: [u8; 2],
    /// Low 4 bits of the block scales, two per byte (even block in the low nibble).
    pub scales_l: [u8; QK_K / 64],
    /// (128,) indices, 16 bytes per block laid out as IQ4_NL.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);

/// Levels searched around the first guess (ggml's `ntry = 7`).
const NTRY: i32 = 7;

/// 32-weight sub-block `ib`'s scale (−32..=31) from an IQ4_XS block's high scale bits
/// (`scales_h`) and low scale nibbles (`scales_l`).
pub fn scale(scales_h: [u8; 2], scales_l: [u8; 4], ib: usize) -> i32 {
    let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let high = ((u16::from_le_bytes(scales_h) >> (2 * ib)) & 3) as u8;
    (low | (high << 4)) as i32 - 32
}

impl BlockIq4Xs {
    /// Quantizes 256 weights (ggml's `quantize_row_iq4_xs_ref`, no importance weights).
    pub fn quantize(x: &[f32]) -> Self {
        let v0 = KVALUES[0] as f32;
        let mut scales = [0f32; 8];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let max = super::signed_absmax(xb);
            let amax = max.abs();
            if amax < GROUP_MAX_EPS {
                scales[ib] = 0.0;
                continue;
            }
            let sums = |id: f32| {
                let (mut sumqx, mut sumq2) = (0f32, 0f32);
                for &v in xb {
                    let q = KVALUES[best_index(id * v)] as f32;
                    let w = v * v;
                    sumqx += w * q * v;
                    sumq2 += w * q * q;
                }
                (sumqx, sumq2)
            };
            let (sumqx, sumq2) = sums(1.0 / (-max / v0));
            let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
            let mut best = d * sumqx;
            for itry in -NTRY..=NTRY {
                let (sumqx, sumq2) = sums((itry as f32 + v0) / max);
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = Self {
            d: f16_bits(d),
            scales_h: [0; 2],
            scales_l: [0; 4],
            qs: [0; QK_K / 2],
        };
        let mut scales_h = 0u16;
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let mut codes = [0u8; 32];
            for (c, &v) in codes.iter_mut().zip(xb) {
                *c = best_index(idl * v) as u8;
            }
            for j in 0..16 {
                b.qs[16 * ib + j] = codes[j] | (codes[16 + j] << 4);
            }
            let l = (l + 32) as u8;
            if ib % 2 == 0 {
                b.scales_l[ib / 2] = l & 0x0f;
            } else {
                b.scales_l[ib / 2] |= (l & 0x0f) << 4;
            }
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        b.scales_h = scales_h.to_le_bytes();
        b
    }

    /// The 256 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        for (ib, y) in out.chunks_exact_mut(32).enumerate() {
            let dl = d * scale(self.scales_h, self.scales_l, ib) as f32;
            let qs = &self.qs[16 * ib..16 * ib + 16];
            for j in 0..16 {
                y[j] = dl * KVALUES[(qs[j] & 0x0f) as usize] as f32;
                y[j + 16] = dl * KVALUES[(qs[j] >> 4) as usize] as f32;
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            scales_h: [b[2], b[3]],
            scales_l: [b[4], b[5], b[6], b[7]],
            qs: b[8..136].try_into().expect("128 index bytes"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..4].copy_from_slice(&self.scales_h);
        out[4..8].copy_from_slice(&self.scales_l);
        out[8..136].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(136)) {
        BlockIq4Xs::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(136).zip(out.chunks_exact_mut(QK_K)) {
        BlockIq4Xs::read(bb).dequantize(ob);
    }
}
