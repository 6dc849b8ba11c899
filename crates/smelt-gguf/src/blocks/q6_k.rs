//! Q6_K: 256 weights in sixteen 16-weight sub-blocks with int8 scales and one f16 super-scale:
//! `x ≈ d·sc·(q − 32)`, q ∈ [0, 63]. 6.5625 bits per weight.

use super::kquant::{GROUP_MAX_EPS, QK_K, make_qx_quants, nearest_int};
use super::{f16_bits, f16_value};

/// One super-block, as ggml's `block_q6_K` (note `d` comes last).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ6K {
    /// (128,) low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// (64,) high 2 bits.
    pub qh: [u8; QK_K / 4],
    /// (16,) sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale, f16 bits.
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    /// Quantizes 256 weights (ggml's `quantize_row_q6_K_ref`).
    pub fn quantize(x: &[f32]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let s = make_qx_quants(&x[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        let mut b = Self {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: f16_bits(0.0),
        };
        if max_abs_scale < GROUP_MAX_EPS {
            return b;
        }
        let iscale = -128.0f32 / max_scale;
        b.d = f16_bits(1.0 / iscale);
        for (q, &s) in b.scales.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * s).min(127) as i8;
        }
        let d16 = f16_value(b.d);
        for j in 0..QK_K / 16 {
            let d = d16 * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for h in 0..2 {
            let (j, ql, qh) = (
                128 * h,
                &mut b.ql[64 * h..64 * h + 64],
                &mut b.qh[32 * h..32 * h + 32],
            );
            for i in 0..32 {
                let q = |o: usize| l[j + i + o] as u8;
                ql[i] = (q(0) & 0x0f) | ((q(64) & 0x0f) << 4);
                ql[i + 32] = (q(32) & 0x0f) | ((q(96) & 0x0f) << 4);
                qh[i] =
                    (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
            }
        }
        b
    }

    /// The 256 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..], &self.qh[32 * h..]);
            let sc = &self.scales[8 * h..];
            let y = &mut out[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            ql: b[..128].try_into().expect("128 low bytes"),
            qh: b[128..192].try_into().expect("64 high bytes"),
            scales: std::array::from_fn(|i| b[192 + i] as i8),
            d: [b[208], b[209]],
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, &s) in out[192..208].iter_mut().zip(&self.scales) {
            *o = s as u8;
        }
        out[208..210].copy_from_slice(&self.d);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(210)) {
        BlockQ6K::quantize(xb).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        BlockQ6K::read(bb).dequantize(ob);
    }
}
