//! Q3_K: 256 weights in sixteen 16-weight sub-blocks with 6-bit signed scales (packed into 12
//! bytes) and one f16 super-scale: `x ≈ d·(sc − 32)·(q − 4)`, q ∈ [0, 7] split into 2 low bits
//! (`qs`) and a high bit (`hmask`). 3.4375 bits per weight.

use super::kquant::{QK_K, make_q3_quants, nearest_int};
use super::{f16_bits, f16_value};

/// One super-block, as ggml's `block_q3_K`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3K {
    /// (32,) high bits: bit b of byte m belongs to weight 32b + m.
    pub hmask: [u8; QK_K / 8],
    /// (64,) low 2 bits, laid out as Q2_K's codes.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales: low nibbles in bytes 0..8, high 2-bit pairs in bytes 8..12.
    pub scales: [u8; 12],
    /// Super-block scale, f16 bits.
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Sub-block `j`'s 6-bit scale (0..=63, not yet offset by 32) from a Q3_K block's 12 scale
/// bytes.
pub fn scale6(scales: &[u8; 12], j: usize) -> i32 {
    let low = if j < 8 {
        scales[j] & 0x0f
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32
}

impl BlockQ3K {
    /// Quantizes 256 weights (ggml's `quantize_row_q3_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut amax) = (0f32, 0f32);
        for j in 0..16 {
            let s = make_q3_quants(&x[16 * j..16 * j + 16], 4, &mut l[16 * j..16 * j + 16]);
            scales[j] = s;
            if s.abs() > amax {
                amax = s.abs();
                max_scale = s;
            }
        }
        let mut b = Self {
            hmask: [0; 32],
            qs: [0; 64],
            scales: [0; 12],
            d: f16_bits(0.0),
        };
        if max_scale != 0.0 {
            let iscale = -32.0f32 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // C: int8_t l = nearest_int(...) (wrapping), then clamp and offset in int.
                let q = ((nearest_int(iscale * s) as i8) as i32).clamp(-32, 31) + 32;
                if j < 8 {
                    b.scales[j] = (q & 0x0f) as u8;
                } else {
                    b.scales[j - 8] |= ((q & 0x0f) << 4) as u8;
                }
                b.scales[j % 4 + 8] |= ((q >> 4) << (2 * (j / 4))) as u8;
            }
            b.d = f16_bits(1.0 / iscale);
        }
        let d16 = f16_value(b.d);
        for j in 0..16 {
            let d = d16 * (scale6(&b.scales, j) - 32) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        for (j, q) in l.iter_mut().enumerate() {
            if *q > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                *q -= 4;
            }
        }
        for h in 0..2 {
            for i in 0..32 {
                let q = |s: usize| l[128 * h + i + 32 * s] as u8;
                b.qs[32 * h + i] = q(0) | (q(1) << 2) | (q(2) << 4) | (q(3) << 6);
            }
        }
        b
    }

    /// The 256 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d_all = f16_value(self.d);
        let mut y = out.iter_mut();
        let (mut is, mut m) = (0, 1u8);
        for h in 0..2 {
            let q = &self.qs[32 * h..32 * h + 32];
            for s in 0..4 {
                for half in 0..2 {
                    let dl = d_all * (scale6(&self.scales, is) - 32) as f32;
                    is += 1;
                    let r = 16 * half..16 * half + 16;
                    for (&qb, &hb) in q[r.clone()].iter().zip(&self.hmask[r]) {
                        let low = ((qb >> (2 * s)) & 3) as i8;
                        let code = low - if hb & m != 0 { 0 } else { 4 };
                        *y.next().expect("256 outputs") = dl * code as f32;
                    }
                }
                m <<= 1;
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            hmask: b[..32].try_into().expect("32 mask bytes"),
            qs: b[32..96].try_into().expect("64 code bytes"),
            scales: b[96..108].try_into().expect("12 scale bytes"),
            d: [b[108], b[109]],
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.hmask);
        out[32..96].copy_from_slice(&self.qs);
        out[96..108].copy_from_slice(&self.scales);
        out[108..110].copy_from_slice(&self.d);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(110)) {
        BlockQ3K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(110).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ3K::read(bb).dequantize(ob);
    }
}
