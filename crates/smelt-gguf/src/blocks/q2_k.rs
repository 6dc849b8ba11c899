//! Q2_K: 256 weights in sixteen 16-weight sub-blocks; each has a 4-bit scale and 4-bit min
//! (one byte), the super-block f16 factors `d` and `dmin`: `x ≈ d·sc·q − dmin·m`, q ∈ [0, 3].
//! 2.625 bits per weight.

use super::kquant::{QK_K, Qkx2, make_qkx2_quants, nearest_int};
use super::{f16_bits, f16_value};

/// One super-block, as ggml's `block_q2_K`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2K {
    /// (16,) sub-block scale (low nibble) and min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// (64,) 2-bit codes: byte 32h+l holds weights 128h+l+32s in bits 2s..2s+1, s = 0..4.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale, f16 bits.
    pub d: [u8; 2],
    /// Super-block min scale, f16 bits.
    pub dmin: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

const SEARCH: Qkx2 = Qkx2 {
    nmax: 3,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: true,
};

impl BlockQ2K {
    /// Quantizes 256 weights (ggml's `quantize_row_q2_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        const Q4SCALE: f32 = 15.0;
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        let mut weights = [0f32; 16];
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(xs, &weights, &SEARCH, &mut l[16 * j..16 * j + 16]);
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let mut b = Self {
            scales: [0; 16],
            qs: [0; QK_K / 4],
            d: f16_bits(0.0),
            dmin: f16_bits(0.0),
        };
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (q, &s) in b.scales.iter_mut().zip(&scales) {
                *q = nearest_int(iscale * s) as u8;
            }
            b.d = f16_bits(max_scale / Q4SCALE);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (q, &m) in b.scales.iter_mut().zip(&mins) {
                *q |= (nearest_int(iscale * m) << 4) as u8;
            }
            b.dmin = f16_bits(max_min / Q4SCALE);
        }
        let (d16, dmin16) = (f16_value(b.d), f16_value(b.dmin));
        for j in 0..16 {
            let d = d16 * (b.scales[j] & 0x0f) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin16 * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        for h in 0..2 {
            for i in 0..32 {
                let q = |s: usize| l[128 * h + i + 32 * s];
                b.qs[32 * h + i] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
        b
    }

    /// The 256 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let (d, min) = (f16_value(self.d), f16_value(self.dmin));
        let mut y = out.iter_mut();
        let mut is = 0;
        for h in 0..2 {
            let q = &self.qs[32 * h..32 * h + 32];
            for s in 0..4 {
                for half in 0..2 {
                    let sc = self.scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0x0f) as f32, min * (sc >> 4) as f32);
                    for &byte in &q[16 * half..16 * half + 16] {
                        *y.next().expect("256 outputs") = dl * ((byte >> (2 * s)) & 3) as f32 - ml;
                    }
                }
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            scales: b[..16].try_into().expect("16 scale bytes"),
            qs: b[16..80].try_into().expect("64 code bytes"),
            d: [b[80], b[81]],
            dmin: [b[82], b[83]],
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.scales);
        out[16..80].copy_from_slice(&self.qs);
        out[80..82].copy_from_slice(&self.d);
        out[82..84].copy_from_slice(&self.dmin);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(84)) {
        BlockQ2K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ2K::read(bb).dequantize(ob);
    }
}
